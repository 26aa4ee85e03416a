"""/echo: the body back, same content type. /environ: META (strings), GET, POST."""

from django.http import HttpResponse, JsonResponse
from django.urls import path


def echo(request):
    return HttpResponse(request.body, content_type=request.META.get("CONTENT_TYPE") or "application/octet-stream")


def environ(request):
    return JsonResponse({
        "meta": {k: v for k, v in request.META.items() if isinstance(v, str)},
        "get": dict(request.GET.lists()),
        "post": dict(request.POST.lists()),
    })


urlpatterns = [path("echo", echo), path("environ", environ)]
