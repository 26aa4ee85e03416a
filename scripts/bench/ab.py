"""A/B of two uwire binaries (scripts/bench-ab): is the new one cheaper per
request, on a machine too noisy for one run of each to tell?

One `uwire serve` (the new binary's) stays up on a Unix socket; for each run
a fresh `uwire proxy` of the old or the new binary forwards wrk's GET hello
to it. The runs alternate in a balanced order (ONNO ONNO ...: each binary
goes first as often as second), so drift of a shared machine falls on both
alike. Each run: a warm-up, then wrk for BENCH_SECS; the proxy's CPU per
request from /proc/PID/schedstat (nanoseconds, every thread), split into
user and kernel by /proc/PID/stat's ticks. Printed: every run, the medians,
new/old ratios, and in how many adjacent old/new pairs the new one spent
less (a change that wins 8 of 8 pairs is real whatever the medians say).
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from common import (
    UWIRE,
    Procs,
    cpu_ticks,
    die,
    env_float,
    env_int,
    exit_on_sigterm,
    free_port,
    log,
    median,
    smoke,
    table,
    wait_http,
    wait_socket,
    workdir,
    wrk,
)

SECS = env_float("BENCH_SECS", 1 if smoke() else 4)
WARMUP = env_float("BENCH_AB_WARMUP", 1)
CONNS = env_int("BENCH_CONNS", 32)


@dataclass
class Run:
    """One measured run of one binary."""

    which: str
    rps: float
    us: float
    user_us: float
    kernel_us: float
    serve_us: float


def on_cpu_ns(pid: int) -> int:
    """Time the process's threads have run, in ns (schedstat's first field
    of the whole process, every thread counted)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def measure(
    procs: Procs, binary: Path, which: str, socket: Path, serve: int, args: list[str]
) -> Run:
    port = free_port()
    proxy = procs.start(
        f"proxy-{which}",
        [
            binary,
            "proxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"unix:{socket}",
            "--access-log",
            "off",
            *args,
        ],
    )
    try:
        wait_http(port, proxy)
        url = f"http://127.0.0.1:{port}/"
        wrk(url, CONNS, WARMUP)
        ns0, serve0 = on_cpu_ns(proxy.pid), on_cpu_ns(serve)
        user0, kern0 = cpu_ticks(proxy.pid), cpu_ticks(proxy.pid, kernel_only=True)
        r = wrk(url, CONNS, SECS)
        ns1, serve1 = on_cpu_ns(proxy.pid), on_cpu_ns(serve)
        user1, kern1 = cpu_ticks(proxy.pid), cpu_ticks(proxy.pid, kernel_only=True)
    finally:
        procs.stop(proxy)
    if r.errors:
        die(f"{which}: wrk saw errors ({r.error_text})")
    if r.requests == 0:
        die(f"{which}: no request completed")
    us = (ns1 - ns0) / 1e3 / r.requests
    kern = kern1 - kern0
    total = max(user1 - user0, 1)
    kernel_share = min(kern / total, 1.0)
    return Run(
        which,
        r.rps,
        us,
        us * (1 - kernel_share),
        us * kernel_share,
        (serve1 - serve0) / 1e3 / r.requests,
    )


def balanced(runs: int) -> str:
    """The run order, `runs` of each binary: ONNO repeated, so each goes
    first in half the adjacent pairs."""
    return ("ONNO" * runs)[: 2 * runs]


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path, help="the baseline uwire binary")
    ap.add_argument(
        "new",
        type=Path,
        nargs="?",
        default=UWIRE,
        help="the binary to compare (default: this tree's release build)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=env_int("BENCH_ROUNDS", 1 if smoke() else 8),
        help="runs of each binary (default 8)",
    )
    ap.add_argument(
        "--proxy-args",
        default="--busy-poll 0",
        help="extra flags of both proxies (default: --busy-poll 0, as the "
        "spin before a sleep would absorb a saving into CPU time)",
    )
    a = ap.parse_args()
    for b in (a.old, a.new):
        if not b.is_file():
            die(f"no binary at {b}")
    args = shlex.split(a.proxy_args)
    work = workdir("ab")
    procs = Procs(work)
    sock = work / "app.sock"
    runs: list[Run] = []
    try:
        serve = procs.start("serve", [a.new, "serve", "--bind", f"unix:{sock}"])
        wait_socket(sock, serve)
        for o in balanced(max(1, a.rounds)):
            which, binary = ("old", a.old) if o == "O" else ("new", a.new)
            r = measure(procs, binary, which, sock, serve.pid, args)
            runs.append(r)
            log(
                f"{which}: {r.rps:9.0f} req/s  proxy {r.us:6.2f} us "
                f"(user {r.user_us:5.2f} / kernel {r.kernel_us:5.2f})  "
                f"serve {r.serve_us:5.2f} us"
            )
    finally:
        procs.stop_all()
    report(runs, a.old, a.new, args)


def report(runs: list[Run], old: Path, new: Path, args: list[str]) -> None:
    def med(which: str, f: str) -> float:
        return median([getattr(r, f) for r in runs if r.which == which])

    fields = [
        ("req/s", "rps", 0),
        ("proxy us/req", "us", 2),
        ("user us", "user_us", 2),
        ("kernel us", "kernel_us", 2),
        ("serve us/req", "serve_us", 2),
    ]
    rows = []
    for which in ("old", "new"):
        rows.append([which] + [f"{med(which, f):.{d}f}" for _, f, d in fields])
    rows.append(
        ["new/old"] + [f"{med('new', f) / med('old', f):.3f}" for _, f, _ in fields]
    )
    # Adjacent pairs in run order: (0,1), (2,3) ...
    pairs = [(runs[i], runs[i + 1]) for i in range(0, len(runs) - 1, 2)]
    wins = 0
    for x, y in pairs:
        n, o = (x, y) if x.which == "new" else (y, x)
        wins += n.us < o.us
    print(f"old: {old}\nnew: {new}\nproxy flags: {' '.join(args) or '(none)'}")
    print(f"wrk -t1 -c{CONNS}, {SECS:g} s per run, GET / hello, medians of each")
    print(table(rows, ["binary"] + [h for h, _, _ in fields]))
    print(f"new spent less CPU per request in {wins} of {len(pairs)} adjacent pairs")


if __name__ == "__main__":
    main()
