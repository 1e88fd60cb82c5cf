#!/usr/bin/env python3
"""Benchmark: the WSGI hello app on libfcgi.wsgi against flup's WSGIServer
and fcgisgi, under the same FastCGI load.

    python bindings/python/bench/bench.py                # full run, ~3 minutes
    python bindings/python/bench/bench.py --duration 2 --rounds 1
    python bindings/python/bench/bench.py --update-readme

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
   get 8 worker threads; flup makes a thread per connection.

   Why the single connection is measured twice: one request at a time is
   a ping-pong, and on a virtual machine whose CPUs wake each other slowly
   the time of a cross-CPU wake-up (tens of microseconds here) dominates:
   even a C hello on libfcgi stays near 20,000 req/s there (see
   bench/results/latest.md, hello-1ka) whatever the server does. On one
   CPU the same ping-pong costs only what the server and the client spend
   per request, which is what differs between servers.
4. Prints a markdown table of medians (requests/s, p99 latency) with the
   ratios, and with --update-readme puts it into bindings/python/README.md.

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
}

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
                "errors": d["errors"], "requests": d["ok"]}
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


def wait_quiet(limit: float = 0.15, max_wait: float = 300.0) -> None:
    """Waits (up to max_wait) until other processes leave the CPUs idle:
    less than ``limit`` of the machine busy over one second."""
    if not os.path.exists("/proc/stat"):
        return
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
            log(f"  {name:8s} {title:24s} {res['rps']:10.0f} req/s  p99 {res['p99_ms']:.3f} ms"
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


def table(results: dict, meta: dict, args, loadgen) -> str:
    names = ["libfcgi", "flup", "fcgisgi"] + (["c-hello"] if "c-hello" in results else [])
    med = {n: [statistics.median(r[i]["rps"] for r in results[n]) for i in range(len(COLUMNS))]
           for n in names}
    p99 = {n: [statistics.median(r[i]["p99_ms"] for r in results[n]) for i in range(len(COLUMNS))]
           for n in names}
    errors = {n: sum(r[i]["errors"] for r in results[n] for i in range(len(COLUMNS))) for n in names}
    lines = []
    lines.append("| server | " + " | ".join(t for t, *_ in COLUMNS) + " |")
    lines.append("|---|" + "---:|" * len(COLUMNS))
    rows = {}
    for n in names:
        label = {"libfcgi": f"libfcgi.wsgi ({args.threads} threads)",
                 "flup": "flup WSGIServer (threaded)",
                 "fcgisgi": f"fcgisgi ({args.threads} workers)",
                 "c-hello": f"*reference: C hello on the same library ({args.threads} threads)*"}[n]
        cells = [f"{med[n][i]:,.0f} req/s (p99 {p99[n][i]:.2f} ms)" for i in range(len(COLUMNS))]
        rows[n] = f"| {label} | " + " | ".join(cells) + " |"
    lines += [rows[n] for n in ("libfcgi", "flup", "fcgisgi")]
    for other in ("flup", "fcgisgi"):
        ratios = [med["libfcgi"][i] / med[other][i] if med[other][i] else float("inf")
                  for i in range(len(COLUMNS))]
        lines.append(f"| libfcgi / {other} | " + " | ".join(f"**{x:.1f}x**" for x in ratios) + " |")
    if "c-hello" in rows:
        lines.append(rows["c-hello"])
    def verdict(ok: list[bool]) -> str:
        if all(ok):
            return "met in every column"
        missed = [COLUMNS[i][0] for i, good in enumerate(ok) if not good]
        return "NOT met in: " + "; ".join(missed)

    goal_flup = verdict([med["libfcgi"][i] >= 2 * med["flup"][i] for i in range(len(COLUMNS))])
    goal_sgi = verdict([med["libfcgi"][i] > med["fcgisgi"][i] for i in range(len(COLUMNS))])
    lib = meta["library"]
    transport = "TCP 127.0.0.1" if args.tcp else "a Unix socket"
    gen = ("fcgi-load (the repository's Rust load generator, epoll engine)"
           if loadgen[0] == "fcgi-load" else "loadgen.py (pure Python)")
    notes = [
        "",
        f"Medians of {args.rounds} round(s) of {args.duration:g} s per cell (after 1 s of "
        f"warm-up), over {transport}; load generator: {gen}; GET of a hello app "
        f"(13-byte body), 25 parameters per request. Errors: "
        + ", ".join(f"{n} {errors[n]}" for n in names) + ".",
        f"Python {meta['python']}, libfcgi {meta['libfcgi']} on {lib['implementation']} "
        f"{lib['version'] or ''}, flup {meta['flup']}, fcgisgi {meta['fcgisgi']}; "
        f"{os.cpu_count()} CPUs shared by the servers and the load generator.",
        f"Goals: at least 2x flup: **{goal_flup}**; ahead of fcgisgi: **{goal_sgi}**.",
        "The reference row (if present) is bench/apps/hello.c, a C responder on the same "
        "library: what this machine allows a FastCGI server in each column.",
        f"Before each server the script waited for the CPUs to be idle ({WAITED[0]:.0f} s "
        "waited in all): the machine is shared.",
    ]
    return "\n".join(lines + notes)


def update_readme(text: str) -> None:
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
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
    ap.add_argument("--threads", type=int, default=8, help="worker threads for libfcgi.wsgi and fcgisgi")
    ap.add_argument("--tcp", action="store_true", help="TCP on 127.0.0.1 instead of a Unix socket")
    ap.add_argument("--loadgen", choices=["auto", "fcgi-load", "python"], default="auto")
    ap.add_argument("--no-venv", action="store_true", help="use this interpreter, not bench/.venv")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo")
    ap.add_argument("--only", nargs="*", default=None, help="servers to run (default all)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference row (bench/apps/hello.c, C on the same library)")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = ap.parse_args()

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
        for name, src in RUNNERS.items():
            (workdir / f"run_{name}.py").write_text(src)
        names = args.only or ["libfcgi", "flup", "fcgisgi"]
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
            args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        if set(names) >= {"libfcgi", "flup", "fcgisgi"}:
            text = table(results, meta, args, loadgen)
            print(text)
            if args.update_readme:
                update_readme(text)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
