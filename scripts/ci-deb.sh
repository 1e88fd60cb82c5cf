#!/usr/bin/env bash
# The administrator's round trip with the Debian package (README, "Debian
# package"), as root on a Debian machine:
#
#   1. Debian's libfcgi0ldbl is in place: fcgiwrap behind nginx maps
#      Debian's libfcgi.so.0.0.0 and behaves like it (the checks below
#      are shown to tell the two libraries apart).
#   2. scripts/build-deb.sh builds libfcgi0-rs; lintian finds no error or
#      warning; `apt-get install ./libfcgi0-rs_*.deb`.
#   3. fcgiwrap (restarted) behind nginx maps our file, whose checksum is
#      the package's, exports fcgi_rs_version, and behaves like ours
#      (LIBFCGI_MAX_PARAMS, which only our library reads, refuses a
#      request with too many parameters and LIBFCGI_LOG says why). So do
#      libfcgi++.so.0 and Perl's FCGI. `dpkg -V` is clean for both packages.
#   4. Reinstalling libfcgi0ldbl (as a security update would), reinstalling
#      our package and upgrading it (to revision 2) keeps ours in place and
#      the original aside.
#   5. `apt-get remove` then `dpkg --purge`: no diversion left, Debian's
#      files back with the checksums of libfcgi0ldbl's md5sums, `dpkg -V
#      libfcgi0ldbl` clean, and fcgiwrap is on the original again (the
#      checks of 1).
#
# Whatever happens, the machine ends with Debian's library in place (an
# EXIT trap removes our package and its diversions and, if needed,
# reinstalls libfcgi0ldbl): the differential tests need it. For the 20 s
# it runs, the system's libfcgi.so.0 is ours: on a machine where other
# tests may run at the same time, set FCGI_DEB_ISOLATED=1, which runs the
# same round trip in a private copy-on-write view of / (a mount namespace
# with an overlayfs over /, chrooted; the repository itself is shared), so
# no other process sees the package; it needs unshare and overlayfs.
# Idempotent; installs what it needs with apt-get. About 20 s once the
# release build is there (CARGO_TARGET_DIR=target, the repository's).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "ci-deb: must run as root (it installs and removes a package)" >&2
    exit 1
fi
if ! command -v cargo > /dev/null; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

if [ "${FCGI_DEB_ISOLATED:-}" = 1 ] && [ -z "${FCGI_DEB_IN_OVERLAY:-}" ]; then
    repo=$(pwd)
    view=$(mktemp -d /tmp/ci-deb-view.XXXXXX)
    # The new mount namespace's mounts vanish with it; only the empty
    # folder is left to remove.
    status=0
    # shellcheck disable=SC2016 # expanded by the inner bash
    FCGI_DEB_IN_OVERLAY=1 unshare --mount --pid --fork --propagation private \
        bash -c '
        set -e
        view=$1 repo=$2
        mount -t tmpfs tmpfs "$view"
        mkdir "$view/upper" "$view/work" "$view/root"
        mount -t overlay overlay \
            -o "lowerdir=/,upperdir=$view/upper,workdir=$view/work" "$view/root"
        mount -t proc proc "$view/root/proc"
        mount --rbind /dev "$view/root/dev"
        mount --rbind /sys "$view/root/sys"
        mount -t tmpfs tmpfs "$view/root/tmp"
        mount -t tmpfs tmpfs "$view/root/run"
        mount --bind "$repo" "$view/root$repo"
        exec chroot "$view/root" "$repo/scripts/ci-deb.sh"
        ' ci-deb "$view" "$repo" || status=$?
    rmdir "$view"
    exit "$status"
fi

PKG=libfcgi0-rs
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n== ci-deb: %s\n' "$*"; }
fail() {
    echo "ci-deb: FAILED: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------
# What the test needs (policy-rc.d: installing nginx or fcgiwrap must not
# start their services, as in .ci/run).
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
fi
need=(dpkg-dev binutils libfcgi0ldbl fcgiwrap nginx-light curl libfcgi-perl perl python3 lintian)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2> /dev/null | grep -q '^install ok installed$' \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ -n "$made_policy" ]; then
    rm -f "$policy"
fi

MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
LIBDIR=/usr/lib/$MULTIARCH
DIVERT_DIR=$LIBDIR/libfcgi0ldbl
ORIG_MD5SUMS=$(dpkg-query --control-path libfcgi0ldbl md5sums)

