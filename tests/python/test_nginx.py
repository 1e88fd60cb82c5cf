"""Through nginx: the classic hello, the WSGI server with a real Flask
application (from PyPI), and kept-alive upstream connections."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from conftest import EXAMPLES, free_port, write_module

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

FASTCGI_PARAMS = """
        fastcgi_param QUERY_STRING $query_string;
        fastcgi_param REQUEST_METHOD $request_method;
        fastcgi_param CONTENT_TYPE $content_type;
        fastcgi_param CONTENT_LENGTH $content_length;
        fastcgi_param SCRIPT_NAME $fastcgi_script_name;
        fastcgi_param REQUEST_URI $request_uri;
        fastcgi_param DOCUMENT_URI $document_uri;
        fastcgi_param DOCUMENT_ROOT $document_root;
        fastcgi_param SERVER_PROTOCOL $server_protocol;
        fastcgi_param REQUEST_SCHEME $scheme;
        fastcgi_param GATEWAY_INTERFACE CGI/1.1;
        fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
        fastcgi_param REMOTE_ADDR $remote_addr;
        fastcgi_param REMOTE_PORT $remote_port;
        fastcgi_param SERVER_ADDR $server_addr;
        fastcgi_param SERVER_PORT $server_port;
        fastcgi_param SERVER_NAME $server_name;
