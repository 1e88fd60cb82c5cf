"""The project's own command-line client (fcgi-client, built by cargo in
cli/) against the Python package: the WSGI server and a filter written with
the Pythonic API."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, write_module

CLIENT = REPO / "target" / "release" / "fcgi-client"
pytestmark = pytest.mark.skipif(not CLIENT.exists(), reason="fcgi-client is not built "
                                "(cargo build --release -p fcgi-cli)")


def run(*args, input=None):
    return subprocess.run([str(CLIENT), *args], input=input, capture_output=True, timeout=60)


def test_wsgi_app_through_fcgi_client(spawn, tmp):
    write_module(tmp, "echoapp", """
        def app(environ, start_response):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"%s %s %d:" % (environ["REQUEST_METHOD"].encode(),
                                    environ["PATH_INFO"].encode(), len(body)), body]
    """)
    sock = str(tmp / "echo.sock")
    spawn([sys.executable, "-m", "libfcgi.wsgi", "echoapp:app", "--bind", sock, "--threads", "2"],
          sock, cwd=tmp)
    r = run(sock, "/hello?x=1", "--body-only")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"GET /hello 0:"
    r = run(sock, "/up", "--data-file", "-", "--body-only", input=b"\x00\x01" * 50_000)
    assert r.stdout == b"POST /up 100000:" + b"\x00\x01" * 50_000
    r = run(sock, "/k", "--repeat", "5", "--keep-conn", "--body-only", "--verbose")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"GET /k 0:" * 5


def test_filter_through_fcgi_client(spawn, tmp):
    script = write_module(tmp, "upper", """
        import sys, libfcgi
        with libfcgi.Server(sys.argv[1]) as server:
            for req in server:
                with req:
                    data = req.data.read()
                    req.stdout.write(b"Content-Type: text/plain\\r\\n\\r\\n" + data.upper())
                    req.exit_status = 3
    """)
    sock = str(tmp / "filter.sock")
    spawn([sys.executable, str(script), sock], sock)
    f = tmp / "data.txt"
    f.write_bytes(b"make me loud\n" * 100)
    r = run(sock, "/f", "--role", "filter", "--filter-data", str(f), "--body-only")
    assert r.stdout == b"MAKE ME LOUD\n" * 100
    assert r.returncode == 3  # the app's exit status
