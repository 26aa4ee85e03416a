"""uWSGI side of the interop tests (tests/interop_*.rs).

* any path: the environ's string values as one JSON object (sorted keys),
  plus ``body.length`` and ``body.sha256`` of the request body, read whole;
* ``/echo...``: handed to ``echo_app`` (the body streamed back);
* ``/drip``: a body that never ends (one line every 20 ms, at most 15 s);
  when uWSGI stops it (the client went away) a line is appended to
  ``$INTEROP_EVENTS`` so the test can see it.
"""

import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import echo_app  # noqa: E402


def drip(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    sent = 0
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            yield b"drip %d\n" % sent
            sent += 1
            time.sleep(0.02)
    finally:
        events = os.environ.get("INTEROP_EVENTS")
        if events:
            with open(events, "a") as f:
                f.write("drip stopped after %d chunks\n" % sent)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/echo"):
        return echo_app.application(environ, start_response)
    if path == "/drip":
        return drip(environ, start_response)
    body = environ["wsgi.input"].read()
    out = {k: v for k, v in environ.items() if isinstance(v, str)}
    out["body.length"] = str(len(body))
    out["body.sha256"] = hashlib.sha256(body).hexdigest()
    data = json.dumps(out, sort_keys=True).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
