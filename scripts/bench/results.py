"""Medians and target checks of the suites' CSV files, shared by the suites
(which print them at the end of a run) and scripts/bench-report (which
writes them into docs/BENCHMARKS.md), so both say the same thing.

The targets are issue 9's; every ratio is between rows of one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common import median

Row = dict[str, str]


def num(row: Row, key: str) -> float:
    v = row.get(key, "")
    try:
        return float(v)
    except ValueError:
        return float("nan")


def parse_detail(text: str) -> dict[str, float]:
    """`nginx=23.8;uwsgi=17.1` -> {"nginx": 23.8, "uwsgi": 17.1}."""
    out: dict[str, float] = {}
    for part in text.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = float("nan")
    return out


@dataclass
class E2eMedian:
    setup: str
    title: str
    workload: str
    conns: int
    rps: float
    p50_us: float
    p99_us: float
    cpu_us: float
    roles: dict[str, float]
    #: The part of each role's CPU per request spent in the kernel (empty
    #: for CSV files from before it was recorded).
    kernel_roles: dict[str, float]
    errors: int
    runs: int


def e2e_medians(rows: Sequence[Row]) -> list[E2eMedian]:
    groups: dict[tuple[str, str, int], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["setup"], r["workload"], int(r["conns"])), []).append(r)
    out = []
    for (setup, workload, conns), rs in groups.items():
        good = [r for r in rs if not math.isnan(num(r, "rps"))]
        details = [parse_detail(r.get("cpu_detail", "")) for r in good]
        kernel = [parse_detail(r.get("kernel_detail", "")) for r in good]
        role_names = sorted({k for d in details for k in d})
        out.append(
            E2eMedian(
                setup=setup,
                title=rs[0].get("title", setup),
                workload=workload,
                conns=conns,
                rps=median([num(r, "rps") for r in good]),
                p50_us=median([num(r, "p50_us") for r in good]),
                p99_us=median([num(r, "p99_us") for r in good]),
                cpu_us=median([num(r, "cpu_us") for r in good]),
                roles={
                    k: median([d.get(k, float("nan")) for d in details])
                    for k in role_names
                },
                kernel_roles={
                    k: median([d.get(k, float("nan")) for d in kernel])
                    for k in role_names
                    if any(k in d for d in kernel)
                },
                errors=sum(
                    int(num(r, "errors"))
                    for r in rs
                    if not math.isnan(num(r, "errors"))
                ),
                runs=len(good),
            )
        )
    return out


@dataclass
class Target:
    what: str
    value: str
    goal: str
    ok: bool | None  # None: a reference figure, or not measured

    def mark(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.ok]


def _find(
    ms: Sequence[E2eMedian], setup: str, workload: str, conns: int
) -> E2eMedian | None:
    for m in ms:
        if (m.setup, m.workload, m.conns) == (setup, workload, conns):
            return m
    return None


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def _check(value: float, goal: float, at_least: bool) -> bool | None:
    if math.isnan(value):
        return None
    return value >= goal if at_least else value <= goal


def e2e_targets(ms: Sequence[E2eMedian], conns: int = 32) -> list[Target]:
    """Issue 9's end-to-end targets at `conns` connections, GET hello."""
    out: list[Target] = []
    uw = _find(ms, "nginx-uwsgi", "get", conns)
    static = _find(ms, "nginx-static", "get", conns)
    qs = _find(ms, "quickstart", "get", conns)
    for setup in ("proxy-serve", "proxy-serve-1t", "proxy-serve-nopoll"):
        ps = _find(ms, setup, "get", conns)
        if ps is None:
            continue
        if uw is not None:
            r = _ratio(ps.rps, uw.rps)
            out.append(
                Target(
                    f"{setup} req/s / nginx->uWSGI (c{conns})",
                    f"{r:.2f}x",
                    ">= 2.0x",
                    _check(r, 2.0, True),
                )
            )
            out.append(
                Target(
                    f"{setup} p99 vs nginx->uWSGI (c{conns})",
                    f"{ps.p99_us / 1000:.2f} vs {uw.p99_us / 1000:.2f} ms",
                    "lower",
                    _check(_ratio(ps.p99_us, uw.p99_us), 1.0, False),
                )
            )
        if static is not None:
            r = _ratio(ps.rps, static.rps)
            out.append(
                Target(
                    f"{setup} req/s / nginx static (c{conns})",
                    f"{r:.2f}x",
                    ">= 0.5x",
                    _check(r, 0.5, True),
                )
            )
        proxy = ps.roles.get("proxy", float("nan"))
        serve = ps.roles.get("serve", float("nan"))
        out.append(
            Target(
                f"{setup}: proxy CPU per request",
                f"{proxy:.1f} us",
                "<= 10 us",
                _check(proxy, 10, False),
            )
        )
        proxy_kernel = ps.kernel_roles.get("proxy")
        if static is not None and proxy_kernel is not None:
            static_cpu = static.roles.get("nginx", float("nan"))
            static_kernel = static.kernel_roles.get("nginx", float("nan"))
            out.append(
                Target(
                    f"{setup}: proxy CPU per request in the kernel / outside",
                    f"{proxy_kernel:.1f} / {proxy - proxy_kernel:.1f} us",
                    f"(reference; nginx static {static_kernel:.1f} / "
                    f"{static_cpu - static_kernel:.1f} us)",
                    None,
                )
            )
        if uw is not None:
            r = _ratio(proxy, uw.roles.get("nginx", float("nan")))
            out.append(
                Target(
                    f"{setup}: proxy CPU / nginx's in nginx->uWSGI",
                    f"{r:.2f}x",
                    "<= 0.5x",
                    _check(r, 0.5, False),
                )
            )
        out.append(
            Target(
                f"{setup}: serve CPU per request (Rust handler)",
                f"{serve:.1f} us",
                "<= 5 us",
                _check(serve, 5, False),
            )
        )
        if uw is not None:
            r = _ratio(serve, uw.roles.get("uwsgi", float("nan")))
            out.append(
                Target(
                    f"{setup}: serve CPU / uWSGI's",
                    f"{r:.2f}x",
                    "<= 0.3x",
                    _check(r, 0.3, False),
                )
            )
    if qs is not None:
        out.append(
            Target(
                "quickstart CPU per request",
                f"{qs.cpu_us:.1f} us",
                "<= 15 us",
                _check(qs.cpu_us, 15, False),
            )
        )
        if uw is not None:
            r = _ratio(qs.rps, uw.rps)
            out.append(
                Target(
                    f"quickstart req/s / nginx->uWSGI (c{conns})",
                    f"{r:.2f}x",
                    "(reference; 0.85x in the issue)",
                    None,
                )
            )
    return out


