"""The benchmark app for uWSGI, gunicorn and Granian: the same logic as
uwire's demo app. `/echo` answers the request body, any other path the
18-byte greeting of `/`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello from uwire!\n"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def application(
    environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(HELLO))),
        ],
    )
    return [HELLO]
