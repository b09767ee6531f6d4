"""The Django test application in one module (gunicorn `service_apps.django_app:application`)."""

from __future__ import annotations

import os

if os.environ.get("SERVICE_APP_AUTO") == "1":
    import ferrotrace.auto  # noqa: F401  (traced without `ferrotrace run`)

from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="service-tests-only",
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from service_apps import common  # noqa: E402


def item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"id": item_id, "sum": common.work(item_id)})


def sleep(request: HttpRequest) -> JsonResponse:
    common.nap(float(request.GET.get("s", "0.2")))
    return JsonResponse({"slept": True})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(common.chunks(), content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    common.fail()
    return HttpResponse("unreachable")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("items/<int:item_id>", item),
    path("sleep", sleep),
    path("stream", stream),
    path("boom", boom),
    path("health", health),
]

application = get_wsgi_application()
