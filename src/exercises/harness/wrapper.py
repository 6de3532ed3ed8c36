# The grader container's side of a command test (run as `python3 -I`, as
# the grader's user, in a container that holds no file of the student's).
#
# Its stdin and stdout are the channel to the replbox server: one JSON
# object a line. It runs the test's command with stdout and stderr both on
# its own stderr (what the test printed), and serves the command's
# processes on a unix socket ($REPLBOX_CHANNEL): each request line a client
# sends there goes to the server with an id, and the server's reply with
# that id goes back to that client. The server answers calls into the
# student's code, runs of the student's program and messages for the
# student; nothing but plain JSON data crosses.
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_LINE = 4 * 1024 * 1024

channel_in = sys.stdin.buffer
channel_out = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
write_lock = threading.Lock()
waiting = {}
ids_lock = threading.Lock()
next_id = [0]


def read_replies():
    for line in channel_in:
        # The server puts the id first: `{"id":N,...`.
        head = re.match(rb'\{"id":(\d+),', line)
        slot = waiting.pop(int(head.group(1)), None) if head else None
        if slot is None:
            continue
        try:
            reply = json.loads(line)
            slot.append(reply["reply"])
        except Exception as e:  # too deep for Python, say: the answer fails
            slot.append({"ok": False, "error": {"type": type(e).__name__, "message": "the answer cannot be read"}})
        slot[0].set()
    # The server went away: wake every waiter with an error.
    for slot in list(waiting.values()):
        slot.append({"ok": False, "error": {"type": "ConnectionError", "message": "the grader stopped"}})
        slot[0].set()


def ask(obj):
    """Sends one request to the server and waits for its answer."""
    slot = [threading.Event()]
    with ids_lock:
        next_id[0] += 1
        rid = next_id[0]
    waiting[rid] = slot
    line = (json.dumps(dict(obj, id=rid), separators=(",", ":")) + "\n").encode()
    with write_lock:
        channel_out.write(line)
    slot[0].wait()
    return slot[1]


def serve(conn):
    with conn:
        for line in conn.makefile("rb"):
            if len(line) > MAX_LINE:
                break
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError
            except ValueError:
                reply = {"ok": False, "error": {"type": "ValueError", "message": "not a JSON object"}}
            else:
                reply = ask(obj)
            conn.sendall((json.dumps(reply, separators=(",", ":")) + "\n").encode())


def main():
    command = sys.argv[sys.argv.index("--") + 1:]
    first = json.loads(channel_in.readline())
    stdin_text = first.get("stdin", "")
    modules = first.get("modules", [])
    threading.Thread(target=read_replies, daemon=True).start()

    private = tempfile.mkdtemp(prefix="replbox-harness-")
    os.chmod(private, 0o700)
    # The student's Python modules, as proxies that call across the channel.
    # A name the grader's Python already has (the standard library, pytest
    # and what it needs) would either hide the student's module or break the
    # tools: that is the exercise's mistake, and it fails loudly.
    stubs = os.path.join(private, "modules")
    os.mkdir(stubs)
    for name in modules:
        if name == "replbox_harness" or importlib.util.find_spec(name) is not None:
            ask({"op": "report", "message": f"exercise error: the student's module {name!r} has the name of a module Python already has; rename it"})
            os._exit(3)
        with open(os.path.join(stubs, name + ".py"), "w") as f:
            f.write("from replbox_harness import _attr\n\n\ndef __getattr__(name):\n    return _attr(__name__, name)\n")

    path = os.path.join(private, "channel.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    env = dict(os.environ)
    env["REPLBOX_CHANNEL"] = path
    env["PYTHONPATH"] = os.pathsep.join([stubs, os.path.join(HERE, "lib")])
    env["PYTEST_ADDOPTS"] = "-p replbox_harness"
    env["PATH"] = os.path.join(HERE, "bin") + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=2, stderr=2, env=env)
    try:
        proc.stdin.write(stdin_text.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    code = proc.wait()
    os._exit(code if code >= 0 else 128 - code)


main()
