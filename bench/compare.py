#!/usr/bin/env python3
"""Compare our libfcgi with Debian's original, and both with the machine's limit.

Builds the library, the load generator (fcgi-load), the canned server and
the C apps in bench/apps (once, against the original /usr/include headers
and linked with -lfcgi), then runs every scenario on:

  limit     bench/canned/canned.c, a FastCGI server without a library
  original  the app on Debian's /usr/lib/x86_64-linux-gnu/libfcgi.so.0
  ours      the same app binary with LD_LIBRARY_PATH=target/release

for several rounds, alternating the order of original and ours, checking
in /proc/PID/maps which libfcgi each run really loaded. Prints one markdown
report (medians, ratios, latency, CPU per request, peak RSS, system calls
per request from strace -c -f, one end-to-end figure through nginx + wrk,
issue #5's targets checked on the medians, then the Python package's WSGI
benchmark, bindings/python/bench/bench.py) and writes it to
bench/results/latest.md (--json-out: the raw results too; --report-from
renders a report again from them). See bench/README.md.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
# cargo's target folder: target/, or CARGO_TARGET_DIR as cargo itself takes it.
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
REL = os.path.join(TARGET, "release")
BUILD = os.path.join(TARGET, "bench")
LOAD = os.path.join(REL, "fcgi-load")
# Ours is copied here at the start, so a rebuild during the run changes nothing.
OURS_DIR = os.path.join(BUILD, "ours")
ORIG_LIB = "/usr/lib/x86_64-linux-gnu/libfcgi.so.0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
VARIANTS = ("limit", "original", "ours")
ALL_VARIANTS = ("limit", "limit-epoll", "original", "ours")
# Client for the 32-connection scenarios: two epoll threads, one per CPU.
CLIENT32 = ["-c", "32", "-t", "2", "--pin-threads"]


class Scenario:
    def __init__(self, key, title, app, canned, load, pin=False, strace_n=2000, big=False,
                 canned_epoll=None, fewer_threads=False):
        self.key = key
        self.canned_epoll = canned_epoll  # args of a second limit, canned in epoll mode
        self.title = title
        self.app = app          # argv, "{addr}" replaced
        self.canned = canned    # canned args before the address; None: no threaded limit
        # Fewer app threads than connections (issue #12): a variant may be
        # unable to serve it at all; such a variant is detected in its first
        # run and reported as "cannot serve" (see run_variant). The goal is
        # checked against the epoll limit instead of issue #5's targets.
        self.fewer_threads = fewer_threads
        self.load = load        # fcgi-load args
        self.pin = pin
        self.strace_n = strace_n  # 0: no strace for this scenario
        self.big = big          # MB/s matters more than req/s


MIB = 1048576
SCENARIOS = [
    Scenario("hello-1ka", "hello, 1 keep-alive connection",
             ["hello", "{addr}"], [], ["-c", "1"]),
    Scenario("hello-1ka-pin", "hello, 1 keep-alive conn., app+client on CPU 0",
             ["hello", "{addr}"], [], ["-c", "1"], pin=True, strace_n=0),
    # 32 threads: 10,000 requests under strace, so that what each thread
    # does once (thread-local set-up, its first allocations) does not count
    # as a per-request cost.
    Scenario("hello32-close", "hello 32 threads, 32 conns, new conn. per request",
             ["hello", "{addr}", "32"], ["-t", "32"], CLIENT32 + ["--close"],
             canned_epoll=["-E", "2"], strace_n=10000),
    Scenario("hello32-ka", "hello 32 threads, 32 keep-alive conns, light params",
             ["hello", "{addr}", "32"], ["-t", "32"], CLIENT32, canned_epoll=["-E", "2"],
             strace_n=10000),
    Scenario("hello32-ka-heavy", "hello 32 threads, 32 keep-alive conns, heavy params",
             ["hello", "{addr}", "32"], ["-t", "32"], CLIENT32 + ["-p", "heavy"],
             canned_epoll=["-E", "2"], strace_n=10000),
    # Issue #12: 2 threads, 32 keep-alive connections sending requests back
    # to back. A thread per connection (libfcgi, or canned -t) serves 2 of
    # them and leaves 30 unanswered, so the limit is canned's epoll mode
    # alone (see run_variant for the variants that cannot serve it).
    Scenario("hello2t-32ka", "hello 2 threads, 32 keep-alive conns, light params",
             ["hello", "{addr}", "2"], None, CLIENT32,
             canned_epoll=["-E", "2"], strace_n=10000, fewer_threads=True),
    Scenario("echo-1m", "1 MiB POST echo, 1 keep-alive conn.",
             ["echo", "{addr}"], ["-e"], ["-c", "1", "-b", str(MIB), "--echo"],
             strace_n=100, big=True),
    Scenario("resp-1m", "1 MiB responses, 1 keep-alive conn.",
             ["big", "{addr}", str(MIB), "8192"], ["-s", str(MIB)],
             ["-c", "1", "--expect-len", str(MIB + 28)], strace_n=100, big=True),
    Scenario("stdio-close", "fcgi_stdio.h hello, 4 conns, new conn. per request",
             ["stdio_hello", "{addr}"], [], ["-c", "4", "--close"]),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    log("+ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def build():
    sh(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    sh(["cargo", "build", "--release", "--quiet", "-p", "fcgi-bench"], cwd=ROOT)
    os.makedirs(BUILD, exist_ok=True)
    cc = os.environ.get("CC", "gcc")
    for name in ("hello", "echo", "big", "stdio_hello"):
        # The original headers and the original library: one binary for both runs.
        sh([cc, "-O2", "-Wall", "-o", os.path.join(BUILD, name),
            os.path.join(BENCH, "apps", name + ".c"), "-lfcgi", "-lpthread"])
    sh([cc, "-O2", "-Wall", "-o", os.path.join(BUILD, "canned"),
        os.path.join(BENCH, "canned", "canned.c"), "-lpthread"])
    if not os.path.exists(os.path.join(REL, "libfcgi.so.0")):
        os.symlink("libfcgi.so", os.path.join(REL, "libfcgi.so.0"))


def snapshot_ours():
    """Copies target/release/libfcgi.so to OURS_DIR; returns (sha256 prefix, source state)."""
    import hashlib
    src = os.path.realpath(os.path.join(REL, "libfcgi.so"))
    os.makedirs(OURS_DIR, exist_ok=True)
    dst = os.path.join(OURS_DIR, "libfcgi.so.0")
    shutil.copy2(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    with open(dst, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "c", "build.rs", "fcgi.map"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return digest, bool(dirty)


def env_for(variant):
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    env.pop("LD_PRELOAD", None)
    if variant == "ours":
        env["LD_LIBRARY_PATH"] = OURS_DIR
    return env


def expected_lib(variant):
    if variant.startswith("limit"):
        return None
    if variant == "ours":
        return os.path.realpath(os.path.join(OURS_DIR, "libfcgi.so.0"))
    if variant == "original":
        return os.path.realpath(ORIG_LIB)
    return None


def loaded_fcgi(pid):
    """The libfcgi file(s) mapped into process pid."""
    libs = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "libfcgi" in os.path.basename(parts[5]):
                    libs.add(os.path.realpath(parts[5]))
    except OSError:
        pass
    return sorted(libs)


def proc_cpu(pid, user_only=False):
    """utime + stime (or utime alone) of the whole process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    if user_only:
        return int(fields[11]) / CLK_TCK
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_busy():
    """Busy CPU seconds of the whole machine so far (steal included)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_quiet(max_wait, threshold=0.15):
    """Waits until the machine is idle (other work would skew the run):
    busy CPUs averaged over 0.5 s below threshold. Returns the seconds waited."""
    t0 = time.time()
    warned = False
    while True:
        b0, w0 = cpu_busy(), time.time()
        time.sleep(0.3)
        load = (cpu_busy() - b0) / (time.time() - w0)
        if load < threshold or time.time() - t0 > max_wait:
            if warned:
                log(f"  machine quiet again after {time.time() - t0:.0f} s (load {load:.2f} CPUs)")
            return time.time() - t0
        if not warned:
            log(f"  machine busy ({load:.2f} CPUs used by other processes), waiting up to {max_wait} s")
            warned = True


def listening(port):
    want = f"0100007F:{port:04X}"
    want_any = f"00000000:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[3] == "0A" and p[1] in (want, want_any):
                return True
    return False


def wait_listening(port, proc, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        if listening(port):
            return
        time.sleep(0.005)
    raise RuntimeError(f"nothing listens on port {port}")


class Ports:
    def __init__(self, start=20000):
        self.next = start

    def get(self):
        while True:
            p = self.next
            self.next += 1
            if self.next > 29000:
                self.next = 20000
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                    return p
                except OSError:
                    continue


def server_argv(scn, variant, port):
    addr = f"127.0.0.1:{port}"
    if variant == "limit":
        argv = [os.path.join(BUILD, "canned")] + scn.canned + [addr]
    elif variant == "limit-epoll":
        argv = [os.path.join(BUILD, "canned")] + scn.canned_epoll + [addr]
    else:
        argv = [os.path.join(BUILD, scn.app[0])] + [a.format(addr=addr) for a in scn.app[1:]]
    return argv


def start_server(argv, variant, pin, errlog, prefix=()):
    cmd = list(prefix) + (["taskset", "-c", "0"] if pin else []) + argv
    return subprocess.Popen(cmd, env=env_for(variant), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=errlog)


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def check_lib(variant, pid):
    libs = loaded_fcgi(pid)
    want = expected_lib(variant)
    ok = libs == ([want] if want else [])
    return libs, ok


def run_load(scn, port, args, pin, timeout):
    cmd = (["taskset", "-c", "0"] if pin else []) + [LOAD, f"127.0.0.1:{port}", "--json"] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not r.stdout.strip():
        raise RuntimeError(f"fcgi-load failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def run_one(scn, variant, ports, duration, errlog, extra=()):
    port = ports.get()
    proc = start_server(server_argv(scn, variant, port), variant, scn.pin, errlog)
    try:
        wait_listening(port, proc)
        cpu0 = proc_cpu(proc.pid)
        user0 = proc_cpu(proc.pid, user_only=True)
        libs, lib_ok = check_lib(variant, proc.pid)
        busy0, t0 = cpu_busy(), time.time()
        res = run_load(scn, port, ["-d", str(duration)] + scn.load + list(extra), scn.pin,
                       duration + 60)
        busy1, t1 = cpu_busy(), time.time()
        cpu1 = proc_cpu(proc.pid)
        user1 = proc_cpu(proc.pid, user_only=True)
        res["app_user_us_per_req"] = (user1 - user0) * 1e6 / res["ok"] if res["ok"] else 0.0
        own = (cpu1 - cpu0) + res["client_cpu_user_s"] + res["client_cpu_sys_s"]
        # CPU used by anything but this app and the load generator, in CPUs.
        res["foreign_cpus"] = max(0.0, (busy1 - busy0 - own) / (t1 - t0))
        res["rss_kib"] = vm_hwm_kib(proc.pid)
        libs2, lib_ok2 = check_lib(variant, proc.pid)
        res["libs"] = sorted(set(libs) | set(libs2))
        res["lib_ok"] = lib_ok and lib_ok2
        res["app_cpu_s"] = cpu1 - cpu0
        res["app_cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / res["ok"] if res["ok"] else 0.0
        return res
    finally:
        stop(proc)


def unserved_reason(res, timeout):
    return (f"{res['unserved_conns']} connections without a response within {timeout:g} s, "
            f"{res['errors']} errors (first: {res.get('first_error')})")


def run_variant(scn, variant, ports, duration, errlog):
    """run_one, for a scenario with fewer threads than connections: a
    variant that leaves connections unanswered or whose run fails is marked
    cannot_serve instead of stopping the script. fcgi-load counts a
    connection closed or timed out before its first response as unserved;
    its per-request timeout is made shorter than the run (at most 2 s, half
    the duration), so a connection that waits for a thread until the clients
    stop (when a thread-per-connection server, freed by the closing served
    connections, would still answer it) has timed out first, and the run of
    such a variant ends at most 2 s after its duration."""
    if not scn.fewer_threads:
        return run_one(scn, variant, ports, duration, errlog)
    timeout = min(2.0, duration / 2)
    try:
        res = run_one(scn, variant, ports, duration, errlog, extra=["--timeout", f"{timeout:g}"])
    except Exception as e:  # e.g. fcgi-load got no reference response
        return {"cannot_serve": True, "reason": f"run failed: {e}", "foreign_cpus": 0.0,
                "lib_ok": True, "libs": [], "errors": 0, "unserved_conns": 0}
    if res["unserved_conns"]:
        res["cannot_serve"] = True
        res["reason"] = unserved_reason(res, timeout)
    return res


def unable(runs):
    """Whether a variant's runs found it unable to serve the scenario."""
    return any(x.get("cannot_serve") for x in runs)


