"""Tasks submitted to a thread pool run in their submitter's session, whichever session (or
none) started the worker: `ThreadPoolExecutor.submit` (behind `map`, `loop.run_in_executor`
and `asyncio.to_thread`), the task methods of `multiprocessing.pool.ThreadPool`, and
`anyio.to_thread.run_sync` (behind Starlette's and FastAPI's sync endpoints). A task submitted
outside any sampled session runs as it would without ferrotrace."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ferrotrace import _native


class InSession:
    """`func` run in the session (and under the call) that handed it over."""

    __slots__ = ("func", "handoff")

    def __init__(self, func: Callable[..., Any], handoff: Any) -> None:
        self.func = func
        self.handoff = handoff

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        scope = None
        with contextlib.suppress(Exception):
            scope = _native.handoff_enter(self.handoff)
        try:
            return self.func(*args, **kwargs)
        finally:
            if scope is not None:
                with contextlib.suppress(Exception):
                    _native.handoff_exit(scope)


def in_session(func: Any) -> Any:
    """`func` wrapped to run in the session in effect here, or `func` itself when none is."""
    handoff = None
    with contextlib.suppress(Exception):
        handoff = _native.handoff_capture()
    return func if handoff is None or not callable(func) else InSession(func, handoff)


def _wrap_first_argument(method: Callable[..., Any], wrap: Callable[[Any], Any]) -> Callable[..., Any]:
    """`method(self, func, ...)` with `func` replaced by `wrap(func)`."""

    @functools.wraps(method)
    def wrapper(self: Any, func: Any, /, *args: Any, **kwargs: Any) -> Any:
        return method(self, wrap(func), *args, **kwargs)

    return wrapper


def _wrap_mapper(method: Callable[..., Any], wrap: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """`Pool._map_async(self, func, iterable, mapper, ...)` with `mapper` (which runs one
    chunk of items) replaced by `wrap(mapper, func)`: one handoff per chunk, not per item."""

    @functools.wraps(method)
    def wrapper(self: Any, func: Any, iterable: Any, mapper: Any, /, *args: Any, **kwargs: Any) -> Any:
        return method(self, func, iterable, wrap(mapper, func), *args, **kwargs)

    return wrapper


def replace_method(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replaces method `name` of `owner` (its own or inherited) by `make(method)`, once: the
    replacement is marked, and a marked method is left alone."""
    method = getattr(owner, name, None)
    if method is None or getattr(method, "__ferrotrace__", False):
        return
    replacement = make(method)
    replacement.__ferrotrace__ = True  # type: ignore[attr-defined]
    setattr(owner, name, replacement)


def patch_first_argument(owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
    """Method `name` of class `owner` with its first argument (a task's function) wrapped."""
    replace_method(owner, name, lambda m: _wrap_first_argument(m, wrap))


def patch_thread_pool_executor(module: ModuleType) -> None:
    """`ThreadPoolExecutor.submit` (its `map` submits)."""
    with contextlib.suppress(Exception):
        patch_first_argument(module.ThreadPoolExecutor, "submit", in_session)


def patch_pool_class(owner: Any, wrap: Callable[[Any], Any], wrap_chunk: Callable[[Any, Any], Any]) -> None:
    """The `multiprocessing.pool` methods of `owner` that take a task's function:
    `apply_async` (behind `apply`), `imap`, `imap_unordered`, and `_map_async` (behind
    `map`, `starmap` and their `_async` forms), whose chunks are wrapped."""
    for name in ("apply_async", "imap", "imap_unordered"):
        patch_first_argument(owner, name, wrap)
    replace_method(owner, "_map_async", lambda m: _wrap_mapper(m, wrap_chunk))


def _run_sync_in_session(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def run_sync(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        return await original(in_session(func), *args, **kwargs)

    return run_sync


def patch_anyio(module: ModuleType) -> None:
    """`anyio.to_thread.run_sync`: its worker threads are started by whichever task needed
    one first and reused by all later ones, so each task carries its own session."""
    with contextlib.suppress(Exception):
        replace_method(module, "run_sync", _run_sync_in_session)
