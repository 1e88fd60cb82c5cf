#!/usr/bin/env bash
# Short fuzzing run of every target, for CI: builds the four targets
# (cargo-fuzz, nightly), then runs each for N seconds (default 30), two at
# a time, from the committed corpus (fuzz/corpus/<target>) and the seeds
# (fuzz/seeds/<target>). New inputs go to a temporary directory, so the
# committed corpus is left as it is. Fails if any target crashes, fails an
# assertion, leaks memory (AddressSanitizer), or takes more than 30 s on
# one input; the input is kept in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
targets=(record params engine capi_streams)

if ! command -v cargo-fuzz > /dev/null; then
    cargo install cargo-fuzz --locked
fi
if ! rustup run nightly rustc --version > /dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
cargo +nightly fuzz build -O
bin=target/x86_64-unknown-linux-gnu/release

# No log lines from the library; its timeouts short (see common.rs).
export LIBFCGI_LOG=off
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

run() {
    local t=$1
    mkdir -p "$scratch/$t" "artifacts/$t" "seeds/$t" "corpus/$t"
    "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
        -timeout=30 -print_final_stats=1 \
        "$scratch/$t" "corpus/$t" "seeds/$t" > "$scratch/$t.log" 2>&1
}

status=0
for pair in "record params" "engine capi_streams"; do
    pids=()
    for t in $pair; do
        run "$t" &
        pids+=("$!")
    done
    i=0
    for t in $pair; do
        if wait "${pids[$i]}"; then
            echo "fuzz $t: ok, $(grep -h 'stat::number_of_executed_units' "$scratch/$t.log" | awk '{print $2}') runs in ${secs} s"
        else
            echo "fuzz $t: FAILED" >&2
            tail -n 60 "$scratch/$t.log" >&2
            status=1
        fi
        i=$((i + 1))
    done
done
exit "$status"
