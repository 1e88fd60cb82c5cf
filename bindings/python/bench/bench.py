#!/usr/bin/env python3
"""Benchmark: the WSGI hello app on libfcgi.wsgi against flup's WSGIServer
and fcgisgi (in its WSGI mode and, with the same app written for ASGI, in
its ASGI mode), and the ASGI hello on libfcgi.asgi against fcgisgi's ASGI
mode, under the same FastCGI load.

    python bindings/python/bench/bench.py                # full run, ~7 minutes
    python bindings/python/bench/bench.py --duration 2 --rounds 1
    python bindings/python/bench/bench.py --only libfcgi fcgisgi-asgi
    python bindings/python/bench/bench.py --markdown-out /tmp/python-bench.md
    python bindings/python/bench/bench.py --update-readme
    python bindings/python/bench/bench.py --only libfcgi-asgi fcgisgi-asgi libfcgi \\
        --update-readme-asgi --json /tmp/run.json
    python bindings/python/bench/bench.py --from-json /tmp/run.json --update-readme-asgi

What it does:

1. Makes a virtual environment (bench/.venv) and installs into it, with
   pip: flup, fcgisgi, and this package from the repository (which bundles
   the library, building it with cargo when needed). --no-venv uses the
   running interpreter instead (installing flup and fcgisgi if missing).
2. Picks the load generator: the repository's fcgi-load (a Rust FastCGI
   load generator, bench/ in the repository; built with cargo if needed),
   else loadgen.py beside this script (pure Python).
3. For each round, starts each server in turn (the order rotates) on a Unix
   socket (--tcp: 127.0.0.1) with the same hello app and runs four loads:
   one kept-alive connection with the server and the load generator on one
   CPU; the same free to use every CPU; 8 kept-alive connections; 8
   connections with a new connection per request. libfcgi.wsgi and fcgisgi
   in WSGI mode get 8 worker threads (--threads); flup makes a thread per
   connection; fcgisgi in ASGI mode runs on one asyncio event loop (below).

   Why the single connection is measured twice: one request at a time is
   a ping-pong, and on a virtual machine whose CPUs wake each other slowly
   the time of a cross-CPU wake-up (tens of microseconds here) dominates:
   even a C hello on libfcgi stays near 20,000 req/s there (see
   bench/results/latest.md, hello-1ka) whatever the server does. On one
   CPU the same ping-pong costs only what the server and the client spend
   per request, which is what differs between servers.
4. Prints a markdown table of medians (requests/s, p99 latency) with the
   ratios and the goals (at least 2x flup's requests/s; ahead of fcgisgi in
   every column in both its WSGI and its ASGI mode), followed by notes.
   --markdown-out PATH writes exactly that block to PATH (for
   bench/compare.py to embed); --update-readme puts it into
   bindings/python/README.md (only after a run of every server).

The servers (--only takes these names):

  libfcgi       libfcgi.wsgi.WSGIServer(app, bind=..., threads=8)
  libfcgi-asgi  libfcgi.asgi.ASGIServer(app, bind=...) (its defaults: 4 I/O
                threads kept for new requests, one event loop), the ASGI
                hello (the same app as fcgisgi-asgi); its table (against
                fcgisgi's ASGI mode, goal 1.5x) is printed after the main
                one, and --update-readme-asgi writes it to the README
  flup          flup.server.fcgi.WSGIServer(app, bindAddress=...).run()
  fcgisgi       fcgisgi.run_wsgi_server(app, bind_address=..., max_workers=8)
                (WSGI mode: asyncio reads the sockets, the app runs in a
                ThreadPoolExecutor of max_workers threads)
  fcgisgi-asgi  fcgisgi.run_asgi_server(app, bind_address=...)
                (ASGI mode, the same hello written as an ASGI app)
  c-hello       the reference row (bench/apps/hello.c, skipped with
                --no-reference)

fcgisgi's ASGI configuration. run_asgi_server(app, bind_address=None,
**kwargs) builds Server(app, is_asgi=True) and awaits Server.run(): a
loop.create_unix_server (or create_server for TCP) whose protocol feeds
each connection's bytes to a sans-I/O FastCGI parser and starts one
asyncio task per request, all on the single event loop of the process.
Its only options are startup_timeout and shutdown_timeout (the ASGI
lifespan, 55 s each by default) and force_script_name; max_workers is
read by the WSGI mode's thread pool only, so the ASGI mode has no worker
or concurrency setting at all. The fairest configuration is therefore the
one it has: one process, one event loop, the stdlib asyncio loop that
asyncio.run() creates (the WSGI-mode row uses the same), no thread pool
since an async app never blocks and more threads would only contend for
the GIL. Not used, because neither is part of fcgisgi nor given to the
other rows: uvloop (a third-party event loop, not a dependency of
fcgisgi) and several processes sharing an inherited listening socket on
fd 0 (a process manager's job, which would serve libfcgi just as well;
every row here is one Python process). The ASGI app answers the lifespan
protocol (startup.complete, shutdown.complete): fcgisgi listens only
after startup completes, and takes an app that raises on the lifespan
scope for a failed startup (requests answered FCGI_OVERLOADED, then the
server stops).

The ASGI hello is the same page as a plain ASGI app: status 200,
"Content-Type: text/plain", the 13-byte body, and "Content-Length: 13"
sent by the app itself (ASGI servers add none; ASGI frameworks send it).
fcgisgi writes its status line from the ASGI integer ("Status: 200", no
reason phrase), and its WSGI mode adds no Content-Length to the WSGI
hello, so the stdout sizes differ by a few bytes between servers; the
notes under the table give each server's size as fcgi-load measured it.
fcgi-load checks every response against the first one of the same server.

Nagle's algorithm: over a Unix socket there is none. Over TCP (--tcp)
libfcgi sets TCP_NODELAY on accepted connections, asyncio (fcgisgi) does
too, and flup does not, so the flup runner here sets it (flup sends each
record with its own send(), which would otherwise wait for delayed ACKs);
the load generators send each request with one write.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PKG = BENCH.parent
REPO = PKG.parent.parent
VENV = BENCH / ".venv"
README = PKG / "README.md"

HELLO = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]
"""

