"""The request object and its streams, on top of the C API (fcgiapp.h).

One :class:`Request` owns one ``FCGX_Request`` (80 bytes, allocated here
with ctypes) and releases it with ``FCGX_Free(req, 1)`` when it is closed or
garbage-collected. A request object is meant to be used by one thread at a
time; several threads serve one socket concurrently by each having its own
request object (as in C). :meth:`Request.close` may be called from another
thread: if the owner is blocked in :meth:`Request.accept`, the release is
done by the owner when accept returns.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import io
import os
import socket
import stat
import sys
import threading
import traceback
import weakref
from collections.abc import Iterator, Mapping
from ctypes import c_char, string_at

from . import _native
from ._native import BUFFERED_WRITE_LIMIT, FCGX_Request

__all__ = [
    "AUTHORIZER",
    "FCGI_FAIL_ACCEPT_ON_INTR",
    "FILTER",
    "RESPONDER",
    "FastCGIError",
    "InputStream",
    "OutputStream",
    "Params",
    "Request",
    "init",
    "is_cgi",
    "open_socket",
    "request_shutdown",
    "shutdown_requested",
]

RESPONDER = 1
AUTHORIZER = 2
FILTER = 3
ROLE_NAMES = {RESPONDER: "RESPONDER", AUTHORIZER: "AUTHORIZER", FILTER: "FILTER"}

FCGI_FAIL_ACCEPT_ON_INTR = 1

FCGX_UNSUPPORTED_VERSION = -2
FCGX_PROTOCOL_ERROR = -3
FCGX_PARAMS_ERROR = -4
FCGX_CALL_SEQ_ERROR = -5

_FCGX_MESSAGES = {
    FCGX_UNSUPPORTED_VERSION: "FastCGI: unsupported protocol version",
    FCGX_PROTOCOL_ERROR: "FastCGI: protocol error (the peer aborted or closed the request)",
    FCGX_PARAMS_ERROR: "FastCGI: malformed request parameters",
    FCGX_CALL_SEQ_ERROR: "FastCGI: call out of sequence",
    -1: "FastCGI: end of stream",
}

_CHUNK = 1 << 30  # largest count handed to one C call (it takes an int)
_SCRATCH = 65536


class FastCGIError(OSError):
    """A stream error reported by the library: ``errno`` is a positive
    errno value or a negative ``FCGX_*`` code (-2 … -5)."""


def _error(code: int, what: str) -> OSError:
    if code > 0:
        return FastCGIError(code, f"{what}: {os.strerror(code)}")
    return FastCGIError(code, f"{what}: {_FCGX_MESSAGES.get(code, f'error {code}')}")


# ---------------------------------------------------------------------------
# Process-wide set-up.

_init_lock = threading.Lock()
_initialised = False


def init() -> None:
    """``FCGX_Init()``: loads the library and initialises it (once). Called
    for you by everything that needs it.

    The library installs libfcgi's signal handlers here if the program has
    none: SIGPIPE is ignored (writes to a vanished peer fail with EPIPE) and
    SIGTERM/SIGUSR1 request a shutdown (``accept()`` then returns False)
    instead of killing the process.
    """
    global _initialised
    if _initialised:
        return
    with _init_lock:
        if _initialised:
            return
        lib = _native.load()
        rc = lib.FCGX_Init()
        if rc != 0:
            raise _error(rc if rc > 0 else -rc, "FCGX_Init failed")
        _initialised = True


def is_cgi() -> bool:
    """``FCGX_IsCGI()``: True unless fd 0 is a listening socket (i.e. the
    process was started by a web server or spawner as a FastCGI app)."""
    init()
    return bool(_native.load().FCGX_IsCGI())


def _address_text(address) -> str:
    if isinstance(address, int):
        if not 0 < address < 65536:
            raise ValueError(f"port out of range: {address}")
        return f":{address}"
    if isinstance(address, tuple):
        host, port = address
        host = str(host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{int(port)}"
    if isinstance(address, (bytes, os.PathLike)):
        return os.fsdecode(address)
    if isinstance(address, str):
        return address
    raise TypeError(f"unsupported socket address: {address!r}")


def is_unix_address(text: str) -> bool:
    """Whether ``FCGX_OpenSocket`` takes this text as a Unix socket path
    (anything but ``[host]:port``, ``host:port`` and ``:port``)."""
    if text.startswith(("/", ".")):
        return True
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        return not (sep and port.isdigit() and 0 < int(port) < 65536)
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        return True
    return not (port.isdigit() and 0 < int(port) < 65536)


def open_socket(address, backlog: int = 128) -> int:
    """``FCGX_OpenSocket``: creates a listening socket and returns its file
    descriptor.

    ``address`` is a port number (all interfaces, as libfcgi's ``":port"``),
    ``"host:port"``, ``":port"``, ``"[::1]:port"``, a ``(host, port)``
    tuple, or a Unix socket path. Raises :class:`OSError` on failure.
    """
    text = _address_text(address)
    lib = _native.load()
    ctypes.set_errno(0)
    fd = lib.FCGX_OpenSocket(os.fsencode(text), int(backlog))
    if fd < 0:
        e = _native.get_errno() or _errno.EINVAL
        raise OSError(e, f"FCGX_OpenSocket({text!r}): {os.strerror(e)}", text)
    return fd


# ---------------------------------------------------------------------------
# Shutdown.

_shutdown_requested = False
_probe_lock = threading.Lock()
_probe: tuple[FCGX_Request, int] | None = None


def request_shutdown() -> None:
    """``FCGX_ShutdownPending()``: every ``accept()`` of this process
    returns False from now on (one already blocked returns at the next
    signal or connection). The flag cannot be cleared."""
    global _shutdown_requested
    _shutdown_requested = True
    _native.load().FCGX_ShutdownPending()


def shutdown_requested() -> bool:
    """Whether a shutdown was requested, by :func:`request_shutdown` or by
    the library itself (SIGTERM or SIGUSR1 with libfcgi's handlers)."""
    global _probe, _shutdown_requested
    if _shutdown_requested:
        return True
    # The library has no call that reads its shutdown flag. Ask it without
    # blocking: FCGX_Accept_r on a request whose "listening socket" is not a
    # socket fails at once, with -EINTR when a shutdown is pending (the
    # library checks the flag before calling accept()) and with another
    # error (ENOTSOCK) when not.
    with _probe_lock:
        if _probe is None:
            init()
            r = FCGX_Request()
            fd = os.open(os.devnull, os.O_RDONLY)
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
            _native.load().FCGX_InitRequest(ctypes.addressof(r), fd, 0)
            _probe = (r, fd)
        rc = _native.load().FCGX_Accept_r(ctypes.addressof(_probe[0]))
    if rc == -_errno.EINTR:
        _shutdown_requested = True
        return True
    return False


try:
    _check_signals = ctypes.pythonapi.PyErr_CheckSignals
    _check_signals.restype = ctypes.c_int
    _check_signals.argtypes = []
except (AttributeError, OSError):  # not CPython
    def _check_signals() -> int:
        return 0


# ---------------------------------------------------------------------------
# Parameters.


def _read_envp(envp) -> list[tuple[bytes, bytes]]:
    """The NULL-terminated ``NAME=value`` array as (name, value) pairs."""
    pairs = []
    append = pairs.append
    if not envp:
        return pairs
    i = 0
    while True:
        entry = envp[i]
        if entry is None:
            return pairs
        name, _, value = entry.partition(b"=")
        append((name, value))
        i += 1


class Params(Mapping):
    """The request's parameters (its CGI environment) as a read-only mapping
    of ``str`` to ``str``, in arrival order; the first of duplicate names
    wins (as ``FCGX_GetParam``). Bytes are decoded with ``encoding`` and
    ``surrogateescape``, so :meth:`get_bytes` and :attr:`raw` give back the
    exact bytes. Includes ``FCGI_ROLE``, which the library adds first."""

    __slots__ = ("_raw", "_map", "_encoding")

    def __init__(self, pairs: list[tuple[bytes, bytes]], encoding: str = "utf-8"):
        self._raw = pairs
        self._encoding = encoding
        m: dict[str, str] = {}
        for name, value in pairs:
            key = name.decode(encoding, "surrogateescape")
            if key not in m:
                m[key] = value.decode(encoding, "surrogateescape")
        self._map = m

    def __getitem__(self, key: str) -> str:
        return self._map[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """All (name, value) pairs as bytes, in order, duplicates kept."""
        return list(self._raw)

    def get_bytes(self, name: str | bytes, default: bytes | None = None) -> bytes | None:
        """The value of the first parameter called ``name``, as bytes."""
        if isinstance(name, str):
            name = name.encode(self._encoding, "surrogateescape")
        for n, v in self._raw:
            if n == name:
                return v
        return default

    def __repr__(self) -> str:
        return f"Params({self._map!r})"


# ---------------------------------------------------------------------------
# The request.


class _Handle:
    """The C struct and who is using it: the finalizer needs this, not the
    Request (so that a helper thread holding it does not keep the Request
    alive).

    ``busy`` is set while a thread is inside a C call on the struct; a
    close (explicit or by the garbage collector) during such a call is left
    to that thread (``close_pending``), which frees the struct when it
    leaves the call: the struct is never freed under the library's feet.
    """

    __slots__ = ("lib", "struct", "ptr", "guard", "busy", "closed", "close_pending", "helper")

    def __init__(self, lib, struct: FCGX_Request):
        self.lib = lib
        self.struct = struct
        self.ptr = ctypes.addressof(struct)
        self.guard = threading.Lock()  # held only for a few attribute updates
        self.busy = False
        self.closed = False
        self.close_pending = False
        self.helper: _AcceptHelper | None = None

    def enter(self) -> None:
        with self.guard:
            if self.closed or self.close_pending:
                raise ValueError("the FastCGI request is closed")
            if self.busy:
                raise RuntimeError("a FastCGI request object used by two threads at once")
            self.busy = True

    def leave(self) -> None:
        with self.guard:
            self.busy = False
            if self.close_pending and not self.closed:
                self.closed = True
                self.lib.FCGX_Free(self.ptr, 1)

    def close(self) -> None:
        """``FCGX_Free(req, 1)`` now, or when the thread inside a call leaves."""
        with self.guard:
            if self.closed:
                return
            if self.busy:
                self.close_pending = True
            else:
                self.closed = True
                self.lib.FCGX_Free(self.ptr, 1)
        helper = self.helper
        if helper is not None:
            helper.stop()


def _finalize(h: _Handle) -> None:
    h.close()


class _AcceptHelper:
    """Runs ``FCGX_Accept_r`` for the main thread while the main thread
    waits in Python, where Ctrl-C interrupts it.

    Used only when the main thread waits for the next request on a kept-
    alive connection: the library restarts that read after a signal (only
    accept() itself honours FCGI_FAIL_ACCEPT_ON_INTR), so a direct call
    would hold off KeyboardInterrupt until the next request. If the wait is
    interrupted, the call goes on here and the next ``accept()`` takes its
    result.
    """

    def __init__(self, h: _Handle):
        self.h = h
        self.go = threading.Lock()
        self.go.acquire()
        self.done = threading.Lock()
        self.done.acquire()
        self.running = False  # started, result not yet taken
        self.stopped = False
        self.rc = 0
        threading.Thread(target=self._run, name="libfcgi-accept", daemon=True).start()

    def _run(self) -> None:
        _block_signals_in_this_thread()
        h = self.h
        while True:
            self.go.acquire()
            if self.stopped:
                return
            try:
                self.rc = h.lib.FCGX_Accept_r(h.ptr)
            finally:
                h.leave()  # the caller entered for us
                self.done.release()
            if self.stopped:
                return

    def start(self) -> None:
        """Starts a call; the caller has done ``h.enter()``."""
        self.running = True
        self.go.release()

    def wait(self) -> int:
        """The result of the running call. Raises KeyboardInterrupt (the
        call goes on); returns -EINTR at a shutdown request."""
        while not self.done.acquire(timeout=0.5):
            if shutdown_requested():
                return -_errno.EINTR
        self.running = False
        return self.rc

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            if not self.running:
                self.go.release()


def _use_accept_helper(h: _Handle) -> bool:
    """Whether the wait must be interruptible from Python: in the main
    thread, with a Python SIGINT handler, on a kept-alive connection."""
    if h.struct.ipcFd < 0 or threading.current_thread() is not threading.main_thread():
        return False
    import signal

    try:
        handler = signal.getsignal(signal.SIGINT)
    except (ValueError, AttributeError):
        return False
    return callable(handler)


_IN, _OUT, _ERR, _DATA = 0, 1, 2, 3


class Request:
    """One FastCGI request slot: accept a request, read its parameters and
    body, write the response, finish, repeat.

    ``sock`` is the listening socket (a file descriptor or an object with
    ``fileno()``); by default the one opened by :func:`libfcgi.init_socket`,
    else fd 0 (the socket a web server passes). ``encoding`` decodes the
    parameters into ``str`` (``surrogateescape``) and encodes ``str``
    written with :meth:`write`.

    As a context manager it finishes the current request on exit; an
    exception in the block is answered with a 500 response (if nothing was
    written yet) and its traceback is sent to FCGI_STDERR.
    """

    def __init__(self, sock=None, *, fail_on_intr: bool = True, encoding: str = "utf-8"):
        init()
        lib = _native.load()
        if sock is None:
            from . import _classic

            sock = _classic.default_socket()
        if not isinstance(sock, int):
            sock = sock.fileno()
        self._lib = lib
        self.encoding = encoding
        struct = FCGX_Request()
        h = _Handle(lib, struct)
        lib.FCGX_InitRequest(h.ptr, int(sock), FCGI_FAIL_ACCEPT_ON_INTR if fail_on_intr else 0)
        self._h = h
        self._c = struct
        self._sock = int(sock)
        self._active = False
        self._gen = 0
        self._params: Params | None = None
        self._env: dict[str, str] | None = None
        self._streams: list = [None, None, None, None]
        self._filter_started = False
        self._wrote = False
        self._out_pending = 0
        self._scratch = None
        self._finalizer = weakref.finalize(self, _finalize, h)
        self._finalizer.atexit = False

    # -- lifetime -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` released the request."""
        return self._h.closed or self._h.close_pending

    def close(self) -> None:
        """Releases the ``FCGX_Request`` (``FCGX_Free(req, 1)``): the
        current request is dropped without a reply and its connection is
        closed. Call :meth:`finish` first to answer it. Idempotent; may be
        called from another thread (the release then happens when the
        owner's ``accept()`` returns)."""
        self._end()
        self._finalizer.detach()
        self._h.close()

    def __enter__(self) -> Request:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or not self._active:
            if self._active:
                self.finish()
            return
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
            self.finish()
            return
        try:
            self._report_exception(exc_type, exc, tb)
        finally:
            self.finish()

    def _report_exception(self, exc_type, exc, tb) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        try:
            self._put(_ERR, text.encode(self.encoding, "replace"))
            if not self._wrote:
                self._put(
                    _OUT,
                    b"Status: 500 Internal Server Error\r\n"
                    b"Content-Type: text/plain\r\n\r\nInternal Server Error\n",
                )
        except OSError:
            pass

    # -- accepting ----------------------------------------------------------

    def accept(self) -> bool:
        """Finishes the previous request (if any) and waits for the next one
        (``FCGX_Accept_r``). Returns True when a request arrived, False when
        the process is shutting down (:func:`request_shutdown`, SIGTERM) or
        the request was closed. Raises :class:`OSError` when accept fails,
        and KeyboardInterrupt when Ctrl-C interrupts the wait (the GIL is
        released while waiting)."""
        h = self._h
        if h.closed or h.close_pending:
            return False
        self._end()
        while True:
            rc = self._accept_once(h)
            if h.closed or h.close_pending:
                return False
            if rc == 0:
                self._begin()
                return True
            if rc == -_errno.EINTR:
                # A signal, or a shutdown request. Let Python run its
                # handlers now (KeyboardInterrupt is raised here).
                _check_signals()
                if shutdown_requested():
                    return False
                continue
            if shutdown_requested():
                return False
            code = -rc if rc < 0 else rc
            if code in (9997, 9998, 9999):
                raise FastCGIError(rc, f"FCGX_Accept_r failed ({rc})")
            raise OSError(code, f"FCGX_Accept_r: {os.strerror(code)}")

    def _accept_once(self, h: _Handle) -> int:
        helper = h.helper
        if helper is not None and helper.running:
            return helper.wait()  # an interrupted wait: take its result
        h.enter()
        if _use_accept_helper(h):
            if helper is None:
                helper = h.helper = _AcceptHelper(h)
            helper.start()
            return helper.wait()
        try:
            return h.lib.FCGX_Accept_r(h.ptr)
        finally:
            h.leave()

    def _begin(self) -> None:
        self._active = True
        self._gen += 1
        self._params = None
        self._env = None
        self._streams = [None, None, None, None]
        self._filter_started = False
        self._wrote = False
        self._out_pending = 0

    def _end(self) -> None:
        if self._active:
            self._active = False
            self._gen += 1
            # The streams point back at the request: drop them now, so an
            # idle request is freed as soon as it is unreferenced, not at the
            # next cycle collection (each holds the library's buffers).
            self._streams = [None, None, None, None]

    def finish(self) -> None:
        """Ends the current request (``FCGX_Finish_r``): sends the rest of
        the output and FCGI_END_REQUEST with the exit status. ``accept()``
        does it too; finishing early lets the web server go on at once."""
        h = self._h
        if not self._active or h.closed:
            return
        self._end()
        h.enter()
        try:
            h.lib.FCGX_Finish_r(h.ptr)
        finally:
            h.leave()

    @property
    def active(self) -> bool:
        """True between a successful :meth:`accept` and :meth:`finish`."""
        return self._active

    def _stream_ptr(self, which: int):
        if not self._active or self._h.closed:
            raise ValueError("I/O operation on a FastCGI request that is not active")
        c = self._c
        return c.in_ if which in (_IN, _DATA) else (c.out if which == _OUT else c.err)

    # -- request data -------------------------------------------------------

    @property
    def params(self) -> Params:
        """The request's parameters (CGI environment) as a mapping."""
        p = self._params
        if p is None:
            if not self._active:
                raise ValueError("no active request")
            p = self._params = Params(_read_envp(self._c.envp), self.encoding)
        return p

    @property
    def env(self) -> dict[str, str]:
        """The parameters as a plain ``dict`` of ``str`` (classic API):
        empty before the first request; after :meth:`finish` it still holds
        the last request's parameters (a copy) until the next accept."""
        e = self._env
        if e is None:
            if not self._active:
                return {}
            e = self._env = dict(self.params)
        return e

    environ = env

    def get_param(self, name: str, default: str | None = None) -> str | None:
        """One parameter (``FCGX_GetParam``), or ``default``."""
        return self.params.get(name, default)

    @property
    def role(self) -> int:
        """1 RESPONDER, 2 AUTHORIZER, 3 FILTER (of the last request)."""
        return self._c.role

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self._c.role, str(self._c.role))

    @property
    def request_id(self) -> int:
        return self._c.requestId

    @property
    def keep_connection(self) -> bool:
        """Whether the web server asked to keep the connection open."""
        return bool(self._c.keepConnection)

    # -- streams ------------------------------------------------------------

    def _stream(self, which: int):
        s = self._streams[which]
        if s is None:
            if not self._active:
                raise ValueError("no active request")
            cls = InputStream if which in (_IN, _DATA) else OutputStream
            s = self._streams[which] = cls(self, which)
        return s

    @property
    def stdin(self) -> InputStream:
        """FCGI_STDIN, the request body, as a binary file."""
        return self._stream(_IN)

    @property
    def stdout(self) -> OutputStream:
        """FCGI_STDOUT, the response (CGI headers, blank line, body)."""
        return self._stream(_OUT)

    @property
    def stderr(self) -> OutputStream:
        """FCGI_STDERR (the web server logs it)."""
        return self._stream(_ERR)

    @property
    def data(self) -> InputStream:
        """FCGI_DATA (FILTER role): the file to filter. The first use reads
        what is left of :attr:`stdin` (discarding it) and switches the input
        to FCGI_DATA (``FCGX_StartFilterData``)."""
        if not self._filter_started:
            self.start_filter_data()
        return self._stream(_DATA)

    def start_filter_data(self) -> None:
        """Reads the rest of FCGI_STDIN (discarding it) and switches the
        input to FCGI_DATA. Raises :class:`FastCGIError` (-5) unless this is
        a FILTER request."""
        h = self._h
        h.enter()
        try:
            self._start_filter_data()
        finally:
            h.leave()

    def _start_filter_data(self) -> None:
        ptr = self._stream_ptr(_IN)
        if self._c.role != FILTER:
            raise FastCGIError(FCGX_CALL_SEQ_ERROR, "FCGI_DATA exists only for FILTER requests")
        scratch = self._get_scratch()
        while self._lib.FCGX_GetStr(scratch, _SCRATCH, ptr) == _SCRATCH:
            pass
        if self._lib.FCGX_StartFilterData(ptr) != 0:
            raise _error(self._lib.FCGX_GetError(ptr) or FCGX_CALL_SEQ_ERROR, "FCGX_StartFilterData")
        self._filter_started = True

    def _get_scratch(self):
        s = self._scratch
        if s is None:
            s = self._scratch = ctypes.create_string_buffer(_SCRATCH + 1)
        return s

    # -- reading ------------------------------------------------------------

    def _get(self, which: int, size: int) -> bytes:
        ptr = self._stream_ptr(which)
        lib = self._lib
        if size is None or size < 0:
            chunks = []
            scratch = self._get_scratch()
            while True:
                got = lib.FCGX_GetStr(scratch, _SCRATCH, ptr)
                if got > 0:
                    chunks.append(string_at(scratch, got))
                if got < _SCRATCH:
                    break
            self._check_read(ptr)
            return b"".join(chunks)
        if size == 0:
            return b""
        if size <= _SCRATCH:
            scratch = self._get_scratch()
            got = lib.FCGX_GetStr(scratch, size, ptr)
            if got < size:
                self._check_read(ptr)
            return string_at(scratch, got)
        buf = bytearray(size)
        got = self._getinto(ptr, memoryview(buf))
        if got < size:
            del buf[got:]
        return bytes(buf)

    def _getinto(self, ptr, mv: memoryview) -> int:
        n = len(mv)
        total = 0
        while total < n:
            want = min(n - total, _CHUNK)
            arr = (c_char * want).from_buffer(mv[total:total + want])
            got = self._lib.FCGX_GetStr(arr, want, ptr)
            del arr
            total += got
            if got < want:
                self._check_read(ptr)
                break
        return total

    def _check_read(self, ptr) -> None:
        code = self._lib.FCGX_GetError(ptr)
        if code != 0:
            raise _error(code, "reading the request")

    def _getline(self, which: int, limit: int = -1) -> bytes:
        ptr = self._stream_ptr(which)
        lib = self._lib
        scratch = self._get_scratch()
        chunks = []
        want = 256
        while limit != 0:
            n = want if limit < 0 else min(want, limit)
            # FCGX_GetLine stores the line and a NUL. The line may contain
            # NUL bytes itself, so fill the buffer with a non-NUL byte
            # first: the terminator is then the last NUL in the buffer.
            ctypes.memset(scratch, 1, n + 1)
            if not lib.FCGX_GetLine(scratch, n + 1, ptr):
                self._check_read(ptr)
                break
            raw = string_at(scratch, n + 1)
            line = raw[: raw.rfind(b"\0")]
            chunks.append(line)
            if line.endswith(b"\n") or len(line) < n:
                break
            if limit > 0:
                limit -= len(line)
            want = min(want * 4, _SCRATCH)
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def read(self, size: int = -1) -> bytes:
        """Reads the request body (FCGI_STDIN): ``size`` bytes (fewer only at
        its end), or all of it."""
        h = self._h
        h.enter()
        try:
            return self._get(_IN, size)
        finally:
            h.leave()

    def readline(self, size: int = -1) -> bytes:
        h = self._h
        h.enter()
        try:
            return self._getline(_IN, size)
        finally:
            h.leave()

    # -- writing ------------------------------------------------------------

    def _put(self, which: int, data) -> int:
        ptr = self._stream_ptr(which)
        lib = self._lib
        if type(data) is not bytes:
            if isinstance(data, str):
                data = data.encode(self.encoding)
            else:
                mv = memoryview(data)
                if mv.readonly or not mv.c_contiguous:
                    data = mv.tobytes()
                else:
                    return self._put_buffer(ptr, mv.cast("B"), which)
        n = len(data)
        if n == 0:
            return 0
        if which == _OUT:
            self._wrote = True
            pending = self._out_pending = self._out_pending + n
            if pending <= BUFFERED_WRITE_LIMIT:
                # Fits in the buffer: a copy, no I/O; keep the GIL.
                if lib.FCGX_PutStr_buffered(data, n, ptr) != n:
                    raise self._write_error(ptr)
                return n
        if n <= _CHUNK:
            if lib.FCGX_PutStr(data, n, ptr) != n:
                raise self._write_error(ptr)
            return n
        return self._put_buffer(ptr, memoryview(data), which)

    def _put_buffer(self, ptr, mv: memoryview, which: int) -> int:
        n = len(mv)
        if n and which == _OUT:
            self._wrote = True
            self._out_pending += n
        done = 0
        while done < n:
            part = mv[done:done + _CHUNK]
            k = len(part)
            if part.readonly:
                arg = part.tobytes()
            else:
                arg = (c_char * k).from_buffer(part)
            if self._lib.FCGX_PutStr(arg, k, ptr) != k:
                raise self._write_error(ptr)
            del arg
            done += k
        return n

    def _write_error(self, ptr) -> OSError:
        code = self._lib.FCGX_GetError(ptr)
        return _error(code or _errno.EPIPE, "writing the response")

    def write(self, data) -> int:
        """Writes to FCGI_STDOUT (``str`` is encoded with ``encoding``)."""
        return self._guarded_put(_OUT, data)

    def write_stderr(self, data) -> int:
        """Writes to FCGI_STDERR."""
        return self._guarded_put(_ERR, data)

    def _guarded_put(self, which: int, data) -> int:
        h = self._h
        h.enter()
        try:
            return self._put(which, data)
        finally:
            h.leave()

    def flush(self) -> None:
        """Sends what is buffered on FCGI_STDOUT now (``FCGX_FFlush``)."""
        self._flush(_OUT)

    def _flush(self, which: int) -> None:
        h = self._h
        h.enter()
        try:
            ptr = self._stream_ptr(which)
            if which == _OUT:
                self._out_pending = 0
            if self._lib.FCGX_FFlush(ptr) != 0:
                raise self._write_error(ptr)
        finally:
            h.leave()

    def set_exit_status(self, status: int) -> None:
        """The application status sent in FCGI_END_REQUEST."""
        self._lib.FCGX_SetExitStatus(int(status), self._stream_ptr(_OUT))

    @property
    def exit_status(self) -> int:
        return self._c.appStatus

    @exit_status.setter
    def exit_status(self, status: int) -> None:
        self.set_exit_status(status)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("active" if self._active else "idle")
        return f"<libfcgi.Request {state} sock={self._sock} id={self._c.requestId}>"


class _StreamBase(io.RawIOBase):
    def __init__(self, req: Request, which: int):
        super().__init__()
        self._req = req
        self._which = which
        self._gen = req._gen

    def _ptr(self):
        r = self._req
        if r._gen != self._gen:
            raise ValueError("I/O operation on the stream of a finished FastCGI request")
        return r._stream_ptr(self._which)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("FastCGI streams have no file descriptor")

    def isatty(self) -> bool:
        return False

    @property
    def error(self) -> int:
        """``FCGX_GetError``: 0, an errno value, or an FCGX_* code."""
        return self._req._lib.FCGX_GetError(self._ptr())


class InputStream(_StreamBase):
    """FCGI_STDIN or FCGI_DATA as a read-only binary file: ``read``,
    ``readinto``, ``readline``, iteration over lines. Blocks until the
    requested bytes arrived or the stream ended (the GIL is released)."""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self._checkClosed()
        ptr = self._ptr()
        mv = memoryview(b)
        if mv.readonly:
            raise TypeError("readinto() needs a writable buffer")
        h = self._req._h
        h.enter()
        try:
            return self._req._getinto(ptr, mv.cast("B"))
        finally:
            h.leave()

    def read(self, size: int = -1) -> bytes:
        self._checkClosed()
        self._ptr()
        h = self._req._h
        h.enter()
        try:
            return self._req._get(self._which, size)
        finally:
            h.leave()

    def readall(self) -> bytes:
        return self.read(-1)

    def readline(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        self._ptr()
        h = self._req._h
        h.enter()
        try:
            return self._req._getline(self._which, -1 if size is None else size)
        finally:
            h.leave()

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    @property
    def at_eof(self) -> bool:
        """``FCGX_HasSeenEOF``: True once the end was met (no look-ahead)."""
        return bool(self._req._lib.FCGX_HasSeenEOF(self._ptr()))


class OutputStream(_StreamBase):
    """FCGI_STDOUT or FCGI_STDERR as a write-only binary file; ``write``
    takes bytes, bytearray, memoryview or any buffer. ``flush`` sends the
    buffered bytes now; ``close`` ends the stream (``FCGX_FClose``)."""

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._checkClosed()
        self._ptr()
        if isinstance(b, str):
            raise TypeError("write() argument must be a bytes-like object, not str")
        return self._req._guarded_put(self._which, b)

    def flush(self) -> None:
        if self.closed:
            return
        r = self._req
        if r._gen != self._gen or not r._active or r._h.closed:
            return
        r._flush(self._which)

    def close(self) -> None:
        if self.closed:
            return
        r = self._req
        try:
            if r._gen == self._gen and r._active and not r._h.closed:
                h = r._h
                h.enter()
                try:
                    ptr = r._stream_ptr(self._which)
                    if r._lib.FCGX_FClose(ptr) != 0:
                        raise r._write_error(ptr)
                finally:
                    h.leave()
        finally:
            super().close()


# ---------------------------------------------------------------------------
# Helpers for servers.


def listening_socket_kind(fd: int) -> str | None:
    """'unix', 'tcp' or None (not a listening socket)."""
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if not s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return None
        return "unix" if s.family == getattr(socket, "AF_UNIX", None) else "tcp"
    except OSError:
        return None
    finally:
        s.close()


def shutdown_listener(fd: int) -> None:
    """Wakes every thread blocked in accept() on ``fd`` (they get EINVAL)
    and refuses new connections. Only for a socket this process owns."""
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.close()


def unix_socket_path(address) -> str | None:
    """The file a Unix-socket address names, else None."""
    if isinstance(address, (int, tuple)):
        return None
    text = _address_text(address)
    return text if is_unix_address(text) else None


def remove_stale_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _block_signals_in_this_thread() -> None:
    """Keeps process signals (Ctrl-C, SIGTERM…) for the main thread, so a
    worker's blocking call is never the one interrupted."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        # Not SIGUSR1: libfcgi's shutdown signal, which a pool also sends to
        # its own idle workers to get them out of accept().
        sigs = {signal.SIGINT, signal.SIGTERM}
        for name in ("SIGHUP", "SIGUSR2", "SIGQUIT", "SIGCHLD", "SIGWINCH"):
            if hasattr(signal, name):
                sigs.add(getattr(signal, name))
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        except (OSError, ValueError):
            pass


def _write_err_fd(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
