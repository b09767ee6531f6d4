"""WSGI: one session of kind `server` per sampled request.

    from ferrotrace.integrations.wsgi import TracingMiddleware
    app.wsgi_app = TracingMiddleware(app.wsgi_app)

The session is current while the application runs and while each chunk of its body is
produced, and ends when the server closes the body (PEP 3333 has servers call `close()`),
so a streamed body is part of its request. The body, the status line, the headers and any
exception reach the server unchanged; `FERROTRACE_RESPONSE_TRACEPARENT=1` adds a
`traceresponse` header. An excluded path or an unsampled request is served untouched after
one native call. A request already seen by another ferrotrace middleware (wrapped by hand
and automatically) is served by the outer one only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ferrotrace import _lifecycle, _native

#: The environ key marking a request ferrotrace has seen (its session, or None).
ENVIRON_KEY = "ferrotrace.session"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class TracingMiddleware:
    """Wraps a WSGI application: each sampled request is one session of kind `server`.
    Configures ferrotrace from the environment (leniently) if nothing did yet."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        _lifecycle.configure_if_needed()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return traced_call(self.app, environ, start_response)


def _start(environ: dict[str, Any]) -> _native.Session | None:
    try:
        return _native.wsgi_start(environ)
    except Exception:
        return None


def traced_call(app: WSGIApp, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Serves one request through `app` inside its session (if it gets one)."""
    if ENVIRON_KEY in environ:
        return app(environ, start_response)
    session = _start(environ)
    environ[ENVIRON_KEY] = session
    if session is None:
        return app(environ, start_response)
    state = _Request(session, start_response)
    token = _native.session_var_set(session)
    try:
        result = app(environ, state.start_response)
    except BaseException as exc:
        _reset(token)
        state.end(exc)
        raise
    _reset(token)
    return _Body(result, state)


def _reset(token: Any) -> None:
    try:
        _native.session_var_reset(token)
    except ValueError:  # reset in another context than the one it was set in
        _native.session_var_set(None)


class _Request:
    """A traced request's status and end."""

    __slots__ = ("session", "status", "traceresponse", "_start_response")

    def __init__(self, session: _native.Session, start_response: StartResponse) -> None:
        self.session = session
        self.status = 0
        self.traceresponse = session.traceresponse
        self._start_response = start_response

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        with contextlib.suppress(Exception):
            self.status = int(status[:3])
        if self.traceresponse is not None:
            headers = [*headers, ("traceresponse", self.traceresponse)]
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def end(self, exc: BaseException | None = None) -> None:
        with contextlib.suppress(Exception):
            _native.server_end(self.session, self.status, exc)


class _Body:
    """The application's body, passed through chunk by chunk with the session current while
    each chunk is made; the session ends at `close()` (or when producing a chunk raises)."""

    __slots__ = ("_result", "_iterator", "_state")

    def __init__(self, result: Iterable[bytes], state: _Request) -> None:
        self._result = result
        self._iterator: Iterator[bytes] | None = None
        self._state = state

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        token = _native.session_var_set(self._state.session)
        try:
            if self._iterator is None:
                self._iterator = iter(self._result)
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            _reset(token)
            token = None
            self._state.end(exc)
            raise
        finally:
            if token is not None:
                _reset(token)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is None:
            self._state.end()
            return
        token = _native.session_var_set(self._state.session)
        try:
            close()
        except BaseException as exc:
            _reset(token)
            token = None
            self._state.end(exc)
            raise
        finally:
            if token is not None:
                _reset(token)
        self._state.end()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]
