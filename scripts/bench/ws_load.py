"""WebSocket echo load: ``python ws_load.py URL PROCS SOCKETS SECS`` opens
SOCKETS sockets in each of PROCS processes (``websockets`` client, asyncio),
each doing send/receive round trips of a 32-byte text message for SECS
seconds; prints the total round trips per second."""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time

import websockets

MSG = "x" * 32


async def one(url: str, stop: float) -> int:
    n = 0
    async with websockets.connect(url, compression=None) as ws:
        while time.monotonic() < stop:
            await ws.send(MSG)
            await ws.recv()
            n += 1
    return n


def proc(url: str, sockets: int, secs: float, q: multiprocessing.Queue[int]) -> None:
    async def run() -> int:
        stop = time.monotonic() + secs
        return sum(await asyncio.gather(*(one(url, stop) for _ in range(sockets))))

    q.put(asyncio.run(run()))


def main() -> None:
    url, procs, sockets, secs = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    q: multiprocessing.Queue[int] = multiprocessing.Queue()
    ps = [
        multiprocessing.Process(target=proc, args=(url, sockets, secs, q))
        for _ in range(procs)
    ]
    started = time.monotonic()
    for p in ps:
        p.start()
    total = sum(q.get(timeout=secs + 60) for _ in ps)
    for p in ps:
        p.join()
    print(f"{total / (time.monotonic() - started):.0f}")


if __name__ == "__main__":
    main()
