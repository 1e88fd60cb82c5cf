#!/usr/bin/env python3
"""An ASGI application (no framework) served by libfcgi.asgi.

    python -m libfcgi.asgi asgi_app:application --bind 127.0.0.1:9000
    python asgi_app.py 127.0.0.1:9000          # the same, from Python

Routes: / (hello, with what the lifespan startup prepared), /echo (POST:
the body back: read in pieces, then sent in pieces; not sent while it is
still arriving, since nginx reads a response only once it has passed the
whole request on), /events (server-sent
events, one every 0.2 s, until the client goes away), /error (an
exception: a 500 response and a traceback in the web server's error log).
"""
import asyncio
import sys


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = asyncio.get_running_loop().time()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        pieces = []
        while True:
            message = await receive()  # at most 64 KiB, read when asked for
            pieces.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for piece in pieces:  # each sent at once
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/events":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        n = 0
        while True:
            try:
                await send({"type": "http.response.body",
                            "body": f"data: {n}\n\n".encode(), "more_body": True})
            except OSError:  # libfcgi.asgi.ClientDisconnected: the client left
                return
            n += 1
            await asyncio.sleep(0.2)
    if path == "/error":
        raise RuntimeError("this is what an error looks like")
    uptime = asyncio.get_running_loop().time() - scope["state"].get("started", 0.0)
    body = f"Hello from libfcgi.asgi! You asked for {path}; up {uptime:.1f} s\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    from libfcgi.asgi import ASGIServer

    bind = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9000"
    try:
        ASGIServer(application, bind=bind).serve_forever()
    except KeyboardInterrupt:
        pass
