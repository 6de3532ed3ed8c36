#!/usr/bin/env bash
# Makes sure a Docker engine answers, with user namespaces remapped
# (`--userns-remap=default`: uid 1000 in a sandbox is not uid 1000 on the
# host) and live restore (`--live-restore`: sandboxes outlive a restart of
# the engine; one this script started without it is restarted with it when
# no container runs). Installs Debian's docker.io when the daemon is missing and starts it
# off the network when it is not running. An engine this script started
# without remapping (an older version of it did) is restarted with it when
# no container runs on it; one it did not start, or one with running
# containers, is left alone, and the script says how to remap it.
#
# The engine is the default one unless these say otherwise (a second engine
# beside another, as a test bench): DOCKER_HOST, REPLBOX_DOCKERD_PIDFILE,
# REPLBOX_DOCKERD_LOG, and REPLBOX_DOCKERD_ARGS (e.g. `--data-root ...
# --exec-root ...`).
set -euo pipefail
say() { echo "==> docker: $*"; }
warn() { echo "==> docker: WARNING: $*" >&2; }

export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
PIDFILE=${REPLBOX_DOCKERD_PIDFILE:-/var/run/docker.pid}
LOG=${REPLBOX_DOCKERD_LOG:-/var/log/replbox-dockerd.log}
EXTRA=${REPLBOX_DOCKERD_ARGS:-}
# The pid of the dockerd this script started last, beside its pid file.
MARK="$PIDFILE.replbox"
# What this script ran before it remapped: such an engine is ours too.
OLD_CMDLINE="dockerd --bridge=none --iptables=false --ip-forward=false"

