"""A Flask app for the framework tests (wrapped in wsgiref's validator)."""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any, Iterator
from wsgiref.validate import WSGIWarning, validator

from flask import Flask, Response, jsonify, request, session

warnings.simplefilter("error", WSGIWarning)

app = Flask(__name__)
app.secret_key = "uwire-tests"


@app.get("/")
def index() -> str:
    return "hello from flask\n"


@app.get("/pid")
def pid() -> str:
    return f"{os.getpid()}\n"


@app.post("/json")
def json_echo() -> Response:
    return jsonify(received=request.get_json(), method=request.method)


@app.post("/form")
def form() -> Response:
    return jsonify(form=request.form.to_dict(flat=False), args=request.args.to_dict())


@app.get("/session/set/<value>")
def session_set(value: str) -> Response:
    session["value"] = value
    resp = jsonify(stored=value)
    resp.set_cookie("plain", "cookie-" + value)
    return resp


@app.get("/session/get")
def session_get() -> Response:
    return jsonify(value=session.get("value"), plain=request.cookies.get("plain"))


@app.post("/upload")
def upload() -> Response:
    f = request.files["file"]
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = f.stream.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        h.update(chunk)
    return jsonify(name=f.filename, size=size, sha256=h.hexdigest(), note=request.form.get("note"))


@app.get("/stream")
def stream() -> Response:
    def gen() -> Iterator[str]:
        for i in range(100):
            yield f"line {i}\n"

    return Response(gen(), mimetype="text/plain")


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("flask view failed")


@app.get("/meta")
def meta() -> Response:
    env = {k: v for k, v in request.environ.items() if isinstance(v, str)}
    return jsonify(
        environ=env,
        path=request.path,
        args=request.args.to_dict(),
        remote_addr=request.remote_addr,
        url=request.url,
        scheme=request.scheme,
    )


class _SizedReads:
    """Werkzeug reads a terminated ``wsgi.input`` with ``read()`` (no size),
    which wsgiref's PEP 333-era validator rejects; this passes such calls on
    as ``read(-1)`` so every read still goes through the validator."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(size)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __iter__(self) -> Any:
        return iter(self._inner)


def _sized_reads(environ: dict[str, Any], start_response: Any) -> Any:
    environ["wsgi.input"] = _SizedReads(environ["wsgi.input"])
    return app(environ, start_response)


application = validator(_sized_reads)