def variants_of(scn, order):
    """The variants a round runs for scn, in order."""
    return ((["limit-epoll"] if scn.canned_epoll else [])
            + [v for v in order if v != "limit" or scn.canned is not None])


def strace_variants(scn):
    return tuple(v if v != "limit" or scn.canned is not None else "limit-epoll"
                 for v in VARIANTS)


def sc_get(sc, v):
    """A scenario's strace result for v; the limit column of a scenario
    without a threaded limit shows the epoll limit."""
    d = sc.get(v)
    if d is None and v == "limit":
        d = sc.get("limit-epoll")
    return d


# ------------------------------------------------------------------ strace

STRACE_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def parse_strace(path):
    counts = {}
    with open(path) as f:
        for line in f:
            m = STRACE_LINE.match(line)
            if m and m.group(3) != "total":
                counts[m.group(3)] = counts.get(m.group(3), 0) + int(m.group(1))
    return counts


def strace_counts(scn, variant, ports, n, errlog):
    port = ports.get()
    out = tempfile.NamedTemporaryFile(prefix="fcgi-strace-", suffix=".txt", delete=False).name
    argv = server_argv(scn, variant, port)
    proc = start_server(argv, variant, False, errlog,
                        prefix=["strace", "-f", "-c", "-o", out, "--"])
    child = None
    try:
        # The traced app is the child of strace running argv[0] (strace also
        # forks short-lived helpers of its own at start-up).
        wait_listening(port, proc, 10)
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        for k in kids:
            try:
                if os.path.realpath(f"/proc/{k}/exe") == os.path.realpath(argv[0]):
                    child = k
            except OSError:
                pass
        if child is None:
            raise RuntimeError("cannot find the traced app")
        wait_listening(port, proc, 10)
        libs, lib_ok = check_lib(variant, child)
        res = run_load(scn, port, ["-n", str(n), "--timeout", "20"] + scn.load, False, 300)
        os.kill(child, signal.SIGKILL)
        child = None
        proc.wait(timeout=30)
        counts = parse_strace(out)
        return counts, res, lib_ok
    finally:
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        stop(proc)
        try:
            os.unlink(out)
        except OSError:
            pass


