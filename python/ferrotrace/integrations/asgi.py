"""ASGI 3: one session of kind `server` per sampled `http` request.

    from ferrotrace.integrations.asgi import TracingMiddleware
    app = TracingMiddleware(app)           # or: app.add_middleware(TracingMiddleware)

The session is current in the request's task (and in the tasks and threads it hands work
to) while the application runs, and ends when the application returns: after the last body
message (`more_body` false), or once it stops because the client went away. Every message
passes through unchanged (the response start gains a `traceresponse` header only with
`FERROTRACE_RESPONSE_TRACEPARENT=1`), and any exception reaches the server unchanged.
`websocket` and `lifespan` scopes pass through untouched: they get no session. The route
is the framework's template when the framework names it in the scope (Starlette and
FastAPI set `scope["route"]`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ferrotrace import _lifecycle, _native

#: The scope key marking a request ferrotrace has seen (its session, or None).
SCOPE_KEY = "ferrotrace.session"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TracingMiddleware:
    """Wraps an ASGI 3 application: each sampled HTTP request is one session of kind
    `server`. Configures ferrotrace from the environment (leniently) if nothing did yet."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        _lifecycle.configure_if_needed()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await traced_call(self.app, scope, receive, send)


def _start(scope: Scope) -> _native.Session | None:
    try:
        return _native.asgi_start(scope)
    except Exception:
        return None


def route_of(scope: Scope) -> str | None:
    """The route template the framework left in the scope (`scope["route"].path`)."""
    route = scope.get("route")
    path = getattr(route, "path", None) if route is not None else None
    return path if isinstance(path, str) else None


async def traced_call(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serves one connection through `app`; an `http` request inside its session (if it
    gets one)."""
    if scope.get("type") != "http" or SCOPE_KEY in scope:
        return await app(scope, receive, send)
    session = _start(scope)
    scope[SCOPE_KEY] = session
    if session is None:
        return await app(scope, receive, send)
    status = 0
    traceresponse = session.traceresponse

    async def send_traced(message: Message) -> None:
        nonlocal status
        if message.get("type") == "http.response.start":
            with contextlib.suppress(Exception):
                status = int(message.get("status", 0))
            if traceresponse is not None:
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (b"traceresponse", traceresponse.encode())]
        await send(message)

    token = _native.session_var_set(session)
    try:
        await app(scope, receive, send_traced)
    except BaseException as exc:
        _end(session, status, exc, scope)
        raise
    finally:
        _reset(token)
    _end(session, status, None, scope)


def _end(session: _native.Session, status: int, exc: BaseException | None, scope: Scope) -> None:
    with contextlib.suppress(Exception):
        _native.server_end(session, status, exc, route_of(scope))


def _reset(token: Any) -> None:
    try:
        _native.session_var_reset(token)
    except ValueError:  # reset in another context than the one it was set in
        _native.session_var_set(None)
