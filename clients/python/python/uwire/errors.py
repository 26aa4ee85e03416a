"""Exceptions raised by uwire.

Server side (inside a WSGI app):

* :class:`ClientDisconnected` -- reading ``wsgi.input`` (or ``write()``) after
  the client went away: the proxy reset the stream, or nginx closed the
  connection.
* :class:`RequestBodyTooLarge` -- the body grew past ``--max-body-size``.
* :class:`RequestTimeout` -- raised inside an app thread whose request ran
  past ``--timeout`` (a ``BaseException``, so ``except Exception`` blocks do
  not swallow it and the thread is freed).

Client side (:class:`uwire.Client`, :class:`uwire.AsyncClient`), one class per
kind of the Rust client's error, all subclasses of :class:`ClientError`:
:class:`ConnectError`, :class:`Timeout`, :class:`StreamRefused`,
:class:`StreamReset`, :class:`ProtocolError`, :class:`ConnectionClosed`,
:class:`NoUpstream`, :class:`InvalidRequest`, :class:`BodyTooLarge`,
:class:`HeadTooLarge`.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "BodyTooLarge",
    "ClientDisconnected",
    "ClientError",
    "ConnectError",
    "ConnectionClosed",
    "HeadTooLarge",
    "InvalidRequest",
    "NoUpstream",
    "ProtocolError",
    "RequestBodyTooLarge",
    "RequestTimeout",
    "StreamRefused",
    "StreamReset",
    "Timeout",
]


class ClientDisconnected(OSError):
    """The client went away while the app was reading or writing."""


class RequestBodyTooLarge(OSError):
    """The request body exceeds the server's ``--max-body-size``."""


class RequestTimeout(BaseException):
    """Raised inside an app thread whose request ran past ``--timeout``."""


class ClientError(Exception):
    """Base class of every :class:`uwire.Client` error.

    ``reason`` is the uwire/1 reset reason code when the stream was reset or
    refused, and ``status_code`` the HTTP status a proxy would answer with.
    """

    reason: Optional[int] = None
    status_code: int = 502


class ConnectError(ClientError, ConnectionError):
    """Connecting to the server failed (refused, missing socket)."""


class Timeout(ClientError, TimeoutError):
    """The request (or connecting) took longer than its timeout."""


class StreamRefused(ClientError):
    """The server refused the stream before processing it (GOAWAY)."""


class StreamReset(ClientError):
    """The server reset the stream (``reason`` tells why)."""


class ProtocolError(ClientError):
    """The server broke the uwire/1 protocol."""


class ConnectionClosed(ClientError, ConnectionError):
    """The connection closed in the middle of the request."""


class NoUpstream(ClientError):
    """No server address is configured."""


class InvalidRequest(ClientError, ValueError):
    """The request cannot be carried (an invalid header name or value)."""


class BodyTooLarge(ClientError):
    """The request body is over the server's limit (413)."""


class HeadTooLarge(ClientError):
    """The request head is over the server's limit (431)."""
