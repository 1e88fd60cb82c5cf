"""An ASGI 3 server on libfcgi: worker threads do the FastCGI I/O, one
asyncio event loop runs the application.

From Python::

    from libfcgi.asgi import ASGIServer
    ASGIServer(app, bind="127.0.0.1:9000").serve_forever()

From the command line::

    python -m libfcgi.asgi myapp:app --bind 127.0.0.1:9000
    python -m libfcgi.asgi myapp:app --bind /run/myapp.sock --socket-mode 660
    python -m libfcgi.asgi myapp:app          # the socket a web server passes on fd 0

How it works. ``threads`` worker threads (the pool of :mod:`libfcgi.wsgi`)
block in the library with the GIL released: accepting, reading the request
head, reading request bodies, writing and flushing responses. A worker that
got a request builds its HTTP scope, reads the body if it is small, and
hands the request to the event loop (several at once when they arrive
together: one wake-up of the loop for the batch). The loop runs the
application; its ``send`` messages go back to the worker that owns the
request, which writes them. So the loop never blocks on a socket, and the
application never waits for a write unless it has more than
``HIGH_WATER`` bytes of output queued (back-pressure).

What it does:

* ``http`` scopes from the FastCGI parameters: ``method``, ``path`` (with
  ``root_path`` in front, as ASGI 2.4 asks), ``raw_path``,
  ``query_string``, ``headers`` (from the ``HTTP_*`` parameters, plus
  ``content-type``/``content-length``), ``server``, ``client``,
  ``scheme``, ``http_version``, ``root_path`` (``SCRIPT_NAME`` when the web
  server sends a ``PATH_INFO``; else ``--script-name`` when the path is
  under it, as in :mod:`libfcgi.wsgi`) and the lifespan ``state``;
* request bodies stream: ``http.request`` messages of at most 64 KiB, read
  from the web server only when the application asks for the next one;
* responses stream: the headers go out with the first body message, and
  each ``http.response.body`` with ``more_body`` is sent at once
  (``FCGX_FFlush``); a body in one message gets a ``Content-Length``;
* ``http.disconnect`` when the web server goes away: a failed write, the
  connection closed, or an ``FCGI_ABORT_REQUEST`` (noticed while the
  application waits in ``receive()``), and after the response is complete;
  ``send`` then raises :class:`ClientDisconnected` (an ``OSError``);
* the lifespan protocol (``--lifespan auto|on|off``): startup before the
  first request is accepted; a failed startup stops the server with an
  error (:class:`LifespanFailure`, exit status 3); shutdown after the last
  request;
* an exception in the application gives a 500 response when nothing was
  sent yet (its traceback goes to FCGI_STDERR, the web server's error log),
  else the connection is closed so the web server sees the response cut;
* SIGTERM: stop accepting, let running requests finish (``grace``), run
  the lifespan shutdown, return. Ctrl-C: the same, then KeyboardInterrupt.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import errno as _errno
import http
import logging
import os
import select
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from urllib.parse import unquote

from . import _core
from ._core import FCGI_FAIL_ACCEPT_ON_INTR, Request
from ._native import BUFFERED_WRITE_LIMIT
from ._server import Server, WorkerPool, _Worker, add_common_arguments, start_command

__all__ = [
    "ASGIServer",
    "ClientDisconnected",
    "LifespanFailure",
    "main",
    "serve",
]

log = logging.getLogger("libfcgi.asgi")

#: Largest ``http.request`` body message (and read from the web server).
CHUNK = 65536
#: Output an application may have queued for its worker before ``send``
#: waits; it resumes when the queue is down to ``LOW_WATER``.
HIGH_WATER = 262144
LOW_WATER = 65536
#: Seconds a worker waits for a response before it counts as held by a
#: request in progress, and the pool grows if it has no thread to spare.
HOLD_AFTER = 0.05

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_DISCONNECT = {"type": "http.disconnect"}
_ABORT_REQUEST = 2  # FCGI_ABORT_REQUEST
_BODILESS = frozenset(("GET", "HEAD", "OPTIONS", "DELETE", "TRACE"))
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                                     "TRACE", "CONNECT")}
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0", b"HTTP/2.0": "2", b"HTTP/2": "2",
             b"HTTP/3": "3", b"HTTP/3.0": "3"}
#: FastCGI parameter name -> ASGI header name (HTTP_X_FOO -> x-foo), a
#: bounded cache; the transfer-encoding entry is the object below.
_TRANSFER_ENCODING = b"transfer-encoding"
_HEADER_NAMES = {b"HTTP_TRANSFER_ENCODING": _TRANSFER_ENCODING}

_ERROR_500 = (
    b"Status: 500 Internal Server Error\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 22\r\n\r\n"
    b"Internal Server Error\n"
)

# Commands from the loop to a request's worker.
_WRITE, _FINAL, _READ, _END, _ABORT, _STDERR = range(6)


class ClientDisconnected(OSError):
    """``send`` after the web server went away (ASGI: an OSError)."""


class LifespanFailure(RuntimeError):
    """The application's lifespan startup (or shutdown) failed."""


