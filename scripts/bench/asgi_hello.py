"""The ASGI benchmark apps, the same for every server: a Starlette app
(``GET /`` answers the 18-byte greeting, ``/ws`` echoes WebSocket messages)
and a FastAPI app (``GET /`` answers the greeting as plain text)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

HELLO = b"Hello from uwire!\n"


async def hello(request: Request) -> Response:
    return Response(HELLO, media_type="text/plain")


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


starlette_app = Starlette(routes=[Route("/", hello), WebSocketRoute("/ws", echo)])

fastapi_app = FastAPI()


@fastapi_app.get("/", response_class=PlainTextResponse)
async def root() -> str:
    return HELLO.decode()
