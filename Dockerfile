# isorun-emulator in a container, driving the host's Docker engine through its socket.
#
# Build it with scripts/docker-image.sh: it compiles the app and installs its production dependencies
# into .docker-build/app, which is all this file copies (the base image needs neither npm nor tsc, and
# nothing is fetched). Run it as README.md's "Run in Docker" says:
#
#   docker run -d --name isorun-emulator \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/docker:/var/lib/docker \
#     -v isorun-emulator-data:/data \
#     -p 127.0.0.1:8731:8731 -p '[::1]:8731:8731' \
#     isorun-emulator:local
FROM node:22-slim

# Inside a container the emulator must listen on every interface (its default, localhost, would be
# unreachable through the published port). The data dir is meant to be a volume.
ENV NODE_ENV=production \
    ISORUN_EMULATOR_HOST=0.0.0.0 \
    ISORUN_EMULATOR_PORT=8731 \
    ISORUN_EMULATOR_DATA_DIR=/data

COPY .docker-build/app/ /opt/isorun-emulator/
WORKDIR /opt/isorun-emulator

EXPOSE 8731
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.ISORUN_EMULATOR_PORT||8731)+'/_emulator/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The CLI handles SIGTERM (docker stop): it closes cleanly and leaves the sandboxes to the next start.
ENTRYPOINT ["node", "/opt/isorun-emulator/dist/cli.js"]
