"""libfcgi.asgi: the ASGI 3 server. Scopes, streaming in both directions,
back-pressure, http.disconnect, lifespan, errors, the command line, and a
FastAPI application from PyPI behind nginx."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

import fcgiclient as fc
from conftest import child_env, free_port, write_module

from libfcgi.asgi import ASGIServer, ClientDisconnected, LifespanFailure


class Running:
    """An ASGIServer serving in a thread of the test process."""

    def __init__(self, tmp, app, threads=4, **kw):
        self.path = str(tmp / f"a{time.monotonic_ns() % 10**7}.sock")
        kw.setdefault("lifespan", "off")  # the lifespan tests ask for it
        self.server = ASGIServer(app, bind=self.path, threads=threads, **kw)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.server.pool is None and self.thread.is_alive():
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)

    def _run(self):
        try:
            self.server.serve_forever()
        except BaseException as e:  # noqa: BLE001 - kept for the test
            self.error = e

    def request(self, *a, **kw):
        return fc.request(self.path, *a, **kw)

    def close(self):
        loop = self.server._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self.server.stop)
            except RuntimeError:
                pass
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def asgi(tmp):
    running = []

    def start(app, **kw):
        r = Running(tmp, app, **kw)
        running.append(r)
        return r

    yield start
    for r in running:
        r.close()


async def read_body(receive) -> tuple[bytes, list]:
    body = bytearray()
    chunks = []
    while True:
        m = await receive()
        assert m["type"] == "http.request"
        chunks.append((len(m["body"]), m["more_body"]))
        body += m["body"]
        if not m["more_body"]:
            return bytes(body), chunks


async def respond(send, body: bytes, status=200, headers=None):
    await send({"type": "http.response.start", "status": status,
                "headers": headers or [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def wait_until(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- scope ------------------------------------------------------------------------


def scope_app(scope_copy=None):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        s = {k: v for k, v in scope.items() if k not in ("state",)}
        s["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        s["raw_path"] = scope["raw_path"].decode("latin-1")
        s["query_string"] = scope["query_string"].decode("latin-1")
        await respond(send, json.dumps(s).encode(), headers=[(b"content-type", b"application/json")])
    return app


def test_scope_from_nginx_style_params(asgi):
    s = asgi(scope_app())
    params = fc.cgi_params("/caf%C3%A9/a%20b?x=1&y=%20", "POST", b"{}",
                           HTTP_HOST="example.org", HTTP_X_CUSTOM_THING="v",
                           HTTP_ACCEPT="*/*", CONTENT_TYPE="application/json",
                           REMOTE_PORT="40000", SERVER_ADDR="10.0.0.1", SERVER_PORT="8443",
                           HTTPS="on", SERVER_PROTOCOL="HTTP/2.0")
    params["SCRIPT_NAME"] = params["DOCUMENT_URI"] = "/café/a b".encode().decode("latin-1")
    r = s.request(params, b"{}")
    assert r.status == 200, r.stdout
    sc = json.loads(r.body)
    assert sc["type"] == "http"
    assert sc["asgi"]["version"] == "3.0"
    assert sc["http_version"] == "2"
    assert sc["method"] == "POST"
    assert sc["scheme"] == "https"
    assert sc["path"] == "/café/a b"
    assert sc["raw_path"] == "/caf%C3%A9/a%20b"
    assert sc["query_string"] == "x=1&y=%20"
    assert sc["root_path"] == ""
    assert sc["client"] == ["127.0.0.1", 40000]
    assert sc["server"] == ["10.0.0.1", 8443]
    h = sc["headers"]
    assert ["host", "example.org"] in h
    assert ["x-custom-thing", "v"] in h
    assert ["accept", "*/*"] in h
    assert ["content-type", "application/json"] in h
    assert ["content-length", "2"] in h
    assert all(n == n.lower() for n, _ in h)


def test_root_path_from_script_name_option_and_from_path_info(asgi):
    s = asgi(scope_app(), script_name="/app/")
    sc = json.loads(s.request(fc.cgi_params("/app/items/1?q")).body)
    assert (sc["root_path"], sc["path"], sc["scheme"]) == ("/app", "/app/items/1", "http")
    sc = json.loads(s.request(fc.cgi_params("/other")).body)
    assert (sc["root_path"], sc["path"]) == ("", "/other")
    # A web server that splits SCRIPT_NAME/PATH_INFO itself (Apache style).
    p = fc.cgi_params("/mnt/x/y")
    p.update(SCRIPT_NAME="/mnt", PATH_INFO="/x/y")
    del p["DOCUMENT_URI"]
    sc = json.loads(s.request(p).body)
    assert (sc["root_path"], sc["path"], sc["raw_path"]) == ("/mnt", "/mnt/x/y", "/mnt/x/y")
    # Only REQUEST_URI: decoded.
    p = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/only%2Furi?z=1"}
    sc = json.loads(s.request(p).body)
    assert (sc["path"], sc["raw_path"], sc["query_string"]) == ("/only/uri", "/only%2Furi", "z=1")
    assert sc["http_version"] == "1.1" and sc["client"] is None


# -- request bodies -----------------------------------------------------------------


def test_request_body_streams_in_chunks(asgi):
    seen = []

    async def app(scope, receive, send):
        h = hashlib.sha256()
        n = 0
        while True:
            m = await receive()
            assert m["type"] == "http.request"
            seen.append((len(m["body"]), m["more_body"]))
            h.update(m["body"])
            n += len(m["body"])
            if not m["more_body"]:
                break
        await respond(send, f"{n} {h.hexdigest()}".encode())

    s = asgi(app)
    body = os.urandom(3_000_000 + 17)
    r = s.request(fc.cgi_params("/", "POST", body), body)
    assert r.body == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
    assert len(seen) > 40 and all(n <= 65536 for n, _ in seen)
    assert [more for _, more in seen] == [True] * (len(seen) - 1) + [False]
    # Without CONTENT_LENGTH (an unbuffered chunked upload): to the end of stdin.
    seen.clear()
    p = fc.cgi_params("/", "POST", body, HTTP_TRANSFER_ENCODING="chunked")
    p["CONTENT_LENGTH"] = ""
    r = s.request(p, body)
    assert r.body == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
    # A GET: one empty message.
    seen.clear()
    assert s.request(fc.cgi_params("/")).body.startswith(b"0 ")
    assert seen == [(0, False)]


def test_request_body_is_read_only_as_the_app_asks(asgi):
    """Back-pressure on uploads: while the app does not call receive(), the
    server stops reading, and the web server's writes block."""
    go = threading.Event()
    got = []

    async def app(scope, receive, send):
        got.append(len((await receive())["body"]))
        while not go.is_set():
            await asyncio.sleep(0.01)
        n = got[0]
        while True:
            m = await receive()
            n += len(m["body"])
            if not m["more_body"]:
                break
        await respond(send, str(n).encode())

    s = asgi(app)
    body = b"u" * 40_000_000
    c = fc.Connection(s.path, timeout=1.0)
    data = fc.encode_request(fc.cgi_params("/", "POST", body), body)
    sent = 0
    try:
        while sent < len(data):
            sent += c.sock.send(data[sent:sent + 1 << 20])
    except socket.timeout:
        pass
    assert got == [65536]
    assert sent < 16_000_000, "the server read the whole body without being asked"
    go.set()
    c.sock.settimeout(20)
    c.sock.sendall(data[sent:])
    r = c.read_response()
    c.close()
    assert r.body == str(len(body)).encode()


