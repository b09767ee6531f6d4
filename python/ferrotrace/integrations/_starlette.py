"""Starlette and FastAPI: every application is served through the ASGI middleware
(`Starlette.__call__`, which FastAPI's calls); the route is the template of the route
Starlette matched (`/items/{item_id}`, taken from `scope["route"]`)."""

from __future__ import annotations

import functools
from typing import Any

from ferrotrace.instrumentation import _common
from ferrotrace.integrations import asgi

#: The module whose import triggers the integration.
MODULE = "starlette.applications"


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps `Starlette.__call__`; returns what to restore (None: unsupported)."""
    from starlette import applications

    app_cls = getattr(applications, "Starlette", None)
    call = vars(app_cls).get("__call__") if isinstance(app_cls, type) else None
    if call is None:
        _common.unsupported("starlette", _common.version_of("starlette"), "needs Starlette.__call__")
        return None

    @functools.wraps(call)
    async def traced_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        await asgi.traced_call(functools.partial(call, self), scope, receive, send)

    app_cls.__call__ = traced_call
    return [(app_cls, "__call__", call)]
