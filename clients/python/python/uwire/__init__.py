"""uwire for Python.

* ``python -m uwire module:app``: serve a WSGI app (Flask, Django, ...) over
  uwire/1 and classic uwsgi (nginx ``uwsgi_pass``), with a master, worker
  processes and an optional HTTP front (``--http``). See ``python -m uwire
  --help``.
* :class:`Client` / :class:`AsyncClient`: the uwire/1 IPC client.
"""

from __future__ import annotations

# First: the native module loads with its allocator's options.
from . import _preload  # noqa: F401  # isort: skip
from . import errors
from ._native import FileWrapper
from .client import AsyncClient, AsyncResponse, Client, Response
from .errors import (
    ClientDisconnected,
    ClientError,
    RequestBodyTooLarge,
    RequestTimeout,
)

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
