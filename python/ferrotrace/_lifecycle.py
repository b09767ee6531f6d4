"""Configuration, exit and fork handling shared by the API, `ferrotrace.auto` and the CLI."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from ferrotrace import _native, _settings

logger = logging.getLogger("ferrotrace")

_lock = threading.Lock()
_hooks_registered = False
_exit_summary = False
_previous_thread_profile: Any = None


def configure(kwargs: Mapping[str, Any], *, lenient: bool) -> list[str]:
    """Validates and applies settings; strict mode raises ValueError, lenient mode warns."""
    with _lock:
        _settings.describe_interpreter()
        warnings = _native.configure(_settings.normalize(kwargs), _settings.environment(), lenient)
        _register_process_hooks()
    for message in warnings:
        logger.warning("ferrotrace: %s", message)
    return warnings


def ensure_configured() -> None:
    """Configures from the environment (strictly) if nothing configured ferrotrace yet."""
    if not _native.is_configured():
        configure({}, lenient=False)


def _register_process_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_native.after_fork_parent,
            after_in_child=_after_fork_child,
        )
    _register_unwind_callback()


class _ForkToken:
    """Keeps ferrotrace's entry in multiprocessing's after-fork registry (held weakly) alive."""


_fork_token: _ForkToken | None = None


def _before_fork() -> None:
    """Parks ferrotrace's threads until the fork is done (CPython 3.12+ warns about forking a
    multi-threaded process; the program's own threads are its business).

    multiprocessing's fork children leave by os._exit, which skips atexit; once
    multiprocessing is in use, each of them gets a finalizer that exports its spans.
    Registered here, not at import, so that ferrotrace never imports multiprocessing."""
    global _fork_token
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _fork_token is None:
        _fork_token = _ForkToken()
        util.register_after_fork(_fork_token, _flush_at_worker_exit)
    _native.before_fork()


def _after_fork_child() -> None:
    """A forked child exports to its own file; only the process `ferrotrace run` started
    prints the summary."""
    global _exit_summary
    _exit_summary = False
    _native.after_fork_child()


def _flush_at_worker_exit(_token: object) -> None:
    """In a multiprocessing child: shut down (export everything) when the child exits."""
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, _at_exit, exitpriority=0)


def _register_unwind_callback() -> None:
    """On CPython 3.12+, ferrotrace takes a free sys.monitoring tool id (never PROFILER_ID,
    so cProfile and others keep theirs). The monitoring backend registers its callbacks
    there; under the setprofile backend, which cannot see exceptions, a PY_UNWIND callback
    shows them to the profile hook. Either way the events are on only while a sampled
    session runs."""
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return
    for tool in (3, 4):
        if monitoring.get_tool(tool) is None:
            monitoring.use_tool_id(tool, "ferrotrace")
            if _native.backend_name() == "monitoring":
                _native.monitoring_install(tool)
                return
            monitoring.register_callback(tool, monitoring.events.PY_UNWIND, _native.on_unwind)
            _native.monitoring_install_unwind(tool)
            return
    logger.warning("ferrotrace: no free sys.monitoring tool id; exception types are not recorded")


def start_process_session(tag: str, attrs: Mapping[str, str] | None = None) -> _native.Session:
    """Starts the process-wide session, followed into threads started from now on."""
    global _previous_thread_profile
    session = _native.session_start(
        tag,
        [(str(k), str(v)) for k, v in (attrs or {}).items()],
        os.environ.get("TRACEPARENT"),
        True,
    )
    if session.sampled and _native.backend_name() == "setprofile":
        _previous_thread_profile = getattr(threading, "_profile_hook", None)
        threading.setprofile(_native.thread_bootstrap)
    return session


def request_exit_summary() -> None:
    """Prints a short summary to stderr after the final export (used by `ferrotrace run`)."""
    global _exit_summary
    _exit_summary = True


def shutdown(timeout: float | None = None) -> bool:
    """Ends the process-wide session and exports everything, within the timeout."""
    if timeout is None:
        timeout = _native.stats().get("shutdown_timeout_ms", 5000) / 1000.0
    if getattr(threading, "_profile_hook", None) is _native.thread_bootstrap:
        threading.setprofile(_previous_thread_profile)
    return _native.shutdown(timeout)


def _at_exit() -> None:
    try:
        done = shutdown()
        if _exit_summary:
            print_summary(_native.stats(), _native.top_functions(10) if done else [], done)
    except Exception as exc:  # never let tracing change the program's exit
        logger.warning("ferrotrace: shutdown failed: %s", exc)


def _after_sigterm_flush(done: bool) -> None:
    """Called natively after a SIGTERM flushed the trace, just before the process dies."""
    if _exit_summary:
        print_summary(_native.stats(), _native.top_functions(10) if done else [], done)


def print_summary(stats: Mapping[str, Any], top: list[tuple[str, str, int, int, int]], done: bool) -> None:
    """The end-of-run summary: spans, drops, top functions, the file written."""
    out = sys.stderr
    dropped = stats.get("dropped", 0)
    reasons = ", ".join(
        f"{stats[key]} {label}"
        for key, label in (
            ("dropped_queue_full", "queue full"),
            ("dropped_export_error", "export failed"),
            ("dropped_after_shutdown", "after shutdown"),
        )
        if stats.get(key)
    )
    print(
        f"ferrotrace: {stats.get('exported', 0)} spans written, {dropped} dropped"
        f"{f' ({reasons})' if reasons else ''}"
        f"{'' if done else ' (shutdown timed out)'} -> {stats.get('output', '?')}",
        file=out,
    )
    for cause in stats.get("export_error_causes", []):
        print(f"ferrotrace: export error: {cause}", file=out)
    if top:
        print("ferrotrace: top functions by total time", file=out)
        print(f"  {'total ms':>10} {'self ms':>10} {'calls':>8}  function", file=out)
        for module, qualname, calls, total_ns, self_ns in top:
            name = f"{module}.{qualname}" if module else qualname
            print(f"  {total_ns / 1e6:>10.3f} {self_ns / 1e6:>10.3f} {calls:>8}  {name}", file=out)
