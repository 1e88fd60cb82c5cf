#!/usr/bin/env bash
# scripts/sanitizers.sh [asan|tsan|all]   (default: all)
#
# Runs the harness's C programs on our library built with a sanitizer, the
# programs themselves built with the same sanitizer (tests/sanitizers/README.md
# says what runs, the results, and the suppressions):
#
#   asan  libfcgi.so with AddressSanitizer (and LeakSanitizer at exit):
#         tests/examples.rs, tests/hostile.rs, tests/limits.rs
#   tsan  libfcgi.so with ThreadSanitizer: tests/connections.rs,
#         tests/limits.rs, tests/examples.rs; and the unit tests of
#         src/server (cargo test --lib server::) built with ThreadSanitizer
#
# The library is built by nightly rustc (-Zsanitizer needs it) with
# -Zbuild-std, so the standard library inside libfcgi.so is instrumented
# too; the C programs by clang-19 (its TSan runtime has the __tsan_memcpy
# family that rustc's LLVM emits; gcc 12's libtsan has not). The test
# binaries themselves are the ordinary ones (target/release): they only
# drive the applications (tests/common: FCGI_TEST_LIB_DIR, FCGI_TEST_CFLAGS).
#
# Each pass then checks that it CAN fail: one test again with a known bug
# compiled into its application (tests/sanitizers/canary.h) must fail with
# the sanitizer's report pointing into the library.
#
# Installs what it needs: clang-19, libclang-rt-19-dev and llvm-19 (for
# llvm-symbolizer-19) with apt, rust-src for the nightly toolchain with
# rustup. Exits 77 when the nightly toolchain cannot be had (no network to
# rustup's server), after saying so. Builds go to $CARGO_TARGET_DIR/sanitizers
# (default target/sanitizers).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
case "$mode" in
    asan | tsan | all) ;;
    *)
        echo "usage: $0 [asan|tsan|all]" >&2
        exit 2
        ;;
esac

TRIPLE=x86_64-unknown-linux-gnu
LLVM=19
SYMBOLIZER=/usr/bin/llvm-symbolizer-$LLVM
ROOT="$PWD"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SAN_TARGET="$TARGET/sanitizers"
LOGS="$SAN_TARGET/logs"
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS FCGI_TEST_WRAPPER FCGI_TEST_LIB \
    FCGI_TEST_HEADERS FCGI_TEST_LIB_DIR FCGI_TEST_CFLAGS

