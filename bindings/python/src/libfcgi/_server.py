"""The Pythonic server: a listening socket, iteration over requests, and a
pool of worker threads (each with its own request object) with a clean
Ctrl-C / SIGTERM shutdown."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from . import _core
from ._core import Request

__all__ = ["Server", "WorkerPool"]

log = logging.getLogger("libfcgi")


class Server:
    """A FastCGI listening socket.

    ``address``: a port, ``"host:port"``, ``"[::1]:port"``, ``(host,
    port)``, or a Unix socket path (created here; a stale socket file is
    replaced, and the file is removed by :meth:`close`); None means fd 0,
    the socket a web server passes. ``socket_mode`` sets the permissions
    of a Unix socket (e.g. ``0o660``). ``fd`` uses an already open
    listening socket (not closed by :meth:`close`).

    Iterating over the server yields requests one at a time::

        with libfcgi.Server("127.0.0.1:9000") as server:
            for req in server:
                with req:
                    req.stdout.write(b"Content-Type: text/plain\\r\\n\\r\\nhi\\n")

    :meth:`serve` runs a handler in several threads.
    """

    def __init__(self, address=None, *, backlog: int = 1024, socket_mode: int | None = None,
                 fd: int | None = None, encoding: str = "utf-8"):
        _core.init()
        self.encoding = encoding
        self._unix_path: str | None = None
        if fd is not None:
            self._fd = int(fd)
            self._owned = False
        elif address is None:
            if _core.listening_socket_kind(0) is None:
                raise OSError(
                    "libfcgi.Server: no address given and fd 0 is not a listening socket "
                    "(start the program from a web server or spawner, or give an address)"
                )
            self._fd = 0
            self._owned = False
        else:
            path = _core.unix_socket_path(address)
            if path is not None:
                _core.remove_stale_socket(path)
            self._fd = _core.open_socket(address, backlog)
            self._owned = True
            if path is not None:
                self._unix_path = os.path.abspath(path)
                if socket_mode is not None:
                    os.chmod(path, socket_mode)
        self.address = address
        self._closed = False

    def fileno(self) -> int:
        return self._fd

    @property
    def owns_socket(self) -> bool:
        return self._owned

    def request(self) -> Request:
        """A new request object on this socket."""
        return Request(self._fd, encoding=self.encoding)

    def requests(self) -> Iterator[Request]:
        """Yields each accepted request (the same object each time); the
        previous request is finished before the next is accepted. Ends at
        shutdown; Ctrl-C raises KeyboardInterrupt."""
        req = self.request()
        try:
            while req.accept():
                yield req
                req.finish()
        finally:
            req.finish()
            req.close()

    __iter__ = requests

    def serve(self, handler: Callable[[Request], object], threads: int = 1, *,
              grace: float = 30.0) -> None:
        """Calls ``handler(req)`` for every request, in ``threads`` worker
        threads, until Ctrl-C (KeyboardInterrupt is raised after the
        requests in progress are finished), SIGTERM, or :meth:`stop`.
        An exception in the handler becomes a 500 response (if nothing was
        written) and a traceback on FCGI_STDERR."""

        def handle(req: Request) -> None:
            with req:
                handler(req)

        self._pool = WorkerPool(self._fd, handle, threads, owns_socket=self._owned,
                                grace=grace, encoding=self.encoding)
        self._pool.run()

    def stop(self) -> None:
        """Stops :meth:`serve` (from another thread or a signal handler)."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.stop()

    def close(self) -> None:
        """Closes the listening socket if this server opened it (and removes
        its Unix socket file)."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            try:
                os.close(self._fd)
            except OSError:
                pass
            if self._unix_path:
                _core.remove_stale_socket(self._unix_path)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<libfcgi.Server {self.address!r} fd={self._fd}>"


class _Terminate(Exception):
    pass


class _Worker:
    __slots__ = ("thread", "busy", "request")

    def __init__(self):
        self.thread: threading.Thread | None = None
        self.busy = False
        self.request: Request | None = None


class WorkerPool:
    """``threads`` daemon threads, each with its own :class:`Request`,
    accepting on ``fd`` and calling ``handle(req)`` (which must finish the
    request or leave it to the pool).

    ``handle`` may leave the request unfinished: the worker's next
    ``accept()`` finishes it (``FCGX_Accept_r`` calls ``FCGX_Finish_r``
    first).

    :meth:`run` blocks the calling thread. Process signals go to the main
    thread only (workers block them), so Ctrl-C and SIGTERM reach
    :meth:`run`, which then stops accepting (shutting down the listening
    socket when the pool owns it, else ``FCGX_ShutdownPending``), waits up
    to ``grace`` seconds for the requests being served, and returns (or
    re-raises KeyboardInterrupt). Workers idle on a kept-alive connection
    are not waited for; they end with the process.
    """

    def __init__(self, fd: int, handle: Callable[[Request], None], threads: int = 8, *,
                 owns_socket: bool = True, grace: float = 30.0, encoding: str = "utf-8",
                 name: str = "libfcgi-worker"):
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.fd = fd
        self.handle = handle
        self.threads = threads
        self.owns_socket = owns_socket
        self.grace = grace
        self.encoding = encoding
        self.name = name
        self._stopping = False
        self._stop_event = threading.Event()
        self._workers = [_Worker() for _ in range(threads)]
        self.served = 0

    # -- workers --------------------------------------------------------------

    def _work(self, w: _Worker) -> None:
        _core._block_signals_in_this_thread()
        req = w.request = Request(self.fd, encoding=self.encoding)
        handle = self.handle
        failures = 0
        try:
            while not self._stopping:
                try:
                    if not req.accept():
                        break
                except OSError as e:
                    if self._stopping:
                        break
                    failures += 1
                    log.error("libfcgi: accept failed: %s", e)
                    time.sleep(min(0.01 * failures, 1.0))
                    continue
                failures = 0
                w.busy = True
                try:
                    handle(req)
                except BaseException:  # noqa: BLE001 - the worker must go on
                    log.exception("libfcgi: request handler failed")
                finally:
                    self.served += 1
                    # The next accept() finishes the request (FCGX_Accept_r
                    # does FCGX_Finish_r first, without the GIL): one call
                    # less per request. When stopping, finish it now.
                    if self._stopping:
                        req.finish()
                    w.busy = False
        finally:
            try:
                req.finish()
            finally:
                w.busy = False
                req.close()

    def start(self) -> None:
        for i, w in enumerate(self._workers):
            t = threading.Thread(target=self._work, args=(w,), name=f"{self.name}-{i}", daemon=True)
            w.thread = t
            t.start()

    # -- control --------------------------------------------------------------

    def stop(self) -> None:
        """Stops accepting; safe from any thread and from signal handlers."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_event.set()
        if self.owns_socket:
            _core.shutdown_listener(self.fd)
        else:
            # A shared socket (fd 0 from a spawner) must stay usable for the
            # other processes: ask the library to stop, and interrupt idle
            # workers with SIGUSR1 when libfcgi's own handler is installed.
            _core.request_shutdown()
            self._interrupt_idle_workers()

    def _interrupt_idle_workers(self) -> None:
        if not hasattr(signal, "pthread_kill") or not hasattr(signal, "SIGUSR1"):
            return
        try:
            if signal.getsignal(signal.SIGUSR1) is not None:
                return  # not libfcgi's C handler: do not send it
        except ValueError:
            return
        for w in self._workers:
            t = w.thread
            if t is not None and t.is_alive() and not w.busy and t.ident:
                try:
                    signal.pthread_kill(t.ident, signal.SIGUSR1)
                except (OSError, ValueError):
                    pass

    def _alive(self) -> list[_Worker]:
        return [w for w in self._workers if w.thread is not None and w.thread.is_alive()]

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            if not any(w.busy for w in self._alive()):
                break
            time.sleep(0.02)
        else:
            log.warning("libfcgi: %d request(s) still running after %.1f s",
                        sum(w.busy for w in self._alive()), self.grace)
        # Give workers that were woken a moment to leave accept().
        end = time.monotonic() + 0.2
        for w in self._alive():
            left = end - time.monotonic()
            if left <= 0:
                break
            w.thread.join(left)

    def run(self) -> None:
        """Starts the workers and blocks until the pool stops."""
        main = threading.current_thread() is threading.main_thread()
        prev_term = None
        installed = False
        if main and hasattr(signal, "SIGTERM"):
            def on_term(signum, frame):
                raise _Terminate()

            try:
                prev_term = signal.getsignal(signal.SIGTERM)
                signal.signal(signal.SIGTERM, on_term)
                installed = True
            except (ValueError, OSError):
                pass
        interrupted = False
        try:
            self.start()
            while not self._stop_event.wait(0.25):
                if not self._alive():
                    break
                if _core.shutdown_requested():
                    break
        except KeyboardInterrupt:
            interrupted = True
        except _Terminate:
            pass
        finally:
            self.stop()
            try:
                self._drain()
            except (KeyboardInterrupt, _Terminate):
                pass
            if installed:
                try:
                    # A handler installed from C (libfcgi's) cannot be put
                    # back from Python: the default is the closest.
                    signal.signal(signal.SIGTERM,
                                  signal.SIG_DFL if prev_term is None else prev_term)
                except (ValueError, OSError):
                    pass
        if interrupted:
            raise KeyboardInterrupt


def _print_err(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# ---- the command lines of libfcgi.wsgi and libfcgi.asgi ----------------------


def add_common_arguments(parser) -> None:
    """The options both servers' command lines take: the application, where
    to listen, the socket's backlog and mode, the working directory and the
    grace period at shutdown."""
    parser.add_argument("app", help="the application, as module:attribute (e.g. myapp:app)")
    parser.add_argument(
        "--bind", "-b", default=None,
        help="host:port, :port, [::1]:port or a Unix socket path; "
        "default: the listening socket on fd 0 (passed by the web server)",
    )
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog (default 1024)")
    parser.add_argument("--socket-mode", default=None,
                        help="permissions of a Unix socket, in octal (e.g. 660)")
    parser.add_argument("--chdir", default=None, help="change to this directory first")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds to let running requests finish at shutdown")


def start_command(args) -> int | None:
    """What both command lines do once parsed: change directory, log this
    package's messages to stderr, and return the socket mode (or None).
    Only this package's logger: the application's logging stays its own
    (Flask, for one, logs to wsgi.errors unless the root logger has
    handlers)."""
    if args.chdir:
        os.chdir(args.chdir)
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return int(args.socket_mode, 8) if args.socket_mode else None
