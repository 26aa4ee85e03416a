"""scripts/bench-report: writes docs/BENCHMARKS.md and its charts (SVG,
hand-drawn here so no plotting library is needed) from the CSV files and
`.meta.json` files the suites wrote (scripts/bench-ipc, bench-e2e,
bench-mem, bench-codec; scripts/bench-all runs them all, then this)."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path

from common import ROOT, read_csv
from results import (
    IPC_COLUMNS,
    E2eMedian,
    IpcMedian,
    Target,
    codec_median,
    codec_targets,
    e2e_medians,
    e2e_targets,
    ipc_find,
    ipc_medians,
    ipc_pinned_rows,
    ipc_row,
    ipc_targets,
    ipc_unpinned_floors,
    mem_targets,
    num,
)

IMPL_TITLES = {
    "uwire": "uwire/1 (`uwire bench` -> `uwire serve`, one connection)",
    "uwire-nopoll": "the same with busy polling off on both sides (`--busy-poll 0`)",
    "hyper-h1": "hyper HTTP/1.1, hyper-util keep-alive pool (a connection per request in flight)",
    "hyper-h2": "hyper HTTP/2, one connection",
    "tonic-grpc": "tonic gRPC unary, one channel",
}
FLOOR_TITLES = {
    "floor-pingpong": "ping-pong: one 64-byte message in flight",
    "floor-perwrite": "64 in flight, one `write` per 64-byte message",
    "floor-batched": "64 in flight, batched: one `write` for all that is ready",
    "floor-stream": "streaming one way, 64 KiB writes",
}
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"]


def md_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], align: str = ""
) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_ms(us: float) -> str:
    if math.isnan(us):
        return "-"
    return f"{us / 1000:.2f}" if us >= 100 else f"{us / 1000:.3f}"


# ---------------------------------------------------------------- charts


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[str],
    values: dict[tuple[str, str], float],
    unit: str,
    highlight: Sequence[str] = (),
) -> str:
    """A horizontal grouped bar chart: one group per category, one bar per
    series, each bar labelled with its value."""
    label_w, bar_w, right = 230, 470, 90
    bar_h, gap = 14, 10
    top = 48
    group_h = bar_h * len(series) + gap
    height = top + group_h * len(categories) + 30
    width = label_w + bar_w + right
    vmax = max([v for v in values.values() if not math.isnan(v)] + [1.0])
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        ),
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, s in enumerate(series):
        x = label_w + i * 110
        out.append(
            f'<rect x="{x}" y="30" width="12" height="12" fill="{COLORS[i % len(COLORS)]}"/>'
        )
        out.append(f'<text x="{x + 16}" y="40">{escape(s)}</text>')
    for gi, cat in enumerate(categories):
        y0 = top + gi * group_h
        weight = "bold" if cat in highlight else "normal"
        out.append(
            f'<text x="{label_w - 8}" y="{y0 + group_h / 2}" text-anchor="end" '
            f'font-weight="{weight}">{escape(cat)}</text>'
        )
        for si, s in enumerate(series):
            v = values.get((cat, s), float("nan"))
            y = y0 + si * bar_h
            if math.isnan(v):
                continue
            w = max(1.0, bar_w * v / vmax)
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{COLORS[si % len(COLORS)]}"/>'
            )
            out.append(
                f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 4}" font-size="10">{v:,.0f}</text>'
            )
    out.append(
        f'<text x="{label_w}" y="{height - 8}" font-size="10" fill="#555">{escape(unit)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def e2e_chart(ms: Sequence[E2eMedian], setups: Sequence[str]) -> str:
    conns = sorted({m.conns for m in ms if m.workload == "get"})
    vals = {(m.setup, f"c{m.conns}"): m.rps for m in ms if m.workload == "get"}
    return bar_chart(
        "End to end: GET hello, req/s (median), wrk -t1",
        setups,
        [f"c{c}" for c in conns],
        vals,
        "requests per second, higher is better; uwire rows in bold",
        [s for s in setups if "serve" in s or "proxy" in s or s == "quickstart"],
    )


def ipc_chart(ms: Sequence[IpcMedian], impls: Sequence[str]) -> str:
    flights = sorted({m.in_flight for m in ms if m.impl in impls})
    vals = {
        (m.impl, f"{m.in_flight} in flight"): m.rate
        for m in ms
        if m.impl in impls and m.body_size == 0
    }
    return bar_chart(
        "IPC over one Unix socket: tiny requests, req/s (median)",
        impls,
        [f"{f} in flight" for f in flights],
        vals,
        "requests per second, higher is better",
        ["uwire"],
    )


# ---------------------------------------------------------------- document


def load(indir: Path, name: str) -> tuple[list[dict[str, str]], dict[str, object]]:
    path = indir / f"{name}.csv"
    if not path.exists():
        return [], {}
    meta_path = Path(f"{path}.meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return read_csv(path), meta


def targets_table(ts: Sequence[Target]) -> str:
    return md_table(
        ["target", "measured", "goal", ""],
        [[t.what, t.value, t.goal, t.mark()] for t in ts],
        "lrll",
    )


def e2e_section(
    rows: list[dict[str, str]], meta: dict[str, object], rel: str
) -> list[str]:
    ms = e2e_medians(rows)
    settings = meta.get("settings", {})
    assert isinstance(settings, dict)
    titles: dict[str, str] = settings.get("setups", {})
    setups = list(dict.fromkeys(r["setup"] for r in rows))
    out = ["## End to end", ""]
    out.append(
        f"`{meta.get('command', 'scripts/bench-e2e')}`: every setup up at once, "
        f"{settings.get('rounds', '?')} interleaved rounds of {settings.get('seconds_per_run', '?')} s per run, "
        f"medians; `wrk -t{settings.get('wrk_threads', 1)} -c<conns> --latency` on the same machine. "
        "CPU per request is utime + stime of every process of the setup (from `/proc/PID/stat`, "
        "children included: nginx master + workers, uWSGI master + workers, ...) over the run, "
        "divided by the requests completed. The load generator is not counted. "
        '"kernel" is the stime part: on loopback TCP the sender\'s system call usually '
        "also runs the receiver's side of the stack, so a front's kernel time "
        "grows with the traffic it carries whatever it does in user space."
    )
    out += ["", f"![GET hello req/s]({rel}/e2e-get.svg)", ""]
    out += [
        md_table(
            ["setup", "what"], [[f"`{s}`", titles.get(s, s)] for s in setups], "ll"
        ),
        "",
    ]
    for workload in dict.fromkeys(m.workload for m in ms):
        for conns in sorted({m.conns for m in ms if m.workload == workload}):
            sel = sorted(
                (m for m in ms if m.workload == workload and m.conns == conns),
                key=lambda m: setups.index(m.setup),
            )
            ref = next((m for m in sel if m.setup == "nginx-uwsgi"), None)
            label = (
                "GET / (18-byte greeting)"
                if workload == "get"
                else "POST /echo, 1 MiB body echoed"
            )
            out += [f"### {label}, {conns} connection{'s' if conns > 1 else ''}", ""]
            out.append(
                md_table(
                    [
                        "setup",
                        "req/s",
                        "vs nginx->uWSGI",
                        "p50 ms",
                        "p99 ms",
                        "CPU µs/req",
                        "per process (µs/req)",
                        "errors",
                    ],
                    [
                        [
                            f"`{m.setup}`",
                            f"{m.rps:,.0f}",
                            f"{m.rps / ref.rps:.2f}x" if ref and ref.rps else "",
                            fmt_ms(m.p50_us),
                            fmt_ms(m.p99_us),
                            f"{m.cpu_us:.1f}",
                            ", ".join(
                                f"{k} {v:.1f}"
                                + (
                                    f" (kernel {m.kernel_roles[k]:.1f})"
                                    if k in m.kernel_roles
                                    else ""
                                )
                                for k, v in m.roles.items()
                            ),
                            m.errors or "",
                        ]
                        for m in sel
                    ],
                    "lrrrrrlr",
                )
            )
            out.append("")
    return out


def ipc_section(
    rows: list[dict[str, str]], meta: dict[str, object], rel: str
) -> list[str]:
    ms = ipc_medians([r for r in rows if r.get("rate")])
    settings = meta.get("settings", {})
    assert isinstance(settings, dict)
    out = ["## IPC: the proxy-to-app hop alone", ""]
    out.append(
        f"`{meta.get('command', 'scripts/bench-ipc')}`: client and server are two processes on one Unix socket; "
        f"{settings.get('rounds', '?')} interleaved rounds of {settings.get('seconds_per_run', '?')} s per case, medians. "
        "Every client runs the same load loop (`drive_with` in `src/bin/uwire/bench.rs`): N workers, each "
        "sending its next request when its last one is answered; every client's tokio runtime has "
        f"the same worker threads (`BENCH_CLIENT_THREADS`: {settings.get('client_threads', 'tokio default')}). "
        "Tiny: `GET /` answered with the 18-byte "
        "greeting (gRPC: an empty message answered with it); 64 KiB: `POST /echo`, the body echoed. "
        f"`uwire serve` runs with `--max-streams {settings.get('max_streams', 2048)}` so 1,024 streams fit on "
        "one connection; the HTTP/2 and gRPC servers allow 4,096 streams, and all use uwire's windows "
        "(256 KiB per stream, 1 MiB per connection) and the global allocator of the `uwire` binary. "
        "CPU: the server process from `/proc`, the client from its rusage, per request."
    )
    out += ["", f"![IPC req/s, tiny requests]({rel}/ipc-tiny.svg)", ""]
    floors = ipc_unpinned_floors(ms)
    if floors:
        out += [
            "### Raw Unix-socket floors (`examples/bench_floor.rs`, two processes, no protocol)",
            "",
        ]
        out.append(
            md_table(
                ["floor", "rate"],
                [
                    [
                        FLOOR_TITLES.get(m.impl, m.impl),
                        f"{m.rate / 1e9:.2f} GB/s"
                        if m.unit == "bytes/s"
                        else f"{m.rate:,.0f} msgs/s",
                    ]
                    for m in floors
                ],
            )
        )
        out.append("")
    impls = [i for i in IMPL_TITLES if any(m.impl == i for m in ms)]
    out += [
        md_table(["impl", "what"], [[f"`{i}`", IMPL_TITLES[i]] for i in impls], "ll"),
        "",
    ]
    for body in sorted({m.body_size for m in ms if not m.impl.startswith("floor-")}):
        out += [
            f"### {'Tiny requests' if body == 0 else f'{body // 1024} KiB echo'}",
            "",
        ]
        table_rows = []
        for f in sorted({m.in_flight for m in ms if m.impl in impls}):
            for impl in impls:
                m = ipc_find(ms, impl, f, body)
                if m is not None:
                    table_rows.append(ipc_row(ms, m, str(f), fmt_ms, code=True))
        out.append(
            md_table(
                ["in flight", *IPC_COLUMNS],
                table_rows,
                "rlrrrrrrl",
            )
        )
        out.append("")
    pinned = ipc_pinned_rows(ms, impls, fmt_ms, code=True)
    if pinned:
        out += [
            "### One tiny request in flight, client and server pinned",
            "",
            (
                "At one request in flight every message wakes the other side, and where the "
                "scheduler puts the two processes decides much of what a wake-up costs: on a "
                "virtual machine one across CPUs can cost several times one on the same CPU, so "
                "the unpinned rows above measure the scheduler's choice as much as the protocol. "
                "Here each case runs again with both processes (and the ping-pong floor's two "
                "sides) pinned to one CPU, then to two."
            ),
            "",
            md_table(["placement", *IPC_COLUMNS], pinned, "llrrrrrrl"),
            "",
        ]
    return out


def mem_section(rows: list[dict[str, str]], meta: dict[str, object]) -> list[str]:
    out = ["## Memory", ""]
    count = rows[0]["count"] if rows else "?"
    out.append(
        f"`{meta.get('command', 'scripts/bench-mem')}`: fresh servers, warmed with a few connections, then "
        f"{count} connections or streams held at once by `examples/bench_hold.rs`; the figure is the growth of "
        "the server's resident memory (VmRSS of the process tree, settled) divided by the count, read "
        "after the held items have been idle 3 s. Idle connections have served one `GET /` (`uwire "
        "proxy` hands an idle HTTP/1.1 connection's HTTP state and buffers back after `--idle-release`, "
        "1 s); in-flight streams are `POST /echo` requests whose "
        "body never ends (the handler has answered the head and waits). nginx allocates its connection "
        "and event arrays for `worker_connections` (8,192 here) when it starts, so they are in its "
        "baseline; what it adds per idle keep-alive connection is what remains."
    )
    out.append("")
    out.append(
        md_table(
            ["server", "per", "protocol", "resident"],
            [
                [
                    r["server"],
                    r["what"],
                    r["protocol"],
                    f"{num(r, 'bytes_per_item') / 1024:.1f} KiB",
                ]
                for r in rows
            ],
            "lllr",
        )
    )
    out.append("")
    return out


def codec_section(rows: list[dict[str, str]]) -> list[str]:
    out = ["## Codec: heads and DATA frames", ""]
    out.append(
        "`scripts/bench-codec` (criterion, `benches/codec.rs`, one thread, no I/O): the same request "
        "head (method, scheme, authority, path, query and 20 header fields a desktop browser sends) "
        "decoded from a uwire/1 REQUEST frame, from its payload alone, from HTTP/1.1 text by httparse, "
        "and from a protobuf message with a `repeated Header` field (the design uwire/1 did not take); "
        "every decode reads every header name and value. Then the same heads encoded, and a 64 KiB "
        "DATA frame each way. Medians of criterion's samples. `scripts/bench-codec` builds the bench "
        "with mimalloc as the global allocator, as the `uwire` binary and the Python module are (a "
        "decoded REQUEST's head is one boxed allocation); runs made before the interleaved rows "
        "existed used the system allocator. The rows `head_decode_interleaved/*` time the frame, "
        "payload and httparse decodes back to back in each of a number of rounds (the order "
        "rotating), so all three see the same machine; the target is checked with the median of "
        "those rounds' ratios. `head_decode_interleaved_system_malloc/*`: the same rounds with the "
        "system allocator."
    )
    out.append("")
    out.append(
        md_table(
            ["benchmark", "median", "what"],
            [
                [
                    f"`{r['group']}/{r['bench']}`",
                    fmt_ns(num(r, "median_ns")),
                    r["what"],
                ]
                for r in rows
                if not r.get("ratio")
            ],
            "lrl",
        )
    )
    out.append("")
    ratios = [
        (
            "head decode: httparse / uwire REQUEST frame",
            ("head_decode", "httparse"),
            ("head_decode", "uwire_frame"),
        ),
        (
            "head decode: httparse / uwire payload",
            ("head_decode", "httparse"),
            ("head_decode", "uwire_payload"),
        ),
        (
            "head decode: prost `repeated Header` / uwire payload",
            ("head_decode", "prost_repeated_payload"),
            ("head_decode", "uwire_payload"),
        ),
        (
            "head encode: HTTP/1.1 text / uwire REQUEST frame",
            ("head_encode", "httparse_text"),
            ("head_encode", "uwire_frame"),
        ),
    ]
    lines = []
    for label, slow, fast in ratios:
        a, b = codec_median(rows, *slow), codec_median(rows, *fast)
        if not (math.isnan(a) or math.isnan(b)) and b > 0:
            lines.append([label, f"{a / b:.2f}x"])
    for r in rows:
        if r["group"].startswith("head_decode_interleaved") and r.get("ratio"):
            fast = "REQUEST frame" if r["bench"].endswith("frame") else "payload"
            lines.append(
                [
                    f"head decode: httparse / uwire {fast}, interleaved ({r['what']})",
                    f"{num(r, 'ratio'):.2f}x",
                ]
            )
    if lines:
        out.append(md_table(["ratio (> 1: uwire faster)", ""], lines, "lr"))
        out.append("")
    return out


def fmt_ns(ns: float) -> str:
    if math.isnan(ns):
        return "-"
    return f"{ns / 1000:.2f} us" if ns >= 1000 else f"{ns:.1f} ns"


def noise_note(metas: Sequence[dict[str, object]]) -> str:
    """A warning when the machine was busy as a suite started."""
    loads = []
    for m in metas:
        machine = m.get("machine", {})
        if isinstance(machine, dict):
            try:
                loads.append(float(machine.get("loadavg_at_start", "nan")))
            except ValueError:
                pass
    load = max(loads) if loads else float("nan")
    if load < 1.0:
        return f"1-minute load average at most {load:.2f} as each suite started (a quiet machine)."
    return (
        f"> **Possibly noisy run.** The 1-minute load average was {load:.2f} as a suite started. "
        "It decays over minutes, so a build that has just finished raises it too; where other work "
        "did share the two cores, absolute figures are low and the spread between rounds is wide. "
        "Ratios within this run are the meaningful part; re-run `scripts/bench-all` on a quiet "
        "machine before quoting an absolute number."
    )


def render(indir: Path, out: Path, chart_dir: Path) -> None:
    e2e, e2e_meta = load(indir, "e2e")
    ipc, ipc_meta = load(indir, "ipc")
    mem, mem_meta = load(indir, "mem")
    codec, _ = load(indir, "codec")
    if not (e2e or ipc or mem):
        raise SystemExit(f"bench-report: no e2e.csv, ipc.csv or mem.csv in {indir}")
    meta = ipc_meta or e2e_meta or mem_meta
    machine = meta.get("machine", {})
    versions = meta.get("versions", {})
    assert isinstance(machine, dict) and isinstance(versions, dict)
    chart_dir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(chart_dir, out.parent)
    doc = [
        "# Benchmarks",
        "",
        "<!-- Generated by scripts/bench-report from the CSV files of scripts/bench-all; edit the generator, not this file. -->",
        "",
        (
            f"One run of `scripts/bench-all` on {meta.get('date', '?')} at `{meta.get('git', '?')}`. Every ratio "
            "below is between rows of this one run; absolute numbers move from run to run and machine to "
            "machine."
        ),
        "",
        noise_note([m for m in (ipc_meta, e2e_meta, mem_meta) if m]),
        "",
        "## Machine and versions",
        "",
        md_table(
            ["", ""],
            [
                ["CPUs (`nproc`)", machine.get("nproc", "?")],
                ["CPU (`lscpu`)", machine.get("cpu", "?")],
                ["kernel (`uname -r`)", machine.get("kernel", "?")],
                ["memory", machine.get("memory", "?")],
            ]
            + [[k, v] for k, v in versions.items()],
            "ll",
        ),
        "",
        "## How to run",
        "",
        "```sh",
        "scripts/bench-all                # the four suites below, then this report (~30 min)",
        "scripts/bench-ipc                # IPC: uwire/1 vs hyper HTTP/1.1, h2, tonic, raw socket floors",
        "scripts/bench-e2e                # end to end through a front, wrk",
        "scripts/bench-mem                # resident memory per idle connection / in-flight stream",
        "scripts/bench-codec              # criterion: head decode / encode vs httparse, DATA frames",
        "scripts/bench-report             # this file and its charts from target/bench/*.csv",
        "scripts/bench-cost               # instructions and allocations per request (callgrind)",
        "BENCH_SMOKE=1 scripts/bench-e2e  # a 1 s run of every setup (scripts/test runs the smoke modes)",
        "```",
        "",
        (
            "Each script installs what it lacks (apt: nginx, wrk, curl; pip: uwsgi, gunicorn, granian) and "
            "builds `uwire` and the bench examples in release mode. Knobs are environment variables listed "
            "at the top of each script (`BENCH_SECS`, `BENCH_ROUNDS`, `BENCH_CONNS`, `BENCH_ONLY`, "
            "`BENCH_SERVE_ARGS`, `BENCH_PROXY_ARGS`, ...). This run:"
        ),
        "",
    ]
    for m in (ipc_meta, e2e_meta, mem_meta):
        if m:
            env = m.get("env", {})
            assert isinstance(env, dict)
            prefix = " ".join(
                f"{k}={v}"
                for k, v in env.items()
                if k not in ("BENCH_COMMAND", "BENCH_OUT")
            )
            settings = m.get("settings", {})
            assert isinstance(settings, dict)
            shown = ", ".join(
                f"{k} {json.dumps(v)}" for k, v in settings.items() if k != "setups"
            )
            doc.append(
                f"- `{(prefix + ' ') if prefix else ''}{m.get('command', '?')}`: {shown}"
            )
    doc.append("")
    targets: list[Target] = []
    if e2e:
        targets += e2e_targets(e2e_medians(e2e))
    if ipc:
        targets += ipc_targets(ipc_medians([r for r in ipc if r.get("rate")]))
    if mem:
        targets += mem_targets(mem)
    if codec:
        targets += codec_targets(codec)
    if targets:
        doc += ["## Issue 9 targets in this run", "", targets_table(targets), ""]
    if ipc:
        doc += ipc_section(ipc, ipc_meta, rel)
        ms = ipc_medians([r for r in ipc if r.get("rate")])
        (chart_dir / "ipc-tiny.svg").write_text(
            ipc_chart(ms, [i for i in IMPL_TITLES if ipc_find(ms, i)])
        )
    if e2e:
        doc += e2e_section(e2e, e2e_meta, rel)
        setups = list(dict.fromkeys(r["setup"] for r in e2e))
        (chart_dir / "e2e-get.svg").write_text(e2e_chart(e2e_medians(e2e), setups))
    if mem:
        doc += mem_section(mem, mem_meta)
    if codec:
        doc += codec_section(codec)
    doc += [
        "## Method notes",
        "",
        (
            "- Everything runs on the same two cores: load generator, front and app compete for them, as in "
            "issue 9's table. That is why a one-process setup can beat a two-process one, why the load "
            "generator's own cost caps the fastest rows, and why CPU per request grows when the machine is "
            "busy (cache and scheduler contention). One connection (c1) is the noisiest column: its rate "
            "is one chain of wakeups across processes."
        ),
        (
            "- nginx: 1 worker, `keepalive_requests 1000000` (wrk's connections are never recycled), request "
            "bodies and 1 MiB responses buffered in memory (`client_body_buffer_size 2m`, "
            "`uwsgi_buffers 64 16k`, `proxy_buffers 64 16k`), the distribution's `uwsgi_params`. "
            "gunicorn behind `proxy_pass` is reached with HTTP/1.0 and no upstream keep-alive (its sync "
            "workers close every connection anyway)."
        ),
        (
            "- uWSGI: `--master --processes 2 --listen 1024`; gunicorn: sync workers, 2; Granian: `--interface "
            "wsgi --workers 2`; all run `scripts/bench/hello_wsgi.py`. The uwire rows run the built-in demo app "
            "(a Rust handler), so they are not the same app as the Python rows: compare them with "
            "`nginx-static` and `hyper-hello` for the front's share, and with each other."
        ),
        (
            "- No setup writes a line per request: nginx has `access_log off`, uWSGI `--disable-logging`, "
            "Granian `--no-access-log`, gunicorn no access log, and `uwire proxy` / `uwire quickstart` run "
            "with `--access-log off` (their default, `stderr`, writes one line, one `write`, per request)."
        ),
        (
            "- Floors (`examples/bench_floor.rs`, blocking std sockets, the echo side a second process): "
            "ping-pong writes one message and waits for it back; the 64-in-flight floors keep 64 messages "
            "outstanding, and each side reads whatever has arrived and sends back one message per whole "
            "message received, in one `write` each (per-write) or in one `write` for all of them "
            "(batched); streaming writes 64 KiB chunks one way. uwire's fraction of a floor compares "
            "requests per second with messages per second, and 64 KiB echo bytes (both ways) with the "
            "one-way streaming rate."
        ),
        (
            "- p50/p99 come from wrk's `--latency` (coordinated omission not corrected) and, for IPC, from "
            "every request's own latency in the load loop."
        ),
        (
            f"- Charts: [`e2e-get.svg`]({rel}/e2e-get.svg), [`ipc-tiny.svg`]({rel}/ipc-tiny.svg), written by "
            "`scripts/bench-report`."
        ),
        "",
    ]
    out.write_text("\n".join(doc))
    print(f"wrote {out} and charts in {chart_dir}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--in",
        dest="indir",
        type=Path,
        default=ROOT / "target" / "bench",
        help="directory of the suites' CSV files",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "BENCHMARKS.md",
        help="the Markdown file to write",
    )
    ap.add_argument(
        "--charts",
        type=Path,
        default=None,
        help="directory of the SVG charts (default: bench/ next to --out)",
    )
    args = ap.parse_args()
    render(args.indir, args.out, args.charts or args.out.parent / "bench")


if __name__ == "__main__":
    main()
