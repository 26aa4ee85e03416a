"""A WSGI app exercising PEP 3333 corners, served by the tests.

``app`` is wrapped in ``wsgiref.validate.validator`` with its warnings
turned into errors (a warning fails the request with a 500). ``raw`` is the
unwrapped app, for the cases the validator itself would reject before the
server could (invalid headers from the app).

Markers (``$UWIRE_TEST_MARKERS``): the app records there what the server
did to it (close() called, reads failed, chunks pulled) for the tests to
check.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

MARKERS = Path(os.environ.get("UWIRE_TEST_MARKERS", "/tmp"))
VERSION_FILE = os.environ.get("UWIRE_TEST_VERSION_FILE")
VERSION = Path(VERSION_FILE).read_text().strip() if VERSION_FILE else "0"
HOG: list[bytes] = []
IMPORTED_IN = os.getpid()

StartResponse = Callable[..., Any]


def mark(name: str, text: str) -> None:
    with open(MARKERS / name, "a") as f:
        f.write(text + "\n")


def text(
    start_response: StartResponse,
    body: str,
    status: str = "200 OK",
    ctype: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def query(environ: dict[str, Any]) -> dict[str, str]:
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class Tracked:
    """An iterable recording how many chunks were pulled and whether close() ran."""

    def __init__(self, name: str, chunks: Iterable[bytes], delay: float = 0.0) -> None:
        self.name = name
        self.chunks = iter(chunks)
        self.delay = delay
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.delay:
            time.sleep(self.delay)
        chunk = next(self.chunks)
        self.pulled += 1
        mark(self.name, f"pulled {self.pulled}")
        return chunk

    def close(self) -> None:
        mark(self.name, f"closed after {self.pulled}")


def endless() -> Iterator[bytes]:
    i = 0
    while True:
        i += 1
        yield b"chunk %d\n" % i


def raw(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    query(environ)
    if path == "/bad-header-value":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nInjected: 1")])
        return [b"should not be sent"]
    if path == "/bad-header-name":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Bad Name", "x")])
        return [b"should not be sent"]
    if path == "/hop-by-hop":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"should not be sent"]
    if path == "/bad-status":
        start_response("200", [("Content-Type", "text/plain")])
        return [b"should not be sent"]
    if path == "/latin1-header":
        # Native strings: U+00E9 goes out as the byte 0xE9 (PEP 3333).
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Name", "caf\u00e9")])
        return [b"ok"]
    if path == "/non-latin1-header":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "\u20ac")])
        return [b"should not be sent"]
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["not bytes"]  # type: ignore[list-item]
    if path == "/no-start":
        return [b"never started"]
    return app(environ, start_response)  # type: ignore[no-any-return]


def inner(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    q = query(environ)
    if path == "/hello":
        return text(start_response, "hello\n")
    if path == "/imported-in":
        return text(start_response, f"{IMPORTED_IN} {os.getpid()}\n")
    if path == "/pid":
        return text(start_response, f"{os.getpid()}\n")
    if path == "/version":
        return text(start_response, f"{VERSION} {os.getpid()}\n")
    if path == "/environ" or path.startswith("/environ/"):
        env = {k: v for k, v in environ.items() if isinstance(v, str)}
        env["wsgi.version"] = list(environ["wsgi.version"])
        for k in (
            "wsgi.multithread",
            "wsgi.multiprocess",
            "wsgi.run_once",
            "wsgi.input_terminated",
        ):
            env[k] = environ[k]
        return text(start_response, json.dumps(env), ctype="application/json")
    if path == "/echo":
        parts = []
        while True:
            chunk = environ["wsgi.input"].read(65536)
            if not chunk:
                break
            parts.append(chunk)
        body = b"".join(parts)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/read-sized":
        # read(n) in a loop: streams, and shows EOF (b"") at the end.
        size = int(q.get("n", "1000"))
        h = hashlib.sha256()
        total = 0
        reads = 0
        inp = environ["wsgi.input"]
        while True:
            chunk = inp.read(size)
            if not chunk:
                break
            assert len(chunk) <= size
            reads += 1
            total += len(chunk)
            h.update(chunk)
        assert inp.read(size) == b""
        assert inp.read(1) == b""
        return text(
            start_response,
            json.dumps({"total": total, "sha256": h.hexdigest(), "reads": reads}),
            ctype="application/json",
        )
    if path == "/readline":
        size = int(q.get("n", "-1"))
        inp = environ["wsgi.input"]
        lines = []
        while True:
            line = inp.readline(size) if size >= 0 else inp.readline()
            if not line:
                break
            lines.append(line.decode("latin-1"))
        return text(start_response, json.dumps(lines), ctype="application/json")
    if path == "/readlines":
        hint = int(q.get("hint", "-1"))
        inp = environ["wsgi.input"]
        first = inp.readlines(hint) if hint >= 0 else inp.readlines()
        rest = [line for line in inp]
        return text(
            start_response,
            json.dumps([[x.decode() for x in first], [x.decode() for x in rest]]),
            ctype="application/json",
        )
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"then ")
        return [b"returned\n"]
    if path == "/write-many":
        # More write() calls than the chunks in flight between the app and
        # the connection: each 1 KiB chunk names its number.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(int(q.get("n", "64"))):
            write(b"%05d" % i + b"." * 1019)
        return []
    if path == "/yield-slowly":
        # The first chunk must reach the client while the app waits.

        def slowly() -> Iterator[bytes]:
            yield b"first\n"
            time.sleep(float(q.get("s", "2")))
            yield b"second\n"

        # (nginx would buffer the response otherwise.)
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])
        return slowly()
    if path == "/relay":
        # An app calling another uwire service with the IPC client (its
        # own runtime, blocked on) while it answers.
        import uwire

        c = uwire.Client(f"unix:{q['sock']}")
        try:
            r = c.request("GET", q.get("path", "/"))
            got = r.read()
        finally:
            c.close()
        return text(start_response, f"{r.status} {got.decode()}")
    if path == "/late-start":

        def late() -> Iterator[bytes]:
            start_response("201 Created", [("Content-Type", "text/plain")])
            yield b""
            yield b"late "
            yield b"start\n"

        return late()
    if path == "/exc-before-head":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("boom")
        except ValueError:
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"replaced by the error page\n"]
    if path == "/exc-after-head":

        def after() -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first chunk\n"
            try:
                raise ValueError("late failure")
            except ValueError:
                try:
                    start_response(
                        "500 Internal Server Error",
                        [("Content-Type", "text/plain")],
                        sys.exc_info(),
                    )
                except ValueError:
                    mark("exc-after-head", "re-raised")
                    raise
            yield b"never\n"

        return Tracked("exc-after-head-iter", after())
    if path == "/error-before-head":
        raise RuntimeError("the app failed")
    if path == "/error-in-iter":

        def failing() -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial\n"
            raise RuntimeError("failed while streaming")

        return Tracked("error-in-iter", failing())
    if path == "/status":
        code = q.get("code", "200")
        reason = {"204": "No Content", "304": "Not Modified", "200": "OK"}[code]
        headers = [] if code in ("204", "304") else [("Content-Type", "text/plain")]
        start_response(f"{code} {reason}", headers)
        return Tracked(f"status-{code}", [b"body that must not be sent"])
    if path == "/head":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
        return Tracked("head", [b"hello", b" world"])
    if path == "/short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"only 22 bytes of 100\n\n"]
    if path == "/short-stream":

        def short() -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
            yield b"first part, "
            yield b"then nothing\n"

        return short()
    if path == "/long":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"12345", b"6789"]
    if path == "/file":
        fname = q["path"]
        f = open(fname, "rb")
        f.read(int(q.get("skip", "0")))
        size = os.path.getsize(fname) - f.tell()
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        return environ["wsgi.file_wrapper"](f, 8192)  # type: ignore[no-any-return]
    if path == "/errors":
        environ["wsgi.errors"].write("app says: something to the log\n")
        environ["wsgi.errors"].writelines(["line two\n"])
        environ["wsgi.errors"].flush()
        return text(start_response, "logged\n")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked(q.get("name", "stream"), endless(), float(q.get("delay", "0.05")))
    if path == "/slow-read":
        # Reads the body slowly; records how the read ends.
        inp = environ["wsgi.input"]
        name = q.get("name", "slow-read")
        got = 0
        try:
            while True:
                chunk = inp.read(1024)
                if not chunk:
                    break
                got += len(chunk)
                mark(name, f"read {got}")
        except OSError as e:
            mark(name, f"raised {type(e).__name__} after {got}")
            raise
        return text(start_response, f"{got}\n")
    if path == "/sleep":
        time.sleep(float(q.get("s", "1")))
        return text(start_response, f"slept {os.getpid()}\n")
    if path == "/spin":
        # Pure Python: a timeout can interrupt it.
        name = q.get("name", "spin")
        try:
            end = time.monotonic() + float(q.get("s", "60"))
            while time.monotonic() < end:
                pass
        except BaseException as e:
            mark(name, f"interrupted by {type(e).__name__}")
            raise
        return text(start_response, "spun\n")
    if path == "/grow":
        HOG.append(b"x" * (int(q.get("mib", "100")) * 1024 * 1024))
        return text(start_response, f"{os.getpid()}\n")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


app = validator(inner)


def create_app(greeting: str = "factory") -> Callable[..., Any]:
    """An app factory (``pep_app:create_app('hi')``)."""

    def factory_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/greeting":
            return text(start_response, f"{greeting} {os.environ.get('UWIRE_TEST_GREETING', '')}\n")
        return inner(environ, start_response)

    return validator(factory_app)
