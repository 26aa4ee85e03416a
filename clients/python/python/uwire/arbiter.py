"""The master process: binds the sockets, forks and supervises the workers
(and the ``--http`` front), reloads and recycles them, and stops them
gracefully.

Design. The master is plain single-threaded Python (it forks, so it starts
no threads and no async runtime); workers run the native server with the
GIL released. All workers inherit the same listening sockets; a table in
shared memory (made before the first fork) holds each worker's state, open
connections, requests, busy threads and heartbeat. Workers use it to accept
only while they carry no more connections than the least loaded one (so the
few long-lived uwire/1 connections of a proxy spread evenly); the master
uses it to see when a new worker is serving, which worker is draining, and
whether one has hung.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import select
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from . import _native
from .app import AppImportError, WsgiApp, is_asgi, load
from .cli import Config

log = logging.getLogger("uwire")

# Slot states (see src/table.rs).
FREE, STARTING, SERVING, DRAINING = 0, 1, 2, 3
REASONS = {1: "signal", 2: "max-requests", 3: "stuck thread", 4: "orphaned"}

# Exit status of a worker that could not load the app.
WORKER_BOOT_ERROR = 3
# uwire/1 streams per connection an ASGI worker accepts without --max-streams.
ASGI_STREAMS = 128
# Extra seconds a stopping process gets past --graceful-timeout before SIGKILL.
KILL_MARGIN = 5.0
# A serving worker whose heartbeat is older than this (seconds) has hung.
HEARTBEAT_LIMIT = 10.0


@dataclass
class Child:
    pid: int
    slot: int
    generation: int
    started: float
    stopping_since: Optional[float] = None
    booted: bool = False


class Arbiter:
    """Runs the master. ``run()`` returns the exit status."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.target = cfg.workers
        self.children: dict[int, Child] = {}
        self.front_pid: Optional[int] = None
        self.front_stopping_since: Optional[float] = None
        self.sockets: list[_native.BoundSocket] = []
        self.table: Optional[_native.SharedTable] = None
        self.app: Optional[WsgiApp] = None
        self.generation = 0
        self.signals: list[int] = []
        self.stopping: Optional[float] = None
        self.stop_phase = ""
        self.reload_queue: list[int] = []
        self.reload_new: Optional[int] = None
        self.ever_booted = False
        self.exit_status = 0
        self.tmpdir: Optional[str] = None
        self.pipe_r = -1
        self.pipe_w = -1
        self.mtimes: dict[str, float] = {}
        self.last_scan = 0.0
        self.last_rss = 0.0
        self.master_pid = os.getpid()
        self.last_boot_failure = 0.0

    # ---- setup -----------------------------------------------------------

    def setup_logging(self) -> None:
        level = getattr(logging, self.cfg.log_level.upper())
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%dT%H:%M:%SZ"
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level)
        _native.init_logging(self.cfg.log_level)

    def bind(self) -> None:
        binds = list(self.cfg.bind)
        if not binds:
            self.tmpdir = tempfile.mkdtemp(prefix="uwire-")
            binds = [f"unix:{os.path.join(self.tmpdir, 'app.sock')}"]
            mode = 0o600
        else:
            mode = self.cfg.socket_mode
        for b in binds:
            s = _native.BoundSocket(b, mode, self.cfg.backlog)
            self.sockets.append(s)
            log.info("listening on %s", s.address)

    def run(self) -> int:
        cfg = self.cfg
        if cfg.chdir:
            os.chdir(cfg.chdir)
        for kv in cfg.env:
            k, _, v = kv.partition("=")
            os.environ[k] = v
        self.setup_logging()
        try:
            self.bind()
        except (OSError, ValueError) as e:
            log.error("%s", e)
            return 1
        if cfg.preload:
            try:
                self.app = load(cfg.app)
            except AppImportError as e:
                log.error("%s", e)
                return 1
            except Exception:
                log.error("cannot load %s:\n%s", cfg.app, traceback.format_exc())
                return 1
        self.table = _native.SharedTable(max(2 * self.target + 4, 8))
        self.install_signals()
        log.info(
            "uwire %s master starting: app %s, %d worker(s) x %d thread(s)",
            _version(),
            cfg.app,
            self.target,
            cfg.threads,
        )
        if cfg.http:
            self.spawn_front()
        try:
            self.loop()
        finally:
            for s in self.sockets:
                s.close()
            if self.tmpdir:
                try:
                    os.rmdir(self.tmpdir)
                except OSError:
                    pass
        log.info("master stopped")
        return self.exit_status

    def install_signals(self) -> None:
        self.pipe_r, self.pipe_w = os.pipe()
        os.set_blocking(self.pipe_r, False)
        os.set_blocking(self.pipe_w, False)
        signal.set_wakeup_fd(self.pipe_w)
        for sig in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGQUIT,
            signal.SIGHUP,
            signal.SIGCHLD,
            signal.SIGTTIN,
            signal.SIGTTOU,
        ):
            signal.signal(sig, self.on_signal)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    # ---- children --------------------------------------------------------

    def worker_config(self, slot: int) -> dict[str, Any]:
        cfg = self.cfg
        max_requests = cfg.max_requests
        if max_requests and cfg.max_requests_jitter:
            max_requests += random.randint(0, cfg.max_requests_jitter)
        return {
            "threads": cfg.threads,
            "workers": self.target,
            "max_requests": max_requests,
            "timeout": cfg.timeout,
            "timeout_grace": cfg.timeout_grace,
            "graceful_timeout": cfg.graceful_timeout,
            "root_path": cfg.root_path,
            "protocol": cfg.protocol,
            "access_log": cfg.access_log,
            "max_streams": cfg.streams_per_connection(),
            "max_body_size": cfg.max_body_size,
            "idle_timeout": cfg.idle_timeout,
            "max_connections": cfg.max_connections,
            "tunnel_idle_timeout": cfg.tunnel_idle_timeout,
            "tunnel_max_duration": cfg.tunnel_max_duration,
            "master_pid": self.master_pid,
            "slot": slot,
            "busy_poll": cfg.busy_poll,
        }

    def child_reset(self) -> None:
        """In a freshly forked child: forget the master's signal handling."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        # The native side handles TERM/INT once it serves; until then a stop
        # request is ignored (the master kills a child that never serves).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.close(self.pipe_r)
        os.close(self.pipe_w)

    def spawn_worker(self) -> Optional[int]:
        assert self.table is not None
        slot = self.table.free_slot()
        if slot is None:
            log.error("no free worker slot")
            return None
        self.table.claim(slot)
        config = self.worker_config(slot)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.child_reset()
                code = self.worker_main(config)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.table.set_pid(slot, pid)
        self.children[pid] = Child(pid, slot, self.generation, time.monotonic())
        log.info("booting worker %d (slot %d)", pid, slot)
        return pid

    def worker_main(self, config: dict[str, Any]) -> int:
        app = self.app
        if app is None:
            try:
                app = load(self.cfg.app)
            except AppImportError as e:
                log.error("%s", e)
                return WORKER_BOOT_ERROR
            except BaseException:
                log.error("cannot load %s:\n%s", self.cfg.app, traceback.format_exc())
                return WORKER_BOOT_ERROR
        fds = [s.fileno() for s in self.sockets]
        if self.interface_of(app) == "asgi":
            return self.asgi_worker_main(app, fds, config)
        reason = _native.serve(app, fds, config, self.table)
        log.info("worker stopped (%s)", reason)
        return 0

    def interface_of(self, app: Any) -> str:
        """``--interface``, with ``auto`` resolved for ``app``."""
        if self.cfg.interface != "auto":
            return self.cfg.interface
        return "asgi" if is_asgi(app) else "wsgi"

    def asgi_worker_main(self, app: Any, fds: list[int], config: dict[str, Any]) -> int:
        from .asgi import AsgiWorker, LifespanFailed

        if not self.cfg.max_streams:
            # Concurrency comes from the loop, not threads; WebSockets hold
            # their stream for their lifetime.
            config = dict(config, max_streams=ASGI_STREAMS)
        worker = AsgiWorker(app, self.cfg.lifespan, self.cfg.busy_poll)
        try:
            worker.start()
        except LifespanFailed as e:
            log.error("ASGI lifespan startup failed: %s; worker stopping", e)
            return WORKER_BOOT_ERROR
        except BaseException:
            log.error("ASGI lifespan startup raised:\n%s", traceback.format_exc())
            return WORKER_BOOT_ERROR
        try:
            reason = _native.serve(app, fds, config, self.table, worker.bridge)
        finally:
            worker.stop(self.cfg.graceful_timeout)
        log.info("worker stopped (%s)", reason)
        return 0

    def front_upstream(self) -> str:
        for s in self.sockets:
            if s.address.startswith(("unix:", "tcp:")):
                return s.address
        raise RuntimeError("--http needs a unix: or tcp: socket")

    def spawn_front(self) -> None:
        cfg = self.cfg
        assert cfg.http is not None
        upstream = self.front_upstream()
        connections = cfg.http_connections or max(4, 2 * self.target)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.child_reset()
                # The front only forwards: it needs no listening app socket.
                _native.run_front(
                    cfg.http,
                    upstream,
                    connections,
                    cfg.timeout,
                    cfg.graceful_timeout,
                    cfg.max_body_size,
                    cfg.http_threads,
                    lambda addr: log.info("HTTP front on http://%s -> %s", addr, upstream),
                    cfg.busy_poll,
                )
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        self.front_pid = pid

    def kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def stop_child(self, c: Child, why: str) -> None:
        if c.stopping_since is None:
            log.info("stopping worker %d (%s)", c.pid, why)
            c.stopping_since = time.monotonic()
            self.kill(c.pid, signal.SIGTERM)

    def reap(self) -> None:
        assert self.table is not None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = (
                os.waitstatus_to_exitcode(status)
                if hasattr(os, "waitstatus_to_exitcode")
                else (status >> 8)
            )
            if pid == self.front_pid:
                self.front_pid = None
                if self.stopping is None:
                    log.error("HTTP front exited (%s); restarting it", code)
                    self.spawn_front()
                continue
            c = self.children.pop(pid, None)
            if c is None:
                continue
            state = self.table.info(c.slot)
            self.table.release(c.slot)
            if c.stopping_since is None and state[0] != DRAINING and self.stopping is None:
                log.error("worker %d died unexpectedly (exit %s); replacing it", pid, code)
            else:
                log.info("worker %d exited (%s)", pid, code)
            if code == WORKER_BOOT_ERROR and not c.booted:
                if not self.ever_booted:
                    log.error("worker failed to boot; stopping")
                    self.exit_status = WORKER_BOOT_ERROR
                    self.begin_stop(graceful=True)
                elif self.reload_new == pid:
                    log.error("new worker failed to boot; reload aborted, old workers kept")
                    self.reload_queue.clear()
                    self.reload_new = None
                self.last_boot_failure = time.monotonic()
            if self.reload_new == pid:
                self.reload_new = None

    def active(self) -> list[Child]:
        """Workers that count towards --workers (not stopping or draining)."""
        assert self.table is not None
        out = []
        for c in self.children.values():
            if c.stopping_since is not None:
                continue
            state = self.table.info(c.slot)[0]
            if state == DRAINING:
                c.stopping_since = time.monotonic()
                reason = REASONS.get(self.table.info(c.slot)[7], "?")
                log.info("worker %d is draining (%s); starting a replacement", c.pid, reason)
                continue
            out.append(c)
        return out

    # ---- the loop --------------------------------------------------------

    def loop(self) -> None:
        for _ in range(self.target):
            self.spawn_worker()
        while True:
            self.wait(0.25)
            self.handle_signals()
            self.reap()
            if self.stopping is not None:
                if self.stop_step():
                    return
                continue
            self.update_booted()
            self.maintain()
            self.step_reload()
            self.check_health()
            if self.cfg.reload:
                self.scan_changes()

    def wait(self, timeout: float) -> None:
        try:
            r, _, _ = select.select([self.pipe_r], [], [], timeout)
        except InterruptedError:
            return
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        if r:
            try:
                while os.read(self.pipe_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                if self.stopping is None:
                    log.info("%s: graceful stop", signal.Signals(sig).name)
                    self.begin_stop(graceful=True)
            elif sig == signal.SIGQUIT:
                log.info("SIGQUIT: immediate stop")
                self.begin_stop(graceful=False)
            elif sig == signal.SIGHUP and self.stopping is None:
                log.info("SIGHUP: rolling reload")
                self.begin_reload()
            elif sig == signal.SIGTTIN:
                self.target += 1
                log.info("SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU and self.target > 1:
                self.target -= 1
                log.info("SIGTTOU: %d workers", self.target)

    def update_booted(self) -> None:
        assert self.table is not None
        for c in self.children.values():
            if not c.booted and self.table.info(c.slot)[0] in (SERVING, DRAINING):
                c.booted = True
                self.ever_booted = True

    def maintain(self) -> None:
        active = self.active()
        spare = 1 if self.reload_new is not None else 0
        backoff = time.monotonic() - self.last_boot_failure < 1.0
        if len(active) < self.target + spare and not backoff:
            for _ in range(self.target + spare - len(active)):
                self.spawn_worker()
        elif len(active) > self.target + spare:
            oldest = sorted(active, key=lambda c: c.started)
            for c in oldest[: len(active) - self.target - spare]:
                self.stop_child(c, "fewer workers")

    def begin_reload(self) -> None:
        self.generation += 1
        self.reload_queue = [c.pid for c in self.active() if c.generation < self.generation]
        self.reload_new = None

    def step_reload(self) -> None:
        assert self.table is not None
        if not self.reload_queue:
            return
        if self.reload_new is None:
            self.reload_new = self.spawn_worker()
            return
        c = self.children.get(self.reload_new)
        if c is None:
            self.reload_new = None
            return
        if self.table.info(c.slot)[0] == SERVING:
            while self.reload_queue:
                old = self.children.get(self.reload_queue.pop(0))
                if old is not None and old.stopping_since is None:
                    self.stop_child(old, "reload")
                    break
            self.reload_new = None
            if not self.reload_queue:
                log.info("reload done")

    def check_health(self) -> None:
        assert self.table is not None
        now = time.monotonic()
        limit = self.cfg.graceful_timeout + KILL_MARGIN
        for c in list(self.children.values()):
            state, _pid, _conns, _reqs, _busy, hb_age, draining_for, _r = self.table.info(c.slot)
            if c.stopping_since is not None and now - c.stopping_since > limit:
                log.warning("worker %d did not stop in time; killing it", c.pid)
                self.kill(c.pid, signal.SIGKILL)
                c.stopping_since = now  # once per period
            elif state == SERVING and hb_age > max(HEARTBEAT_LIMIT, self.cfg.timeout):
                log.error(
                    "worker %d stopped responding (heartbeat %.0fs old); killing it", c.pid, hb_age
                )
                self.kill(c.pid, signal.SIGKILL)
            elif state == DRAINING and draining_for > limit:
                log.warning("worker %d drained too long; killing it", c.pid)
                self.kill(c.pid, signal.SIGKILL)
        if self.cfg.max_rss and now - self.last_rss >= 1.0:
            self.last_rss = now
            for c in self.active():
                rss = rss_mib(c.pid)
                if rss > self.cfg.max_rss:
                    self.stop_child(c, f"RSS {rss:.0f} MiB over --max-rss {self.cfg.max_rss}")

    def scan_changes(self) -> None:
        now = time.monotonic()
        if now - self.last_scan < 1.0:
            return
        self.last_scan = now
        current = python_files(os.getcwd())
        if self.mtimes and current != self.mtimes:
            changed = sorted(set(current.items()) ^ set(self.mtimes.items()))
            log.info("code changed (%s); reloading", changed[0][0] if changed else "?")
            self.begin_reload()
        self.mtimes = current

    # ---- stopping --------------------------------------------------------

    def begin_stop(self, graceful: bool) -> None:
        self.stopping = time.monotonic()
        self.reload_queue.clear()
        if not graceful:
            for pid in list(self.children):
                self.kill(pid, signal.SIGKILL)
            if self.front_pid:
                self.kill(self.front_pid, signal.SIGKILL)
            self.stop_phase = "workers"
            return
        # The front goes first: it drains its in-flight requests while the
        # workers still serve them; then the workers drain.
        if self.front_pid:
            self.kill(self.front_pid, signal.SIGTERM)
            self.front_stopping_since = time.monotonic()
            self.stop_phase = "front"
        else:
            self.stop_workers()

    def stop_workers(self) -> None:
        self.stop_phase = "workers"
        for c in self.children.values():
            self.stop_child(c, "shutdown")

    def stop_step(self) -> bool:
        """One step of a stop; True once everything has exited."""
        now = time.monotonic()
        limit = self.cfg.graceful_timeout + KILL_MARGIN
        if self.stop_phase == "front":
            if self.front_pid is None:
                self.stop_workers()
            elif self.front_stopping_since and now - self.front_stopping_since > limit:
                self.kill(self.front_pid, signal.SIGKILL)
                self.front_stopping_since = now
            return False
        for c in self.children.values():
            if c.stopping_since is None:
                self.stop_child(c, "shutdown")
            elif now - c.stopping_since > limit:
                log.warning("worker %d did not stop in time; killing it", c.pid)
                self.kill(c.pid, signal.SIGKILL)
                c.stopping_since = now
        return not self.children and self.front_pid is None


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


SKIP_DIRS = {
    ".git",
    "__pycache__",
    "node_modules",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    "target",
    ".pytest_cache",
    ".ruff_cache",
}
MAX_WATCHED_FILES = 10000


def python_files(root: str) -> dict[str, float]:
    """``{path: mtime}`` of the .py files under ``root`` (for --reload)."""
    out: dict[str, float] = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not x.startswith(".")]
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(d, f)
                try:
                    out[p] = os.stat(p).st_mtime
                except OSError:
                    continue
                if len(out) >= MAX_WATCHED_FILES:
                    return out
    return out


def _version() -> str:
    from . import __version__

    return __version__
