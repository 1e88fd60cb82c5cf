"""Lifetime and memory: 100,000 requests through the WSGI server with the
process's memory flat after warm-up, and request objects that are created
and dropped (collected or closed) without leaking their FCGX_Request.

The client is a raw socket written here: it pipelines many requests on
each kept-alive connection (a writer thread sends, the test reads), so the
whole test takes seconds."""

from __future__ import annotations

import struct
import sys
import threading
import time

import fcgiclient as fc
from conftest import write_module

TOTAL = 100_000
PER_CONNECTION = 10_000
BATCH = 500

_HEADER = struct.Struct(">BBHHBx")


def _pipeline(path: str, count: int, request: bytes) -> int:
    """Sends ``count`` copies of ``request`` on one connection while reading
    the replies; returns the number of FCGI_END_REQUEST records seen."""
    conn = fc.Connection(path, timeout=60)
    sock = conn.sock
    errors = []

    def writer():
        try:
            batch = request * BATCH
            for _ in range(count // BATCH):
                sock.sendall(batch)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    ends = 0
    buf = bytearray()
    stdout_bytes = 0
    while ends < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        pos, n = 0, len(buf)
        while n - pos >= 8:
            _, kind, _, length, pad = _HEADER.unpack_from(buf, pos)
            end = pos + 8 + length + pad
            if end > n:
                break
            if kind == fc.END_REQUEST:
                ends += 1
            elif kind == fc.STDOUT:
                stdout_bytes += length
            pos = end
        del buf[:pos]
    t.join(30)
    conn.close()
    assert not errors, errors
    return ends


SERVER = """
    def app(environ, start_response):
        body = environ["wsgi.input"].read(1024)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello " + environ["REQUEST_URI"].encode() + body]
"""


def test_100k_requests_memory_flat(spawn, tmp):
    write_module(tmp, "memapp", SERVER)
    path = str(tmp / "mem.sock")
    p = spawn([sys.executable, "-m", "libfcgi.wsgi", "memapp:app", "--bind", path,
               "--threads", "2"], path, cwd=tmp)
    request = fc.encode_request(fc.cgi_params("/mem?q=1", "POST", b"x" * 100), b"x" * 100,
                                keep_conn=True)
    rss = []
    t0 = time.monotonic()
    done = 0
    while done < TOTAL:
        done += _pipeline(path, PER_CONNECTION, request)
        rss.append(p.rss_kib())
    elapsed = time.monotonic() - t0
    assert done == TOTAL
    # Warm-up: the first 20,000 requests (allocator pools, caches).
    warm = rss[1]
    growth = max(rss[2:]) - warm
    print(f"\n{TOTAL} requests in {elapsed:.1f} s; RSS (KiB) per 10k: {rss}; growth after warm-up: {growth} KiB")
    assert growth < 1024, f"memory grew by {growth} KiB after warm-up: {rss}"
    # And it still answers.
    r = fc.request(path, fc.cgi_params("/last"))
    assert r.body == b"hello /last"


CHURN = """
    import gc, sys, libfcgi
    path, count = sys.argv[1], int(sys.argv[2])
    server = libfcgi.Server(path)
    print("ready", flush=True)
    for i in range(count):
        req = server.request()          # a new FCGX_Request each time
        if not req.accept():
            break
        req.stdout.write(b"Content-Type: text/plain\\r\\n\\r\\nreq %d" % i)
        req.finish()
        if i % 2:
            req.close()                 # released explicitly
        del req                         # ... or when collected
        if i in (2000, count - 1):
            with open("/proc/self/status") as f:
                rss = [l for l in f if l.startswith("VmRSS")][0].split()[1]
            print("rss", i, rss, flush=True)
    """


def test_request_objects_are_released(spawn, tmp):
    script = write_module(tmp, "churn", CHURN)
    path = str(tmp / "churn.sock")
    count = 6000
    p = spawn([sys.executable, str(script), path, str(count)], path)
    for i in range(count):
        r = fc.request(path, fc.cgi_params(f"/{i}"))
        assert r.body == b"req %d" % i
    code, out, err = p.finish(timeout=30)
    assert code == 0, err
    rss = {int(line.split()[1]): int(line.split()[2]) for line in out.splitlines()
           if line.startswith("rss")}
    # Each FCGX_Request holds ~200 KiB of buffers once used: 4,000 leaked
    # ones would be ~800 MiB; a leak of the Python objects alone, a few MiB.
    growth = rss[count - 1] - rss[2000]
    print(f"\nRSS after 2000 request objects: {rss[2000]} KiB, after {count}: {rss[count - 1]} KiB")
    assert growth < 1024, rss
