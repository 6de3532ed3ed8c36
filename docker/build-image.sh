#!/usr/bin/env bash
# Builds the default sandbox image offline: debootstrap a Debian trixie root
# filesystem, `docker import` it, then build docker/Dockerfile on top.
# Skipped when the image tagged with the content hash of its inputs exists.
# Where a registry is reachable, REPLBOX_BASE_IMAGE=debian:trixie plus
# apt-get in a Dockerfile would do the same; this script never pulls.
set -euo pipefail
cd "$(dirname "$0")"
IMAGE=${REPLBOX_IMAGE_NAME:-replbox-sandbox}
CACHE=${REPLBOX_CACHE_DIR:-/var/cache/replbox}
SUITE=trixie
MIRROR=${REPLBOX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=$(grep -v '^#' packages.txt | xargs | tr ' ' ',')

base_hash=$( (echo "$SUITE $MIRROR"; cat packages.txt) | sha256sum | cut -c1-16)
# The image depends on the packages and the Dockerfile (not on this script).
hash=$( (echo "$base_hash"; cat Dockerfile) | sha256sum | cut -c1-16)

say() { echo "==> image: $*"; }

if docker image inspect "$IMAGE:$hash" >/dev/null 2>&1; then
  say "$IMAGE:$hash is up to date"
  docker tag "$IMAGE:$hash" "$IMAGE:latest"
  exit 0
fi

# One build at a time per cache: a second debootstrap into the same root
# filesystem (its `rm -rf` first) spoils the one under way.
mkdir -p "$CACHE"
exec 9>"$CACHE/.build-image.lock"
flock 9

if ! docker image inspect "replbox-base:$base_hash" >/dev/null 2>&1; then
  rootfs="$CACHE/rootfs-$base_hash"
  if [ ! -f "$rootfs/.replbox-complete" ]; then
    command -v debootstrap >/dev/null || {
      say "installing debootstrap (apt)"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    say "debootstrap $SUITE into $rootfs (about 75 s, 1.3 GB)"
    rm -rf "$rootfs"; mkdir -p "$rootfs"
    debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$rootfs" "$MIRROR" > "$CACHE/debootstrap-$base_hash.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap-$base_hash.log"; exit 1; }
    touch "$rootfs/.replbox-complete"
  fi
  say "docker import replbox-base:$base_hash"
  tar -C "$rootfs" --exclude=./.replbox-complete -c . | docker import - "replbox-base:$base_hash" >/dev/null
fi

say "docker build $IMAGE:$hash"
docker build -q --network none --build-arg "BASE=replbox-base:$base_hash" \
  --label "replbox.image-hash=$hash" -t "$IMAGE:$hash" -t "$IMAGE:latest" . >/dev/null
say "$IMAGE:$hash built"
