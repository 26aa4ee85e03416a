"""ASGI 3.0 apps served by ``python -m uwire`` (``--interface auto``
detects them): a FastAPI app over HTTP and a Starlette WebSocket app, reached
through the crate's ``uwire proxy`` (uwire/1 streams, upgrades tunnelled),
``python -m uwire --http`` and a real nginx ``uwsgi_pass`` (classic uwsgi),
driven by httpx, curl and the ``websockets`` client."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import Nginx, UwireProxy, UwireServer, free_port, wait_for

MIB = 1024 * 1024


class Served:
    def __init__(self, tmp: Path, app: str, name: str, *args: str, workers: int = 2) -> None:
        self.tmp = tmp
        self.events = tmp / f"{name}-events.txt"
        self.events.write_text("")
        self.server = UwireServer(
            tmp, app, *args, workers=workers, name=name, env={"ASGI_EVENTS": str(self.events)}
        )
        self.proxy = UwireProxy(tmp, f"unix:{self.server.sock}", name=f"{name}-proxy")
        self._nginx: Nginx | None = None

    @property
    def nginx(self) -> Nginx:
        if self._nginx is None:
            self._nginx = Nginx(self.tmp, self.server.sock, name=f"{self.server.sock.stem}-nginx")
        return self._nginx

    def lines(self) -> list[str]:
        return self.events.read_text().splitlines()

    def close(self) -> None:
        for p in (self._nginx, self.proxy, self.server):
            if p is not None:
                p.close()


@pytest.fixture(scope="module")
def tmpdir_asgi() -> Iterator[Path]:
    d = Path("/tmp") / f"uwasgi-{os.getpid()}"
    d.mkdir(exist_ok=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def fastapi_site(tmpdir_asgi: Path) -> Iterator[Served]:
    s = Served(tmpdir_asgi, "fastapi_site:app", "fastapi")
    yield s
    s.close()
    log = s.server.log()
    # The only tracebacks: the /boom route's.
    assert log.count("Traceback") <= log.count("RuntimeError: boom"), log


@pytest.fixture(scope="module")
def ws_site(tmpdir_asgi: Path) -> Iterator[Served]:
    s = Served(tmpdir_asgi, "starlette_ws:app", "starlette")
    yield s
    s.close()


@pytest.fixture
def api(fastapi_site: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fastapi_site.proxy.base, timeout=60) as c:
        yield c


# ---- FastAPI over HTTP -------------------------------------------------------


def test_fastapi_json_params_and_lifespan_resource(api: httpx.Client) -> None:
    assert api.get("/").json() == {"hello": "world"}
    # The item comes from the database the lifespan opened (scope["state"]).
    assert api.get("/items/2", params={"q": "ripe"}).json() == {
        "id": 2,
        "name": "pear",
        "q": "ripe",
    }
    r = api.get("/items/9")
    assert r.status_code == 404 and r.json() == {"detail": "no such item"}
    assert api.get("/items/abc").status_code == 422
    r = api.post("/items", json={"name": "plum", "price": 1.5, "tags": ["a"]})
    assert r.json() == {"created": {"name": "plum", "price": 1.5, "tags": ["a"]}, "total": 3.0}


def test_fastapi_dependency(api: httpx.Client) -> None:
    assert api.get("/private").status_code == 401
    assert api.get("/private", headers={"x-token": "secret"}).json() == {"token": "secret"}


def test_fastapi_streaming_response(api: httpx.Client) -> None:
    with api.stream("GET", "/stream", params={"n": 20}) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers
        body = b"".join(r.iter_bytes())
    assert body == b"".join(f"chunk {i}\n".encode() for i in range(20))


def test_fastapi_request_body_streams_both_ways(api: httpx.Client) -> None:
    data = os.urandom(5 * MIB)

    def gen() -> Iterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    r = api.post("/echo", content=gen())
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()


def test_fastapi_background_task(api: httpx.Client, fastapi_site: Served) -> None:
    assert api.post("/background", params={"name": "bg-1"}).json() == {"queued": "bg-1"}
    wait_for(lambda: "background bg-1" in fastapi_site.lines(), 30, "background task")


def test_fastapi_app_error_is_500(api: httpx.Client) -> None:
    r = api.get("/boom")
    assert r.status_code == 500
    # The worker keeps serving.
    assert api.get("/").status_code == 200


def test_scope_values(api: httpx.Client, fastapi_site: Served) -> None:
    s = api.get("/scope", params={"a": "1"}).json()
    assert s["asgi"]["version"] == "3.0"
    assert s["http_version"] == "1.1"
    assert s["scheme"] == "http"
    assert s["path"] == "/scope" and s["root_path"] == ""
    assert s["query_string"] == "a=1"
    assert s["client"][0] == "127.0.0.1"
    assert s["server"] == ["127.0.0.1", fastapi_site.proxy.port]
    assert s["has_db"] is True


def test_curl_through_nginx_uwsgi(fastapi_site: Served) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    out = subprocess.run(
        ["curl", "-sS", "-m", "30", f"{fastapi_site.nginx.base}/items/1?q=n"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == b'{"id":1,"name":"apple","q":"n"}'


def test_lifespan_startup_and_shutdown(tmpdir_asgi: Path) -> None:
    events = tmpdir_asgi / "ls-events.txt"
    events.write_text("")
    srv = UwireServer(
        tmpdir_asgi, "fastapi_site:app", workers=1, name="ls", env={"ASGI_EVENTS": str(events)}
    )
    try:
        assert any(x.startswith("startup ") for x in events.read_text().splitlines())
        srv.signal(signal.SIGTERM)
        assert srv.wait(30) == 0, srv.log()
        assert any(x.startswith("shutdown ") for x in events.read_text().splitlines())
    finally:
        srv.close()


def test_failing_lifespan_startup_stops_the_worker(tmpdir_asgi: Path) -> None:
    srv = UwireServer(
        tmpdir_asgi,
        "fastapi_site:app",
        workers=2,
        name="fail",
        env={"FAIL_STARTUP": "1"},
        wait=False,
    )
    try:
        code = srv.wait(60)
        log = srv.log()
        assert code == 3, log
        assert "ASGI lifespan startup failed" in log, log
        assert "database unreachable (FAIL_STARTUP=1)" in log, log
        assert "worker serving" not in log, log
    finally:
        srv.close()


def test_http_disconnect_reaches_the_app(ws_site: Served) -> None:
    """A client that goes away mid-response: the streaming app is told
    (``http.disconnect``) and stops promptly."""
    before = ws_site.lines().count("forever ended")
    with socket.create_connection(("127.0.0.1", ws_site.proxy.port), timeout=30) as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while got.count(b"\n") < 12:
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
    wait_for(
        lambda: ws_site.lines().count("forever ended") > before, 20, "the app to see the disconnect"
    )


def test_http_front_serves_asgi(tmpdir_asgi: Path) -> None:
    """``python -m uwire --http``: the built-in front (uwire proxy's code)."""
    port = free_port()
    srv = UwireServer(
        tmpdir_asgi, "starlette_ws:app", "--http", f"127.0.0.1:{port}", workers=1, name="front"
    )
    try:
        wait_for(lambda: "HTTP front on" in srv.log(), 30, "the front")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text == "Hello, world!"

        async def ws() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as c:
                await c.send("via --http")
                assert await c.recv() == "via --http"

        asyncio.run(asyncio.wait_for(ws(), 60))
    finally:
        srv.close()


@pytest.mark.parametrize("front", ["proxy", "http"])
def test_concurrent_requests_reach_every_worker(tmpdir_asgi: Path, front: str) -> None:
    # An ASGI worker allows 128 streams per uwire/1 connection: a pool that
    # filled one connection before opening the next sent everything to the
    # worker that accepted the first, and the others idled. Requests that
    # overlap must spread over both workers, WebSockets too.
    port = free_port()
    args = ("--http", f"127.0.0.1:{port}") if front == "http" else ()
    srv = UwireServer(tmpdir_asgi, "starlette_ws:app", *args, workers=2, name=f"spread-{front}")
    proxy = None
    try:
        if front == "http":
            wait_for(lambda: "HTTP front on" in srv.log(), 30, "the front")
        else:
            proxy = UwireProxy(tmpdir_asgi, f"unix:{srv.sock}", name=f"spread-{front}-proxy")
            port = proxy.port
        # (With --http, the front is the master's child too.)
        wait_for(lambda: len(srv.worker_pids()) == 2 + (front == "http"), 30, "two workers")
        children = set(srv.worker_pids())

        async def http() -> set[str]:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                rs = await asyncio.gather(*(c.get("/pid?s=0.5") for _ in range(8)))
            return {r.text for r in rs}

        async def ws() -> set[str]:
            async def one() -> str:
                async with websockets.connect(f"ws://127.0.0.1:{port}/wspid") as c:
                    await c.send("pid?")
                    got = str(await c.recv())
                    await asyncio.sleep(0.5)
                    await c.send("bye")
                    return got

            return set(await asyncio.gather(*(one() for _ in range(8))))

        for run in (http, ws):
            served = {int(p) for p in asyncio.run(asyncio.wait_for(run(), 60))}
            assert len(served) == 2 and served <= children, (run.__name__, served, children)
    finally:
        if proxy is not None:
            proxy.close()
        srv.close()


# ---- Starlette WebSockets ----------------------------------------------------


def ws_url(s: Served, path: str, front: str = "uwire") -> str:
    port = s.proxy.port if front == "uwire" else s.nginx.port
    return f"ws://127.0.0.1:{port}{path}"


@pytest.mark.parametrize("front", ["uwire", "nginx"])
def test_websocket_echo_thousand_each_way(ws_site: Served, front: str) -> None:
    async def run() -> None:
        async with websockets.connect(
            ws_url(ws_site, "/ws", front), subprotocols=["chat"], max_size=8 * MIB
        ) as c:
            assert c.subprotocol == "chat"
            for i in range(1000):
                await c.send(f"text {i}")
                assert await c.recv() == f"text {i}"
                payload = bytes([i % 256]) * (i % 500 + 1)
                await c.send(payload)
                assert await c.recv() == payload
            big = os.urandom(2 * MIB)
            await c.send(big)
            assert await c.recv() == big
            pong = await c.ping(b"hi")
            await asyncio.wait_for(pong, 10)

    asyncio.run(asyncio.wait_for(run(), 120))


def test_websocket_hundred_concurrent(ws_site: Served) -> None:
    async def one(n: int) -> None:
        async with websockets.connect(ws_url(ws_site, "/ws")) as c:
            for i in range(20):
                await c.send(f"{n}:{i}")
                assert await c.recv() == f"{n}:{i}"

    async def run() -> None:
        await asyncio.gather(*(one(n) for n in range(100)))

    asyncio.run(asyncio.wait_for(run(), 120))


def test_websocket_broadcast(tmpdir_asgi: Path) -> None:
    # One worker: the room is a set in the worker's memory (as with any
    # multi-process server, a broadcast across workers needs a broker).
    site = Served(tmpdir_asgi, "starlette_ws:app", "room", workers=1)
    try:
        asyncio.run(asyncio.wait_for(broadcast(site), 60))
    finally:
        site.close()


async def broadcast(site: Served) -> None:
    clients = [await websockets.connect(ws_url(site, "/room")) for _ in range(3)]
    try:
        # Each join is in the room before anyone speaks: a round trip
        # through the room proves it.
        for c in clients:
            await c.send("ready")
            while await asyncio.wait_for(c.recv(), 10) != "ready":
                pass
        await clients[0].send("hello room")
        for c in clients:
            while (m := await asyncio.wait_for(c.recv(), 10)) == "ready":
                pass
            assert m == "hello room"
    finally:
        for c in clients:
            await c.close()


def test_websocket_close_codes_and_refusal(ws_site: Served) -> None:
    async def run() -> None:
        with pytest.raises(websockets.InvalidStatus) as e:
            async with websockets.connect(ws_url(ws_site, "/refuse")):
                pass
        assert e.value.response.status_code == 403
        async with websockets.connect(ws_url(ws_site, "/closer")) as c:
            assert await c.recv() == "bye"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await c.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4001 and closed.value.rcvd.reason == "done"
        async with websockets.connect(ws_url(ws_site, "/ws")) as c:
            await c.close(code=4002, reason="client done")
        wait_for(lambda: "echo disconnect 4002" in ws_site.lines(), 20, "disconnect 4002")

    asyncio.run(asyncio.wait_for(run(), 60))


def test_websocket_client_vanishing(ws_site: Served) -> None:
    """The client's TCP connection drops without a closing handshake: the
    app gets ``websocket.disconnect`` (1006) promptly."""
    before = ws_site.lines().count("echo disconnect 1006")
    with socket.create_connection(("127.0.0.1", ws_site.proxy.port), timeout=30) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    started = time.monotonic()
    wait_for(
        lambda: ws_site.lines().count("echo disconnect 1006") > before, 20, "the app to see 1006"
    )
    assert time.monotonic() - started < 20


def test_tunnel_idle_timeout_flag(tmpdir_asgi: Path) -> None:
    """``--tunnel-idle-timeout`` at its edge: a socket that talks more often
    than the limit outlives it; a silent one is closed and the app sees it."""
    site = Served(tmpdir_asgi, "starlette_ws:app", "idle", "--tunnel-idle-timeout", "1", workers=1)

    async def run() -> None:
        async with websockets.connect(ws_url(site, "/ws"), ping_interval=None) as c:
            for i in range(10):
                await c.send(f"{i}")
                assert await c.recv() == f"{i}"
                await asyncio.sleep(0.3)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(c.recv(), 30)

    try:
        asyncio.run(asyncio.wait_for(run(), 60))
        wait_for(lambda: any("echo disconnect" in x for x in site.lines()), 20, "app disconnect")
    finally:
        site.close()