# The md5 a package's md5sums file gives for $2 (a path without the /).
md5_in() { awk -v f="$2" '$2 == f { print $1 }' "$1"; }
md5_of() { md5sum "$1" | cut -d' ' -f1; }
ORIG_LIB_MD5=$(md5_in "$ORIG_MD5SUMS" "${LIBDIR#/}/libfcgi.so.0.0.0")
[ -n "$ORIG_LIB_MD5" ] || fail "libfcgi0ldbl's md5sums has no libfcgi.so.0.0.0"

# ---------------------------------------------------------------------
# Putting the machine back, on every exit.
work=$(mktemp -d /tmp/ci-deb.XXXXXX)
chmod 755 "$work"
pids=()
stop_pids() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2> /dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2> /dev/null || true
    done
    pids=()
}
# Removes our package and whatever it left (its diversions, their folder),
# and reinstalls libfcgi0ldbl unless its files are intact.
put_back_original() {
    local -
    set +e
    if dpkg-query -W -f='${Status}' "$PKG" 2> /dev/null | grep -q .; then
        echo "ci-deb: restoring: purging $PKG" >&2
        dpkg --purge "$PKG-dbgsym" "$PKG" >&2
    fi
    # Diversions left by a failed maintainer script.
    dpkg-divert --list "*libfcgi*" | awk -v p="$PKG" '$NF == p { print $3 }' |
        while read -r f; do
            echo "ci-deb: restoring: removing the diversion of $f" >&2
            rm -f "$f"
            dpkg-divert --package "$PKG" --remove --rename "$f" >&2
        done
    rmdir "$DIVERT_DIR" 2> /dev/null
    if ! dpkg -V libfcgi0ldbl > /dev/null 2>&1 ||
        [ "$(md5_of "$LIBDIR/libfcgi.so.0.0.0" 2> /dev/null)" != "$ORIG_LIB_MD5" ]; then
        echo "ci-deb: restoring: reinstalling libfcgi0ldbl" >&2
        apt-get install -y -q --reinstall libfcgi0ldbl >&2
    fi
    ldconfig
}
restore() {
    local status=$?
    set +e
    stop_pids
    put_back_original
    rm -rf "$work"
    if [ "$status" = 0 ]; then
        echo "ci-deb: PASSED (Debian's libfcgi.so.0 is back in place)"
    fi
    exit "$status"
}
trap restore EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------
# fcgiwrap behind nginx, on loopback, with their own configuration.

# The CGI script: its environment, then a marker.
cat > "$work/env.cgi" << 'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
env | sort
echo "--- env.cgi done ---"
EOF
chmod 755 "$work/env.cgi"

# Starts fcgiwrap (on a Unix socket) and nginx (on a free loopback port);
# sets FCGIWRAP_PID and URL. fcgiwrap gets LIBFCGI_MAX_PARAMS and
# LIBFCGI_LOG, settings only our library reads.
start_stack() {
    local name=$1 d="$work/$1" port i
    rm -rf "$d"
    mkdir -p "$d"
    env LIBFCGI_MAX_PARAMS=40 LIBFCGI_LOG="$d/libfcgi.log" \
        fcgiwrap -c 1 -s "unix:$d/fcgiwrap.sock" 2> "$d/fcgiwrap.stderr" &
    FCGIWRAP_PID=$!
    pids+=("$FCGIWRAP_PID")
    for i in $(seq 600); do
        [ -S "$d/fcgiwrap.sock" ] && break
        kill -0 "$FCGIWRAP_PID" 2> /dev/null || fail "fcgiwrap ($name) exited: $(cat "$d/fcgiwrap.stderr")"
        sleep 0.05
    done
    [ -S "$d/fcgiwrap.sock" ] || fail "fcgiwrap ($name) made no socket"
    for i in $(seq 10); do
        port=$((20000 + RANDOM % 40000))
        cat > "$d/nginx.conf" << EOF
daemon off;
master_process off;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 64; }
http {
    access_log $d/access.log;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    server {
        listen 127.0.0.1:$port;
        location / {
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param CONTENT_TYPE \$content_type;
            fastcgi_param CONTENT_LENGTH \$content_length;
            fastcgi_param SCRIPT_NAME \$fastcgi_script_name;
            fastcgi_param REQUEST_URI \$request_uri;
            fastcgi_param SERVER_PROTOCOL \$server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR \$remote_addr;
            fastcgi_param SERVER_PORT \$server_port;
            fastcgi_param SERVER_NAME \$server_name;
            fastcgi_param SCRIPT_FILENAME $work/env.cgi;
            fastcgi_param DOCUMENT_ROOT $work;
            fastcgi_pass unix:$d/fcgiwrap.sock;
        }
    }
}
EOF
        nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" 2> "$d/nginx.stderr" &
        local npid=$!
        local up=
        for _ in $(seq 600); do
            if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
                up=1
                break
            fi
            kill -0 "$npid" 2> /dev/null || break
            sleep 0.05
        done
        if [ -n "$up" ]; then
            pids+=("$npid")
            URL="http://127.0.0.1:$port"
            return 0
        fi
        kill "$npid" 2> /dev/null || true
        wait "$npid" 2> /dev/null || true
    done
    fail "nginx ($name) did not start: $(cat "$d/nginx.stderr" "$d/error.log" 2> /dev/null)"
}