def syscalls_per_request(scn, variant, ports, errlog):
    """(total per request, {name: per request}) from two traced runs:
    N requests minus zero requests (setup and the reference request)."""
    n = scn.strace_n
    base, res0, ok0 = strace_counts(scn, variant, ports, 0, errlog)
    full, res1, ok1 = strace_counts(scn, variant, ports, n, errlog)
    done = res1["ok"]
    if not done:
        return None
    per = {}
    for k in set(base) | set(full):
        d = (full.get(k, 0) - base.get(k, 0)) / done
        if abs(d) >= 0.005:
            per[k] = d
    return {"total": sum(per.values()), "per": per, "lib_ok": ok0 and ok1,
            "errors": res1["errors"] + res1["unserved_conns"]}


# ------------------------------------------------------------------ nginx

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    fastcgi_temp_path {tmp}/fastcgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            {params}
            fastcgi_pass 127.0.0.1:{app_port};
        }}
    }}
}}
"""

FASTCGI_PARAMS = """
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param DOCUMENT_ROOT $document_root;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_SCHEME $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param REDIRECT_STATUS 200;"""


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data


def run_nginx(variant, ports, duration, errlog, conns=32):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    wrk = shutil.which("wrk")
    if not wrk or not os.path.exists(nginx):
        return None
    app_port, port = ports.get(), ports.get()
    tmp = tempfile.mkdtemp(prefix="fcgi-nginx-")
    params = ("include /etc/nginx/fastcgi.conf;" if os.path.exists("/etc/nginx/fastcgi.conf")
              else FASTCGI_PARAMS)
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port, app_port=app_port, params=params))
    scn = SCENARIOS[2]  # hello 32 threads / canned -t 32
    app = start_server(server_argv(scn, variant, app_port), variant, False, errlog)
    ngx = None
    try:
        wait_listening(app_port, app)
        ngx = subprocess.Popen([nginx, "-p", tmp, "-c", os.path.join(tmp, "nginx.conf")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog)
        wait_listening(port, ngx)
        libs, lib_ok = check_lib(variant, app.pid)
        body = http_get(port, "/hello?name=bench")
        if b" 200 " not in body.split(b"\r\n", 1)[0] or b"Hello, world!" not in body:
            raise RuntimeError(f"nginx answered {body[:200]!r}")
        cpu0 = proc_cpu(app.pid)
        r = subprocess.run([wrk, "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency",
                            f"http://127.0.0.1:{port}/hello?name=bench"],
                           capture_output=True, text=True, timeout=duration + 60)
        cpu1 = proc_cpu(app.pid)
        out = r.stdout
        if "Requests/sec" not in out:
            raise RuntimeError(f"wrk failed: {r.stdout} {r.stderr}")
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        reqs = int(re.search(r"(\d+) requests in", out).group(1))

        def lat(pct):
            m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
            if not m:
                return 0.0
            return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]

        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        sockerr = re.search(r"Socket errors:.*", out)
        return {"rps": rps, "p50": lat(50), "p99": lat(99), "lib_ok": lib_ok, "libs": libs,
                "errors": int(non2xx.group(1)) if non2xx else 0,
                "socket_errors": sockerr.group(0) if sockerr else "",
                "app_cpu_us_per_req": (cpu1 - cpu0) * 1e6 / reqs if reqs else 0.0,
                "rss_kib": vm_hwm_kib(app.pid)}
    finally:
        if ngx is not None:
            ngx.send_signal(signal.SIGQUIT)
            try:
                ngx.wait(timeout=5)
            except subprocess.TimeoutExpired:
                stop(ngx)
        stop(app)
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ report

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}"


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu,
        "ncpu": os.cpu_count(),
        "commit": commit,
    }


def by_round(ours, orig):
    """ours/original of the runs of the same round (they ran back to back)."""
    return " ".join(ratio(a["rps"], b["rps"]) for a, b in zip(ours, orig))


def paired(ours, orig):
    """The median over rounds of ours/original within each round: the two
    runs of a round ran back to back, so this ratio is less exposed to the
    machine's drift between rounds than the ratio of the two medians."""
    return med([a["rps"] / b["rps"] for a, b in zip(ours, orig) if b["rps"]])


