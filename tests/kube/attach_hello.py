#!/usr/bin/env python3
"""Speaks to a sandbox pod's agent over `kubectl attach -i`: sends the
protocol's Hello frame (ToAgent::Hello, postcard) and waits for the agent's
Hello carrying the same nonce. Prints the agent's name and the round trip.

usage: attach_hello.py NAMESPACE POD [TIMEOUT_SECONDS]"""
import os, secrets, subprocess, sys, time, select

MAGIC = bytes([0xF0, 0x9F, 0x93, 0xA6])
PROTOCOL_VERSION = 6


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def main():
    ns, pod = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30
    nonce = secrets.randbits(48)
    payload = b"\x00" + varint(PROTOCOL_VERSION) + varint(nonce)
    frame = MAGIC + len(payload).to_bytes(4, "big") + payload
    start = time.monotonic()
    proc = subprocess.Popen(
        ["kubectl", "attach", "-i", "-q", "-n", ns, pod, "-c", "sandbox"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdin.write(frame)
    proc.stdin.flush()
    buf = b""
    deadline = start + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            i = buf.find(MAGIC)
            while i >= 0 and len(buf) >= i + 8:
                n = int.from_bytes(buf[i + 4:i + 8], "big")
                if len(buf) < i + 8 + n:
                    break
                p = buf[i + 8:i + 8 + n]
                if p and p[0] == 0:  # FromAgent::Hello
                    version, j = read_varint(p, 1)
                    got, j = read_varint(p, j)
                    namelen, j = read_varint(p, j)
                    name = p[j:j + namelen].decode()
                    if got == nonce:
                        ms = (time.monotonic() - start) * 1000
                        print(f"agent Hello over kubectl attach: version {version}, agent {name!r}, {ms:.0f} ms")
                        return 0
                i = buf.find(MAGIC, i + 8 + n)
        proc.kill()
        err = proc.stderr.read()
        print(f"no Hello with nonce {nonce} within {timeout}s; got {len(buf)} bytes; kubectl: {err.decode(errors='replace')}")
        return 1
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