# The one libfcgi file process $1 maps (fails on none or several).
mapped_libfcgi() {
    local files
    files=$(awk '$6 ~ /\/libfcgi\.so/ { print $6 }' "/proc/$1/maps" | sort -u)
    [ -n "$files" ] || fail "process $1 maps no libfcgi: $(tr '\0' ' ' < "/proc/$1/cmdline")"
    [ "$(printf '%s\n' "$files" | wc -l)" = 1 ] || fail "process $1 maps several libfcgi: $files"
    printf '%s\n' "$files"
}

# Asserts that process $1 ($2) runs on library $3 (ours | original).
assert_runs_on() {
    local pid=$1 what=$2 which=$3 file want_md5
    file=$(mapped_libfcgi "$pid")
    [ "$file" = "$LIBDIR/libfcgi.so.0.0.0" ] || fail "$what maps $file, not $LIBDIR/libfcgi.so.0.0.0"
    if [ "$which" = ours ]; then
        want_md5=$(md5_in "$(dpkg-query --control-path "$PKG" md5sums)" "${LIBDIR#/}/libfcgi.so.0.0.0")
    else
        want_md5=$ORIG_LIB_MD5
    fi
    # The mapped file is the one at that path now (same inode), and its
    # contents are the package's.
    local ino
    ino=$(awk -v f="$file" '$6 == f { print $5; exit }' "/proc/$pid/maps")
    [ "$ino" = "$(stat -L -c %i "$file")" ] || fail "$what maps an older $file (inode $ino)"
    [ "$(md5_of "$file")" = "$want_md5" ] || fail "$what: $file is not the $which library (md5)"
    if nm -D --defined-only "$file" | grep -qw fcgi_rs_version; then
        [ "$which" = ours ] || fail "$what: $file exports fcgi_rs_version: ours, not the original"
    else
        [ "$which" = original ] || fail "$what: $file lacks fcgi_rs_version: not ours"
    fi
    if [ "$which" = ours ]; then
        echo "ci-deb: $what (pid $pid) runs on our $file"
    else
        echo "ci-deb: $what (pid $pid) runs on Debian's $file"
    fi
}

# fcgiwrap behind nginx serves env.cgi, and shows which library it uses.
check_fcgiwrap() {
    local which=$1 name="fcgiwrap-$1" d="$work/fcgiwrap-$1" out code hdrs=()
    start_stack "$name"
    out=$(curl -sS --max-time 20 "$URL/env.cgi?probe=$which") || fail "$name: GET failed"
    grep -qx "QUERY_STRING=probe=$which" <<< "$out" || fail "$name: wrong answer: $out"
    grep -qx -- "--- env.cgi done ---" <<< "$out" || fail "$name: answer cut: $out"
    assert_runs_on "$FCGIWRAP_PID" "$name" "$which"

    # 60 more headers than LIBFCGI_MAX_PARAMS=40 allows: our library
    # refuses the request (nginx answers 502) and logs why; Debian's does
    # not read the variable and serves it.
    local i
    for i in $(seq 60); do
        hdrs+=(-H "X-Probe-$i: $i")
    done
    code=$(curl -s -o "$d/many.out" -w '%{http_code}' --max-time 20 "${hdrs[@]}" "$URL/env.cgi")
    if [ "$which" = ours ]; then
        [ "$code" = 502 ] || fail "$name: a request with 80 parameters got $code, not 502 (LIBFCGI_MAX_PARAMS=40 ignored)"
        grep -qi 'param' "$d/libfcgi.log" 2> /dev/null ||
            fail "$name: LIBFCGI_LOG has no line about the refused request: $(cat "$d/libfcgi.log" 2> /dev/null)"
        echo "ci-deb: $name refused 80 parameters; LIBFCGI_LOG: $(head -n 1 "$d/libfcgi.log")"
        # and goes on serving
        out=$(curl -sS --max-time 20 "$URL/env.cgi?after=1") || fail "$name: GET after the refusal failed"
        grep -qx "QUERY_STRING=after=1" <<< "$out" || fail "$name: wrong answer after the refusal: $out"
    else
        [ "$code" = 200 ] || fail "$name: a request with 80 parameters got $code on the original"
        grep -qx "HTTP_X_PROBE_60=60" "$d/many.out" || fail "$name: HTTP_X_PROBE_60 missing"
        [ ! -s "$d/libfcgi.log" ] || fail "$name: the original wrote LIBFCGI_LOG: $(cat "$d/libfcgi.log")"
    fi
    stop_pids
}