def best_limit(r):
    """The limit run set with the higher median throughput: (name, runs)."""
    cands = [(v, r.get(v) or []) for v in ("limit", "limit-epoll")]
    cands = [(v, runs) for v, runs in cands if runs]
    if not cands:  # e.g. the only limit could not serve the scenario
        return "limit", []
    return max(cands, key=lambda c: med([x["rps"] for x in c[1]]))


def targets(scns, results, sysc, ngx):
    """Issue #5's targets, each checked on this run's medians."""
    def verdict(ok):
        return "met" if ok else "**not met**"

    # Scenarios with fewer threads than connections have their own goal
    # (issue #12, goals_fewer_threads).
    keys = {s.key for s in scns if not s.fewer_threads}
    scns = [s for s in scns if s.key in keys]
    sysc = {k: v for k, v in sysc.items() if k in keys}
    if not scns and not ngx:
        return ["## Targets (issue #5)", "", "No scenario of issue #5 in this run."]
    small = [s for s in scns if not s.big]
    big = [s for s in scns if s.big]
    ratios = {}
    for s in scns:
        ratios[s.key] = paired(results[s.key]["ours"], results[s.key]["original"])
    if ngx:
        ratios["nginx-wrk"] = paired(ngx["ours"], ngx["original"])
    L = ["## Targets (issue #5), checked on these medians", "",
         "ours/original here is the median of the per-round ratios (the **ours/original** "
         "column above).", ""]
    cells = []
    ok_all = True
    for s in small:
        r = results[s.key]
        ours = med([x["rps"] for x in r["ours"]])
        lim = med([x["rps"] for x in best_limit(r)[1]])
        cell = f"`{s.key}` {ours / lim:.2f}"
        if r.get("limit-epoll") and r.get("limit"):
            thr = med([x["rps"] for x in r["limit"]])
            cell += f" (threaded limit: {ours / thr:.2f})"
        ok_all &= ours / lim >= 0.95
        cells.append(cell)
    L.append(f"* Every small-request scenario within 5% of the limit: {verdict(ok_all)} — "
             + ", ".join(cells) + ".")
    if big:
        ok = all(ratios[s.key] >= 2.0 for s in big)
        L.append(f"* At least 2x the original on the 1 MiB scenarios: {verdict(ok)} — "
                 + ", ".join(f"`{s.key}` {ratios[s.key]:.2f}" for s in big) + ".")
    if ratios:
        gm = math.exp(sum(math.log(max(v, 1e-9)) for v in ratios.values()) / len(ratios))
        L.append(f"* Geometric mean of ours/original at least 1.3: {verdict(gm >= 1.3)} — "
                 f"{gm:.2f} over {len(ratios)} scenarios.")
        low = {k: v for k, v in ratios.items() if v < 1.0}
        L.append(f"* No scenario below the original: {verdict(not low)}"
                 + (" — " + ", ".join(f"`{k}` {v:.2f}" for k, v in low.items()) if low else "")
                 + ".")
    if sysc:
        more = []
        for key, sc in sysc.items():
            # Compared at the precision shown (two decimals).
            if (sc.get("ours") and sc.get("original")
                    and round(sc["ours"]["total"], 2) > round(sc["original"]["total"], 2)):
                more.append(f"`{key}` {sc['ours']['total']:.2f} vs {sc['original']['total']:.2f}")
        fewer = [f"`{k}` {sc['ours']['total']:.1f} vs {sc['original']['total']:.1f}"
                 for k, sc in sysc.items() if sc.get("ours") and sc.get("original")
                 and sc["ours"]["total"] < sc["original"]["total"] - 0.5]
        L.append(f"* System calls per request never more than the original's: {verdict(not more)}"
                 + (" — " + ", ".join(more) if more else "")
                 + (f"; fewer in {', '.join(fewer)}" if fewer else "") + ".")
    over = []
    worst = 0.0
    for s in scns:
        r = results[s.key]
        d = med([x["rss_kib"] for x in r["ours"]]) - med([x["rss_kib"] for x in r["original"]])
        worst = max(worst, d)
        if d > 1024:
            over.append(f"`{s.key}` +{d:,.0f} KiB")
    L.append(f"* Peak RSS at most the original's + 1 MiB: {verdict(not over)} — largest "
             f"difference +{worst:,.0f} KiB" + (" (" + ", ".join(over) + ")" if over else "") + ".")
    return L