# -- responses ----------------------------------------------------------------------------


def test_streamed_chunks_are_sent_at_once(asgi):
    release = threading.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: two\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    s = asgi(app)
    with fc.Connection(s.path, timeout=5) as c:
        c.send(fc.encode_request(fc.cgi_params("/")))
        out = b""
        while b"data: one" not in out:
            kind, _, content = c.read_record()
            assert kind == fc.STDOUT
            out += content
        assert b"Status: 200 OK\r\n" in out and b"content-type: text/event-stream" in out
        assert b"Content-Length" not in out
        release.set()
        r = c.read_response()
    assert r.stdout == b"data: two\n\n"


def test_single_body_gets_content_length_and_status_phrases(asgi):
    async def app(scope, receive, send):
        path = scope["path"]
        if path == "/204":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body"})
        elif path == "/nobody":
            await send({"type": "http.response.start", "status": 302,
                        "headers": [(b"location", b"/x")]})
        elif path == "/own":
            await respond(send, b"abc", 418, [(b"Content-Length", b"3")])
        else:
            await respond(send, b"hello")

    s = asgi(app)
    r = s.request(fc.cgi_params("/"))
    assert r.stdout.startswith(b"Status: 200 OK\r\n")
    assert r.headers["content-length"] == "5" and r.body == b"hello"
    r = s.request(fc.cgi_params("/204"))
    assert r.stdout == b"Status: 204 No Content\r\n\r\n"
    r = s.request(fc.cgi_params("/nobody"))
    assert r.status == 302 and r.headers["location"] == "/x" and r.headers["content-length"] == "0"
    r = s.request(fc.cgi_params("/own"))
    assert r.stdout.count(b"Content-Length") == 1 and r.status == 418
    r = s.request(fc.cgi_params("/", "HEAD"))
    assert r.body == b"" and "content-length" not in r.headers


