#!/usr/bin/env python3
"""A WSGI application served by libfcgi.wsgi.

    python -m libfcgi.wsgi wsgi_app:application --bind 127.0.0.1:9000 --threads 8
    python wsgi_app.py 127.0.0.1:9000          # the same, from Python

Routes: / (hello), /echo (POST: the body back, streamed in blocks),
/stream (a response sent in parts), /error (an exception: a 500 response
and a traceback in the web server's error log).
"""
import sys
import time


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/echo":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        body = environ["wsgi.input"]  # reads at most CONTENT_LENGTH bytes

        def blocks():
            while True:
                block = body.read(65536)
                if not block:
                    return
                yield block

        return blocks()
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def parts():
            for i in range(5):
                yield f"part {i}\n".encode()  # each part is sent at once
                time.sleep(0.1)

        return parts()
    if path == "/error":
        raise RuntimeError("this is what an error looks like")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"Hello from libfcgi.wsgi! You asked for {path}\n".encode()]


if __name__ == "__main__":
    from libfcgi.wsgi import WSGIServer

    bind = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9000"
    try:
        WSGIServer(application, bind=bind, threads=8).serve_forever()
    except KeyboardInterrupt:
        pass
