#!/usr/bin/env bash
# Runs the in-process tests of the C boundary (src/capi/tests.rs, and the
# unit tests of request.rs and types.rs) under Miri, once with Stacked
# Borrows (Miri's default) and once with Tree Borrows: every pointer the
# library hands to C -- request streams, envp, paramsPtr, the writers of
# FCGX_CreateWriter, FCGI_FILEs -- used as C uses it, checked for undefined
# behaviour and aliasing violations. About 2 minutes on 2 cores, most of it
# building the standard library for Miri the first time.
#
# Miri cannot run C code (the printf shims in c/, the C library's FILE
# functions) nor send/sendmsg/writev/poll or signals: src/sys uses write()
# under cfg(miri), the library runs without its signal handlers and wake
# signal there, and tests that need C are #[cfg_attr(miri, ignore)].
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version > /dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
    rustup +nightly component add miri rust-src
fi
cargo +nightly miri setup

tests=(capi::tests capi::request::tests capi::types::tests)
for model in stacked tree; do
    flags="${MIRIFLAGS:-}"
    if [ "$model" = tree ]; then
        flags="$flags -Zmiri-tree-borrows"
    fi
    echo "== Miri, $model borrows"
    MIRIFLAGS="$flags" cargo +nightly miri test --lib -- "${tests[@]}"
done
