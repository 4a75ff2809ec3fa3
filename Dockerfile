# isorun-emulator in a container, driving the host's Docker engine through its socket.
#
# Build it with scripts/docker-image.sh: it compiles the app and installs its production dependencies
# into .docker-build/app, which is all this file copies (the base image needs neither npm nor tsc, and
# nothing is fetched). Run it as docs/docker.md says:
#
#   docker run -d --name isorun-emulator --network host \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/docker:/var/lib/docker \
#     -v isorun-emulator-data:/data \
#     isorun-emulator:local
#
# On the host's network the emulator listens on the host's loopback, as it does outside a container:
# no network is shared with the sandboxes (on a bridge beside them, any guest could reach it), and the
# control plane needs no token. Listening beyond loopback (ISORUN_EMULATOR_HOST) needs
# ISORUN_EMULATOR_ADMIN_TOKEN, here as anywhere (docs/security.md).
FROM node:22-slim

# The data dir is meant to be a volume.
ENV NODE_ENV=production \
    ISORUN_EMULATOR_PORT=8731 \
    ISORUN_EMULATOR_DATA_DIR=/data

COPY .docker-build/app/ /opt/isorun-emulator/
WORKDIR /opt/isorun-emulator

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.ISORUN_EMULATOR_PORT||8731)+'/_emulator/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The CLI handles SIGTERM (docker stop): it closes cleanly and leaves the sandboxes to the next start.
ENTRYPOINT ["node", "/opt/isorun-emulator/dist/cli.js"]