def test_response_backpressure(asgi):
    """An app producing faster than the web server reads is held in send()."""
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(64):
            await send({"type": "http.response.body", "body": b"y" * 1048576, "more_body": True})
            sent.append(1)
        await send({"type": "http.response.body", "body": b""})

    s = asgi(app)
    c = fc.Connection(s.path, timeout=30)
    c.send(fc.encode_request(fc.cgi_params("/")))
    time.sleep(1.0)
    assert len(sent) < 16, f"{len(sent)} MiB queued while nothing was read"
    r = c.read_response()
    c.close()
    assert len(r.body) == 64 * 1048576 and len(sent) == 64


def test_many_requests_in_progress_at_once(asgi):
    async def app(scope, receive, send):
        await asyncio.sleep(0.5)
        await respond(send, b"slept")

    # Two threads kept for new requests: the pool grows while responses
    # are in progress (with max_threads=2 this would take 5 s).
    s = asgi(app, threads=2, max_threads=40)
    out = []
    ts = [threading.Thread(target=lambda: out.append(s.request(fc.cgi_params("/")).body))
          for _ in range(20)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == [b"slept"] * 20
    assert time.monotonic() - t0 < 2.0
    assert len(s.server.pool._workers) <= 40
    # The pool does not grow for short requests.
    small = asgi(lambda scope, receive, send: respond(send, b"quick"), threads=2)
    for _ in range(50):
        assert small.request(fc.cgi_params("/")).body == b"quick"
    assert len(small.server.pool._workers) == 2


def test_app_runs_in_the_worker_while_the_loop_waits(asgi):
    """A request arriving while the loop's thread waits in its poll runs in
    the worker that read it (no hand-over); when the app must wait (here a
    timer), the loop's thread takes over at once, not at its next timer
    (the server's own ticks every 0.25 s)."""
    async def app(scope, receive, send):
        first = threading.current_thread().name
        t0 = time.monotonic()
        await asyncio.sleep(0.02)
        waited = time.monotonic() - t0
        await respond(send, f"{first}|{threading.current_thread().name}|{waited:.3f}".encode())

    s = asgi(app)
    loop_thread = s.thread.name
    for _ in range(5):
        time.sleep(0.05)  # the loop goes back to its poll
        first, after, waited = s.request(fc.cgi_params("/")).body.decode().split("|")
        assert first.startswith("libfcgi-asgi-"), first
        assert after == loop_thread
        assert float(waited) < 0.15
    # run_in_workers=False: the app always runs in the loop's thread.
    s2 = asgi(app, run_in_workers=False)
    first, after, _ = s2.request(fc.cgi_params("/")).body.decode().split("|")
    assert first == after == s2.thread.name


def test_serve_on_a_loop_of_ones_own(tmp):
    """``await server.serve()`` on any asyncio loop: the app runs in that
    loop's thread and the workers are woken directly."""
    async def app(scope, receive, send):
        body, _ = await read_body(receive)
        await asyncio.sleep(0.01)
        await respond(send, body + threading.current_thread().name.encode())

    path = str(tmp / "own.sock")
    server = ASGIServer(app, bind=path, lifespan="off", threads=2)

    async def main():
        task = asyncio.ensure_future(server.serve())
        loop = asyncio.get_running_loop()
        out = []
        for i in range(20):
            b = str(i).encode()
            r = await loop.run_in_executor(
                None, lambda: fc.request(path, fc.cgi_params("/", "POST", b), b))
            out.append(r.body)
        server.stop()
        await task
        return out

    out = asyncio.run(main())
    server.close()
    assert out == [str(i).encode() + threading.current_thread().name.encode() for i in range(20)]


def test_keep_alive_connection_serves_many(asgi):
    async def app(scope, receive, send):
        body, _ = await read_body(receive)
        await respond(send, body[::-1] or scope["query_string"])

    s = asgi(app)
    with fc.Connection(s.path) as c:
        for i in range(200):
            b = str(i).encode() * 3
            r = c.request(fc.cgi_params("/", "POST", b), b, keep_conn=True)
            assert r.body == b[::-1]
        r = c.request(fc.cgi_params("/?q=1"), keep_conn=True)
        assert r.body == b"q=1"


# -- disconnect -----------------------------------------------------------------------------


def disconnect_app(events):
    async def app(scope, receive, send):
        body, _ = await read_body(receive)
        events.append(("body", len(body)))
        m = await receive()  # waits for the web server to go away
        events.append(m["type"])
    return app


def test_disconnect_on_abort_record(asgi):
    events = []
    s = asgi(disconnect_app(events))
    with fc.Connection(s.path) as c:
        c.send(fc.encode_request(fc.cgi_params("/"), keep_conn=True))
        assert wait_until(lambda: events == [("body", 0)])
        time.sleep(0.2)
        assert events == [("body", 0)]  # still waiting
        c.send(fc.record(fc.ABORT_REQUEST, 1))
        assert wait_until(lambda: "http.disconnect" in events), events
        # The request is ended (FCGI_END_REQUEST), quietly.
        r = c.read_response()
        assert r.stdout == b""


def test_disconnect_when_the_connection_closes(asgi):
    events = []
    s = asgi(disconnect_app(events))
    c = fc.Connection(s.path)
    c.send(fc.encode_request(fc.cgi_params("/", "POST", b"abc"), b"abc"))
    assert wait_until(lambda: events == [("body", 3)])
    c.close()
    assert wait_until(lambda: "http.disconnect" in events), events


def test_disconnect_on_write_failure_and_send_raises(asgi):
    outcome = []

    async def app(scope, receive, send):
        if scope["path"] == "/x":
            await respond(send, b"still serving")
            return
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(100000):
                await send({"type": "http.response.body", "body": b"z" * 65536,
                            "more_body": True})
                await asyncio.sleep(0.001)
            outcome.append("finished")
        except OSError as e:
            outcome.append(type(e))
            outcome.append((await receive())["type"])

    s = asgi(app)
    c = fc.Connection(s.path)
    c.send(fc.encode_request(fc.cgi_params("/")))
    c.read_record()
    c.close()
    assert wait_until(lambda: len(outcome) == 2, 10), outcome
    assert outcome == [ClientDisconnected, "http.disconnect"]
    assert s.request(fc.cgi_params("/x"), timeout=5).body == b"still serving"


def test_receive_after_the_response_says_disconnect(asgi):
    got = []

    async def app(scope, receive, send):
        await receive()
        await respond(send, b"done")
        got.append((await receive())["type"])

    s = asgi(app)
    assert s.request(fc.cgi_params("/")).body == b"done"
    assert wait_until(lambda: got == ["http.disconnect"])


# -- errors -------------------------------------------------------------------------------


def test_errors_give_500_or_a_cut_response_and_the_server_goes_on(asgi):
    async def app(scope, receive, send):
        path = scope["path"]
        if path == "/before":
            raise ValueError("boom before the response")
        if path == "/after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ValueError("boom in the middle")
        if path == "/inject":
            await respond(send, b"x", headers=[(b"x-a", b"1\r\nSet-Cookie: evil=1")])
            return
        if path == "/nothing":
            return
        if path == "/twice":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await respond(send, b"ok")

    s = asgi(app)
    r = s.request(fc.cgi_params("/before"))
    assert r.status == 500 and r.body == b"Internal Server Error\n"
    assert b"ValueError: boom before the response" in r.stderr
    with fc.Connection(s.path) as c:
        c.send(fc.encode_request(fc.cgi_params("/after"), keep_conn=True))
        kinds = []
        while True:
            rec = c.read_record()
            if rec is None:
                break
            kinds.append(rec[0])
        # No FCGI_END_REQUEST: the connection was closed in the middle.
        assert fc.STDOUT in kinds and fc.END_REQUEST not in kinds
    r = s.request(fc.cgi_params("/inject"))
    assert r.status == 500 and b"evil" not in r.stdout
    assert s.request(fc.cgi_params("/nothing")).status == 500
    assert s.request(fc.cgi_params("/twice")).status == 500
    assert s.request(fc.cgi_params("/fine")).body == b"ok"


# -- lifespan -------------------------------------------------------------------------------


def lifespan_app(events, fail=None, fail_shutdown=None):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                events.append(m["type"])
                if m["type"] == "lifespan.startup":
                    if fail:
                        await send({"type": "lifespan.startup.failed", "message": fail})
                        return
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                elif m["type"] == "lifespan.shutdown":
                    if fail_shutdown:
                        await send({"type": "lifespan.shutdown.failed",
                                    "message": fail_shutdown})
                        return
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            await respond(send, scope["state"]["db"].encode())
    return app


def test_lifespan_startup_state_and_shutdown(asgi):
    events = []
    s = asgi(lifespan_app(events), lifespan="auto")
    assert events == ["lifespan.startup"]
    assert s.request(fc.cgi_params("/")).body == b"connected"
    s.close()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert s.error is None


def test_lifespan_shutdown_failure_is_an_error(asgi):
    events = []
    s = asgi(lifespan_app(events, fail_shutdown="could not flush"), lifespan="auto")
    assert s.request(fc.cgi_params("/")).body == b"connected"
    s.close()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert isinstance(s.error, LifespanFailure) and "could not flush" in str(s.error)


def test_lifespan_startup_failure_stops_the_server(tmp):
    events = []
    server = ASGIServer(lifespan_app(events, fail="no database"), bind=str(tmp / "f.sock"))
    with pytest.raises(LifespanFailure, match="no database"):
        server.serve_forever()
    assert events == ["lifespan.startup"]
    assert not os.path.exists(tmp / "f.sock")


def test_app_without_lifespan_support_is_served(asgi):
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        await respond(send, b"plain")

    s = asgi(app, lifespan="auto")
    assert s.request(fc.cgi_params("/")).body == b"plain"
    # lifespan="on" makes it an error.
    with pytest.raises(LifespanFailure):
        ASGIServer(app, bind=str(s.path) + "2", lifespan="on").serve_forever()


# -- the command line -----------------------------------------------------------------------

CLI_APP = """
    import asyncio, os, sys
    LOG = os.environ["ASGI_TEST_LOG"]
    def note(text):
        with open(LOG, "a") as f:
            f.write(text + "\\n")
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                note(m["type"])
                if m["type"] == "lifespan.startup":
                    if os.environ.get("ASGI_TEST_FAIL"):
                        await send({"type": "lifespan.startup.failed", "message": "refused"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/slow":
            await asyncio.sleep(1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body",
                    "body": ("pid %d path %s" % (os.getpid(), scope["path"])).encode()})
        note("served " + scope["path"])
"""


def test_cli_tcp_sigterm_finishes_requests_then_lifespan_shutdown(spawn, tmp):
    write_module(tmp, "cliasgi", CLI_APP)
    log = tmp / "log.txt"
    addr = f"127.0.0.1:{free_port()}"
    p = spawn([sys.executable, "-m", "libfcgi.asgi", "cliasgi:app", "--bind", addr,
               "--threads", "4"], addr, cwd=tmp, env=child_env(ASGI_TEST_LOG=str(log)))
    assert b"path /x" in fc.request(addr, fc.cgi_params("/x")).body
    res = {}
    t = threading.Thread(target=lambda: res.setdefault("r", fc.request(addr, fc.cgi_params("/slow"))))
    t.start()
    time.sleep(0.3)
    p.signal(signal.SIGTERM)
    code, out, err = p.finish(timeout=10)
    t.join(5)
    assert code == 0, err
    assert b"path /slow" in res["r"].body
    assert log.read_text().splitlines() == ["lifespan.startup", "served /x", "served /slow",
                                            "lifespan.shutdown"]


def test_cli_unix_socket_mode_and_ctrl_c(spawn, tmp):
    write_module(tmp, "cliasgi", CLI_APP)
    path = str(tmp / "cli.sock")
    p = spawn([sys.executable, "-m", "libfcgi.asgi", "cliasgi:app", "--bind", path,
               "--threads", "2", "--socket-mode", "660"], path, cwd=tmp,
              env=child_env(ASGI_TEST_LOG=str(tmp / "log.txt")))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    keep = fc.Connection(path)
    assert b"path /k" in keep.request(fc.cgi_params("/k"), keep_conn=True).body
    t0 = time.monotonic()
    p.signal(signal.SIGINT)
    code, out, err = p.finish(timeout=10)
    assert code == 130, err
    assert time.monotonic() - t0 < 3
    assert not os.path.exists(path)
    assert (tmp / "log.txt").read_text().splitlines()[-1] == "lifespan.shutdown"
    keep.close()


def test_cli_socket_on_fd_0_and_startup_failure(spawn, tmp):
    write_module(tmp, "cliasgi", CLI_APP)
    path = str(tmp / "fd0.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen(16)
    p = spawn([sys.executable, "-m", "libfcgi.asgi", "cliasgi:app", "--threads", "2"],
              path, cwd=tmp, stdin=lsock.fileno(), env=child_env(ASGI_TEST_LOG=str(tmp / "l")))
    assert b"path /fd0" in fc.request(path, fc.cgi_params("/fd0")).body
    p.signal(signal.SIGTERM)
    code, out, err = p.finish(timeout=10)
    assert code == 0, err
    # A failed startup: exit status 3, and the reason on stderr.
    r = subprocess.run([sys.executable, "-m", "libfcgi.asgi", "cliasgi:app", "--bind",
                        str(tmp / "x.sock")], cwd=tmp, capture_output=True, timeout=30,
                       env=child_env(ASGI_TEST_LOG=str(tmp / "l"), ASGI_TEST_FAIL="1"))
    assert r.returncode == 3, r.stderr
    assert b"refused" in r.stderr
    lsock.close()


def test_asgi_example(spawn, tmp):
    from conftest import EXAMPLES

    addr = f"127.0.0.1:{free_port()}"
    p = spawn([sys.executable, str(EXAMPLES / "asgi_app.py"), addr], addr)
    assert b"Hello from libfcgi.asgi" in fc.request(addr, fc.cgi_params("/")).body
    body = os.urandom(200_000)
    assert fc.request(addr, fc.cgi_params("/echo", "POST", body), body).body == body
    with fc.Connection(addr) as c:
        c.send(fc.encode_request(fc.cgi_params("/events")))
        out = b""
        while out.count(b"data: ") < 2:
            kind, _, content = c.read_record()
            out += content
        assert b"data: 0\n\n" in out and b"data: 1\n\n" in out
    r = fc.request(addr, fc.cgi_params("/error"))
    assert r.status == 500 and b"this is what an error looks like" in r.stderr
    p.signal(signal.SIGINT)
    code, _, err = p.finish(timeout=10)
    assert code == 0, err


def test_console_script_is_declared():
    """``libfcgi-asgi`` (like ``libfcgi-wsgi``) runs the command line."""
    tomllib = pytest.importorskip("tomllib")
    from conftest import REPO

    import libfcgi.asgi

    project = tomllib.loads((REPO / "bindings/python/pyproject.toml").read_text())["project"]
    assert project["scripts"]["libfcgi-asgi"] == "libfcgi.asgi:main"
    assert callable(libfcgi.asgi.main)


# -- FastAPI from PyPI behind nginx ---------------------------------------------------------------

FASTAPI_APP = """
    import asyncio
    from contextlib import asynccontextmanager
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel

    @asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "hello from the lifespan"}

    app = FastAPI(lifespan=lifespan)

    class Item(BaseModel):
        name: str
        price: float

    @app.get("/")
    async def index(request: Request):
        return {"greeting": request.state.greeting, "root_path": request.scope["root_path"]}

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def create(item: Item):
        return {"name": item.name, "double": item.price * 2}

    @app.post("/upload")
    async def upload(request: Request):
        import hashlib
        h = hashlib.sha256()
        n = 0
        async for chunk in request.stream():
            h.update(chunk)
            n += len(chunk)
        return {"size": n, "sha256": h.hexdigest()}

    @app.get("/stream/events")
    async def events():
        async def gen():
            for i in range(3):
                yield f"data: {i}\\n\\n"
                await asyncio.sleep(0.3)
        return StreamingResponse(gen(), media_type="text/event-stream")

    gone = []

    class CountStreamEnds:
        # Counts the ends of /stream/forever, however they come.

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            try:
                await self.app(scope, receive, send)
            finally:
                if scope["type"] == "http" and scope["path"] == "/stream/forever":
                    gone.append(1)

    app.add_middleware(CountStreamEnds)

    @app.get("/stream/forever")
    async def forever(request: Request):
        async def gen():
            while not await request.is_disconnected():
                yield "data: tick\\n\\n"
                await asyncio.sleep(0.05)
        return StreamingResponse(gen(), media_type="text/event-stream")

    @app.get("/gone")
    async def gone_count():
        return {"n": len(gone)}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("FastAPI handler failed")
"""


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_fastapi_behind_nginx(spawn, tmp, transport):
    from test_nginx import NGINX, Nginx

    # scripts/ci-asgi.sh installs both and sets LIBFCGI_ASGI_TESTS_REQUIRED=1:
    # there a missing one fails the test instead of skipping it.
    required = os.environ.get("LIBFCGI_ASGI_TESTS_REQUIRED") == "1"
    try:
        import fastapi  # noqa: F401
    except ImportError:
        if required:
            raise
        pytest.skip("FastAPI is not installed (pip install fastapi)")
    if NGINX is None:
        if required:
            pytest.fail("nginx is not installed (apt-get install nginx-light)")
        pytest.skip("nginx is not installed")
    write_module(tmp, "fastapp", FASTAPI_APP)
    if transport == "unix":
        bind = str(tmp / "fastapi.sock")
        upstream = f"unix:{bind}"
    else:
        bind = f"127.0.0.1:{free_port()}"
        upstream = bind
    p = spawn([sys.executable, "-m", "libfcgi.asgi", "fastapp:app", "--bind", bind,
               "--threads", "8"], bind, cwd=tmp)
    n = Nginx(tmp, upstream, keepalive=4)
    try:
        r, body = n.request("GET", "/")
        assert r.status == 200, body
        assert json.loads(body) == {"greeting": "hello from the lifespan", "root_path": ""}
        r, body = n.request("GET", "/items/42?q=caf%C3%A9")
        assert json.loads(body) == {"item_id": 42, "q": "café"}
        r, body = n.request("POST", "/items", json.dumps({"name": "pen", "price": 1.25}),
                            {"Content-Type": "application/json"})
        assert r.status == 200 and json.loads(body) == {"name": "pen", "double": 2.5}
        r, body = n.request("POST", "/items", "{bad", {"Content-Type": "application/json"})
        assert r.status == 422
        big = os.urandom(5_000_000)
        r, body = n.request("POST", "/upload", big, {"Content-Type": "application/octet-stream"})
        assert json.loads(body) == {"size": len(big), "sha256": hashlib.sha256(big).hexdigest()}
        r, body = n.request("GET", "/nowhere")
        assert r.status == 404
        r, body = n.request("GET", "/boom")
        assert r.status == 500
        # Server-sent events through nginx (fastcgi_buffering off): the first
        # event arrives before the generator has produced the last.
        c = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
        c.request("GET", "/stream/events")
        resp = c.getresponse()
        assert resp.getheader("content-type").startswith("text/event-stream")
        t0 = time.monotonic()
        first = resp.readline()
        assert first == b"data: 0\n" and time.monotonic() - t0 < 0.25
        rest = resp.read()
        assert b"data: 2" in rest and time.monotonic() - t0 > 0.5
        c.close()
        # A browser closing an endless event stream: nginx closes the
        # upstream connection, the app sees http.disconnect and stops.
        c = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
        c.request("GET", "/stream/forever")
        resp = c.getresponse()
        assert resp.readline() == b"data: tick\n"
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        assert wait_until(lambda: json.loads(n.request("GET", "/gone")[1])["n"] == 1, 5)
        # Concurrent clients, kept-alive upstream connections.
        results = []

        def hit():
            conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
            for i in range(25):
                r, body = n.request("GET", f"/items/{i}", conn=conn)
                results.append((r.status, json.loads(body)["item_id"] == i))
            conn.close()

        ts = [threading.Thread(target=hit) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert results == [(200, True)] * 100
    finally:
        n.stop()
    # Starlette answers 500 itself, then re-raises: the traceback is in the
    # server's log.
    p.signal(signal.SIGTERM)
    code, out, err = p.finish(timeout=10)
    assert code == 0, err
    assert "RuntimeError: FastAPI handler failed" in err