# The same hello for fcgisgi's ASGI mode (ASGI servers add no
# Content-Length: the app sends it, as ASGI frameworks do).
HELLO_ASGI = """
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"Content-Type", b"text/plain"), (b"Content-Length", b"13")]})
        await send({"type": "http.response.body", "body": b"Hello, world!"})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
"""

RUNNERS = {
    "libfcgi": """
import sys
from libfcgi.wsgi import WSGIServer
from hello import app
bind, threads = sys.argv[1], int(sys.argv[2])
try:
    WSGIServer(app, bind=bind, threads=threads).serve_forever()
except KeyboardInterrupt:
    pass
""",
    "libfcgi-asgi": """
import sys
from libfcgi.asgi import ASGIServer
from hello_asgi import app
bind = sys.argv[1]  # sys.argv[2] (--threads) is for the WSGI servers: the defaults here
try:
    ASGIServer(app, bind=bind).serve_forever()
except KeyboardInterrupt:
    pass
""",
    "flup": """
import socket, sys
from flup.server import fcgi_base
from flup.server.fcgi import WSGIServer
from hello import app

_init = fcgi_base.Connection.__init__
def _nodelay_init(self, sock, *args, **kw):
    # flup writes each record with its own send(): without TCP_NODELAY the
    # second small write of a response waits for a delayed ACK (Nagle).
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _init(self, sock, *args, **kw)
fcgi_base.Connection.__init__ = _nodelay_init

bind = sys.argv[1]
if ":" in bind and not bind.startswith("/"):
    host, port = bind.rsplit(":", 1)
    bind = (host, int(port))
WSGIServer(app, bindAddress=bind).run()
""",
    "fcgisgi": """
import asyncio, sys
from fcgisgi import run_wsgi_server
from hello import app
bind, threads = sys.argv[1], int(sys.argv[2])
if ":" in bind and not bind.startswith("/"):
    host, port = bind.rsplit(":", 1)
    bind = (host, int(port))
asyncio.run(run_wsgi_server(app, bind_address=bind, max_workers=threads))
""",
    "fcgisgi-asgi": """
import asyncio, sys
from fcgisgi import run_asgi_server
from hello_asgi import app
bind = sys.argv[1]  # sys.argv[2] (threads) is unused: the ASGI mode has no worker setting
if ":" in bind and not bind.startswith("/"):
    host, port = bind.rsplit(":", 1)
    bind = (host, int(port))
asyncio.run(run_asgi_server(app, bind_address=bind))
""",
}

#: Every server, in table order (the reference C hello is added separately).
SERVERS = ["libfcgi", "libfcgi-asgi", "flup", "fcgisgi", "fcgisgi-asgi"]

