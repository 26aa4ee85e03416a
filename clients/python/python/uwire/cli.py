"""``python -m uwire``: the command line, modelled on gunicorn's.

Every flag can also be set from the environment: ``--max-requests 1000`` is
``UWIRE_MAX_REQUESTS=1000``; repeatable flags take a comma-separated list
(``UWIRE_BIND=unix:/run/a.sock,tcp:127.0.0.1:9000``); switches take
``1``/``true``/``yes``. A flag on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

__all__ = ["Config", "main", "parse_args"]

DEFAULT_BIND = "unix:/tmp/uwire.sock"


@dataclass
class Config:
    """Everything the command line sets (see ``python -m uwire --help``)."""

    app: str = ""
    bind: list[str] = field(default_factory=list)
    workers: int = 1
    threads: int = 1
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_rss: int = 0
    timeout: float = 30.0
    timeout_grace: float = 5.0
    graceful_timeout: float = 30.0
    socket_mode: int = 0o660
    backlog: int = 1024
    root_path: str = ""
    preload: bool = False
    reload: bool = False
    chdir: Optional[str] = None
    env: list[str] = field(default_factory=list)
    protocol: str = "auto"
    access_log: Optional[str] = None
    log_level: str = "info"
    http: Optional[str] = None
    http_connections: int = 0
    http_threads: int = 1
    busy_poll: float = 200e-6
    max_streams: int = 0
    max_body_size: int = 1 << 30
    idle_timeout: float = 300.0
    max_connections: int = 1024
    interface: str = "auto"
    tunnel_idle_timeout: float = 600.0
    tunnel_max_duration: float = 86400.0
    lifespan: str = "auto"

    def streams_per_connection(self) -> int:
        """uwire/1 streams a worker accepts per connection: a few per app
        thread, so a proxy's pool opens several connections (which the
        workers then share evenly) instead of piling every request onto one."""
        return self.max_streams or max(4, 2 * self.threads)


def _octal(s: str) -> int:
    try:
        v = int(s.removeprefix("0o"), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an octal mode (e.g. 660)") from None
    if not 0 <= v <= 0o777:
        raise argparse.ArgumentTypeError(f"{s!r} is not a permission mode")
    return v


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{s!r}: must be at least 1")
    return v


def _non_negative_int(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{s!r}: must be 0 or more")
    return v


def _seconds(s: str) -> float:
    v = float(s.removesuffix("s"))
    if v < 0:
        raise argparse.ArgumentTypeError(f"{s!r}: must be 0 or more seconds")
    return v


BUSY_POLL_MAX = 0.01
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def _busy_poll(s: str) -> float:
    """A duration from 0 to 10ms: ``50us``, ``1ms``, ``0`` (a bare number is
    seconds), in seconds."""
    t = s.strip()
    num, unit = t, "s"
    for u in _UNITS:  # "us" and "ms" before "s"
        if t.endswith(u):
            num, unit = t[: -len(u)], u
            break
    try:
        v = float(num) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a duration (e.g. 50us, 1ms, 0)") from None
    if not 0 <= v <= BUSY_POLL_MAX:
        raise argparse.ArgumentTypeError(f"{s!r}: from 0 to 10ms")
    return v


def _env_kv(s: str) -> str:
    if "=" not in s or s.startswith("="):
        raise argparse.ArgumentTypeError(f"--env {s!r}: expected KEY=VALUE")
    return s


def _protocol(s: str) -> str:
    if s not in ("auto", "uwire", "uwsgi"):
        raise argparse.ArgumentTypeError(f"{s!r}: use auto, uwire or uwsgi")
    return s


def _interface(s: str) -> str:
    if s not in ("auto", "asgi", "wsgi"):
        raise argparse.ArgumentTypeError(f"{s!r}: use auto, asgi or wsgi")
    return s


def _lifespan(s: str) -> str:
    if s not in ("auto", "on", "off"):
        raise argparse.ArgumentTypeError(f"{s!r}: use auto, on or off")
    return s


def _level(s: str) -> str:
    s = s.lower()
    if s not in ("critical", "error", "warning", "info", "debug"):
        raise argparse.ArgumentTypeError(f"{s!r}: critical, error, warning, info or debug")
    return s


# (flags, dest, type, help, kind) where kind is "value", "list" or "switch".
_OPTIONS: list[tuple[tuple[str, ...], str, Optional[Callable[[str], Any]], str, str]] = [
    (
        ("-b", "--bind"),
        "bind",
        str,
        "Where workers listen: unix:/run/app.sock, tcp:HOST:PORT, or systemd[:N] "
        "(socket activation). Repeatable. Each socket speaks uwire/1 and classic "
        f"uwsgi (see --protocol). Default: {DEFAULT_BIND} (a private temporary socket "
        "with --http).",
        "list",
    ),
    (
        ("-w", "--workers"),
        "workers",
        _positive_int,
        "Worker processes. Default 1 (or $WEB_CONCURRENCY).",
        "value",
    ),
    (
        ("--threads",),
        "threads",
        _positive_int,
        "Python threads per worker running the app. Default 1 (requests without "
        "a body then run on the worker's I/O thread where they can).",
        "value",
    ),
    (
        ("--max-requests",),
        "max_requests",
        _non_negative_int,
        "Recycle a worker after this many requests: it drains (in-flight requests "
        "finish, new ones go to the other workers) and a fresh one replaces it. "
        "0 (default) disables.",
        "value",
    ),
    (
        ("--max-requests-jitter",),
        "max_requests_jitter",
        _non_negative_int,
        "Add a random 0..J to --max-requests per worker, so workers do not all "
        "recycle at once. Default 0.",
        "value",
    ),
    (
        ("--max-rss",),
        "max_rss",
        _non_negative_int,
        "Recycle (drain and replace) a worker whose resident memory exceeds this "
        "many MiB, checked every second. 0 (default) disables.",
        "value",
    ),
    (
        ("-t", "--timeout"),
        "timeout",
        _seconds,
        "Request timeout in seconds: a request still running after it gets 504 "
        "(or a stream reset once its head is out), RequestTimeout is raised in its "
        "thread, and a worker whose thread cannot be freed within --timeout-grace "
        "is recycled. 0 disables. Default 30.",
        "value",
    ),
    (
        ("--timeout-grace",),
        "timeout_grace",
        _seconds,
        "Seconds an interrupted thread gets to come back before its worker is recycled. Default 5.",
        "value",
    ),
    (
        ("--graceful-timeout",),
        "graceful_timeout",
        _seconds,
        "Seconds in-flight requests get to finish when a worker stops (SIGTERM, "
        "reload, recycle) before they are cut off. Default 30.",
        "value",
    ),
    (
        ("-m", "--socket-mode"),
        "socket_mode",
        _octal,
        "File mode of Unix sockets, octal. Default 660.",
        "value",
    ),
    (
        ("--backlog",),
        "backlog",
        _positive_int,
        "Listen backlog. Default 1024.",
        "value",
    ),
    (
        ("--root-path",),
        "root_path",
        str,
        "Mount prefix of the app: becomes SCRIPT_NAME and is stripped from "
        "PATH_INFO. Default: none.",
        "value",
    ),
    (
        ("--preload",),
        "preload",
        None,
        "Import the app in the master before forking workers (less memory, "
        "faster worker start; SIGHUP then restarts workers on the same code).",
        "switch",
    ),
    (
        ("--reload",),
        "reload",
        None,
        "Development: reload the workers (rolling) when a .py file under the "
        "current directory changes.",
        "switch",
    ),
    (
        ("--chdir",),
        "chdir",
        str,
        "Change to this directory before loading the app.",
        "value",
    ),
    (
        ("-e", "--env"),
        "env",
        _env_kv,
        "Set an environment variable for the app, KEY=VALUE. Repeatable.",
        "list",
    ),
    (
        ("--protocol",),
        "protocol",
        _protocol,
        "What the sockets speak: auto (uwire/1 or classic uwsgi, detected per "
        "connection), uwire, or uwsgi (nginx uwsgi_pass). Default auto.",
        "value",
    ),
    (
        ("--access-log", "--access-logfile"),
        "access_log",
        str,
        "Write one line per request to this file ('-' for standard error). Default: no access log.",
        "value",
    ),
    (
        ("--log-level",),
        "log_level",
        _level,
        "critical, error, warning, info or debug. Default info.",
        "value",
    ),
    (
        ("--http",),
        "http",
        str,
        "Also serve HTTP/1.1 and HTTP/2 on HOST:PORT through the uwire HTTP front "
        "(the code of `uwire proxy`, in a child process), forwarding over "
        "multiplexed uwire/1 to the workers. Default: off.",
        "value",
    ),
    (
        ("--http-connections",),
        "http_connections",
        _non_negative_int,
        "uwire/1 connections each --http front thread keeps to the workers. Default: "
        "twice the workers, at least 4.",
        "value",
    ),
    (
        ("--http-threads",),
        "http_threads",
        _positive_int,
        "I/O threads of the --http front, each with its own event loop, share of "
        "the listening socket and connections to the workers (as `uwire proxy "
        "--threads`). Default 1, as uwire proxy's: one front thread kept up with "
        "2 workers on 2 cores and beat two; raise it where the front has cores to "
        "spare. With more than one the front does not busy-poll.",
        "value",
    ),
    (
        ("--busy-poll",),
        "busy_poll",
        _busy_poll,
        "How long an idle worker (its I/O thread, and one idle app thread or its ASGI "
        "event loop) and the "
        "--http front (with one thread) keep watching for work before they sleep: "
        "0 (off) to 10ms, "
        "e.g. 200us, 1ms. Waking a sleeping thread is the dearest step of a request "
        "at low concurrency on VMs that halt idle CPUs; watching spends idle CPU "
        "time instead, and stops by itself where work comes seldom (each thread's "
        "window halves after one that found nothing) or the machine has more "
        "runnable threads than CPUs. Default 200us: about the "
        "time a request takes through a proxy and back, so an app thread done "
        "with one request still watches when the next one comes.",
        "value",
    ),
    (
        ("--max-streams",),
        "max_streams",
        _non_negative_int,
        "Concurrent uwire/1 streams a worker accepts per connection. Default: "
        "2 per app thread, at least 4.",
        "value",
    ),
    (
        ("--max-body-size",),
        "max_body_size",
        _non_negative_int,
        "Largest request body in bytes (413 above). Default 1073741824 (1 GiB).",
        "value",
    ),
    (
        ("--idle-timeout",),
        "idle_timeout",
        _seconds,
        "Close connections idle this many seconds (0 disables). Default 300.",
        "value",
    ),
    (
        ("--max-connections",),
        "max_connections",
        _positive_int,
        "Most connections a worker keeps open at once. Default 1024.",
        "value",
    ),
    (
        ("--tunnel-idle-timeout",),
        "tunnel_idle_timeout",
        _seconds,
        "Close an accepted upgrade (WebSocket) that carried no byte either way for "
        "this many seconds (0 disables). Default 600.",
        "value",
    ),
    (
        ("--tunnel-max-duration",),
        "tunnel_max_duration",
        _seconds,
        "Close an accepted upgrade (WebSocket) open this many seconds, busy or not "
        "(0 disables). Default 86400.",
        "value",
    ),
    (
        ("--interface",),
        "interface",
        _interface,
        "How the app is called: wsgi (PEP 3333), asgi (ASGI 3.0: http, websocket "
        "and lifespan scopes, on one asyncio event loop per worker, uvloop when "
        "installed) or auto (asgi when the callable is a coroutine function or an "
        "object whose __call__ is one). Default auto.",
        "value",
    ),
    (
        ("--lifespan",),
        "lifespan",
        _lifespan,
        "ASGI lifespan protocol: on (a failing or unsupported startup stops the "
        "worker), off, or auto (an app that raises before answering the startup "
        "event does not support it: served without). A startup the app reports "
        "as failed always stops the worker. Default auto.",
        "value",
    ),
]

_TRUE = ("1", "true", "yes", "on")


def _env_name(dest: str) -> str:
    return "UWIRE_" + dest.upper()


def build_parser(environ: Optional[dict[str, str]] = None) -> argparse.ArgumentParser:
    """The argument parser, with defaults taken from ``environ``."""
    env = dict(os.environ if environ is None else environ)
    defaults = Config()
    if "WEB_CONCURRENCY" in env and _env_name("workers") not in env:
        env[_env_name("workers")] = env["WEB_CONCURRENCY"]
    p = argparse.ArgumentParser(
        prog="python -m uwire",
        description=(
            "Serve a WSGI or ASGI application over uwire/1 and classic uwsgi with a master "
            "and worker processes. Every flag can also be set from the environment "
            "as UWIRE_<FLAG> (e.g. UWIRE_WORKERS=4)."
        ),
        epilog=(
            "Signals to the master: TERM/INT graceful stop (drain, exit 0); HUP "
            "rolling reload to new code; TTIN/TTOU one worker more/less; QUIT "
            "immediate stop. Example: python -m uwire --workers 4 --http "
            "127.0.0.1:8080 myproject.wsgi:application"
        ),
    )
    p.add_argument(
        "app",
        nargs="?",
        default=env.get("UWIRE_APP", ""),
        help="The WSGI app: module:name, module:factory() or module:factory(args) "
        "(literal args). $UWIRE_APP.",
    )
    for flags, dest, typ, help_text, kind in _OPTIONS:
        name = _env_name(dest)
        raw = env.get(name)
        help_text = f"{help_text} ${name}."
        if kind == "switch":
            default = getattr(defaults, dest)
            if raw is not None:
                default = raw.strip().lower() in _TRUE
            p.add_argument(*flags, dest=dest, action="store_true", default=default, help=help_text)
            continue
        assert typ is not None
        if kind == "list":
            default_list: list[Any] = []
            if raw:
                try:
                    default_list = [
                        typ(x.strip()) for x in raw.replace("\n", ",").split(",") if x.strip()
                    ]
                except (ValueError, argparse.ArgumentTypeError) as e:
                    p.error(f"${name}: {e}")
            p.add_argument(
                *flags, dest=dest, type=typ, action="append", default=None, help=help_text
            )
            p.set_defaults(**{f"_env_{dest}": default_list})
            continue
        default_value = getattr(defaults, dest)
        if raw is not None and raw != "":
            try:
                default_value = typ(raw)
            except (ValueError, argparse.ArgumentTypeError) as e:
                p.error(f"${name}: {e}")
        p.add_argument(*flags, dest=dest, type=typ, default=default_value, help=help_text)
    p.add_argument("--version", action="version", version="uwire " + _version())
    return p


def _version() -> str:
    from . import __version__

    return __version__


def parse_args(
    argv: Optional[Sequence[str]] = None, environ: Optional[dict[str, str]] = None
) -> Config:
    """Parses ``argv`` (and the environment) into a :class:`Config`."""
    p = build_parser(environ)
    ns = p.parse_args(argv)
    values = vars(ns)
    for dest in ("bind", "env"):
        if values.get(dest) is None:
            values[dest] = values.get(f"_env_{dest}", [])
    values = {k: v for k, v in values.items() if not k.startswith("_env_")}
    cfg = Config(**values)
    if not cfg.app:
        p.error("the WSGI app is required: python -m uwire module:app")
    if not cfg.bind and not cfg.http:
        cfg.bind = [DEFAULT_BIND]
    if cfg.http and cfg.protocol == "uwsgi":
        p.error("--http talks uwire/1 to the workers: it cannot be used with --protocol uwsgi")
    if cfg.http:
        _host, sep, port = cfg.http.rpartition(":")
        if not sep or not port.isdigit():
            p.error(f"--http {cfg.http!r}: expected HOST:PORT")
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; returns the exit status."""
    cfg = parse_args(argv)
    from .arbiter import Arbiter

    return Arbiter(cfg).run()


if __name__ == "__main__":
    sys.exit(main())