def _status_line(code: int, cache: dict = {}) -> bytes:  # noqa: B006 - a cache
    line = cache.get(code)
    if line is None:
        if type(code) is not int or not 100 <= code <= 999:
            raise ValueError(f"invalid ASGI status: {code!r}")
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        line = cache[code] = f"Status: {code} {phrase}".rstrip().encode("latin-1") + b"\r\n"
    return line


# ---------------------------------------------------------------------------
# One request/response.


class _Exchange:
    """A request being served: the scope, the body state, the response
    state, and the channel to its worker (a deque of commands and a lock
    used as a binary semaphore: the worker blocks on it, the loop releases
    it after appending)."""

    __slots__ = (
        "server", "loop", "req", "scope", "fd", "body", "more_body", "left", "reading",
        "waiters", "head", "started", "complete", "gone", "head_only", "has_length",
        "cmds", "wake", "posted", "written", "draining", "watching", "task", "held",
    )

    def __init__(self, server: ASGIServer, req: Request, scope: dict, fd: int):
        self.server = server
        self.loop = server._loop
        self.req = req
        self.scope = scope
        self.fd = fd
        self.body: bytes | None = b""  # the next http.request body, if read
        self.more_body = False
        self.left = 0  # body bytes still to read (-1: to the end of stdin)
        self.reading = False
        self.waiters: list = []
        self.head: bytes | None = None
        self.started = False
        self.complete = False
        self.gone = False
        self.head_only = False
        self.has_length = False
        self.cmds = collections.deque()
        wake = self.wake = threading.Lock()
        wake.acquire()
        self.posted = 0  # bytes of output queued by the loop
        self.written = 0  # of which the worker wrote
        self.draining: asyncio.Future | None = None
        self.watching = False
        self.task = None
        self.held = False

    # -- loop side -------------------------------------------------------------

    def _post(self, cmd) -> None:
        self.cmds.append(cmd)
        wake = self.wake
        if wake.locked():
            if self.server._defer_wake:
                # Woken when the loop is about to wait (_WakeBeforeWait):
                # the worker then finds the GIL free, and a burst of
                # responses wakes its workers together.
                self.server._to_wake.add(wake)
            else:
                wake.release()

    def _notify(self) -> None:
        ws = self.waiters
        if ws:
            self.waiters = []
            for f in ws:
                if not f.done():
                    f.set_result(None)

    async def receive(self) -> dict:
        while True:
            body = self.body
            if body is not None:
                self.body = None
                more = self.more_body
                if more and self.left != 0 and not self.reading and not self.gone:
                    # Read ahead one chunk while the app handles this one.
                    self.reading = True
                    self._post((_READ, None))
                return {"type": "http.request", "body": body, "more_body": more}
            if self.gone or self.complete:
                return _DISCONNECT
            if self.more_body:
                if not self.reading:
                    self.reading = True
                    self._post((_READ, None))
            elif not self.watching:
                self._watch()
            f = self.loop.create_future()
            self.waiters.append(f)
            try:
                await f
            except BaseException:
                # Cancelled (a framework polling for a disconnect): forget
                # this waiter; the watch stays until the response ends.
                try:
                    self.waiters.remove(f)
                except ValueError:
                    pass
                raise

    def _on_body(self, data: bytes, more: bool, failed: bool) -> None:
        """The worker read a chunk (in the loop thread)."""
        self.reading = False
        if failed:
            self._on_gone()
            return
        self.body = data
        self.more_body = more
        self._notify()

    def _on_gone(self) -> None:
        if not self.gone:
            self.gone = True
            self._unwatch()
            d = self.draining
            if d is not None and not d.done():
                d.set_result(None)
            self._notify()

    def _on_drained(self) -> None:
        d = self.draining
        if d is not None and not d.done():
            d.set_result(None)

    # Noticing that the web server went away while the app waits for it.

    def _watch(self) -> None:
        if self.fd < 0:
            return
        try:
            self.loop.add_reader(self.fd, self._peer_event)
            self.watching = True
        except (OSError, ValueError, RuntimeError):
            pass

    def _unwatch(self) -> None:
        if self.watching:
            self.watching = False
            try:
                self.loop.remove_reader(self.fd)
            except (OSError, ValueError, RuntimeError):
                pass

    def _peer_event(self) -> None:
        """The connection became readable during the response: the web
        server closed it, or sent FCGI_ABORT_REQUEST (looked at without
        being consumed)."""
        try:
            s = socket.socket(fileno=os.dup(self.fd))
        except OSError:
            self._on_gone()
            return
        try:
            data = s.recv(8, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        finally:
            s.close()
        if not data or (len(data) >= 2 and data[1] == _ABORT_REQUEST):
            self._on_gone()
        else:
            # Something else (not ours to consume): stop looking.
            self._unwatch()

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("ASGI: http.response.body before http.response.start")
            if self.complete:
                raise RuntimeError("ASGI: http.response.body after the response was complete")
            if self.gone:
                raise ClientDisconnected(_errno.EPIPE, "the web server closed the request")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if isinstance(body, (bytearray, memoryview)):
                    body = bytes(body)
                else:
                    raise TypeError(f"ASGI body must be bytes, not {type(body).__name__}")
            more = message.get("more_body", False)
            head = self.head
            if head is not None:
                self.head = None
                if not more and not self.has_length:
                    head += b"Content-Length: %d\r\n" % len(body)
                data = head + b"\r\n" + body if not self.head_only else head + b"\r\n"
            else:
                data = body if not self.head_only else b""
            if not more:
                self.complete = True
                self._unwatch()
                self._post((_FINAL, data))
                self._notify()
                return
            if not data:
                return
            self.posted += len(data)
            self._post((_WRITE, data))
            if self.posted - self.written > HIGH_WATER:
                await self._wait_drain()
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("ASGI: http.response.start sent twice")
            self.head = self._head(message)
            self.started = True
        else:
            raise ValueError(f"ASGI: unexpected message type {kind!r} on an http scope")

    def _head(self, message: dict) -> bytes:
        status = message["status"]
        parts = [_status_line(status)]
        lines = 1
        has_length = False
        for name, value in message.get("headers", ()):
            if len(name) == 14 and name.lower() == b"content-length":
                has_length = True
            parts.append(name)
            parts.append(b": ")
            parts.append(value)
            parts.append(b"\r\n")
            lines += 1
        head = b"".join(parts)
        # One line break per line: no header may smuggle in another.
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            raise ValueError("ASGI: a response header contains a line break")
        if status < 200 or status in (204, 304) or self.scope["method"] == "HEAD":
            has_length = True  # no body length to add
            self.head_only = self.scope["method"] == "HEAD"
        self.has_length = has_length
        return head

    async def _wait_drain(self) -> None:
        while self.posted - self.written > LOW_WATER and not self.gone:
            d = self.draining = self.loop.create_future()
            # The worker checks ``draining`` after counting what it wrote:
            # look again now that the flag is up.
            if self.posted - self.written <= LOW_WATER:
                self.draining = None
                break
            try:
                await d
            finally:
                self.draining = None
        if self.gone:
            raise ClientDisconnected(_errno.EPIPE, "the web server closed the request")

    def finished(self, task) -> None:
        """The application returned (or failed): end the response if it
        did not."""
        self.server._tasks.discard(task)
        self._unwatch()
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, ClientDisconnected) or (exc is not None and self.gone):
            exc = None  # the web server went away: nothing to report
        if exc is not None:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            log.error("error in the application\n%s", text.rstrip())
            if not self.complete:
                self._post((_STDERR, text.encode("utf-8", "backslashreplace")))
        elif task.cancelled() and not self.complete:
            log.error("the application task was cancelled")
        if self.complete:
            return
        self.complete = True
        self._notify()
        if self.gone:
            self._post((_FINAL, b""))  # nobody to answer: end it quietly
        elif self.head is None and self.started:
            # Part of the body was sent: the web server must see it cut.
            self._post((_ABORT, None))
        elif exc is not None or task.cancelled() or not self.started:
            if exc is None and not task.cancelled():
                log.error("the application returned without a response")
            self._post((_FINAL, _ERROR_500))
        else:
            # Headers only, never a body message: send them, empty body.
            head = self.head + (b"" if self.has_length else b"Content-Length: 0\r\n")
            self.head = None
            self._post((_FINAL, head + b"\r\n"))

    # -- worker side -----------------------------------------------------------

    def serve(self) -> None:
        """Runs the worker's end: performs the loop's commands until the
        response is complete (in the worker thread)."""
        req = self.req
        lib = req._lib
        c = req._c
        cmds = self.cmds
        wake = self.wake
        loop = self.loop
        ok = True  # no write failed
        held = False  # counted by the pool as held by this request (_hold)
        try:
            self._commands(req, lib, c, cmds, wake, loop, ok, held)
        finally:
            if self.held:
                self.server._unhold()

    def _commands(self, req, lib, c, cmds, wake, loop, ok, held) -> None:
        while True:
            while cmds:
                kind, data = cmds.popleft()
                if kind == _FINAL:
                    if ok:
                        n = len(data)
                        # Every earlier write was flushed: a small final
                        # block only fills the buffer (no I/O, keep the GIL);
                        # the next accept sends it with FCGI_END_REQUEST.
                        if n <= BUFFERED_WRITE_LIMIT:
                            lib.FCGX_PutStr_buffered(data, n, c.out)
                        else:
                            lib.FCGX_PutStr(data, n, c.out)
                    return  # the next accept (or the pool) finishes the request
                if kind == _WRITE:
                    n = len(data)
                    if ok:
                        ok = (lib.FCGX_PutStr(data, n, c.out) == n
                              and lib.FCGX_FFlush(c.out) == 0)
                        if not ok:
                            loop.call_soon_threadsafe(self._on_gone)
                    self.written += n
                    if self.draining is not None and self.posted - self.written <= LOW_WATER:
                        loop.call_soon_threadsafe(self._on_drained)
                elif kind == _READ:
                    self._read(loop)
                elif kind == _STDERR:
                    lib.FCGX_PutStr(data, len(data), c.err)
                elif kind == _ABORT:
                    self.server._drop_connection(req)
                    return
            # Nothing left: wait for the next command (a release may be
            # left over from commands already done: then look again). A
            # response that takes a while (a long poll, an event stream)
            # holds this thread: the pool then makes sure that others
            # still take new requests.
            if held:
                wake.acquire()
            elif not wake.acquire(timeout=HOLD_AFTER):
                held = self.held = True
                self.server._hold()
                wake.acquire()

    def _read(self, loop) -> None:
        left = self.left
        n = CHUNK if left < 0 else min(CHUNK, left)
        failed = False
        try:
            data = self.req._get(_core._IN, n)
        except OSError:
            data = b""
            failed = True
        more = len(data) == n
        if left >= 0:
            self.left = left = left - len(data)
            more = more and left > 0
        loop.call_soon_threadsafe(self._on_body, data, more, failed)


