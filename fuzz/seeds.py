#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets into fuzz/seeds/<target>/:
real requests as nginx sends them (its parameter order, bodies split
across records, keep-alive series), GET_VALUES, filters, aborts.

The engine and capi_streams inputs use the layout of
fuzz_targets/common.rs: [peer script length u16 LE][peer script][app script].
The record and params targets take raw wire bytes / a PARAMS block.
Usage: python3 fuzz/seeds.py   (then cargo fuzz run <target> corpus/<t> seeds/<t>)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- raw FastCGI (record, params targets) --------------------------------


def rec(t, rid, content=b"", pad=0):
    return struct.pack(">BBHHBB", 1, t, rid, len(content), pad, 0) + content + b"\0" * pad


def length(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def pair(n, v):
    return length(len(n)) + length(len(v)) + n + v


def nginx_params(uri=b"/", method=b"GET", body_len=0):
    path, _, query = uri.partition(b"?")
    ps = [
        (b"QUERY_STRING", query),
        (b"REQUEST_METHOD", method),
        (b"CONTENT_TYPE", b"application/x-www-form-urlencoded" if body_len else b""),
        (b"CONTENT_LENGTH", str(body_len).encode() if body_len else b""),
        (b"SCRIPT_NAME", path),
        (b"REQUEST_URI", uri),
        (b"DOCUMENT_URI", path),
        (b"DOCUMENT_ROOT", b"/var/www/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"51234"),
        (b"SERVER_ADDR", b"127.0.0.1"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_NAME", b"localhost"),
        (b"HTTP_HOST", b"localhost"),
        (b"HTTP_USER_AGENT", b"curl/7.88.1"),
        (b"HTTP_ACCEPT", b"*/*"),
    ]
    return b"".join(pair(n, v) for n, v in ps)


def raw_request(rid, body=b"", keep=True, uri=b"/", chunk=4096):
    out = rec(1, rid, struct.pack(">HB5x", 1, 1 if keep else 0))
    p = nginx_params(uri, b"POST" if body else b"GET", len(body))
    out += rec(4, rid, p[:100]) + rec(4, rid, p[100:]) + rec(4, rid)
    for i in range(0, len(body), chunk):
        out += rec(5, rid, body[i:i + chunk], pad=(-len(body[i:i + chunk])) % 8)
    return out + rec(5, rid)


# ---- engine / capi_streams scripts --------------------------------------


def begin(rid=1, role=1, keep=True):
    return bytes([0x00, rid, role, 1 if keep else 0])


def nginx(sel=0, body_len=0):
    return bytes([0x0C, sel]) + struct.pack("<H", body_len)


def params_end():
    return b"\x02"


def stdin(data):
    return b"\x03" + struct.pack("<H", len(data)) + data


def stdin_end():
    return b"\x04"


def data(d):
    return b"\x05" + struct.pack("<H", len(d)) + d


def big_stdin(n, unit=b"0123456789abcdef"):
    return b"\x43" + struct.pack("<H", n) + bytes([len(unit) - 1]) + unit


def script(peer, app=b""):
    return struct.pack("<H", len(peer)) + peer + app


def body(n):
    return bytes((i * 7 + 11) % 251 for i in range(n))


def engine_seeds():
    s = {}
    s["get"] = script(begin() + nginx(0) + params_end() + stdin_end())
    s["get_close"] = script(begin(keep=False) + nginx(1) + params_end() + stdin_end())
    b = body(300)
    s["post_split"] = script(
        begin() + nginx(2, len(b)) + params_end() + stdin(b[:100]) + stdin(b[100:]) + stdin_end()
    )
    s["post_big"] = script(begin() + nginx(2, 65535) + params_end() + big_stdin(65535) + big_stdin(5000) + stdin_end())
    ka = b""
    for i in range(4):
        bb = body(20 * i)
        ka += begin() + nginx(i, len(bb)) + params_end() + (stdin(bb) if bb else b"") + stdin_end()
    s["keepalive4"] = script(ka)
    s["keepalive_lines"] = script(
        ka,
        # read_line 64, write 32, param, read all, finish; twice
        bytes([0x02, 64, 0x05, 32, 0x07, 1, 0x0F, 0x0D, 0x02, 8, 0x00, 16, 0x04, 0x41, 0x00, 4, 0x0B, 3, 0x0D]),
    )
    s["get_values"] = script(
        b"\x08" + bytes([len(pair(b"FCGI_MAX_CONNS", b"") + pair(b"FCGI_MPXS_CONNS", b""))])
        + pair(b"FCGI_MAX_CONNS", b"") + pair(b"FCGI_MPXS_CONNS", b"")
        + begin() + nginx(0) + params_end() + stdin_end()
    )
    s["filter"] = script(
        begin(role=3) + nginx(3) + params_end() + stdin(b"in") + stdin_end() + data(b"file data\n") + b"\x06",
        bytes([0x0F, 0x0C, 0x0F, 0x05, 10, 0x0D]),
    )
    s["authorizer"] = script(begin(role=2) + nginx(0) + params_end() + stdin_end(), bytes([0x05, 40, 0x0B, 1]))
    s["abort"] = script(begin() + nginx(2, 10) + params_end() + stdin(b"abc") + b"\x07", bytes([0x0F, 0x05, 3]))
    s["unknown_role"] = script(bytes([0x00, 1, 4, 1]) + begin() + nginx(0) + params_end() + stdin_end())
    s["mpx"] = script(begin() + b"\x10\x00\x00\x00\x00\x00\x00\x00\x00" + nginx(0) + params_end() + stdin_end())
    s["big_out"] = script(begin() + nginx(0) + params_end() + stdin_end(), bytes([0x15, 255, 0x18, 0x16, 20, 0x19, 0x09, 0x0D]))
    s["garbage"] = script(begin() + nginx(0) + params_end() + b"\x0a\x05GARBA" + stdin_end())
    return s


def write(target, name, blob):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def main():
    for name, blob in engine_seeds().items():
        write("engine", name, blob)
        write("capi_streams", name, blob)
    b = body(5000)
    write("record", "get", raw_request(1))
    write("record", "post", raw_request(1, b, chunk=1000))
    write("record", "keepalive", raw_request(1, b[:10]) + raw_request(1) + raw_request(1, b[:99], keep=False))
    write("record", "end_request", rec(3, 1, struct.pack(">IB3x", 0, 0)))
    # params: first byte is the target's control byte (prefix, pair limit)
    write("params", "nginx", b"\xe0" + nginx_params(b"/index.php?x=1", b"POST", 123))
    write("params", "long", b"\x14" + pair(b"HTTP_COOKIE", b"a" * 300) + pair(b"X" * 200, b"v"))
    write("params", "get_values", b"\x01" + pair(b"FCGI_MAX_CONNS", b"") + pair(b"FCGI_MAX_REQS", b"") + pair(b"FCGI_MPXS_CONNS", b"") + pair(b"FCGI_MAX_CONNS", b""))


if __name__ == "__main__":
    main()
