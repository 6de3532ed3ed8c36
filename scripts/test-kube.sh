#!/usr/bin/env bash
# `make test-kube`: against the test cluster of `make kube`, applies
# deploy/kubernetes/'s RBAC and checks it, runs a smoke test of one sandbox
# pod (our image, the agent as PID 1, the lock-down of issue #14, a
# workspace claim whose size the volume enforces) and of its agent over the
# attach stream, runs tests/kube.rs (the backend) as the server's account,
# and last runs the server itself as deploy/kubernetes/'s Deployment. Not
# part of `make test`. Prints "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
STATE=${KUBE_STATE:-/var/lib/replbox/kube}
export KUBECONFIG=${KUBECONFIG:-$STATE/admin.kubeconfig}
AGENT=${REPLBOX_AGENT:-$ROOT/target/x86_64-unknown-linux-gnu/release/replbox-agent}
IMAGE=${REPLBOX_IMAGE:-replbox-sandbox:latest}
NS=replbox-sandboxes
SA=system:serviceaccount:replbox:replbox-server
passed=0 failed=0
say() { echo "==> test-kube: $*"; }
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { local what=$1; shift; if out=$("$@" 2>&1); then ok "$what"; else bad "$what: $out"; fi; }
want() { local expect=$1; shift; local got; got=$("$@" 2>&1); [ "$got" = "$expect" ] || { echo "got: $got"; return 1; }; }
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

kubectl get --raw /readyz >/dev/null || { echo "no cluster answers at $KUBECONFIG: run \`make kube\`"; exit 1; }
[ -x "$AGENT" ] || { echo "no agent at $AGENT: run \`make agent\`"; exit 1; }

say "applying deploy/kubernetes/ (the server's Deployment comes last, below)"
check "namespaces, RBAC and NetworkPolicy apply" \
  kubectl apply -f "$ROOT/deploy/kubernetes/namespaces.yaml" -f "$ROOT/deploy/kubernetes/rbac.yaml" \
  -f "$ROOT/deploy/kubernetes/networkpolicy.yaml"
can() {
  local verb=$1 res=${2%%/*} sub=
  [ "$2" = "$res" ] || sub=--subresource=${2#*/}
  shift 2
  [ "$(kubectl auth can-i "$verb" "$res" $sub "$@" --as "$SA" 2>/dev/null)" = "$answer" ]
}
for v in "create pods" "delete pods" "watch pods" "patch pods" "create pods/attach" "get pods/attach" "create persistentvolumeclaims"; do
  answer=yes check "server account may $v in $NS" can $v -n $NS
done
for v in "create pods/exec" "get pods/exec" "get secrets" "get pods/log" "create pods/portforward" "update networkpolicies"; do
  answer=no check "server account may not $v in $NS" can $v -n $NS
done
answer=no check "server account may not create pods in default" can create pods -n default
answer=no check "server account may not list nodes" can list nodes

# A pod is refused until the namespace's default ServiceAccount exists (the
# controller manager makes it a moment after the namespace).
for _ in $(seq 1 60); do kubectl -n $NS get serviceaccount default >/dev/null 2>&1 && break; sleep 0.5; done

say "agent image (static agent, FROM scratch) into the cluster"
sum=$(sha256sum "$AGENT" | cut -c1-12)
AGENT_IMAGE=localhost/replbox/agent:$sum
if ! docker image inspect "$AGENT_IMAGE" >/dev/null 2>&1; then
  ctx=$(mktemp -d); cp "$AGENT" "$ctx/agent"; chmod 755 "$ctx/agent"
  printf 'FROM scratch\nCOPY agent /agent\n' > "$ctx/Dockerfile"
  docker build -q -t "$AGENT_IMAGE" "$ctx" >/dev/null; rm -rf "$ctx"
fi
docker tag "$AGENT_IMAGE" localhost/replbox/agent:test
"$HERE/ensure-kube.sh" import "$AGENT_IMAGE"
"$HERE/ensure-kube.sh" import localhost/replbox/agent:test
"$HERE/ensure-kube.sh" import "$IMAGE" 2>/dev/null || true

# TEST_KUBE_ONLY=server: only the server's Deployment (below), to work on it.
if [ "${TEST_KUBE_ONLY:-}" != server ]; then

