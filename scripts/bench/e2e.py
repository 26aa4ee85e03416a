"""End-to-end suite (scripts/bench-e2e): HTTP in through a front, to an
app, and back, every setup measured by the same wrk in the same run.

All setups start once and stay up; the runs are interleaved (round 1 of
every setup, then round 2 ...) so drift of a shared machine spreads over all
of them, and medians of the rounds are reported. For every run: req/s, p50,
p90, p99 (wrk --latency), errors, and the CPU time each process of the setup
spent (utime + stime from /proc/PID/stat, summed over the process and its
children, e.g. nginx master + workers, uWSGI master + workers) divided by
the requests completed, and the part of it spent in the kernel (stime).

Workloads: `get` (GET /, an 18-byte greeting) and `echo1m` (POST /echo with
a 1 MiB body, echoed back).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from common import (
    ROOT,
    cpu_seconds,
    cpu_snapshot,
    die,
    env_float,
    env_int,
    env_list,
    exit_on_sigterm,
    log,
    read_csv,
    smoke,
    table,
    workdir,
    write_csv,
    write_meta,
    wrk,
)
from results import e2e_medians, e2e_targets
from setups import (
    APP_PROCESSES,
    ECHO_BYTES,
    HYPER_THREADS,
    NGINX_WORKERS,
    ONE_THREAD_ENV,
    PROXY_ARGS,
    QUICKSTART_ARGS,
    SERVE_ARGS,
    Setup,
    Setups,
    one_thread_args,
)

# ---- knobs of the runs (environment variables); setups.py has the rest ----
SECS = env_float("BENCH_SECS", 1 if smoke() else 5)
ROUNDS = env_int("BENCH_ROUNDS", 1 if smoke() else 3)
CONNS = env_list("BENCH_CONNS", [32] if smoke() else [1, 32, 256])
ECHO_CONNS = env_list("BENCH_ECHO_CONNS", [1] if smoke() else [1, 32, 256])
WRK_THREADS = env_int("BENCH_WRK_THREADS", 1)


def measure(
    s: Setup, workload: str, conns: int, rnd: int, lua: Path
) -> dict[str, object]:
    row: dict[str, object] = {
        "setup": s.name,
        "title": s.title,
        "workload": workload,
        "conns": conns,
        "round": rnd,
    }
    s.check_alive()
    if s.broken:
        row["error_text"] = "setup down"
        return row
    roles = s.role_pids()
    before = cpu_snapshot(roles)
    before_kernel = cpu_snapshot(roles, kernel_only=True)
    path = "/echo" if workload == "echo1m" else "/"
    try:
        r = wrk(
            f"http://127.0.0.1:{s.port}{path}",
            conns,
            SECS,
            WRK_THREADS,
            lua if workload == "echo1m" else None,
        )
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
        row["error_text"] = str(e)[:200]
        log(f"  {s.name} {workload} c{conns}: {e}")
        return row
    cpu = cpu_seconds(before, roles)
    kernel = cpu_seconds(before_kernel, roles, kernel_only=True)
    n = max(1, r.requests)
    per = {k: v * 1e6 / n for k, v in cpu.items()}
    row.update(
        rps=r.rps,
        p50_us=r.p50_us,
        p90_us=r.p90_us,
        p99_us=r.p99_us,
        requests=r.requests,
        seconds=r.seconds,
        errors=r.errors,
        error_text=r.error_text,
        cpu_us=sum(per.values()),
        cpu_detail=";".join(f"{k}={v:.2f}" for k, v in per.items()),
        kernel_detail=";".join(f"{k}={v * 1e6 / n:.2f}" for k, v in kernel.items()),
    )
    log(
        f"  r{rnd} {workload:<6} c{conns:<4} {s.name:<21} {r.rps:>10,.0f} req/s  p99 {r.p99_us / 1000:>7.2f} ms"
        f"  cpu {sum(per.values()):>6.1f} us/req ({row['cpu_detail']}){'  ' + r.error_text if r.errors else ''}"
    )
    return row


def run(setups: Setups) -> list[dict[str, object]]:
    lua = setups.dir / "echo.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {ECHO_BYTES})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    workloads: list[tuple[str, list[int], Callable[[Setup], bool]]] = [
        ("get", CONNS, lambda s: True),
        ("echo1m", ECHO_CONNS, lambda s: s.echo),
    ]
    if not smoke():
        log("warm-up: 1 s per setup and workload")
        for s in setups.setups:
            wrk(f"http://127.0.0.1:{s.port}/", 32, 1, WRK_THREADS)
            if s.echo:
                wrk(f"http://127.0.0.1:{s.port}/echo", 4, 1, WRK_THREADS, lua)
    rows = []
    for rnd in range(1, ROUNDS + 1):
        log(f"round {rnd}/{ROUNDS}")
        for workload, conns_list, applies in workloads:
            for conns in conns_list:
                chosen = [s for s in setups.setups if applies(s)]
                # Rotate the order each round so no setup always runs
                # right after the same neighbour.
                k = (rnd - 1) % max(1, len(chosen))
                for s in chosen[k:] + chosen[:k]:
                    rows.append(measure(s, workload, conns, rnd, lua))
    return rows


CSV_HEADER = [
    "setup",
    "workload",
    "conns",
    "round",
    "rps",
    "p50_us",
    "p90_us",
    "p99_us",
    "requests",
    "seconds",
    "errors",
    "cpu_us",
    "cpu_detail",
    "kernel_detail",
    "error_text",
    "title",
]


def print_summary(csv_path: Path) -> bool:
    rows = read_csv(csv_path)
    ms = e2e_medians(rows)
    order = {s: i for i, s in enumerate(dict.fromkeys(r["setup"] for r in rows))}
    for workload in dict.fromkeys(m.workload for m in ms):
        for conns in sorted({m.conns for m in ms if m.workload == workload}):
            sel = sorted(
                (m for m in ms if m.workload == workload and m.conns == conns),
                key=lambda m: order[m.setup],
            )
            ref = next((m for m in sel if m.setup == "nginx-uwsgi"), None)
            print(
                f"\n{workload} c{conns} (median of {max(m.runs for m in sel)} runs, wrk -t{WRK_THREADS}):"
            )
            print(
                table(
                    [
                        [
                            m.setup,
                            f"{m.rps:,.0f}",
                            f"{m.rps / ref.rps:.2f}x" if ref and ref.rps else "",
                            f"{m.p50_us / 1000:.2f}",
                            f"{m.p99_us / 1000:.2f}",
                            f"{m.cpu_us:.1f}",
                            " + ".join(f"{k} {v:.1f}" for k, v in m.roles.items()),
                            m.errors or "",
                        ]
                        for m in sel
                    ],
                    [
                        "setup",
                        "req/s",
                        "vs nginx->uWSGI",
                        "p50 ms",
                        "p99 ms",
                        "CPU us/req",
                        "per process",
                        "errors",
                    ],
                )
            )
    targets = e2e_targets(ms)
    if targets:
        print("\nissue 9 targets (c32, GET):")
        print(
            table(
                [[t.what, t.value, t.goal, t.mark()] for t in targets],
                ["what", "measured", "target", ""],
            )
        )
    return all(m.runs > 0 and m.errors == 0 for m in ms)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--csv",
        type=Path,
        default=ROOT / "target" / "bench" / "e2e.csv",
        help="where to write every run",
    )
    args = ap.parse_args()
    exit_on_sigterm()
    d = workdir("e2e")
    suite = Setups(d)
    try:
        suite.start()
        log(
            f"{len(suite.setups)} setups up; {ROUNDS} interleaved rounds of {SECS:g} s per run; "
            f"GET at c{CONNS}, 1 MiB echo at c{ECHO_CONNS}"
        )
        rows = run(suite)
    finally:
        suite.procs.stop_all()
    write_csv(args.csv, CSV_HEADER, rows)
    write_meta(
        args.csv,
        "e2e",
        {
            "seconds_per_run": SECS,
            "rounds": ROUNDS,
            "conns": CONNS,
            "echo_conns": ECHO_CONNS,
            "wrk_threads": WRK_THREADS,
            "nginx_workers": NGINX_WORKERS,
            "app_processes": APP_PROCESSES,
            "serve_args": SERVE_ARGS,
            "proxy_args": PROXY_ARGS,
            "quickstart_args": QUICKSTART_ARGS,
            "one_thread_env": ONE_THREAD_ENV,
            "one_thread_args": one_thread_args(),
            "hyper_threads": HYPER_THREADS,
            "setups": {s.name: s.title for s in suite.setups},
        },
    )
    ok = print_summary(args.csv)
    print(f"\nevery run: {args.csv}")
    shutil.rmtree(d, ignore_errors=True)
    if not ok and smoke():
        die("smoke run: a setup failed or answered errors (see above)")


if __name__ == "__main__":
    main()