def goals_fewer_threads(scns, results, sysc, full):
    """Issue #12's goal for the scenarios with fewer threads than
    connections: ours at least 0.8x the epoll limit's req/s, and at most one
    system call per request more than it."""
    fewer = [s for s in scns if s.fewer_threads]
    if not fewer:
        return []

    def verdict(ok):
        return "met" if ok else "**not met**"

    def why(key, v):
        return next(x["reason"] for x in full[key][v] if x.get("cannot_serve"))

    L = ["## Fewer threads than connections (issue #12), checked on these medians", "",
         "Goal: ours at least 0.8x the epoll limit (`canned -E 2`) in req/s, and at most one "
         "system call per request more than it.", ""]
    for s in fewer:
        r = results[s.key]
        lim = med([x["rps"] for x in r["limit-epoll"]])
        sc = sysc.get(s.key) or {}
        if unable(full[s.key]["ours"]):
            L.append(f"* `{s.key}`: **not met** — ours cannot serve it ({why(s.key, 'ours')}).")
        else:
            ours = med([x["rps"] for x in r["ours"]])
            rel = ours / lim if ours is not None and lim else None
            L.append(f"* `{s.key}` req/s at least 0.8x the epoll limit: "
                     f"{verdict(rel is not None and rel >= 0.8)} — ours {fmt(ours)}, limit "
                     f"{fmt(lim)} ({'-' if rel is None else f'{rel:.2f}'}).")
            o, l = sc.get("ours"), sc.get("limit-epoll")
            if o and l:
                L.append(f"* `{s.key}` system calls per request at most the epoll limit's + 1: "
                         f"{verdict(round(o['total'], 2) <= round(l['total'], 2) + 1)} — ours "
                         f"{o['total']:.2f}, limit {l['total']:.2f}.")
            else:
                L.append(f"* `{s.key}` system calls per request at most the epoll limit's + 1: "
                         "not measured (--no-strace, or a strace run failed).")
        for v in ("original",) + (("limit",) if s.canned is not None else ()):
            if unable(full[s.key][v]):
                L.append(f"* `{s.key}` {v}: cannot serve it ({why(s.key, v)}).")
    return L


