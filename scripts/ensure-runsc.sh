#!/usr/bin/env bash
# Makes sure gVisor's `runsc` is built and registered with our Docker engine
# as the runtime `runsc`, so REPLBOX_RUNTIME=runsc can run sandboxes in it.
#
# - Builds runsc from gVisor's Go module (gvisor.dev/gvisor; the proxy serves
#   its buildable `go` branch as pseudo-versions) with the machine's Go, into
#   a cache outside the repository: $REPLBOX_CACHE/runsc/<version>/runsc
#   (default ~/.cache/replbox). A version already built is skipped. The first
#   build downloads about 40 modules and takes about 12 minutes on 2 cores.
# - Registers it WITHOUT restarting the engine: a `runtimes` entry merged into
#   /etc/docker/daemon.json, then SIGHUP to dockerd (runtimes reload on it),
#   then waits until `docker info` lists it. Running containers are untouched.
#
# GVISOR_VERSION picks another pseudo-version of the module.
set -euo pipefail
say() { echo "==> gvisor: $*"; }
die() { echo "==> gvisor: ERROR: $*" >&2; exit 1; }

VERSION=${GVISOR_VERSION:-v0.0.0-20260905035102-160fafc42237}
CACHE=${REPLBOX_CACHE:-$HOME/.cache/replbox}
DIR="$CACHE/runsc/$VERSION"
RUNSC="$DIR/runsc"
DAEMON_JSON=${REPLBOX_DAEMON_JSON:-/etc/docker/daemon.json}
PIDFILE=${REPLBOX_DOCKERD_PIDFILE:-/var/run/docker.pid}

command -v go >/dev/null || die "Go is needed to build runsc (none on PATH)"

if [ -x "$RUNSC" ]; then
  say "runsc $VERSION already built ($RUNSC)"
else
  say "building runsc $VERSION from the Go module gvisor.dev/gvisor (first time: about 12 minutes on 2 cores)"
  mkdir -p "$DIR"
  tmp=$(mktemp -d "$DIR/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # A module of its own, so `go install pkg@version` needs no go.mod here.
  (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install "gvisor.dev/gvisor/runsc@$VERSION")
  mv "$tmp/runsc" "$RUNSC"
  say "built $RUNSC ($(du -h "$RUNSC" | cut -f1))"
fi

runtimes() { docker info --format '{{json .Runtimes}}' 2>/dev/null; }
# runsc's own flags (none). Not --oci-seccomp: with it gVisor applies the
# container's seccomp profile inside too, but then no thread starts (ours or
# the engine's default profile: "OS can't spawn worker thread: Operation not
# permitted"); without it runsc ignores the profile and its kernel, which
# serves every system call itself, is the barrier.
ARGS='[]'
same='r = r or {}; ok = r.get("path") == sys.argv[1] and (r.get("runtimeArgs") or []) == json.loads(sys.argv[2])'
registered() { runtimes | python3 -c "import json,sys; r=json.load(sys.stdin).get('runsc'); $same; sys.exit(0 if ok else 1)" "$RUNSC" "$ARGS"; }

in_daemon_json() {
  python3 -c "import json,sys; r=json.load(open(sys.argv[3])).get('runtimes',{}).get('runsc'); $same; sys.exit(0 if ok else 1)" "$RUNSC" "$ARGS" "$DAEMON_JSON" 2>/dev/null
}

docker info >/dev/null 2>&1 || die "no Docker engine answers: run \`make docker\` first"
# In daemon.json too, so the engine's next start keeps it.
if ! in_daemon_json; then
  [ "$(id -u)" = 0 ] || die "registering a runtime writes $DAEMON_JSON and signals dockerd: run as root"
  say "registering runtime runsc in $DAEMON_JSON"
  mkdir -p "$(dirname "$DAEMON_JSON")"
  python3 - "$DAEMON_JSON" "$RUNSC" "$ARGS" <<'EOF2'
import json, os, sys
path, runsc, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
conf = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        conf = json.load(f)
conf.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": args}
tmp = path + ".replbox.tmp"
with open(tmp, "w") as f:
    json.dump(conf, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
EOF2
fi
if registered; then
  say "runtime runsc registered with the engine ($RUNSC)"
  exit 0
fi

pid=$(cat "$PIDFILE" 2>/dev/null || true)
[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] ||
  die "no dockerd at the pid in $PIDFILE: reload its configuration yourself (kill -HUP <dockerd pid>)"
say "reloading dockerd $pid's configuration (SIGHUP; nothing restarts)"
kill -HUP "$pid"
for _ in $(seq 1 50); do
  if registered; then
    say "runtime runsc registered: $(runtimes)"
    exit 0
  fi
  sleep 0.2
done
die "dockerd did not list runsc after SIGHUP; its log says why (a daemon.json it refuses?)"
