"""Test helpers: real processes (``python -m uwire``, the crate's ``uwire
proxy`` binary, a real nginx) on Unix sockets and loopback ports in a
temporary directory; every process a test starts is stopped by the test.

``UWIRE_BIN`` names the ``uwire`` binary (default: the repository's
``target/release/uwire``, built with cargo when missing). Without nginx the
nginx cases are skipped, unless ``UWIRE_REQUIRE_INTEROP=1`` (CI).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
REPO = HERE.parents[2]
READY_TIMEOUT = 60.0


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


def wait_for(pred, timeout: float = READY_TIMEOUT, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Proc:
    """A child process whose output goes to a log file; stopped on close()."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        cwd: Optional[Path] = None,
        env: Optional[dict[str, str]] = None,
    ) -> None:
        self.args = args
        self.log_path = log
        self.logf = open(log, "ab")
        self.proc = subprocess.Popen(
            args,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait(15) is None:
                # The whole session: workers and the front too.
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        # Anything the session left behind (a worker stuck past its master).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.logf.close()


class UwireServer(Proc):
    """``python -m uwire`` serving an app from tests/apps."""

    def __init__(
        self,
        tmp: Path,
        app: str,
        *args: str,
        workers: int = 2,
        env: Optional[dict[str, str]] = None,
        name: str = "app",
        wait: bool = True,
        cwd: Optional[Path] = None,
        workers_flag: bool = True,
    ) -> None:
        self.sock = tmp / f"{name}.sock"
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(APPS), full_env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        full_env.update(env or {})
        self.workers = workers
        argv = [
            sys.executable,
            "-m",
            "uwire",
            "--bind",
            f"unix:{self.sock}",
            *(["--workers", str(workers)] if workers_flag else []),
            *args,
            app,
        ]
        super().__init__(argv, tmp / f"{name}.log", cwd=cwd or APPS, env=full_env)
        if wait:
            self.wait_serving(workers)

    def serving(self) -> int:
        return self.log().count("worker serving")

    def wait_serving(self, n: int, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"uwire exited ({self.proc.returncode}):\n{self.log()}")
            if self.serving() >= n and self.sock.exists():
                return
            time.sleep(0.02)
        raise AssertionError(f"uwire did not start {n} workers:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """Pids of the master's live children (workers and front)."""
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.pid and fields[0] != "Z":
                out.append(int(p.name))
        return sorted(out)


def uwire_bin() -> Path:
    env = os.environ.get("UWIRE_BIN")
    if env:
        return Path(env)
    path = REPO / "target" / "release" / "uwire"
    if not path.exists():
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "--bin", "uwire"], cwd=REPO, check=True
        )
    return path