say "a workspace claim of class replbox-quota (scripts/kube/provisioner.py)"
run=$(date +%s)
POD=sandbox-smoke-$run CLAIM=workspace-smoke-$run
check "StorageClass replbox-quota (provisioner replbox.local/quota)" want replbox.local/quota \
  kubectl get storageclass replbox-quota -o jsonpath='{.provisioner}'
t0=$(now)
kubectl apply -f - >/dev/null <<EOY
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $CLAIM, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: replbox-quota
  resources: {requests: {storage: 64Mi}}
EOY
if kubectl -n $NS wait --for=jsonpath='{.status.phase}'=Bound "pvc/$CLAIM" --timeout=15s >/dev/null; then
  t1=$(now); ok "the claim is Bound in $(ms "$t0" "$t1") ms (apply to Bound)"
else
  bad "the claim is not Bound within 15 s: $(kubectl -n $NS describe pvc "$CLAIM" | tail -8)"
fi
PV=$(kubectl -n $NS get pvc "$CLAIM" -o jsonpath='{.spec.volumeName}')
VOL=$STATE/volumes/$PV
check "its PersistentVolume is the provisioner's: local, 64Mi, reclaim Delete, on this node" \
  want "replbox.local/quota local=$VOL 64Mi Delete localhost" kubectl get pv "$PV" -o \
  jsonpath='{.metadata.annotations.pv\.kubernetes\.io/provisioned-by} local={.spec.local.path} {.spec.capacity.storage} {.spec.persistentVolumeReclaimPolicy} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}'
volume() { echo "$(findmnt -n -o FSTYPE "$VOL") $(findmnt -n -o SOURCE "$VOL" | tr -d 0-9) $(stat -c %s "$VOL.img")"; }
check "the volume is a loop-mounted ext4 image of 64 MiB" want "ext4 /dev/loop $((64 << 20))" volume

pod_yaml() {
  sed -e "s|@NAME@|$1|; s|@IMAGE@|$IMAGE|; s|@AGENT_IMAGE@|$AGENT_IMAGE|; s|@CLAIM@|$2|" "$ROOT/tests/kube/sandbox-pod.yaml"
}
say "sandbox pod $POD"
t0=$(now)
if pod_yaml "$POD" "$CLAIM" | kubectl apply -f - >/dev/null &&
  kubectl -n $NS wait --for=condition=Ready "pod/$POD" --timeout=180s >/dev/null; then
  t1=$(now); ok "sandbox pod Ready in $(ms "$t0" "$t1") ms (apply to Ready, first pod)"
else
  bad "sandbox pod not Ready: $(kubectl -n $NS describe pod "$POD" | tail -15)"
fi
check "the restricted Pod Security Standard admitted it (namespace enforces it)" \
  kubectl -n $NS get pod "$POD"
check "the agent answers Hello over kubectl attach -i" python3 "$ROOT/tests/kube/attach_hello.py" $NS "$POD" 30
# (kubectl's exec stream sometimes logs "Unknown stream id" on stderr: noise.)
x() { kubectl -n $NS exec "$POD" -c sandbox -- "$@" 2> >(grep -v 'Unknown stream id' >&2); }
check "PID 1 is the agent" want /opt/replbox/agent x sh -c 'tr "\\0" "\\n" < /proc/1/cmdline | head -n1'
check "runs as uid 1000, not root" want 1000 x id -u
check "no capabilities" want "CapEff:	0000000000000000" x grep CapEff /proc/1/status
check "no new privileges" want "NoNewPrivs:	1" x grep NoNewPrivs /proc/1/status
check "seccomp filter on (RuntimeDefault)" want "Seccomp:	2" x grep '^Seccomp:' /proc/1/status
check "root filesystem read-only" want refused x sh -c 'touch /usr/x 2>/dev/null && echo written || echo refused'
check "agent mount read-only" want refused x sh -c 'touch /opt/replbox/x 2>/dev/null && echo written || echo refused'
check "/tmp writable" want ok x sh -c 'echo hi > /tmp/x && echo ok'
check "/workspace writable, on the claim's volume" want ok x sh -c 'echo kept > /workspace/f && echo ok'
check "the workspace file is on the PersistentVolume" want kept cat "$VOL/f"
# The kubelet gave the `local` volume the pod's fsGroup (chgrp, setgid).
check "the workspace is the pod's fsGroup's (gid 1000, setgid, group-writable)" \
  want "0:1000 2775" x stat -c '%u:%g %a' /workspace
