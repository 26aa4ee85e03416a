"""The setups of the end-to-end suite (scripts/bench-e2e): what runs behind
each port, started once for the whole run. Each setup names its processes
by role (nginx, uwsgi, proxy, serve, ...) so the suite can charge CPU time
to each of them.

Knobs are environment variables, read here so a run is easy to adjust.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    BENCH_DIR,
    EXAMPLES,
    UWIRE,
    Proc,
    Procs,
    die,
    env_int,
    free_port,
    log,
    wait_http,
    wait_socket,
)

# ---- knobs: environment variables, so a run is easy to adjust -------------
NGINX_WORKERS = env_int("BENCH_NGINX_WORKERS", 1)
# uWSGI processes, gunicorn and Granian workers.
APP_PROCESSES = env_int("BENCH_APP_PROCESSES", 2)
# Extra arguments of the uwire commands (e.g. "--threads 2" once it exists).
SERVE_ARGS = shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))
PROXY_ARGS = shlex.split(os.environ.get("BENCH_PROXY_ARGS", ""))
QUICKSTART_ARGS = shlex.split(os.environ.get("BENCH_QUICKSTART_ARGS", ""))
# The one-thread rows: this environment, plus `--threads 1` when the uwire
# commands have that flag (override with BENCH_ONE_THREAD_ARGS).
ONE_THREAD_ENV = {"TOKIO_WORKER_THREADS": "1"}
HYPER_THREADS = env_int("BENCH_HYPER_THREADS", 1)
ONLY = [s for s in os.environ.get("BENCH_ONLY", "").split(",") if s]
ECHO_BYTES = 1 << 20


def one_thread_args() -> list[str]:
    if "BENCH_ONE_THREAD_ARGS" in os.environ:
        return shlex.split(os.environ["BENCH_ONE_THREAD_ARGS"])
    r = subprocess.run(
        [str(UWIRE), "serve", "--help"], capture_output=True, text=True, check=False
    )
    return ["--threads", "1"] if "--threads" in r.stdout else []


@dataclass
class Setup:
    name: str
    title: str
    port: int = 0
    roles: dict[str, list[Proc]] = field(default_factory=dict)
    echo: bool = True
    broken: str = ""

    def role_pids(self) -> dict[str, list[int]]:
        return {k: [p.pid for p in v] for k, v in self.roles.items()}

    def check_alive(self) -> None:
        for procs in self.roles.values():
            for p in procs:
                if not p.alive() and not self.broken:
                    self.broken = f"{p.name} exited:\n{p.tail()}"


NGINX_CONF = """{user_line}
daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  default_type text/plain;
  keepalive_requests 1000000;
  client_body_temp_path {dir}/cb; proxy_temp_path {dir}/pt; fastcgi_temp_path {dir}/ft;
  uwsgi_temp_path {dir}/ut; scgi_temp_path {dir}/st;
  # The 1 MiB echo stays in memory: request body and response buffers.
  client_max_body_size 2m; client_body_buffer_size 2m;
  uwsgi_buffers 64 16k; proxy_buffers 64 16k;
{servers}
}}
"""

UWSGI_PARAMS_FALLBACK = """
uwsgi_param QUERY_STRING $query_string;
uwsgi_param REQUEST_METHOD $request_method;
uwsgi_param CONTENT_TYPE $content_type;
uwsgi_param CONTENT_LENGTH $content_length;
uwsgi_param REQUEST_URI $request_uri;
uwsgi_param PATH_INFO $document_uri;
uwsgi_param DOCUMENT_ROOT $document_root;
uwsgi_param SERVER_PROTOCOL $server_protocol;
uwsgi_param REQUEST_SCHEME $scheme;
uwsgi_param HTTPS $https if_not_empty;
uwsgi_param REMOTE_ADDR $remote_addr;
uwsgi_param REMOTE_PORT $remote_port;
uwsgi_param SERVER_PORT $server_port;
uwsgi_param SERVER_NAME $server_name;
"""


class Setups:
    """Every setup of a run and the processes behind them."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        self.procs = Procs(dir)
        self.setups: list[Setup] = []
        self.nginx_servers: list[str] = []
        self.nginx_setups: list[Setup] = []

    def want(self, name: str) -> bool:
        return not ONLY or name in ONLY

    # ---- starting the setups
    def add(self, s: Setup) -> Setup:
        self.setups.append(s)
        return s

    def uwsgi_params(self) -> str:
        system = Path("/etc/nginx/uwsgi_params")
        if system.exists():
            return str(system)
        path = self.dir / "uwsgi_params"
        path.write_text(UWSGI_PARAMS_FALLBACK)
        return str(path)

    def nginx_front(self, s: Setup, location: str) -> None:
        s.port = free_port()
        self.nginx_servers.append(
            f"  server {{ listen 127.0.0.1:{s.port}; location / {{ {location} }} }}"
        )
        self.nginx_setups.append(s)

    def serve(
        self,
        name: str,
        sock: Path,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
    ) -> Proc:
        p = self.procs.start(
            name,
            [
                UWIRE,
                "serve",
                "--bind",
                f"unix:{sock}",
                "--socket-mode",
                "666",
                *SERVE_ARGS,
                *(extra or []),
            ],
            env=env,
        )
        wait_socket(sock, p)
        return p

    def proxy(
        self,
        name: str,
        port: int,
        upstream: str,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
    ) -> Proc:
        return self.procs.start(
            name,
            [
                UWIRE,
                "proxy",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                upstream,
                # No per-request log line, like every other front here
                # (nginx `access_log off`, uWSGI `--disable-logging`, ...).
                "--access-log",
                "off",
                *PROXY_ARGS,
                *(extra or []),
            ],
            env=env,
        )

    def proxy_serve(
        self,
        name: str,
        title: str,
        sock: Path,
        tag: str,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
    ) -> None:
        """A `uwire proxy` -> `uwire serve` row: both started with `env`
        and `extra` arguments, named `proxy-<tag>` and `serve-<tag>`."""
        s = self.add(Setup(name, title))
        s.port = free_port()
        s.roles["serve"] = [self.serve(f"serve-{tag}", sock, env, extra)]
        s.roles["proxy"] = [
            self.proxy(f"proxy-{tag}", s.port, f"unix:{sock}", env, extra)
        ]

    def uwsgi(self, name: str, sock: Path) -> Proc:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        p = self.procs.start(
            name,
            [
                "uwsgi",
                "--socket",
                sock,
                "--chmod-socket=666",
                "--wsgi-file",
                BENCH_DIR / "hello_wsgi.py",
                "--master",
                "--processes",
                str(APP_PROCESSES),
                "--disable-logging",
                "--die-on-term",
                "--listen",
                str(min(1024, somaxconn)),
            ],
        )
        wait_socket(sock, p)
        return p

    def gunicorn(self, name: str, sock: Path, protocol: str) -> Proc:
        help_text = subprocess.run(
            ["gunicorn", "--help"], capture_output=True, text=True, check=False
        ).stdout
        argv: list[str | Path] = [
            "gunicorn",
            "--bind",
            f"unix:{sock}",
            "--workers",
            str(APP_PROCESSES),
            "--backlog",
            "2048",
            "--chdir",
            BENCH_DIR,
            "--log-level",
            "warning",
        ]
        if "--no-control-socket" in help_text:
            argv.append("--no-control-socket")
        if protocol == "uwsgi":
            if "--protocol" not in help_text:
                die(
                    "this gunicorn has no --protocol uwsgi (gunicorn >= 25 has): pip install -U gunicorn"
                )
            argv += ["--protocol", "uwsgi"]
        argv.append("hello_wsgi:application")
        p = self.procs.start(name, argv)
        wait_socket(sock, p)
        return p

    def start(self) -> None:
        d = self.dir
        one_args = one_thread_args()
        if one_args:
            log(f"one-thread rows use TOKIO_WORKER_THREADS=1 and {' '.join(one_args)}")
        uwsgi_sock = d / "uwsgi.sock"
        shared_uwsgi: Proc | None = None

        def uwsgi_once() -> Proc:
            nonlocal shared_uwsgi
            if shared_uwsgi is None:
                shared_uwsgi = self.uwsgi("uwsgi", uwsgi_sock)
            return shared_uwsgi

        params = self.uwsgi_params()
        if self.want("nginx-static"):
            s = self.add(
                Setup(
                    "nginx-static",
                    "nginx `return 200` (static, the front's ceiling)",
                    echo=False,
                )
            )
            self.nginx_front(s, 'return 200 "Hello from uwire!\\n";')
        if self.want("hyper-hello"):
            s = self.add(
                Setup(
                    "hyper-hello", f"bare hyper HTTP/1.1 hello ({HYPER_THREADS} thread)"
                )
            )
            s.port = free_port()
            s.roles["hyper"] = [
                self.procs.start(
                    "hyper",
                    [
                        EXAMPLES / "bench_peers",
                        "hello",
                        "--listen",
                        f"127.0.0.1:{s.port}",
                        "--threads",
                        str(HYPER_THREADS),
                    ],
                )
            ]
        if self.want("nginx-uwsgi"):
            s = self.add(
                Setup(
                    "nginx-uwsgi",
                    f"nginx -> uwsgi_pass -> uWSGI ({APP_PROCESSES} processes, Python)",
                )
            )
            s.roles["uwsgi"] = [uwsgi_once()]
            self.nginx_front(s, f"include {params}; uwsgi_pass unix:{uwsgi_sock};")
        if self.want("granian"):
            s = self.add(
                Setup(
                    "granian", f"Granian WSGI direct ({APP_PROCESSES} workers, Python)"
                )
            )
            s.port = free_port()
            s.roles["granian"] = [
                self.procs.start(
                    "granian",
                    [
                        "granian",
                        "--interface",
                        "wsgi",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(s.port),
                        "--workers",
                        str(APP_PROCESSES),
                        "--working-dir",
                        BENCH_DIR,
                        "--no-access-log",
                        "--log-level",
                        "warning",
                        "hello_wsgi:application",
                    ],
                )
            ]
        if self.want("quickstart"):
            s = self.add(
                Setup(
                    "quickstart",
                    "`uwire quickstart` (proxy + runtime in one process, Rust handler)",
                )
            )
            s.port = free_port()
            s.roles["quickstart"] = [
                self.procs.start(
                    "quickstart",
                    [
                        UWIRE,
                        "quickstart",
                        "--listen",
                        f"127.0.0.1:{s.port}",
                        "--app-socket",
                        d / "qs.sock",
                        "--access-log",
                        "off",
                        *QUICKSTART_ARGS,
                    ],
                )
            ]
        if self.want("proxy-serve"):
            self.proxy_serve(
                "proxy-serve",
                "`uwire proxy` -> uwire/1 -> `uwire serve` (Rust handler)",
                d / "ps.sock",
                "ps",
            )
        if self.want("proxy-serve-1t"):
            self.proxy_serve(
                "proxy-serve-1t",
                "same, one worker thread in each (TOKIO_WORKER_THREADS=1)",
                d / "p1.sock",
                "1t",
                ONE_THREAD_ENV,
                one_args,
            )
        if self.want("proxy-serve-nopoll"):
            self.proxy_serve(
                "proxy-serve-nopoll",
                "same as proxy-serve, busy polling off in both (`--busy-poll 0`)",
                d / "np.sock",
                "np",
                None,
                ["--busy-poll", "0"],
            )
        if self.want("nginx-serve"):
            s = self.add(
                Setup(
                    "nginx-serve",
                    "nginx -> uwsgi_pass -> `uwire serve` (classic uwsgi, Rust handler)",
                )
            )
            s.roles["serve"] = [self.serve("serve-ns", d / "ns.sock")]
            self.nginx_front(s, f"include {params}; uwsgi_pass unix:{d / 'ns.sock'};")
        if self.want("proxy-uwsgi"):
            s = self.add(
                Setup("proxy-uwsgi", "`uwire proxy` -> classic uwsgi -> uWSGI (Python)")
            )
            s.port = free_port()
            s.roles["uwsgi"] = [uwsgi_once()]
            s.roles["proxy"] = [
                self.proxy("proxy-uw", s.port, f"uwsgi+unix:{uwsgi_sock}")
            ]
        if self.want("nginx-gunicorn-uwsgi"):
            s = self.add(
                Setup(
                    "nginx-gunicorn-uwsgi",
                    f"nginx -> uwsgi_pass -> gunicorn --protocol uwsgi ({APP_PROCESSES} workers)",
                )
            )
            s.roles["gunicorn"] = [
                self.gunicorn("gunicorn-uwsgi", d / "gu.sock", "uwsgi")
            ]
            self.nginx_front(s, f"include {params}; uwsgi_pass unix:{d / 'gu.sock'};")
        if self.want("nginx-gunicorn-http"):
            s = self.add(
                Setup(
                    "nginx-gunicorn-http",
                    f"nginx -> proxy_pass (HTTP/1.0) -> gunicorn ({APP_PROCESSES} workers)",
                )
            )
            s.roles["gunicorn"] = [
                self.gunicorn("gunicorn-http", d / "gh.sock", "http")
            ]
            self.nginx_front(
                s,
                f"proxy_pass http://unix:{d / 'gh.sock'}:; proxy_set_header Host $host;",
            )
        if self.nginx_setups:
            conf = d / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(
                    user_line="user root;" if os.geteuid() == 0 else "",
                    workers=NGINX_WORKERS,
                    dir=d,
                    servers="\n".join(self.nginx_servers),
                )
            )
            nginx = self.procs.start("nginx", ["nginx", "-c", conf, "-p", d])
            for s in self.nginx_setups:
                s.roles = {"nginx": [nginx], **s.roles}
        for s in self.setups:
            owner = next((p for ps in s.roles.values() for p in ps), None)
            wait_http(s.port, owner)
            if s.echo:
                self.check_echo(s)

    def check_echo(self, s: Setup) -> None:
        """One 1 MiB echo must come back whole before it is measured."""
        body = os.urandom(ECHO_BYTES)
        req = urllib.request.Request(
            f"http://127.0.0.1:{s.port}/echo", data=body, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            got = r.read()
        if got != body:
            die(f"{s.name}: /echo returned {len(got)} bytes, not the {len(body)} sent")
