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
import json
import os
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
waiting_lock = threading.Lock()
next_id = [0]


def send(obj):
    line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    with write_lock:
        channel_out.write(line)


def read_replies():
    for line in channel_in:
        try:
            reply = json.loads(line)
            slot = waiting.pop(reply.pop("id"))
        except (ValueError, KeyError, AttributeError, TypeError):
            continue
        slot.append(reply)
        slot[0].set()
    # The server went away: wake every waiter with an error.
    for slot in list(waiting.values()):
        slot.append({"ok": False, "error": {"type": "ConnectionError", "message": "the grader stopped"}})
        slot[0].set()


def serve(conn):
    with conn:
        reader = conn.makefile("rb")
        for line in reader:
            if len(line) > MAX_LINE:
                break
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError
            except ValueError:
                reply = {"ok": False, "error": {"type": "ValueError", "message": "not a JSON object"}}
            else:
                event = threading.Event()
                slot = [event]
                with waiting_lock:
                    next_id[0] += 1
                    rid = next_id[0]
                waiting[rid] = slot
                request["id"] = rid
                send(request)
                event.wait()
                reply = slot[1]
            conn.sendall((json.dumps(reply, separators=(",", ":")) + "\n").encode())


def main():
    command = sys.argv[sys.argv.index("--") + 1:]
    first = json.loads(channel_in.readline())
    stdin_text = first.get("stdin", "")
    modules = first.get("modules", [])

    private = tempfile.mkdtemp(prefix="replbox-harness-")
    os.chmod(private, 0o700)
    # The student's Python modules, as proxies that call across the channel.
    stubs = os.path.join(private, "modules")
    os.mkdir(stubs)
    for name in modules:
        # Never in place of a module the tools themselves import.
        if name in sys.stdlib_module_names or name in ("pytest", "_pytest", "replbox_harness"):
            continue
        with open(os.path.join(stubs, name + ".py"), "w") as f:
            f.write("from replbox_harness import _attr\n\n\ndef __getattr__(name):\n    return _attr(__name__, name)\n")
    path = os.path.join(private, "channel.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    threading.Thread(target=read_replies, daemon=True).start()

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
    env.pop("PYTHONSTARTUP", None)
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=2, stderr=2, env=env)
    try:
        proc.stdin.write(stdin_text.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    code = proc.wait()
    sys.stdout.flush()
    os._exit(code if code >= 0 else 128 - code)


main()
