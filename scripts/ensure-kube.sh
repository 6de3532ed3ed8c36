#!/usr/bin/env bash
# Brings up a real single-node Kubernetes test cluster on this machine (issue
# #14, part 1), from Go modules and Debian's packages only, skipping whatever
# is already built or running. Not part of `make test`.
#
# - Builds into $REPLBOX_CACHE/kube/<version>/bin (default ~/.cache/replbox),
#   never into the repository, each skipped once built:
#     etcd                      go.etcd.io/etcd/server/v3 (etcdmain, own main)
#     kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
#                               k8s.io/kubernetes, built in a throwaway wrapper
#                               module (its go.mod replaces its staging modules
#                               by relative paths, so `go install` cannot)
#     containerd, containerd-shim-runc-v2, ctr
#                               github.com/containerd/containerd/v2 (cri-dockerd
#                               is not served by the module proxy here)
#     pause                     k8s's own pause.c from the kubernetes module,
#                               static, as a FROM-scratch image (no registry)
# - Makes a CA, certificates and kubeconfigs (openssl) under $KUBE_STATE
#   (default /var/lib/replbox/kube).
# - Starts every component in the background on 127.0.0.1 only (logs in
#   /var/log/replbox-kube-*.log), skipping what is running; imports the
#   sandbox image into containerd; waits for the node Ready; prints
#   KUBECONFIG.
#
# Networking: a pod gets its own network namespace with only loopback and an
# eth0 (scripts/kube/replbox-nonet, a CNI plugin of ours): no route
# anywhere. Sandboxes need none: the agent connection is the attach stream
# (apiserver -> kubelet -> CRI).
#
# Workspaces: StorageClass `replbox-quota` (scripts/kube/storageclass.yaml)
# and its provisioner, scripts/kube/provisioner.py, started as one more
# component: each claim gets a loop-mounted ext4 image of its size under
# $KUBE_STATE/volumes, so its size is enforced.
#
# `scripts/ensure-kube.sh down` stops every component (make kube-down); the
# volumes' images stay (students' files) and are mounted again by the next
# `up`.
set -euo pipefail
say() { echo "==> kube: $*"; }
die() { echo "==> kube: ERROR: $*" >&2; exit 1; }

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.4}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.1.5}
CACHE=${REPLBOX_CACHE:-$HOME/.cache/replbox}
DIR="$CACHE/kube/$K8S_VERSION"
BIN="$DIR/bin"
STATE=${KUBE_STATE:-/var/lib/replbox/kube}
RUN=/run/replbox-kube
LOG=/var/log/replbox-kube
# The node is "localhost": the kubelet refuses a loopback --node-ip, and the
# apiserver reaches it by its Hostname address, so at 127.0.0.1.
NODE=${KUBE_NODE_NAME:-localhost}
ETCD_PORT=32379
API_PORT=36443
PAUSE_IMAGE=localhost/replbox/pause:$K8S_VERSION
SANDBOX_IMAGE=${REPLBOX_IMAGE:-replbox-sandbox:latest}
# The OCI runtime containerd's runc shim runs (BinaryName).
KUBE_RUNC=${KUBE_RUNC:-$(command -v runc || true)}
HERE=$(cd "$(dirname "$0")" && pwd)
export PATH=$PATH:/usr/local/go/bin
# Others build on the same two cores.
export GOFLAGS="${GOFLAGS:--p=2} -buildvcs=false" CGO_ENABLED=0
NICE="nice -n 10"

