"""`ferrotrace.session` (context manager and decorator) and `ferrotrace.trace`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ferrotrace import _lifecycle, _native, _settings

F = TypeVar("F", bound=Callable[..., Any])


class session:  # noqa: N801 - used like a function: `with ferrotrace.session(...)`
    """A unit of work traced as one trace (or a child span of the enclosing session).

    `with ferrotrace.session("checkout", attrs={...}, traceparent=hdr) as s:` records every
    included call made inside, in this thread or asyncio task, under `s.trace_id`.
    `tracestate=` (the incoming W3C `tracestate`, kept only with a valid `traceparent`; an
    invalid one is dropped and counted) is sent with `traceparent` on outgoing requests.
    Also usable as a decorator, on sync and async functions (one session per call).
    """

    def __init__(
        self,
        tag: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> None:
        self.tag = tag
        self.attrs = dict(attrs or {})
        self.traceparent = traceparent
        self.tracestate = tracestate
        self._tokens: dict[int, Any] = {}

    def __enter__(self) -> _native.Session:
        _lifecycle.ensure_configured()
        text = _settings.text
        s = _native.session_start(
            text(self.tag or "session"),
            [(text(str(k)), text(str(v))) for k, v in self.attrs.items()],
            text(self.traceparent) if isinstance(self.traceparent, str) else self.traceparent,
            tracestate=text(self.tracestate) if isinstance(self.tracestate, str) else self.tracestate,
        )
        self._tokens[id(s)] = (s, _native.session_var_set(s))
        return s

    def __exit__(self, *exc: object) -> None:
        current = _native.SESSION_VAR.get(None)
        entry = self._tokens.pop(id(current), None) if current is not None else None
        if entry is None:
            return
        s, token = entry
        try:
            _native.session_var_reset(token)
        except ValueError:  # exited in another context than it was entered in
            _native.session_var_set(None)
        # The exception the block exited by (no builtin is called here: a profiler running
        # around the session counts the program's calls only).
        _native.session_end(s, exc[1] if exc else None)

    async def __aenter__(self) -> _native.Session:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def _fresh(self, default_tag: str) -> session:
        return session(self.tag or default_tag, self.attrs, self.traceparent, self.tracestate)

    def __call__(self, func: F) -> F:
        tag = getattr(func, "__qualname__", getattr(func, "__name__", "session"))
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh(tag):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh(tag):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def trace(
    tag: str | Callable[..., Any] | None = None,
    *,
    attrs: Mapping[str, Any] | None = None,
) -> Any:
    """Decorator: each call of the function runs in its own session.

    `@ferrotrace.trace`, `@ferrotrace.trace("nightly-job")` or
    `@ferrotrace.trace(attrs={"team": "billing"})`; the tag defaults to the function's
    qualified name. Works on sync and async functions.
    """
    if callable(tag):
        return session(None, attrs)(tag)
    return session(tag, attrs)
