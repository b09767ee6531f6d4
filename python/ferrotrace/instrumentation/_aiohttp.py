"""aiohttp: `ClientSession._request`, behind `session.get()`, `session.request()` and the
others (redirects it follows count in `resend_count`); recorded in the calling asyncio task;
the record ends when the body has been read or the response released or closed."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from ferrotrace.instrumentation import _common

#: The module whose import triggers the instrumentation.
MODULE = "aiohttp"


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps `aiohttp.ClientSession._request`; returns what to restore."""
    import aiohttp

    session_cls = getattr(aiohttp, "ClientSession", None)
    original = getattr(session_cls, "_request", None)
    version = getattr(aiohttp, "__version__", "?")
    if original is None or not version.startswith("3."):
        _common.unsupported("aiohttp", version, "needs aiohttp 3")
        return None
    from multidict import CIMultiDict

    @functools.wraps(original)
    async def _request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        span = _common.begin()
        if span is None:
            return await original(self, method, str_or_url, **kwargs)
        token = _common.ACTIVE.set(True)
        try:
            if span.traceparent is not None:
                try:
                    headers = CIMultiDict(kwargs.get("headers") or {})
                    headers.update(_common.context_headers(span))
                    kwargs["headers"] = headers
                except Exception:
                    pass
            try:
                response = await original(self, method, str_or_url, **kwargs)
            except BaseException as exc:
                _common.end(
                    span,
                    "aiohttp",
                    method,
                    str_or_url,
                    exc=exc,
                    request_bytes=_common.body_size(kwargs.get("data")),
                    request_body=kwargs.get("data"),
                    request_headers=kwargs.get("headers") or (),
                )
                raise
        finally:
            _common.ACTIVE.reset(token)
        with contextlib.suppress(Exception):
            _finish_later(span, method, str_or_url, kwargs, response)
        return response

    session_cls._request = _request
    return [(session_cls, "_request", original)]


def _finish_later(span: Any, method: str, url: Any, kwargs: dict[str, Any], response: Any) -> None:
    def done() -> None:
        _common.end(
            span,
            "aiohttp",
            method,
            url,
            response.status,
            request_bytes=_common.body_size(kwargs.get("data")),
            request_body=kwargs.get("data"),
            response_bytes=response.content.total_bytes,
            resend_count=len(response.history),
            request_headers=response.request_info.headers,
            response_headers=response.headers,
        )

    once = _Once(done)
    _common.when_closed(response, ("release", "close"), once)
    response.content.on_eof(once)


class _Once:
    """Calls a function the first time it is called."""

    __slots__ = ("func",)

    def __init__(self, func: Any) -> None:
        self.func = func

    def __call__(self) -> None:
        func, self.func = self.func, None
        if func is not None:
            func()
