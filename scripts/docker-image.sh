#!/usr/bin/env bash
# Build the isorun-emulator Docker image from this checkout, offline.
#
# The base image is node:22-slim: the local stand-in fixtures/build-images.sh makes (busybox + Node 22,
# no npm), or the real one; either works, since nothing runs inside the build. The app is prepared here
# instead, in .docker-build/app, and the Dockerfile only COPYs it:
#   dist/          src/ compiled by tsc (tsconfig.build.json, --noCheck: the same JS as `npm run build`,
#                  without type-checking again what `npm run typecheck` checks)
#   node_modules/  the production dependencies only, from package-lock.json (npm ci --omit=dev)
#   dashboard/     the dashboard's page, script and stylesheet, read at start
#   package.json   ("type": "module")
#
# Usage: scripts/docker-image.sh [TAG]     TAG defaults to $IMAGE_TAG, else isorun-emulator:local
set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(dirname "$(dirname "$SCRIPT_PATH")")"
TAG="${1:-${IMAGE_TAG:-isorun-emulator:local}}"
STAGE="$REPO_ROOT/.docker-build"
APP="$STAGE/app"

die() { printf 'docker-image: error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
start="$(now_ms)"

cd "$REPO_ROOT"
command -v docker >/dev/null 2>&1 || die "'docker' not found in PATH"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon; run: bash $REPO_ROOT/scripts/provision.sh"
[ -x node_modules/.bin/tsc ] || die "no node_modules/.bin/tsc: run 'npm ci' first"
# Node 22 from the node@22 devDependency first on PATH, as npm scripts do (the host's node may be older).
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"

# One build at a time per checkout: they share the staging dir.
mkdir -p "$STAGE"
exec 9>"$STAGE/.lock"
flock 9

docker image inspect node:22-slim >/dev/null 2>&1 \
  || die "no node:22-slim image here; build the local stand-in with: bash fixtures/build-images.sh"

rm -rf "$APP"
mkdir -p "$APP"
echo "docker-image: compiling src/ -> .docker-build/app/dist"
tsc -p tsconfig.build.json --outDir "$APP/dist" --noCheck --declaration false --sourceMap false \
  || die "tsc failed"
mkdir -p "$APP/dashboard"
cp dashboard/index.html dashboard/app.js dashboard/style.css "$APP/dashboard/"
cp package.json package-lock.json "$APP/"
echo "docker-image: installing production dependencies (npm ci --omit=dev)"
(cd "$APP" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error) \
  || die "npm ci --omit=dev failed"
rm -f "$APP/package-lock.json"

# The docker CLI without the buildx plugin has only the legacy builder; say so rather than let it guess.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
echo "docker-image: docker build -t $TAG ."
docker build --network none --force-rm -t "$TAG" -f Dockerfile . >"$STAGE/build.log" 2>&1 \
  || { cat "$STAGE/build.log" >&2; die "docker build failed"; }
echo "docker-image: built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')) in $(( $(now_ms) - start )) ms"