# (title, connections, keep-alive, pinned): pinned runs the server and the
# load generator on CPU 0 only (see the module docstring).
COLUMNS = [
    ("1 conn, keep-alive, one CPU", 1, True, True),
    ("1 conn, keep-alive", 1, True, False),
    ("8 conns, keep-alive", 8, True, False),
    ("8 conns, no keep-alive", 8, False, False),
]


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Moves every thread of a process (threads it creates later inherit)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tasks = [str(pid)]
    for tid in tasks:
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- environment ---------------------------------------------------------------


#: Added to PYTHONPATH of every child (--no-venv without the package installed).
EXTRA_PATH: list[str] = []


def venv_python(no_venv: bool) -> str:
    if no_venv:
        py = sys.executable
        if subprocess.run([py, "-c", "import libfcgi"], capture_output=True).returncode:
            EXTRA_PATH.append(str(PKG / "src"))  # the source tree, library from target/
        for mod, pkg in (("flup", "flup"), ("fcgisgi", "fcgisgi")):
            if subprocess.run([py, "-c", f"import {mod}"], capture_output=True).returncode:
                subprocess.run([py, "-m", "pip", "install", "--quiet", pkg], check=True)
        return py
    py = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not py.exists():
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    log("pip install flup fcgisgi and this package (into bench/.venv)")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "flup", "fcgisgi"],
                   check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps",
                    str(PKG)], check=True)
    return str(py)


