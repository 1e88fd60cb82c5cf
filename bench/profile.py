#!/usr/bin/env python3
"""Where the time goes: perf profiles of the app under load, per variant.

    python3 bench/profile.py                      # hello32-ka and hello-1ka-pin
    python3 bench/profile.py --only hello32-ka --duration 5

Runs scenarios of bench/compare.py (same binaries, same load, same
library checks) once per variant (limit with threads, limit with epoll,
original, ours) with the server under

  a clean run: req/s, the server's CPU time and context switches
               per request (from /proc, no profiler attached)
  perf record -a -F 1999              (a second run; software cpu-clock
               sampling, this VM has no hardware counters; the report keeps
               the server's samples)

and writes bench/results/profile.md: per request, the server's CPU time and
context switches, and its CPU samples grouped by where they fall (the
scheduler: sleeping, waking and switching threads; the TCP/socket path;
system-call entry and exit; user space: the library and the app), with the
top symbols of each variant. It answers "why is ours not within 5% of the
limit here": when the time missing is in the scheduler, it is the cost of
the thread-per-connection design that the C API implies (FCGX_Accept_r
blocks a thread per connection), not of the library's code.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402  (bench/compare.py: scenarios, build, runners)

GROUPS = [
    ("scheduler", re.compile(
        r"schedul|switch|wake|enqueue|dequeue|pick_next|update_curr|finish_task|ttwu|"
        r"select_task|update_load|psi_|cpuacct|sched|futex|idle|balance|hrtick|"
        r"reweight|place_entity|set_next|put_prev|update_cfs|update_rq|prepare_task|"
        r"check_preempt|resched|activate_task|migrate|nohz|tick")),
    ("TCP / socket", re.compile(
        r"tcp|sock|skb|__dev_|dev_|ip_|ipv|inet|net_|netif|loopback|process_backlog|"
        r"__napi|napi|xmit|sk_|recv|send|__kfree_skb|copy_|csum|release_sock|"
        r"_copy_to_iter|_copy_from_iter|memcg|page_frag|kmem|kmalloc|slab|__alloc|"
        r"free|ep_poll|epoll|poll")),
    ("syscall entry/exit", re.compile(
        r"entry_SYSCALL|syscall|__x64_sys|exit_to_user|do_syscall|fdget|fput|"
        r"__fget|security_|apparmor|audit|rcu")),
]
LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[([^\]])\]\s+(.+?)\s*$")


def group_of(dso, kind, sym):
    if kind != "k":
        return "user space (library + app)"
    for name, rx in GROUPS:
        if rx.search(sym):
            return name
    return "other kernel"


def ctx_switches(pid):
    """Voluntary + involuntary context switches of all threads of `pid` so far."""
    total = 0
    tasks = f"/proc/{pid}/task"
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def perf_available():
    r = subprocess.run(["perf", "stat", "-e", "task-clock", "true"], capture_output=True, text=True)
    return r.returncode == 0


def profile_one(scn, variant, ports, duration, errlog, tmp):
    port = ports.get()
    proc = C.start_server(C.server_argv(scn, variant, port), variant, scn.pin, errlog)
    try:
        C.wait_listening(port, proc)
        libs, ok = C.check_lib(variant, proc.pid)
        data = os.path.join(tmp, f"{scn.key}-{variant}.data")
        # Warm-up (also fetches the reference response), then the measured run.
        C.run_load(scn, port, ["-d", "0.5"] + scn.load, scn.pin, 60)
        # First a clean run (no profiler): CPU time and context switches per
        # request from /proc, which costs the server nothing.
        cpu0, cs0 = C.proc_cpu(proc.pid), ctx_switches(proc.pid)
        res = C.run_load(scn, port, ["-d", str(duration)] + scn.load, scn.pin, duration + 60)
        cpu1, cs1 = C.proc_cpu(proc.pid), ctx_switches(proc.pid)
        counters = {"cpu_s": cpu1 - cpu0, "cs": cs1 - cs0}
        # Then a profiled run: system-wide sampling (a per-thread profiler
        # would itself add work to every context switch), samples of this
        # process kept by the report.
        rec = subprocess.Popen(["perf", "record", "-q", "-a", "-F", "1999", "-o", data],
                               stdout=subprocess.DEVNULL, stderr=errlog)
        time.sleep(0.5)
        C.run_load(scn, port, ["-d", str(duration)] + scn.load, scn.pin, duration + 60)
        rec.send_signal(2)
        rec.wait(timeout=60)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--pid", str(proc.pid),
                              "--sort", "dso,sym", "--percent-limit", "0"],
                             capture_output=True, text=True)
        symbols = []
        for line in rep.stdout.splitlines():
            m = LINE.match(line)
            if m:
                symbols.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))
        return {"res": res, "counters": counters, "symbols": symbols, "libs": libs, "lib_ok": ok}
    finally:
        C.stop(proc)


def summarise(scn, variant, p):
    n = p["res"]["ok"]
    c = p["counters"]
    # perf report's percentages are of all samples (every process, idle
    # included): rescale to the server's own samples.
    total = sum(pct for pct, _, _, _ in p["symbols"]) or 1.0
    symbols = [(pct * 100.0 / total, dso, kind, sym) for pct, dso, kind, sym in p["symbols"]]
    groups = {}
    for pct, dso, kind, sym in symbols:
        g = group_of(dso, kind, sym)
        groups[g] = groups.get(g, 0.0) + pct
    return {
        "variant": variant,
        "rps": p["res"]["rps"],
        "cpu_us": c["cpu_s"] * 1e6 / n if n else 0.0,
        "cs": c["cs"] / n if n else 0.0,
        "groups": groups,
        "top": sorted(symbols, reverse=True)[:8],
        "lib_ok": p["lib_ok"],
    }


def report(rows_by_scn, info, duration):
    out = ["# Where the time goes: perf profiles of the app under load", ""]
    out.append(f"{info}. `python3 bench/profile.py`: each variant once, {duration:g} s, "
               "first without a profiler (req/s, the server's CPU time and context switches per "
               "request, from /proc), then under `perf record -a -F 1999` (cpu-clock sampling; "
               "this VM has no hardware counters), the server's samples grouped by "
               "symbol name (scheduler = sleeping, waking, switching threads and futexes; "
               "TCP/socket = the network stack and copies; syscall = entry/exit; user space = "
               "library + app); a group's microseconds are its share of the server's CPU per request. "
               "Sampling is by timer interrupt, so time spent with interrupts off is charged to where "
               "they come back on (`finish_task_switch`, `_raw_spin_unlock_irqrestore`): the "
               "scheduler group includes the context switch itself.")
    names = ["scheduler", "TCP / socket", "syscall entry/exit", "other kernel",
             "user space (library + app)"]
    for key, (title, rows) in rows_by_scn.items():
        out += ["", f"## `{key}`: {title}", ""]
        out.append("| variant | req/s | server CPU us/req | context switches/req | "
                   + " | ".join(names) + " |")
        out.append("|---|---:|---:|---:|" + "---:|" * len(names))
        for r in rows:
            cpu = r["cpu_us"]
            cells = []
            for g in names:
                share = r["groups"].get(g, 0.0)
                cells.append(f"{share:.0f}% ({cpu * share / 100:.1f} us)")
            out.append(f"| {r['variant']} | {r['rps']:,.0f} | {cpu:.1f} | {r['cs']:.2f} | "
                       + " | ".join(cells) + " |")
        out += ["", "Top symbols (share of the server's samples):", ""]
        for r in rows:
            tops = ", ".join(f"`{sym}` {pct:.1f}%" for pct, _, _, sym in r["top"])
            out.append(f"* {r['variant']}: {tops}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="hello32-ka,hello-1ka-pin")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=os.path.join(C.BENCH, "results", "profile.md"))
    args = ap.parse_args()
    if not perf_available():
        sys.exit("perf is not usable here (apt-get install linux-perf; perf_event_paranoid)")
    if not args.no_build:
        C.build()
    C.snapshot_ours()
    keys = args.only.split(",")
    scns = [s for s in C.SCENARIOS if s.key in keys]
    ports = C.Ports(start=30000)
    rows_by_scn = {}
    with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "servers.log"), "w") as errlog:
        for scn in scns:
            variants = ["limit"] + (["limit-epoll"] if scn.canned_epoll else []) + ["original", "ours"]
            # No threaded limit for a scenario with fewer threads than
            # connections, and the original (a thread per connection)
            # cannot serve it (compare.py reports it so).
            variants = [v for v in variants if not (v == "limit" and scn.canned is None)
                        and not (v == "original" and scn.fewer_threads)]
            rows = []
            for v in variants:
                C.wait_quiet(20)
                C.log(f"{scn.key} {v}")
                p = profile_one(scn, v, ports, args.duration, errlog, tmp)
                if not p["lib_ok"]:
                    sys.exit(f"{scn.key} {v}: wrong library loaded: {p['libs']}")
                rows.append(summarise(scn, v, p))
            rows_by_scn[scn.key] = (scn.title, rows)
    i = C.machine_info()
    info = (f"{i['date']} on `{i['host']}`: {i['cpu']}, **{i['ncpu']} CPUs**, Linux {i['kernel']}; "
            f"commit `{i['commit']}`")
    text = report(rows_by_scn, info, args.duration)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    C.log(f"written to {args.out}")


if __name__ == "__main__":
    main()
