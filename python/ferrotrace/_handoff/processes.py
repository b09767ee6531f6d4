"""Work sent to another process records into the submitting session's trace.

A task of a `multiprocessing` pool (`Pool.apply_async`, `map`, `imap`... with any start
method), of a `ProcessPoolExecutor` (`submit`, `map`) or the target of a
`multiprocessing.Process` started inside a sampled session travels as a `RemoteTask`: the
function with the session's `traceparent` naming the submitting call. In the worker it runs
in a session continuing that trace, and what it recorded is exported before its result goes
back, so a pool that terminates its workers (`with Pool() as p`) or a worker leaving by
`os._exit` loses nothing. A worker that is not traced yet (spawn, forkserver) is configured
from its environment and the settings the parent gave `ferrotrace.configure()`, and writes
its own file (the pid in the name). `subprocess` children that inherit the environment get
the session as `TRACEPARENT`, which their process-wide session (under `ferrotrace run`) adopts.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from ferrotrace import _lifecycle, _native
from ferrotrace._handoff import executors


def _name(func: Any) -> str:
    """The name a task's session is tagged with: its function's qualified name."""
    while isinstance(func, functools.partial):
        inner = func.func
        # ProcessPoolExecutor.map submits partial(_process_chunk, fn) per chunk.
        chunked = getattr(inner, "__name__", "") == "_process_chunk" and func.args
        func = func.args[0] if chunked else inner
    return str(getattr(func, "__qualname__", None) or type(func).__qualname__)


class RemoteTask:
    """`func` run in another process in a session that continues the submitting one."""

    __slots__ = ("func", "traceparent", "tag", "settings")

    def __init__(
        self, func: Callable[..., Any], traceparent: str, tag: str, settings: Mapping[str, Any]
    ) -> None:
        self.func = func
        self.traceparent = traceparent
        self.tag = tag
        self.settings = dict(settings)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteTask, (self.func, self.traceparent, self.tag, self.settings))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ferrotrace._session import session

        entered = None
        with contextlib.suppress(Exception):
            _lifecycle.configure_worker(self.settings)
            entered = session(self.tag, traceparent=self.traceparent)
            entered.__enter__()
        try:
            return self.func(*args, **kwargs)
        finally:
            if entered is not None:
                with contextlib.suppress(Exception):
                    entered.__exit__(None, None, None)
                    _native.flush(_lifecycle.shutdown_timeout())


def to_another_process(func: Any) -> Any:
    """`func` as a `RemoteTask` of the session in effect here, or itself when none is."""
    handoff = None
    with contextlib.suppress(Exception):
        if callable(func) and not isinstance(func, RemoteTask):
            handoff = _native.handoff_capture()
    if handoff is None:
        return func
    return RemoteTask(func, handoff.traceparent, _name(func), _lifecycle.given_settings())


def chunk_to_another_process(mapper: Any, func: Any) -> Any:
    """`Pool._map_async`'s `mapper` (one chunk of items) as a `RemoteTask` tagged with the
    name of the mapped `func`."""
    task = to_another_process(mapper)
    if isinstance(task, RemoteTask):
        task.tag = _name(func)
    return task


def patch_process_pool_executor(module: ModuleType) -> None:
    """`ProcessPoolExecutor.submit` (its `map` submits one chunk at a time)."""
    with contextlib.suppress(Exception):
        executors.patch_first_argument(module.ProcessPoolExecutor, "submit", to_another_process)


def _pool_worker_target(target: Any) -> bool:
    """The worker loop of a pool, whose tasks each carry their own session."""
    name = (getattr(target, "__module__", None), getattr(target, "__qualname__", None))
    return name in (("multiprocessing.pool", "worker"), ("concurrent.futures.process", "_process_worker"))


def _start_in_session(start: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(start)
    def start_in_session(self: Any) -> None:
        with contextlib.suppress(Exception):
            target = getattr(self, "_target", None)
            if target is not None and not _pool_worker_target(target):
                self._target = to_another_process(target)
        start(self)

    return start_in_session


def patch_process(module: ModuleType) -> None:
    """`multiprocessing.Process.start`: the target of a process started inside a session
    runs in it (pools' own worker processes excepted)."""
    with contextlib.suppress(Exception):
        executors.replace_method(module.BaseProcess, "start", _start_in_session)


#: Position of `env` among `Popen`'s parameters after `args`.
_ENV_POSITION = 9


def _environment_with(traceparent: str) -> dict[Any, Any]:
    """This process's environment, as a child would inherit it, with `TRACEPARENT` set."""
    return {**os.environ, "TRACEPARENT": traceparent}


def _init_with_traceparent(init: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(init)
    def init_with_traceparent(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        if len(rest) <= _ENV_POSITION and kwargs.get("env") is None:
            with contextlib.suppress(Exception):
                handoff = _native.handoff_capture()
                if handoff is not None:
                    kwargs["env"] = _environment_with(handoff.traceparent)
        init(self, args, *rest, **kwargs)

    return init_with_traceparent


def patch_subprocess(module: ModuleType) -> None:
    """`subprocess.Popen`: a child started inside a sampled session that inherits this
    process's environment gets the session as `TRACEPARENT` in it. An `env` the caller gave
    is the exact environment they chose, and is passed on untouched."""
    with contextlib.suppress(Exception):
        executors.replace_method(module.Popen, "__init__", _init_with_traceparent)


def patch_pools(module: ModuleType) -> None:
    """`multiprocessing.pool.ThreadPool` (tasks stay in this process: `executors`) and `Pool`
    (tasks go to other processes). ThreadPool first: it inherits Pool's methods."""
    with contextlib.suppress(Exception):
        executors.patch_pool_class(
            module.ThreadPool, executors.in_session, lambda mapper, _func: executors.in_session(mapper)
        )
        executors.patch_pool_class(module.Pool, to_another_process, chunk_to_another_process)
