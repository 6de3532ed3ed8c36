#!/usr/bin/env python3
"""A size-enforcing volume provisioner for the replbox test cluster (#14).

StorageClass `replbox-quota` (provisioner `replbox.local/quota`): each
PersistentVolumeClaim of that class gets a sparse ext4 image of exactly its
requested size, loop-mounted at $KUBE_STATE/volumes/pvc-<claim uid>, and a
`local` PersistentVolume on that path, pinned to this node and pre-bound to
the claim. The filesystem's size is the quota: a full workspace is ENOSPC
inside it and nowhere else (this kernel has no XFS project or ext4 quotas;
the Docker backend's src/sandbox/quota.rs does the same per workspace).

- A PV of ours that is Released (its claim deleted) or Failed is unmounted,
  its image and directory removed, and the PV deleted.
- Every PV of ours whose directory is not mounted (after a reboot or
  `make kube-down`) has its image mounted again.

Only the test cluster needs this: a real cluster has its own StorageClass
whose driver enforces sizes (docs/kubernetes.md). Python's standard library
and `kubectl` only ($KUBECONFIG). Cheap on two cores: two idle
`kubectl get -w` processes wake it, and a full list (one kubectl call) is
read only after a change, or every RESYNC seconds. One log line per action.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal, InvalidOperation

CLASS = os.environ.get("REPLBOX_KUBE_STORAGE_CLASS", "replbox-quota")
PROVISIONER = "replbox.local/quota"
ANNOTATION = "pv.kubernetes.io/provisioned-by"
STATE = os.environ.get("KUBE_STATE", "/var/lib/replbox/kube")
VOLUMES = os.path.join(STATE, "volumes")
# The node the volumes live on: this machine's. When unset, the cluster's
# only node.
NODE = os.environ.get("KUBE_NODE_NAME", "")
# A full list now and then, in case a watch missed something.
RESYNC = float(os.environ.get("REPLBOX_PROVISIONER_RESYNC", "30"))
KUBECTL = ["kubectl", "--request-timeout=15s"]
# What we name our volumes; nothing else is ever unmounted or removed.
PV_NAME = re.compile(r"^pvc-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MIB = 1 << 20

wake = threading.Event()
stopping = threading.Event()
children = set()
children_lock = threading.Lock()
# Refusals already logged (by claim uid and reason), so each is said once.
said = {}


def log(msg):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} provisioner: {msg}", flush=True)


def say_once(key, msg):
    """Logs `msg` unless something was said under `key` already."""
    if key not in said:
        said[key] = True
        log(msg)


class Failed(Exception):
    pass


def run(cmd, stdin=None, timeout=60):
    """Runs a command; its stdout, or Failed with its stderr."""
    try:
        out = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failed(f"{' '.join(cmd[:4])}: {e}") from None
    if out.returncode != 0:
        raise Failed(f"{' '.join(cmd[:4])}: {out.stderr.strip() or out.returncode}")
    return out.stdout


def kubectl(*args, stdin=None):
    return run(KUBECTL + list(args), stdin=stdin)


# --- quantities ---------------------------------------------------------

SUFFIX = {
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "m": Decimal("0.001"), "": 1,
}
QUANTITY = re.compile(r"^([+]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|)$")


def quantity_bytes(q):
    """A Kubernetes quantity ("64Mi", "1G", "1e9") in whole bytes, rounded up."""
    m = QUANTITY.match(str(q).strip())
    if not m:
        raise ValueError(f"not a quantity: {q!r}")
    try:
        value = Decimal(m.group(1)) * SUFFIX[m.group(2)]
    except InvalidOperation:
        raise ValueError(f"not a quantity: {q!r}") from None
    whole = int(value.to_integral_value(rounding="ROUND_CEILING"))
    if whole <= 0:
        raise ValueError(f"not a positive size: {q!r}")
    return whole


# --- mounts and images --------------------------------------------------

def mounted(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def paths(pv_name):
    d = os.path.join(VOLUMES, pv_name)
    return d, d + ".img"


def mount(image, directory):
    os.makedirs(directory, exist_ok=True)
    run(["mount", "-o", "loop,nosuid,nodev,noatime", image, directory])
    # Nobody needs fsck's corner in a student's workspace (and the kubelet's
    # fsGroup pass would open it up to the group).
    try:
        os.rmdir(os.path.join(directory, "lost+found"))
    except OSError:
        pass


def make_image(image, size):
    """A sparse ext4 image of `size` bytes (rounded up to a MiB)."""
    size = -(-size // MIB) * MIB
    making = image + ".making"
    with open(making, "wb") as f:
        f.truncate(size)
    # mkfs's default journal for 1 GiB is 32 MiB of written blocks; 4 MiB
    # is plenty for a workspace (too big below 16 MiB: the default there).
    journal = ["-J", "size=4"] if size >= 64 * MIB else []
    try:
        run(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-m", "0", *journal, making])
    except Failed:
        os.unlink(making)
        raise
    os.rename(making, image)


def unmount(directory):
    if not mounted(directory):
        return
    try:
        run(["umount", directory])
    except Failed as e:
        # Busy (a pod's bind not yet undone): detach it now; the loop device
        # goes with its last user.
        log(f"umount {directory} busy ({e}); detaching it lazily")
        run(["umount", "-l", directory])


# --- the cluster --------------------------------------------------------

node_label = None


def this_node():
    """The value of this node's kubernetes.io/hostname label (what a PV's
    node affinity is matched against), looked up once."""
    global node_label
    if node_label:
        return node_label
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    if NODE:
        nodes = [n for n in nodes if n["metadata"]["name"] == NODE]
    if len(nodes) != 1:
        raise Failed(
            f"want exactly one node{' named ' + NODE if NODE else ''}, the cluster has "
            f"{len(nodes)} (set KUBE_NODE_NAME)"
        )
    meta = nodes[0]["metadata"]
    node_label = meta.get("labels", {}).get("kubernetes.io/hostname", meta["name"])
    return node_label


def claim_class(pvc):
    return pvc["spec"].get("storageClassName") or pvc["metadata"].get(
        "annotations", {}
    ).get("volume.beta.kubernetes.io/storage-class")


def provision(pvc):
    meta, spec = pvc["metadata"], pvc["spec"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    who = f"claim {ns}/{name}"
    if spec.get("volumeMode", "Filesystem") != "Filesystem":
        return say_once(uid + " mode", f"{who}: volumeMode {spec['volumeMode']} is not supported, skipped")
    if spec.get("selector") or spec.get("dataSource") or spec.get("dataSourceRef"):
        return say_once(uid + " source", f"{who}: selectors and data sources are not supported, skipped")
    request = spec.get("resources", {}).get("requests", {}).get("storage")
    try:
        size = quantity_bytes(request)
    except ValueError as e:
        return say_once(uid + " size", f"{who}: {e}, skipped")
    pv = f"pvc-{uid}"
    if not PV_NAME.match(pv):
        return say_once(uid + " uid", f"{who}: uid {uid!r} is not a UUID, skipped")
    node = this_node()
    directory, image = paths(pv)
    if not os.path.exists(image):
        free = shutil.disk_usage(VOLUMES).free
        if size > free:
            return say_once(
                uid + " space", f"{who}: asks {request}, the disk has {free // MIB} MiB free: not provisioned"
            )
        make_image(image, size)
        log(f"{who}: made {image} ({request}, sparse ext4)")
    if not mounted(directory):
        mount(image, directory)
        # root:root 0775: the kubelet gives a `local` volume the pod's
        # fsGroup (chgrp, g+rwX, setgid) on its first mount.
        os.chown(directory, 0, 0)
        os.chmod(directory, 0o775)
        log(f"{who}: mounted {image} on {directory}")
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv,
            "annotations": {ANNOTATION: PROVISIONER},
            "labels": {"app.kubernetes.io/managed-by": "replbox-quota-provisioner"},
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": directory},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": ns,
                "name": name,
                "uid": uid,
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
    try:
        kubectl("create", "-f", "-", stdin=json.dumps(body))
        log(f"{who}: created PersistentVolume {pv} ({request}, local {directory})")
    except Failed as e:
        if "AlreadyExists" not in str(e) and "already exists" not in str(e):
            raise


def delete(pv):
    name = pv["metadata"]["name"]
    directory, image = paths(name)
    phase = pv.get("status", {}).get("phase")
    if pv["metadata"].get("deletionTimestamp") and not (
        mounted(directory) or os.path.exists(image) or os.path.exists(directory)
    ):
        return  # done; the PV goes when its protection finalizer does
    unmount(directory)
    removed = []
    if os.path.exists(image):
        os.unlink(image)
        removed.append(image)
    try:
        os.rmdir(directory)
        removed.append(directory + "/")
    except FileNotFoundError:
        pass
    kubectl("delete", "pv", name, "--wait=false", "--ignore-not-found")
    log(f"PersistentVolume {name} {phase}: unmounted, removed {' '.join(removed) or 'nothing'}, deleted")


def remount(pv):
    name = pv["metadata"]["name"]
    directory, image = paths(name)
    if mounted(directory):
        return
    if not os.path.exists(image):
        return say_once(name + " image", f"PersistentVolume {name}: its image {image} is missing")
    mount(image, directory)
    log(f"PersistentVolume {name}: mounted {image} on {directory} again")


def reconcile():
    items = json.loads(kubectl("get", "pvc,pv", "-A", "-o", "json"))["items"]
    pvs = {i["metadata"]["name"]: i for i in items if i["kind"] == "PersistentVolume"}
    errors = []

    def attempt(what, fn, obj):
        try:
            fn(obj)
        except (Failed, OSError, KeyError, ValueError) as e:
            errors.append(f"{what}: {e}")

    for name, pv in pvs.items():
        if pv["metadata"].get("annotations", {}).get(ANNOTATION) != PROVISIONER:
            continue
        if not PV_NAME.match(name):
            say_once(name + " name", f"PersistentVolume {name} claims to be ours but is not named by us; left alone")
            continue
        phase = pv.get("status", {}).get("phase")
        if phase in ("Released", "Failed") and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            attempt(f"deleting {name}", delete, pv)
        elif pv["metadata"].get("deletionTimestamp") is None:
            attempt(f"mounting {name}", remount, pv)
    for pvc in items:
        if pvc["kind"] != "PersistentVolumeClaim" or claim_class(pvc) != CLASS:
            continue
        if pvc.get("status", {}).get("phase", "Pending") != "Pending":
            continue
        if pvc["spec"].get("volumeName") or pvc["metadata"].get("deletionTimestamp"):
            continue
        if f"pvc-{pvc['metadata']['uid']}" in pvs:
            continue  # made; the PV controller binds it
        attempt(f"claim {pvc['metadata']['namespace']}/{pvc['metadata']['name']}", provision, pvc)
    if errors:
        raise Failed("; ".join(errors))


# --- the loop -----------------------------------------------------------

def watch(resource):
    """Wakes the loop on every event of `resource`, re-watching after any
    end (the apiserver closes watches now and then, or is down)."""
    pause = 1.0
    while not stopping.is_set():
        started = time.monotonic()
        try:
            p = subprocess.Popen(
                ["kubectl", "get", resource, "-A", "-w", "-o", "name"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        except OSError as e:
            log(f"cannot watch {resource}: {e}")
            stopping.wait(5)
            continue
        with children_lock:
            children.add(p)
        complaint = None
        for line in p.stdout:
            if "/" in line and " " not in line.strip():
                wake.set()
            elif complaint is None:
                complaint = line.strip()
        rc = p.wait()
        with children_lock:
            children.discard(p)
        if stopping.is_set():
            return
        if time.monotonic() - started > 60:
            pause = 1.0
        else:
            log(f"watch of {resource} ended (exit {rc}{': ' + complaint if complaint else ''}); again in {pause:.0f} s")
        wake.set()
        stopping.wait(pause)
        pause = min(pause * 2, 5.0)


def stop(signum, _frame):
    stopping.set()
    raise SystemExit(0)


def main():
    os.makedirs(VOLUMES, exist_ok=True)
    # An image whose mkfs was cut short is nobody's.
    for f in os.listdir(VOLUMES):
        if f.endswith(".img.making") and PV_NAME.match(f[: -len(".img.making")]):
            os.unlink(os.path.join(VOLUMES, f))
            log(f"removed a half-made image {f}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"started: class {CLASS}, provisioner {PROVISIONER}, volumes in {VOLUMES}")
    for resource in ("pvc", "pv"):
        threading.Thread(target=watch, args=(resource,), daemon=True).start()
    failing = 0
    try:
        while True:
            wake.clear()
            try:
                reconcile()
                if failing:
                    log("reconciled again")
                failing = 0
                wake.wait(RESYNC)
            except Failed as e:
                # The apiserver restarting, a busy mount: said, retried soon.
                failing += 1
                if failing <= 3 or failing % 30 == 0:
                    log(f"retrying ({failing}): {e}")
                wake.wait(min(0.5 * failing, 5.0))
    finally:
        stopping.set()
        with children_lock:
            for p in children:
                p.terminate()
        log("stopped")


if __name__ == "__main__":
    sys.exit(main())
