"""httpx: `Client.send` and `AsyncClient.send`, through which every request of a client goes
(redirects and auth flows included: `resend_count` counts the redirects); the record ends
when the body has been read or the response closed."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from ferrotrace.instrumentation import _common

#: The module whose import triggers the instrumentation.
MODULE = "httpx"


def _inject(span: Any, request: Any) -> None:
    with contextlib.suppress(Exception):
        for name, value in _common.context_headers(span):
            request.headers[name] = value


def _failed(span: Any, request: Any, exc: BaseException) -> None:
    _common.end(
        span,
        "httpx",
        getattr(request, "method", ""),
        getattr(request, "url", ""),
        exc=exc,
        request_headers=getattr(request, "headers", ()),
        request_body=_common.loaded_body(request),
    )


def _finish_later(span: Any, request: Any, response: Any, close: str) -> None:
    def done() -> None:
        _common.end(
            span,
            "httpx",
            request.method,
            request.url,
            response.status_code,
            request_bytes=_request_bytes(request),
            response_bytes=response.num_bytes_downloaded,
            resend_count=len(response.history),
            request_headers=request.headers,
            response_headers=response.headers,
            request_body=_common.loaded_body(request),
            response_body=_common.loaded_body(response),
        )

    if response.is_closed or not _common.when_closed(response, (close,), done):
        done()


def _request_bytes(request: Any) -> int:
    try:
        length = request.headers.get("content-length")
        return int(length) if length is not None else 0
    except Exception:
        return 0


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps `Client.send` and `AsyncClient.send`; returns what to restore."""
    import httpx

    client_cls = getattr(httpx, "Client", None)
    async_cls = getattr(httpx, "AsyncClient", None)
    sync_send = getattr(client_cls, "send", None)
    async_send = getattr(async_cls, "send", None)
    if sync_send is None or async_send is None or not hasattr(httpx.Response, "num_bytes_downloaded"):
        _common.unsupported("httpx", getattr(httpx, "__version__", "?"), "needs httpx 0.18 or newer")
        return None

    @functools.wraps(sync_send)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        span = _common.begin()
        if span is None:
            return sync_send(self, request, *args, **kwargs)
        token = _common.ACTIVE.set(True)
        try:
            _inject(span, request)
            try:
                response = sync_send(self, request, *args, **kwargs)
            except BaseException as exc:
                _failed(span, request, exc)
                raise
        finally:
            _common.ACTIVE.reset(token)
        with contextlib.suppress(Exception):
            _finish_later(span, request, response, "close")
        return response

    @functools.wraps(async_send)
    async def asend(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        span = _common.begin()
        if span is None:
            return await async_send(self, request, *args, **kwargs)
        token = _common.ACTIVE.set(True)
        try:
            _inject(span, request)
            try:
                response = await async_send(self, request, *args, **kwargs)
            except BaseException as exc:
                _failed(span, request, exc)
                raise
        finally:
            _common.ACTIVE.reset(token)
        with contextlib.suppress(Exception):
            _finish_later(span, request, response, "aclose")
        return response

    client_cls.send = send
    async_cls.send = asend
    return [(client_cls, "send", sync_send), (async_cls, "send", async_send)]
