"""ASGI 3.0 in a worker: one asyncio event loop (uvloop when installed) on
its own thread runs the app's ``http``, ``websocket`` and ``lifespan``
scopes, while the server (the crate's ``Server``, same sockets, limits,
timeouts and drain as WSGI) runs on the worker's native thread. They meet
in a native bridge (an eventfd the loop watches, and a queue): requests
and finished operations arrive in batches, and receives and sends complete
at once whenever the data or the room is already there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import itertools
import logging
import threading
from typing import Any, Awaitable, Callable, MutableMapping, Optional, Union

from . import _native

log = logging.getLogger("uwire.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.0"}


class ClientDisconnected(OSError):
    """``send`` after the client went away (ASGI 2.4: an ``OSError``)."""


class LifespanFailed(Exception):
    """The app reported (or, with ``--lifespan on``, caused) a failed startup."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when uvloop is installed, else asyncio's."""
    try:
        # Imported by name: uvloop is optional, and the type check must
        # pass with or without it installed.
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class AsgiWorker:
    """Runs ``app`` on an event loop thread and feeds it from ``bridge``.

    With ``busy_poll`` (seconds, see ``--busy-poll``) the loop does not go
    to sleep at once after its work: a callback keeps it turning (polling
    its selector without sleeping) until the bridge has an event or the
    window has passed, so a request that arrives meanwhile does not have to
    wake the loop's thread. The window adapts as the I/O thread's does."""

    def __init__(self, app: AsgiApp, lifespan: str = "auto", busy_poll: float = 0.0) -> None:
        self.app = app
        self.lifespan_mode = lifespan
        self.bridge = _native.Bridge(busy_poll)
        self._polls = busy_poll > 0
        self._watching = False
        self.loop = new_event_loop()
        self.state: dict[str, Any] = {}
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._tokens = itertools.count(1)
        self._thread: Optional[threading.Thread] = None
        self._lifespan_task: Optional[asyncio.Task[None]] = None
        self._lifespan_in: Optional[asyncio.Queue[Message]] = None
        self._lifespan_out: Optional[asyncio.Queue[Message]] = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- loop thread ---------------------------------------------------

    def start(self) -> None:
        """Starts the loop thread and runs the lifespan startup; raises
        :class:`LifespanFailed` when it fails."""
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.add_reader(self.bridge.fileno(), self._on_ready)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="uwire-asgi", daemon=True)
        self._thread.start()
        ready.wait()
        fut = asyncio.run_coroutine_threadsafe(self._startup(), self.loop)
        fut.result()

    def stop(self, timeout: float) -> None:
        """Runs the lifespan shutdown (bounded by ``timeout``), then stops
        the loop."""
        if self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(timeout), self.loop)
        try:
            fut.result(timeout + 1.0)
        except (concurrent.futures.TimeoutError, Exception) as e:
            log.error("ASGI lifespan shutdown: %s", e or type(e).__name__)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)

    def _on_ready(self) -> None:
        for a, b in self.bridge.drain():
            if a == "http":
                self._spawn(self._http(b))
            elif a == "websocket":
                self._spawn(self._websocket(b))
            else:
                fut = self._waiters.pop(a, None)
                if fut is not None and not fut.done():
                    fut.set_result(b)
        if self._polls and not self._watching:
            self._watching = True
            self.loop.call_soon(self._watch)

    def _watch(self) -> None:
        if self.bridge.watch():
            self.loop.call_soon(self._watch)
        else:
            self._watching = False

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait(self, token: int) -> Any:
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._waiters[token] = fut
        try:
            return await fut
        finally:
            self._waiters.pop(token, None)

    # ---- http ----------------------------------------------------------

    async def _http(self, ex: Any) -> None:
        scope = ex.scope()
        scope["state"] = self.state.copy()
        tokens = self._tokens
        wait = self._wait

        async def receive() -> Message:
            tok = next(tokens)
            r = ex.receive(tok)
            if r is False:
                r = await wait(tok)
            if r is None:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": r[0], "more_body": r[1]}

        async def send(msg: Message) -> None:
            t = msg["type"]
            if t == "http.response.body":
                tok = next(tokens)
                r = ex.send(msg.get("body", b""), msg.get("more_body", False), tok)
                if r is False:
                    r = await wait(tok)
                if not r:
                    raise ClientDisconnected("the client went away")
            elif t == "http.response.start":
                ex.start(msg["status"], [(bytes(n), bytes(v)) for n, v in msg.get("headers", ())])
            else:
                raise RuntimeError(f"unexpected ASGI message {t!r} in an http scope")

        try:
            await self.app(scope, receive, send)
        except Exception:
            if ex.disconnected() and ex.progress() != "done":
                # The client went away and the app let the error out.
                log.debug("ASGI app ended after its client went away", exc_info=True)
            else:
                log.exception("ASGI app failed on %s %s", scope["method"], scope["path"])
            ex.abort("the app raised")
            return
        progress = ex.progress()
        if progress != "done":
            log.error(
                "ASGI app returned %s on %s %s",
                "without a response" if progress == "pending" else "before the response ended",
                scope["method"],
                scope["path"],
            )
            ex.abort("the app returned early")

    # ---- websocket -----------------------------------------------------

    async def _websocket(self, ex: Any) -> None:
        scope = ex.scope()
        scope["state"] = self.state.copy()
        tokens = self._tokens
        wait = self._wait
        connected = False

        async def receive() -> Message:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            tok = next(tokens)
            r: Union[str, bytes, int, None] = ex.receive(tok)
            if r is None:
                r = await wait(tok)
            if isinstance(r, str):
                return {"type": "websocket.receive", "text": r}
            if isinstance(r, bytes):
                return {"type": "websocket.receive", "bytes": r}
            return {"type": "websocket.disconnect", "code": r}

        async def send(msg: Message) -> None:
            t = msg["type"]
            if t == "websocket.send":
                data = msg.get("bytes")
                if data is None:
                    data = msg.get("text")
                if data is None:
                    raise ValueError("websocket.send needs 'bytes' or 'text'")
                tok = next(tokens)
                r = ex.send(data, tok)
                if r is False:
                    r = await wait(tok)
                if not r:
                    raise ClientDisconnected("the websocket is closed")
            elif t == "websocket.accept":
                ex.accept(
                    msg.get("subprotocol"),
                    [(bytes(n), bytes(v)) for n, v in msg.get("headers", ())],
                )
            elif t == "websocket.close":
                ex.close(msg.get("code", 1000), msg.get("reason") or "")
            else:
                raise RuntimeError(f"unexpected ASGI message {t!r} in a websocket scope")

        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("ASGI app failed on websocket %s", scope["path"])
            ex.fail()
            return
        # Returning without accepting refuses the handshake (403); after
        # accepting, the server closes the socket (1000).
        ex.close(1000, "")

    # ---- lifespan ------------------------------------------------------

    async def _startup(self) -> None:
        if self.lifespan_mode == "off":
            return
        inq: asyncio.Queue[Message] = asyncio.Queue()
        outq: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_in, self._lifespan_out = inq, outq
        scope: Scope = {"type": "lifespan", "asgi": dict(_ASGI), "state": self.state}

        async def receive() -> Message:
            return await inq.get()

        async def send(msg: Message) -> None:
            await outq.put(msg)

        coro: Any = self.app(scope, receive, send)
        task: asyncio.Task[None] = self.loop.create_task(coro)
        self._lifespan_task = task
        await inq.put({"type": "lifespan.startup"})
        answer = self.loop.create_task(outq.get())
        done, _ = await asyncio.wait({task, answer}, return_when=asyncio.FIRST_COMPLETED)
        if answer in done:
            msg = answer.result()
            if msg["type"] == "lifespan.startup.complete":
                log.debug("ASGI lifespan startup complete")
                return
            if msg["type"] == "lifespan.startup.failed":
                raise LifespanFailed(msg.get("message") or "lifespan.startup.failed")
            raise LifespanFailed(f"unexpected lifespan message {msg['type']!r}")
        answer.cancel()
        self._lifespan_task = None
        err = task.exception()
        if self.lifespan_mode == "on":
            raise LifespanFailed(
                f"the app raised {err!r}" if err else "the app returned without answering"
            )
        log.info(
            "ASGI lifespan not supported by the app (%s): serving without it",
            repr(err) if err else "returned without answering",
        )

    async def _shutdown(self, timeout: float) -> None:
        # In-flight requests are drained by the server before this runs;
        # give their tasks a moment to unwind.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=min(timeout, 1.0))
        task, inq, outq = self._lifespan_task, self._lifespan_in, self._lifespan_out
        if task is None or inq is None or outq is None or task.done():
            return
        await inq.put({"type": "lifespan.shutdown"})
        answer = self.loop.create_task(outq.get())
        done, _ = await asyncio.wait(
            {task, answer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if answer in done:
            msg = answer.result()
            if msg["type"] == "lifespan.shutdown.failed":
                log.error("ASGI lifespan shutdown failed: %s", msg.get("message", ""))
        elif task in done and task.exception() is not None:
            log.error("ASGI lifespan shutdown: the app raised %r", task.exception())
        else:
            log.error("ASGI lifespan shutdown did not finish within %.1fs", timeout)
        answer.cancel()
