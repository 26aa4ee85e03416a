"""uwire for Python.

* ``python -m uwire module:app``: serve a WSGI app (Flask, Django, ...) over
  uwire/1 and classic uwsgi (nginx ``uwsgi_pass``), with a master, worker
  processes and an optional HTTP front (``--http``). See ``python -m uwire
  --help``.
* :class:`Client` / :class:`AsyncClient`: the uwire/1 IPC client.

The client classes are imported on first use (:pep:`562`): they bring
asyncio and the ssl it imports, which the master, the ``--http`` front and
a WSGI worker do not need (without them the master measured 5.5 MB less
resident; the clients/python README has the figures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# First: the native module loads with its allocator's options.
from . import _preload  # noqa: F401  # isort: skip
from . import errors
from ._native import FileWrapper
from .errors import (
    ClientDisconnected,
    ClientError,
    RequestBodyTooLarge,
    RequestTimeout,
)

if TYPE_CHECKING:
    from .client import AsyncClient, AsyncResponse, Client, Response

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncResponse",
    "Client",
    "ClientDisconnected",
    "ClientError",
    "FileWrapper",
    "RequestBodyTooLarge",
    "RequestTimeout",
    "Response",
    "__version__",
    "errors",
]

# Names of `uwire.client` that `uwire` gives on first use.
_CLIENT_NAMES = frozenset({"AsyncClient", "AsyncResponse", "Client", "Response"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from . import client

        value = getattr(client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CLIENT_NAMES)
