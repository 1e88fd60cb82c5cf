"""The Pythonic API, in this process: Server, Request as a context manager,
binary streams, params, filter data, exit status, the GIL, lifetimes."""

from __future__ import annotations

import gc
import io
import os
import threading
import time

import pytest

import fcgiclient as fc

import libfcgi
from libfcgi import Server, WorkerPool


class InProc:
    """A Server on a Unix socket in this process, with a WorkerPool running
    ``handler`` in a background thread."""

    def __init__(self, tmp, handler, threads=1):
        self.path = str(tmp / f"p{threading.get_ident() % 1000}-{time.monotonic_ns() % 10**6}.sock")
        self.server = Server(self.path)
        self.errors = []

        def handle(req):
            try:
                with req:
                    handler(req)
            except BaseException as e:  # noqa: BLE001 - recorded for the test
                self.errors.append(e)
                raise

        self.pool = WorkerPool(self.server.fileno(), handle, threads)
        self.thread = threading.Thread(target=self.pool.run, daemon=True)
        self.thread.start()

    def request(self, *a, **kw):
        return fc.request(self.path, *a, **kw)

    def close(self):
        self.pool.stop()
        self.thread.join(5)
        self.server.close()
        assert not self.thread.is_alive()


@pytest.fixture
def serve(tmp):
    servers = []

    def start(handler, threads=1):
        s = InProc(tmp, handler, threads)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def test_params_mapping(serve):
    seen = {}

    def handler(req):
        seen["params"] = req.params
        seen["role"] = (req.role, req.role_name, req.request_id)
        req.stdout.write(b"Content-Type: text/plain\r\n\r\nok")

    s = serve(handler)
    params = [("REQUEST_URI", "/p"), ("DUP", "first"), ("DUP", "second"),
              (b"RAW", b"\xff\xfe caf\xc3\xa9"), ("EMPTY", "")]
    s.request(params, request_id=7)
    p = seen["params"]
    assert isinstance(p, libfcgi.Params)
    assert p["FCGI_ROLE"] == "RESPONDER"
    assert p["DUP"] == "first"
    assert ("DUP", "second") not in p.items()
    assert [v for k, v in p.raw if k == b"DUP"] == [b"first", b"second"]
    assert p.get_bytes("RAW") == b"\xff\xfe caf\xc3\xa9"
    assert p["RAW"].encode("utf-8", "surrogateescape") == b"\xff\xfe caf\xc3\xa9"
    assert p["EMPTY"] == ""
    assert "NOPE" not in p and p.get("NOPE") is None
    assert list(p)[0] == "FCGI_ROLE"
    assert seen["role"] == (1, "RESPONDER", 7)


def test_stdin_file_api(serve):
    seen = {}

    def handler(req):
        s = req.stdin
        assert s.readable() and not s.writable()
        seen["first"] = s.readline()
        seen["long"] = s.readline()
        seen["nul"] = s.readline()
        seen["limited"] = s.readline(3)
        buf = bytearray(10)
        seen["into"] = (s.readinto(memoryview(buf)[2:6]), bytes(buf))
        seen["lines"] = list(s)
        seen["eof"] = (s.read(), s.read(5), s.at_eof)
        req.stdout.write(b"\r\n")

    s = serve(handler)
    long_line = b"x" * 100_000 + b"\n"
    body = b"first\n" + long_line + b"a\0b\0\n" + b"abcdef" + b"WXYZ" + b"l1\nl2\nlast"
    s.request(fc.cgi_params("/", "POST", body), body, stdin_chunk=4096)
    assert seen["first"] == b"first\n"
    assert seen["long"] == long_line
    assert seen["nul"] == b"a\0b\0\n"
    assert seen["limited"] == b"abc"
    assert seen["into"] == (4, b"\0\0defW\0\0\0\0")
    assert seen["lines"] == [b"XYZl1\n", b"l2\n", b"last"]
    assert seen["eof"] == (b"", b"", True)


