"""A small FastCGI client for the tests: raw sockets, no dependencies.

Builds request records (BEGIN_REQUEST, PARAMS, STDIN, DATA), reads the
reply records, and supports keep-alive and pipelining (several requests
sent before any reply is read)."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

VERSION = 1
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA = range(1, 9)
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, AUTHORIZER, FILTER = 1, 2, 3
KEEP_CONN = 1

_HEADER = struct.Struct(">BBHHBx")


def record(kind: int, request_id: int, content: bytes = b"") -> bytes:
    out = []
    for i in range(0, max(len(content), 1), 65535):
        chunk = content[i:i + 65535]
        pad = (-len(chunk)) % 8
        out.append(_HEADER.pack(VERSION, kind, request_id, len(chunk), pad) + chunk + b"\0" * pad)
    return b"".join(out)


def _length(n: int) -> bytes:
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def encode_params(params) -> bytes:
    items = params.items() if isinstance(params, dict) else params
    out = []
    for name, value in items:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        out.append(_length(len(name)) + _length(len(value)) + name + value)
    return b"".join(out)


def encode_request(params, stdin: bytes = b"", *, data: bytes | None = None,
                   role: int = RESPONDER, keep_conn: bool = False, request_id: int = 1,
                   stdin_chunk: int = 65535) -> bytes:
    """The bytes of one whole request."""
    parts = [record(BEGIN_REQUEST, request_id,
                    struct.pack(">HB5x", role, KEEP_CONN if keep_conn else 0))]
    p = encode_params(params)
    if p:
        parts.append(record(PARAMS, request_id, p))
    parts.append(record(PARAMS, request_id))
    for i in range(0, len(stdin), stdin_chunk):
        parts.append(record(STDIN, request_id, stdin[i:i + stdin_chunk]))
    parts.append(record(STDIN, request_id))
    if data is not None:
        for i in range(0, len(data), 65535):
            parts.append(record(DATA, request_id, data[i:i + 65535]))
        parts.append(record(DATA, request_id))
    return b"".join(parts)


@dataclass
class Response:
    stdout: bytes = b""
    stderr: bytes = b""
    app_status: int = 0
    protocol_status: int = 0
    records: list = field(default_factory=list)

    def _split(self) -> tuple[bytes, bytes]:
        if self.stdout.startswith(b"\r\n"):
            return b"", self.stdout[2:]
        head, sep, body = self.stdout.partition(b"\r\n\r\n")
        return (head, body) if sep else (self.stdout, b"")

    @property
    def headers(self) -> dict[str, str]:
        head = self._split()[0]
        out = {}
        for line in head.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep:
                out[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        return out

    @property
    def body(self) -> bytes:
        return self._split()[1]

    @property
    def status(self) -> int:
        s = self.headers.get("status", "200")
        return int(s.split()[0])


class Connection:
    """One connection to a FastCGI application."""

    def __init__(self, address, timeout: float = 10.0):
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif isinstance(address, str) and ":" in address and not address.startswith("/"):
            host, _, port = address.rpartition(":")
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        self._buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = self.sock.recv(262144)
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read_record(self):
        """(type, request_id, content), or None at end of connection."""
        if not self._fill(8):
            if self._buf:
                raise ConnectionError("connection closed inside a record header")
            return None
        _, kind, rid, length, pad = _HEADER.unpack_from(self._buf)
        if not self._fill(8 + length + pad):
            raise ConnectionError("connection closed inside a record")
        content = bytes(self._buf[8:8 + length])
        del self._buf[:8 + length + pad]
        return kind, rid, content

    def read_response(self, request_id: int = 1) -> Response:
        r = Response()
        out, err = [], []
        while True:
            rec = self.read_record()
            if rec is None:
                raise ConnectionError("connection closed before FCGI_END_REQUEST")
            kind, rid, content = rec
            r.records.append((kind, len(content)))
            if rid != request_id:
                continue
            if kind == STDOUT:
                out.append(content)
            elif kind == STDERR:
                err.append(content)
            elif kind == END_REQUEST:
                r.app_status, r.protocol_status = struct.unpack(">IB3x", content)
                r.stdout = b"".join(out)
                r.stderr = b"".join(err)
                return r

    def request(self, params, stdin: bytes = b"", **kw) -> Response:
        rid = kw.get("request_id", 1)
        self.send(encode_request(params, stdin, **kw))
        return self.read_response(rid)

    def at_eof(self, timeout: float = 2.0) -> bool:
        """Whether the application closed the connection (nothing more)."""
        self.sock.settimeout(timeout)
        try:
            return self.read_record() is None
        except (ConnectionError, OSError):
            return True


def cgi_params(uri: str = "/", method: str = "GET", body: bytes = b"", **extra) -> dict:
    path, _, query = uri.partition("?")
    path = unquote(path)  # as nginx's $fastcgi_script_name / $document_uri
    p = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "SCRIPT_NAME": path,
        "DOCUMENT_URI": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)) if body or method == "POST" else "",
    }
    p.update(extra)
    return p


def request(address, params, stdin: bytes = b"", **kw) -> Response:
    """One request on a new connection."""
    with Connection(address, timeout=kw.pop("timeout", 10.0)) as c:
        return c.request(params, stdin, **kw)


def wait_for(address, timeout: float = 10.0) -> None:
    """Waits until the application accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if isinstance(address, str) and address.startswith("/"):
                s = socket.socket(socket.AF_UNIX)
                s.connect(address)
            else:
                host, _, port = address.rpartition(":")
                s = socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1)
            s.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
