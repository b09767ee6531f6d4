"""requests: `Session.send`, the one method every request (and each redirect) goes through.
The redirects requests follows inside one call are part of that call's record
(`resend_count`); the record ends when the body has been read or the response closed."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from ferrotrace.instrumentation import _common

#: The module whose import triggers the instrumentation.
MODULE = "requests"


def _response_bytes(raw: Any) -> int:
    """Body bytes as sent (Content-Length, else what urllib3 read)."""
    try:
        length = raw.headers.get("content-length")
        return int(length) if length is not None else int(raw.tell())
    except Exception:
        return 0


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps `requests.Session.send`; returns what to restore (None: unsupported)."""
    import requests

    session_cls = getattr(requests, "Session", None)
    original = getattr(session_cls, "send", None)
    if original is None:
        _common.unsupported("requests", getattr(requests, "__version__", "?"), "needs Session.send")
        return None

    @functools.wraps(original)
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        span = _common.begin()
        if span is None:
            return original(self, request, **kwargs)
        token = _common.ACTIVE.set(True)
        try:
            with contextlib.suppress(Exception):
                for name, value in _common.context_headers(span):
                    request.headers[name] = value
            try:
                response = original(self, request, **kwargs)
            except BaseException as exc:
                _common.end(
                    span,
                    "requests",
                    getattr(request, "method", ""),
                    getattr(request, "url", ""),
                    exc=exc,
                    request_bytes=_common.body_size(getattr(request, "body", None)),
                    request_headers=getattr(request, "headers", ()),
                    request_body=getattr(request, "body", None),
                )
                raise
        finally:
            _common.ACTIVE.reset(token)
        with contextlib.suppress(Exception):
            _finish_later(span, request, response)
        return response

    session_cls.send = send
    return [(session_cls, "send", original)]


def _finish_later(span: Any, request: Any, response: Any) -> None:
    raw = getattr(response, "raw", None)

    def done() -> None:
        _common.end(
            span,
            "requests",
            request.method,
            request.url,
            response.status_code,
            request_bytes=_common.body_size(request.body),
            response_bytes=_response_bytes(raw),
            resend_count=len(getattr(response, "history", ()) or ()),
            request_headers=request.headers,
            response_headers=response.headers,
            request_body=request.body,
            response_body=_common.loaded_body(response),
        )

    _common.when_body_done(getattr(raw, "_original_response", None), done)
