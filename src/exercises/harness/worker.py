# The student's side of a command test: runs as the student's user in the
# student's container (`python3 -I -c`), imports the student's modules from
# /workspace and answers one JSON request a line. Everything here is the
# student's to change, and nothing it answers is more than the student's
# own answer: the grader reads plain JSON data from it and decides.
import contextlib, importlib, io, json, os, sys, traceback

channel = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
sys.path.insert(0, "/workspace")
PLAIN = (type(None), bool, int, float, str)


def plain(value):
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__} cannot be sent to the tests (plain data only: None, bool, int, float, str, list, dict)")


def answer(request):
    module = importlib.import_module(str(request["module"]))
    value = getattr(module, str(request["name"]))
    if request["op"] == "get":
        if callable(value):
            return {"ok": True, "callable": True}
        return {"ok": True, "value": plain(value)}
    args = request.get("args") or []
    kwargs = request.get("kwargs") or {}
    return {"ok": True, "value": plain(value(*args, **kwargs))}


for line in sys.stdin:
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            reply = answer(json.loads(line))
    except BaseException as e:  # the student's exception, SystemExit included
        reply = {"ok": False, "error": {"type": type(e).__name__, "message": str(e)[:2000]}}
    reply["stdout"] = captured.getvalue()[-65536:]
    try:
        line = json.dumps(reply, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError) as e:  # NaN, infinity, too deep
        line = json.dumps({"ok": False, "error": {"type": "ValueError", "message": str(e)}})
    channel.write(line + "\n")
    channel.flush()
