"""What the HTTP client instrumentations share: the outermost-layer rule, starting and ending
a client span, and noticing when a response is over.

Every wrapper follows the same rules: outside a session it makes the call untouched after
one check (`begin()` returns None); ferrotrace's own bookkeeping never raises into the
application (`end()` and the hooks swallow their own failures); the library's result and
exceptions reach the application unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable
from typing import Any

from ferrotrace import _native

#: Set while an instrumented call runs in this context: a library called by another one
#: (requests -> urllib3) or by itself (a redirect) is not recorded again.
ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("ferrotrace_http_active", default=False)


def begin() -> _native.HttpSpan | None:
    """A client span for a request made here, or None: outside any session, inside another
    instrumented call, or when ferrotrace fails."""
    if ACTIVE.get():
        return None
    try:
        return _native.http_start()
    except Exception:
        return None


def context_headers(span: _native.HttpSpan) -> list[tuple[str, str]]:
    """The headers that carry the trace to the called service: `traceparent`, and the
    session's `tracestate` when it has one; none when propagation is off."""
    if span.traceparent is None:
        return []
    headers = [("traceparent", span.traceparent)]
    if span.tracestate is not None:
        headers.append(("tracestate", span.tracestate))
    return headers


def error_type(exc: BaseException) -> str:
    """The exception's fully qualified class name (`error.type`)."""
    cls = type(exc)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module == "builtins" else f"{module}.{name}"


def header_pairs(headers: Any) -> list[tuple[str, str]]:
    """(name, value) pairs of a headers mapping (multi-valued ones included); [] on failure."""
    try:
        items = headers.items() if hasattr(headers, "items") else headers
        return [(str(k), str(v)) for k, v in items]
    except Exception:
        return []


def body_size(body: Any) -> int:
    """Bytes of a request body given as bytes or text (0 for streams and unknown bodies)."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8", "surrogateescape"))
    return 0


def loaded_body(obj: Any) -> bytes | str | None:
    """The body an object already holds in memory (`_content`, as requests and httpx keep a
    request or response body once it was read), else None; never reads anything."""
    try:
        body = vars(obj).get("_content")
    except Exception:
        return None
    return body if isinstance(body, (bytes, str)) else None


def end(
    span: _native.HttpSpan,
    library: str,
    method: Any,
    url: Any,
    status: Any = 0,
    *,
    request_bytes: int = 0,
    response_bytes: int = 0,
    resend_count: int = 0,
    exc: BaseException | None = None,
    request_headers: Any = (),
    response_headers: Any = (),
    request_body: Any = None,
    response_body: Any = None,
) -> None:
    """Ends the span (once) and records the request; never raises. The bodies are passed
    on only with FERROTRACE_CAPTURE_BODIES=1, and only when they are bytes or text."""
    try:
        if not span.recorded:
            return
        wants = span.wants_headers
        bodies = span.wants_bodies
        _native.http_end(
            span,
            library,
            str(method or "GET"),
            str(url),
            int(status or 0),
            max(int(request_bytes or 0), 0),
            max(int(response_bytes or 0), 0),
            max(int(resend_count or 0), 0),
            None if exc is None else (error_type(exc), _message(exc)),
            header_pairs(request_headers) if wants else [],
            header_pairs(response_headers) if wants else [],
            _body(request_body) if bodies else None,
            _body(response_body) if bodies else None,
        )
    except Exception:
        pass


def _body(body: Any) -> bytes | str | None:
    """A non-empty body given as bytes or text; None for anything else (a stream, a file)."""
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    return body if isinstance(body, (bytes, str)) and body else None


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return ""


def when_closed(obj: Any, names: Iterable[str], callback: Callable[[], None]) -> bool:
    """Calls `callback` once, right after the first of the methods `names` of `obj` returns
    (or raises): those methods are overridden on this instance only, and the overrides are
    removed when it fires. Returns False when `obj` cannot take them."""
    names = tuple(names)
    cls = type(obj)
    fired = False

    def fire() -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        for n in names:
            obj.__dict__.pop(n, None)
        with contextlib.suppress(Exception):
            callback()

    def hook_for(name: str) -> Callable[..., Any]:
        original = getattr(cls, name)
        if _is_async(original):

            async def async_hook(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await original(obj, *args, **kwargs)
                finally:
                    fire()

            return async_hook

        def hook(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(obj, *args, **kwargs)
            finally:
                fire()

        return hook

    try:
        hooks = {n: hook_for(n) for n in names}
        obj.__dict__.update(hooks)
    except Exception:
        return False
    return True


def _is_async(func: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(func)


def http_client_closed(response: Any) -> bool:
    """An `http.client.HTTPResponse` whose body has been read or that was closed."""
    try:
        return response.isclosed()
    except Exception:
        return True


def when_body_done(response: Any, callback: Callable[[], None]) -> None:
    """Calls `callback` when the body of an `http.client.HTTPResponse` has been read to the
    end or the response closed (at once if it already is)."""
    if (
        response is None
        or http_client_closed(response)
        or not when_closed(response, ("_close_conn",), callback)
    ):
        callback()


def version_of(distribution: str) -> str:
    """The installed version of a distribution, "?" when unknown."""
    try:
        from importlib import metadata

        return metadata.version(distribution)
    except Exception:
        return "?"


def unsupported(library: str, version: str, needs: str) -> None:
    """One warning that `library` is installed but not instrumented (on the `ferrotrace`
    logger and in the `meta` record; under `ferrotrace run`, in its summary)."""
    from ferrotrace import _lifecycle

    _lifecycle.diagnose([f"{library} {version} is not supported ({needs}); its requests are not traced"])
