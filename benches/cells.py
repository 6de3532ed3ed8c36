"""The notebook benchmark, both sides with comparable Python clients in one
run, cell by cell alternating: `1+1` over replbox's page socket to the kernel
in the sandbox, and `1+1` against ipykernel on the host driven by
jupyter_client (no container, no web server). A cell is done, on both sides,
at its execute_result, its execute_reply and the kernel's idle status for it
(docs/protocol.md's definition). Prints one JSON line.

usage: cells.py WS_URL COOKIE CELLS
"""
import json
import statistics
import sys
import time

from jupyter_client.manager import start_new_kernel
from websockets.sync.client import connect

url, cookie, cells = sys.argv[1], sys.argv[2], int(sys.argv[3])
WARM = 5


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


km, kc = start_new_kernel(kernel_name="python3")
try:
    with connect(url, additional_headers={"Cookie": cookie}, max_size=None) as ws:
        kernel = ours_start(ws)
        ours, direct = [], []
        for i in range(cells + WARM):
            # Which side goes first alternates too (AB, BA, ...).
            if i % 2 == 0:
                o = ours_cell(ws, kernel, f"b{i}")
                d = direct_cell(kc)
            else:
                d = direct_cell(kc)
                o = ours_cell(ws, kernel, f"b{i}")
            if i >= WARM:
                ours.append(o)
                direct.append(d)
    print(json.dumps({
        "cell_roundtrip_p50_ms": round(statistics.median(ours), 3),
        "ipykernel_direct_p50_ms": round(statistics.median(direct), 3),
        "cells": cells,
    }))
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