# Waits (up to 30 s, on a busy machine) until process $1 wrote "ready"
# into $2.
wait_ready() {
    local _
    for _ in $(seq 600); do
        grep -q ready "$2" 2> /dev/null && return 0
        kill -0 "$1" 2> /dev/null || fail "process $1 exited: $(cat "$2")"
        sleep 0.05
    done
    fail "process $1 did not get ready in 30 s"
}

# libfcgi++.so.0 (Debian's C++ layer, not diverted) and Perl's FCGI load
# libfcgi.so.0 through the same path.
check_dependants() {
    local which=$1
    # (no "ready" left from an earlier call)
    rm -f "$work/cxx.out" "$work/perl.out"
    # Debian's python3 (not a pyenv shim): its pid is the interpreter's.
    /usr/bin/python3 -c 'import ctypes, sys, time
ctypes.CDLL("libfcgi++.so.0")
sys.stdout.write("ready\n"); sys.stdout.flush(); time.sleep(60)' > "$work/cxx.out" &
    local p=$!
    pids+=("$p")
    wait_ready "$p" "$work/cxx.out"
    assert_runs_on "$p" "a process that loaded libfcgi++.so.0" "$which"
    /usr/bin/perl -MFCGI -e '$| = 1; print "ready\n"; sleep 60' > "$work/perl.out" &
    p=$!
    pids+=("$p")
    wait_ready "$p" "$work/perl.out"
    assert_runs_on "$p" "perl -MFCGI" "$which"
    stop_pids
}

# The files and the package database as Debian ships them.
check_original_files() {
    dpkg -V libfcgi0ldbl || fail "dpkg -V libfcgi0ldbl is not clean"
    [ "$(md5_of "$LIBDIR/libfcgi.so.0.0.0")" = "$ORIG_LIB_MD5" ] ||
        fail "$LIBDIR/libfcgi.so.0.0.0 is not libfcgi0ldbl's"
    [ "$(readlink "$LIBDIR/libfcgi.so.0")" = libfcgi.so.0.0.0 ] || fail "libfcgi.so.0 link changed"
    ! dpkg-divert --list "*libfcgi*" | grep -q . || fail "diversions left: $(dpkg-divert --list '*libfcgi*')"
    [ ! -e "$DIVERT_DIR" ] || fail "$DIVERT_DIR left behind"
    [ "$(dpkg -S "$LIBDIR/libfcgi.so.0.0.0")" = "libfcgi0ldbl:amd64: $LIBDIR/libfcgi.so.0.0.0" ] ||
        [ "$(dpkg -S "$LIBDIR/libfcgi.so.0.0.0")" = "libfcgi0ldbl: $LIBDIR/libfcgi.so.0.0.0" ] ||
        fail "dpkg -S: $(dpkg -S "$LIBDIR/libfcgi.so.0.0.0")"
}

