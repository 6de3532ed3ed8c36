"""The notebook benchmark, both sides with comparable Python clients in one
run, cell by cell alternating: `1+1` over replbox's page socket to the kernel
in the sandbox, and `1+1` against ipykernel on the host driven by
jupyter_client (no container, no web server). A cell is done, on both sides,
at its execute_result, its execute_reply and the kernel's idle status for it
(docs/protocol.md's definition). Prints one JSON line.

With a server URL and an API token, a third client alternates with the two:
a Jupyter client on the gateway's channels socket (/jupyter, the Jupyter
Server kernel API, JSON text messages), to a kernel of its own in an API
sandbox, `1+1` to the same three messages.

usage: cells.py WS_URL COOKIE CELLS [HTTP_URL TOKEN]
"""
import datetime
import json
import statistics
import sys
import time
import urllib.request
import uuid

from jupyter_client.manager import start_new_kernel
from websockets.sync.client import connect

url, cookie, cells = sys.argv[1], sys.argv[2], int(sys.argv[3])
gateway = sys.argv[4:6] if len(sys.argv) > 5 else None
WARM = 5


def gateway_start(base, token):
    req = urllib.request.Request(
        base + "/jupyter/api/kernels",
        method="POST",
        data=json.dumps({"name": "python3", "env": {"KERNEL_USERNAME": "bench-gateway"}}).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        kid = json.loads(r.read())["id"]
    ws_url = base.replace("http://", "ws://") + f"/jupyter/api/kernels/{kid}/channels"
    return connect(ws_url, additional_headers={"Authorization": f"token {token}"}, max_size=None)


class NoGateway:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


GW_SESSION = uuid.uuid4().hex


def gateway_cell(ws, msg_id):
    t = time.perf_counter()
    ws.send(json.dumps({
        "channel": "shell",
        "header": {
            "msg_id": msg_id, "msg_type": "execute_request", "username": "bench",
            "session": GW_SESSION, "version": "5.3",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
        "parent_header": {}, "metadata": {}, "buffers": [],
        "content": {"code": "1+1", "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    result = reply = idle = False
    while not (result and reply and idle):
        v = json.loads(ws.recv(timeout=30))
        if v.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = v.get("msg_type")
        result |= kind == "execute_result"
        reply |= kind == "execute_reply"
        idle |= kind == "status" and v["content"].get("execution_state") == "idle"
    return (time.perf_counter() - t) * 1000


def ours_start(ws):
    ws.send(json.dumps({"type": "kernel.start", "ref": "k"}))
    kernel = None
    while True:
        v = json.loads(ws.recv(timeout=60))
        if v.get("type") == "started" and v.get("kind") == "kernel":
            kernel = v["job"]
        if v.get("type") == "kernel.ready" and v.get("kernel") == kernel:
            return kernel
        if v.get("type") in ("error", "failed"):
            raise SystemExit(f"kernel.start failed: {v}")


def ours_cell(ws, kernel, msg_id):
    t = time.perf_counter()
    ws.send(json.dumps({"type": "kernel.execute", "kernel": kernel, "msgId": msg_id, "code": "1+1"}))
    result = reply = idle = False
    while not (result and reply and idle):
        v = json.loads(ws.recv(timeout=30))
        if v.get("type") != "kernel.message" or v.get("parentMsgId") != msg_id:
            continue
        kind = v.get("msgType")
        result |= kind == "execute_result"
        reply |= kind == "execute_reply"
        idle |= kind == "status" and v["content"].get("execution_state") == "idle"
    return (time.perf_counter() - t) * 1000


def direct_cell(kc):
    t = time.perf_counter()
    msg_id = kc.execute("1+1")
    result = idle = False
    while not (result and idle):
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        result |= msg["msg_type"] == "execute_result"
        idle |= msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
    while kc.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
        pass
    return (time.perf_counter() - t) * 1000


def cells_alternating(ws, kernel, kc, gw):
    ours, direct, through = [], [], []
    for i in range(cells + WARM):
        # Which side goes first rotates too (ABC, BCA, CAB, ...), so no
        # side always follows the same other one.
        o = g = d = None
        steps = ["ours", "gateway", "direct"]
        for step in steps[i % 3:] + steps[:i % 3]:
            if step == "ours":
                o = ours_cell(ws, kernel, f"b{i}")
            elif step == "gateway" and gw:
                g = gateway_cell(gw, f"g{i}")
            elif step == "direct":
                d = direct_cell(kc)
        if i >= WARM:
            ours.append(o)
            direct.append(d)
            if g is not None:
                through.append(g)
    return ours, direct, through


km, kc = start_new_kernel(kernel_name="python3")
try:
    with connect(url, additional_headers={"Cookie": cookie}, max_size=None) as ws:
        kernel = ours_start(ws)
        with (gateway_start(*gateway) if gateway else NoGateway()) as gw:
            ours, direct, through = cells_alternating(ws, kernel, kc, gw)
    figures = {
        "cell_roundtrip_p50_ms": round(statistics.median(ours), 3),
        "ipykernel_direct_p50_ms": round(statistics.median(direct), 3),
        "cells": cells,
    }
    if through:
        figures["gateway_cell_p50_ms"] = round(statistics.median(through), 3)
    print(json.dumps(figures))
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