build_k8s() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubelet) missing=() c
  for c in "${want[@]}"; do [ -x "$BIN/$c" ] || missing+=("$c"); done
  if [ ${#missing[@]} = 0 ]; then say "kubernetes $K8S_VERSION already built"; return; fi
  say "building ${missing[*]} $K8S_VERSION from k8s.io/kubernetes (first time: long, see docs/kubernetes.md)"
  local mod="$DIR/src/kubernetes" minor=${K8S_VERSION#v1.}
  local staging="v0.$minor"
  mkdir -p "$mod" "$BIN"
  local gomod="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/go.mod"
  [ -f "$gomod" ] || (cd "$mod" && go mod download k8s.io/kubernetes@"$K8S_VERSION")
  {
    echo "module replbox.local/kubebuild"
    echo "go 1.24.0"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    # Every staging module its go.mod replaces by a relative path, at its
    # released version instead.
    sed -n '/^replace (/,/^)/p' "$gomod" | awk '$2 == "=>" && $3 ~ /^\.\// {print "replace " $1 " => " $1 " '"$staging"'"}'
  } > "$mod/go.mod"
  local pkgs=() ldv="k8s.io/component-base/version"
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$mod" && $NICE go build -mod=mod -trimpath -o "$BIN/" \
    -ldflags "-s -w -X $ldv.gitVersion=$K8S_VERSION -X $ldv.gitMajor=1 -X $ldv.gitMinor=${minor%%.*} -X $ldv.gitTreeState=clean" \
    "${pkgs[@]}")
  say "built ${missing[*]} ($(du -sh "$BIN" | cut -f1) in $BIN)"
}

build_etcd() {
  if [ -x "$BIN/etcd" ]; then say "etcd $ETCD_VERSION already built"; return; fi
  say "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3"
  local mod="$DIR/src/etcd"
  mkdir -p "$mod" "$BIN"
  cat > "$mod/go.mod" <<EOM
module replbox.local/etcdbuild
go 1.24.0
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOM
  # etcd's own main.go is only this (in the repository's root module).
  cat > "$mod/main.go" <<'EOM'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOM
  (cd "$mod" && $NICE go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN/etcd" .)
  say "built etcd"
}

build_containerd() {
  local want=(containerd containerd-shim-runc-v2 ctr) missing=() c
  for c in "${want[@]}"; do [ -x "$BIN/$c" ] || missing+=("$c"); done
  if [ ${#missing[@]} = 0 ]; then say "containerd $CONTAINERD_VERSION already built"; return; fi
  say "building ${missing[*]} $CONTAINERD_VERSION from github.com/containerd/containerd/v2"
  # A wrapper module: its go.mod has exclude directives, so `go install
  # pkg@version` refuses it; its excludes are copied over.
  local mod="$DIR/src/containerd" pkgs=() c
  mkdir -p "$mod" "$BIN"
  local gomod="$(go env GOMODCACHE)/github.com/containerd/containerd/v2@$CONTAINERD_VERSION/go.mod"
  [ -f "$gomod" ] || (cd "$mod" && go mod download github.com/containerd/containerd/v2@"$CONTAINERD_VERSION")
  {
    echo "module replbox.local/containerdbuild"
    echo "go 1.24.0"
    echo "require github.com/containerd/containerd/v2 $CONTAINERD_VERSION"
    sed -n '/^exclude (/,/^)/p' "$gomod"
  } > "$mod/go.mod"
  for c in "${missing[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$c"); done
  (cd "$mod" && $NICE go build -mod=mod -trimpath -tags no_btrfs,no_devmapper,no_zfs -o "$BIN/" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" "${pkgs[@]}")
  say "built ${missing[*]}"
}

build_pause() {
  if [ -x "$BIN/pause" ]; then return; fi
  local src="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  [ -f "$src" ] || (cd /tmp && go mod download k8s.io/kubernetes@"$K8S_VERSION")
  say "building pause from k8s's $src (static)"
  gcc -Os -static -Wall -DVERSION="$K8S_VERSION" -o "$BIN/pause" "$src"
  strip "$BIN/pause"
}


PKI="$STATE/pki"
# A key and a certificate signed by our CA: name, subject, extensions.
cert() {
  local name=$1 subj=$2 ext=$3
  [ -f "$PKI/$name.crt" ] && return
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  printf '%b\n' "$ext" > "$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
kubeconfig() {
  local name=$1 user=$2
  [ -f "$STATE/$name.kubeconfig" ] && return
  cat > "$STATE/$name.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: replbox-kube
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$name.crt")
    client-key-data: $(base64 -w0 "$PKI/$name.key")
contexts:
- name: replbox-kube
  context: {cluster: replbox-kube, user: $user}
current-context: replbox-kube
EOK
  chmod 600 "$STATE/$name.kubeconfig"
}

make_pki() {
  mkdir -p "$PKI" && chmod 700 "$STATE" "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    say "making the cluster's CA and certificates (openssl) in $PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
      -days 3650 -subj "/CN=replbox-kube-ca" 2>/dev/null
  fi
  local client='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'
  cert apiserver "/CN=kube-apiserver" \
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local'
  cert kubelet-serving "/CN=$NODE" \
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:'"$NODE"
  cert admin "/O=system:masters/CN=replbox-admin" "$client"
  cert apiserver-kubelet-client "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" "$client"
  cert controller-manager "/CN=system:kube-controller-manager" "$client"
  cert scheduler "/CN=system:kube-scheduler" "$client"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE" "$client"
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig admin replbox-admin
  kubeconfig controller-manager system:kube-controller-manager
  kubeconfig scheduler system:kube-scheduler
  kubeconfig kubelet "system:node:$NODE"
}

write_configs() {
  mkdir -p "$STATE/cni/bin" "$STATE/cni/net.d" "$STATE/containerd" "$RUN"
  install -m 755 "$HERE/kube/replbox-nonet" "$STATE/cni/bin/replbox-nonet"
  # containerd also runs the `loopback` plugin for every pod's lo.
  install -m 755 "$HERE/kube/replbox-nonet" "$STATE/cni/bin/loopback"
  cat > "$STATE/cni/net.d/10-replbox-nonet.conflist" <<EOC
{"cniVersion": "1.0.0", "name": "replbox-nonet", "plugins": [{"type": "replbox-nonet"}]}
EOC
  # containerd 2's CRI gives every container RLIMIT_NOFILE 1024:524288; here
  # root's hard limit is 20000 and cannot be raised (no CAP_SYS_RESOURCE:
  # "operation not permitted"), so a base spec with the hard limit this
  # machine allows.
  local hard; hard=$(ulimit -Hn)
  "$BIN/ctr" oci spec | python3 -c '
import json, sys
s = json.load(sys.stdin)
s["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": int(sys.argv[1]), "soft": min(1024, int(sys.argv[1]))}]
json.dump(s, sys.stdout, indent=1)' "$hard" > "$STATE/containerd/base-spec.json"
  cat > "$STATE/containerd/config.toml" <<EOC
# containerd of the replbox test cluster: its own root, state and socket, so
# it never meets the Docker engine's containerd.
version = 3
root = "$STATE/containerd/root"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = "$RUN/containerd.sock"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins."io.containerd.cri.v1.runtime"]
  # No process here may lower an oom_score_adj (no CAP_SYS_RESOURCE in the
  # bounding set): runc's init dies writing the -998 the kubelet asks for a
  # pod sandbox ("failed to update /proc/self/oom_score_adj: Permission
  # denied", reported as "can't get final child's PID from pipe: EOF").
  # Clamp every pod's score to containerd's own (0) instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$STATE/cni/bin"]
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    base_runtime_spec = "$STATE/containerd/base-spec.json"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "$KUBE_RUNC"
      SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
EOC
  cat > "$STATE/kubelet.yaml" <<EOC
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$RUN/containerd.sock
failSwapOn: false
clusterDomain: cluster.local
podLogsDir: $STATE/pod-logs
# The machine's disk is shared and often nearly full (2 GB free seen); the
# sandbox image is imported, never pulled, so it must never be collected.
evictionHard: {memory.available: 200Mi, nodefs.available: 300Mi, imagefs.available: 300Mi, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# The agent reaches a sandbox pod as an image volume (beta in 1.34).
featureGates: {ImageVolume: true}
# Processes (and threads) per pod: Kubernetes has no per-pod field for it,
# so the node bounds every pod (REPLBOX_PIDS_LIMIT's default; a fork bomb
# without it took this 2-core node to a load of 60).
podPidsLimit: 256
# A sandbox's agent speaks on stdout, which the runtime logs: rotated small
# and often (each pod's ephemeral-storage limit bounds the rest).
containerLogMaxSize: 10Mi
containerLogMaxFiles: 2
containerLogMonitorInterval: 3s
EOC
}

running() { local pid; pid=$(cat "$RUN/$1.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
start() {
  local name=$1; shift
  if running "$name"; then say "$name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  say "starting $name (log $LOG-$name.log)"
  PATH="$BIN:$PATH" setsid "$@" >>"$LOG-$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}
wait_for() {
  local what=$1 tries=$2; shift 2
  for _ in $(seq 1 "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$what did not come up; see its log"
}
KCTL() { kubectl --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
CTR() { "$BIN/ctr" --address "$RUN/containerd.sock" -n k8s.io "$@"; }

import_images() {
  if ! CTR images ls -q | grep -x "$PAUSE_IMAGE" >/dev/null; then
    say "pause image $PAUSE_IMAGE (k8s's pause.c, static, FROM scratch) into containerd"
    local ctx; ctx=$(mktemp -d)
    cp "$BIN/pause" "$ctx/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$ctx/Dockerfile"
    docker build -q -t "$PAUSE_IMAGE" "$ctx" 2>&1 >/dev/null | grep -vE "DEPRECATED|buildx|BuildKit|^ *$" >&2 || true
    rm -rf "$ctx"
    docker save "$PAUSE_IMAGE" | CTR images import --local --discard-unpacked-layers --label io.cri-containerd.pinned=pinned - >/dev/null
  fi
  local want="docker.io/library/$SANDBOX_IMAGE"
  local id; id=$(docker image inspect -f '{{.Id}}' "$SANDBOX_IMAGE" 2>/dev/null) ||
    die "no $SANDBOX_IMAGE in the Docker engine: run \`make image\` first"
  if [ "$(cat "$STATE/sandbox-image.id" 2>/dev/null)" != "$id" ] || ! CTR images ls -q | grep -x "$want" >/dev/null; then
    say "importing $SANDBOX_IMAGE ($id) from the Docker engine into containerd (docker save | ctr import)"
    docker save "$SANDBOX_IMAGE" | CTR images import --local --discard-unpacked-layers --label io.cri-containerd.pinned=pinned - >/dev/null
    echo "$id" > "$STATE/sandbox-image.id"
  else
    say "$SANDBOX_IMAGE already imported"
  fi
}

up() {
  [ "$(id -u)" = 0 ] || die "the kubelet and containerd run as root: run as root"
  command -v go >/dev/null || die "Go is needed to build the cluster (none on PATH)"
  command -v kubectl >/dev/null || die "kubectl is needed (Debian: apt-get install kubernetes-client)"
  command -v runc >/dev/null || die "runc is needed (Debian: apt-get install runc)"
  build_etcd; build_containerd; build_k8s; build_pause
  mkdir -p "$STATE" "$RUN" "$(dirname "$LOG")"
  make_pki
  write_configs
  start etcd "$BIN/etcd" --name replbox-kube --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:32380 --initial-advertise-peer-urls http://127.0.0.1:32380 \
    --initial-cluster replbox-kube=http://127.0.0.1:32380
  start containerd "$BIN/containerd" --config "$STATE/containerd/config.toml"
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --secure-port "$API_PORT" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --feature-gates ImageVolume=true \
    --kubelet-preferred-address-types Hostname --kubelet-certificate-authority "$PKI/ca.crt" --allow-privileged=false
  wait_for kube-apiserver 240 KCTL get --raw /readyz
  # The apiserver's client certificate for the kubelet is in this group.
  KCTL get clusterrolebinding replbox-apiserver-kubelet >/dev/null 2>&1 ||
    KCTL create clusterrolebinding replbox-apiserver-kubelet --clusterrole system:kubelet-api-admin \
      --group kubeadm:cluster-admins >/dev/null
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials --service-cluster-ip-range 10.96.0.0/16
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
  wait_for containerd 120 "$BIN/ctr" --address "$RUN/containerd.sock" version
  import_images
  KCTL apply -f "$HERE/kube/storageclass.yaml" >/dev/null
  start provisioner env KUBECONFIG="$STATE/admin.kubeconfig" KUBE_STATE="$STATE" KUBE_NODE_NAME="$NODE" \
    python3 -u "$HERE/kube/provisioner.py"
  start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE"
  say "waiting for node $NODE Ready"
  wait_for "node $NODE Ready" 360 KCTL wait --for=condition=Ready "node/$NODE" --timeout=1s
  say "cluster up: export KUBECONFIG=$STATE/admin.kubeconfig"
  echo "KUBECONFIG=$STATE/admin.kubeconfig"
}

down() {
  stop() {
    local name=$1 pid
    running "$name" || { rm -f "$RUN/$name.pid"; return 0; }
    pid=$(cat "$RUN/$name.pid")
    say "stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$RUN/$name.pid"
  }
  stop provisioner
  stop kubelet
  # The kubelet leaves its pods running; end them before their runtime.
  if running containerd; then
    local t
    for t in $(CTR tasks ls -q 2>/dev/null); do CTR tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
    for t in $(CTR tasks ls -q 2>/dev/null); do CTR tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop kube-scheduler; stop kube-controller-manager; stop kube-apiserver; stop containerd; stop etcd
  # The provisioner's loop mounts go (their loop devices with them); the
  # images stay, and the next `up` mounts them again.
  local m n=0
  for m in $(awk -v d="$STATE/volumes/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo); do
    [ -f "$m.img" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m"
    n=$((n + 1))
  done
  [ "$n" = 0 ] || say "unmounted $n workspace volumes (images kept in $STATE/volumes)"
  say "stopped (state kept in $STATE; remove it for a fresh cluster)"
}

case "${1:-up}" in
  build) build_etcd; build_containerd; build_k8s; build_pause ;;
  build-kubernetes) build_k8s ;;
  up) up ;;
  down) down ;;
  # `import IMAGE`: an image of the Docker engine into the cluster's
  # containerd (there is no registry), pinned so it is never collected.
  import)
    [ -n "${2:-}" ] || die "usage: $0 import IMAGE"
    docker save "$2" | CTR images import --local --discard-unpacked-layers --label io.cri-containerd.pinned=pinned - >/dev/null ;;
  *) die "usage: $0 [up|down|build|import IMAGE]" ;;
esac