# ---------------------------------------------------------------------------
# The server.

class _Pool(WorkerPool):
    """The WSGI server's pool with a leaner accept: a worker is the only
    user of its request object and never the main thread, so the checks
    ``Request.accept`` makes for other callers (another thread closing the
    object, Ctrl-C in the main thread) are left out of the per-request
    path."""

    def _work(self, w: _Worker) -> None:
        _core._block_signals_in_this_thread()
        req = w.request = Request(self.fd, encoding=self.encoding)
        accept = req._lib.FCGX_Accept_r
        ptr = req._h.ptr
        handle = self.handle
        failures = 0
        try:
            while not self._stopping:
                req._end()
                rc = accept(ptr)  # finishes the previous request first
                if rc != 0:
                    if self._stopping or _core.shutdown_requested():
                        break
                    if rc == -_errno.EINTR:
                        continue
                    failures += 1
                    code = -rc if rc < 0 else rc
                    log.error("accept failed: %s", os.strerror(code) if code < 9000 else rc)
                    time.sleep(min(0.01 * failures, 1.0))
                    continue
                failures = 0
                req._begin()
                w.busy = True
                try:
                    handle(req)
                except BaseException:  # noqa: BLE001 - the worker must go on
                    log.exception("request handler failed")
                finally:
                    self.served += 1
                    if self._stopping:
                        req.finish()
                    w.busy = False
        finally:
            try:
                req.finish()
            finally:
                w.busy = False
                req.close()


