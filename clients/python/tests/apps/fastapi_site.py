"""A FastAPI app for the ASGI tests: JSON, path and query parameters, a
dependency, a streaming response, a background task, a request body echo
(streamed both ways), and a lifespan that opens a resource (a SQLite
database) the routes use. ``FAIL_STARTUP=1`` makes the startup fail."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

EVENTS = os.environ.get("ASGI_EVENTS", "")


def note(line: str) -> None:
    if EVENTS:
        with open(EVENTS, "a") as f:
            f.write(line + "\n")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    if os.environ.get("FAIL_STARTUP") == "1":
        raise RuntimeError("database unreachable (FAIL_STARTUP=1)")
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("create table items (id integer primary key, name text)")
    db.execute("insert into items (name) values ('apple'), ('pear')")
    note(f"startup {os.getpid()}")
    yield {"db": db}
    db.close()
    note(f"shutdown {os.getpid()}")


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def token(x_token: Annotated[str, Header()] = "") -> str:
    if x_token != "secret":
        raise HTTPException(status_code=401, detail="bad token")
    return x_token


@app.get("/")
async def root() -> dict[str, str]:
    return {"hello": "world"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, request: Request, q: str | None = None) -> dict[str, Any]:
    db = request.state.db
    row = db.execute("select name from items where id = ?", (item_id,)).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id, "name": row[0], "q": q}


@app.post("/items")
async def create_item(item: Item) -> dict[str, Any]:
    return {"created": item.model_dump(), "total": item.price * 2}


@app.get("/private")
async def private(t: Annotated[str, Depends(token)]) -> dict[str, str]:
    return {"token": t}


@app.get("/stream")
async def stream(n: int = 5) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(n):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(gen(), media_type="text/plain")


@app.post("/echo")
async def echo(request: Request) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk

    return StreamingResponse(gen(), media_type="application/octet-stream")


@app.post("/background")
async def background(tasks: BackgroundTasks, name: str = "x") -> dict[str, str]:
    tasks.add_task(note, f"background {name}")
    return {"queued": name}


@app.get("/scope")
async def scope(request: Request) -> dict[str, Any]:
    s = request.scope
    return {
        "http_version": s["http_version"],
        "scheme": s["scheme"],
        "path": s["path"],
        "root_path": s["root_path"],
        "query_string": s["query_string"].decode(),
        "client": list(s["client"]) if s["client"] else None,
        "server": list(s["server"]) if s["server"] else None,
        "has_db": "db" in s.get("state", {}),
        "asgi": s["asgi"],
    }


@app.get("/slow")
async def slow() -> PlainTextResponse:
    """Waits for the client to go away, and notes that it did."""
    return PlainTextResponse("never")


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")