# Ours in place, Debian's aside, both packages verified.
check_ours_installed() {
    dpkg -V "$PKG" || fail "dpkg -V $PKG is not clean"
    dpkg -V libfcgi0ldbl || fail "dpkg -V libfcgi0ldbl is not clean with ours installed"
    [ "$(dpkg-divert --truename "$LIBDIR/libfcgi.so.0.0.0")" = "$DIVERT_DIR/libfcgi.so.0.0.0" ] ||
        fail "libfcgi.so.0.0.0 is not diverted"
    [ "$(dpkg-divert --truename "$LIBDIR/libfcgi.so.0")" = "$DIVERT_DIR/libfcgi.so.0" ] ||
        fail "libfcgi.so.0 is not diverted"
    [ "$(md5_of "$DIVERT_DIR/libfcgi.so.0.0.0")" = "$ORIG_LIB_MD5" ] ||
        fail "the diverted $DIVERT_DIR/libfcgi.so.0.0.0 is not libfcgi0ldbl's"
    # ldconfig (run by the trigger) left the link on our file.
    ldconfig
    [ "$(readlink "$LIBDIR/libfcgi.so.0")" = libfcgi.so.0.0.0 ] ||
        fail "ldconfig moved libfcgi.so.0 to $(readlink "$LIBDIR/libfcgi.so.0")"
    nm -D --defined-only "$LIBDIR/libfcgi.so.0.0.0" | grep -qw fcgi_rs_version ||
        fail "$LIBDIR/libfcgi.so.0.0.0 is not ours"
    dpkg-query -W -f='${Status}\n' libfcgi0ldbl | grep -q '^install ok installed$' ||
        fail "libfcgi0ldbl is no longer installed"
}

# ---------------------------------------------------------------------
# A run stopped without its trap (power cut, SIGKILL) may have left the
# package or its diversions behind.
put_back_original
step "1. Debian's library in place"
check_original_files
check_fcgiwrap original
check_dependants original

step "2. build and check the package"
deb=$(nice scripts/build-deb.sh | tail -n 1)
dbgsym=${deb/\/${PKG}_/\/${PKG}-dbgsym_}
[ -f "$deb" ] || fail "scripts/build-deb.sh made no package"
[ -f "$dbgsym" ] || fail "scripts/build-deb.sh made no $dbgsym"
debug_file=$(dpkg-deb -c "$dbgsym" | awk '$6 ~ /\.debug$/ { print substr($6, 2) }')
[ -n "$debug_file" ] || fail "$dbgsym holds no .debug file"
for d in "$deb" "$dbgsym"; do
    dpkg-deb --info "$d"
    dpkg-deb --contents "$d"
done
if [ "${FCGI_DEB_LINTIAN:-1}" != 0 ]; then
    TMPDIR="$work" lintian --fail-on error,warning --info --tag-display-limit 0 "$deb" "$dbgsym" ||
        fail "lintian reports errors or warnings"
fi

step "3. install it (apt-get install ./$(basename "$deb") ./$(basename "$dbgsym"))"
apt-get install -y -q "$(realpath "$deb")" "$(realpath "$dbgsym")"
check_ours_installed
dpkg-divert --list "*libfcgi*"
# The stripped library's addresses resolve to our sources through the
# -dbgsym package (found by build ID).
addr=$(nm -D --defined-only "$LIBDIR/libfcgi.so.0.0.0" | awk '$3 == "FCGX_Accept_r" { print $1 }')
line=$(addr2line -e "$LIBDIR/libfcgi.so.0.0.0" "0x$addr")
[ -f "$debug_file" ] || fail "$debug_file not installed"
case "$line" in
    */src/capi/*.rs:[0-9]*) echo "ci-deb: FCGX_Accept_r is at $line (debugging symbols of $PKG-dbgsym)" ;;
    *) fail "addr2line found no source line for FCGX_Accept_r: $line" ;;
esac
check_fcgiwrap ours
check_dependants ours

step "4. libfcgi0ldbl reinstalled (a security update), $PKG reinstalled, then upgraded to revision 2"
apt-get install -y -q --reinstall libfcgi0ldbl
check_ours_installed
dpkg -i "$deb" "$dbgsym"
check_ours_installed
deb2=$(DEB_REVISION=2 DEB_OUT_DIR="$work/deb2" scripts/build-deb.sh | tail -n 1)
dpkg -i "$deb2" "${deb2/\/${PKG}_/\/${PKG}-dbgsym_}"
[ "$(dpkg-query -W -f='${Version}' "$PKG")" = "$(dpkg-deb -f "$deb2" Version)" ] ||
    fail "$PKG was not upgraded to $(dpkg-deb -f "$deb2" Version)"
check_ours_installed
check_fcgiwrap ours

step "5. remove and purge it: Debian's library back"
apt-get remove -y -q "$PKG" "$PKG-dbgsym"
check_original_files
dpkg --purge "$PKG"
[ ! -e "$debug_file" ] || fail "$debug_file left after the removal"
check_original_files
check_fcgiwrap original
check_dependants original
