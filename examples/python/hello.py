#!/usr/bin/env python3
"""The classic libfcgi hello: one request at a time, stop with Ctrl-C.

    python hello.py 127.0.0.1:9000     (or a port, or a Unix socket path)
"""
import sys

import libfcgi

address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9000"
libfcgi.init_socket(int(address) if address.isdigit() else address, 10)
req = libfcgi.fcgi_request()
count = 0
while req.accept():
    count += 1
    body = req.read()  # the request body, if any
    req.out.write("Content-Type: text/plain\r\n\r\n")
    req.out.write(f"Hello from libfcgi! Request #{count}\n")
    req.out.write(f"REQUEST_URI: {req.env.get('REQUEST_URI', '')}\n")
    req.out.write(f"body: {len(body)} bytes\n")
    req.finish()
