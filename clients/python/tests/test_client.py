"""The IPC client against real servers: the crate's ``uwire serve`` (a Rust
uwire service) and ``python -m uwire``."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import uwire
from conftest import Proc, UwireServer, uwire_bin, wait_for
from uwire import errors


@pytest.fixture(scope="module")
def rust_sock() -> Iterator[Path]:
    d = Path("/tmp") / f"uwc-{os.getpid()}"
    d.mkdir(exist_ok=True)
    sock = d / "rust.sock"
    proc = Proc(
        [str(uwire_bin()), "serve", "--bind", f"unix:{sock}", "--max-body-size", "1000000"],
        d / "serve.log",
    )
    wait_for(lambda: sock.exists(), what="uwire serve")
    yield sock
    proc.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def py_server() -> Iterator[UwireServer]:
    d = Path("/tmp") / f"uwcp-{os.getpid()}"
    d.mkdir(exist_ok=True)
    s = UwireServer(d, "pep_app:app", "--threads", "4", workers=1)
    yield s
    s.close()
    shutil.rmtree(d, ignore_errors=True)


def test_the_client_classes_load_on_first_use() -> None:
    # `import uwire` (the master, a WSGI worker) does not import asyncio;
    # the client's names bring it when first asked for.
    code = (
        "import sys, uwire\n"
        "assert 'asyncio' not in sys.modules, 'asyncio imported'\n"
        "assert 'Client' in dir(uwire)\n"
        "from uwire import AsyncClient, Client\n"
        "import uwire.client as c\n"
        "assert (Client, AsyncClient) == (c.Client, c.AsyncClient)\n"
        "assert uwire.Response is c.Response and 'asyncio' in sys.modules\n"
        "try:\n"
        "    uwire.Nothing\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "module 'uwire' has no attribute 'Nothing'"


def test_get_and_headers(rust_sock: Path) -> None:
    c = uwire.Client(f"unix:{rust_sock}")
    r = c.request("GET", "/")
    assert r.status == 200
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.read() == b"Hello from uwire!\n"


def test_bytes_and_iterable_bodies_stream(rust_sock: Path) -> None:
    c = uwire.Client(f"unix:{rust_sock}")
    assert c.request("POST", "/echo", body=b"abc").read() == b"abc"

    def gen() -> Iterator[bytes]:
        for i in range(100):
            yield b"%05d" % i

    expected = b"".join(b"%05d" % i for i in range(100))
    assert c.request("POST", "/echo", body=gen()).read() == expected


def test_large_body_both_ways_streams(rust_sock: Path) -> None:
    c = uwire.Client(f"unix:{rust_sock}")
    chunk = os.urandom(64 * 1024)
    n = 15  # under the server's 1 MB limit
    r = c.request("POST", "/echo", body=(chunk for _ in range(n)))
    h = hashlib.sha256()
    got = 0
    for part in r:
        got += len(part)
        h.update(part)
    assert got == n * len(chunk)
    assert h.hexdigest() == hashlib.sha256(chunk * n).hexdigest()


def test_thread_safe_and_multiplexed(rust_sock: Path) -> None:
    c = uwire.Client(f"unix:{rust_sock}", max_connections=2)
    results: list[bytes] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(20):
            body = f"{i}-{j}".encode()
            out = c.request("POST", "/echo", body=body).read()
            with lock:
                results.append(out)
            assert out == body

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 16 * 20
    assert sum(c.connection_counts()) <= 2


def _sockets(pid: int) -> set[str]:
    """The sockets process ``pid`` holds descriptors to (``socket:[inode]``)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while listed
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _fork_and_inspect(
    fork: Callable[[], int], child_work: Callable[[], bool]
) -> tuple[set[str], bool]:
    """Forks with ``fork`` (0 in the child); the child runs ``child_work``
    (True when it went well) under a 15 s alarm, signals, and waits.
    Returns the sockets the child holds at that point, as the parent sees
    them in /proc, and whether the child's work went well. A child that
    dies first (an exception, its alarm) fails the status check, not hangs
    the parent: the parent holds no write end of the pipe it reads."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(15)
            ok = child_work()
            os.write(ready_w, b"1" if ok else b"0")
            os.read(go_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        report = os.read(ready_r, 1)
        held = _sockets(pid)
    finally:
        try:
            os.write(go_w, b"x")
        except BrokenPipeError:  # the child is gone: its status says why
            pass
        _, status = os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(go_w)
    assert os.waitstatus_to_exitcode(status) == 0, f"status {status}"
    return held, report == b"1"


def test_a_forked_child_makes_its_own_connections(rust_sock: Path) -> None:
    # A client in use by threads when the process forks (a preloading
    # server's workers, a multiprocessing pool): each child makes its own
    # connections on its first request (the inherited ones are driven by
    # the parent's runtime, whose threads the child does not have, and
    # their sockets are the parent's), and the parent's keep working.
    c = uwire.Client(f"unix:{rust_sock}", timeout=20)
    assert c.request("POST", "/echo", body=b"before").read() == b"before"
    stop = threading.Event()
    failures: list[BaseException] = []

    def load() -> None:
        while not stop.is_set():
            body = os.urandom(70_000)
            try:
                assert c.request("POST", "/echo", body=body).read() == body
            except BaseException as e:  # reported by the parent below
                failures.append(e)
                return

    def child(i: int) -> bool:
        body = b"child %d" % i
        same = c.request("POST", "/echo", body=body).read() == body
        fresh = uwire.Client(f"unix:{rust_sock}").request("GET", "/")
        return bool(same and fresh.status == 200)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            _, ok = _fork_and_inspect(os.fork, functools.partial(child, i))
            assert ok, f"child {i}"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures
    assert c.request("POST", "/echo", body=b"after").read() == b"after"


def test_a_forked_child_lets_go_of_the_parents_sockets(rust_sock: Path) -> None:
    # A child keeps no descriptor to the connections it inherited, so that
    # they end when the parent closes them (else the server would see them
    # stay open until every child exits). Right after os.fork() through the
    # fork hook; for a fork Python does not see (C code calling fork()), at
    # the child's first use of the client.
    # The client runtime (started by the first request of the process)
    # holds sockets of its own: start it before counting.
    warm = uwire.Client(f"unix:{rust_sock}")
    assert warm.request("GET", "/").status == 200
    before = _sockets(os.getpid())
    c = uwire.Client(f"unix:{rust_sock}", max_connections=1, timeout=20)
    assert c.request("POST", "/echo", body=b"parent").read() == b"parent"
    ours = _sockets(os.getpid()) - before
    assert len(ours) == 1, ours  # the pooled connection

    held, ok = _fork_and_inspect(os.fork, lambda: True)
    assert ok
    assert not held & ours, "the child kept the parent's connection after os.fork()"

    def use() -> bool:
        return bool(c.request("POST", "/echo", body=b"child").read() == b"child")

    # fork(2) itself, with the GIL held (a PyDLL call does not release it):
    # Python's fork hooks do not run.
    libc = ctypes.PyDLL(None)
    held, ok = _fork_and_inspect(libc.fork, lambda: bool(_sockets(os.getpid()) & ours))
    assert ok, "without the hook, the child holds the connection until it uses the client"
    held, ok = _fork_and_inspect(libc.fork, use)
    assert ok
    assert not held & ours, "the child kept the parent's connection after using the client"
    assert held - before - ours, "the child made a connection of its own"

    # The parent's connection is untouched.
    assert c.request("POST", "/echo", body=b"after").read() == b"after"
    assert _sockets(os.getpid()) - before == ours


def test_async_client(rust_sock: Path) -> None:
    async def main() -> None:
        c = uwire.AsyncClient(f"unix:{rust_sock}")
        r = await c.request("GET", "/")
        assert (r.status, await r.read()) == (200, b"Hello from uwire!\n")

        async def agen() -> AsyncIterator[bytes]:
            for i in range(50):
                await asyncio.sleep(0)
                yield b"%03d," % i

        r = await c.request("POST", "/echo", body=agen())
        chunks = [x async for x in r]
        assert b"".join(chunks) == b"".join(b"%03d," % i for i in range(50))

        async def one(i: int) -> bytes:
            resp = await c.request("POST", "/echo", body=b"n%d" % i)
            return await resp.read()

        outs = await asyncio.gather(*(one(i) for i in range(100)))
        assert outs == [b"n%d" % i for i in range(100)]

    asyncio.run(main())


def test_connect_error_is_typed(tmp: Path) -> None:
    c = uwire.Client(f"unix:{tmp}/missing.sock", connect_timeout=1.0)
    with pytest.raises(errors.ConnectError) as e:
        c.request("GET", "/")
    assert isinstance(e.value, ConnectionError)
    assert isinstance(e.value, errors.ClientError)

    async def main() -> None:
        ac = uwire.AsyncClient(f"unix:{tmp}/missing.sock", connect_timeout=1.0)
        with pytest.raises(errors.ConnectError):
            await ac.request("GET", "/")

    asyncio.run(main())


def test_timeout_is_typed(py_server: UwireServer) -> None:
    c = uwire.Client(f"unix:{py_server.sock}")
    with pytest.raises(errors.Timeout) as e:
        c.request("GET", "/sleep?s=3", timeout=0.3)
    assert isinstance(e.value, TimeoutError)
    # The client keeps working.
    assert c.request("GET", "/hello").read() == b"hello\n"


def test_body_over_the_server_limit(rust_sock: Path) -> None:
    c = uwire.Client(f"unix:{rust_sock}")
    # Announced length over the limit: the server answers 413.
    r = c.request("POST", "/echo", body=b"x" * 2_000_000)
    assert r.status == 413
    # Streamed past the limit: the server resets the stream.
    big = (b"y" * 65536 for _ in range(40))
    with pytest.raises((errors.BodyTooLarge, errors.StreamReset)) as e:
        c.request("POST", "/echo", body=big).read()
    assert e.value.status_code == 413 or e.value.reason is not None


def test_invalid_request_is_typed(rust_sock: Path) -> None:
    c = uwire.Client(f"unix:{rust_sock}")
    with pytest.raises(errors.InvalidRequest):
        c.request("GET", "/", headers=[("x-bad", "a\r\nb")])
    with pytest.raises(errors.InvalidRequest):
        c.request("BAD METHOD", "/")
    with pytest.raises(TypeError):
        c.request("POST", "/", body="text")  # type: ignore[arg-type]


def test_closing_a_response_resets_the_stream(py_server: UwireServer, tmp: Path) -> None:
    c = uwire.Client(f"unix:{py_server.sock}")
    r = c.request("GET", "/stream?delay=0.01")
    first = next(iter(r))
    assert first.startswith(b"chunk")
    r.close()
    # The connection is still good for more requests.
    assert c.request("GET", "/hello").read() == b"hello\n"


def test_python_app_over_the_ipc_client(py_server: UwireServer) -> None:
    c = uwire.Client(f"unix:{py_server.sock}")
    r = c.request("POST", "/read-sized?n=1000", body=b"z" * 12345)
    assert r.status == 200
    assert b'"total": 12345' in r.read()
