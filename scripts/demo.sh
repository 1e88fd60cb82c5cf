#!/usr/bin/env bash
# Builds the library and the command-line client, compiles the C example
# examples/echo.c against our headers and library, starts it on a Unix
# socket, and sends it real FastCGI requests with fcgi-client.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --lib -p fcgi
cargo build --release --quiet -p fcgi-cli
lib="$PWD/target/release"
work="$(mktemp -d)"
trap 'kill "${app:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

cc -O2 -Wall -Iinclude -o "$work/echo" examples/echo.c -L"$lib" -lfcgi
LD_LIBRARY_PATH="$lib" "$work/echo" "$work/app.sock" &
app=$!
for _ in $(seq 50); do [ -S "$work/app.sock" ] && break; sleep 0.1; done
echo "== the app loaded: $(grep -o '/[^ ]*libfcgi[^ ]*' "/proc/$app/maps" | sort -u)"

client="$lib/fcgi-client"
echo "== GET /hello?name=world"
"$client" "$work/app.sock" '/hello?name=world' --body-only | grep -E 'REQUEST_URI|QUERY_STRING|FCGI_ROLE'
echo "== POST of 1 MiB, echoed back byte for byte"
head -c 1048576 /dev/urandom > "$work/body"
"$client" "$work/app.sock" /upload --data-file "$work/body" --body-only > "$work/reply"
tail -c 1048576 "$work/reply" | cmp - "$work/body" && echo "identical (1048576 bytes)"
echo "== 3 requests on one kept-alive connection, exit status 7, stderr"
"$client" "$work/app.sock" '/x?exit=7' --param STDERR_TEXT='hello on FCGI_STDERR' \
    --repeat 3 --keep-conn --verbose > /dev/null || echo "fcgi-client exit status: $? (the app's)"