"""


class Nginx:
    def __init__(self, tmp, upstream: str, keepalive: int = 0):
        self.dir = tmp / "nginx"
        self.dir.mkdir()
        self.port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        keep = f"keepalive {keepalive};" if keepalive else ""
        keep_conn = "fastcgi_keep_conn on;" if keepalive else ""
        conf = f"""
{user}
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    fastcgi_temp_path {self.dir}/fastcgi;
    proxy_temp_path {self.dir}/proxy;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    client_max_body_size 64m;
    upstream app {{ server {upstream}; {keep} }}
    server {{
        listen 127.0.0.1:{self.port};
        server_name localhost;
        location /stream {{
            {FASTCGI_PARAMS}
            fastcgi_pass app;
            {keep_conn}
            fastcgi_buffering off;
        }}
        location / {{
            {FASTCGI_PARAMS}
            fastcgi_pass app;
            {keep_conn}
        }}
    }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        self.p = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.connect()
                c.close()
                break
            except OSError:
                if self.p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start: " + self.p.stderr.read().decode()
                                       + self.error_log())
                time.sleep(0.05)

    def error_log(self) -> str:
        try:
            return (self.dir / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r, data

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def nginx(tmp):
    started = []

    def start(upstream, keepalive=0):
        n = Nginx(tmp, upstream, keepalive)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def test_classic_hello_behind_nginx(spawn, nginx, tmp):
    sock = str(tmp / "hello.sock")
    spawn([sys.executable, str(EXAMPLES / "hello.py"), sock], sock)
    n = nginx(f"unix:{sock}")
    r, body = n.request("GET", "/some/page?x=1")
    assert r.status == 200
    assert r.getheader("Content-Type") == "text/plain"
    assert b"REQUEST_URI: /some/page?x=1" in body
    r, body = n.request("POST", "/post", body=b"z" * 100_000)
    assert b"body: 100000 bytes" in body


FLASK_APP = """
    import hashlib, time
    from flask import Flask, Response, jsonify, request

    app = Flask(__name__)

    @app.route("/")
    def index():
        return "Hello from Flask on libfcgi"

    @app.route("/json", methods=["POST"])
    def add():
        data = request.get_json()
        return jsonify(sum=sum(data["numbers"]), path=request.path)

    @app.route("/form", methods=["POST"])
    def form():
        return "name=%s" % request.form["name"]

    @app.route("/upload", methods=["POST"])
    def upload():
        f = request.files["file"]
        return hashlib.sha256(f.read()).hexdigest()

    @app.route("/stream")
    def stream():
        def gen():
            for i in range(3):
                yield "chunk %d\\n" % i
                time.sleep(0.2)
        return Response(gen(), mimetype="text/plain")

    @app.route("/boom")
    def boom():
        return 1 / 0

    @app.route("/items/<int:n>")
    def item(n):
        return jsonify(item=n, args=request.args.to_dict())
"""


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_flask_app_behind_nginx(spawn, nginx, tmp, transport):
    pytest.importorskip("flask")
    write_module(tmp, "flaskapp", FLASK_APP)
    if transport == "unix":
        bind = str(tmp / "flask.sock")
        upstream = f"unix:{bind}"
    else:
        bind = f"127.0.0.1:{free_port()}"
        upstream = bind
    spawn([sys.executable, "-m", "libfcgi.wsgi", "flaskapp:app", "--bind", bind,
           "--threads", "4"], bind, cwd=tmp)
    n = nginx(upstream)

    r, body = n.request("GET", "/")
    assert r.status == 200 and body == b"Hello from Flask on libfcgi"

    r, body = n.request("POST", "/json", body=json.dumps({"numbers": [1, 2, 3.5]}),
                        headers={"Content-Type": "application/json"})
    assert r.status == 200 and json.loads(body) == {"sum": 6.5, "path": "/json"}

    r, body = n.request("POST", "/form", body=urllib.parse.urlencode({"name": "caf\u00e9"}),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert body.decode() == "name=caf\u00e9"

    payload = os.urandom(3_000_000)
    boundary = "xyzBOUNDARYxyz"
    mp = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
          f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    r, body = n.request("POST", "/upload", body=mp,
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 200 and body.decode() == hashlib.sha256(payload).hexdigest()

    r, body = n.request("GET", "/items/42?a=b%20c")
    assert json.loads(body) == {"item": 42, "args": {"a": "b c"}}

    r, body = n.request("GET", "/missing")
    assert r.status == 404

    # Streaming: the first chunk reaches the HTTP client before the last
    # one is produced.
    c = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
    c.request("GET", "/stream")
    resp = c.getresponse()
    t0 = time.monotonic()
    first = resp.readline()
    first_at = time.monotonic() - t0
    rest = resp.read()
    total = time.monotonic() - t0
    c.close()
    assert first == b"chunk 0\n" and rest == b"chunk 1\nchunk 2\n"
    assert first_at < total - 0.25, (first_at, total)

    # An exception: Flask answers 500 and logs the traceback to wsgi.errors,
    # which is FCGI_STDERR: nginx writes it to its error log.
    r, body = n.request("GET", "/boom")
    assert r.status == 500
    deadline = time.monotonic() + 5
    while "ZeroDivisionError" not in n.error_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "FastCGI sent in stderr" in n.error_log()
    assert "ZeroDivisionError" in n.error_log()
    r, body = n.request("GET", "/")
    assert r.status == 200


def test_wsgi_errors_and_keepalive_upstream(spawn, nginx, tmp):
    write_module(tmp, "plainapp", """
        import threading
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/raise":
                raise ValueError("uncaught in the app")
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [threading.current_thread().name.encode()]
    """)
    sock = str(tmp / "ka.sock")
    spawn([sys.executable, "-m", "libfcgi.wsgi", "plainapp:app", "--bind", sock,
           "--threads", "4"], sock, cwd=tmp)
    n = nginx(f"unix:{sock}", keepalive=2)
    names = set()
    conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
    for _ in range(50):
        r, body = n.request("GET", "/", conn=conn)
        assert r.status == 200
        names.add(body)
    conn.close()
    assert len(names) <= 2  # nginx reused its kept-alive upstream connection(s)
    r, body = n.request("GET", "/raise")
    assert r.status == 500 and body == b"Internal Server Error\n"
    time.sleep(0.2)
    assert "ValueError: uncaught in the app" in n.error_log()
    # Concurrent clients through nginx.
    results = []

    def hit():
        for _ in range(20):
            r, body = n.request("GET", "/")
            results.append(r.status)

    ts = [threading.Thread(target=hit) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == [200] * 80
