"""urllib3: `PoolManager.urlopen` and `HTTPConnectionPool.urlopen` (the outermost one called
records: retries and redirects urllib3 makes inside it are part of its record,
`resend_count`); the record ends when the body has been read or the response closed."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from ferrotrace.instrumentation import _common

#: The module whose import triggers the instrumentation.
MODULE = "urllib3"


def _with_context(headers: Any, default: Any, context: list[tuple[str, str]]) -> Any:
    """A copy of the request's headers (the caller's mapping is never changed) with
    `traceparent` (and `tracestate`) set."""
    import urllib3

    copy = urllib3.HTTPHeaderDict(headers if headers is not None else (default or {}))
    for name, value in context:
        copy[name] = value
    return copy


def _resends(response: Any) -> int:
    retries = getattr(response, "retries", None)
    return len(getattr(retries, "history", ()) or ())


def _response_bytes(response: Any) -> int:
    try:
        length = response.headers.get("content-length")
        return int(length) if length is not None else int(response.tell())
    except Exception:
        return 0


def _traced(original: Any, full_url: Any, positional_body: bool) -> Any:
    @functools.wraps(original)
    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        span = _common.begin()
        if span is None:
            return original(self, method, url, *args, **kwargs)
        token = _common.ACTIVE.set(True)
        target = url
        body = kwargs.get("body", args[0] if args and positional_body else None)
        try:
            try:
                target = full_url(self, url)
                if span.traceparent is not None and (len(args) < 2 or not positional_body):
                    kwargs["headers"] = _with_context(
                        kwargs.get("headers"), getattr(self, "headers", None), _common.context_headers(span)
                    )
            except Exception:
                pass
            try:
                response = original(self, method, url, *args, **kwargs)
            except BaseException as exc:
                _common.end(
                    span,
                    "urllib3",
                    method,
                    target,
                    exc=exc,
                    request_bytes=_common.body_size(body),
                    request_body=body,
                    request_headers=kwargs.get("headers") or (),
                )
                raise
        finally:
            _common.ACTIVE.reset(token)

        def done() -> None:
            _common.end(
                span,
                "urllib3",
                method,
                target,
                response.status,
                request_bytes=_common.body_size(body),
                request_body=body,
                response_bytes=_response_bytes(response),
                resend_count=_resends(response),
                request_headers=kwargs.get("headers") or (),
                response_headers=response.headers,
            )

        with contextlib.suppress(Exception):
            _common.when_body_done(getattr(response, "_original_response", None), done)
        return response

    return urlopen


def _pool_url(pool: Any, url: str) -> str:
    if "://" in url:
        return url
    host = pool.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{pool.scheme}://{host}:{pool.port}{url}"


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps the two `urlopen` methods; returns what to restore (None: unsupported)."""
    import urllib3

    pool_cls = getattr(urllib3, "HTTPConnectionPool", None)
    manager_cls = getattr(urllib3, "PoolManager", None)
    if (
        getattr(pool_cls, "urlopen", None) is None
        or getattr(manager_cls, "urlopen", None) is None
        or not hasattr(urllib3, "HTTPHeaderDict")
    ):
        _common.unsupported("urllib3", getattr(urllib3, "__version__", "?"), "needs urllib3 2")
        return None
    restore = []
    for cls, full_url, positional_body in (
        (pool_cls, _pool_url, True),
        (manager_cls, lambda _m, url: url, False),
    ):
        original = cls.urlopen
        cls.urlopen = _traced(original, full_url, positional_body)
        restore.append((cls, "urlopen", original))
    return restore
