from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("pid", views.pid),
    path("json", views.json_echo),
    path("form", views.form),
    path("session/set/<str:value>", views.session_set),
    path("session/get", views.session_get),
    path("upload", views.upload),
    path("stream", views.stream),
    path("boom", views.boom),
    path("meta", views.meta),
    path("admin/", admin.site.urls),
]
