"""PEP 3333 over both protocols: through ``uwire proxy`` (uwire/1) and a
real nginx ``uwsgi_pass`` (classic uwsgi), every request through
``wsgiref.validate.validator`` (warnings are errors)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uwire
from conftest import REPO, Nginx, UwireProxy, UwireServer, http_request, wait_for, written
from uwire import _native


class Stack:
    def __init__(self, tmp: Path, threads: str) -> None:
        self.tmp = tmp
        self.threads = threads
        self.markers = tmp / "markers"
        self.markers.mkdir()
        self.server = UwireServer(
            tmp,
            "pep_app:app",
            "--threads",
            threads,
            "--timeout",
            "20",
            env={"UWIRE_TEST_MARKERS": str(self.markers)},
            workers=2,
        )
        self.raw = UwireServer(
            tmp,
            "pep_app:raw",
            "--threads",
            "2",
            name="raw",
            env={"UWIRE_TEST_MARKERS": str(self.markers)},
            workers=1,
        )
        self.proxy = UwireProxy(tmp, f"unix:{self.server.sock}")
        self.raw_proxy = UwireProxy(tmp, f"unix:{self.raw.sock}", name="raw-proxy")
        self.nginx: Nginx | None = None
        self.nginx_error: BaseException | None = None

    def get_nginx(self) -> Nginx:
        if self.nginx is None:
            self.nginx = Nginx(self.tmp, self.server.sock)
        return self.nginx

    def marker(self, name: str) -> str:
        p = self.markers / name
        return p.read_text() if p.exists() else ""

    def close(self) -> None:
        for p in (self.nginx, self.proxy, self.raw_proxy, self.raw, self.server):
            if p is not None:
                p.close()


@pytest.fixture(scope="module", params=["4", "1"], ids=["threads4", "threads1"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Two workers with 4 app threads, then with 1, which runs requests
    without a body on the worker's I/O thread where it can."""
    threads = str(request.param)
    d = Path("/tmp") / f"uwp-{os.getpid()}-{threads}"
    d.mkdir(exist_ok=True)
    s = Stack(d, threads)
    yield s
    s.close()
    log = s.server.log()
    shutil.rmtree(d, ignore_errors=True)
    # The validated app never tripped the validator.
    assert "WSGIWarning" not in log, log
    assert "AssertionError" not in log, log


@pytest.fixture(params=["uwire", "uwsgi"])
def front(request: pytest.FixtureRequest, stack: Stack) -> int:
    """The HTTP port of the front: uwire proxy (uwire/1) or nginx (classic uwsgi)."""
    if request.param == "uwire":
        return stack.proxy.port
    return stack.get_nginx().port


def test_hello(front: int) -> None:
    status, headers, body = http_request(front, "GET", "/hello")
    assert (status, body) == (200, b"hello\n")
    assert headers["content-length"] == "6"


def test_not_found(front: int) -> None:
    status, _, body = http_request(front, "GET", "/nope")
    assert (status, body) == (404, b"not found\n")


def test_environ_same_over_both_protocols(stack: Stack) -> None:
    envs = []
    for port in (stack.proxy.port, stack.get_nginx().port):
        status, _, body = http_request(
            port,
            "POST",
            "/environ/caf%C3%A9?x=1&y=%20",
            body=b"abc",
            headers={"Content-Type": "text/x-test", "X-Custom": "v1", "Cookie": "a=1"},
        )
        assert status == 200, body
        envs.append(json.loads(body))
    keys = [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "REQUEST_URI",
        "SERVER_PROTOCOL",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "HTTP_X_CUSTOM",
        "HTTP_COOKIE",
        "SERVER_NAME",
        "wsgi.url_scheme",
        "wsgi.version",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
        "wsgi.input_terminated",
        "REMOTE_ADDR",
    ]
    a, b = ({k: e.get(k) for k in keys} for e in envs)
    assert a == b
    assert a["PATH_INFO"] == "/environ/caf\u00c3\u00a9"  # bytes as latin-1 (PEP 3333)
    assert a["QUERY_STRING"] == "x=1&y=%20"
    assert a["CONTENT_LENGTH"] == "3"
    assert a["wsgi.version"] == [1, 0]
    assert a["wsgi.multithread"] is (stack.threads != "1")
    assert a["wsgi.multiprocess"] is True
    assert a["wsgi.input_terminated"] is True and a["wsgi.run_once"] is False
    assert a["REMOTE_ADDR"] == "127.0.0.1"


