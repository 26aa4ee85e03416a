"""Views of the test project."""

import hashlib
import json
import os
from typing import Iterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello from django\n", content_type="text/plain")


def pid(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{os.getpid()}\n", content_type="text/plain")


@csrf_exempt
def json_echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"received": json.loads(request.body), "method": request.method})


@csrf_exempt
def form(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"form": {k: request.POST.getlist(k) for k in request.POST}, "args": request.GET.dict()}
    )


def session_set(request: HttpRequest, value: str) -> JsonResponse:
    request.session["value"] = value
    resp = JsonResponse({"stored": value})
    resp.set_cookie("plain", "cookie-" + value)
    return resp


def session_get(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"value": request.session.get("value"), "plain": request.COOKIES.get("plain")}
    )


@csrf_exempt
def upload(request: HttpRequest) -> JsonResponse:
    f = request.FILES["file"]
    h = hashlib.sha256()
    size = 0
    for chunk in f.chunks():
        size += len(chunk)
        h.update(chunk)
    return JsonResponse(
        {"name": f.name, "size": size, "sha256": h.hexdigest(), "note": request.POST.get("note")}
    )


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def gen() -> Iterator[str]:
        for i in range(100):
            yield f"line {i}\n"

    return StreamingHttpResponse(gen(), content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("django view failed")


def meta(request: HttpRequest) -> JsonResponse:
    env = {k: v for k, v in request.META.items() if isinstance(v, str)}
    return JsonResponse(
        {
            "environ": env,
            "path": request.path,
            "args": request.GET.dict(),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "url": request.build_absolute_uri(),
            "scheme": request.scheme,
        }
    )
