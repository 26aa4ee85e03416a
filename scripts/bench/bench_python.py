"""scripts/bench-python: the Python runtime against its peers, same load tool,
same machine, one run, 3 interleaved rounds, medians.

HTTP (wrk, GET /, a bare WSGI hello and a Flask hello, 2 workers each):
  uwire proxy -> python -m uwire (uwire/1)      nginx -> python -m uwire (classic uwsgi)
  python -m uwire --http (one command)          nginx -> uWSGI (2 processes; and 2x4 threads)
  nginx -> gunicorn sync / gthread (UDS)        Granian WSGI direct (2 workers)
IPC (8 client threads, POST /echo with 64 bytes, client and server in separate processes):
  uwire.Client -> python -m uwire               httpx over a Unix socket -> uvicorn
  grpcio over a Unix socket -> grpcio server    uwire.Client -> uwire serve (Rust)
ASGI (wrk GET /, a Starlette and a FastAPI hello; and a WebSocket echo,
msgs/s of round trips from the websockets client; 2 workers each):
  uwire proxy -> python -m uwire (uwire/1)      nginx -> python -m uwire (classic uwsgi)
  python -m uwire --http (one command)          nginx -> uvicorn (httptools, uvloop; UDS)
  uvicorn direct    Granian ASGI direct         hypercorn direct (uvloop)
RSS per worker for every server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import smoke

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"
PY = sys.executable
HELLO = b"Hello from uwire!\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        full = dict(os.environ)
        full.update(env or {})
        # The child keeps its own copy of the log's descriptor.
        with open(self.tmp / f"{name}.log", "wb") as log:
            p = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full,
                cwd=cwd or BENCH,
                start_new_session=True,
            )
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def wait_http(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = s.recv(4096)
                if data.startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench-python: nothing answers 200 on port {port}")


def wait_path(p: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.exists():
            return
        time.sleep(0.05)
    raise SystemExit(f"bench-python: {p} never appeared")


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def rss_mib(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def pss_mib(pid: int) -> float:
    """Proportional set size: shared pages (the code, what a worker shares
    with its master) divided among the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def nginx_conf(tmp: Path, name: str, port: int, location: str) -> Path:
    user = "user root;\n" if os.geteuid() == 0 else ""
    d = tmp / name
    d.mkdir()
    conf = d / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
  uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
  upstream gunicorn {{ server {location.split(" ", 1)[-1]}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ {location_block(location)} }} }}
}}
""")
    return conf


def location_block(location: str) -> str:
    kind, target = location.split(" ", 1)
    if kind == "uwsgi":
        return f"include /etc/nginx/uwsgi_params; uwsgi_pass {target};"
    if kind == "ws":
        return (
            "proxy_pass http://gunicorn; proxy_http_version 1.1; "
            "proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; "
            "proxy_set_header Host $host;"
        )
    return (
        "proxy_pass http://gunicorn; proxy_http_version 1.1; "
        'proxy_set_header Connection ""; proxy_set_header Host $host;'
    )


class Target:
    """One server configuration: started once, measured in every round."""

    def __init__(
        self, name: str, start: Callable[[Procs, Path], tuple[int, list[int]]]
    ) -> None:
        self.name = name
        self.start = start
        self.port = 0
        self.workers: list[int] = []
        self.rps: list[float] = []
        self.p99: list[float] = []
        self.rss: float = 0.0
        self.pss: float = 0.0


def wrk(port: int, secs: int, conns: int) -> tuple[float, float, str]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{secs}s",
            "--latency",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    p99 = 0.0
    if m:
        p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = " ".join(
        line.strip()
        for line in out.splitlines()
        if "Non-2xx" in line or "Socket errors" in line
    )
    return rps, p99, errors


def uwire_bin() -> str:
    return str(REPO / "target" / "release" / "uwire")


def start_uwire_http(
    procs: Procs, tag: str, app: str, interface: str
) -> tuple[int, list[int]]:
    """`python -m uwire --http` (one command: the HTTP front and 2 workers);
    its port and its workers' pids."""
    port = free_port()
    master = procs.start(
        f"uwire-http-{tag}",
        [
            PY,
            "-m",
            "uwire",
            "--workers",
            "2",
            "--http",
            f"127.0.0.1:{port}",
            "--interface",
            interface,
            "--log-level",
            "warning",
            "--timeout",
            "0",
            app,
        ],
    )
    wait_http(port)
    time.sleep(1.0)
    # The front is a child too (the first started); report the workers only
    # (the front's own RSS is the proxy's).
    kids = children(master.pid)
    return port, sorted(kids)[1:] if len(kids) > 2 else kids