@dataclass
class IpcMedian:
    impl: str
    in_flight: int
    body_size: int
    rate: float
    unit: str
    p50_us: float
    p99_us: float
    server_cpu_us: float
    client_cpu_us: float
    runs: int


def ipc_medians(rows: Sequence[Row]) -> list[IpcMedian]:
    groups: dict[tuple[str, int, int], list[Row]] = {}
    for r in rows:
        groups.setdefault(
            (r["impl"], int(r["in_flight"]), int(r["body_size"])), []
        ).append(r)
    return [
        IpcMedian(
            impl=impl,
            in_flight=f,
            body_size=b,
            rate=median([num(r, "rate") for r in rs]),
            unit=rs[0]["unit"],
            p50_us=median([num(r, "p50_us") for r in rs]),
            p99_us=median([num(r, "p99_us") for r in rs]),
            server_cpu_us=median([num(r, "server_cpu_us") for r in rs]),
            client_cpu_us=median([num(r, "client_cpu_us") for r in rs]),
            runs=len(rs),
        )
        for (impl, f, b), rs in groups.items()
    ]


def ipc_find(
    ms: Sequence[IpcMedian],
    impl: str,
    in_flight: int | None = None,
    body: int | None = None,
) -> IpcMedian | None:
    for m in ms:
        if (
            m.impl == impl
            and (in_flight is None or m.in_flight == in_flight)
            and (body is None or m.body_size == body)
        ):
            return m
    return None


# The pinned placements of bench-ipc's one-in-flight rows (`IMPL@PLACEMENT`).
PLACEMENT_TITLES = {
    "same": "client and server on one CPU",
    "cross": "client and server on two CPUs",
}


