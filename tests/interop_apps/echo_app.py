"""Streams the request body back as it is read (64 KiB at a time)."""


def application(environ, start_response):
    headers = [("Content-Type", "application/octet-stream")]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        headers.append(("Content-Length", length))
    start_response("200 OK", headers)
    inp = environ["wsgi.input"]
    return iter(lambda: inp.read(65536), b"")