def test_environ_vectors() -> None:
    """The shared environ vectors, through the same conversion as live requests."""
    cases = json.loads((REPO / "tests/vectors/environ.json").read_text())["cases"]
    assert len(cases) > 20
    for case in cases:
        if "error" in case:
            with pytest.raises(ValueError) as e:
                _native.build_environ(case["head"], case["config"])
            assert str(e.value) == case["error"], case["name"]
            continue
        env = _native.build_environ(case["head"], case["config"])
        cgi = {k: v for k, v in env.items() if not k.startswith("wsgi.")}
        assert cgi == case["environ"], case["name"]
        assert env["wsgi.url_scheme"] == (
            "https" if case["environ"].get("REQUEST_SCHEME") == "https" else "http"
        )


def test_input_read_sized_to_eof(front: int) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    status, _, body = http_request(front, "POST", "/read-sized?n=65536", body=data)
    assert status == 200, body
    got = json.loads(body)
    assert got["total"] == len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()


def test_input_streams_before_the_body_ends(stack: Stack) -> None:
    """The app reads the first part while the client has not sent the rest."""
    name = "streaming-read"
    with socket.create_connection(("127.0.0.1", stack.proxy.port)) as s:
        s.sendall(
            b"POST /slow-read?name=" + name.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 4096\r\n\r\n" + b"a" * 2048
        )
        wait_for(lambda: "read 2048" in stack.marker(name), 20, "the first half to be read")
        assert "read 4096" not in stack.marker(name)
        s.sendall(b"b" * 2048)
        resp = s.recv(65536)
        while b"\r\n\r\n" not in resp:
            resp += s.recv(65536)
    assert resp.startswith(b"HTTP/1.1 200"), resp
    assert "read 4096" in stack.marker(name)


def test_readline_and_iteration(front: int) -> None:
    body = b"a\nbb\nccc"
    status, _, out = http_request(front, "POST", "/readline", body=body)
    assert status == 200 and json.loads(out) == ["a\n", "bb\n", "ccc"]
    status, _, out = http_request(front, "POST", "/readline?n=2", body=body)
    assert status == 200 and json.loads(out) == ["a\n", "bb", "\n", "cc", "c"]
    status, _, out = http_request(front, "POST", "/readlines?hint=3", body=b"a\nbb\nccc\ndddd\n")
    assert status == 200 and json.loads(out) == [["a\n", "bb\n"], ["ccc\n", "dddd\n"]]
    status, _, out = http_request(front, "POST", "/readlines", body=body)
    assert status == 200 and json.loads(out) == [["a\n", "bb\n", "ccc"], []]


def test_write_callable(front: int) -> None:
    status, _, body = http_request(front, "GET", "/write")
    assert (status, body) == (200, b"written then returned\n")


def test_write_more_chunks_than_in_flight(front: int) -> None:
    status, _, body = http_request(front, "GET", "/write-many?n=64")
    assert status == 200
    assert body == written(64)


def test_chunks_go_out_as_the_app_yields(front: int) -> None:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", front, timeout=30)
    try:
        conn.request("GET", "/yield-slowly?s=2")
        r = conn.getresponse()
        assert r.status == 200
        assert r.read(6) == b"first\n"
        first = time.monotonic() - started
        assert r.read() == b"second\n"
        total = time.monotonic() - started
    finally:
        conn.close()
    # The first chunk did not wait for the second.
    assert first < 1.5 and total >= 2, (first, total)