nospace() {
  local out
  if out=$(x sh -c 'head -c 80M /dev/zero > /workspace/big' 2>&1); then
    echo "80 MiB written into a 64Mi claim"; return 1
  fi
  case $out in *"No space left on device"*) ;; *) echo "$out"; return 1 ;; esac
}
check "writing 80 MiB into the 64Mi claim fails: No space left on device" nospace
check "df in the sandbox shows the claim's size, not the host's disk" want yes \
  x sh -c 'test $(df -k /workspace | awk "NR == 2 {print \$2}") -le 65536 && echo yes'
check "after a full disk, the sandbox still works (files kept, space back)" want "kept again" \
  x sh -c 'rm /workspace/big && echo again > /workspace/g && echo $(cat /workspace/f /workspace/g)'
check "after a full disk, the agent still answers Hello" python3 "$ROOT/tests/kube/attach_hello.py" $NS "$POD" 30
check "no service account token" want absent x sh -c 'test -e /var/run/secrets/kubernetes.io && echo present || echo absent'
# enableServiceLinks: false drops every Service's variables but the
# apiserver's own (KUBERNETES_SERVICE_HOST/PORT), which the kubelet always
# sets; with no route out that address is unreachable.
check "no service links in the environment (but the apiserver's)" want 0 \
  x sh -c 'env | grep _SERVICE_HOST= | grep -vc ^KUBERNETES_SERVICE_HOST= || true'
check "no network: no route out" want unreachable x python3 -c '
import socket
try:
    socket.create_connection(("1.1.1.1", 80), timeout=3); print("connected")
except OSError as e:
    print("unreachable" if e.errno in (101, 113) else e)'

say "a second sandbox pod (images cached)"
POD2=$POD-2
t0=$(now)
if pod_yaml "$POD2" "$CLAIM" | sed 's|persistentVolumeClaim: {claimName: .*}|emptyDir: {}|' | kubectl apply -f - >/dev/null &&
  kubectl -n $NS wait --for=condition=Ready "pod/$POD2" --timeout=120s >/dev/null; then
  t1=$(now); ok "second sandbox pod Ready in $(ms "$t0" "$t1") ms (apply to Ready)"
else
  bad "second pod not Ready: $(kubectl -n $NS describe pod "$POD2" | tail -15)"
fi

say "cleaning up"
kubectl -n $NS delete pod "$POD" "$POD2" --wait=true --timeout=60s >/dev/null 2>&1
kubectl -n $NS delete pvc "$CLAIM" --wait=true --timeout=60s >/dev/null 2>&1
check "deleting the claim deletes its PersistentVolume" kubectl wait --for=delete "pv/$PV" --timeout=20s
cleaned() {
  if findmnt "$VOL" >/dev/null; then echo "$VOL is still mounted"; return 1; fi
  local p; for p in "$VOL.img" "$VOL"; do [ ! -e "$p" ] || { echo "$p is still there"; return 1; }; done
}
check "and the provisioner removed its mount, image and directory" cleaned

# The Kubernetes backend itself (tests/kube.rs): the server's own code makes
# the pods and claims, speaks to the agents over the attach stream, and
# runs the REST API, hostile code, the warm pool and expiry on them.
say "the Kubernetes backend: cargo test --features kube-tests --test kube, as the server's ServiceAccount"
# The tests talk to the cluster with the server's own identity (a token of
# deploy/kubernetes/rbac.yaml's ServiceAccount): its Role must be enough.
SERVER_KUBECONFIG=$STATE/server.kubeconfig
(
  umask 077
  token=$(kubectl -n replbox create token replbox-server --duration=2h)
  server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  [ -n "$ca" ] || ca=$(base64 -w0 < "$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')")
  cat > "$SERVER_KUBECONFIG" <<EOK
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: replbox-server, user: {token: "$token"}}]
contexts: [{name: replbox-server, context: {cluster: test, user: replbox-server, namespace: $NS}}]
current-context: replbox-server
EOK
)
out=$(cd "$ROOT" && KUBECONFIG=$SERVER_KUBECONFIG REPLBOX_BACKEND=kubernetes REPLBOX_KUBE_NAMESPACE=$NS \
  REPLBOX_KUBE_AGENT_IMAGE="$AGENT_IMAGE" REPLBOX_KUBE_PULL_POLICY=Never \
  REPLBOX_KUBE_STORAGE_CLASS=replbox-quota REPLBOX_IMAGE="$IMAGE" \
  cargo test --features kube-tests --test kube -- --test-threads=1 --nocapture 2>&1)
