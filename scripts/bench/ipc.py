"""IPC suite (scripts/bench-ipc): the proxy-to-app hop alone, no HTTP front.

Client and server are two processes on one Unix socket:
  * uwire/1: `uwire bench` against `uwire serve` (the demo app), one
    connection, all requests multiplexed on it; `uwire-nopoll` the same
    with busy polling off on both sides (`--busy-poll 0`);
  * hyper HTTP/1.1 (hyper-util keep-alive pool: one connection per request
    in flight), hyper HTTP/2 (one connection) and tonic gRPC (one channel),
    from examples/bench_peers.rs, on the same greeting / echo;
  * the raw floors from examples/bench_floor.rs: 64-byte messages echoed by a
    second process, one in flight (ping-pong), 64 in flight with one write
    per message, 64 in flight batched; and one-way streaming.
Tiny (`GET /`, 18-byte answer) and 64 KiB echo bodies at 1, 64 and 1,024 in
flight. Rounds are interleaved, medians reported; the CPU time of the server
process (/proc) and of the client (rusage) per request is recorded too.

One tiny request in flight is run once more per placement, client and server
(and the ping-pong floor's two sides) pinned to one CPU (`same`) or to two
(`cross`): at one in flight every message is a wake-up, and where the
scheduler puts the two sides decides much of its cost (on a virtual machine
a wake-up across CPUs can cost several times one on the same CPU), so the
unpinned rows measure the scheduler's choice as much as the protocol.
These rows are named `IMPL@PLACEMENT` in the CSV.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
from pathlib import Path

from common import (
    EXAMPLES,
    ROOT,
    UWIRE,
    Procs,
    cpu_seconds,
    cpu_snapshot,
    die,
    env_float,
    env_int,
    env_list,
    exit_on_sigterm,
    log,
    read_csv,
    run_json,
    set_affinity,
    smoke,
    table,
    wait_socket,
    workdir,
    write_csv,
    write_meta,
)
from results import (
    IPC_COLUMNS,
    ipc_find,
    ipc_medians,
    ipc_pinned_rows,
    ipc_row,
    ipc_targets,
    ipc_unpinned_floors,
)

SECS = env_float("BENCH_IPC_SECS", 0.5 if smoke() else 3)
ROUNDS = env_int("BENCH_ROUNDS", 1 if smoke() else 3)
IN_FLIGHT = env_list("BENCH_IN_FLIGHT", [1, 64] if smoke() else [1, 64, 1024])
BODIES = env_list("BENCH_BODIES", [0, 65536])
IMPLS = [
    s
    for s in os.environ.get(
        "BENCH_IMPLS", "uwire,uwire-nopoll,hyper-h1,hyper-h2,tonic-grpc"
    ).split(",")
    if s
]
SERVE_ARGS = shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))
# `uwire-nopoll`: uwire with busy polling (src/net/busy_poll.rs) off on
# both sides, to show what the default 50us windows change.
NOPOLL = ["--busy-poll", "0"]
# 1,024 streams in flight on one connection need a stream limit above the
# default 128 (the h2 and gRPC servers are given the same room).
MAX_STREAMS = max([2048, *IN_FLIGHT])
FLOORS = ["pingpong", "perwrite", "batched", "stream"]
# Runtime threads of every client (uwire and peers alike, through tokio's
# TOKIO_WORKER_THREADS); empty: tokio's default, a thread per core. One by
# default: on two cores the server needs the other one, and a second client
# thread only moves wakeups across threads (measured: every client's tiny
# requests at 64 in flight went as fast or faster on one thread).
CLIENT_THREADS = os.environ.get("BENCH_CLIENT_THREADS", "1")
CLIENT_ENV = {"TOKIO_WORKER_THREADS": CLIENT_THREADS} if CLIENT_THREADS else None
# The pinned placements of the one-in-flight rows (see above):
# BENCH_PIN=same,cross (default), or empty for none. Pinning needs two CPUs
# this process may use; with fewer, only `same` runs.
ALLOWED_CPUS = sorted(os.sched_getaffinity(0))
PLACEMENTS = {
    "same": (ALLOWED_CPUS[0], ALLOWED_CPUS[0]),
    "cross": (ALLOWED_CPUS[0], ALLOWED_CPUS[-1]),
}
PINS = [
    p.strip()
    for p in os.environ.get("BENCH_PIN", "same,cross").split(",")
    if p.strip() and (p.strip() != "cross" or len(ALLOWED_CPUS) > 1)
]
for _p in PINS:
    if _p not in PLACEMENTS:
        die(f"BENCH_PIN: unknown placement {_p!r} (same, cross)")

CSV_HEADER = [
    "impl",
    "in_flight",
    "body_size",
    "round",
    "rate",
    "unit",
    "p50_us",
    "p90_us",
    "p99_us",
    "requests",
    "seconds",
    "server_cpu_us",
    "client_cpu_us",
    "error_text",
]


def start_servers(procs: Procs, d: Path) -> dict[str, tuple[Path, int]]:
    """Starts every server; returns impl -> (socket, server pid)."""
    out = {}
    for impl, extra in (("uwire", []), ("uwire-nopoll", NOPOLL)):
        if impl not in IMPLS:
            continue
        sock = d / f"{impl}.sock"
        p = procs.start(
            f"{impl}-serve",
            [
                UWIRE,
                "serve",
                "--bind",
                f"unix:{sock}",
                "--max-streams",
                str(MAX_STREAMS),
                *extra,
                *SERVE_ARGS,
            ],
        )
        wait_socket(sock, p)
        out[impl] = (sock, p.pid)
    for impl, cmd in (
        ("hyper-h1", "h1-server"),
        ("hyper-h2", "h2-server"),
        ("tonic-grpc", "grpc-server"),
    ):
        if impl in IMPLS:
            sock = d / f"{impl}.sock"
            p = procs.start(impl, [EXAMPLES / "bench_peers", cmd, "--socket", sock])
            wait_socket(sock, p)
            out[impl] = (sock, p.pid)
    return out


def client_argv(impl: str, sock: Path, in_flight: int, body: int) -> list[str | Path]:
    common: list[str | Path] = [
        "--socket",
        sock,
        "--in-flight",
        str(in_flight),
        "--body-size",
        str(body),
        "--seconds",
        str(SECS),
        "--requests",
        str(10**12),
        "--json",
    ]
    if impl == "uwire":
        return [UWIRE, "bench", *common]
    if impl == "uwire-nopoll":
        return [UWIRE, "bench", *common, *NOPOLL]
    sub = {
        "hyper-h1": "h1-client",
        "hyper-h2": "h2-client",
        "tonic-grpc": "grpc-client",
    }[impl]
    return [EXAMPLES / "bench_peers", sub, *common]


def run_floors(rnd: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    runs = [(mode, "") for mode in FLOORS]
    runs += [("pingpong", pin) for pin in PINS]
    for mode, pin in runs:
        name = f"floor-{mode}" + (f"@{pin}" if pin else "")
        cpus = []
        if pin:
            a, b = PLACEMENTS[pin]
            cpus = ["--cpus", f"{a},{b}"]
        try:
            j, _ = run_json(
                [EXAMPLES / "bench_floor", "--seconds", str(SECS), *cpus, mode],
                SECS + 60,
            )
        except RuntimeError as e:
            log(f"  {name}: {e}")
            rows.append({"impl": name, "round": rnd, "error_text": str(e)[:200]})
            continue
        stream = mode == "stream"
        rows.append(
            {
                "impl": name,
                "in_flight": j["in_flight"],
                "body_size": 65536 if stream else j["msg_size"],
                "round": rnd,
                "rate": j["per_sec"],
                "unit": "bytes/s" if stream else "msgs/s",
                "requests": j["count"],
                "seconds": j["seconds"],
            }
        )
        rate = float(str(j["per_sec"]))
        shown = f"{rate / 1e9:.2f} GB/s" if stream else f"{rate:,.0f} msgs/s"
        log(f"  r{rnd} {name:<20} {shown}")
    return rows


def run_case(
    impl: str, sock: Path, pid: int, in_flight: int, body: int, rnd: int, pin: str = ""
) -> dict[str, object]:
    name = impl + (f"@{pin}" if pin else "")
    row: dict[str, object] = {
        "impl": name,
        "in_flight": in_flight,
        "body_size": body,
        "round": rnd,
        "unit": "req/s",
    }
    roles = {"server": [pid]}
    client_cpus = None
    if pin:
        server_on, client_on = PLACEMENTS[pin]
        set_affinity(pid, {server_on})
        client_cpus = {client_on}
    before = cpu_snapshot(roles)
    try:
        j, client_cpu = run_json(
            client_argv(impl, sock, in_flight, body),
            SECS + 90,
            CLIENT_ENV,
            client_cpus,
        )
    except RuntimeError as e:
        log(f"  {name} {in_flight} in flight, {body} B: {e}")
        row["error_text"] = str(e)[:200]
        return row
    finally:
        if pin:
            set_affinity(pid, set(ALLOWED_CPUS))
    server_cpu = cpu_seconds(before, roles)["server"]
    n = max(1, int(str(j["requests"])))
    row.update(
        rate=j["rps"],
        p50_us=j["p50_us"],
        p90_us=j["p90_us"],
        p99_us=j["p99_us"],
        requests=n,
        seconds=j["seconds"],
        server_cpu_us=server_cpu * 1e6 / n,
        client_cpu_us=client_cpu * 1e6 / n,
    )
    log(
        f"  r{rnd} {name:<16} {in_flight:>5} in flight {body:>6} B {float(str(j['rps'])):>10,.0f} req/s"
        f"  p99 {float(str(j['p99_us'])) / 1000:>7.2f} ms  cpu server {server_cpu * 1e6 / n:.1f} + client {client_cpu * 1e6 / n:.1f} us/req"
    )
    return row


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.3f}"


def print_summary(csv_path: Path) -> bool:
    ms = ipc_medians([r for r in read_csv(csv_path) if r["rate"]])
    floors = ipc_unpinned_floors(ms)
    if floors:
        print(
            "\nraw Unix-socket floors (two processes, 64-byte messages; stream: 64 KiB writes):"
        )
        print(
            table(
                [
                    [
                        m.impl[6:],
                        f"{m.rate / 1e9:.2f} GB/s"
                        if m.unit == "bytes/s"
                        else f"{m.rate:,.0f} msgs/s",
                        m.in_flight or "-",
                    ]
                    for m in floors
                ],
                ["floor", "rate", "in flight"],
            )
        )
    for body in BODIES:
        print(
            f"\n{'tiny (GET /, 18-byte answer)' if body == 0 else f'{body // 1024} KiB echo'}, one client process, one server process:"
        )
        rows = []
        for f in IN_FLIGHT:
            for impl in IMPLS:
                m = ipc_find(ms, impl, f, body)
                if m is not None:
                    rows.append(ipc_row(ms, m, str(f), fmt_ms))
        print(
            table(
                rows,
                ["in flight", *IPC_COLUMNS],
            )
        )
    pinned = ipc_pinned_rows(ms, IMPLS, fmt_ms)
    if pinned:
        print("\none tiny request in flight, client and server pinned:")
        print(table(pinned, ["placement", *IPC_COLUMNS]))
    targets = ipc_targets(ms)
    if targets:
        print("\nissue 9 targets (IPC):")
        print(
            table(
                [[t.what, t.value, t.goal, t.mark()] for t in targets],
                ["what", "measured", "target", ""],
            )
        )
    return all(r["rate"] for r in read_csv(csv_path))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--csv",
        type=Path,
        default=ROOT / "target" / "bench" / "ipc.csv",
        help="where to write every run",
    )
    args = ap.parse_args()
    exit_on_sigterm()
    d = workdir("ipc")
    procs = Procs(d)
    rows: list[dict[str, object]] = []
    try:
        servers = start_servers(procs, d)
        log(
            f"{ROUNDS} interleaved rounds, {SECS:g} s per run; in flight {IN_FLIGHT}; bodies {BODIES}"
        )
        for rnd in range(1, ROUNDS + 1):
            log(f"round {rnd}/{ROUNDS}")
            rows += run_floors(rnd)
            order = [i for i in IMPLS if i in servers]
            k = (rnd - 1) % max(1, len(order))
            order = order[k:] + order[:k]
            for body in BODIES:
                for f in IN_FLIGHT:
                    for impl in order:
                        sock, pid = servers[impl]
                        rows.append(run_case(impl, sock, pid, f, body, rnd))
            if 0 in BODIES:
                for pin in PINS:
                    for impl in order:
                        sock, pid = servers[impl]
                        rows.append(run_case(impl, sock, pid, 1, 0, rnd, pin))
    finally:
        procs.stop_all()
    write_csv(args.csv, CSV_HEADER, rows)
    write_meta(
        args.csv,
        "ipc",
        {
            "seconds_per_run": SECS,
            "rounds": ROUNDS,
            "in_flight": IN_FLIGHT,
            "bodies": BODIES,
            "impls": IMPLS,
            "serve_args": SERVE_ARGS,
            "max_streams": MAX_STREAMS,
            "client_threads": CLIENT_THREADS or "tokio default",
            "pinned": {p: PLACEMENTS[p] for p in PINS},
        },
    )
    ok = print_summary(args.csv)
    print(f"\nevery run: {args.csv}")
    shutil.rmtree(d, ignore_errors=True)
    if not ok and smoke():
        die("smoke run: a case failed (see above)")


if __name__ == "__main__":
    main()