# The columns of bench-ipc's result tables after the first (in flight, or
# placement), in the terminal summary and in docs/BENCHMARKS.md alike.
IPC_COLUMNS = [
    "impl",
    "req/s",
    "uwire is",
    "p50 ms",
    "p99 ms",
    "server µs/req",
    "client µs/req",
    "uwire vs floor",
]


# The uwire rows of bench-ipc (default, and with busy polling off), which
# get a comparison with the raw floors.
UWIRE_IMPLS = ("uwire", "uwire-nopoll")


def ipc_unpinned_floors(ms: Sequence[IpcMedian]) -> list[IpcMedian]:
    """The raw floors' medians, without the pinned ping-pong ones."""
    return [m for m in ms if m.impl.startswith("floor-") and "@" not in m.impl]


def ipc_floor_text(ms: Sequence[IpcMedian], m: IpcMedian) -> str:
    """A uwire median against its floor: the ping-pong round trip at one
    tiny request in flight (the pinned one for a pinned row), the batched
    floor for tiny requests, the streaming floor for bodies; empty for the
    peers."""
    base, _, pin = m.impl.partition("@")
    if base not in UWIRE_IMPLS or not m.rate:
        return ""
    if m.body_size == 0 and m.in_flight == 1:
        pp = ipc_find(ms, "floor-pingpong" + (f"@{pin}" if pin else ""))
        if pp is None:
            return ""
        text = f"round trip {pp.rate / m.rate:.2f}x ping-pong's"
        return text + (f" ({pp.rate:,.0f}/s)" if pin else "")
    if m.body_size == 0:
        bt = ipc_find(ms, "floor-batched")
        return f"{m.rate / bt.rate:.1%} of batched" if bt else ""
    st = ipc_find(ms, "floor-stream")
    if st is None:
        return ""
    return f"{m.rate * m.body_size * 2 / st.rate:.1%} of streaming (both ways)"


def ipc_row(
    ms: Sequence[IpcMedian],
    m: IpcMedian,
    first: str,
    fmt_ms: Callable[[float], str],
    code: bool = False,
) -> list[str]:
    """One row of a bench-ipc table: `first` (in flight, or placement),
    then the `IPC_COLUMNS` of `m`, against uwire's median of the same case;
    latencies through `fmt_ms` (from microseconds), the impl name in
    backquotes if `code`."""
    base, _, pin = m.impl.partition("@")
    u = ipc_find(ms, "uwire" + (f"@{pin}" if pin else ""), m.in_flight, m.body_size)
    return [
        first,
        f"`{base}`" if code else base,
        f"{m.rate:,.0f}",
        f"{u.rate / m.rate:.2f}x" if u is not None and u is not m and m.rate else "",
        fmt_ms(m.p50_us),
        fmt_ms(m.p99_us),
        f"{m.server_cpu_us:.1f}",
        f"{m.client_cpu_us:.1f}",
        ipc_floor_text(ms, m),
    ]


def ipc_pinned_rows(
    ms: Sequence[IpcMedian],
    impls: Sequence[str],
    fmt_ms: Callable[[float], str],
    code: bool = False,
) -> list[list[str]]:
    """The table of the pinned one-in-flight medians (`IMPL@PLACEMENT`),
    placement first then the `IPC_COLUMNS` (see `ipc_row`), for each
    placement that ran and each of `impls` that has a row in it."""
    rows = []
    for pin, title in PLACEMENT_TITLES.items():
        for impl in impls:
            m = ipc_find(ms, f"{impl}@{pin}", 1, 0)
            if m is not None:
                rows.append(ipc_row(ms, m, title, fmt_ms, code))
    return rows


