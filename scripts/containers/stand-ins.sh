#!/usr/bin/env bash
# The third-party images the project names (python:3.11-slim for the services,
# rabbitmq:3-management and postgres:16 for compose and testcontainers,
# nginx:1.27-alpine for compose's public edge). Each
# one already present is kept; a missing one is pulled; when no registry is
# reachable (an air-gapped data centre, this CI), a stand-in is built from
# Debian bookworm's own packages (infra/stand-ins/) and tagged with the name.
#
#   scripts/containers/stand-ins.sh            # make what is missing
#   scripts/containers/stand-ins.sh --force    # rebuild the stand-ins
#
# Needs root (debootstrap) and a Docker engine (scripts/containers/engine.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

DOCKER=${DOCKER:-/usr/bin/docker}
export DOCKER_BUILDKIT=1
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_IMAGE=portal-stand-in/debian:bookworm
FORCE=${1:-}

log() { printf '[stand-ins] %s\n' "$*" >&2; }
have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
pull() { [ "${STAND_INS_NO_PULL:-}" = 1 ] && return 1; timeout 60 "$DOCKER" pull -q "$1" >/dev/null 2>&1; }

debian_rootfs() {
  have "$DEBIAN_IMAGE" && [ "$FORCE" != --force ] && return 0
  command -v debootstrap >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
  local root
  root=$(mktemp -d /var/tmp/portal-rootfs.XXXXXX)
  log "debootstrap --variant=minbase bookworm ($MIRROR)"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/dev/null
  cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SOURCES
  # Like the official slim images: no documentation, no apt caches.
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar -C "$root" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root"
  log "imported $DEBIAN_IMAGE"
}

build_stand_in() {  # name directory
  local name=$1 dir=$2
  debian_rootfs
  log "building the stand-in $name from infra/stand-ins/$dir"
  "$DOCKER" build --network host --quiet --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" \
    --label org.opencontainers.image.description="stand-in built from Debian packages by scripts/containers/stand-ins.sh" \
    -t "$name" "$3" >/dev/null
}

make_image() {  # name directory
  local name=$1 dir=$2 context
  if [ "$FORCE" != --force ] && have "$name"; then log "$name: present"; return; fi
  if [ "$FORCE" != --force ] && pull "$name"; then log "$name: pulled"; return; fi
  context=$(mktemp -d)
  cp -r "infra/stand-ins/$dir/." "$context/"
  if [ "$dir" = python ]; then
    mkdir -p "$context/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca-certificates/" 2>/dev/null || true
  fi
  build_stand_in "$name" "$dir" "$context"
  rm -rf "$context"
  log "$name: stand-in built"
}

SECONDS=0
make_image python:3.11-slim python
make_image rabbitmq:3-management rabbitmq
make_image postgres:16 postgres
make_image nginx:1.27-alpine nginx
log "done in ${SECONDS} s"