def report(args, scns, results, sysc, ngx, info):
    # A variant found unable to serve a scenario (run_variant) has no
    # figures: its cells say so; `full` keeps its runs for the Checks.
    full = results
    cannot = {(k, v) for k, rv in full.items() for v, runs in rv.items() if unable(runs)}
    results = {k: {v: ([] if (k, v) in cannot else runs) for v, runs in rv.items()}
               for k, rv in full.items()}

    def cell(key, v, text):
        return "cannot serve" if (key, v) in cannot else text

    L = []
    L.append("# fcgi benchmark: ours vs Debian's libfcgi 2.4.2 vs the no-library limit")
    L.append("")
    L.append(f"{info['date']} on `{info['host']}`: {info['cpu']}, **{info['ncpu']} CPUs**, "
             f"Linux {info['kernel']}; commit `{info['commit']}`"
             f"{' (plus uncommitted changes in src/)' if info.get('lib_dirty') else ''}, "
             f"our libfcgi.so sha256 `{info.get('lib_sha', '?')}`. "
             f"{args.rounds} rounds x {args.duration:g} s per scenario and variant; medians. "
             "Original and ours alternate their order every round; the same app binaries run "
             "on both libraries (built once against /usr/include; ours via LD_LIBRARY_PATH; "
             "the library really mapped is checked in /proc/PID/maps). "
             "limit = bench/canned/canned.c, a FastCGI server without a library (one read + "
             "one write per request), threaded like the app (`-t`) or, for 32 connections, "
             "also with epoll (`-E 2`): the better of the two is the limit (marked e). "
             "All traffic is TCP over 127.0.0.1.")
    L.append("")
    L.append(f"Before each run the script waited for other processes to leave the CPUs idle "
             f"({info.get('waited', 0):.0f} s waited in all); a run during which other processes "
             f"used more than {args.max_foreign:g} CPUs was repeated "
             f"({info.get('retried', 0)} repeats).")
    L.append("")
    L.append("## Throughput")
    L.append("")
    L.append("ours/original is the median over rounds of the ratio of the two runs of a "
             "round (they ran back to back); the ratio of the two medians is shown beside it.")
    L.append("")
    L.append("| scenario | limit req/s | original req/s | ours req/s | **ours/original** | "
             "ratio of medians | ours/original by round | ours/limit | original/limit | "
             "ours MB/s in+out |")
    L.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for s in scns:
        r = results[s.key]
        lname, lruns = best_limit(r)
        lim = med([x["rps"] for x in lruns])
        orig, ours = (med([x["rps"] for x in r[v]]) for v in ("original", "ours"))
        mb = med([x["mb_in_s"] + x["mb_out_s"] for x in r["ours"]])
        mark = " e" if lname == "limit-epoll" else ""
        pr = paired(r['ours'], r['original'])
        L.append(f"| `{s.key}`: {s.title} | {fmt(lim)}{mark} | "
                 f"{cell(s.key, 'original', fmt(orig))} | {cell(s.key, 'ours', fmt(ours))} | "
                 f"**{'-' if pr is None else f'{pr:.2f}'}** | {ratio(ours, orig)} | "
                 f"{by_round(r['ours'], r['original'])} | "
                 f"{ratio(ours, lim)} | {ratio(orig, lim)} | {fmt(mb, 1)} |")
    if ngx:
        lim, orig, ours = (med([x["rps"] for x in ngx[v]]) for v in VARIANTS)
        L.append(f"| `nginx-wrk`: wrk -c32 -> nginx (1 worker) -> hello 32 threads, "
                 f"new FastCGI conn. per request | {fmt(lim)} | {fmt(orig)} | {fmt(ours)} | "
                 f"**{paired(ngx['ours'], ngx['original']):.2f}** | {ratio(ours, orig)} | "
                 f"{by_round(ngx['ours'], ngx['original'])} | "
                 f"{ratio(ours, lim)} | {ratio(orig, lim)} | - |")
    L.append("")
    L.extend(targets(scns, results, sysc, ngx))
    goals = goals_fewer_threads(scns, results, sysc, full)
    if goals:
        L.append("")
        L.extend(goals)
    L.append("")
    L.append("## Latency (median over rounds of each run's p50 and p99, microseconds)")
    L.append("")
    L.append("| scenario | limit p50 / p99 | original p50 / p99 | ours p50 / p99 | "
             "ours/original p50 | ours/original p99 |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for s in scns:
        r = results[s.key]
        sets = {"limit": best_limit(r)[1], "original": r["original"], "ours": r["ours"]}
        p = {v: (med([x["lat_us"]["p50"] for x in sets[v]]), med([x["lat_us"]["p99"] for x in sets[v]]))
             for v in VARIANTS}
        L.append(f"| `{s.key}` | " + " | ".join(
                     cell(s.key, v, f"{fmt(p[v][0], 1)} / {fmt(p[v][1], 1)}") for v in VARIANTS)
                 + f" | {ratio(p['ours'][0], p['original'][0])} | {ratio(p['ours'][1], p['original'][1])} |")
    if ngx:
        p = {v: (med([x["p50"] for x in ngx[v]]), med([x["p99"] for x in ngx[v]])) for v in VARIANTS}
        L.append("| `nginx-wrk` | " + " | ".join(f"{fmt(p[v][0], 1)} / {fmt(p[v][1], 1)}" for v in VARIANTS)
                 + f" | {ratio(p['ours'][0], p['original'][0])} | {ratio(p['ours'][1], p['original'][1])} |")
    L.append("")
    L.append("## Cost per request")
    L.append("")
    L.append("* app CPU: utime+stime of the server process during the run / requests; it includes "
             "the kernel work of its system calls (on loopback that includes part of the peer's "
             "TCP receive path). Less sensitive to scheduling luck than req/s.")
    L.append("* client CPU: fcgi-load's own CPU per request (user + sys) in the limit run; its "
             "user-space part is shown separately (the rest is kernel TCP work any client pays).")
    L.append("* syscalls: `strace -c -f` of the server, a run of N requests minus a run of 0 "
             "requests (start-up, thread creation and the reference request cancel out), / N.")
    L.append("* app user-space: utime alone (the library's and the app's own code; the kernel's "
             "utime/stime split is sampled per tick, so small values are approximate).")
    L.append("* peak RSS: VmHWM of the server process.")
    L.append("")
    L.append("| scenario | app CPU us/req limit / orig / ours | **ours/orig CPU** | app user-space "
             "us/req limit / orig / ours | client CPU us/req (user) | syscalls/req limit / orig / ours "
             "| peak RSS KiB orig / ours |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for s in scns:
        r = results[s.key]
        lruns = best_limit(r)[1]
        cpu = {"limit": med([x["app_cpu_us_per_req"] for x in lruns])}
        for v in ("original", "ours"):
            cpu[v] = med([x["app_cpu_us_per_req"] for x in r[v]])
        usr = {"limit": med([x["app_user_us_per_req"] for x in lruns])}
        for v in ("original", "ours"):
            usr[v] = med([x["app_user_us_per_req"] for x in r[v]])
        client = med([x["client_cpu_us_per_req"] for x in lruns])
        cuser = med([x["client_cpu_user_s"] * 1e6 / x["ok"] for x in lruns if x["ok"]])
        rss = {v: med([x["rss_kib"] for x in r[v]]) for v in ("original", "ours")}
        sc = sysc.get(s.key) or {}
        scs = " / ".join(fmt(sc_get(sc, v)["total"], 1) if sc_get(sc, v)
                         else cell(s.key, v, "-") for v in VARIANTS)
        L.append(f"| `{s.key}` | {fmt(cpu['limit'], 1)} / "
                 f"{cell(s.key, 'original', fmt(cpu['original'], 1))} / "
                 f"{cell(s.key, 'ours', fmt(cpu['ours'], 1))} | "
                 f"**{ratio(cpu['ours'], cpu['original'])}** | "
                 f"{fmt(usr['limit'], 2)} / {fmt(usr['original'], 2)} / {fmt(usr['ours'], 2)} | "
                 f"{fmt(client, 1)} ({fmt(cuser, 2)}) | {scs} | "
                 f"{cell(s.key, 'original', fmt(rss['original']))} / "
                 f"{cell(s.key, 'ours', fmt(rss['ours']))} |")
    if ngx:
        cpu = {v: med([x["app_cpu_us_per_req"] for x in ngx[v]]) for v in VARIANTS}
        rss = {v: med([x["rss_kib"] for x in ngx[v]]) for v in ("original", "ours")}
        L.append(f"| `nginx-wrk` | {fmt(cpu['limit'], 1)} / {fmt(cpu['original'], 1)} / "
                 f"{fmt(cpu['ours'], 1)} | **{ratio(cpu['ours'], cpu['original'])}** | - | - | - | "
                 f"{fmt(rss['original'])} / {fmt(rss['ours'])} |")
    if sysc:
        L.append("")
        L.append("## System calls per request (server side, strace -c -f)")
        L.append("")
        L.append("| scenario | limit (canned -t) | original | ours |")
        L.append("|---|---|---|---|")
        for s in scns:
            sc = sysc.get(s.key)
            if not sc:
                continue
            cells = []
            for v in VARIANTS:
                d = sc_get(sc, v)
                if not d:
                    cells.append(cell(s.key, v, "-"))
                    continue
                parts = sorted(d["per"].items(), key=lambda kv: -kv[1])
                cells.append(", ".join(f"{k} {n:.2f}" for k, n in parts if n >= 0.01))
            L.append(f"| `{s.key}` | " + " | ".join(cells) + " |")
    L.append("")
    L.append("## Notes")
    L.append("")
    L.append("* `hello-1ka` (unpinned) is dominated by the cross-CPU wake-up latency of this VM; "
             "`hello-1ka-pin` (app and client on CPU 0) shows the CPU cost of a request.")
    L.append("* The canned echo of `echo-1m` reads the whole MiB before it answers, the echo app "
             "streams: there the limit is not an upper bound.")
    for s in scns:
        r = results[s.key]
        if s.fewer_threads and r.get("limit-epoll"):
            L.append(f"* `{s.key}`: fewer app threads than connections; the limit is canned's "
                     f"epoll mode (`canned -E 2`) alone, {fmt(med([x['rps'] for x in r['limit-epoll']]))} "
                     f"req/s at {fmt(med([x['app_cpu_us_per_req'] for x in r['limit-epoll']]), 1)} "
                     "us CPU/req (a thread per connection, as `canned -t` or libfcgi, answers only "
                     "as many connections as it has threads). A variant that leaves connections "
                     "unanswered is run once and reported as \"cannot serve\".")
        elif r.get("limit-epoll") and r.get("limit"):
            L.append(f"* `{s.key}`: limit with threads (`canned -t 32`, the app's architecture) "
                     f"{fmt(med([x['rps'] for x in r['limit']]))} req/s at "
                     f"{fmt(med([x['app_cpu_us_per_req'] for x in r['limit']]), 1)} us CPU/req; "
                     f"with epoll (`canned -E 2`) {fmt(med([x['rps'] for x in r['limit-epoll']]))} req/s "
                     f"at {fmt(med([x['app_cpu_us_per_req'] for x in r['limit-epoll']]), 1)} us CPU/req.")
    L.append("* MB/s counts all FastCGI bytes received and sent by the client.")
    L.append("* Method and scenarios: bench/README.md.")
    L.append("")
    L.append("## Checks")
    L.append("")
    problems = []
    total_runs = 0
    for s in scns:
        for v in ALL_VARIANTS:
            for x in results[s.key][v]:
                total_runs += 1
                if not x["lib_ok"]:
                    problems.append(f"`{s.key}` {v}: loaded {x['libs']} (expected {expected_lib(v)})")
                if x["errors"] or x["unserved_conns"]:
                    problems.append(f"`{s.key}` {v}: {x['errors']} errors, {x['unserved_conns']} "
                                    f"connections never served ({x.get('first_error')})")
                if x.get("disturbed"):
                    problems.append(f"`{s.key}` {v}: other processes used {x['foreign_cpus']:.2f} "
                                    "CPUs during the run (kept after the retries)")
    unable_lines = []
    for key, v in sorted(cannot):
        why = next(x["reason"] for x in full[key][v] if x.get("cannot_serve"))
        if v == "ours":
            problems.append(f"`{key}` ours: cannot serve it ({why})")
        else:
            unable_lines.append(f"`{key}` {v}: cannot serve it ({why})")
    if ngx:
        for v in VARIANTS:
            for x in ngx[v]:
                total_runs += 1
                if not x["lib_ok"]:
                    problems.append(f"`nginx-wrk` {v}: loaded {x['libs']}")
                if x["errors"] or x["socket_errors"]:
                    problems.append(f"`nginx-wrk` {v}: {x['errors']} non-2xx, {x['socket_errors']}")
    for key, sc in sysc.items():
        for v, d in sc.items():
            if d and (not d["lib_ok"] or d["errors"]):
                problems.append(f"`{key}` strace run {v}: lib_ok={d['lib_ok']} errors={d['errors']}")
    if problems:
        L.append(f"**{len(problems)} problem(s)** in {total_runs} runs:")
        L.append("")
        L.extend("* " + p for p in problems)
    else:
        L.append(f"All {total_runs} runs: every response verified (request id, END_REQUEST "
                 "status, stdout byte for byte against the first response), no connection left "
                 "unserved, and each run loaded the expected library "
                 f"(original: `{os.path.realpath(ORIG_LIB)}`, ours: "
                 f"`{expected_lib('ours')}`, a copy of target/release/libfcgi.so taken at the "
                 "start; limit: none).")
    if unable_lines:
        L.append("")
        L.append("Not counted above, as expected for their architecture (one run each):")
        L.append("")
        L.extend("* " + u for u in unable_lines)
    L.append("")
    return "\n".join(L)


PY_BENCH = os.path.join(ROOT, "bindings", "python", "bench", "bench.py")


def run_python_bench(args):
    """Runs the Python package's WSGI benchmark (issue #7) and returns its
    markdown section: libfcgi.wsgi against flup and fcgisgi (WSGI and ASGI
    modes) under fcgi-load, the repository's C hello as the reference row."""
    L = ["", "## Python: WSGI hello on libfcgi.wsgi vs flup vs fcgisgi", ""]
    L.append(f"`bindings/python/bench/bench.py --rounds {args.rounds} --duration "
             f"{args.python_duration:g}`, run by this script after the C scenarios "
             "(its own virtual environment with flup and fcgisgi from PyPI; our package "
             "with the library built here). Method: bindings/python/README.md#performance.")
    L.append("")
    with tempfile.TemporaryDirectory() as tmp:
        md = os.path.join(tmp, "python.md")
        cmd = [sys.executable, PY_BENCH, "--rounds", str(args.rounds), "--duration",
               str(args.python_duration), "--markdown-out", md]
        if args.no_build:
            cmd.append("--no-build")
        log("python benchmark: " + " ".join(cmd[1:]))
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0 or not os.path.exists(md):
            log(r.stdout[-3000:])
            L.append(f"**The Python benchmark failed** (exit status {r.returncode}); its last "
                     "lines:")
            L.append("")
            L.append("```")
            L.extend(r.stdout.strip().splitlines()[-15:])
            L.append("```")
            return "\n".join(L) + "\n"
        with open(md) as f:
            L.append(f.read().strip())
    return "\n".join(L) + "\n"


def rewrite_report(args):
    """The report of a finished run, from its --json-out file."""
    with open(args.report_from) as f:
        raw = json.load(f)
    results = raw["results"]
    scns = [s for s in SCENARIOS if s.key in results]
    for key in ("rounds", "duration", "max_foreign"):
        if key in raw:
            setattr(args, key, raw[key])
        else:  # files written before these were saved: count the rounds
            args.rounds = max(len(v) for v in results[scns[0].key].values())
    text = report(args, scns, results, raw.get("syscalls") or {}, raw.get("nginx"), raw["info"])
    if raw.get("python_md"):
        text += raw["python_md"]
    if raw.get("whole_run_s"):
        text += f"\nWhole run: {raw['whole_run_s']:.0f} s.\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    log(f"written to {args.out}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    ap.add_argument("--only", help="comma-separated scenario keys (see --list)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--out", default=os.path.join(BENCH, "results", "latest.md"))
    ap.add_argument("--json-out", help="also write every raw result here")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="before each run, wait up to this many seconds for other processes "
                         "to leave the CPUs idle")
    ap.add_argument("--max-foreign", type=float, default=0.2,
                    help="a run during which other processes used more CPUs than this is "
                         "repeated (see --retries)")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--no-python", action="store_true",
                    help="skip the Python WSGI benchmark (bindings/python/bench/bench.py)")
    ap.add_argument("--python-duration", type=float, default=3.0,
                    help="seconds per cell of the Python benchmark")
    ap.add_argument("--report-from", metavar="JSON",
                    help="only write the report again from the raw results of a run "
                         "(--json-out), e.g. after a change to the report itself")
    args = ap.parse_args()
    if args.report_from:
        return rewrite_report(args)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.key:18} {s.title}")
        return 0
    scns = SCENARIOS
    if args.only:
        keys = args.only.split(",")
        scns = [s for s in SCENARIOS if s.key in keys]
    if not args.no_build:
        build()
    lib_sha, lib_dirty = snapshot_ours()
    for v in ("original", "ours"):
        if not os.path.exists(expected_lib(v)):
            log(f"missing library for {v}: {expected_lib(v)}")
            return 1
    t_start = time.time()
    info = machine_info()
    info["lib_sha"], info["lib_dirty"] = lib_sha, lib_dirty
    ports = Ports()
    errlog = open(os.path.join(BUILD, "servers.log"), "w")
    results = {s.key: {v: [] for v in ALL_VARIANTS} for s in scns}
    ngx = {v: [] for v in VARIANTS} if not args.no_nginx and shutil.which("wrk") else None
    waited = {"s": 0.0}
    retried = {"n": 0}
    for rnd in range(args.rounds):
        order = ["limit", "original", "ours"] if rnd % 2 == 0 else ["limit", "ours", "original"]
        for s in scns:
            for v in variants_of(s, order):
                if unable(results[s.key][v]):
                    continue  # found unable in an earlier round: once is enough
                for attempt in range(args.retries + 1):
                    waited["s"] += wait_quiet(args.quiet_wait)
                    res = run_variant(s, v, ports, args.duration, errlog)
                    if res.get("cannot_serve"):
                        log(f"round {rnd + 1} {s.key:17} {v:8} CANNOT SERVE: {res['reason']}")
                        disturbed = False
                        break
                    disturbed = res["foreign_cpus"] > args.max_foreign
                    log(f"round {rnd + 1} {s.key:17} {v:8} {res['rps']:>10,.0f} req/s  "
                        f"p50 {res['lat_us']['p50']:8.1f} us  app {res['app_cpu_us_per_req']:6.1f} us/req  "
                        f"client {res['client_cpu_us_per_req']:5.1f} us/req  err {res['errors']}  "
                        f"other load {res['foreign_cpus']:.2f}"
                        f"{'  DISTURBED' if disturbed else ''}"
                        f"{'' if res['lib_ok'] else '  WRONG LIBRARY ' + str(res['libs'])}")
                    if not disturbed:
                        break
                    retried["n"] += 1
                res["disturbed"] = disturbed
                results[s.key][v].append(res)
        if ngx is not None:
            for v in order:
                waited["s"] += wait_quiet(args.quiet_wait)
                try:
                    res = run_nginx(v, ports, args.duration, errlog)
                except Exception as e:  # keep the rest of the report
                    log(f"nginx run {v} failed: {e}")
                    res = None
                if res is None:
                    ngx = None
                    break
                ngx[v].append(res)
                log(f"round {rnd + 1} {'nginx-wrk':17} {v:8} {res['rps']:>10,.0f} req/s  "
                    f"p50 {res['p50']:8.1f} us  app {res['app_cpu_us_per_req']:6.1f} us/req")
    sysc = {}
    if not args.no_strace and shutil.which("strace"):
        for s in scns:
            if not s.strace_n:
                continue
            sysc[s.key] = {}
            for v in strace_variants(s):
                if unable(results[s.key][v]):
                    log(f"strace {s.key:17} {v:8} skipped: cannot serve")
                    sysc[s.key][v] = None
                    continue
                waited["s"] += wait_quiet(args.quiet_wait)
                try:
                    d = syscalls_per_request(s, v, ports, errlog)
                except Exception as e:  # keep the rest of the report
                    log(f"strace {s.key} {v} failed: {e}")
                    d = None
                sysc[s.key][v] = d
                if d:
                    log(f"strace {s.key:17} {v:8} {d['total']:6.2f} syscalls/req")
    info["waited"] = waited["s"]
    info["retried"] = retried["n"]
    python_md = None if args.no_python else run_python_bench(args)
    text = report(args, scns, results, sysc, ngx, info)
    if python_md is not None:
        text += python_md
    text += f"\nWhole run: {time.time() - t_start:.0f} s.\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"info": info, "results": results, "syscalls": sysc, "nginx": ngx,
                       "python_md": python_md, "rounds": args.rounds, "duration": args.duration,
                       "max_foreign": args.max_foreign, "whole_run_s": time.time() - t_start},
                      f, indent=1)
    print(text)
    log(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
