"""urllib.request: `OpenerDirector.open`, behind `urlopen` (the redirects it follows are
part of the record of the call that was made); http and https URLs only. The record ends
when the body has been read or the response closed; an HTTPError is recorded with its
status."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from ferrotrace.instrumentation import _common

#: The module whose import triggers the instrumentation.
MODULE = "urllib.request"


def patch() -> list[tuple[Any, str, Any]] | None:
    """Wraps `urllib.request.OpenerDirector.open`; returns what to restore."""
    import sys
    from urllib.error import HTTPError

    # Called right after urllib.request ran, before the import system makes it an
    # attribute of urllib: taken from sys.modules.
    request_module = sys.modules["urllib.request"]
    opener_cls = request_module.OpenerDirector
    original = opener_cls.open

    @functools.wraps(original)
    def open(self: Any, fullurl: Any, data: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: A001
        span = _common.begin()
        if span is None:
            return original(self, fullurl, data, *args, **kwargs)
        token = _common.ACTIVE.set(True)
        request = fullurl
        try:
            try:
                if isinstance(fullurl, str):
                    request = request_module.Request(fullurl, data)
                    data = None
                if request.type not in ("http", "https"):
                    span = None
                else:
                    for name, value in _common.context_headers(span):
                        request.add_header(name.capitalize(), value)
            except Exception:
                request = fullurl
            try:
                response = original(self, request, data, *args, **kwargs)
            except BaseException as exc:
                if span is not None:
                    status = exc.code if isinstance(exc, HTTPError) else 0
                    _common.end(
                        span,
                        "urllib",
                        _method(request),
                        _url(request),
                        status,
                        exc=exc,
                        request_bytes=_common.body_size(getattr(request, "data", None)),
                        request_body=getattr(request, "data", None),
                        request_headers=_request_headers(request),
                    )
                raise
        finally:
            _common.ACTIVE.reset(token)
        if span is not None:
            with contextlib.suppress(Exception):
                _finish_later(span, request, response)
        return response

    opener_cls.open = open
    return [(opener_cls, "open", original)]


def _method(request: Any) -> str:
    try:
        return request.get_method()
    except Exception:
        return "GET"


def _url(request: Any) -> str:
    return getattr(request, "full_url", request)


def _request_headers(request: Any) -> list[tuple[str, str]]:
    try:
        return request.header_items()
    except Exception:
        return []


def _finish_later(span: Any, request: Any, response: Any) -> None:
    def done() -> None:
        headers = response.headers
        length = headers.get("content-length")
        _common.end(
            span,
            "urllib",
            _method(request),
            _url(request),
            response.status,
            request_bytes=_common.body_size(getattr(request, "data", None)),
            request_body=getattr(request, "data", None),
            response_bytes=int(length) if length is not None else 0,
            request_headers=_request_headers(request),
            response_headers=headers,
        )

    _common.when_body_done(response, done)
