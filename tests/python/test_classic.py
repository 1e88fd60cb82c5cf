"""The classic API: init_socket, fcgi_request, accept/env/read/write/finish,
the examples, and Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

import fcgiclient as fc
from conftest import EXAMPLES, free_port, write_module

import libfcgi


def test_hello_example_tcp(spawn):
    addr = f"127.0.0.1:{free_port()}"
    spawn([sys.executable, str(EXAMPLES / "hello.py"), addr], addr)
    r = fc.request(addr, fc.cgi_params("/hi?x=1"))
    assert r.protocol_status == 0 and r.app_status == 0
    assert r.headers["content-type"] == "text/plain"
    assert b"REQUEST_URI: /hi?x=1" in r.body
    body = b"0123456789" * 1000
    r = fc.request(addr, fc.cgi_params("/post", "POST", body), body)
    assert b"body: 10000 bytes" in r.body
    # Keep-alive: several requests on one connection, counted by the app.
    with fc.Connection(addr) as c:
        numbers = []
        for i in range(5):
            r = c.request(fc.cgi_params(f"/k{i}"), keep_conn=True)
            numbers.append(int(r.body.split(b"#")[1].split()[0]))
        assert numbers == list(range(numbers[0], numbers[0] + 5))


def test_hello_example_unix_socket(spawn, tmp):
    path = str(tmp / "hello.sock")
    spawn([sys.executable, str(EXAMPLES / "hello.py"), path], path)
    r = fc.request(path, fc.cgi_params("/unix"))
    assert b"REQUEST_URI: /unix" in r.body


def test_sigint_in_accept_raises_keyboardinterrupt(spawn):
    addr = f"127.0.0.1:{free_port()}"
    app = spawn([sys.executable, str(EXAMPLES / "hello.py"), addr], addr)
    fc.request(addr, fc.cgi_params("/"))
    time.sleep(0.2)  # blocked in accept now
    t0 = time.monotonic()
    app.signal(signal.SIGINT)
    code, out, err = app.finish(timeout=5)
    assert time.monotonic() - t0 < 2.0
    assert "KeyboardInterrupt" in err
    assert code != 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_waiting_on_a_kept_alive_connection(spawn, sig):
    """The wait for the next request on a kept-alive connection (nginx
    fastcgi_keep_conn) is as interruptible as accept(): Ctrl-C raises
    KeyboardInterrupt at once, SIGTERM makes accept() return False."""
    addr = f"127.0.0.1:{free_port()}"
    app = spawn([sys.executable, str(EXAMPLES / "hello.py"), addr], addr)
    with fc.Connection(addr) as c:
        for i in range(3):
            c.request(fc.cgi_params(f"/k{i}"), keep_conn=True)
        time.sleep(0.2)
        t0 = time.monotonic()
        app.signal(sig)
        code, out, err = app.finish(timeout=5)
        assert time.monotonic() - t0 < 2.0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err
    else:
        assert code == 0, err


RESUME = """
    import sys, libfcgi
    libfcgi.init_socket(sys.argv[1], 10)
    req = libfcgi.fcgi_request()
    interrupted = 0
    while True:
        try:
            if not req.accept():
                break
        except KeyboardInterrupt:
            interrupted += 1
            print("interrupted", flush=True)
            if interrupted > 1:
                break
            continue
        req.out.write("\\r\\ninterrupted=%d" % interrupted)
        req.finish()