def http_targets(app_wsgi: str, tag: str) -> list[Target]:
    """The servers for one app (`module:callable` inside scripts/bench)."""

    def uwire_py(protocol_front: str) -> Callable[[Procs, Path], tuple[int, list[int]]]:
        def start(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
            sock = tmp / f"uw-{tag}-{protocol_front}.sock"
            master = procs.start(
                f"uwire-{tag}-{protocol_front}",
                [
                    PY,
                    "-m",
                    "uwire",
                    "--workers",
                    "2",
                    "--bind",
                    f"unix:{sock}",
                    "--log-level",
                    "warning",
                    "--timeout",
                    "0",
                    app_wsgi,
                ],
            )
            wait_path(sock)
            time.sleep(1.0)
            port = free_port()
            if protocol_front == "proxy":
                procs.start(
                    f"proxy-{tag}",
                    [
                        uwire_bin(),
                        "proxy",
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--upstream",
                        f"unix:{sock}",
                    ],
                    env={"UWIRE_LOG": "warn"},
                )
            else:
                conf = nginx_conf(tmp, f"nginx-uw-{tag}", port, f"uwsgi unix:{sock}")
                procs.start(
                    f"nginx-uw-{tag}",
                    ["nginx", "-c", str(conf), "-p", str(conf.parent)],
                )
            wait_http(port)
            return port, children(master.pid)

        return start

    def uwire_http(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
        return start_uwire_http(procs, tag, app_wsgi, "wsgi")

    def uwsgi(threads: int) -> Callable[[Procs, Path], tuple[int, list[int]]]:
        def start(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
            sock = tmp / f"uwsgi-{tag}-{threads}.sock"
            module, _, attr = app_wsgi.partition(":")
            argv = [
                "uwsgi",
                "--socket",
                str(sock),
                "--chmod-socket=666",
                "--module",
                f"{module}:{attr}",
                "--master",
                "--processes",
                "2",
                "--disable-logging",
                "--die-on-term",
                "--chdir",
                str(BENCH),
            ]
            if threads > 1:
                argv += ["--threads", str(threads)]
            master = procs.start(f"uwsgi-{tag}-{threads}", argv)
            wait_path(sock)
            port = free_port()
            conf = nginx_conf(
                tmp, f"nginx-uwsgi-{tag}-{threads}", port, f"uwsgi unix:{sock}"
            )
            procs.start(
                f"nginx-uwsgi-{tag}-{threads}",
                ["nginx", "-c", str(conf), "-p", str(conf.parent)],
            )
            wait_http(port)
            return port, children(master.pid)

        return start

    def gunicorn(kind: str) -> Callable[[Procs, Path], tuple[int, list[int]]]:
        def start(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
            sock = tmp / f"gunicorn-{tag}-{kind}.sock"
            argv = [
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"unix:{sock}",
                "--log-level",
                "warning",
                app_wsgi,
            ]
            if kind == "gthread":
                argv[1:1] = ["--worker-class", "gthread", "--threads", "4"]
            master = procs.start(f"gunicorn-{tag}-{kind}", argv)
            wait_path(sock)
            port = free_port()
            conf = nginx_conf(
                tmp, f"nginx-gunicorn-{tag}-{kind}", port, f"http unix:{sock}"
            )
            procs.start(
                f"nginx-gunicorn-{tag}-{kind}",
                ["nginx", "-c", str(conf), "-p", str(conf.parent)],
            )
            wait_http(port)
            time.sleep(1.0)
            return port, children(master.pid)

        return start

    def granian(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
        port = free_port()
        master = procs.start(
            f"granian-{tag}",
            [
                "granian",
                "--interface",
                "wsgi",
                "--workers",
                "2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                app_wsgi,
            ],
        )
        wait_http(port)
        time.sleep(1.0)
        return port, children(master.pid)

    return [
        Target(f"{tag}: uwire proxy -> uwire python (uwire/1)", uwire_py("proxy")),
        Target(f"{tag}: uwire python --http (one command)", uwire_http),
        Target(f"{tag}: nginx -> uwire python (uwsgi)", uwire_py("nginx")),
        Target(f"{tag}: nginx -> uWSGI 2 procs", uwsgi(1)),
        Target(f"{tag}: nginx -> uWSGI 2 procs x 4 threads", uwsgi(4)),
        Target(f"{tag}: nginx -> gunicorn sync", gunicorn("sync")),
        Target(f"{tag}: nginx -> gunicorn gthread 4", gunicorn("gthread")),
        Target(f"{tag}: Granian WSGI direct", granian),
    ]


def asgi_targets(app: str, tag: str) -> list[Target]:
    """ASGI servers for `module:callable` inside scripts/bench."""

    def uwire_py(front: str) -> Callable[[Procs, Path], tuple[int, list[int]]]:
        def start(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
            sock = tmp / f"uw-{tag}-{front}.sock"
            master = procs.start(
                f"uwire-{tag}-{front}",
                [
                    PY,
                    "-m",
                    "uwire",
                    "--workers",
                    "2",
                    "--bind",
                    f"unix:{sock}",
                    "--interface",
                    "asgi",
                    "--log-level",
                    "warning",
                    "--timeout",
                    "0",
                    app,
                ],
            )
            wait_path(sock)
            time.sleep(1.0)
            port = free_port()
            if front == "proxy":
                procs.start(
                    f"proxy-{tag}",
                    [
                        uwire_bin(),
                        "proxy",
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--upstream",
                        f"unix:{sock}",
                        "--access-log",
                        "off",
                    ],
                    env={"UWIRE_LOG": "warn"},
                )
            else:
                conf = nginx_conf(tmp, f"nginx-uw-{tag}", port, f"uwsgi unix:{sock}")
                procs.start(
                    f"nginx-uw-{tag}",
                    ["nginx", "-c", str(conf), "-p", str(conf.parent)],
                )
            wait_http(port)
            return port, children(master.pid)

        return start

    def uwire_http(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
        return start_uwire_http(procs, tag, app, "asgi")

    def uvicorn(behind_nginx: bool) -> Callable[[Procs, Path], tuple[int, list[int]]]:
        def start(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
            port = free_port()
            argv = [
                PY,
                "-m",
                "uvicorn",
                "--workers",
                "2",
                "--log-level",
                "warning",
                "--no-access-log",
                "--http",
                "httptools",
                "--loop",
                "uvloop",
                app,
            ]
            if behind_nginx:
                sock = tmp / f"uvicorn-{tag}.sock"
                master = procs.start(
                    f"uvicorn-{tag}-nginx", argv + ["--uds", str(sock)]
                )
                wait_path(sock)
                kind = "ws" if tag == "ws" else "http"
                conf = nginx_conf(
                    tmp, f"nginx-uvicorn-{tag}", port, f"{kind} unix:{sock}"
                )
                procs.start(
                    f"nginx-uvicorn-{tag}",
                    ["nginx", "-c", str(conf), "-p", str(conf.parent)],
                )
            else:
                master = procs.start(
                    f"uvicorn-{tag}",
                    argv + ["--host", "127.0.0.1", "--port", str(port)],
                )
            wait_http(port)
            time.sleep(1.0)
            return port, children(master.pid)

        return start

    def granian(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
        port = free_port()
        master = procs.start(
            f"granian-asgi-{tag}",
            [
                "granian",
                "--interface",
                "asgi",
                "--workers",
                "2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--loop",
                "uvloop",
                app,
            ],
        )
        wait_http(port)
        time.sleep(1.0)
        return port, children(master.pid)

    def hypercorn(procs: Procs, tmp: Path) -> tuple[int, list[int]]:
        port = free_port()
        master = procs.start(
            f"hypercorn-{tag}",
            [
                PY,
                "-m",
                "hypercorn",
                "--workers",
                "2",
                "--worker-class",
                "uvloop",
                "--bind",
                f"127.0.0.1:{port}",
                app,
            ],
        )
        wait_http(port)
        time.sleep(1.0)
        return port, children(master.pid)

    return [
        Target(f"{tag}: uwire proxy -> uwire python (uwire/1)", uwire_py("proxy")),
        Target(f"{tag}: nginx -> uwire python (uwsgi)", uwire_py("nginx")),
        Target(f"{tag}: uwire python --http (one command)", uwire_http),
        Target(f"{tag}: nginx -> uvicorn", uvicorn(True)),
        Target(f"{tag}: uvicorn direct", uvicorn(False)),
        Target(f"{tag}: Granian ASGI direct", granian),
        Target(f"{tag}: hypercorn direct", hypercorn),
    ]


def ws_rate(port: int, args: argparse.Namespace) -> float:
    out = subprocess.run(
        [
            PY,
            str(BENCH / "ws_load.py"),
            f"ws://127.0.0.1:{port}/ws",
            str(args.ws_procs),
            str(args.ws_sockets),
            str(args.secs),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=args.secs + 120,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run_asgi(args: argparse.Namespace, tmp: Path) -> list[Target]:
    targets = asgi_targets("asgi_hello:starlette_app", "starlette")
    targets += asgi_targets("asgi_hello:fastapi_app", "fastapi")
    targets += [
        Target(t.name.replace("ws: ", "websocket echo: ", 1), t.start)
        for t in asgi_targets("asgi_hello:starlette_app", "ws")
    ]
    if args.only:
        targets = [t for t in targets if any(o in t.name for o in args.only)]
    procs = Procs(tmp)
    try:
        for t in targets:
            t.port, t.workers = t.start(procs, tmp)
        for rnd in range(args.rounds):
            print(f"ASGI round {rnd + 1}/{args.rounds}", file=sys.stderr)
            for t in targets:
                if t.name.startswith("websocket echo"):
                    rate, p99, errors = ws_rate(t.port, args), 0.0, ""
                else:
                    rate, p99, errors = wrk(t.port, args.secs, args.conns)
                t.rps.append(rate)
                t.p99.append(p99)
                print(
                    f"  {t.name:52s} {rate:10.0f} /s  p99 {p99:7.2f} ms {errors}",
                    file=sys.stderr,
                )
        for t in targets:
            live = [p for p in t.workers if rss_mib(p) > 0]
            t.rss = statistics.mean(rss_mib(p) for p in live) if live else 0.0
            t.pss = statistics.mean(pss_mib(p) for p in live) if live else 0.0
    finally:
        procs.stop_all()
    return targets


def report_asgi(args: argparse.Namespace, targets: list[Target]) -> None:
    print(
        f"\nASGI: wrk -t1 -c{args.conns} -d{args.secs}s GET / (req/s); WebSocket echo: "
        f"{args.ws_procs} client processes x {args.ws_sockets} sockets, 32-byte text round "
        f"trips (msgs/s); medians of {args.rounds} interleaved rounds, 2 workers each"
    )
    print(
        f"{'server':56s} {'rate/s':>9s} {'p99 ms':>8s} {'RSS/worker':>11s} {'PSS/worker':>11s}"
    )
    by_name = {t.name: t for t in targets}
    for t in targets:
        print(
            f"{t.name:56s} {statistics.median(t.rps):9.0f} "
            f"{statistics.median(t.p99):8.2f} {t.rss:11.1f} {t.pss:11.1f}"
        )
    for tag in ("starlette", "fastapi", "websocket echo"):
        ours = by_name.get(f"{tag}: uwire proxy -> uwire python (uwire/1)")
        if ours is None:
            continue
        o = statistics.median(ours.rps)
        print(f"\nratios ({tag}): uwire proxy -> uwire python vs")
        for t in targets:
            if t.name.startswith(tag) and t is not ours:
                print(
                    f"  {t.name[len(tag) + 2 :]:52s} {o / statistics.median(t.rps):5.2f}x"
                )


def run_http(args: argparse.Namespace, tmp: Path) -> list[Target]:
    targets = http_targets("hello_wsgi:application", "hello")
    targets += http_targets("flask_hello:app", "flask")
    if args.only:
        targets = [t for t in targets if any(o in t.name for o in args.only)]
    procs = Procs(tmp)
    try:
        for t in targets:
            t.port, t.workers = t.start(procs, tmp)
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr)
            for t in targets:
                rps, p99, errors = wrk(t.port, args.secs, args.conns)
                t.rps.append(rps)
                t.p99.append(p99)
                print(
                    f"  {t.name:48s} {rps:10.0f} req/s  p99 {p99:7.2f} ms {errors}",
                    file=sys.stderr,
                )
        for t in targets:
            live = [p for p in t.workers if rss_mib(p) > 0]
            t.rss = statistics.mean(rss_mib(p) for p in live) if live else 0.0
            t.pss = statistics.mean(pss_mib(p) for p in live) if live else 0.0
    finally:
        procs.stop_all()
    return targets


def ipc_clients(args: argparse.Namespace, tmp: Path) -> list[tuple[str, float]]:
    procs = Procs(tmp)
    payload = b"x" * 64
    results: list[tuple[str, float]] = []
    try:
        uw_sock = tmp / "echo-uwire.sock"
        procs.start(
            "echo-uwire",
            [
                PY,
                "-m",
                "uwire",
                "--workers",
                "2",
                "--threads",
                "2",
                "--bind",
                f"unix:{uw_sock}",
                "--log-level",
                "warning",
                "echo_wsgi:application",
            ],
        )
        rust_sock = tmp / "echo-rust.sock"
        procs.start(
            "echo-rust",
            [uwire_bin(), "serve", "--bind", f"unix:{rust_sock}"],
            env={"UWIRE_LOG": "warn"},
        )
        http_sock = tmp / "echo-http.sock"
        procs.start(
            "echo-uvicorn",
            [
                PY,
                "-m",
                "uvicorn",
                "--uds",
                str(http_sock),
                "--workers",
                "2",
                "--log-level",
                "warning",
                "--no-access-log",
                "echo_asgi:app",
            ],
        )
        grpc_sock = tmp / "echo-grpc.sock"
        procs.start(
            "echo-grpc", [PY, str(BENCH / "grpc_echo.py"), "serve", str(grpc_sock)]
        )
        for s in (uw_sock, rust_sock, http_sock, grpc_sock):
            wait_path(s)
        time.sleep(1.5)

        import grpc
        import httpx
        import uwire

        uw = uwire.Client(f"unix:{uw_sock}")
        rust = uwire.Client(f"unix:{rust_sock}")
        hx = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(http_sock)), base_url="http://echo"
        )
        channel = grpc.insecure_channel(f"unix:{grpc_sock}")
        stub = channel.unary_unary("/uwire.bench.Echo/Echo")

        def uw_call() -> None:
            assert uw.request("POST", "/echo", body=payload).read() == payload

        def rust_call() -> None:
            assert rust.request("POST", "/echo", body=payload).read() == payload

        def hx_call() -> None:
            assert hx.post("/echo", content=payload).content == payload

        def grpc_call() -> None:
            assert stub(payload, timeout=10) == payload

        calls = [
            ("uwire.Client -> python -m uwire (echo)", uw_call),
            ("httpx (UDS) -> uvicorn (echo)", hx_call),
            ("grpcio (UDS) -> grpcio server (echo)", grpc_call),
            ("uwire.Client -> uwire serve (Rust echo)", rust_call),
        ]
        for f in (c[1] for c in calls):
            f()
        samples: dict[str, list[float]] = {n: [] for n, _ in calls}
        for rnd in range(args.rounds):
            print(f"IPC round {rnd + 1}/{args.rounds}", file=sys.stderr)
            for name, f in calls:
                rate = closed_loop(f, args.ipc_threads, args.ipc_secs)
                samples[name].append(rate)
                print(f"  {name:44s} {rate:10.0f} req/s", file=sys.stderr)
        for name, _ in calls:
            results.append((name, statistics.median(samples[name])))
        hx.close()
        channel.close()
    finally:
        procs.stop_all()
    return results


def closed_loop(f: Callable[[], None], threads: int, secs: float) -> float:
    stop = time.monotonic() + secs
    counts = [0] * threads

    def work(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            f()
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # BENCH_SMOKE=1 (scripts/test): every setup once, briefly, so the
    # script keeps working; the figures mean nothing.
    quick = smoke()
    p.add_argument(
        "--secs", type=int, default=1 if quick else 8, help="seconds per wrk run (8)"
    )
    p.add_argument("--conns", type=int, default=32, help="wrk connections (32)")
    p.add_argument(
        "--rounds", type=int, default=1 if quick else 3, help="interleaved rounds (3)"
    )
    p.add_argument("--ipc-threads", type=int, default=8, help="IPC client threads (8)")
    p.add_argument(
        "--ipc-secs",
        type=float,
        default=0.5 if quick else 5.0,
        help="seconds per IPC run (5)",
    )
    p.add_argument("--skip-http", action="store_true")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="measure only the HTTP targets whose name contains this (repeatable)",
    )
    p.add_argument("--skip-ipc", action="store_true")
    p.add_argument("--skip-asgi", action="store_true")
    p.add_argument(
        "--ws-procs",
        type=int,
        default=1 if quick else 2,
        help="WebSocket client processes (2)",
    )
    p.add_argument(
        "--ws-sockets",
        type=int,
        default=2 if quick else 16,
        help="WebSocket sockets per client process (16)",
    )
    args = p.parse_args()
    for tool in ("wrk", "nginx", "uwsgi", "gunicorn", "granian", "hypercorn"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench-python: {tool} is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="uwb-", dir="/tmp"))
    try:
        if not args.skip_http:
            targets = run_http(args, tmp)
            print(
                f"\nHTTP: wrk -t1 -c{args.conns} -d{args.secs}s GET /, medians of "
                f"{args.rounds} interleaved rounds, 2 workers each"
            )
            print(
                f"{'server':52s} {'req/s':>9s} {'p99 ms':>8s} {'RSS/worker':>11s} {'PSS/worker':>11s}"
            )
            by_name: dict[str, Target] = {}
            for t in targets:
                by_name[t.name] = t
                print(
                    f"{t.name:52s} {statistics.median(t.rps):9.0f} "
                    f"{statistics.median(t.p99):8.2f} {t.rss:11.1f} {t.pss:11.1f}"
                )
            for tag in ("hello", "flask"):
                if f"{tag}: nginx -> uWSGI 2 procs" not in by_name:
                    continue
                base = by_name[f"{tag}: nginx -> uWSGI 2 procs"]
                ref = statistics.median(base.rps)
                print(f"\nratios ({tag}) vs nginx -> uWSGI 2 procs:")
                for t in targets:
                    if t.name.startswith(tag):
                        print(
                            f"  {t.name[len(tag) + 2 :]:48s} {statistics.median(t.rps) / ref:5.2f}x"
                        )
                gran = by_name.get(f"{tag}: Granian WSGI direct")
                ours = by_name.get(f"{tag}: uwire proxy -> uwire python (uwire/1)")
                gun = by_name.get(f"{tag}: nginx -> gunicorn sync")
                if not (gran and ours and gun):
                    continue
                print(
                    f"  uwire proxy -> uwire python vs Granian direct: "
                    f"{statistics.median(ours.rps) / statistics.median(gran.rps):.2f}x; "
                    f"vs nginx -> gunicorn sync: "
                    f"{statistics.median(ours.rps) / statistics.median(gun.rps):.2f}x"
                )
        if not args.skip_asgi:
            report_asgi(args, run_asgi(args, tmp))
        if not args.skip_ipc:
            res = ipc_clients(args, tmp)
            print(
                f"\nIPC: {args.ipc_threads} client threads, POST /echo 64 bytes, medians of "
                f"{args.rounds} rounds of {args.ipc_secs:.0f}s"
            )
            for name, rate in res:
                print(f"  {name:44s} {rate:9.0f} req/s")
            d = dict(res)
            ours = d["uwire.Client -> python -m uwire (echo)"]
            print(
                f"  uwire.Client vs httpx: {ours / d['httpx (UDS) -> uvicorn (echo)']:.2f}x; "
                f"vs grpcio: {ours / d['grpcio (UDS) -> grpcio server (echo)']:.2f}x"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
