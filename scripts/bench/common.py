"""Shared plumbing of the benchmark suites (scripts/bench-ipc, bench-e2e,
bench-mem, bench-report): starting and stopping the processes a suite owns,
waiting for them, CPU and memory from /proc, wrk runs, medians, CSV files and
the description of the machine and of every peer's version.

Standard library only. Every process a suite starts gets its own session
(process group) and is stopped by that id when the suite ends, never by name.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "target" / "release"
UWIRE = RELEASE / "uwire"
EXAMPLES = RELEASE / "examples"
BENCH_DIR = ROOT / "scripts" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def smoke() -> bool:
    """BENCH_SMOKE=1: a second per run, one round, to keep the scripts alive."""
    return os.environ.get("BENCH_SMOKE", "") not in ("", "0")


def env_float(name: str, default: float) -> float:
    v = os.environ.get(name)
    return float(v) if v else default


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v else default


def env_list(name: str, default: Sequence[int]) -> list[int]:
    v = os.environ.get(name)
    return [int(x) for x in v.split(",") if x.strip()] if v else list(default)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def die(msg: str) -> NoReturn:
    log(f"bench: {msg}")
    raise SystemExit(1)


# ---------------------------------------------------------------- processes


@dataclass
class Proc:
    """A process (and its children) the suite started."""

    name: str
    popen: subprocess.Popen[bytes]
    logfile: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(
                self.logfile.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""


@dataclass
class Procs:
    """Every process of a suite; stops them all (by process group) on exit."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str | Path],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> Proc:
        logfile = self.workdir / f"{name}.log"
        full_env = dict(os.environ)
        full_env.setdefault("UWIRE_LOG", "warn")
        if env:
            full_env.update(env)
        with open(logfile, "wb") as out:
            p = subprocess.Popen(
                [str(a) for a in argv],
                stdin=stdin,
                stdout=out if stdout is None else stdout,
                stderr=out,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        proc = Proc(name, p, logfile)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 5.0) -> None:
        if proc.alive():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(grace)
        # Children that outlive their parent (workers) are in the same group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            self.stop(p)


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"uwire-{prefix}."))


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and that no earlier
    call in this process returned: the kernel may hand a released port back,
    and two servers told to listen on one port would clash."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def wait_until(
    what: str, check: object, timeout: float, proc: Proc | None = None
) -> None:
    """Polls `check()` until it is true; fails with the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            die(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)
    tail = f":\n{proc.tail()}" if proc else ""
    die(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def http_ok(port: int, path: str = "/") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_http(port: int, proc: Proc | None = None, timeout: float = 60) -> None:
    wait_until(f"HTTP 200 on 127.0.0.1:{port}", lambda: http_ok(port), timeout, proc)


def wait_socket(path: Path, proc: Proc | None = None, timeout: float = 60) -> None:
    def connects() -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
        return True

    wait_until(f"socket {path}", connects, timeout, proc)


# ---------------------------------------------------------------- /proc


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pids: Iterable[int]) -> list[int]:
    """The given processes and all their descendants."""
    kids = children_map()
    out: list[int] = []
    todo = list(pids)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pid: int, kernel_only: bool = False) -> int:
    """utime + stime of one process (stime alone with `kernel_only`), in
    clock ticks (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    f = stat[stat.rindex(")") + 2 :].split()
    return int(f[12]) if kernel_only else int(f[11]) + int(f[12])


def cpu_snapshot(
    roles: Mapping[str, Sequence[int]], kernel_only: bool = False
) -> dict[str, dict[int, int]]:
    return {
        role: {p: cpu_ticks(p, kernel_only) for p in tree(pids)}
        for role, pids in roles.items()
    }


def cpu_seconds(
    before: Mapping[str, Mapping[int, int]],
    roles: Mapping[str, Sequence[int]],
    kernel_only: bool = False,
) -> dict[str, float]:
    """CPU seconds each role spent since `before` (processes born since
    count from zero); with `kernel_only`, those in the kernel (`before`
    taken the same way)."""
    out = {}
    for role, pids in roles.items():
        ticks = 0
        for p in tree(pids):
            ticks += max(0, cpu_ticks(p, kernel_only) - before[role].get(p, 0))
        out[role] = ticks / CLK_TCK
    return out


def rss_kb(pids: Iterable[int]) -> int:
    """Resident set (kB) of the processes and their descendants."""
    total = 0
    for p in tree(pids):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def settled_rss_kb(pids: Sequence[int], timeout: float = 5.0) -> int:
    """RSS once it stops moving (three samples 200 ms apart within 0.5%)."""
    samples = [rss_kb(pids)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        samples.append(rss_kb(pids))
        last = samples[-3:]
        if len(last) == 3 and max(last) - min(last) <= max(8, max(last) // 200):
            break
    return samples[-1]


# ---------------------------------------------------------------- load tools


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_us: float
    p90_us: float
    p99_us: float
    errors: int
    error_text: str


_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 6e7}


def _lat_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNIT_US[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.MULTILINE)
        return _lat_us(m.group(1)) if m else float("nan")

    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise ValueError(f"unexpected wrk output:\n{out}")
    requests = int(m.group(1))
    seconds = float(m.group(2)) * _UNIT_US[m.group(3)] / 1e6
    errors = 0
    texts = []
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if n2:
        errors += int(n2.group(1))
        texts.append(f"non-2xx {n2.group(1)}")
    se = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if se:
        errors += sum(int(x) for x in se.groups())
        texts.append("socket errors c{} r{} w{} t{}".format(*se.groups()))
    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rps = float(rps_m.group(1)) if rps_m else requests / seconds
    return WrkResult(
        requests,
        seconds,
        rps,
        pct("50"),
        pct("90"),
        pct("99"),
        errors,
        "; ".join(texts),
    )


def wrk(
    url: str, conns: int, secs: float, threads: int = 1, script: Path | None = None
) -> WrkResult:
    argv = [
        "wrk",
        f"-t{min(threads, conns)}",
        f"-c{conns}",
        f"-d{max(1, round(secs))}s",
        "--latency",
    ]
    argv += ["--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    r = subprocess.run(
        argv, capture_output=True, text=True, timeout=secs + 60, check=False
    )
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return parse_wrk(r.stdout)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(r.ru_utime + r.ru_stime)


def run_json(
    argv: Sequence[str | Path],
    timeout: float,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> tuple[dict[str, object], float]:
    """Runs a bench client that prints one JSON line; returns that object
    and the client's own CPU seconds (the growth of RUSAGE_CHILDREN while
    it ran: servers are reaped only when a suite ends, so the client is the
    only child reaped in between). `env`: variables added to the client's
    environment; `cpus`: the CPUs it may run on (set by `taskset` before it
    starts, so every thread it starts inherits them), unset for the
    scheduler's choice."""
    before = _children_cpu()
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    p = subprocess.Popen(
        [*pin, *(str(a) for a in argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, **env} if env else None,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise RuntimeError(
            f"{' '.join(map(str, argv[:3]))}: timed out after {timeout:.0f}s"
        ) from None
    cpu = _children_cpu() - before
    if p.returncode != 0:
        raise RuntimeError(
            f"{Path(str(argv[0])).name} {argv[1]} failed ({p.returncode}): "
            f"{err.decode(errors='replace')[-800:]}"
        )
    line = out.decode().strip().splitlines()[-1]
    return json.loads(line), cpu


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Moves every thread of process `pid` to `cpus` (threads it starts
    later inherit the mask of the thread that starts them)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, FileNotFoundError):
            pass  # the thread has ended meanwhile


def median(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- files


def write_csv(
    path: Path, header: Sequence[str], rows: Iterable[Mapping[str, object]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(header), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(v) for k, v in r.items()})


def _fmt(v: object) -> object:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}" if abs(v) < 1e6 else f"{v:.1f}"
    return v


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cmd_version(argv: Sequence[str], pattern: str = r"(\d+\.\d+(?:\.\d+)?)") -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        r = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(pattern, r.stdout + r.stderr)
    return m.group(1) if m else (r.stdout + r.stderr).strip()[:60]


def lock_versions(names: Sequence[str]) -> dict[str, str]:
    """Versions of crates in Cargo.lock (the newest if several)."""
    text = (ROOT / "Cargo.lock").read_text()
    out: dict[str, str] = {}
    for m in re.finditer(
        r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text
    ):
        if m.group(1) in names:
            out[m.group(1)] = m.group(2)
    return out


def machine() -> dict[str, str]:
    model = ""
    try:
        r = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, check=False
        )
        m = re.search(r"Model name:\s+(.+)", r.stdout)
        model = m.group(1).strip() if m else ""
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "loadavg_at_start": Path("/proc/loadavg").read_text().split(" ")[0],
    }


def versions() -> dict[str, str]:
    v = {
        "nginx": _cmd_version(["nginx", "-v"]),
        "uWSGI": _cmd_version(["uwsgi", "--version"]),
        "gunicorn": _cmd_version(["gunicorn", "--version"]),
        "Granian": _cmd_version(["granian", "--version"]),
        "wrk": _cmd_version(["wrk", "-v"], r"wrk (\S+)"),
        "Python": platform.python_version(),
        "rustc": _cmd_version(["rustc", "--version"], r"rustc (\S+)"),
    }
    v.update(lock_versions(["hyper", "hyper-util", "h2", "tonic", "tokio", "prost"]))
    return v


def git_rev() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return r.stdout.strip()
    except OSError:
        return "unknown"


def write_meta(csv_path: Path, suite: str, settings: Mapping[str, object]) -> None:
    """`<csv>.meta.json`: what, where and how a suite ran."""
    meta = {
        "suite": suite,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": git_rev(),
        "command": " ".join(
            [os.environ.get("BENCH_COMMAND", sys.argv[0])] + sys.argv[1:]
        ),
        "env": {k: v for k, v in os.environ.items() if k.startswith("BENCH_")},
        "machine": machine(),
        "versions": versions(),
        "settings": dict(settings),
    }
    Path(f"{csv_path}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def exit_on_sigterm() -> None:
    """`timeout` sends SIGTERM: unwind (so `finally` stops the servers)."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(f"bench: stopped by signal {signum} (BENCH_TIMEOUT?)")

    signal.signal(signal.SIGTERM, handler)