def ipc_targets(ms: Sequence[IpcMedian]) -> list[Target]:
    out: list[Target] = []
    pp = ipc_find(ms, "floor-pingpong")
    pw = ipc_find(ms, "floor-perwrite")
    bt = ipc_find(ms, "floor-batched")
    st = ipc_find(ms, "floor-stream")
    u1 = ipc_find(ms, "uwire", 1, 0)
    u64 = ipc_find(ms, "uwire", 64, 0)
    if u64 is not None and bt is not None:
        r = _ratio(u64.rate, bt.rate)
        out.append(
            Target(
                "uwire 64 in flight, tiny / batched floor",
                f"{r:.1%}",
                ">= 25%",
                _check(r, 0.25, True),
            )
        )
    if u64 is not None and pw is not None:
        r = _ratio(u64.rate, pw.rate)
        out.append(
            Target(
                "uwire 64 in flight, tiny / one-write-per-message floor",
                f"{r:.1%}",
                "(reference)",
                None,
            )
        )
    for peer in ("hyper-h1", "tonic-grpc", "hyper-h2"):
        p = ipc_find(ms, peer, 64, 0)
        if u64 is not None and p is not None:
            r = _ratio(u64.rate, p.rate)
            goal = ">= 3x" if peer != "hyper-h2" else "(reference)"
            ok = _check(r, 3.0, True) if peer != "hyper-h2" else None
            out.append(
                Target(f"uwire / {peer}, 64 in flight, tiny", f"{r:.2f}x", goal, ok)
            )
    # Round trips against the ping-pong floor: the target, then references
    # with polling off and with both sides pinned.
    round_trips = [
        ("uwire 1 in flight round trip / raw ping-pong", u1, pp, True),
        (
            "same, busy polling off (`--busy-poll 0`)",
            ipc_find(ms, "uwire-nopoll", 1, 0),
            pp,
            False,
        ),
    ]
    round_trips += [
        (
            f"uwire 1 in flight round trip / raw ping-pong, {title} (pinned)",
            ipc_find(ms, f"uwire@{pin}", 1, 0),
            ipc_find(ms, f"floor-pingpong@{pin}"),
            False,
        )
        for pin, title in PLACEMENT_TITLES.items()
    ]
    for what, u, p, target in round_trips:
        if u is not None and p is not None:
            r = _ratio(p.rate, u.rate)
            out.append(
                Target(
                    what,
                    f"{r:.2f}x",
                    "<= 1.5x" if target else "(reference)",
                    _check(r, 1.5, False) if target else None,
                )
            )
    u64k = ipc_find(ms, "uwire", 64, 65536)
    if u64k is not None and st is not None:
        r = _ratio(u64k.rate * 65536 * 2, st.rate)
        out.append(
            Target(
                "uwire 64 KiB echo, 64 in flight: bytes both ways / streaming floor",
                f"{r:.1%}",
                "(reference)",
                None,
            )
        )
    return out


def codec_median(
    rows: Sequence[Row], group: str, bench: str, column: str = "median_ns"
) -> float:
    """The median (ns) of one benchmark of scripts/bench-codec's CSV, or
    another ``column`` of its row (``ratio``), NaN when it did not run."""
    for r in rows:
        if r["group"] == group and r["bench"] == bench:
            return num(r, column)
    return math.nan


def codec_targets(rows: Sequence[Row]) -> list[Target]:
    """Issue 9's codec target: a REQUEST head (20 header fields) decoded at
    least 3x as fast as httparse parses the same head as HTTP/1.1 text.
    Checked with the median of the interleaved rounds' ratios when the CSV
    has them (scripts/bench-codec since they were added), else with the
    ratio of criterion's two medians."""
    ratio = codec_median(
        rows, "head_decode_interleaved", "httparse_per_uwire_frame", "ratio"
    )
    if not math.isnan(ratio):
        frame = codec_median(rows, "head_decode_interleaved", "uwire_frame")
        text = codec_median(rows, "head_decode_interleaved", "httparse")
        how = "median of the interleaved rounds' ratios"
    else:
        frame = codec_median(rows, "head_decode", "uwire_frame")
        text = codec_median(rows, "head_decode", "httparse")
        ratio = text / frame if frame > 0 else math.nan
        how = "criterion's medians"
    return [
        Target(
            "codec: REQUEST head decode speed / httparse's (20 fields)",
            f"{ratio:.2f}x ({frame:.0f} vs {text:.0f} ns, {how})",
            ">= 3x",
            _check(ratio, 3.0, True),
        )
    ]


def mem_targets(rows: Sequence[Row]) -> list[Target]:
    out: list[Target] = []
    for r in rows:
        if r["what"] == "idle connection" and r["server"] in (
            "uwire serve",
            "uwire proxy",
        ):
            b = num(r, "bytes_per_item")
            out.append(
                Target(
                    f"{r['server']}: resident memory per idle {r['protocol']} connection",
                    f"{b / 1024:.1f} KiB",
                    "<= 8 KiB",
                    _check(b, 8192, False),
                )
            )
    return out
