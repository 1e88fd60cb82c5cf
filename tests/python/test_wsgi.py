"""libfcgi.wsgi: PEP 3333 behaviour (checked with wsgiref.validate),
streaming in both directions, errors, and the command line."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat
import sys
import threading
import time
from wsgiref.validate import validator

import pytest

import fcgiclient as fc
from conftest import EXAMPLES, child_env, free_port, write_module

from libfcgi.wsgi import FileWrapper, WSGIServer, load_app


class Running:
    def __init__(self, tmp, app, threads=4, **kw):
        self.path = str(tmp / f"w{time.monotonic_ns() % 10**7}.sock")
        self.server = WSGIServer(app, bind=self.path, threads=threads, **kw)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def request(self, *a, **kw):
        return fc.request(self.path, *a, **kw)

    def close(self):
        self.server.stop()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def wsgi(tmp):
    running = []

    def start(app, **kw):
        r = Running(tmp, app, **kw)
        running.append(r)
        return r

    yield start
    for r in running:
        r.close()


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!\n"]


def test_validated_hello_and_content_length(wsgi):
    s = wsgi(validator(hello))
    r = s.request(fc.cgi_params("/hello"))
    assert r.status == 200, r.stderr
    assert r.stderr == b""
    assert r.body == b"Hello, world!\n"
    assert r.protocol_status == 0 and r.app_status == 0
    # Unwrapped, a one-block list gets a Content-Length and the whole reply
    # leaves in one STDOUT record, then END_REQUEST.
    s = wsgi(hello)
    r = s.request(fc.cgi_params("/hello"))
    assert r.headers["content-length"] == "14"
    assert [k for k, _ in r.records] == [fc.STDOUT, fc.STDOUT, fc.END_REQUEST]
    # Not for HEAD, 204 or 304.
    assert "content-length" not in s.request(fc.cgi_params("/", "HEAD")).headers


def test_environ_contents(wsgi):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    s = wsgi(validator(app), script_name="/app")
    s.request(fc.cgi_params("/app/x%20y?q=1", HTTPS="on", HTTP_CONTENT_TYPE="text/x",
                            CONTENT_TYPE="text/x", HTTP_HOST="example.org"))
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "https"
    assert seen["wsgi.multithread"] is True
    assert seen["wsgi.input_terminated"] is True
    assert seen["SCRIPT_NAME"] == "/app"
    assert seen["PATH_INFO"] == "/x y"
    assert seen["QUERY_STRING"] == "q=1"
    assert seen["CONTENT_TYPE"] == "text/x"
    assert "HTTP_CONTENT_TYPE" not in seen
    assert seen["FCGI_ROLE"] == "RESPONDER"
    # A PATH_INFO sent by the web server is kept as is.
    s.request(fc.cgi_params("/app/z", PATH_INFO="/given", SCRIPT_NAME="/sn"))
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/sn", "/given")
    # Latin-1 for bytes that are not ASCII (PEP 3333 native strings).
    s.request([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/"), (b"HTTP_X", b"caf\xc3\xa9")])
    assert seen["HTTP_X"] == "caf\xc3\xa9"
    assert seen["PATH_INFO"] == "/"


def test_request_body_is_streamed_and_limited_to_content_length(wsgi):
    seen = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        seen["line"] = inp.readline()
        seen["some"] = inp.read(5)
        seen["lines"] = inp.readlines()
        seen["after"] = inp.read(100)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    s = wsgi(validator(app))
    body = b"line one\n12345rest\nof it\nEXTRA BYTES NOT COUNTED"
    length = len(body) - len(b"EXTRA BYTES NOT COUNTED")
    params = fc.cgi_params("/", "POST")
    params["CONTENT_LENGTH"] = str(length)
    r = s.request(params, body)
    assert r.status == 200, r.stderr
    assert seen == {"line": b"line one\n", "some": b"12345", "lines": [b"rest\n", b"of it\n"],
                    "after": b""}


def test_body_without_content_length_is_read_to_its_end(wsgi):
    seen = {}

    def app(environ, start_response):
        seen["body"] = environ["wsgi.input"].read()
        seen["iter"] = list(environ["wsgi.input"])
        start_response("200 OK", [])
        return [b""]

    s = wsgi(app)
    params = fc.cgi_params("/", "POST")
    del params["CONTENT_LENGTH"]
    s.request(params, b"chunked\nupload")
    assert seen == {"body": b"chunked\nupload", "iter": []}


def test_large_upload_and_download_stream(wsgi):
    def app(environ, start_response):
        h = hashlib.sha256()
        inp = environ["wsgi.input"]
        while True:
            block = inp.read(65536)
            if not block:
                break
            h.update(block)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("X-Digest", h.hexdigest())])

        def gen():
            for i in range(200):
                yield bytes([i % 256]) * 100_000

        return gen()

    s = wsgi(validator(app))
    body = os.urandom(8_000_000)
    params = fc.cgi_params("/", "POST", body)
    r = s.request(params, body, timeout=60)
    assert r.status == 200, r.stderr
    assert r.headers["x-digest"] == hashlib.sha256(body).hexdigest()
    assert len(r.body) == 20_000_000
    assert r.body[100_000 * 7] == 7


def test_response_blocks_are_sent_as_they_are_produced(wsgi):
    go_on = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"first block\n"
            assert go_on.wait(10), "the client never saw the first block"
            yield b"second block\n"

        return gen()

    s = wsgi(validator(app))
    with fc.Connection(s.path) as c:
        c.send(fc.encode_request(fc.cgi_params("/")))
        got = b""
        while b"first block" not in got:
            kind, _, content = c.read_record()
            assert kind == fc.STDOUT
            got += content
        go_on.set()
        r = c.read_response()
    assert (got + r.stdout).endswith(b"first block\nsecond block\n")


def test_write_callable(wsgi):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written, ")
        return [b"then returned"]

    s = wsgi(validator(app))
    r = s.request(fc.cgi_params("/"))
    assert r.body == b"written, then returned"
    assert "content-length" not in r.headers


def test_exc_info_replaces_headers_before_they_are_sent(wsgi):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("nope")
        except KeyError:
            start_response("404 Not Found", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"not here"]

    s = wsgi(validator(app))
    r = s.request(fc.cgi_params("/"))
    assert r.status == 404 and r.body == b"not here"


def test_exc_info_after_headers_were_sent_reraises(wsgi):
    closed = []

    class Result:
        def __init__(self, start_response):
            self.start_response = start_response

        def __iter__(self):
            yield b"partial "
            try:
                raise ValueError("late failure")
            except ValueError:
                self.start_response("500 Oops", [], sys.exc_info())
            yield b"never"

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Result(start_response)

    s = wsgi(app)
    r = s.request(fc.cgi_params("/"))
    assert r.status == 200
    assert r.body == b"partial "
    assert b"ValueError: late failure" in r.stderr
    assert closed == [True]
    assert s.request(fc.cgi_params("/")).body == b"partial "  # still serving


def test_errors_give_500_with_traceback_and_the_server_goes_on(wsgi):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/raise":
            raise RuntimeError("application bug")
        if path == "/twice":
            start_response("200 OK", [])
            start_response("200 OK", [])
        if path == "/nostart":
            return [b"no start_response"]
        if path == "/inject":
            start_response("200 OK", [("X-Bad", "a\r\nSet-Cookie: evil=1")])
            return [b"x"]
        if path == "/exit":
            raise SystemExit(3)
        if path == "/notbytes":
            start_response("200 OK", [])
            return ["text is not allowed"]
        if path == "/errors":
            environ["wsgi.errors"].write("logged via wsgi.errors\n")
            environ["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    s = wsgi(app)
    for path, needle in [("/raise", b"RuntimeError: application bug"),
                         ("/twice", b"second time"),
                         ("/nostart", b"start_response"),
                         ("/inject", b"line break"),
                         ("/notbytes", b"bytes"),
                         ("/exit", b"SystemExit")]:
        r = s.request(fc.cgi_params(path))
        assert r.status == 500, path
        assert b"Traceback" in r.stderr and needle in r.stderr, (path, r.stderr)
        assert b"evil" not in r.stdout
        assert s.request(fc.cgi_params("/ok")).body == b"fine"
    r = s.request(fc.cgi_params("/errors"))
    assert r.body == b"fine" and r.stderr == b"logged via wsgi.errors\n"


def test_close_is_called_and_file_wrapper(wsgi, tmp):
    path = tmp / "file.bin"
    path.write_bytes(os.urandom(200_000))
    closed = []

    class F:
        def __init__(self):
            self.f = open(path, "rb")

        def read(self, n):
            return self.f.read(n)

        def close(self):
            closed.append(True)
            self.f.close()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](F(), 8192)

    s = wsgi(validator(app))
    r = s.request(fc.cgi_params("/"))
    assert r.body == path.read_bytes()
    assert closed == [True]
    assert isinstance(FileWrapper(open(path, "rb")), FileWrapper)


def test_client_gone_mid_response_does_not_hurt(wsgi):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            for _ in range(2000):
                yield b"x" * 65536
                time.sleep(0.001)

        return gen()

    s = wsgi(app)
    c = fc.Connection(s.path)
    c.send(fc.encode_request(fc.cgi_params("/")))
    c.read_record()
    c.close()
    time.sleep(0.3)
    assert s.request(fc.cgi_params("/")).status == 200


def test_keep_alive_and_threads(wsgi):
    def app(environ, start_response):
        time.sleep(float(environ["QUERY_STRING"] or 0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [threading.current_thread().name.encode()]

    s = wsgi(app, threads=4)
    with fc.Connection(s.path) as c:
        names = {c.request(fc.cgi_params("/"), keep_conn=True).body for _ in range(20)}
        # A body the app does not read is skipped before the next request.
        big = os.urandom(1_000_000)
        names.add(c.request(fc.cgi_params("/", "POST", big), big, keep_conn=True).body)
        names.add(c.request(fc.cgi_params("/"), keep_conn=True).body)
    assert len(names) == 1  # one connection, one worker
    out = []
    t0 = time.monotonic()
    ts = [threading.Thread(target=lambda: out.append(s.request(fc.cgi_params("/?0.5")).body))
          for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert time.monotonic() - t0 < 1.5
    assert len(set(out)) == 4


def test_load_app(tmp, monkeypatch):
    write_module(tmp, "appmod", """
        def application(environ, start_response):
            pass
        class Factory:
            @staticmethod
            def make():
                return application
        def create_app():
            return application
    """)
    monkeypatch.syspath_prepend(str(tmp))
    import appmod

    assert load_app("appmod") is appmod.application
    assert load_app("appmod:application") is appmod.application
    assert load_app("appmod:create_app()") is appmod.application
    assert load_app("appmod:Factory.make()") is appmod.application


# -- the command line -----------------------------------------------------------

CLI_APP = """
    import os, threading, time
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("pid %d thread %s path %s" % (os.getpid(), threading.current_thread().name,
                                              environ["PATH_INFO"])).encode()]