def test_big_body_read_and_readinto(serve):
    seen = {}

    def handler(req):
        first = req.stdin.read(1000)
        buf = bytearray(2_000_000)
        n = req.stdin.readinto(buf)
        rest = req.stdin.read()
        seen["data"] = first + bytes(buf[:n]) + rest
        req.stdout.write(b"\r\n")

    s = serve(handler)
    body = os.urandom(3_000_000)
    s.request(fc.cgi_params("/", "POST", body), body)
    assert seen["data"] == body


def test_stdout_writes_buffers_flush_and_stderr(serve):
    big = os.urandom(300_000)

    def handler(req):
        out = req.stdout
        assert out.writable()
        out.write(b"Content-Type: application/octet-stream\r\n\r\n")
        out.write(bytearray(b"ba"))
        out.write(memoryview(b"-mv-readonly-")[1:-1])
        out.write(memoryview(bytearray(b"[rw]")))
        out.flush()  # a record of its own, now
        out.write(big)
        with pytest.raises(TypeError):
            out.write("text")
        req.stderr.write(b"err 1\n")
        print("printed to stderr", file=io.TextIOWrapper(req.stderr, write_through=True))
        req.exit_status = 42

    s = serve(handler)
    r = s.request(fc.cgi_params("/"))
    assert r.body == b"ba" + b"mv-readonly" + b"[rw]" + big
    assert r.stderr.startswith(b"err 1\nprinted to stderr\n")
    assert r.app_status == 42
    kinds = [k for k, _ in r.records]
    assert kinds[-1] == fc.END_REQUEST
    # The flushed head arrived as its own STDOUT record before the big part.
    assert r.records[0] == (fc.STDOUT, len(b"Content-Type: application/octet-stream\r\n\r\n") + 2 + 11 + 4)


def test_exception_in_with_block_gives_500_and_traceback(serve):
    def handler(req):
        if req.params["REQUEST_URI"] == "/boom":
            raise ZeroDivisionError("boom")
        req.stdout.write(b"Content-Type: text/plain\r\n\r\nfine")

    s = serve(handler)
    r = s.request(fc.cgi_params("/boom"))
    assert r.status == 500
    assert b"ZeroDivisionError: boom" in r.stderr
    assert b"Traceback" in r.stderr
    # The server is still serving.
    assert s.request(fc.cgi_params("/ok")).body == b"fine"


def test_filter_role_data_stream(serve):
    seen = {}

    def handler(req):
        seen["role"] = req.role
        seen["stdin_head"] = req.stdin.read(3)
        seen["data"] = req.data.read()  # the rest of stdin is skipped
        req.stdout.write(b"Content-Type: text/plain\r\n\r\n" + seen["data"].upper())

    s = serve(handler)
    data = b"filter me\n" * 1000
    r = s.request(fc.cgi_params("/f", FCGI_DATA_LENGTH=str(len(data))), b"stdin part",
                  data=data, role=fc.FILTER)
    assert seen["role"] == libfcgi.FILTER
    assert seen["stdin_head"] == b"std"
    assert seen["data"] == data
    assert r.body == data.upper()


def test_filter_data_refused_for_a_responder(serve):
    seen = {}

    def handler(req):
        with pytest.raises(libfcgi.FastCGIError) as e:
            req.start_filter_data()
        seen["errno"] = e.value.errno
        req.stdout.write(b"\r\n")

    s = serve(handler)
    s.request(fc.cgi_params("/"))
    assert seen["errno"] == -5


def test_authorizer_role(serve):
    def handler(req):
        ok = req.params.get("HTTP_AUTHORIZATION") == "Bearer yes"
        req.stdout.write(b"Status: 200\r\nVariable-USER: alice\r\n\r\n" if ok else b"Status: 403\r\n\r\n")

    s = serve(handler)
    r = s.request(fc.cgi_params("/", HTTP_AUTHORIZATION="Bearer yes"), role=fc.AUTHORIZER)
    assert r.status == 200 and r.headers["variable-user"] == "alice"
    assert s.request(fc.cgi_params("/"), role=fc.AUTHORIZER).status == 403


