"""The uwire/1 IPC client: call a uwire server (a Rust service, or a Python
app served by ``python -m uwire``) over a Unix socket or TCP, with many
concurrent requests multiplexed on a few pooled connections.

::

    import uwire

    client = uwire.Client("unix:/run/app.sock")
    resp = client.request("POST", "/echo", headers=[("content-type", "text/plain")],
                          body=b"hello")
    assert resp.status == 200
    print(resp.read())

    async def main() -> None:
        async with uwire.AsyncClient("unix:/run/app.sock") as client:
            resp = await client.request("GET", "/")
            async for chunk in resp:
                ...
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Optional, Union

from . import _native

__all__ = ["AsyncClient", "AsyncResponse", "Body", "Client", "Headers", "Response"]

Headers = Iterable[tuple[str, str]]
Body = Union[bytes, bytearray, memoryview, Iterable[bytes], AsyncIterable[bytes], None]


# Every native client alive in this process, for the fork hook below.
_clients: weakref.WeakSet[_native.Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Right after ``os.fork()``, in the child: each client lets go of the
    connections it inherited (closing the child's copies of the parent's
    sockets, so that they end when the parent closes them) and makes its own
    on its next request."""
    for native in list(_clients):
        native.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _native_client(
    address: Union[str, list[str]],
    timeout: Optional[float],
    connect_timeout: float,
    max_connections: int,
) -> _native.Client:
    native = _native.Client(address, timeout, connect_timeout, max_connections)
    _clients.add(native)
    return native


def _headers(headers: Optional[Headers]) -> Optional[list[tuple[str, str]]]:
    if headers is None:
        return None
    if isinstance(headers, dict):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


class Response:
    """A response: ``status``, ``headers`` (lower-case names) and a body that
    streams as it is read (``read()``, or iterate for chunks as they arrive).
    Closing it before the end resets the stream."""

    def __init__(self, native: _native.Response) -> None:
        self._native = native

    @property
    def status(self) -> int:
        return self._native.status

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self._native.headers

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (case-insensitive), if any."""
        name = name.lower()
        for n, v in self._native.headers:
            if n == name:
                return v
        return None

    def read(self, size: int = -1) -> bytes:
        """Reads up to ``size`` bytes of the body (all of it by default)."""
        return self._native.read(size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._native)

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


class Client:
    """A thread-safe uwire/1 client with pooled, multiplexed connections.

    ``address`` is ``unix:/path`` or ``tcp:HOST:PORT`` (also
    ``uwsgi+unix:``/``uwsgi+tcp:`` for classic uwsgi servers), or a list of
    them to balance over. ``timeout`` bounds the wait for the response head
    and between body chunks (seconds; ``None`` for none).
    """

    def __init__(
        self,
        address: Union[str, list[str]],
        *,
        timeout: Optional[float] = 60.0,
        connect_timeout: float = 5.0,
        max_connections: int = 4,
    ) -> None:
        self._native = _native_client(address, timeout, connect_timeout, max_connections)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Optional[Headers] = None,
        body: Body = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """Sends a request; returns once the response head arrived.

        ``body`` is bytes, or an iterable of bytes streamed as it is
        produced. Raises a :class:`uwire.errors.ClientError` subclass."""
        if body is not None and hasattr(body, "__aiter__"):
            raise TypeError("an async iterable body needs AsyncClient")
        native = self._native.request(method, path, _headers(headers), body, timeout)
        return Response(native)

    def get(self, path: str, **kw: object) -> Response:
        return self.request("GET", path, **kw)  # type: ignore[arg-type]

    def post(self, path: str, **kw: object) -> Response:
        return self.request("POST", path, **kw)  # type: ignore[arg-type]

    def connection_counts(self) -> list[int]:
        """Live pooled connections per server."""
        return self._native.connection_counts()

    def close(self) -> None:
        """Nothing to release: connections close when the client is collected."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncResponse:
    """A response for asyncio: ``async for chunk in resp`` or ``await
    resp.read()``."""

    def __init__(self, native: _native.Response) -> None:
        self._native = native

    @property
    def status(self) -> int:
        return self._native.status

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self._native.headers

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        for n, v in self._native.headers:
            if n == name:
                return v
        return None

    async def _next(self) -> Optional[bytes]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Optional[bytes]] = loop.create_future()
        handle = self._native.next_chunk_async(loop, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            handle.cancel()
            raise

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._next()
            if chunk is None:
                return
            yield chunk

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        parts = [c async for c in self._chunks()]
        return b"".join(parts)

    def close(self) -> None:
        self._native.close()

    async def __aenter__(self) -> AsyncResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio flavour of :class:`Client` (same arguments). Requests run
    on the native runtime; the event loop is never blocked."""

    def __init__(
        self,
        address: Union[str, list[str]],
        *,
        timeout: Optional[float] = 60.0,
        connect_timeout: float = 5.0,
        max_connections: int = 4,
    ) -> None:
        self._native = _native_client(address, timeout, connect_timeout, max_connections)

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Optional[Headers] = None,
        body: Body = None,
        timeout: Optional[float] = None,
    ) -> AsyncResponse:
        """Sends a request; returns once the response head arrived. ``body``
        may also be an async iterable of bytes."""
        loop = asyncio.get_running_loop()
        feeder: Optional[asyncio.Task[None]] = None
        native_body: object = body
        if body is not None and hasattr(body, "__aiter__"):
            sender = _native.BodySender()
            native_body = sender
            feeder = loop.create_task(_feed(sender, body))  # type: ignore[arg-type]
        fut: asyncio.Future[_native.Response] = loop.create_future()
        handle = self._native.request_async(
            loop, fut, method, path, _headers(headers), native_body, timeout
        )
        try:
            native = await fut
        except BaseException:
            handle.cancel()
            if feeder is not None:
                feeder.cancel()
            raise
        return AsyncResponse(native)

    async def get(self, path: str, **kw: object) -> AsyncResponse:
        return await self.request("GET", path, **kw)  # type: ignore[arg-type]

    async def post(self, path: str, **kw: object) -> AsyncResponse:
        return await self.request("POST", path, **kw)  # type: ignore[arg-type]

    def connection_counts(self) -> list[int]:
        return self._native.connection_counts()

    async def aclose(self) -> None:
        """Nothing to release: connections close when the client is collected."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _feed(sender: _native.BodySender, body: AsyncIterable[bytes]) -> None:
    loop = asyncio.get_running_loop()
    try:
        async for chunk in body:
            fut: asyncio.Future[bool] = loop.create_future()
            sender.send(chunk, loop, fut)
            if not await fut:
                return
    except Exception as e:  # the body failed: abort the request
        sender.close(f"{type(e).__name__}: {e}")
        raise
    sender.close(None)
