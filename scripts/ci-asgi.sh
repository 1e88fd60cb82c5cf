#!/usr/bin/env bash
# CI for libfcgi.asgi (bindings/python/src/libfcgi/asgi.py): installs what
# its tests use and runs tests/python/test_asgi.py (not the benchmark).
#
#   nginx-light   (apt)  the FastAPI application is served behind nginx
#   pytest fastapi (pip) FastAPI brings Starlette and pydantic
#
# Idempotent; run from anywhere as root on Debian (apt-get is skipped when
# nginx is already there). Here a missing nginx or FastAPI fails the FastAPI
# test (LIBFCGI_ASGI_TESTS_REQUIRED=1); elsewhere, as in the plain
# `pytest tests/python` run, that test skips without them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
export LIBFCGI_ASGI_TESTS_REQUIRED=1

if ! command -v nginx > /dev/null && [ ! -x /usr/sbin/nginx ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Installing nginx must not start its service (port 80).
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends nginx-light
    if [ -n "$made_policy" ]; then
        rm -f "$policy"
    fi
fi

if ! command -v cargo > /dev/null; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
# The library the tests load (tests/python/conftest.py: target/release).
if [ ! -e target/release/libfcgi.so ]; then
    cargo build --release --lib
fi

# pip where python3 has it (pyenv's); Debian's python3 gets Debian's packages.
if ! python3 -m pip install -q --disable-pip-version-check pytest fastapi; then
    apt-get install -y -q --no-install-recommends python3-pytest python3-fastapi
fi
python3 -m pytest -q tests/python/test_asgi.py
