"""The notebook benchmark's baseline: ipykernel on the host, driven by
jupyter_client directly (no container, no web server). Prints one JSON line."""
import json
import statistics
import sys
import time

from jupyter_client.manager import start_new_kernel

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
km, kc = start_new_kernel(kernel_name="python3")
try:
    times = []
    for i in range(runs + 5):
        t = time.perf_counter()
        msg_id = kc.execute("1+1")
        got_result = False
        while True:
            msg = kc.get_iopub_msg(timeout=10)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_result":
                got_result = True
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        kc.get_shell_msg(timeout=10)
        assert got_result
        if i >= 5:
            times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"ipykernel_direct_p50_ms": round(statistics.median(times), 3)}))
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