answers() { docker info >/dev/null 2>&1; }
remapped() { docker info --format '{{json .SecurityOptions}}' 2>/dev/null | grep -q 'name=userns'; }
live_restore() { [ "$(docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null)" = true ]; }
# dockerd refuses a setting given both as a flag and in daemon.json.
in_daemon_json() { grep -qs "\"$1\"" /etc/docker/daemon.json; }
dead() { [ ! -e "/proc/$1" ] || grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# The pid in the pid file, when it is a live dockerd (not a zombie).
running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && echo "$pid"
  return 0
}
ours() {
  [ "$(cat "$MARK" 2>/dev/null)" = "$1" ] && return 0
  [ "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | sed 's/ $//')" = "$OLD_CMDLINE" ]
}
how_to_remap() {
  cat >&2 <<EOF
    Sandboxes then run as host uid 1000 (the same uid as a host user's
    files). To remap: add  "userns-remap": "default"  to /etc/docker/daemon.json
    and restart the engine (sudo systemctl restart docker), then run
    \`make image\` (a remapped engine has an image store of its own).
    tests/sandbox.rs's remapping test fails until then.
EOF
}

# With user namespaces remapped, every container's root is one host uid, and
# runc gives each container a session keyring of that uid's: the kernel's
# default of 200 keys per uid stops container starts at about 200 sandboxes
# ("unable to create session key: disk quota exceeded"). Room for more.
raise_key_quota() {
  local keys bytes
  keys=$(cat /proc/sys/kernel/keys/maxkeys 2>/dev/null || echo 0)
  bytes=$(cat /proc/sys/kernel/keys/maxbytes 2>/dev/null || echo 0)
  if [ "$keys" -lt 20000 ] || [ "$bytes" -lt 1000000 ]; then
    say "raising the kernel's key quota per user (kernel.keys.maxkeys=20000, maxbytes=1000000) for remapped containers"
    sysctl -q -w kernel.keys.maxkeys=20000 kernel.keys.maxbytes=1000000 2>/dev/null ||
      warn "cannot raise kernel.keys.maxkeys: past about 200 sandboxes new containers will fail to start"
  fi
}
if [ "$(id -u)" = 0 ]; then raise_key_quota; fi

if answers && remapped && ! live_restore; then
  # Without live restore every sandbox dies with the engine. One this
  # script started, with nothing running, is restarted with it.
  pid=$(running_pid)
  if [ -n "$pid" ] && ours "$pid" && [ "$(id -u)" = 0 ] && [ -z "$(docker ps -q 2>/dev/null)" ]; then
    say "dockerd $pid (started by this script, nothing running) has no --live-restore: restarting it with it"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do dead "$pid" && break; sleep 0.5; done
    if ! dead "$pid"; then echo "dockerd $pid did not stop within 60 s" >&2; exit 1; fi
  else
    warn "the engine at $DOCKER_HOST runs without --live-restore (sandboxes stop when it restarts); it is left alone: restart it with --live-restore (or \"live-restore\": true in /etc/docker/daemon.json) when nothing runs."
  fi
fi
if answers; then
  if remapped; then say "engine answers (user namespaces remapped$(live_restore && echo ', live restore'))"; exit 0; fi
  pid=$(running_pid)
  if [ -z "$pid" ] || ! ours "$pid" || [ "$(id -u)" != 0 ]; then
    warn "the engine at $DOCKER_HOST runs WITHOUT user-namespace remapping, and this script did not start it, so it leaves it alone."
    how_to_remap
    exit 0
  fi
  if [ -n "$(docker ps -q 2>/dev/null)" ]; then
    warn "dockerd $pid runs WITHOUT user-namespace remapping and has running containers: it is left alone (stop them, or restart it yourself)."
    how_to_remap
    exit 0
  fi
  say "dockerd $pid (started by this script) runs without --userns-remap: restarting it with it"
  say "(its containers stop; the remapped engine has its own image store, so \`make image\` builds the image again)"
  kill -TERM "$pid"
  for _ in $(seq 1 120); do dead "$pid" && break; sleep 0.5; done
  if ! dead "$pid"; then echo "dockerd $pid did not stop within 60 s" >&2; exit 1; fi
fi

if ! command -v dockerd >/dev/null; then
  say "installing docker.io (apt)"
  if [ "$(id -u)" != 0 ]; then echo "need root to install docker.io; install it and start dockerd" >&2; exit 1; fi
  # Where the package starts the engine itself (systemd), it starts remapped.
  if [ ! -e /etc/docker/daemon.json ]; then
    mkdir -p /etc/docker && echo '{"userns-remap": "default"}' >/etc/docker/daemon.json
  fi
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers; start it (sudo systemctl start docker) and run again" >&2; exit 1
fi

start() {
  # A killed dockerd leaves its pid file behind.
  rm -f "$PIDFILE" "$MARK"
  say "starting dockerd (user namespaces remapped, live restore, no bridge, no iptables); log in $LOG"
  local remap=--userns-remap=default live=--live-restore
  in_daemon_json userns-remap && remap=
  in_daemon_json live-restore && live=
  # --live-restore: containers keep running while the engine restarts, and
  # a server on the agents' direct sockets keeps talking to them meanwhile.
  # shellcheck disable=SC2086 # EXTRA, remap and live are lists of flags
  nohup dockerd $remap $live --bridge=none --iptables=false --ip-forward=false \
    -H "$DOCKER_HOST" --pidfile "$PIDFILE" $EXTRA >>"$LOG" 2>&1 &
  echo $! >"$MARK"
}
[ -n "$(running_pid)" ] || start
retried=
for _ in $(seq 1 60); do
  # After a kill -9 the old containerd may still hold its socket, and the
  # new dockerd gives up on it: once, start it again.
  started=$(cat "$MARK" 2>/dev/null || true)
  if [ -n "$started" ] && [ ! -e "/proc/$started" ] && [ -z "$retried" ]; then
    retried=1; sleep 1; start
  fi
  if answers; then
    if remapped; then
      say "engine answers (user namespaces remapped: $(grep '^dockremap:' /etc/subuid 2>/dev/null || echo '?'))"
    else
      warn "the engine answers but does not remap user namespaces (see $LOG)"
      how_to_remap
    fi
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not answer within 30 s; see $LOG" >&2
exit 1
