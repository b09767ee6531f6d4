"""Django: its WSGI and ASGI handlers serve every request through ferrotrace's middleware,
and the route is the pattern Django resolved (`/items/<int:item_id>`).

`django.core.handlers.base` is what both handlers import; its `BaseHandler.load_middleware`
(which every handler runs once when it is made, before any request) wraps the handler
class's `__call__`, so that ferrotrace never imports a part of Django the program does not
use."""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import Any

from ferrotrace import _native
from ferrotrace.instrumentation import _common
from ferrotrace.integrations import asgi, wsgi

#: The module whose import triggers the integration.
MODULE = "django.core.handlers.base"


def _route(match: Any) -> str | None:
    route = getattr(match, "route", None)
    if not isinstance(route, str) or not route:
        return None
    return route if route.startswith(("/", "^")) else f"/{route}"


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps `BaseHandler.resolve_request` (the route), `BaseHandler.load_middleware` (which
    wraps the WSGI and ASGI handlers) and `response_for_exception` (an exception Django
    answers with a 5xx is the session's); returns what to restore (None: unsupported)."""
    from django.core.handlers import base, exception

    handler_cls = getattr(base, "BaseHandler", None)
    resolve = getattr(handler_cls, "resolve_request", None)
    load = getattr(handler_cls, "load_middleware", None)
    respond = getattr(exception, "response_for_exception", None)
    if resolve is None or load is None or respond is None:
        _common.unsupported(
            "django",
            _common.version_of("django"),
            "needs BaseHandler.resolve_request, load_middleware, response_for_exception",
        )
        return None
    restore: list[tuple[Any, str, Any]] = [
        (handler_cls, "resolve_request", resolve),
        (handler_cls, "load_middleware", load),
        (exception, "response_for_exception", respond),
    ]

    @functools.wraps(resolve)
    def resolve_request(self: Any, request: Any) -> Any:
        match = resolve(self, request)
        with contextlib.suppress(Exception):
            route = _route(match)
            if route is not None:
                _native.server_route(route)
        return match

    @functools.wraps(load)
    def load_middleware(self: Any, *args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(Exception):
            _wrap_handlers(restore)
        return load(self, *args, **kwargs)

    @functools.wraps(respond)
    def response_for_exception(request: Any, exc: Any) -> Any:
        with contextlib.suppress(Exception):
            _native.server_exception(exc)
        return respond(request, exc)

    handler_cls.resolve_request = resolve_request
    handler_cls.load_middleware = load_middleware
    exception.response_for_exception = response_for_exception
    return restore


def _wrap_handlers(restore: list[tuple[Any, str, Any]]) -> None:
    """Wraps `WSGIHandler.__call__` and `ASGIHandler.__call__` (those whose modules are
    imported), once each."""
    wrapped = {owner for owner, name, _ in restore if name == "__call__"}
    for module_name, cls_name, wrap in (
        ("django.core.handlers.wsgi", "WSGIHandler", _wsgi_call),
        ("django.core.handlers.asgi", "ASGIHandler", _asgi_call),
    ):
        cls = getattr(sys.modules.get(module_name), cls_name, None)
        if cls is None or cls in wrapped:
            continue
        original = cls.__call__
        cls.__call__ = wrap(original)
        restore.append((cls, "__call__", original))


def _wsgi_call(original: Any) -> Any:
    @functools.wraps(original)
    def __call__(self: Any, environ: Any, start_response: Any) -> Any:
        return wsgi.traced_call(functools.partial(original, self), environ, start_response)

    return __call__


def _asgi_call(original: Any) -> Any:
    @functools.wraps(original)
    async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> None:
        await asgi.traced_call(functools.partial(original, self), scope, receive, send)

    return __call__