class _ThreadState(threading.local):
    #: The loop whose code this worker thread last ran (_run_here).
    loop = None


_thread_state = _ThreadState()


class _WakeBeforeWait:
    """Selector mix-in: before each wait of the event loop, releases the
    locks of the workers that have something to do (``to_wake``)."""

    to_wake: set

    def select(self, timeout=None):
        to_wake = self.to_wake
        if to_wake:
            for lock in to_wake:
                if lock.locked():
                    lock.release()
            to_wake.clear()
        return super().select(timeout)


class _BatonPoll:
    """The selector's poll object, releasing ``baton`` while it waits: the
    loop's thread holds the baton whenever it runs loop code, so a worker
    that takes it may run the loop's callbacks meanwhile (see
    :meth:`ASGIServer._run_here`)."""

    def __init__(self, poller, baton):
        self._poller = poller
        self._baton = baton
        #: Set by the loop's thread once it holds the baton.
        self.active = False

    def poll(self, *args):
        if not self.active:
            return self._poller.poll(*args)
        baton = self._baton
        baton.release()
        try:
            return self._poller.poll(*args)
        finally:
            baton.acquire()

    def __getattr__(self, name):
        return getattr(self._poller, name)


def _waking_selector(to_wake: set, baton) -> selectors.BaseSelector:
    base = selectors.DefaultSelector
    cls = type("WakingSelector", (_WakeBeforeWait, base), {})
    sel = cls()
    sel.to_wake = to_wake
    if baton is not None:
        if isinstance(getattr(sel, "_selector", None), getattr(select, "epoll", ())):
            sel._selector = _BatonPoll(sel._selector, baton)
            sel.baton = baton
    return sel



