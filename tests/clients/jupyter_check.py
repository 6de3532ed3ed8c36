"""Drives a stock Jupyter Server (PyPI `jupyter_server`) that runs in
gateway mode against replbox's /jupyter, through Jupyter Server's own REST
API and kernel channels socket, as JupyterLab would; then nbclient (PyPI)
executes a notebook through the same Jupyter Server. Also checks /jupyter's
auth and that KERNEL_USERNAME names the API sandbox whose files the kernel
sees. Exit 0 and "every check passed" when every check holds.

Usage: python3 jupyter_check.py REPLBOX_URL TOKEN JUPYTER_URL JUPYTER_TOKEN TASK_ID OPEN_JUPYTER_URL
(both Jupyter Servers were started with KERNEL_USERNAME=TASK_ID; the second,
for nbclient, without a token of its own: jupyter_server's gateway kernel
client opens its channels socket without any credentials).
"""

import asyncio
import base64
import datetime
import json
import sys
import urllib.error
import urllib.request
import uuid

import websockets

BASE, TOKEN, JS, JS_TOKEN, TASK, OPEN_JS = sys.argv[1:7]
TIMEOUT = 90


def http(method, url, token=None, scheme="token", body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, method=method, data=data)
    if token:
        req.add_header("Authorization", f"{scheme} {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def check(cond, what, detail=""):
    if not cond:
        raise AssertionError(f"{what}: {detail}")
    print("ok:", what, flush=True)


def direct_checks():
    url = BASE + "/jupyter/api/kernelspecs"
    status, body = http("GET", url)
    check(status == 401 and body["error"]["code"] == "unauthorized", "no token is 401", (status, body))
    status, body = http("GET", url, "not-a-token")
    check(status == 401, "a wrong token is 401", (status, body))
    status, body = http("GET", url, "garbage", scheme="Basic")
    check(status == 401, "another scheme is 401", (status, body))
    status, body = http("GET", url, TOKEN, scheme="Bearer")
    check(status == 200 and "python3" in body["kernelspecs"], "a bearer token lists kernelspecs", body)
    spec = body["kernelspecs"]["python3"]["spec"]
    check(spec["language"] == "python" and spec["display_name"], "the python3 spec", spec)
    status, body = http("GET", BASE + "/jupyter/api/kernels/no-such-kernel", TOKEN)
    check(status == 404 and body["error"]["code"] == "unknown_kernel", "an unknown kernel is 404", (status, body))
    # The framework's own refusals are our JSON errors too.
    status, body = http("GET", BASE + "/jupyter/api/sessions", TOKEN)
    check(status == 404 and body["error"]["code"] == "not_found", "an unknown route is a JSON 404", (status, body))
    status, body = http("PUT", BASE + "/jupyter/api/kernels", TOKEN)
    check(status == 405 and body["error"]["code"] == "method_not_allowed", "a wrong method is a JSON 405", (status, body))
    # The sandbox the Jupyter Server's kernels will use, and a file in it.
    status, body = http("POST", BASE + "/api/v1/sandboxes", TOKEN, "Bearer", {"taskId": TASK})
    check(status in (201, 409), "the API sandbox exists", (status, body))
    status, body = http(
        "PUT",
        BASE + f"/api/v1/sandboxes/{TASK}/files/data.txt",
        TOKEN,
        "Bearer",
        raw=b"hello from the files API",
    )
    check(status in (200, 201, 204), "a file written through the files API", (status, body))


class Kernel:
    """A Jupyter client on Jupyter Server's channels socket."""

    def __init__(self, ws):
        self.ws = ws
        self.session = uuid.uuid4().hex
        self.pending = []

    def message(self, msg_type, content, channel="shell"):
        msg_id = uuid.uuid4().hex
        return msg_id, {
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "check",
                "session": self.session,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }

    async def send_execute(self, code, allow_stdin=False):
        msg_id, msg = self.message(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": allow_stdin,
                "stop_on_error": True,
            },
        )
        await self.ws.send(json.dumps(msg))
        return msg_id

    async def recv(self):
        raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        return json.loads(raw)

    async def wait(self, msg_id, on_message=None):
        """Outputs and reply of one request, once its reply and idle came."""
        outputs, reply, idle = [], None, False
        while reply is None or not idle:
            m = await self.recv()
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if on_message:
                await on_message(m)
            t = m["msg_type"]
            if m["channel"] == "shell" and t.endswith("_reply"):
                reply = m
            elif m["channel"] == "iopub" and t == "status":
                idle = idle or m["content"]["execution_state"] == "idle"
            elif m["channel"] == "iopub" and t in ("stream", "execute_result", "display_data", "error"):
                outputs.append(m)
        return outputs, reply

    async def run(self, code, **kw):
        return await self.wait(await self.send_execute(code), **kw)