def test_streams_of_a_finished_request_refuse_io(serve):
    kept = {}

    def handler(req):
        kept["out"] = req.stdout
        kept["in"] = req.stdin
        req.stdout.write(b"\r\nfirst")
        req.finish()
        with pytest.raises(ValueError):
            kept["out"].write(b"late")
        with pytest.raises(ValueError):
            kept["in"].read(1)
        with pytest.raises(ValueError):
            req.write(b"late")

    s = serve(handler)
    assert s.request(fc.cgi_params("/")).body == b"first"
    assert not s.errors


def test_server_iteration_single_thread(tmp):
    path = str(tmp / "iter.sock")
    served = []
    with Server(path) as server:
        assert os.path.exists(path)

        def run():
            for req in server:
                with req:
                    served.append(req.params["REQUEST_URI"])
                    req.stdout.write(b"\r\n" + req.params["REQUEST_URI"].encode())
                if len(served) == 3:
                    break

        t = threading.Thread(target=run)
        t.start()
        bodies = [fc.request(path, fc.cgi_params(f"/n{i}")).body for i in range(3)]
        t.join(5)
        assert bodies == [b"/n0", b"/n1", b"/n2"]
    assert not os.path.exists(path)  # close() removed the socket file


def test_accept_releases_the_gil(tmp):
    """A thread blocked in accept() (in C) does not stop the others."""
    path = str(tmp / "gil.sock")
    with Server(path) as server:
        req = server.request()
        state = {}

        def wait():
            state["accepted"] = req.accept()
            state["body"] = req.read()  # blocks until the body's end arrives
            req.stdout.write(b"\r\n")
            req.finish()

        def spin() -> int:
            count = 0
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                count += 1
            return count

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.1)
        count = spin()
        assert count > 100_000, f"main thread starved while another waits in accept ({count})"
        assert t.is_alive()
        with fc.Connection(path) as c:
            whole = fc.encode_request(fc.cgi_params("/", "POST", b"body"), b"body")
            c.send(whole[:-16])  # all but the end of FCGI_STDIN
            time.sleep(0.1)
            count = spin()
            assert count > 100_000, f"main thread starved while another waits in read ({count})"
            assert t.is_alive()
            c.send(whole[-16:])
            c.read_response()
        t.join(5)
        assert state["accepted"] and state["body"] == b"body"
        req.close()


def test_threads_serve_one_socket_concurrently(serve):
    def handler(req):
        time.sleep(0.5)
        req.stdout.write(f"\r\n{threading.current_thread().name}".encode())

    s = serve(handler, threads=6)
    out = {}

    def call(i):
        out[i] = s.request(fc.cgi_params(f"/{i}")).body

    t0 = time.monotonic()
    ts = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, f"6 requests of 0.5 s took {elapsed:.2f} s"
    assert len(set(out.values())) == 6


def test_close_from_another_thread_while_in_accept(tmp):
    path = str(tmp / "close.sock")
    with Server(path) as server:
        req = server.request()
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", req.accept()))
        t.start()
        time.sleep(0.1)
        req.close()  # deferred: the thread is inside accept
        assert req.closed
        with fc.Connection(path) as c:
            c.send(fc.encode_request(fc.cgi_params("/")))
            assert c.at_eof()  # dropped without a reply
        t.join(5)
        assert result["r"] is False
        assert req._h.closed
        assert req.accept() is False


def test_collected_request_is_freed_and_closes_its_connection(tmp):
    path = str(tmp / "gc.sock")
    with Server(path) as server:
        req = server.request()
        c = fc.Connection(path)
        t = threading.Thread(target=req.accept)
        t.start()
        c.send(fc.encode_request(fc.cgi_params("/"), keep_conn=True))
        t.join(5)
        assert req.active
        finalizer = req._finalizer
        h = req._h
        del req, t
        gc.collect()
        assert not finalizer.alive
        assert h.closed  # FCGX_Free(req, 1) ran
        assert c.at_eof()
        c.close()


def test_request_repr_and_idle_state(tmp):
    with Server(str(tmp / "r.sock")) as server:
        req = server.request()
        assert "idle" in repr(req)
        with pytest.raises(ValueError):
            _ = req.stdout
        assert req.env == {}
        req.finish()  # nothing to finish: no-op
        req.close()
        req.close()
        assert "closed" in repr(req)
