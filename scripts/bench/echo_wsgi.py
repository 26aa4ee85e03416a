"""The WSGI echo for the IPC client benchmark (served by python -m uwire)."""


def application(environ, start_response):  # type: ignore[no-untyped-def]
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else b""
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
