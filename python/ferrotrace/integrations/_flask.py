"""Flask: every application is served through the WSGI middleware (`Flask.wsgi_app`), the
request's route is the rule Flask matched (`/items/<int:item_id>`), and an exception Flask
answers with a 500 (`Flask.handle_exception`) is the session's exception."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from ferrotrace import _native
from ferrotrace.instrumentation import _common
from ferrotrace.integrations import wsgi

#: The module whose import triggers the integration.
MODULE = "flask"


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps `Flask.wsgi_app`, `full_dispatch_request` and `handle_exception`; returns what
    to restore (None: unsupported)."""
    import flask

    app_cls = getattr(flask, "Flask", None)
    wsgi_app = getattr(app_cls, "wsgi_app", None)
    dispatch = getattr(app_cls, "full_dispatch_request", None)
    handle_exception = getattr(app_cls, "handle_exception", None)
    if wsgi_app is None or dispatch is None or handle_exception is None:
        _common.unsupported(
            "flask",
            _common.version_of("flask"),
            "needs Flask.wsgi_app, full_dispatch_request, handle_exception",
        )
        return None

    @functools.wraps(wsgi_app)
    def traced_wsgi_app(self: Any, environ: Any, start_response: Any) -> Any:
        return wsgi.traced_call(functools.partial(wsgi_app, self), environ, start_response)

    @functools.wraps(dispatch)
    def full_dispatch_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(Exception):
            rule = flask.request.url_rule
            if rule is not None:
                _native.server_route(rule.rule)
        return dispatch(self, *args, **kwargs)

    @functools.wraps(handle_exception)
    def traced_handle_exception(self: Any, e: Any) -> Any:
        with contextlib.suppress(Exception):
            _native.server_exception(e)
        return handle_exception(self, e)

    app_cls.wsgi_app = traced_wsgi_app
    app_cls.full_dispatch_request = full_dispatch_request
    app_cls.handle_exception = traced_handle_exception
    return [
        (app_cls, "wsgi_app", wsgi_app),
        (app_cls, "full_dispatch_request", dispatch),
        (app_cls, "handle_exception", handle_exception),
    ]
