"""Real apps from PyPI (Flask, Django) served by ``python -m uwire``, reached
through ``uwire proxy`` (uwire/1) and a real nginx ``uwsgi_pass`` (classic
uwsgi), with the same assertions."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import APPS, Nginx, UwireProxy, UwireServer

APP_SPECS = {"flask": "flask_site:application", "django": "djsite.wsgi:application"}


class Site:
    def __init__(self, kind: str, tmp: Path, threads: str) -> None:
        self.kind = kind
        self.tmp = tmp
        env = {"DJSITE_DB": str(tmp / "db.sqlite3"), "DJANGO_SETTINGS_MODULE": "djsite.settings"}
        if kind == "django":
            full = dict(os.environ, PYTHONPATH=str(APPS), **env)
            subprocess.run(
                [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
                cwd=APPS,
                env=full,
                check=True,
                timeout=300,
            )
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import django; django.setup(); "
                    "from django.contrib.auth.models import User; "
                    "User.objects.create_superuser('admin', 'admin@example.com', 'pw-123')",
                ],
                cwd=APPS,
                env=full,
                check=True,
                timeout=120,
            )
        self.server = UwireServer(
            tmp, APP_SPECS[kind], "--threads", threads, env=env, workers=2, name=kind
        )
        self.proxy = UwireProxy(tmp, f"unix:{self.server.sock}", name=f"{kind}-proxy")
        self.nginx: Nginx | None = None

    def base(self, front: str) -> str:
        if front == "uwire":
            return self.proxy.base
        if self.nginx is None:
            self.nginx = Nginx(self.tmp, self.server.sock, name=f"{self.kind}-nginx")
        return self.nginx.base

    def close(self) -> None:
        for p in (self.nginx, self.proxy, self.server):
            if p is not None:
                p.close()


@pytest.fixture(
    scope="module",
    params=[("flask", "2"), ("django", "2"), ("flask", "1"), ("django", "1")],
    ids=["flask-threads2", "django-threads2", "flask-threads1", "django-threads1"],
)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """Each app with two app threads, and with one (the default), which
    answers requests without a body on the worker's I/O thread."""
    kind, threads = request.param
    d = Path("/tmp") / f"uwf-{os.getpid()}-{kind}-{threads}"
    d.mkdir(exist_ok=True)
    s = Site(kind, d, threads)
    yield s
    s.close()
    log = s.server.log()
    shutil.rmtree(d, ignore_errors=True)
    assert "WSGIWarning" not in log, log
    assert "AssertionError" not in log, log


@pytest.fixture(params=["uwire", "uwsgi"])
def client(request: pytest.FixtureRequest, site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.base(request.param), timeout=60) as c:
        yield c


def test_routing(client: httpx.Client, site: Site) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.text == f"hello from {site.kind}\n"


def test_json(client: httpx.Client) -> None:
    payload = {"a": [1, 2, 3], "b": {"c": "d\u00e9"}, "n": None}
    r = client.post("/json", json=payload)
    assert r.status_code == 200
    assert r.json() == {"received": payload, "method": "POST"}


def test_form(client: httpx.Client) -> None:
    r = client.post("/form?q=1", data={"name": "x y", "multi": ["1", "2"]})
    assert r.status_code == 200
    assert r.json() == {"form": {"name": ["x y"], "multi": ["1", "2"]}, "args": {"q": "1"}}


def test_cookies_and_sessions(client: httpx.Client) -> None:
    r = client.get("/session/set/abc")
    assert r.status_code == 200 and r.json() == {"stored": "abc"}
    r = client.get("/session/get")
    assert r.json() == {"value": "abc", "plain": "cookie-abc"}
    client.cookies.clear()
    assert client.get("/session/get").json() == {"value": None, "plain": None}


def test_upload_20_mib(client: httpx.Client) -> None:
    data = os.urandom(20 * 1024 * 1024)
    r = client.post(
        "/upload",
        files={"file": ("big.bin", data, "application/octet-stream")},
        data={"note": "twenty"},
    )
    assert r.status_code == 200, r.text[:500]
    assert r.json() == {
        "name": "big.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "twenty",
    }


def test_streaming_generator(client: httpx.Client) -> None:
    chunks = []
    with client.stream("GET", "/stream") as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            chunks.append(chunk)
    body = b"".join(chunks)
    assert body == b"".join(b"line %d\n" % i for i in range(100))


def test_404_and_500(client: httpx.Client, site: Site) -> None:
    r = client.get("/no/such/page")
    assert r.status_code == 404
    r = client.get("/boom")
    assert r.status_code == 500
    assert f"{site.kind} view failed" not in r.text
    assert f"{site.kind} view failed" in site.server.log()


def test_environ_values(client: httpx.Client) -> None:
    r = client.get("/meta?x=1&y=%C3%A9", headers={"X-Test": "42"})
    assert r.status_code == 200
    m = r.json()
    env = m["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/meta"
    assert env["QUERY_STRING"] == "x=1&y=%C3%A9"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_X_TEST"] == "42"
    assert env["wsgi.url_scheme"] == "http"
    assert env["SCRIPT_NAME"] == ""
    assert m["args"] == {"x": "1", "y": "\u00e9"}
    assert m["remote_addr"] == "127.0.0.1"
    assert m["scheme"] == "http"
    host = client.base_url.netloc.decode()
    # Debian's uwsgi_params passes nginx's $host (no port) as HTTP_HOST.
    assert env["HTTP_HOST"] in (host, host.split(":")[0])
    assert env["SERVER_PORT"] == host.rsplit(":", 1)[1]
    assert m["url"].startswith(f"http://{env['HTTP_HOST']}/meta?x=1&y="), m["url"]


def test_django_admin_login_with_csrf(client: httpx.Client, site: Site) -> None:
    if site.kind != "django":
        pytest.skip("Django only")
    r = client.get("/admin/login/?next=/admin/")
    assert r.status_code == 200
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text)
    assert m, r.text[:1000]
    # Without the token: refused.
    r = client.post("/admin/login/?next=/admin/", data={"username": "admin", "password": "pw-123"})
    assert r.status_code == 403
    r = client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": m.group(1),
            "username": "admin",
            "password": "pw-123",
            "next": "/admin/",
        },
    )
    assert r.status_code == 302, r.text[:1000]
    assert r.headers["location"] == "/admin/"
    r = client.get("/admin/")
    assert r.status_code == 200
    assert "Site administration" in r.text
