"""A WSGI (PEP 3333) server on libfcgi, with N worker threads.

From Python::

    from libfcgi.wsgi import WSGIServer
    WSGIServer(app, bind="127.0.0.1:9000", threads=8).serve_forever()

From the command line::

    python -m libfcgi.wsgi myapp:app --bind 127.0.0.1:9000 --threads 8
    python -m libfcgi.wsgi myapp:app --bind /run/myapp.sock --socket-mode 660
    python -m libfcgi.wsgi myapp:app          # the socket a web server passes on fd 0

What it does:

* request bodies are streamed: ``wsgi.input`` reads FCGI_STDIN as the app
  asks, never more than CONTENT_LENGTH bytes (to the end of the stream when
  the web server sent no length; ``wsgi.input_terminated`` is True);
* responses are streamed: every block an iterable yields is sent at once
  (``FCGX_FFlush``); a one-block list or tuple goes out with the headers
  and FCGI_END_REQUEST in one write, with a Content-Length added;
* ``start_response`` follows PEP 3333, including ``exc_info`` (replaces the
  headers while none were sent, re-raises after) and the ``write()``
  callable;
* an exception in the application gives a 500 response (when no header was
  sent yet) and its traceback on FCGI_STDERR, which the web server logs;
  the server goes on serving;
* ``PATH_INFO``: when the web server sends none (nginx's fastcgi_params
  does not), it is taken from ``DOCUMENT_URI`` / ``SCRIPT_NAME`` /
  ``REQUEST_URI`` and ``SCRIPT_NAME`` becomes the ``script_name`` option
  (default ``""``, the app mounted at the root).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from ctypes import string_at
from urllib.parse import unquote_to_bytes

from . import _core
from ._core import Request
from ._native import BUFFERED_WRITE_LIMIT
from ._server import Server, WorkerPool, add_common_arguments, start_command

__all__ = ["FileWrapper", "WSGIServer", "load_app", "main", "serve"]

log = logging.getLogger("libfcgi.wsgi")

_SCRATCH = 65536
_SERVER_SOFTWARE = "libfcgi-python"

_ERROR_500 = (
    b"Status: 500 Internal Server Error\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 22\r\n\r\n"
    b"Internal Server Error\n"
)


class _ClientGone(Exception):
    """Writing to the web server failed: it closed the connection."""


class FileWrapper:
    """``wsgi.file_wrapper``: iterates over a file in blocks; ``close``
    closes the file."""

    def __init__(self, filelike, blksize: int = 65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        size = self.blksize
        while True:
            data = read(size)
            if not data:
                return
            yield data


class _Input:
    """``wsgi.input``: FCGI_STDIN, limited to CONTENT_LENGTH when given."""

    __slots__ = ("_req", "_gen", "_ptr", "_left", "_lib")

    def __init__(self, req: Request, left: int):
        self._req = req
        self._gen = req._gen
        self._ptr = req._c.in_
        self._lib = req._lib
        self._left = left  # -1: up to the end of FCGI_STDIN

    def _check(self) -> None:
        if self._req._gen != self._gen:
            raise ValueError("wsgi.input used after the end of its request")

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        left = self._left
        if size is None or size < 0:
            size = left
        elif left >= 0 and size > left:
            size = left
        if size == 0:
            return b""
        req = self._req
        if size < 0:
            data = req._get(_core._IN, -1)
        elif size <= _SCRATCH:
            scratch = req._get_scratch()
            got = self._lib.FCGX_GetStr(scratch, size, self._ptr)
            if got < size:
                req._check_read(self._ptr)
            data = string_at(scratch, got)
        else:
            data = req._get(_core._IN, size)
        if left >= 0:
            self._left = left - len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        self._check()
        left = self._left
        if size is None or size < 0:
            size = left
        elif left >= 0 and size > left:
            size = left
        if size == 0:
            return b""
        line = self._req._getline(_core._IN, size)
        if left >= 0:
            self._left = left - len(line)
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readinto(self, b) -> int:
        self._check()
        mv = memoryview(b).cast("B")
        n = len(mv)
        if self._left >= 0:
            n = min(n, self._left)
        if n == 0:
            return 0
        got = self._req._getinto(self._ptr, mv[:n])
        if self._left >= 0:
            self._left -= got
        return got


class _Errors:
    """``wsgi.errors``: text written to FCGI_STDERR (the web server's log)."""

    __slots__ = ("_req", "_gen")

    def __init__(self, req: Request):
        self._req = req
        self._gen = req._gen

    def write(self, s: str) -> int:
        req = self._req
        if req._gen != self._gen or not req._active:
            # The request is over: keep the text rather than lose it.
            _core._write_err_fd(s)
            return len(s)
        data = s.encode("utf-8", "backslashreplace") if isinstance(s, str) else bytes(s)
        if data:
            ptr = req._c.err
            if req._lib.FCGX_PutStr(data, len(data), ptr) != len(data):
                _core._write_err_fd(s if isinstance(s, str) else data.decode("utf-8", "replace"))
        return len(s)

    def writelines(self, seq) -> None:
        for s in seq:
            self.write(s)

    def flush(self) -> None:
        req = self._req
        if req._gen == self._gen and req._active:
            req._lib.FCGX_FFlush(req._c.err)


def _status_ok(status) -> bool:
    return (
        type(status) is str
        and len(status) >= 4
        and status[:3].isdigit()
        and status[3] == " "
    )


class _Exchange:
    """The state of one request/response: ``start_response`` and ``write``."""

    __slots__ = ("req", "gen", "lib", "out", "status", "headers", "sent", "started", "pending")

    def __init__(self, req: Request):
        self.req = req
        self.gen = req._gen
        self.lib = req._lib
        self.out = req._c.out
        self.status = None
        self.headers = None
        self.sent = False
        self.started = False
        self.pending = 0  # bytes written to STDOUT since the last flush

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.started:
            raise AssertionError("start_response() called a second time without exc_info")
        if not _status_ok(status):
            raise ValueError(f"invalid WSGI status line: {status!r}")
        if type(headers) is not list:
            raise TypeError(f"WSGI headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.headers = headers
        self.started = True
        return self.write

    def header_block(self, extra: str = "") -> bytes:
        headers = self.headers
        parts = ["Status: ", self.status, "\r\n"]
        for name, value in headers:
            parts.append(name)
            parts.append(": ")
            parts.append(value)
            parts.append("\r\n")
        parts.append(extra)
        parts.append("\r\n")
        text = "".join(parts)
        # Exactly one line break per line: no header may smuggle in another.
        lines = len(headers) + 2 + (extra.count("\n"))
        if text.count("\n") != lines or text.count("\r") != lines:
            raise ValueError("a WSGI status or header contains a line break")
        return text.encode("latin-1")

    def put(self, data: bytes) -> None:
        n = len(data)
        pending = self.pending = self.pending + n
        if pending <= BUFFERED_WRITE_LIMIT:
            # Only copied into the library's buffer: keep the GIL.
            if self.lib.FCGX_PutStr_buffered(data, n, self.out) != n:
                raise _ClientGone()
        elif self.lib.FCGX_PutStr(data, n, self.out) != n:
            raise _ClientGone()

    def send(self, data, flush: bool) -> None:
        """Sends a body block (with the headers before the first one)."""
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise TypeError(f"WSGI body blocks must be bytes, not {type(data).__name__}")
        if not self.sent:
            if not self.started:
                raise AssertionError("the application sent a body before calling start_response()")
            head = self.header_block()
            self.sent = True
            if len(data) <= 16384:
                self.put(head + data)
            else:
                self.put(head)
                self.put(data)
        elif data:
            self.put(data)
        if flush:
            self.pending = 0
            if self.lib.FCGX_FFlush(self.out) != 0:
                raise _ClientGone()

    def write(self, data) -> None:
        """The ``write()`` callable returned by start_response."""
        if self.req._gen != self.gen:
            raise ValueError("write() called after the end of its request")
        self.send(data, True)


class WSGIServer:
    """Serves a WSGI application over FastCGI with ``threads`` workers.

    ``bind``: ``"host:port"``, ``":port"``, ``"[::1]:port"``, a port number,
    a Unix socket path, or None for fd 0 (the socket a web server passes).
    ``threads`` must be at least the number of connections the web server
    keeps open to this process (each kept-alive connection holds a worker).
    """

    def __init__(self, app, bind=None, *, threads: int = 8, backlog: int = 1024,
                 socket_mode: int | None = None, script_name: str = "",
                 multiprocess: bool = False, grace: float = 30.0, fd: int | None = None):
        self.app = app
        self.threads = threads
        self.script_name = script_name.rstrip("/")
        self.grace = grace
        self.server = Server(bind, backlog=backlog, socket_mode=socket_mode, fd=fd,
                             encoding="latin-1")
        self.base_environ = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": bool(multiprocess),
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "SERVER_SOFTWARE": _SERVER_SOFTWARE,
        }
        self.pool: WorkerPool | None = None

    # -- environ ----------------------------------------------------------------

    def make_environ(self, req: Request) -> dict:
        env = {}
        envp = req._c.envp
        i = 0
        while True:
            entry = envp[i]
            if entry is None:
                break
            name, _, value = entry.decode("latin-1").partition("=")
            if name not in env:
                env[name] = value
            i += 1
        env.update(self.base_environ)
        # Content headers are CONTENT_TYPE / CONTENT_LENGTH in CGI and WSGI.
        ct = env.pop("HTTP_CONTENT_TYPE", None)
        if ct is not None and "CONTENT_TYPE" not in env:
            env["CONTENT_TYPE"] = ct
        cl = env.pop("HTTP_CONTENT_LENGTH", None)
        if cl is not None and "CONTENT_LENGTH" not in env:
            env["CONTENT_LENGTH"] = cl
        if not env.get("PATH_INFO"):
            self._fix_path(env)
        if "QUERY_STRING" not in env:
            env["QUERY_STRING"] = ""
        if "REQUEST_METHOD" not in env:
            env["REQUEST_METHOD"] = "GET"
        if "SERVER_PROTOCOL" not in env:
            env["SERVER_PROTOCOL"] = "HTTP/1.0"
        if "SERVER_NAME" not in env or "SERVER_PORT" not in env:
            host, _, port = env.get("HTTP_HOST", "localhost").partition(":")
            env.setdefault("SERVER_NAME", host or "localhost")
            env.setdefault("SERVER_PORT", port or "80")
        https = env.get("HTTPS", "").lower()
        env["wsgi.url_scheme"] = (
            "https" if https in ("on", "1", "yes") or env.get("REQUEST_SCHEME") == "https" else "http"
        )
        length = env.get("CONTENT_LENGTH", "")
        left = -1
        if length:
            try:
                left = max(int(length), 0)
            except ValueError:
                left = -1
        env["wsgi.input"] = _Input(req, left)
        env["wsgi.errors"] = _Errors(req)
        return env

    def _fix_path(self, env: dict) -> None:
        path = env.get("DOCUMENT_URI") or env.get("SCRIPT_NAME")
        if not path:
            uri = env.get("REQUEST_URI", "/")
            path = unquote_to_bytes(uri.partition("?")[0]).decode("latin-1")
        prefix = self.script_name
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            env["SCRIPT_NAME"] = prefix
            env["PATH_INFO"] = path[len(prefix):]
        else:
            env["SCRIPT_NAME"] = prefix if prefix and not path else ""
            env["PATH_INFO"] = path

    # -- one request ------------------------------------------------------------

    def handle(self, req: Request) -> None:
        """Runs the application for the active request and answers it."""
        ex = _Exchange(req)
        result = None
        try:
            environ = self.make_environ(req)
            result = self.app(environ, ex.start_response)
            if type(result) in (list, tuple) and len(result) == 1 and not ex.sent:
                self._send_single(ex, result[0], environ["REQUEST_METHOD"] == "HEAD")
            else:
                flush = not isinstance(result, (list, tuple, FileWrapper))
                for data in result:
                    if data:
                        ex.send(data, flush)
                if not ex.sent:
                    ex.send(b"", False)
        except _ClientGone:
            pass
        except BaseException:  # SystemExit from an app too: a worker thread goes on
            self._report(req, ex)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self._report(req, ex, after_close=True)
        # Not finished here: the worker's next accept() does it (one C call
        # less), or the pool when it stops.

    def _send_single(self, ex: _Exchange, body, head_request: bool) -> None:
        if type(body) is not bytes:
            if isinstance(body, (bytearray, memoryview)):
                body = bytes(body)
            else:
                raise TypeError(f"WSGI body blocks must be bytes, not {type(body).__name__}")
        if not ex.started:
            raise AssertionError("the application returned without calling start_response()")
        extra = f"Content-Length: {len(body)}\r\n"
        code = ex.status[:3]
        if head_request or code[0] == "1" or code in ("204", "304"):
            extra = ""  # no body by definition: the length is not this one
        else:
            for name, _ in ex.headers:
                if len(name) == 14 and name.lower() == "content-length":
                    extra = ""
                    break
        head = ex.header_block(extra)
        ex.sent = True
        if len(body) <= 16384:
            ex.put(head + body)
        else:
            ex.put(head)
            ex.put(body)

    def _report(self, req: Request, ex: _Exchange, after_close: bool = False) -> None:
        text = traceback.format_exc()
        log.error("libfcgi.wsgi: error in the application\n%s", text.rstrip())
        if not req._active:
            return
        data = text.encode("utf-8", "backslashreplace")
        lib = req._lib
        lib.FCGX_PutStr(data, len(data), req._c.err)
        if not ex.sent and not after_close:
            ex.sent = True
            lib.FCGX_PutStr(_ERROR_500, len(_ERROR_500), req._c.out)

    # -- running ----------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serves until Ctrl-C (KeyboardInterrupt is re-raised once the
        requests in progress are done) or SIGTERM (returns)."""
        self.pool = WorkerPool(self.server.fileno(), self.handle, self.threads,
                               owns_socket=self.server.owns_socket, grace=self.grace,
                               encoding="latin-1", name="libfcgi-wsgi")
        try:
            self.pool.run()
        finally:
            self.server.close()

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()

    def close(self) -> None:
        self.server.close()


def serve(app, bind=None, **kwargs) -> None:
    """``WSGIServer(app, bind, **kwargs).serve_forever()``."""
    WSGIServer(app, bind, **kwargs).serve_forever()


def load_app(spec: str):
    """Imports ``"module:attribute"`` (``attribute`` may be dotted, or a call
    without arguments such as ``create_app()``); ``"module"`` alone looks
    for ``application`` then ``app``."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if not attr:
        for name in ("application", "app"):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {module_name!r} has no 'application' or 'app'")
    call = attr.endswith("()")
    if call:
        attr = attr[:-2]
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if call else obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m libfcgi.wsgi",
        description="Serve a WSGI application over FastCGI with libfcgi.",
    )
    add_common_arguments(parser)
    parser.add_argument("--threads", "-t", type=int, default=8,
                        help="worker threads (default 8); at least the number of "
                        "connections the web server keeps open")
    parser.add_argument("--script-name", default="",
                        help="where the app is mounted (SCRIPT_NAME), when the web server "
                        "sends no PATH_INFO (default: the root)")
    args = parser.parse_args(argv)
    mode = start_command(args)
    app = load_app(args.app)
    try:
        server = WSGIServer(app, args.bind, threads=args.threads, backlog=args.backlog,
                            socket_mode=mode, script_name=args.script_name, grace=args.grace)
    except OSError as e:
        print(f"libfcgi.wsgi: {e}", file=sys.stderr)
        return 2
    where = args.bind if args.bind is not None else "fd 0"
    log.info("serving %s on %s with %d threads", args.app, where, args.threads)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("interrupted, stopped")
        return 130
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
