#!/usr/bin/env bash
# Builds isorun-agent from source: a static binary (musl) that runs in any image. Runs from
# `npm ci`/`npm install` (package.json's prepare), `npm run build:agent` and the test setup; does nothing
# when agent/build/isorun-agent is already built from the current sources.
#
# Usage: agent/build.sh [--force] [--required]
#   --force      rebuild even if up to date
#   --required   fail when no static C toolchain is found (otherwise: a warning, and the emulator uses
#                docker exec)
# Env: AGENT_CC  the compiler (default: musl-gcc, from Debian's musl-tools)
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$DIR/build/isorun-agent"
STAMP="$DIR/build/isorun-agent.sources"
CC="${AGENT_CC:-musl-gcc}"
CFLAGS=(-std=c11 -D_GNU_SOURCE -Os -Wall -Wextra -Werror -Wno-unused-parameter -static -s)

FORCE=0
REQUIRED=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --required) REQUIRED=1 ;;
    *) echo "agent/build.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

sources() { cat "$DIR/build.sh" "$DIR"/src/*.h "$DIR"/src/*.c | sha256sum | cut -d' ' -f1; echo "$CC"; }
wanted="$(sources)"
if [ "$FORCE" = 0 ] && [ -x "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ]; then
  exit 0
fi

if ! command -v "$CC" >/dev/null 2>&1; then
  msg="isorun-agent not built: '$CC' not found (apt-get install musl-tools, or scripts/provision.sh); the emulator uses docker exec until it is built (npm run build:agent)"
  if [ "$REQUIRED" = 1 ]; then echo "agent/build.sh: error: $msg" >&2; exit 1; fi
  echo "agent/build.sh: warning: $msg" >&2
  exit 0
fi

mkdir -p "$DIR/build"
# Built beside, then renamed: a sandbox that has the old binary mounted keeps it intact.
tmp="$(mktemp "$DIR/build/.isorun-agent.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$CC" "${CFLAGS[@]}" -o "$tmp" "$DIR"/src/*.c
chmod 0755 "$tmp"
mv -f "$tmp" "$OUT"
printf '%s\n' "$wanted" >"$STAMP"
echo "built $OUT ($(stat -c %s "$OUT") bytes)"
