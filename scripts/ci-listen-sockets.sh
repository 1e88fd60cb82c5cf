#!/usr/bin/env bash
# Issue #14 items 1-3: accept with a timeout and event loops
# (tests/event_loop.rs), systemd socket activation with
# systemd-socket-activate and spawn-fcgi (tests/socket_activation.rs), and
# the mode and owner of Unix sockets (tests/socket_owner.rs, which creates
# its own test user and group when it runs as root).
#
# Installs what these tests need if it is missing (Debian: the systemd
# package for systemd-socket-activate, which runs without systemd as PID 1;
# spawn-fcgi; passwd for useradd/groupadd), then runs them. Idempotent. Run
# it before `cargo test --workspace` under CI=true: there a missing program
# fails those tests instead of skipping them. About 15 s once the library
# is built.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v systemd-socket-activate > /dev/null || need+=(systemd)
command -v spawn-fcgi > /dev/null || need+=(spawn-fcgi)
command -v useradd > /dev/null || need+=(passwd)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${need[@]}"
    else
        echo "ci-listen-sockets: missing ${need[*]} (apt-get install them as root)" >&2
    fi
fi

tests=(--test event_loop --test socket_activation)
[ -f tests/socket_owner.rs ] && tests+=(--test socket_owner)
cargo test --release --workspace "${tests[@]}"
