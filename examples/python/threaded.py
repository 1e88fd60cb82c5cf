#!/usr/bin/env python3
"""The classic threaded libfcgi program: several threads, each with its own
request object, serve one socket; Ctrl-C stops it.

    python threaded.py 127.0.0.1:9000 [THREADS]

Blocking calls release the GIL, so the threads really wait (and the
response of one is not held up by another). On Ctrl-C the main thread
stops the accept loops (libfcgi.shutdown()); requests being served are
finished first.
"""
import sys
import threading
import time

import libfcgi


def worker(number: int) -> None:
    req = libfcgi.fcgi_request()  # one per thread
    while req.accept():  # False once libfcgi.shutdown() was called
        body = req.read()
        req.out.write("Content-Type: text/plain\r\n\r\n")
        req.out.write(f"thread {number} answers {req.env.get('REQUEST_URI', '')}\n")
        if req.env.get("QUERY_STRING", "").startswith("sleep="):
            time.sleep(float(req.env["QUERY_STRING"][6:]))  # other threads go on
        req.out.write(f"body: {len(body)} bytes\n")
        req.finish()
    req.close()


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9000"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    libfcgi.init_socket(address, 64)
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    print(f"serving on {address} with {count} threads; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)  # Ctrl-C is delivered to the main thread here
    except KeyboardInterrupt:
        print("Ctrl-C: stopping", file=sys.stderr, flush=True)
        libfcgi.shutdown()
        deadline = time.monotonic() + 10
        for t in threads:  # let the requests in progress finish
            t.join(max(0.0, deadline - time.monotonic()))
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
