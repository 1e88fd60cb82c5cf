#!/usr/bin/env python3
"""A FastCGI load generator in plain Python (no dependencies).

Opens N connections to a FastCGI application and sends the same GET
request on each, one request at a time per connection (no pipelining),
for a fixed time; with --keepalive a connection carries every request
(FCGI_KEEP_CONN), without it each request gets a new connection. One
thread drives all connections with epoll/select, so the generator's own
cost per request stays low. Sockets are TCP_NODELAY and every request is
sent with one send(), so nothing here waits on Nagle's algorithm.

Prints one JSON object: requests, errors, seconds, rps, latency
percentiles (ms). Use --processes to spread the connections over several
processes when one core is not enough.

    python loadgen.py /tmp/app.sock --connections 8 --keepalive --duration 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import selectors
import socket
import struct
import sys
import time

_HEADER = struct.Struct(">BBHHBx")


def _record(kind: int, rid: int, content: bytes = b"") -> bytes:
    pad = (-len(content)) % 8
    return _HEADER.pack(1, kind, rid, len(content), pad) + content + b"\0" * pad


def _pair(name: bytes, value: bytes) -> bytes:
    def ln(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)

    return ln(len(name)) + ln(len(value)) + name + value


def build_request(uri: str, keepalive: bool, host: str = "localhost") -> bytes:
    path, _, query = uri.partition("?")
    params = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "loadgen"),
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", "GET"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("SCRIPT_NAME", path),
        ("REQUEST_URI", uri),
        ("DOCUMENT_URI", path),
        ("DOCUMENT_ROOT", "/var/www"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "50000"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", host),
        ("HTTP_HOST", host),
        ("HTTP_USER_AGENT", "loadgen/1.0"),
        ("HTTP_ACCEPT", "*/*"),
    ]
    body = b"".join(_pair(k.encode(), v.encode()) for k, v in params)
    flags = 1 if keepalive else 0
    return (
        _record(1, 1, struct.pack(">HB5x", 1, flags))
        + _record(4, 1, body)
        + _record(4, 1)
        + _record(5, 1)
    )


def _parse_target(target: str):
    if target.startswith("/") or target.startswith("."):
        return socket.AF_UNIX, target
    host, _, port = target.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    return fam, (host, int(port))


class _Conn:
    __slots__ = ("sock", "buf", "start", "out_bytes", "fd")


def _run(target: str, connections: int, keepalive: bool, duration: float, warmup: float,
         uri: str, expect_bytes: int | None, result_queue=None):
    family, addr = _parse_target(target)
    request = build_request(uri, keepalive)
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0, "connects": 0}
    now = time.perf_counter
    t_begin = now()
    t_measure = t_begin + warmup
    t_end = t_measure + duration
    expected = [expect_bytes]
    conns: dict[int, _Conn] = {}

    def open_conn() -> _Conn:
        c = _Conn()
        s = socket.socket(family, socket.SOCK_STREAM)
        if family != socket.AF_UNIX:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect(addr)  # blocking connect: loopback, fast
        s.setblocking(False)
        c.sock = s
        c.fd = s.fileno()
        c.buf = bytearray()
        c.out_bytes = 0
        counts["connects"] += 1
        conns[c.fd] = c
        sel.register(s, selectors.EVENT_READ, c)
        return c

    def send(c: _Conn) -> None:
        c.start = now()
        c.sock.send(request)  # < 1 KiB: one send() on an idle socket

    for _ in range(connections):
        send(open_conn())

    measuring_started = False
    while True:
        t = now()
        if t >= t_end:
            break
        if not measuring_started and t >= t_measure:
            measuring_started = True
            counts["requests"] = 0
            counts["errors"] = 0
            latencies.clear()
        for key, _ in sel.select(0.5):
            c: _Conn = key.data
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                counts["errors"] += 1
                sel.unregister(c.sock)
                c.sock.close()
                del conns[c.fd]
                send(open_conn())
                continue
            buf = c.buf
            buf += chunk
            # Walk the records; stop at FCGI_END_REQUEST.
            pos = 0
            done = False
            n = len(buf)
            while n - pos >= 8:
                _, kind, _, length, pad = _HEADER.unpack_from(buf, pos)
                end = pos + 8 + length + pad
                if end > n:
                    break
                if kind == 6:
                    c.out_bytes += length
                elif kind == 3:
                    done = True
                    pos = end
                    break
                pos = end
            if pos:
                del buf[:pos]
            if not done:
                continue
            t_done = now()
            latencies.append(t_done - c.start)
            counts["requests"] += 1
            if expected[0] is None:
                expected[0] = c.out_bytes
            elif c.out_bytes != expected[0]:
                counts["errors"] += 1
            c.out_bytes = 0
            if keepalive:
                send(c)
            else:
                sel.unregister(c.sock)
                c.sock.close()
                del conns[c.fd]
                send(open_conn())
    elapsed = now() - max(t_measure, t_begin)
    for c in list(conns.values()):
        c.sock.close()
    out = {"requests": counts["requests"], "errors": counts["errors"],
           "seconds": elapsed, "latencies": latencies}
    if result_queue is not None:
        result_queue.put(out)
    return out


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def run(target: str, connections: int = 1, keepalive: bool = True, duration: float = 5.0,
        warmup: float = 1.0, processes: int = 1, uri: str = "/hello") -> dict:
    processes = max(1, min(processes, connections))
    if processes == 1:
        results = [_run(target, connections, keepalive, duration, warmup, uri, None)]
    else:
        q = multiprocessing.Queue()
        share = [connections // processes + (1 if i < connections % processes else 0)
                 for i in range(processes)]
        procs = [multiprocessing.Process(target=_run, args=(target, n, keepalive, duration,
                                                             warmup, uri, None, q))
                 for n in share]
        for p in procs:
            p.start()
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
    lat = sorted(x for r in results for x in r["latencies"])
    requests = sum(r["requests"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "target": target,
        "connections": connections,
        "keepalive": keepalive,
        "requests": requests,
        "errors": sum(r["errors"] for r in results),
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(_percentile(lat, 0.50) * 1000, 3),
        "p99_ms": round(_percentile(lat, 0.99) * 1000, 3),
        "max_ms": round((lat[-1] if lat else 0.0) * 1000, 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="Unix socket path or host:port")
    ap.add_argument("--connections", "-c", type=int, default=1)
    ka = ap.add_mutually_exclusive_group()
    ka.add_argument("--keepalive", dest="keepalive", action="store_true", default=True)
    ka.add_argument("--no-keepalive", dest="keepalive", action="store_false")
    ap.add_argument("--duration", "-d", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--processes", "-p", type=int, default=1)
    ap.add_argument("--uri", default="/hello")
    a = ap.parse_args(argv)
    res = run(a.target, a.connections, a.keepalive, a.duration, a.warmup, a.processes, a.uri)
    print(json.dumps(res))
    return 0 if res["requests"] and not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