# ---- tools ----------------------------------------------------------------
if ! command -v cargo > /dev/null; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v "clang-$LLVM" > /dev/null || [ ! -x "$SYMBOLIZER" ] ||
    [ ! -e "/usr/lib/llvm-$LLVM/lib/clang/$LLVM/lib/linux/libclang_rt.tsan-x86_64.a" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        "clang-$LLVM" "libclang-rt-$LLVM-dev" "llvm-$LLVM"
fi
# An installed nightly is used as it is (`rustup toolchain install` would
# move it to a newer one).
if ! rustup run nightly rustc --version > /dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal --component rust-src ||
        true
fi
has_rust_src() {
    rustup component list --toolchain nightly --installed 2> /dev/null | grep -q '^rust-src'
}
if rustup run nightly rustc --version > /dev/null 2>&1 && ! has_rust_src; then
    rustup component add rust-src --toolchain nightly || true
fi
if ! rustup run nightly rustc --version > /dev/null 2>&1 || ! has_rust_src; then
    echo "SKIPPED: the nightly toolchain with rust-src is not available (rustup failed)" >&2
    exit 77
fi
echo "== $(rustup run nightly rustc --version); $("clang-$LLVM" --version | head -1)"

export CC="clang-$LLVM"
mkdir -p "$LOGS"
SUMMARY=()
FAILED=0

# seconds since the script started
elapsed() { echo $((SECONDS - ${1:-0})); }

# build_lib SANITIZER DIR: libfcgi.so built with -Zsanitizer=SANITIZER in
# $SAN_TARGET/DIR/$TRIPLE/release.
build_lib() {
    echo "== building libfcgi.so with -Zsanitizer=$1"
    RUSTFLAGS="-Zsanitizer=$1" CARGO_TARGET_DIR="$SAN_TARGET/$2" \
        cargo +nightly build -Zbuild-std --release --target "$TRIPLE" --lib -p fcgi
    if ! nm -D --undefined-only "$SAN_TARGET/$2/$TRIPLE/release/libfcgi.so" |
        grep "__$3_" > /dev/null; then
        echo "libfcgi.so has no __$3_ calls: not instrumented" >&2
        exit 1
    fi
}

# run_tests NAME LOG CARGO-ARGS...: runs cargo test, logs, and records the
# counts of its "test result" lines in the summary.
run_tests() {
    local name="$1" log="$2" rc=0 passed failed
    shift 2
    echo "== $name: cargo $*"
    "$@" > "$log" 2>&1 || rc=$?
    grep -E "^test result:|FAILED|panicked" "$log" || true
    passed=$(awk '/^test result:/ {s += $4} END {print s + 0}' "$log")
    failed=$(awk '/^test result:/ {s += $6} END {print s + 0}' "$log")
    local reports
    reports=$(grep -cE "ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer" "$log" || true)
    if [ "$rc" -ne 0 ]; then
        FAILED=1
        SUMMARY+=("$name: FAILED (exit $rc): $passed passed, $failed failed, $reports sanitizer reports in the output; log: $log")
    else
        SUMMARY+=("$name: ok: $passed passed, 0 failed, 0 sanitizer reports")
    fi
}

# canary NAME KIND EXPECTED CFLAGS: runs one test with a known bug in its
# application (tests/sanitizers/canary.h); it must fail, and its output
# must show EXPECTED and a frame of our library.
canary() {
    local name="$1" kind="$2" expected="$3" flags="$4"
    local log="$LOGS/canary-$kind.log" rc=0
    FCGI_TEST_CFLAGS="$flags -include $ROOT/tests/sanitizers/canary.h -DFCGI_SAN_CANARY_$kind" \
        cargo test --release --workspace --test examples -- --exact get_with_params \
        > "$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] && grep -q "$expected" "$log" && grep -qE "[ <]fcgi::" "$log"; then
        SUMMARY+=("$name canary ($kind): caught ($expected, in fcgi::)")
    else
        FAILED=1
        SUMMARY+=("$name canary ($kind): NOT CAUGHT (exit $rc; log: $log)")
    fi
}

# ---- AddressSanitizer -----------------------------------------------------
asan() {
    local t0=$SECONDS
    build_lib address asan asan
    local flags="-fsanitize=address -fno-omit-frame-pointer"
    export FCGI_TEST_LIB_DIR="$SAN_TARGET/asan/$TRIPLE/release"
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:external_symbolizer_path=$SYMBOLIZER"
    export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
    FCGI_TEST_CFLAGS="$flags" run_tests "asan: examples, hostile, limits" "$LOGS/asan.log" \
        cargo test --release --workspace --test examples --test hostile --test limits
    canary asan OVERFLOW "AddressSanitizer: heap-buffer-overflow" "$flags"
    canary asan LEAK "ERROR: LeakSanitizer" "$flags"
    unset FCGI_TEST_LIB_DIR ASAN_OPTIONS LSAN_OPTIONS
    SUMMARY+=("asan: $(elapsed "$t0") s")
}

# ---- ThreadSanitizer ------------------------------------------------------
tsan() {
    local t0=$SECONDS
    build_lib thread tsan tsan
    local flags="-fsanitize=thread"
    local options="halt_on_error=0:exitcode=66:second_deadlock_stack=1:external_symbolizer_path=$SYMBOLIZER"
    if [ -f tests/sanitizers/tsan.supp ]; then
        options="$options:suppressions=$ROOT/tests/sanitizers/tsan.supp"
    fi
    export TSAN_OPTIONS="$options"
    export FCGI_TEST_LIB_DIR="$SAN_TARGET/tsan/$TRIPLE/release"
    FCGI_TEST_CFLAGS="$flags" run_tests "tsan: connections, limits, examples" "$LOGS/tsan.log" \
        cargo test --release --workspace --test connections --test limits --test examples
    canary tsan RACE "WARNING: ThreadSanitizer: data race" "$flags"
    unset FCGI_TEST_LIB_DIR
    # The unit tests of src/server: the test binary is itself built with
    # ThreadSanitizer (a report makes it exit 66 at the end).
    RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR="$SAN_TARGET/tsan" \
        run_tests "tsan: cargo test --lib server::" "$LOGS/tsan-unit.log" \
        cargo +nightly test -Zbuild-std --release --target "$TRIPLE" --lib -p fcgi -- server::
    unset TSAN_OPTIONS
    SUMMARY+=("tsan: $(elapsed "$t0") s")
}

# The ordinary test binaries (reused from `cargo test --release --workspace`).
echo "== building the test binaries"
cargo test --release --workspace --no-run --test examples --test hostile --test limits \
    --test connections

case "$mode" in
    asan) asan ;;
    tsan) tsan ;;
    all)
        asan
        tsan
        ;;
esac

echo
echo "== sanitizers summary ($mode, $(elapsed) s in all)"
printf '  %s\n' "${SUMMARY[@]}"
exit "$FAILED"
