#!/usr/bin/env python3
"""The Pythonic API: a server object, requests as context managers, binary
streams, parameters as a mapping, and a thread pool with clean Ctrl-C.

    python pythonic.py 127.0.0.1:9000 [THREADS]
"""
import sys

import libfcgi


def handle(req: libfcgi.Request) -> None:
    name = req.params.get("QUERY_STRING") or "world"
    lines = sum(1 for _ in req.stdin)  # the body, line by line
    req.stderr.write(b"handled one request\n")  # to the web server's log
    req.stdout.write(b"Content-Type: text/plain\r\n\r\n")
    req.stdout.write(f"Hello, {name}! ({lines} body lines)\n".encode())
    req.exit_status = 0


def main() -> None:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9000"
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with libfcgi.Server(address) as server:
        if threads == 1:
            for req in server:  # one request at a time
                with req:  # finished on exit; an exception becomes a 500
                    handle(req)
        else:
            server.serve(handle, threads=threads)  # Ctrl-C: KeyboardInterrupt


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
