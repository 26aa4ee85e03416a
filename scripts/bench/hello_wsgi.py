"""The benchmark app for uWSGI and gunicorn: the same logic as uwire's demo `/`."""


def application(environ, start_response):
    body = b"Hello from uwire!\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