class ASGIServer:
    """Serves an ASGI 3 application over FastCGI.

    ``bind``: ``"host:port"``, ``":port"``, ``"[::1]:port"``, a port
    number, a Unix socket path, or None for fd 0 (the socket a web server
    passes). Worker threads do the I/O: ``threads`` of them are kept for
    new requests (few is fastest: the library lets one thread serve
    several kept-alive connections); a response that takes more than
    ``HOLD_AFTER`` seconds (a long poll, an event stream) holds its worker,
    and the pool then adds one, up to ``max_threads`` in all.
    ``lifespan``: ``"auto"`` (run the lifespan protocol; an app that
    raises at once on the lifespan scope does not support it),
    ``"on"`` (that is an error too), ``"off"``.
    """

    def __init__(self, app, bind=None, *, threads: int = 4, max_threads: int = 128,
                 backlog: int = 1024, socket_mode: int | None = None, script_name: str = "",
                 grace: float = 30.0, fd: int | None = None, lifespan: str = "auto",
                 run_in_workers: bool = True):
        if lifespan not in ("auto", "on", "off"):
            raise ValueError("lifespan must be 'auto', 'on' or 'off'")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if max_threads < threads:
            raise ValueError("max_threads must be at least threads")
        self.app = app
        self.threads = threads
        self.max_threads = max_threads
        self._held = 0  # workers held by a response in progress
        self._grow_lock = threading.Lock()
        self.script_name = script_name.rstrip("/")
        self.grace = grace
        self.lifespan = lifespan
        self.server = Server(bind, backlog=backlog, socket_mode=socket_mode, fd=fd,
                             encoding="latin-1")
        self.state: dict = {}
        self.pool: WorkerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque = collections.deque()
        self._scheduled = False
        self._tasks: set = set()
        self._to_wake: set = set()
        self._defer_wake = False
        #: Held by whichever thread runs the event loop's code (_BatonPoll).
        self._baton = threading.Lock() if run_in_workers else None
        self._use_baton = False
        self._stop: asyncio.Event | None = None
        self._stop_reason: str | None = None
        self._done = False
        self.served = 0

    # -- scope ------------------------------------------------------------------

    def make_scope(self, req: Request) -> tuple[dict, int]:
        """The HTTP scope of the active request, and its body length (-1:
        unknown, read to the end of FCGI_STDIN)."""
        env: dict = {}
        setdefault = env.setdefault
        headers = []
        append = headers.append
        names = _HEADER_NAMES
        chunked = False
        envp = req._c.envp
        i = 0
        while True:
            entry = envp[i]
            if entry is None:
                break
            i += 1
            name, _, value = entry.partition(b"=")
            if name[:5] == b"HTTP_":
                h = names.get(name)
                if h is None:
                    h = name[5:].replace(b"_", b"-").lower()
                    if len(names) < 4096:
                        names[name] = h
                elif h is _TRANSFER_ENCODING:
                    chunked = True
                append((h, value))
            else:
                setdefault(name, value)  # the first of duplicates wins
        get = env.get
        length = get(b"CONTENT_LENGTH")
        if length and not any(n == b"content-length" for n, _ in headers):
            append((b"content-length", length))
        ctype = get(b"CONTENT_TYPE")
        if ctype and not any(n == b"content-type" for n, _ in headers):
            append((b"content-type", ctype))
        raw_path, _, query = get(b"REQUEST_URI", b"").partition(b"?")
        path_info = get(b"PATH_INFO")
        if path_info:
            root = get(b"SCRIPT_NAME", b"").decode("utf-8", "replace").rstrip("/")
            path = root + path_info.decode("utf-8", "replace")
        else:
            doc = get(b"DOCUMENT_URI") or get(b"SCRIPT_NAME")
            if doc:
                path = doc.decode("utf-8", "replace")
            else:
                path = unquote(raw_path.decode("latin-1"), "utf-8", "replace") or "/"
            root = self.script_name
            if root and not (path == root or path.startswith(root + "/")):
                root = ""
        if not raw_path:
            raw_path = path.encode("utf-8")
        qs = get(b"QUERY_STRING")
        if qs is None:
            qs = query
        if get(b"HTTPS", b"").lower() in (b"on", b"1", b"yes") or get(b"REQUEST_SCHEME") == b"https":
            scheme = "https"
        else:
            scheme = "http"
        client = None
        addr = get(b"REMOTE_ADDR")
        if addr:
            try:
                client = (addr.decode("latin-1"), int(get(b"REMOTE_PORT") or 0))
            except ValueError:
                client = (addr.decode("latin-1"), 0)
        server = None
        host = get(b"SERVER_ADDR") or get(b"SERVER_NAME")
        if host:
            try:
                server = (host.decode("latin-1"), int(get(b"SERVER_PORT") or 0))
            except ValueError:
                server = (host.decode("latin-1"), None)
        method = _METHODS.get(get(b"REQUEST_METHOD", b"GET"))
        if method is None:
            method = get(b"REQUEST_METHOD").decode("latin-1").upper()
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": _VERSIONS.get(get(b"SERVER_PROTOCOL"), "1.1"),
            "method": method,
            "scheme": scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": qs,
            "root_path": root,
            "headers": headers,
            "client": client,
            "server": server,
            "state": self.state.copy(),
        }
        if length:
            try:
                left = max(int(length), 0)
            except ValueError:
                left = -1
        elif method in _BODILESS and not chunked:
            left = 0  # nginx sends CONTENT_LENGTH "" for requests without a body
        else:
            left = -1  # to the end of FCGI_STDIN (a chunked upload, unbuffered)
        return scope, left

    # -- worker threads -------------------------------------------------------------

    def handle(self, req: Request) -> None:
        """One request, in a worker thread: scope, small body, hand-off,
        then the worker's side of the response."""
        try:
            scope, left = self.make_scope(req)
        except Exception:
            text = traceback.format_exc()
            log.error("bad request parameters\n%s", text.rstrip())
            req._lib.FCGX_PutStr(_ERROR_500, len(_ERROR_500), req._c.out)
            return
        loop = self._loop
        if loop is None or self._done:  # the server stopped meanwhile: no answer
            self._drop_connection(req)
            return
        ex = _Exchange(self, req, scope, req._c.ipcFd)
        if left != 0:
            # The first chunk now (nginx sends the body with the head).
            n = CHUNK if left < 0 else min(CHUNK, left)
            try:
                data = req._get(_core._IN, n)
            except OSError:
                return  # the web server went away
            more = len(data) == n
            if left > 0:
                left -= len(data)
                more = more and left > 0
            ex.body = data
            ex.more_body = more
        ex.left = left
        if self._use_baton and self._baton.acquire(False):
            # The loop's thread is waiting in its poll: run the app here, no
            # hand-over (it goes on in the loop's thread if it must wait).
            try:
                if self._done:  # stopped while this worker was on its way
                    self._drop_connection(req)
                    return
                self._run_here(loop, ex)
            finally:
                self._baton.release()
            ex.serve()
            self.served += 1
            return
        self._queue.append(ex)
        if not self._scheduled:
            self._scheduled = True
            try:
                loop.call_soon_threadsafe(self._start_queued)
            except RuntimeError:  # the loop is closed: stopping
                return
        ex.serve()
        self.served += 1

    def _run_here(self, loop, ex: _Exchange) -> None:
        """Starts the app's task and runs the loop's ready callbacks in this
        worker thread, which holds the baton (the loop's thread is blocked
        in its poll and takes the baton back before it touches the loop).
        Wakes the loop's thread when work is left for it: callbacks beyond
        a bound, or a timer earlier than the one its poll waits for."""
        scheduled = loop._scheduled
        first = scheduled[0] if scheduled else None
        if _thread_state.loop is not loop:
            # Once per worker and loop (this thread runs nothing else):
            # the running loop, and async generators first run here
            # belong to the loop (their finalization is scheduled on it),
            # as in the loop's thread.
            _thread_state.loop = loop
            sys.set_asyncgen_hooks(loop._asyncgen_firstiter_hook,
                                   loop._asyncgen_finalizer_hook)
        asyncio._set_running_loop(loop)
        try:
            coro = self.app(ex.scope, ex.receive, ex.send)
            if loop._task_factory is None:
                task = asyncio.Task(coro, loop=loop)
            else:
                task = loop.create_task(coro)
            ex.task = task
            self._tasks.add(task)
            ready = loop._ready
            n = 0
            while ready and n < 100:
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
                n += 1
            if task.done():
                ex.finished(task)  # the common case: no callback to schedule
            else:
                task.add_done_callback(ex.finished)
        finally:
            asyncio._set_running_loop(None)
        # Workers with something to do, this one apart (it looks next).
        to_wake = self._to_wake
        if to_wake:
            to_wake.discard(ex.wake)
            for lock in to_wake:
                if lock.locked():
                    lock.release()
            to_wake.clear()
        if (loop._ready or (scheduled and scheduled[0] is not first)
                or getattr(loop, "_stopping", False)):
            loop._write_to_self()

    def _hold(self) -> None:
        """A worker waits for a response that takes a while: if fewer than
        ``threads`` workers are left for new requests, add one (up to
        ``max_threads``). Workers are not removed: one idle in accept or on
        a kept-alive connection costs only its memory."""
        pool = self.pool
        with self._grow_lock:
            self._held += 1
            total = len(pool._workers)
            if total - self._held >= self.threads or total >= self.max_threads:
                return
            if pool._stopping:
                return
            w = _Worker()
            pool._workers.append(w)
        t = threading.Thread(target=pool._work, args=(w,), name=f"{pool.name}-{total}",
                             daemon=True)
        w.thread = t
        t.start()

    def _unhold(self) -> None:
        with self._grow_lock:
            self._held -= 1

    def _drop_connection(self, req: Request) -> None:
        """Closes the request's connection without ending the request (the
        web server sees the response cut), and readies the request object
        for the next accept."""
        req._end()
        h = req._h
        h.lib.FCGX_Free(h.ptr, 1)
        h.lib.FCGX_InitRequest(h.ptr, req._sock, FCGI_FAIL_ACCEPT_ON_INTR)

    # -- the event loop -------------------------------------------------------------

    def _start_queued(self) -> None:
        self._scheduled = False
        q = self._queue
        app = self.app
        create = self._loop.create_task
        tasks = self._tasks
        while q:
            ex = q.popleft()
            task = create(app(ex.scope, ex.receive, ex.send))
            ex.task = task
            tasks.add(task)
            task.add_done_callback(ex.finished)

    async def _lifespan_startup(self):
        """Runs the lifespan task up to startup.complete. Returns the task
        and its queue, or (None, None) when the app has no lifespan."""
        if self.lifespan == "off":
            return None, None
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        outbox: asyncio.Queue = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}

        async def send(message):
            await outbox.put(message)

        async def run():
            await self.app(scope, inbox.get, send)

        task = loop.create_task(run())
        await inbox.put({"type": "lifespan.startup"})
        getter = loop.create_task(outbox.get())
        done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            exc = None if task.cancelled() else task.exception()
            if self.lifespan == "auto":
                why = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
                log.info("the application does not support the lifespan "
                         "protocol (%s); going on without it", why)
                return None, None
            raise LifespanFailure("the application's lifespan ended before startup completed"
                                  + (f": {exc!r}" if exc is not None else ""))
        message = getter.result()
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            return task, (inbox, outbox)
        if kind == "lifespan.startup.failed":
            task.cancel()
            raise LifespanFailure(f"startup failed: {message.get('message', '')}")
        task.cancel()
        if self.lifespan == "auto":
            log.info("the application does not support the lifespan protocol "
                     "(it answered %r); going on without it", kind)
            return None, None
        raise LifespanFailure(f"unexpected lifespan message {kind!r} at startup")

    async def _lifespan_shutdown(self, task, queues, timeout: float) -> None:
        inbox, outbox = queues
        await inbox.put({"type": "lifespan.shutdown"})
        getter = asyncio.get_running_loop().create_task(outbox.get())
        done, _ = await asyncio.wait({task, getter}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            task.cancel()
            exc = None if task.cancelled() or not task.done() else task.exception()
            raise LifespanFailure("lifespan shutdown did not complete"
                                  + (f": {exc!r}" if exc is not None else ""))
        message = getter.result()
        if message.get("type") == "lifespan.shutdown.failed":
            raise LifespanFailure(f"shutdown failed: {message.get('message', '')}")
        if message.get("type") != "lifespan.shutdown.complete":
            raise LifespanFailure(f"unexpected lifespan message {message.get('type')!r} "
                                  "at shutdown")
        try:
            await asyncio.wait_for(task, timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
        except Exception:
            log.exception("the lifespan task failed after shutdown")

    async def serve(self) -> None:
        """Serves until :meth:`stop` (or SIGTERM/Ctrl-C when running in the
        main thread through :meth:`serve_forever`)."""
        loop = self._loop = asyncio.get_running_loop()
        sel = getattr(loop, "_selector", None)
        self._defer_wake = isinstance(sel, _WakeBeforeWait) and sel.to_wake is self._to_wake
        baton = self._baton
        self._use_baton = (self._defer_wake and baton is not None
                           and getattr(sel, "baton", None) is baton and not loop.get_debug()
                           and hasattr(loop, "_ready") and hasattr(loop, "_scheduled")
                           and hasattr(loop, "_asyncgen_finalizer_hook"))
        self._use_baton = self._use_baton and sel._selector.active
        self._stop = asyncio.Event()
        lifespan_task, queues = await self._lifespan_startup()
        self.pool = _Pool(self.server.fileno(), self.handle, self.threads,
                               owns_socket=self.server.owns_socket, grace=self.grace,
                               encoding="latin-1", name="libfcgi-asgi")
        self.pool.start()
        watcher = loop.create_task(self._watch_shutdown())
        try:
            await self._stop.wait()
        finally:
            watcher.cancel()
            self.pool.stop()
            await self._drain()
            try:
                if lifespan_task is not None:
                    await self._lifespan_shutdown(lifespan_task, queues, self.grace)
            finally:
                # A request still arriving (on a kept-alive connection) is
                # dropped from now on, and no worker runs the loop.
                self._done = True
                self._use_baton = False

    async def _watch_shutdown(self) -> None:
        # A shutdown asked of the library (SIGUSR1 with its handler,
        # libfcgi.shutdown()) or every worker gone also stops the server.
        while True:
            await asyncio.sleep(0.25)
            if _core.shutdown_requested() or not self.pool._alive():
                self.stop()
                return

    async def _drain(self) -> None:
        """Waits up to ``grace`` seconds for running requests (and their
        workers' last writes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        pool = self.pool
        while loop.time() < deadline:
            if not self._tasks and not any(w.busy for w in pool._alive()):
                break
            await asyncio.sleep(0.02)
        else:
            log.warning("%d request(s) still running after %.1f s",
                        len(self._tasks), self.grace)
            for t in list(self._tasks):
                t.cancel()
            await asyncio.sleep(0.05)
        # Let the workers woken from accept() leave it before the socket is
        # closed (its number could be reused by another socket). Those
        # waiting on a kept-alive connection are not waited for.
        end = loop.time() + 0.5
        for w in pool._alive():
            while w.thread.is_alive() and loop.time() < end:
                await asyncio.sleep(0.01)

    def stop(self, reason: str | None = None) -> None:
        """Stops the server (from the loop's thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop :meth:`serve_forever` runs: asyncio's selector loop
        with a selector that wakes the workers when the loop is about to
        wait. (:meth:`serve` also runs on any other loop; the workers are
        then woken by ``call_soon``.)"""
        return asyncio.SelectorEventLoop(_waking_selector(self._to_wake, self._baton))

    def serve_forever(self) -> None:
        """Runs a new event loop and serves until SIGTERM (returns) or
        Ctrl-C (raises KeyboardInterrupt once the requests in progress are
        done). Raises :class:`LifespanFailure` when the startup fails."""
        loop = self.new_event_loop()
        main = threading.current_thread() is threading.main_thread()
        installed = []
        if main:
            for sig, reason in ((signal.SIGINT, "interrupt"), (signal.SIGTERM, "terminate")):
                try:
                    loop.add_signal_handler(sig, self.stop, reason)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        poller = getattr(getattr(loop, "_selector", None), "_selector", None)
        if isinstance(poller, _BatonPoll):
            # This thread runs the loop's code; its polls lend the baton.
            self._baton.acquire()
            poller.active = True
        try:
            loop.run_until_complete(self.serve())
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if signal.SIGTERM in installed:
                # libfcgi's C handler cannot be put back: the default.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                if isinstance(poller, _BatonPoll) and poller.active:
                    poller.active = False
                    self._baton.release()
                self._loop = None
                self.server.close()
        if self._stop_reason == "interrupt":
            raise KeyboardInterrupt

    def close(self) -> None:
        self.server.close()


def serve(app, bind=None, **kwargs) -> None:
    """``ASGIServer(app, bind, **kwargs).serve_forever()``."""
    ASGIServer(app, bind, **kwargs).serve_forever()


def main(argv: list[str] | None = None) -> int:
    from .wsgi import load_app

    parser = argparse.ArgumentParser(
        prog="python -m libfcgi.asgi",
        description="Serve an ASGI application over FastCGI with libfcgi.",
    )
    add_common_arguments(parser)
    parser.add_argument("--threads", "-t", type=int, default=4,
                        help="I/O worker threads kept for new requests (default 4); more "
                        "are added while responses in progress hold some")
    parser.add_argument("--max-threads", type=int, default=128,
                        help="at most this many I/O threads (default 128): requests in "
                        "progress at once, plus the ones kept for new requests")
    parser.add_argument("--script-name", "--root-path", dest="script_name", default="",
                        help="where the app is mounted (root_path), when the web server "
                        "sends no PATH_INFO (default: the root)")
    parser.add_argument("--lifespan", choices=["auto", "on", "off"], default="auto",
                        help="the ASGI lifespan protocol (default auto: used if the app "
                        "supports it)")
    args = parser.parse_args(argv)
    mode = start_command(args)
    app = load_app(args.app)
    try:
        server = ASGIServer(app, args.bind, threads=args.threads,
                            max_threads=max(args.max_threads, args.threads), backlog=args.backlog,
                            socket_mode=mode, script_name=args.script_name, grace=args.grace,
                            lifespan=args.lifespan)
    except (OSError, ValueError) as e:
        print(f"libfcgi.asgi: {e}", file=sys.stderr)
        return 2
    where = args.bind if args.bind is not None else "fd 0"
    log.info("serving %s on %s with %d threads", args.app, where, args.threads)
    try:
        server.serve_forever()
    except LifespanFailure as e:
        log.error("%s; stopped", e)
        return 3
    except KeyboardInterrupt:
        log.info("interrupted, stopped")
        return 130
    log.info("stopped")
    return 0


if __name__ == "__main__":
    # Run the one libfcgi.asgi module, not this __main__ copy, so that an
    # application catching libfcgi.asgi.ClientDisconnected gets ours.
    from libfcgi.asgi import main as _main

    sys.exit(_main())
