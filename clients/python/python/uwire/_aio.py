"""Glue between the native runtime and asyncio (internal)."""

from __future__ import annotations

import asyncio
from typing import Any


def resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Completes ``fut`` on its loop (called through call_soon_threadsafe)."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