class UwireProxy(Proc):
    """The crate's ``uwire proxy`` in front of ``upstream``."""

    def __init__(self, tmp: Path, upstream: str, *args: str, name: str = "proxy") -> None:
        self.port = free_port()
        argv = [
            str(uwire_bin()),
            "proxy",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--upstream",
            upstream,
            *args,
        ]
        super().__init__(argv, tmp / f"{name}.log")
        wait_for(
            lambda: "uwire proxy: http://" in self.log() or self.proc.poll() is not None,
            what="uwire proxy",
        )
        if self.proc.poll() is not None:
            raise AssertionError(f"uwire proxy exited:\n{self.log()}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def nginx_path() -> Optional[str]:
    found = shutil.which("nginx")
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"):
        if os.access(f"{d}/nginx", os.X_OK):
            return f"{d}/nginx"
    return None


def require_nginx() -> str:
    path = nginx_path()
    if path is None or not Path("/etc/nginx/uwsgi_params").exists():
        if os.environ.get("UWIRE_REQUIRE_INTEROP") == "1":
            raise AssertionError("nginx (and /etc/nginx/uwsgi_params) is required")
        pytest.skip("nginx is not installed")
    return path


class Nginx(Proc):
    """A real nginx with ``uwsgi_pass unix:<sock>`` (classic uwsgi)."""

    def __init__(self, tmp: Path, sock: Path, name: str = "nginx") -> None:
        binary = require_nginx()
        self.port = free_port()
        d = tmp / name
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/client_body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 100m;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      include /etc/nginx/uwsgi_params;
      uwsgi_pass unix:{sock};
      uwsgi_read_timeout 60s;
    }}
  }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        super().__init__(
            [binary, "-p", str(d), "-e", str(d / "startup.log"), "-c", str(d / "nginx.conf")],
            d / "nginx.log",
        )
        wait_for(lambda: self._up(), what="nginx")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited:\n{self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def written(n: int) -> bytes:
    """What pep_app's ``/write-many?n=N`` sends: N 1 KiB chunks, each
    starting with its number."""
    return b"".join(b"%05d" % i + b"." * 1019 for i in range(n))


def http_request(
    port: int,
    method: str,
    path: str,
    body: Optional[bytes] = None,
    headers: Optional[dict[str, str]] = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


@pytest.fixture
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Short paths: Unix socket paths are limited to 108 bytes.
    d = Path(os.environ.get("UWIRE_TEST_TMP", "/tmp")) / f"uwt-{os.getpid()}-{time.monotonic_ns()}"
    d.mkdir(parents=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes registered here are stopped after the test."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.close()


def count_in_log(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))


class Load:
    """Closed-loop HTTP load from ``threads`` threads (one keep-alive
    connection each) until stopped; counts requests sent, succeeded (the
    expected status) and failed, and which worker (``/pid``-style body)
    answered."""

    def __init__(
        self, port: int, path: str, threads: int = 8, expect: int = 200, max_requests: int = 0
    ) -> None:
        import threading

        self.port, self.path, self.expect = port, path, expect
        self.max_requests = max_requests
        self.sent = self.ok = self.failed = 0
        # Requests a thread has committed to (counted in ``sent``) whose bytes
        # are not written yet; see ``quiesce``.
        self.writing = 0
        self.bodies: dict[bytes, int] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self) -> None:
        conn: Optional[http.client.HTTPConnection] = None
        while True:
            # The stop flag is read under the lock that ``quiesce`` sets it
            # under: once it is set, no thread commits to a new request.
            with self.lock:
                if self.stop_event.is_set():
                    break
                if self.max_requests and self.sent >= self.max_requests:
                    break
                self.sent += 1
                self.writing += 1
            written = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                try:
                    conn.request("GET", self.path)
                finally:
                    with self.lock:
                        self.writing -= 1
                    written = True
                r = conn.getresponse()
                body = r.read()
                good = r.status == self.expect
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # any failure counts
                if not written:
                    with self.lock:
                        self.writing -= 1
                good, body = False, repr(e).encode()
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                if good:
                    self.ok += 1
                    self.bodies[body] = self.bodies.get(body, 0) + 1
                else:
                    self.failed += 1
                    if len(self.errors) < 20:
                        self.errors.append(body.decode(errors="replace")[:200])
        if conn is not None:
            conn.close()

    def wait_for_requests(self, n: int, timeout: float = 60.0) -> None:
        wait_for(lambda: self.ok >= n, timeout, f"{n} successful requests")

    def quiesce(self, settle: float = 0.3) -> None:
        """Stops new requests and returns once every request already counted
        as sent has been written to the socket, plus ``settle`` seconds for
        the front to pass them on: what is sent before a signal is then
        really in flight when it comes."""
        with self.lock:
            self.stop_event.set()
        wait_for(lambda: self.writing == 0, 30.0, "committed requests written")
        time.sleep(settle)

    def stop(self) -> Load:
        self.stop_event.set()
        for t in self.threads:
            t.join(90)
        return self

    def summary(self, scenario: str) -> str:
        line = f"{scenario}: sent {self.sent}, succeeded {self.ok}, failed {self.failed}"
        path = os.environ.get("UWIRE_PROCESS_TABLE")
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")
        print(line)
        return line
