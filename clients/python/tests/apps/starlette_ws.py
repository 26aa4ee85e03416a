"""A Starlette app for the WebSocket tests: echo (text and binary), a
broadcast room, and a route that notes when its client disconnects; plus
an HTTP route that streams until the client goes away (the disconnect is
noted in ``$ASGI_EVENTS``), and one that answers its worker's pid after a
pause (which worker served it) and a WebSocket that does the same."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

EVENTS = os.environ.get("ASGI_EVENTS", "")
ROOM: set[WebSocket] = set()


def note(line: str) -> None:
    if EVENTS:
        with open(EVENTS, "a") as f:
            f.write(line + "\n")


async def echo(ws: WebSocket) -> None:
    proto = ws.scope["subprotocols"][0] if ws.scope["subprotocols"] else None
    await ws.accept(subprotocol=proto)
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                note(f"echo disconnect {msg.get('code')}")
                return
            if msg.get("text") is not None:
                await ws.send_text(msg["text"])
            else:
                await ws.send_bytes(msg["bytes"])
    except WebSocketDisconnect as e:
        note(f"echo disconnect {e.code}")


async def room(ws: WebSocket) -> None:
    await ws.accept()
    ROOM.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            for peer in list(ROOM):
                try:
                    await peer.send_text(text)
                except Exception:
                    ROOM.discard(peer)
    except WebSocketDisconnect:
        pass
    finally:
        ROOM.discard(ws)


async def refuse(ws: WebSocket) -> None:
    await ws.close(code=1008)


async def closer(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("bye")
    await ws.close(code=4001, reason="done")


async def forever(request: Request) -> StreamingResponse:
    async def gen() -> Any:
        i = 0
        try:
            while True:
                yield f"{i}\n".encode()
                i += 1
                await asyncio.sleep(0.05)
        finally:
            note("forever ended")

    return StreamingResponse(gen())


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


async def pid(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "0")))
    return PlainTextResponse(str(os.getpid()))


async def wspid(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    await ws.send_text(str(os.getpid()))
    await ws.receive_text()


app = Starlette(
    routes=[
        Route("/", hello),
        Route("/forever", forever),
        Route("/pid", pid),
        WebSocketRoute("/wspid", wspid),
        WebSocketRoute("/ws", echo),
        WebSocketRoute("/room", room),
        WebSocketRoute("/refuse", refuse),
        WebSocketRoute("/closer", closer),
    ]
)
