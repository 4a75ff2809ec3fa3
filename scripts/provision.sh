#!/usr/bin/env bash
# Provision a bare Debian (bookworm) host for isorun-emulator: Docker with --experimental (needed for
# checkpoints), busybox-static (test images), musl-tools (the sandbox agent, built by `npm ci`),
# CRIU >= 4.2 (memory snapshots) and Chromium (dashboard tests). Idempotent: every step checks first
# and does nothing when already satisfied. Needs root.
set -euo pipefail

log() { printf '[provision] %s\n' "$*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }; }
need_root

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update_once() { [ "$APT_UPDATED" = 1 ] || { apt-get update -qq; APT_UPDATED=1; }; }
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] && return 0
  apt_update_once
  log "apt-get install ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- Docker engine ---------------------------------------------------------------------------------
apt_install docker.io busybox-static iptables ca-certificates xz-utils

docker_ok() { docker info >/dev/null 2>&1; }
docker_experimental() { [ "$(docker info --format '{{.ExperimentalBuild}}' 2>/dev/null)" = true ]; }
if docker_ok && ! docker_experimental; then
  log "dockerd is running without --experimental; restarting it with it"
  pkill -x dockerd || true
  for _ in $(seq 1 50); do pgrep -x dockerd >/dev/null || break; sleep 0.2; done
fi
if ! docker_ok; then
  log "starting dockerd --experimental (log: /var/log/isorun-dockerd.log)"
  pgrep -x containerd >/dev/null || true
  nohup dockerd --experimental >/var/log/isorun-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 150); do docker_ok && break; sleep 0.2; done
  docker_ok || { log "dockerd did not come up:"; tail -n 30 /var/log/isorun-dockerd.log >&2; exit 1; }
fi
log "docker $(docker version --format '{{.Server.Version}}') experimental=$(docker info --format '{{.ExperimentalBuild}}')"

# --- the sandbox agent's toolchain (agent/build.sh: a static binary, linked against musl) ------------
apt_install musl-tools

# --- CRIU >= 4.2 ------------------------------------------------------------------------------------
criu_version_ok() {
  command -v criu >/dev/null 2>&1 || return 1
  local v; v=$(criu --version 2>/dev/null | awk '/^Version:/ {print $2}')
  [ -n "$v" ] || return 1
  dpkg --compare-versions "$v" ge 4.2
}
criu_works() { criu_version_ok && criu check >/dev/null 2>&1; }

build_criu() {
  log "building CRIU from Debian sid sources"
  apt_install build-essential pkg-config libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler \
    protobuf-compiler python3-protobuf libnl-3-dev libnet1-dev libcap-dev libgnutls28-dev \
    libnftables-dev libbsd-dev uuid-dev libaio-dev iproute2 dpkg-dev
  local src=/etc/apt/sources.list.d/isorun-sid-src.sources
  if [ ! -f "$src" ]; then
    cat >"$src" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq
  fi
  local work=/var/cache/isorun-criu
  mkdir -p "$work"; cd "$work"
  # apt-get prints an error (it cannot verify the .dsc here) but the orig tarball arrives.
  ls criu_*.orig.tar.xz >/dev/null 2>&1 || apt-get source --download-only criu/sid >/dev/null 2>&1 || true
  local tarball; tarball=$(ls -1 criu_*.orig.tar.xz 2>/dev/null | sort -V | tail -n 1)
  [ -n "$tarball" ] || { log "could not download the CRIU sources"; return 1; }
  rm -rf build && mkdir build && tar -xJf "$tarball" -C build --strip-components=1
  make -C build -j"$(nproc)" criu >/var/log/isorun-criu-build.log 2>&1 || {
    log "CRIU build failed; see /var/log/isorun-criu-build.log"; tail -n 20 /var/log/isorun-criu-build.log >&2; return 1; }
  install -m 0755 build/criu/criu /usr/local/sbin/criu
  hash -r
}

if criu_works; then
  log "criu $(criu --version | awk '/^Version:/ {print $2}') passes criu check"
else
  build_criu || log "WARNING: CRIU unavailable; memory snapshots will degrade to filesystem only"
  if criu_works; then log "criu $(criu --version | awk '/^Version:/ {print $2}') installed and passes criu check"
  else log "WARNING: criu check still fails; the emulator will report criu=false"; fi
fi

# --- Podman, the second engine (docs/engines.md) ---------------------------------------------------
# Debian's podman 4.3 coexists with docker.io: its own storage (/var/lib/containers), its own bridge
# (cni-podman0, 10.88.0.0/16) and iptables chains (CNI-*); dockerd and its rules are left alone.
# catatonit is the init (PID 1) Podman gives a container with `Init: true`. crun is not installed:
# crun 1.8.1 fails on this host's hybrid cgroups, so runc is the runtime (it also checkpoints with CRIU).
PODMAN_SOCKET=/run/podman/podman.sock
PODMAN_PIDFILE=/run/podman/isorun-service.pid
podman_ok() { curl -fsS --max-time 5 --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1; }
provision_podman() {
  apt_install podman catatonit curl
  # Podman asks the kernel for RLIMIT_NOFILE 1048576 in every container, more than this host's hard
  # limit allows ("setrlimit ... operation not permitted"), and podman runs its containers' conmon with
  # RLIMIT_NPROC 32768: every container gets what its conmon may give. The API service reads this too.
  local nofile nproc
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
  nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  local conf=/etc/containers/containers.conf.d/isorun-emulator.conf
  mkdir -p "$(dirname "$conf")"
  cat >"$conf.new" <<CONF
# Written by isorun-emulator's scripts/provision.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
# runc: crun 1.8.1 fails here, and checkpoint/restore needs a runtime that does it with CRIU.
runtime = "runc"
CONF
  if ! cmp -s "$conf.new" "$conf"; then
    mv "$conf.new" "$conf"
    log "wrote $conf"
    # A service this script started read the old settings: restart it (containers live on without it).
    if [ -f "$PODMAN_PIDFILE" ] && kill "$(cat "$PODMAN_PIDFILE")" 2>/dev/null; then
      for _ in $(seq 1 25); do podman_ok || break; sleep 0.2; done
    fi
  else
    rm -f "$conf.new"
  fi
  if ! podman_ok; then
    log "starting podman system service on unix://$PODMAN_SOCKET (log: /var/log/isorun-podman.log)"
    mkdir -p "$(dirname "$PODMAN_SOCKET")"
    nohup setsid podman system service --time=0 "unix://$PODMAN_SOCKET" \
      >/var/log/isorun-podman.log 2>&1 </dev/null &
    echo $! >"$PODMAN_PIDFILE"
    for _ in $(seq 1 100); do podman_ok && break; sleep 0.2; done
    podman_ok || { log "podman system service did not come up:"; tail -n 30 /var/log/isorun-podman.log >&2; return 1; }
  fi
  log "podman $(podman version --format '{{.Server.Version}}' 2>/dev/null || podman --version) on unix://$PODMAN_SOCKET"
}
if [ "${ISORUN_PROVISION_PODMAN:-1}" = 1 ]; then
  provision_podman || log "WARNING: Podman unavailable; ISORUN_EMULATOR_ENGINE=podman will not work here"
fi

# --- Chromium for the dashboard's browser tests ----------------------------------------------------
if [ "${ISORUN_PROVISION_CHROMIUM:-1}" = 1 ]; then apt_install chromium; fi

log "done"