def result(outputs, mime="text/plain"):
    for o in outputs:
        if o["msg_type"] in ("execute_result", "display_data") and mime in o["content"]["data"]:
            return o["content"]["data"][mime]
    return None


async def through_jupyter_server():
    status, body = http("GET", JS + "/api/kernelspecs", JS_TOKEN)
    check(status == 200 and "python3" in body["kernelspecs"], "Jupyter Server lists the gateway's kernelspecs", body)
    status, session = http(
        "POST",
        JS + "/api/sessions",
        JS_TOKEN,
        body={"path": "check.ipynb", "name": "check.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
    )
    check(status == 201, "Jupyter Server starts a session", (status, session))
    kid = session["kernel"]["id"]
    status, listed = http("GET", BASE + "/jupyter/api/kernels", TOKEN)
    check(any(k["id"] == kid for k in listed), "the gateway lists the kernel", listed)

    ws_url = JS.replace("http://", "ws://") + f"/api/kernels/{kid}/channels?session_id={uuid.uuid4().hex}"
    headers = {"Authorization": f"token {JS_TOKEN}"}
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
        k = Kernel(ws)
        _, reply = await k.wait(await send_kernel_info(k))
        check(reply["content"]["status"] == "ok", "kernel_info answers", reply["content"])

        outputs, reply = await k.run("x = 41")
        check(reply["content"]["status"] == "ok", "a cell runs", reply["content"])
        outputs, reply = await k.run("x + 1")
        check(result(outputs) == "42", "state is kept between cells", outputs)

        outputs, reply = await k.run("1/0")
        errors = [o for o in outputs if o["msg_type"] == "error"]
        check(
            reply["content"]["status"] == "error"
            and errors
            and errors[0]["content"]["ename"] == "ZeroDivisionError"
            and errors[0]["content"]["traceback"],
            "an error arrives with ename and traceback",
            outputs,
        )

        outputs, _ = await k.run("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
        html = result(outputs, "text/html") or ""
        check("<table" in html and "<td>x</td>" in html, "a DataFrame's HTML", outputs)

        outputs, _ = await k.run(
            "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
        )
        png = result(outputs, "image/png")
        check(png and base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n", "a matplotlib PNG", outputs)

        outputs, _ = await k.run("open('data.txt').read()")
        check(result(outputs) == "'hello from the files API'", "the kernel reads the API sandbox's file", outputs)
        outputs, _ = await k.run("import os; os.getcwd()")
        check(result(outputs) == "'/workspace'", "the kernel works in /workspace", outputs)

        async def answer(m):
            if m["channel"] == "stdin" and m["msg_type"] == "input_request":
                _, reply = k.message("input_reply", {"value": "ada"}, channel="stdin")
                reply["parent_header"] = m["header"]
                await ws.send(json.dumps(reply))

        msg_id = await k.send_execute("input('name? ')", allow_stdin=True)
        outputs, _ = await k.wait(msg_id, on_message=answer)
        check(result(outputs) == "'ada'", "input() is answered on the stdin channel", outputs)

        # An endless loop, interrupted through Jupyter Server's REST API.
        msg_id = await k.send_execute("while True:\n    pass")
        while True:
            m = await k.recv()
            if (
                m["parent_header"].get("msg_id") == msg_id
                and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "busy"
            ):
                break
        status, model = http("GET", BASE + f"/jupyter/api/kernels/{kid}", TOKEN)
        check(model["execution_state"] == "busy" and model["connections"] >= 1, "the gateway sees it busy", model)
        status, _ = http("POST", JS + f"/api/kernels/{kid}/interrupt", JS_TOKEN, body={})
        check(status == 204, "Jupyter Server interrupts", status)
        outputs, reply = await k.wait(msg_id)
        errors = [o for o in outputs if o["msg_type"] == "error"]
        check(errors and errors[0]["content"]["ename"] == "KeyboardInterrupt", "the loop is interrupted", outputs)

        status, model = http("POST", JS + f"/api/kernels/{kid}/restart", JS_TOKEN, body={})
        check(status == 200 and model["id"] == kid, "Jupyter Server restarts the kernel", (status, model))
        outputs, reply = await k.run("x")
        errors = [o for o in outputs if o["msg_type"] == "error"]
        check(errors and errors[0]["content"]["ename"] == "NameError", "after a restart the state is gone", outputs)
        outputs, _ = await k.run("2 ** 10")
        check(result(outputs) == "1024", "the restarted kernel runs cells", outputs)

    status, _ = http("DELETE", JS + f"/api/sessions/{session['id']}", JS_TOKEN)
    check(status == 204, "Jupyter Server deletes the session", status)
    status, listed = http("GET", BASE + "/jupyter/api/kernels", TOKEN)
    check(all(k["id"] != kid for k in listed), "the kernel is gone from the gateway's list", listed)
    status, _ = http("GET", BASE + f"/jupyter/api/kernels/{kid}", TOKEN)
    check(status == 404, "the deleted kernel is 404")


async def send_kernel_info(k):
    msg_id, msg = k.message("kernel_info_request", {})
    await k.ws.send(json.dumps(msg))
    return msg_id


def nbclient_check():
    """nbclient runs a notebook with a kernel of a Jupyter Server (itself
    replbox's gateway client), through jupyter_server's gateway kernel
    manager. That manager's kernel client sends no credentials on its
    channels socket, so this Jupyter Server has no token (127.0.0.1 only);
    it still reaches replbox with the API token."""
    import nbformat
    from jupyter_server.gateway.gateway_client import GatewayClient
    from jupyter_server.gateway.managers import GatewayKernelManager
    from nbclient import NotebookClient

    class KernelManager(GatewayKernelManager):
        # jupyter_client's kernel client asks its manager `_async_is_alive`,
        # which GatewayKernelManager leaves to a base class that wants a
        # local process; its own `is_alive` asks the gateway.
        _async_is_alive = GatewayKernelManager.is_alive

    gateway = GatewayClient.instance()
    gateway.url = OPEN_JS
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("y = 6 * 7"),
        nbformat.v4.new_code_cell("print('y is', y)"),
        nbformat.v4.new_code_cell("y + 0"),
    ]
    client = NotebookClient(
        nb, timeout=TIMEOUT, kernel_name="python3", kernel_manager_class=KernelManager
    )
    client.execute()
    printed = nb.cells[1].outputs[0]
    check(printed["text"] == "y is 42\n", "nbclient: a cell prints", printed)
    check(nb.cells[2].outputs[0]["data"]["text/plain"] == "42", "nbclient: a result", nb.cells[2].outputs)
    nbformat.validate(nb)
    check(True, "nbclient: the executed notebook is valid")


direct_checks()
asyncio.run(through_jupyter_server())
nbclient_check()
print("every check passed")