echo "$out" | grep -oE '(pod cold start|kubernetes vs docker).*' | sed 's/^/     /'
while read -r name verdict; do
  if [ "$verdict" = ok ]; then ok "backend: $name"; else bad "backend: $name"; fi
done < <(echo "$out" | awk '/^test [a-z_]+ \.\.\. /{name=$2} /(^| )(ok|FAILED)$/{if (name != "") {print name, $NF; name=""}}')
echo "$out" | grep -q '^test result: ok' || bad "backend tests: $(echo "$out" | grep -E 'panicked|test result' | head -5)"
fi

# The server itself in the cluster: deploy/kubernetes/ as an operator
# applies it, through tests/kube/server/ (this cluster's few differences:
# the node's network on 127.0.0.1, one replica, local images). Its
# identity is the ServiceAccount's token in the pod, its state a database
# of its own on our PostgreSQL.
say "the server as a Deployment (kubectl apply -k tests/kube/server: deploy/kubernetes/ for this cluster)"
say "release build of the server (cargo build --release --bin replbox; minutes the first time)"
(cd "$ROOT" && cargo build --release --quiet --bin replbox) || bad "release build of the server"
BIN=$ROOT/target/release/replbox
sum=$(sha256sum "$BIN" | cut -c1-12)
SERVER_IMAGE=localhost/replbox/server:$sum
if ! docker image inspect "$SERVER_IMAGE" >/dev/null 2>&1; then
  say "server image $SERVER_IMAGE (deploy/server.Dockerfile on $IMAGE)"
  ctx=$(mktemp -d); cp "$BIN" "$ctx/replbox"
  docker build -q -f "$ROOT/deploy/server.Dockerfile" --build-arg BASE="$IMAGE" -t "$SERVER_IMAGE" "$ctx" >/dev/null ||
    bad "docker build of the server image"
  rm -rf "$ctx"
fi
docker tag "$SERVER_IMAGE" localhost/replbox/server:test
"$HERE/ensure-kube.sh" import localhost/replbox/server:test
PG_URL=$(cat /var/lib/replbox/postgres.url 2>/dev/null) || { bad "no PostgreSQL: run \`make postgres\`"; PG_URL=; }
DB=replbox_cluster_${run:-$(date +%s)}
psql -q "$PG_URL" -c "CREATE DATABASE $DB" >/dev/null || bad "CREATE DATABASE $DB"
TOKEN=$(openssl rand -hex 16)
kubectl -n replbox delete secret replbox-database replbox-server --ignore-not-found >/dev/null
kubectl -n replbox create secret generic replbox-database --from-literal=url="${PG_URL%/*}/$DB" >/dev/null
kubectl -n replbox create secret generic replbox-server --from-literal=api-tokens="$TOKEN" \
  --from-file=token.key=<(head -c 32 /dev/urandom) >/dev/null
check "kubectl apply -k tests/kube/server (namespaces, RBAC, NetworkPolicy, ConfigMap, Deployment, Service)" \
  kubectl apply -k "$ROOT/tests/kube/server"
kubectl -n replbox rollout restart deployment/replbox-server >/dev/null # a new image under the same tag
check "the server's Deployment rolls out (a replica Ready: its /healthz answers)" \
  kubectl -n replbox rollout status deployment/replbox-server --timeout=180s
