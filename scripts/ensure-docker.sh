#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when the
# daemon is missing and starts it off the network when it is not running.
set -euo pipefail
say() { echo "==> docker: $*"; }
if docker info >/dev/null 2>&1; then say "engine answers"; exit 0; fi
if ! command -v dockerd >/dev/null; then
  say "installing docker.io (apt)"
  if [ "$(id -u)" != 0 ]; then echo "need root to install docker.io; install it and start dockerd" >&2; exit 1; fi
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers; start it (sudo systemctl start docker) and run again" >&2; exit 1
fi
if ! pgrep -x dockerd >/dev/null; then
  rm -f /var/run/docker.pid
  say "starting dockerd (no bridge, no iptables); log in /var/log/replbox-dockerd.log"
  nohup dockerd --bridge=none --iptables=false --ip-forward=false >/var/log/replbox-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then say "engine answers"; exit 0; fi
  sleep 0.5
done
echo "dockerd did not answer within 30 s; see /var/log/replbox-dockerd.log" >&2
exit 1
