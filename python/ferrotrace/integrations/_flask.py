"""Flask: every application is served through the WSGI middleware (`Flask.wsgi_app`), and
the request's route is the rule Flask matched (`/items/<int:item_id>`)."""

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
    """Wraps `Flask.wsgi_app` and `Flask.full_dispatch_request`; returns what to restore
    (None: unsupported)."""
    import flask

    app_cls = getattr(flask, "Flask", None)
    wsgi_app = getattr(app_cls, "wsgi_app", None)
    dispatch = getattr(app_cls, "full_dispatch_request", None)
    if wsgi_app is None or dispatch is None:
        _common.unsupported(
            "flask", _common.version_of("flask"), "needs Flask.wsgi_app, full_dispatch_request"
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

    app_cls.wsgi_app = traced_wsgi_app
    app_cls.full_dispatch_request = full_dispatch_request
    return [(app_cls, "wsgi_app", wsgi_app), (app_cls, "full_dispatch_request", dispatch)]
