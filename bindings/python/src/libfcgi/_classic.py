"""The classic API of the original Python port of libfcgi::

    import libfcgi
    libfcgi.init_socket(9000, 10)
    req = libfcgi.fcgi_request()
    while req.accept():
        uri = req.env["REQUEST_URI"]
        req.out.write("Content-Type: text/plain\\r\\n\\r\\nHello " + uri)
        req.finish()
"""

from __future__ import annotations

import threading

from . import _core
from ._core import Request

__all__ = ["fcgi_request", "init_socket", "shutdown", "default_socket"]

_lock = threading.Lock()
_default_fd: int | None = None
_owned_fd: int | None = None


def init_socket(port, backlog: int = 10) -> int:
    """Opens the listening socket that later :class:`fcgi_request` objects
    use, and returns its file descriptor.

    ``port`` is a port number (all interfaces, like libfcgi's ``":9000"``),
    or a string: ``"127.0.0.1:9000"``, ``":9000"``, ``"[::1]:9000"`` or a
    Unix socket path. Without a call to ``init_socket`` requests use fd 0,
    the socket a web server passes to the FastCGI processes it starts.
    """
    global _default_fd, _owned_fd
    fd = _core.open_socket(port, backlog)
    with _lock:
        _default_fd = fd
        _owned_fd = fd
    return fd


def default_socket() -> int:
    """The socket new requests accept on: the last :func:`init_socket`,
    else 0."""
    return 0 if _default_fd is None else _default_fd


def shutdown() -> None:
    """Stops every accept loop of the process: ``FCGX_ShutdownPending`` and,
    for a socket opened with :func:`init_socket`, shutting that socket down
    so threads blocked in ``accept()`` return False at once. Requests being
    served are not affected. Meant for the main thread's Ctrl-C handler in a
    threaded program."""
    _core.request_shutdown()
    if _owned_fd is not None:
        _core.shutdown_listener(_owned_fd)


class _Writer:
    """``req.out`` / ``req.err``: ``write`` takes ``str`` (encoded with the
    request's encoding) or bytes."""

    __slots__ = ("_req", "_which")

    def __init__(self, req: Request, which: int):
        self._req = req
        self._which = which

    def write(self, data) -> int:
        return self._req._guarded_put(self._which, data)

    def writelines(self, lines) -> None:
        for line in lines:
            self._req._guarded_put(self._which, line)

    def flush(self) -> None:
        self._req._flush(self._which)


class fcgi_request(Request):  # noqa: N801 - the classic name
    """A request object of the classic API (see :class:`libfcgi.Request`
    for everything it can do). Each thread serving the socket needs its
    own. ``accept()`` returns True for a request and False at shutdown;
    Ctrl-C while waiting raises KeyboardInterrupt."""

    @property
    def out(self) -> _Writer:
        """Writes the response (CGI headers, blank line, body)."""
        return _Writer(self, _core._OUT)

    @property
    def err(self) -> _Writer:
        """Writes to FCGI_STDERR (the web server's error log)."""
        return _Writer(self, _core._ERR)

    # Names some ports of the C API used.
    getstr = Request.read
    puts = Request.write
