"""Drives replbox's /mcp with the official MCP Python SDK (PyPI `mcp`), as an
agent's MCP client would, and asserts what the agent sees. Exit 0 when every
check holds; otherwise a traceback naming the one that did not.

Usage: python3 mcp_check.py http://127.0.0.1:PORT TOKEN OTHER_TOKEN
"""

import asyncio
import base64
import contextlib
import sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

BASE, TOKEN, OTHER = sys.argv[1], sys.argv[2], sys.argv[3]
URL = BASE + "/mcp"
TOOLS = {
    "run_code": {"language", "code", "stdin", "timeoutMs"},
    "create_sandbox": {"taskId", "ttlSeconds"},
    "run_command": {"taskId", "command", "stdin", "timeoutMs"},
    "write_file": {"taskId", "path", "content"},
    "read_file": {"taskId", "path"},
    "list_files": {"taskId", "path"},
    "destroy_sandbox": {"taskId"},
}
REQUIRED = {
    "run_code": {"language", "code"},
    "create_sandbox": set(),
    "run_command": {"taskId", "command"},
    "write_file": {"taskId", "path", "content"},
    "read_file": {"taskId", "path"},
    "list_files": {"taskId"},
    "destroy_sandbox": {"taskId"},
}


@contextlib.asynccontextmanager
async def connect(token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def text(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def ok(session, tool, args):
    r = await session.call_tool(tool, args)
    assert not r.is_error, f"{tool} {args}: {text(r)}"
    return r


async def fails(session, tool, args, code):
    r = await session.call_tool(tool, args)
    assert r.is_error, f"{tool} {args} should fail, answered {text(r)}"
    got = (r.structured_content or {}).get("error", {}).get("code")
    assert got == code, f"{tool} {args}: code {got!r}, wanted {code!r}: {text(r)}"
    assert text(r).strip(), f"{tool}: an error with no sentence"
    return r


async def main():
    # 1. No token, a wrong token: 401 with our JSON error, and the SDK
    # cannot even initialize.
    async with httpx2.AsyncClient() as raw:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
            r = await raw.post(
                URL,
                headers={**headers, "Accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            )
            assert r.status_code == 401, (headers, r.status_code, r.text)
            assert r.json()["error"]["code"] == "unauthorized", r.text
    refused = False
    try:
        async with connect("wrong"):
            pass
    except BaseException:  # the SDK raises an exception group
        refused = True
    assert refused, "the SDK initialized with a wrong token"

    async with connect(TOKEN) as s:
        # 2. The tools, with their schemas.
        listed = {t.name: t for t in (await s.list_tools()).tools}
        assert set(listed) == set(TOOLS), sorted(listed)
        for name, tool in listed.items():
            schema = tool.input_schema
            assert schema.get("type") == "object", (name, schema)
            assert set(schema.get("properties", {})) == TOOLS[name], (name, schema)
            assert set(schema.get("required", [])) == REQUIRED[name], (name, schema)
            assert tool.description, name

        # 3. run_code: a throwaway sandbox.
        r = await ok(s, "run_code", {"language": "python", "code": "print(6*7)"})
        assert r.structured_content["stdout"] == "42\n", r.structured_content
        assert r.structured_content["exitCode"] == 0
        assert isinstance(r.structured_content["durationMs"], int)
        assert "42" in text(r) and "exit code: 0" in text(r), text(r)
        r = await ok(s, "run_code", {
            "language": "python",
            "code": "import sys\nprint(input()[::-1])\nsys.stderr.write('oops\\n')\nsys.exit(3)",
            "stdin": "abc\n",
        })
        sc = r.structured_content
        assert (sc["stdout"], sc["stderr"], sc["exitCode"]) == ("cba\n", "oops\n", 3), sc
        r = await ok(s, "run_code", {"language": "bash", "code": "sleep 5", "timeoutMs": 300})
        assert r.structured_content["timedOut"] is True, r.structured_content
        await fails(s, "run_code", {"language": "cobol", "code": "x"}, "unknown_language")
        await fails(s, "run_code", {"language": "python"}, "bad_arguments")
        await fails(s, "run_code", {"language": "python", "code": "1", "timeoutMs": 0}, "bad_timeout")
        await fails(s, "run_code", {"language": "python", "code": "1", "extra": 1}, "bad_arguments")

        # 4. A sandbox that keeps state.
        r = await ok(s, "create_sandbox", {"taskId": "mcp-work"})
        assert r.structured_content["taskId"] == "mcp-work", r.structured_content
        r = await ok(s, "write_file", {"taskId": "mcp-work", "path": "src/hello.py",
                                        "content": "print('hi from a file')\n"})
        assert r.structured_content["version"], r.structured_content
        r = await ok(s, "read_file", {"taskId": "mcp-work", "path": "src/hello.py"})
        assert text(r) == "print('hi from a file')\n", text(r)
        assert r.structured_content["encoding"] == "utf-8"
        # An absolute path inside /workspace means what it says.
        r = await ok(s, "read_file", {"taskId": "mcp-work", "path": "/workspace/src/hello.py"})
        assert text(r) == "print('hi from a file')\n", text(r)
        await ok(s, "write_file", {"taskId": "mcp-work", "path": "/workspace/abs.txt", "content": "abs"})
        r = await ok(s, "list_files", {"taskId": "mcp-work", "path": "/workspace"})
        assert "abs.txt" in [e["name"] for e in r.structured_content["entries"]], r.structured_content
        r = await ok(s, "list_files", {"taskId": "mcp-work"})
        names = {e["name"]: e["kind"] for e in r.structured_content["entries"]}
        assert names.get("src") == "dir", names
        r = await ok(s, "list_files", {"taskId": "mcp-work", "path": "src"})
        assert [e["name"] for e in r.structured_content["entries"]] == ["hello.py"], r.structured_content
        r = await ok(s, "run_command", {"taskId": "mcp-work",
                                         "command": "pwd; python3 src/hello.py; echo state > kept.txt"})
        assert r.structured_content["stdout"] == "/workspace\nhi from a file\n", r.structured_content
        r = await ok(s, "run_command", {"taskId": "mcp-work", "command": "cat kept.txt; cat", "stdin": "in\n"})
        assert r.structured_content["stdout"] == "state\nin\n", r.structured_content
        # Bytes that are not UTF-8 come back as base64, with a note.
        await ok(s, "run_command", {"taskId": "mcp-work", "command": "printf '\\377\\000\\001' > bin.dat"})
        r = await ok(s, "read_file", {"taskId": "mcp-work", "path": "bin.dat"})
        sc = r.structured_content
        assert sc["encoding"] == "base64" and base64.b64decode(sc["content"]) == b"\xff\x00\x01", sc
        assert "base64" in sc["note"], sc
        # Long output is cut with a marker an agent can read.
        r = await ok(s, "run_command", {"taskId": "mcp-work", "command": "yes abcdefgh | head -c 300000"})
        assert "output truncated" in text(r), text(r)[-200:]
        assert r.structured_content["truncated"] is True
        assert len(r.structured_content["stdout"]) < 100_000

        # 5. Paths outside the workspace, and errors as tool results.
        for path in ["../etc/passwd", "/etc/passwd", "a/../../x", "/workspace/../etc/passwd", "/workspaces/x"]:
            await fails(s, "read_file", {"taskId": "mcp-work", "path": path}, "path_outside_workspace")
            await fails(s, "write_file", {"taskId": "mcp-work", "path": path, "content": "x"},
                        "path_outside_workspace")
        await fails(s, "read_file", {"taskId": "mcp-work", "path": "missing.txt"}, "not_found")
        await fails(s, "run_command", {"taskId": "no-such-task", "command": "true"}, "not_found")
        await fails(s, "create_sandbox", {"taskId": "bad id!"}, "bad_task_id")
        await fails(s, "run_command", {"taskId": "mcp-work"}, "bad_arguments")
        await fails(s, "run_command", {"taskId": "mcp-work", "command": "true", "timeoutMs": 0}, "bad_timeout")
        await fails(s, "no_such_tool", {}, "unknown_tool")

        # 6. Another token does not see this token's sandbox, and may
        # use the same taskId for a sandbox of its own (names are per token).
        async with connect(OTHER) as o:
            await fails(o, "read_file", {"taskId": "mcp-work", "path": "kept.txt"}, "not_found")
            await fails(o, "destroy_sandbox", {"taskId": "mcp-work"}, "not_found")
            r = await ok(o, "create_sandbox", {"taskId": "mcp-work"})
            assert r.structured_content["taskId"] == "mcp-work", r.structured_content
            await ok(o, "write_file", {"taskId": "mcp-work", "path": "kept.txt", "content": "other\n"})
            r = await ok(o, "run_command", {"taskId": "mcp-work", "command": "ls; cat kept.txt"})
            assert r.structured_content["stdout"] == "kept.txt\nother\n", r.structured_content
            await ok(o, "destroy_sandbox", {"taskId": "mcp-work"})
        r = await ok(s, "read_file", {"taskId": "mcp-work", "path": "kept.txt"})
        assert text(r) == "state\n", text(r)

        # 7. Destroyed: gone.
        await ok(s, "destroy_sandbox", {"taskId": "mcp-work"})
        await fails(s, "run_command", {"taskId": "mcp-work", "command": "true"}, "not_found")
    print("mcp: every check passed")


asyncio.run(main())