def test_start_response_during_first_iteration(front: int) -> None:
    status, _, body = http_request(front, "GET", "/late-start")
    assert (status, body) == (201, b"late start\n")


def test_exc_info_before_head_replaces_the_status(front: int) -> None:
    status, _, body = http_request(front, "GET", "/exc-before-head")
    assert (status, body) == (503, b"replaced by the error page\n")


def read_broken(port: int, path: str) -> tuple[int, bytes, bool]:
    """GET ``path``; returns (status, body read, whether the body was cut off)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        try:
            r = conn.getresponse()
        except http.client.RemoteDisconnected:
            # Cut before the head was passed on: status 0.
            return 0, b"", True
        try:
            return r.status, r.read(), False
        except http.client.IncompleteRead as e:
            return r.status, e.partial, True
        except (ConnectionError, http.client.HTTPException):
            return r.status, b"", True
    finally:
        conn.close()


def test_exc_info_after_head_is_reraised_and_the_stream_cut(stack: Stack, front: int) -> None:
    before = stack.marker("exc-after-head").count("re-raised")
    status, body, cut = read_broken(front, "/exc-after-head")
    assert status in (0, 200)
    # Classic uwsgi bodies without Content-Length are close-delimited: nginx
    # cannot tell a cut one from a complete one (see the README).
    assert cut or front == stack.get_nginx().port, body
    assert b"never" not in body
    wait_for(
        lambda: stack.marker("exc-after-head").count("re-raised") > before,
        10,
        "exc_info to be re-raised",
    )
    assert "closed after" in stack.marker("exc-after-head-iter")


def test_app_error_before_head_is_500(stack: Stack, front: int) -> None:
    status, _, body = http_request(front, "GET", "/error-before-head")
    assert status == 500
    assert b"the app failed" not in body  # no traceback leaks to the client
    wait_for(lambda: "RuntimeError: the app failed" in stack.server.log(), 10, "the traceback")


def test_app_error_while_streaming_cuts_the_response(stack: Stack, front: int) -> None:
    status, body, cut = read_broken(front, "/error-in-iter")
    assert status in (0, 200)
    # Classic uwsgi bodies without Content-Length are close-delimited: nginx
    # cannot tell a cut one from a complete one (see the README).
    assert cut or front == stack.get_nginx().port, body
    wait_for(lambda: "closed after" in stack.marker("error-in-iter"), 10, "close()")


@pytest.mark.parametrize(
    "path,needle",
    [
        ("/bad-header-value", "invalid value for response header"),
        ("/bad-header-name", "invalid response header name"),
        ("/hop-by-hop", "hop-by-hop header"),
        ("/bad-status", "invalid status"),
        ("/non-latin1-header", "is not ISO-8859-1"),
        ("/str-body", "must yield bytes"),
        ("/no-start", "without calling start_response"),
    ],
)
def test_invalid_responses_are_500_and_logged(stack: Stack, path: str, needle: str) -> None:
    status, headers, body = http_request(stack.raw_proxy.port, "GET", path)
    assert status == 500, body
    assert "x-bad" not in headers and "injected" not in headers
    assert b"should not be sent" not in body
    wait_for(lambda: needle in stack.raw.log(), 10, f"log line {needle!r}")


def test_response_header_values_are_latin1_native_strings(stack: Stack) -> None:
    status, headers, body = http_request(stack.raw_proxy.port, "GET", "/latin1-header")
    assert (status, body) == (200, b"ok")
    # http.client reads header bytes as latin-1: the byte 0xE9 is U+00E9.
    assert headers["x-name"] == "caf\u00e9"


def test_head_has_no_body_and_keeps_content_length(stack: Stack, front: int) -> None:
    before = stack.marker("head").count("closed")
    status, headers, body = http_request(front, "HEAD", "/head")
    assert status == 200 and body == b""
    assert headers.get("content-length") == "11"
    wait_for(lambda: stack.marker("head").count("closed") > before, 10, "close()")


@pytest.mark.parametrize("code", ["204", "304"])
def test_no_body_statuses(stack: Stack, front: int, code: str) -> None:
    before = stack.marker(f"status-{code}").count("closed")
    status, headers, body = http_request(front, "GET", f"/status?code={code}")
    assert status == int(code) and body == b""
    if code == "204":
        assert "content-length" not in headers
    wait_for(lambda: stack.marker(f"status-{code}").count("closed") > before, 10, "close()")


@pytest.mark.parametrize("path", ["/short", "/short-stream"])
def test_body_shorter_than_content_length_is_cut_not_hung(front: int, path: str) -> None:
    started = time.monotonic()
    status, body, cut = read_broken(front, path)
    assert status in (0, 200) and cut, body
    assert time.monotonic() - started < 15


def test_body_longer_than_content_length_is_truncated(front: int) -> None:
    status, _headers, body = http_request(front, "GET", "/long")
    assert (status, body) == (200, b"12345")


def test_file_wrapper_streams_the_file(stack: Stack, front: int) -> None:
    path = stack.tmp / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    status, _headers, body = http_request(front, "GET", f"/file?path={path}&skip=100")
    assert status == 200
    assert body == data[100:]


def test_wsgi_errors_goes_to_the_log(stack: Stack, front: int) -> None:
    status, _, _ = http_request(front, "GET", "/errors")
    assert status == 200
    wait_for(lambda: "app says: something to the log" in stack.server.log(), 10, "the log line")
    assert "line two" in stack.server.log()


def test_reset_closes_the_iterable_and_stops_pulling(stack: Stack) -> None:
    """The HTTP client goes away: the proxy resets the stream, the server
    calls close() and pulls no more chunks."""
    name = "cancel-stream"
    with socket.create_connection(("127.0.0.1", stack.proxy.port)) as s:
        s.sendall(f"GET /stream?name={name}&delay=0.02 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while got.count(b"chunk") < 5:
            got += s.recv(65536)
    wait_for(lambda: "closed after" in stack.marker(name), 20, "close() after the reset")
    closed_at = stack.marker(name).count("pulled")
    time.sleep(0.5)
    assert stack.marker(name).count("pulled") == closed_at


def test_disconnect_closes_the_iterable_over_uwsgi(stack: Stack) -> None:
    name = "cancel-stream-uwsgi"
    port = stack.get_nginx().port
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET /stream?name={name}&delay=0.02 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while got.count(b"chunk") < 5:
            got += s.recv(65536)
    wait_for(lambda: "closed after" in stack.marker(name), 30, "close() after the disconnect")


def test_input_read_raises_after_reset(stack: Stack) -> None:
    name = "reset-read"
    with socket.create_connection(("127.0.0.1", stack.proxy.port)) as s:
        s.sendall(
            b"POST /slow-read?name=" + name.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000000\r\n\r\n" + b"x" * 4096
        )
        wait_for(lambda: "read 4096" in stack.marker(name), 20, "the first bytes to be read")
    wait_for(lambda: "raised ClientDisconnected" in stack.marker(name), 20, "the read to raise")


def test_ipc_client_reaches_the_app_directly(stack: Stack) -> None:
    c = uwire.Client(f"unix:{stack.server.sock}")
    r = c.request("POST", "/echo", body=[b"a", b"b", b"c"])
    assert (r.status, r.read()) == (200, b"abc")
    r = c.request("GET", "/hello")
    assert r.header("content-length") == "6" and r.read() == b"hello\n"


def test_app_calls_another_service_with_the_ipc_client(stack: Stack, front: int) -> None:
    # With one app thread the app runs on the worker's I/O thread: the
    # client's own runtime must be free to block on there too.
    target = f"/relay?sock={stack.raw.sock}&path=/hello"
    for _ in range(3):
        status, _, body = http_request(front, "GET", target)
        assert (status, body) == (200, b"200 hello\n")