URL=http://127.0.0.1:18480
server_pod() { kubectl -n replbox get pod -l app.kubernetes.io/name=replbox-server --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}'; }
api() { curl -sS -m 150 -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
SRV=$(server_pod)
check "it runs as the ServiceAccount replbox-server, uid 10001" want "replbox-server 10001" \
  kubectl -n replbox get pod "$SRV" -o jsonpath='{.spec.serviceAccountName} {.spec.securityContext.runAsUser}'
check "with the account's token and no kubeconfig in the pod (the in-cluster identity is what it uses)" want "token no-kubeconfig" \
  kubectl -n replbox exec "$SRV" -- sh -c 'test -s /var/run/secrets/kubernetes.io/serviceaccount/token && printf "token " &&
    test -z "${KUBECONFIG:-}" && ! test -e "${HOME:-/}/.kube/config" && echo no-kubeconfig'
check "an API sandbox is made (201)" want 201 api -o /dev/null -w '%{http_code}' -X POST "$URL/api/v1/sandboxes" -d '{"taskId": "cluster-1"}'
check "it is ready" want ready sh -c "curl -sS -m 150 -H 'Authorization: Bearer $TOKEN' '$URL/api/v1/sandboxes/cluster-1?wait=120' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"status\"])'"
# The pod whose annotation names the task (a claimed warm pod is renamed
# so: its replbox.name annotation).
sandbox_pod() {
  kubectl -n $NS get pod -l replbox.managed=replbox-cluster -o json | python3 -c '
import json, sys
print(" ".join(p["metadata"]["uid"] for p in json.load(sys.stdin)["items"]
               if p["metadata"].get("annotations", {}).get("replbox.name", "").endswith("-cluster-1")
               and not p["metadata"].get("deletionTimestamp")))'
}
UID1=$(sandbox_pod)
check "it is a pod of this deployment in $NS" test -n "$UID1"
check "a file is written into its workspace" want 204 api -o /dev/null -w '%{http_code}' -X PUT "$URL/api/v1/sandboxes/cluster-1/files/kept.txt" --data-binary kept
exec_out() { api -X POST "$URL/api/v1/sandboxes/cluster-1/exec" -d "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["stdout"].strip(), r["exitCode"])'; }
check "python3 runs in it: 42" want "42 0" exec_out '{"command": "python3 -c \"print(6*7)\""}'
# The ConfigMap's limits, as the pod's cgroup and /tmp have them: one CPU
# (REPLBOX_CPUS 1.0), 256 MiB (REPLBOX_MEMORY_MB), a 64 MiB /tmp (REPLBOX_TMP_MB).
# cgroup v2's files, or v1's where the node has it (this machine does).
check "its CPU limit is one CPU (cgroup cpu.max, or v1's cfs quota and period)" want "100000 100000 0" exec_out \
  '{"command": "cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us)"}'
check "its memory limit is 256 MiB (cgroup memory.max, or v1's limit_in_bytes)" want "$((256 << 20)) 0" exec_out \
  '{"command": "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"}'
check "/tmp is 64 MiB: writing 80 MiB fails with No space left on device" want "No space left on device 0" \
  exec_out '{"command": "head -c 80M /dev/zero 2>&1 >/tmp/big | grep -o \"No space left on device\"; rm -f /tmp/big"}'
say "the server's pod is deleted; the Deployment makes another, which finds the sandbox in the store"
kubectl -n replbox delete pod "$SRV" --wait=true --timeout=60s >/dev/null
check "a new replica rolls out" kubectl -n replbox rollout status deployment/replbox-server --timeout=180s
# (The replacement may start while the old pod still holds the port, fail
# to bind and be restarted after a back-off: up to 2 minutes.)
for _ in $(seq 1 120); do [ "$(server_pod)" != "$SRV" ] && curl -fsS -m 2 "$URL/healthz" >/dev/null 2>&1 && break; sleep 1; done
check "a new server pod answers" sh -c "test '$(server_pod)' != '$SRV' && curl -fsS -m 5 $URL/healthz"
check "the file is kept and read by a run: kept" want "kept 0" exec_out '{"command": "cat kept.txt"}'
check "the same sandbox pod, re-attached (not made again)" want "${UID1:-none}" sandbox_pod
check "the sandbox is deleted (204)" want 204 api -o /dev/null -w '%{http_code}' -X DELETE "$URL/api/v1/sandboxes/cluster-1"
gone() { for _ in $(seq 1 60); do [ -z "$(sandbox_pod)" ] && return 0; sleep 1; done; echo "still there: $(sandbox_pod)"; return 1; }
check "and its pod is gone" gone
say "removing the server and what it made"
kubectl -n replbox delete deployment replbox-server --wait=true --timeout=60s >/dev/null 2>&1
kubectl -n $NS delete pod,pvc -l replbox.managed=replbox-cluster --wait=true --timeout=120s >/dev/null 2>&1
psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