"""


def test_an_interrupted_wait_can_be_resumed(spawn, tmp):
    script = write_module(tmp, "resume", RESUME)
    addr = f"127.0.0.1:{free_port()}"
    app = spawn([sys.executable, str(script), addr], addr)
    with fc.Connection(addr) as c:
        assert c.request(fc.cgi_params("/"), keep_conn=True).body == b"interrupted=0"
        time.sleep(0.2)
        app.signal(signal.SIGINT)
        assert app.p.stdout.readline() == b"interrupted\n"
        # The same kept-alive connection, served by the resumed wait.
        assert c.request(fc.cgi_params("/"), keep_conn=True).body == b"interrupted=1"
        time.sleep(0.2)
        app.signal(signal.SIGINT)
        code, out, err = app.finish(timeout=5)
        assert code == 0, err


def test_threaded_example_serves_concurrently_and_stops_on_ctrl_c(spawn):
    addr = f"127.0.0.1:{free_port()}"
    app = spawn([sys.executable, str(EXAMPLES / "threaded.py"), addr, "4"], addr)
    results = {}

    def call(i):
        results[i] = fc.request(addr, fc.cgi_params(f"/s{i}?sleep=1"))

    t0 = time.monotonic()
    ts = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - t0
    assert elapsed < 2.5, f"4 requests sleeping 1 s took {elapsed:.2f} s: not concurrent"
    threads = {r.body.split()[1] for r in results.values()}
    assert len(threads) == 4

    # Ctrl-C while a request is in progress: it is finished, then the
    # program stops.
    slow = {}
    t = threading.Thread(target=lambda: slow.setdefault("r", fc.request(addr, fc.cgi_params("/last?sleep=1"))))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    app.signal(signal.SIGINT)
    code, out, err = app.finish(timeout=10)
    t.join(5)
    assert code == 130, err
    assert "stopping" in err
    assert time.monotonic() - t0 < 5
    assert b"body: 0 bytes" in slow["r"].body


def test_init_socket_accepts_the_classic_forms():
    with pytest.raises(OSError):
        # A port in use: an error, not an exit of the process.
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            libfcgi.open_socket(f"127.0.0.1:{s.getsockname()[1]}", 5)
    with pytest.raises(OSError):
        libfcgi.open_socket("/nonexistent-dir/x.sock", 5)
    with pytest.raises(OSError):
        libfcgi.open_socket("no-such-host.invalid:9000", 5)
    with pytest.raises(ValueError):
        libfcgi.init_socket(70000, 5)


def test_classic_request_object_in_process(tmp):
    path = str(tmp / "c.sock")
    fd = libfcgi.init_socket(path, 10)
    try:
        assert libfcgi._classic.default_socket() == fd
        req = libfcgi.fcgi_request()
        assert req.env == {}
        got = {}

        def serve():
            assert req.accept()
            got["env"] = dict(req.env)
            got["body"] = req.read()
            req.out.write("Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n")
            req.out.write(b"bytes too, ")
            req.out.write("and unicode: \u00e9\n")
            req.err.write("a line for the error log\n")
            req.set_exit_status(3)
            req.finish()
            assert req.env["REQUEST_URI"] == "/classic"  # a copy: kept until the next accept

        t = threading.Thread(target=serve)
        t.start()
        r = fc.request(path, fc.cgi_params("/classic", "POST", b"data", HTTP_X_A="1"), b"data")
        t.join(5)
        assert r.status == 201
        assert r.body == "bytes too, and unicode: \u00e9\n".encode()
        assert r.stderr == b"a line for the error log\n"
        assert r.app_status == 3
        assert got["body"] == b"data"
        assert got["env"]["FCGI_ROLE"] == "RESPONDER"
        assert got["env"]["HTTP_X_A"] == "1"
        assert got["env"]["REQUEST_URI"] == "/classic"
        req.close()
        assert req.closed
    finally:
        import os

        os.close(fd)
        libfcgi._classic._default_fd = libfcgi._classic._owned_fd = None


@pytest.mark.parametrize("threads", ["1", "3"])
def test_pythonic_example(spawn, threads):
    addr = f"127.0.0.1:{free_port()}"
    app = spawn([sys.executable, str(EXAMPLES / "pythonic.py"), addr, threads], addr)
    body = b"one\ntwo\nthree\n"
    r = fc.request(addr, fc.cgi_params("/?bob", "POST", body), body)
    assert r.body == b"Hello, bob! (3 body lines)\n"
    assert r.stderr == b"handled one request\n"
    time.sleep(0.2)
    t0 = time.monotonic()
    app.signal(signal.SIGINT)
    code, out, err = app.finish(timeout=10)
    assert code == 130, err
    assert time.monotonic() - t0 < 3
