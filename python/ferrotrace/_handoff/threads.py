"""`threading.Thread.start` takes the session in effect (`_native.handoff_capture`) and the new
thread runs its target in it (`Thread._bootstrap_inner`, the first thing a new thread runs).
`Timer` is a `Thread`. Workers of thread pools (concurrent.futures, multiprocessing.pool,
anyio) are left out: their tasks carry their own session (`executors`), and a worker must not
keep the session that happened to start it.

The same wrapper installs the setprofile backend's hook in every other new thread while a
process-wide session runs (`_native.thread_bootstrap`): not `threading.setprofile`, since on
3.10 and 3.11 each `sys.setprofile` runs the audit hooks under a process-wide "being
installed" flag, so two threads starting at once under a Python audit hook made one of them
die before its target ran. The wrappers stay (inert) when tracing stops: unwrapping could undo
a later wrapper of the program's."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from ferrotrace import _native

#: Attribute of a started Thread holding its handoff until the thread takes it.
ATTRIBUTE = "_ferrotrace_handoff"


def _pool_worker(thread: threading.Thread) -> bool:
    """A thread-pool worker, whose tasks each carry their submitter's session."""
    kind = type(thread)
    if kind.__name__ == "WorkerThread" and kind.__module__.startswith("anyio."):
        return True
    target = getattr(thread, "_target", None)
    if target is None:
        return False
    for module, name in (("concurrent.futures.thread", "_worker"), ("multiprocessing.pool", "worker")):
        mod = sys.modules.get(module)
        if mod is not None and target is getattr(mod, name, None):
            return True
    return False


def patch() -> None:
    """Wraps `Thread.start` and `Thread._bootstrap_inner` (once)."""
    thread_class: Any = threading.Thread
    start, bootstrap_inner = thread_class.start, thread_class._bootstrap_inner
    if getattr(start, "__ferrotrace__", False):
        return

    def start_in_session(self: threading.Thread) -> None:
        handoff = None
        with contextlib.suppress(Exception):
            if not _pool_worker(self):
                handoff = _native.handoff_capture()
            if handoff is not None:
                self.__dict__[ATTRIBUTE] = handoff
        try:
            start(self)
        except BaseException:
            self.__dict__.pop(ATTRIBUTE, None)
            raise

    def bootstrap_inner_in_session(self: threading.Thread) -> None:
        handoff = self.__dict__.pop(ATTRIBUTE, None)
        scope = None
        with contextlib.suppress(Exception):
            if handoff is not None:
                scope = _native.handoff_enter(handoff)
            else:
                _native.thread_bootstrap()
        try:
            bootstrap_inner(self)
        finally:
            if scope is not None:
                with contextlib.suppress(Exception):
                    _native.handoff_exit(scope)

    for wrapper, original in ((start_in_session, start), (bootstrap_inner_in_session, bootstrap_inner)):
        wrapper.__name__ = original.__name__
        wrapper.__qualname__ = original.__qualname__
        wrapper.__doc__ = original.__doc__
        wrapper.__ferrotrace__ = True  # type: ignore[attr-defined]
    thread_class.start = start_in_session
    thread_class._bootstrap_inner = bootstrap_inner_in_session