def versions(py: str) -> dict:
    code = textwrap.dedent("""
        import json, sys, importlib.metadata as m, libfcgi
        out = {"python": sys.version.split()[0], "library": libfcgi.library_info()}
        for d in ("flup", "fcgisgi", "libfcgi"):
            try:
                out[d] = m.version(d)
            except m.PackageNotFoundError:
                out[d] = getattr(__import__(d), "__version__", "?") + " (source tree)"
        print(json.dumps(out))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("LIBFCGI_PATH", "PYTHONPATH")}
    if EXTRA_PATH:
        env["PYTHONPATH"] = os.pathsep.join(EXTRA_PATH)
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout)


def find_fcgi_load(build: bool) -> str | None:
    explicit = os.environ.get("FCGI_LOAD")
    if explicit:
        return explicit
    path = REPO / "target" / "release" / "fcgi-load"
    if not path.exists() and build and (REPO / "bench" / "Cargo.toml").exists() and shutil.which("cargo"):
        log("building fcgi-load: cargo build --release -p fcgi-bench")
        subprocess.run(["cargo", "build", "--release", "-p", "fcgi-bench"], cwd=REPO)
    if path.exists():
        return str(path)
    return shutil.which("fcgi-load")


# -- running -------------------------------------------------------------------


def wait_listening(address: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode(errors='replace')}")
        try:
            if address.startswith("/"):
                s = socket.socket(socket.AF_UNIX)
                s.connect(address)
            else:
                host, port = address.rsplit(":", 1)
                s = socket.create_connection((host, int(port)), timeout=1)
            s.close()
            time.sleep(0.3)  # let every worker reach accept()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {address}")


def run_load(loadgen: tuple[str, str], address: str, conns: int, keepalive: bool,
             duration: float, py: str, pin: bool = False) -> dict:
    kind, path = loadgen
    pre = ["taskset", "-c", "0"] if pin else []
    if kind == "fcgi-load":
        target = address if not address.startswith("/") else f"unix:{address}"
        args = [path, target, "-c", str(conns), "-d", str(duration), "--json"]
        if conns > 1:
            args += ["--engine", "epoll", "-t", "1"]
        if not keepalive:
            args.append("--close")
        # A warm-up second first (its numbers are thrown away).
        subprocess.run(pre + args[:4] + ["-d", "1"] + args[6:], capture_output=True, timeout=60)
        r = subprocess.run(pre + args, capture_output=True, text=True, timeout=duration + 60)
        d = json.loads(r.stdout)
        return {"rps": d["rps"], "p99_ms": d["lat_us"]["p99"] / 1000, "max_ms": d["lat_us"]["max"] / 1000,
                "errors": d["errors"], "requests": d["ok"],
                "stdout_bytes": d.get("reference_stdout_bytes")}
    args = [py, path, address, "-c", str(conns), "-d", str(duration), "--warmup", "1"]
    if not keepalive:
        args.append("--no-keepalive")
    r = subprocess.run(pre + args, capture_output=True, text=True, timeout=duration + 60)
    d = json.loads(r.stdout)
    return {"rps": d["rps"], "p99_ms": d["p99_ms"], "max_ms": d["max_ms"], "errors": d["errors"],
            "requests": d["requests"]}


WAITED = [0.0]


def build_c_hello(workdir: Path) -> bool:
    """Compiles the repository's C hello app (bench/apps/hello.c) against
    this library, for a reference row: what the machine allows."""
    src = REPO / "bench" / "apps" / "hello.c"
    lib = REPO / "target" / "release"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not (src.exists() and (lib / "libfcgi.so").exists() and cc):
        return False
    r = subprocess.run([cc, "-O2", "-I", str(REPO / "include"), "-o", str(workdir / "c_hello"),
                        str(src), "-L", str(lib), "-lfcgi", "-lpthread"], capture_output=True)
    if r.returncode != 0:
        log(f"reference C hello not built: {r.stderr.decode(errors='replace')[:300]}")
    return r.returncode == 0


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals), idle


#: Longest wait for idle CPUs before each server (--quiet-wait).
QUIET_WAIT = [300.0]


def wait_quiet(limit: float = 0.15, max_wait: float | None = None) -> None:
    """Waits (up to max_wait) until other processes leave the CPUs idle:
    less than ``limit`` of the machine busy over one second."""
    if not os.path.exists("/proc/stat"):
        return
    if max_wait is None:
        max_wait = QUIET_WAIT[0]
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        total0, idle0 = _cpu_times()
        time.sleep(1.0)
        total1, idle1 = _cpu_times()
        busy = 1 - (idle1 - idle0) / max(1, total1 - total0)
        if busy < limit:
            break
        log(f"  waiting for idle CPUs ({busy:.0%} busy)")
    WAITED[0] += time.monotonic() - t0 - 1.0


def bench_server(name: str, py: str, workdir: Path, address: str, threads: int,
                 loadgen, duration: float) -> list[dict]:
    if address.startswith("/") and os.path.exists(address):
        os.unlink(address)
    wait_quiet()
    env = {k: v for k, v in os.environ.items() if k not in ("LIBFCGI_PATH", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(workdir)] + EXTRA_PATH)
    if name == "c-hello":
        cmd = [str(workdir / "c_hello"), address, str(threads)]
        env["LD_LIBRARY_PATH"] = str(REPO / "target" / "release")
    else:
        cmd = [py, str(workdir / f"run_{name}.py"), address, str(threads)]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_listening(address, proc)
        results = []
        all_cpus = os.sched_getaffinity(0)
        for title, conns, keepalive, pin in COLUMNS:
            set_affinity(proc.pid, {0} if pin else all_cpus)
            res = run_load(loadgen, address, conns, keepalive, duration, py, pin)
            log(f"  {name:12s} {title:28s} {res['rps']:10.0f} req/s  p99 {res['p99_ms']:.3f} ms"
                f"  max {res['max_ms']:.1f} ms  errors {res['errors']}")
            results.append(res)
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: Names in the text under the table (errors, stdout sizes, ratio rows).
SHORT = {"libfcgi": "libfcgi", "libfcgi-asgi": "libfcgi.asgi", "flup": "flup", "fcgisgi": "fcgisgi WSGI",
         "fcgisgi-asgi": "fcgisgi ASGI", "c-hello": "c-hello"}


def row_label(name: str, threads: int) -> str:
    return {"libfcgi": f"libfcgi.wsgi ({threads} threads)",
            "libfcgi-asgi": "libfcgi.asgi (default: 4 I/O threads, one event loop)",
            "flup": "flup WSGIServer (threaded)",
            "fcgisgi": f"fcgisgi WSGI ({threads} workers)",
            "fcgisgi-asgi": "fcgisgi ASGI (one event loop)",
            "c-hello": f"*reference: C hello on the same library ({threads} threads)*"}[name]


def table(results: dict, meta: dict, args, loadgen) -> str:
    """The markdown block: the table, then the notes. Works for any subset
    of the servers (--only): ratio rows and goals need libfcgi and the other
    server, and the goals line says when not every server was measured."""
    names = [n for n in SERVERS + ["c-hello"] if results.get(n)]
    cols = range(len(COLUMNS))
    med = {n: [statistics.median(r[i]["rps"] for r in results[n]) for i in cols] for n in names}
    p99 = {n: [statistics.median(r[i]["p99_ms"] for r in results[n]) for i in cols] for n in names}
    errors = {n: sum(r[i]["errors"] for r in results[n] for i in cols) for n in names}
    lines = []
    lines.append("| server | " + " | ".join(t for t, *_ in COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(COLUMNS))
    rows = {}
    for n in names:
        cells = [f"{med[n][i]:,.0f} req/s (p99 {p99[n][i]:.2f} ms)" for i in cols]
        rows[n] = f"| {row_label(n, args.threads)} | " + " | ".join(cells) + " |"
    lines += [rows[n] for n in SERVERS if n in rows]
    if "libfcgi" in med:
        for other in ("flup", "fcgisgi", "fcgisgi-asgi"):
            if other in med:
                ratios = [med["libfcgi"][i] / med[other][i] if med[other][i] else float("inf")
                          for i in cols]
                lines.append(f"| libfcgi / {SHORT[other]} | "
                             + " | ".join(f"**{x:.1f}x**" for x in ratios) + " |")
    if "libfcgi-asgi" in med and "fcgisgi-asgi" in med:
        ratios = [med["libfcgi-asgi"][i] / med["fcgisgi-asgi"][i] if med["fcgisgi-asgi"][i]
                  else float("inf") for i in cols]
        lines.append("| libfcgi.asgi / fcgisgi ASGI | "
                     + " | ".join(f"**{x:.1f}x**" for x in ratios) + " |")
    if "c-hello" in rows:
        lines.append(rows["c-hello"])

    def verdict(ok: list[bool]) -> str:
        if all(ok):
            return "met in every column"
        missed = [COLUMNS[i][0] for i, good in enumerate(ok) if not good]
        return "NOT met in: " + "; ".join(missed)

    goals = []
    if "libfcgi" in med:
        if "flup" in med:
            goals.append("at least 2x flup: **"
                         + verdict([med["libfcgi"][i] >= 2 * med["flup"][i] for i in cols]) + "**")
        ahead = {}
        for other in ("fcgisgi", "fcgisgi-asgi"):
            if other in med:
                ahead[other] = [med["libfcgi"][i] > med[other][i] for i in cols]
                goals.append(f"ahead of {SHORT[other]}: **{verdict(ahead[other])}**")
        if len(ahead) == 2:
            both = all(all(ok) for ok in ahead.values())
            goals.append("so ahead of fcgisgi in every column in both its WSGI and its ASGI "
                         f"mode: **{'yes' if both else 'no'}**")
    if "libfcgi-asgi" in med and "fcgisgi-asgi" in med:
        goals.append("libfcgi.asgi at least 1.5x fcgisgi ASGI: **" + verdict(
            [med["libfcgi-asgi"][i] >= 1.5 * med["fcgisgi-asgi"][i] for i in cols]) + "**")
    missing = [SHORT[n] for n in SERVERS if n not in med]
    goal_line = "Goals: " + ("; ".join(goals) if goals else "not evaluated") + "."
    if missing:
        goal_line += " (Partial run: " + ", ".join(missing) + " not measured.)"
    lib = meta["library"]
    transport = "TCP 127.0.0.1" if args.tcp else "a Unix socket"
    gen = ("fcgi-load (the repository's Rust load generator, epoll engine)"
           if loadgen[0] == "fcgi-load" else "loadgen.py (pure Python)")
    sizes = {n: results[n][0][0].get("stdout_bytes") for n in names}
    size_note = ""
    if all(v is not None for v in sizes.values()):
        size_note = (" Stdout per response: "
                     + ", ".join(f"{SHORT[n]} {sizes[n]} B" for n in names) + ".")
    notes = [
        "",
        f"Medians of {args.rounds} round(s) of {args.duration:g} s per cell (after 1 s of "
        f"warm-up), over {transport}; load generator: {gen}; GET of a hello app "
        f"(13-byte body; for libfcgi.asgi and fcgisgi ASGI the same hello as an ASGI app), 25 parameters "
        f"per request. Errors: "
        + ", ".join(f"{SHORT[n]} {errors[n]}" for n in names) + "." + size_note,
        f"Python {meta['python']}, libfcgi {meta['libfcgi']} on {lib['implementation']} "
        f"{lib['version'] or ''}, flup {meta['flup']}, fcgisgi {meta['fcgisgi']}; "
        f"{os.cpu_count()} CPUs shared by the servers and the load generator.",
        goal_line,
        "The reference row (if present) is bench/apps/hello.c, a C responder on the same "
        "library: what this machine allows a FastCGI server in each column.",
        f"Before each server the script waited for the CPUs to be idle ({WAITED[0]:.0f} s "
        "waited in all): the machine is shared.",
    ]
    return "\n".join(lines + notes)


def asgi_table(results: dict, meta: dict, args, loadgen) -> str:
    """The ASGI block: libfcgi.asgi against fcgisgi's ASGI mode on the same
    ASGI hello and loads, the ratio, the goal (1.5x in every column), with
    libfcgi.wsgi and the C hello of the same run for reference."""
    need = ("libfcgi-asgi", "fcgisgi-asgi")
    if not all(results.get(n) for n in need):
        raise SystemExit("the ASGI table needs runs of libfcgi-asgi and fcgisgi-asgi")
    names = [n for n in ("libfcgi-asgi", "fcgisgi-asgi", "libfcgi", "c-hello") if results.get(n)]
    cols = range(len(COLUMNS))
    med = {n: [statistics.median(r[i]["rps"] for r in results[n]) for i in cols] for n in names}
    p99 = {n: [statistics.median(r[i]["p99_ms"] for r in results[n]) for i in cols] for n in names}
    errors = {n: sum(r[i]["errors"] for r in results[n] for i in cols) for n in names}
    lines = ["| server | " + " | ".join(t for t, *_ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]

    def row(n: str, label: str) -> str:
        return (f"| {label} | "
                + " | ".join(f"{med[n][i]:,.0f} req/s (p99 {p99[n][i]:.2f} ms)" for i in cols)
                + " |")

    lines.append(row("libfcgi-asgi", row_label("libfcgi-asgi", args.threads)))
    lines.append(row("fcgisgi-asgi", row_label("fcgisgi-asgi", args.threads)))
    ratios = [med["libfcgi-asgi"][i] / med["fcgisgi-asgi"][i] if med["fcgisgi-asgi"][i]
              else float("inf") for i in cols]
    lines.append("| libfcgi.asgi / fcgisgi ASGI | "
                 + " | ".join(f"**{x:.1f}x**" for x in ratios) + " |")
    if "libfcgi" in med:
        lines.append(row("libfcgi", f"*for reference: libfcgi.wsgi ({args.threads} threads), "
                                    "WSGI hello*"))
    if "c-hello" in med:
        lines.append(row("c-hello", row_label("c-hello", args.threads)))
    ok = [x >= 1.5 for x in ratios]
    missed = [COLUMNS[i][0] for i, good in enumerate(ok) if not good]
    verdict = "met in every column" if all(ok) else "NOT met in: " + "; ".join(missed)
    transport = "TCP 127.0.0.1" if args.tcp else "a Unix socket"
    gen = ("fcgi-load (the repository's Rust load generator, epoll engine)"
           if loadgen[0] == "fcgi-load" else "loadgen.py (pure Python)")
    notes = [
        "",
        f"Medians of {args.rounds} round(s) of {args.duration:g} s per cell (after 1 s of "
        f"warm-up), over {transport}; load generator: {gen}; GET of the same ASGI hello app "
        "(13-byte body, its own Content-Length) on both ASGI servers, 25 parameters per "
        "request; the WSGI row serves the WSGI hello. Errors: "
        + ", ".join(f"{SHORT[n]} {errors[n]}" for n in names) + ".",
        f"Python {meta['python']}, libfcgi {meta['libfcgi']} on "
        f"{meta['library']['implementation']} {meta['library']['version'] or ''}, fcgisgi "
        f"{meta['fcgisgi']}; {os.cpu_count()} CPUs shared by the servers and the load "
        "generator, and with other jobs: before each server the script waited for idle CPUs "
        f"({WAITED[0]:.0f} s waited in all, at most {QUIET_WAIT[0]:g} s each).",
        f"Goal: libfcgi.asgi at least 1.5x fcgisgi ASGI: **{verdict}**.",
    ]
    return "\n".join(lines + notes)


def update_readme(text: str, marker: str = "bench") -> None:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    content = README.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{README} has no {start} ... {end} section")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    log(f"updated {README}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--threads", type=int, default=8,
                    help="worker threads for libfcgi.wsgi and fcgisgi's WSGI mode (default 8)")
    ap.add_argument("--tcp", action="store_true", help="TCP on 127.0.0.1 instead of a Unix socket")
    ap.add_argument("--loadgen", choices=["auto", "fcgi-load", "python"], default="auto")
    ap.add_argument("--no-venv", action="store_true", help="use this interpreter, not bench/.venv")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo")
    ap.add_argument("--only", nargs="*", default=None, choices=SERVERS, metavar="SERVER",
                    help="servers to run, of: " + ", ".join(SERVERS) + " (default all)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference row (bench/apps/hello.c, C on the same library)")
    ap.add_argument("--update-readme", action="store_true",
                    help="put the markdown block into bindings/python/README.md (needs every server)")
    ap.add_argument("--update-readme-asgi", action="store_true",
                    help="put the ASGI table (libfcgi.asgi against fcgisgi ASGI, needs both) "
                    "into bindings/python/README.md")
    ap.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                    help="make the tables from a run saved with --json instead of running")
    ap.add_argument("--markdown-out", type=Path, default=None, metavar="PATH",
                    help="also write the printed markdown block (table and notes) to PATH")
    ap.add_argument("--quiet-wait", type=float, default=300.0, metavar="SECS",
                    help="longest wait for idle CPUs before each server (default 300)")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = ap.parse_args()
    if args.update_readme and args.only and set(args.only) != set(SERVERS):
        ap.error("--update-readme needs a run of every server (no --only)")

    QUIET_WAIT[0] = args.quiet_wait
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        meta, results = saved["meta"], saved["results"]
        for k in ("duration", "rounds", "threads", "tcp", "quiet_wait"):
            if k in saved.get("args", {}):
                setattr(args, k, saved["args"][k])
        WAITED[0] = saved.get("waited", 0.0)
        QUIET_WAIT[0] = args.quiet_wait
        loadgen = tuple(saved.get("loadgen", ("fcgi-load", "")))
        emit(results, meta, args, loadgen)
        return 0
    if args.no_build:
        os.environ["LIBFCGI_NO_CARGO"] = "1"
    py = venv_python(args.no_venv)
    meta = versions(py)
    log(f"library: {meta['library']}")
    loadgen: tuple[str, str]
    fl = None if args.loadgen == "python" else find_fcgi_load(not args.no_build)
    if fl:
        loadgen = ("fcgi-load", fl)
    elif args.loadgen == "fcgi-load":
        raise SystemExit("fcgi-load not found (set FCGI_LOAD or build bench/ with cargo)")
    else:
        loadgen = ("python", str(BENCH / "loadgen.py"))
    log(f"load generator: {loadgen[1]}")

    workdir = Path(tempfile.mkdtemp(prefix="fcgi-bench-"))
    try:
        (workdir / "hello.py").write_text(HELLO)
        (workdir / "hello_asgi.py").write_text(HELLO_ASGI)
        for name, src in RUNNERS.items():
            (workdir / f"run_{name}.py").write_text(src)
        names = [n for n in SERVERS if not args.only or n in args.only]
        if not args.no_reference and build_c_hello(workdir):
            names.append("c-hello")
        results: dict[str, list] = {n: [] for n in names}
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            log(f"round {rnd + 1}/{args.rounds}")
            for name in order:
                if args.tcp:
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", 0))
                        address = f"127.0.0.1:{s.getsockname()[1]}"
                else:
                    address = str(workdir / f"{name}.sock")
                results[name].append(bench_server(name, py, workdir, address, args.threads,
                                                  loadgen, args.duration))
        if args.json:
            saved_args = {k: getattr(args, k) for k in ("duration", "rounds", "threads", "tcp",
                                                        "quiet_wait")}
            args.json.write_text(json.dumps({"meta": meta, "results": results, "args": saved_args,
                                             "waited": WAITED[0], "loadgen": list(loadgen)},
                                            indent=1))
        emit(results, meta, args, loadgen)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def emit(results: dict, meta: dict, args, loadgen) -> None:
    text = table(results, meta, args, loadgen)
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text + "\n")
        log(f"wrote {args.markdown_out}")
    if args.update_readme:
        update_readme(text)
    if args.update_readme_asgi or (results.get("libfcgi-asgi") and results.get("fcgisgi-asgi")):
        atext = asgi_table(results, meta, args, loadgen)
        print()
        print(atext)
        if args.update_readme_asgi:
            update_readme(atext, "bench-asgi")


if __name__ == "__main__":
    sys.exit(main())