"""


def test_cli_tcp_threads_and_sigterm(spawn, tmp):
    write_module(tmp, "cliapp", CLI_APP)
    addr = f"127.0.0.1:{free_port()}"
    p = spawn([sys.executable, "-m", "libfcgi.wsgi", "cliapp:app", "--bind", addr,
               "--threads", "8"], addr, cwd=tmp)
    r = fc.request(addr, fc.cgi_params("/x"))
    assert b"path /x" in r.body
    # SIGTERM while a request is running: it is finished, then exit 0.
    res = {}
    t = threading.Thread(target=lambda: res.setdefault("r", fc.request(addr, fc.cgi_params("/slow"))))
    t.start()
    time.sleep(0.3)
    p.signal(signal.SIGTERM)
    code, out, err = p.finish(timeout=10)
    t.join(5)
    assert code == 0, err
    assert b"path /slow" in res["r"].body


def test_cli_unix_socket_mode_and_sigint(spawn, tmp):
    write_module(tmp, "cliapp", CLI_APP)
    path = str(tmp / "cli.sock")
    p = spawn([sys.executable, "-m", "libfcgi.wsgi", "cliapp:app", "--bind", path,
               "--threads", "2", "--socket-mode", "660"], path, cwd=tmp)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert b"path /u" in fc.request(path, fc.cgi_params("/u")).body
    # Idle on a kept-alive connection does not delay Ctrl-C.
    keep = fc.Connection(path)
    keep.request(fc.cgi_params("/k"), keep_conn=True)
    t0 = time.monotonic()
    p.signal(signal.SIGINT)
    code, out, err = p.finish(timeout=10)
    assert code == 130, err
    assert time.monotonic() - t0 < 3
    assert not os.path.exists(path)
    keep.close()


def test_cli_socket_on_fd_0(spawn, tmp):
    """The web server (or spawn-fcgi, systemd) passes the listening socket
    as fd 0."""
    write_module(tmp, "cliapp", CLI_APP)
    path = str(tmp / "fd0.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen(16)
    p = spawn([sys.executable, "-m", "libfcgi.wsgi", "cliapp:app", "--threads", "2"],
              path, cwd=tmp, stdin=lsock.fileno())
    lsock.close()
    assert b"path /fd0" in fc.request(path, fc.cgi_params("/fd0")).body
    p.signal(signal.SIGTERM)
    code, out, err = p.finish(timeout=10)
    assert code == 0, err


def test_cli_without_a_socket_says_so(tmp):
    import subprocess

    write_module(tmp, "cliapp", CLI_APP)
    r = subprocess.run([sys.executable, "-m", "libfcgi.wsgi", "cliapp:app"], cwd=tmp,
                       env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert r.returncode == 2
    assert b"fd 0 is not a listening socket" in r.stderr


def test_wsgi_example(spawn, tmp):
    addr = f"127.0.0.1:{free_port()}"
    spawn([sys.executable, str(EXAMPLES / "wsgi_app.py"), addr], addr)
    assert b"Hello from libfcgi.wsgi" in fc.request(addr, fc.cgi_params("/")).body
    body = os.urandom(300_000)
    assert fc.request(addr, fc.cgi_params("/echo", "POST", body), body).body == body
    r = fc.request(addr, fc.cgi_params("/error"))
    assert r.status == 500 and b"this is what an error looks like" in r.stderr
    r = fc.request(addr, fc.cgi_params("/stream"))
    assert r.body == b"".join(f"part {i}\n".encode() for i in range(5))
    assert sum(1 for k, n in r.records if k == fc.STDOUT and n) >= 5
