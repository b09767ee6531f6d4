"""Configuration, exit and fork handling shared by the API, `ferrotrace.auto` and the CLI."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ferrotrace import _native, _notes, _settings

logger = logging.getLogger("ferrotrace")

#: Set by `ferrotrace run`: the pid of the process the user launched (others are children).
MAIN_PID_VAR = "FERROTRACE__MAIN_PID"
#: This process runs under `ferrotrace run` (read once: the program may change os.environ).
_RUN_MAIN_PID = os.environ.get(MAIN_PID_VAR)

_lock = threading.Lock()
_hooks_registered = False
_exit_hook_registered = False
_previous_thread_profile: Any = None
_thread_hook_set = False
#: Run once, at the first configuration (set by the package: what patches the program's
#: modules, kept out of this module's imports).
on_first_configure: list[Callable[[], None]] = []
#: The settings given to `configure()` in this process (what a spawned worker is given).
_given: dict[str, Any] = {}
#: The process `configure_worker` last prepared.
_worker_pid: int | None = None
#: (pid, seconds) of FERROTRACE_SHUTDOWN_TIMEOUT_MS, read once per process.
_timeout: tuple[int, float] | None = None
#: Diagnostics raised while no configuration (so no meta record) exists.
_pending: list[str] = []
#: Why this process is not traced, once tracing could not start.
_untraced: str | None = None


def under_run() -> bool:
    """This process was started by `ferrotrace run` (or by a program it runs)."""
    return _RUN_MAIN_PID is not None


def _is_top() -> bool:
    return str(os.getpid()) == _RUN_MAIN_PID


def diagnose(messages: list[str]) -> None:
    """Reports problems the program must not see. They go in this process's `meta` record;
    outside `ferrotrace run` each is also one warning on the `ferrotrace` logger, while under
    `run` nothing is printed: the top process's summary counts and shows them."""
    if not messages:
        return
    messages = [_settings.text(str(m)) for m in messages]
    stored = _native.add_diagnostics(messages)
    if not under_run():
        for message in messages:
            logger.warning("ferrotrace: %s", message)
    elif not stored:
        _pending.extend(messages)


def not_traced(reason: str) -> None:
    """Tracing could not start in this process: say so once, as `diagnose` does (the top
    process's summary lists it among the processes not traced)."""
    global _untraced
    _untraced = _settings.text(str(reason))
    message = _disabled_message()
    if not under_run():
        logger.warning("ferrotrace: %s", message)
    with contextlib.suppress(Exception):  # nothing may reach the program
        _native.add_diagnostics([message])


def _disabled_message() -> str:
    return f"tracing disabled: {_untraced}"


def configure(kwargs: Mapping[str, Any], *, lenient: bool, own_output: bool = False) -> list[str]:
    """Validates and applies settings; strict mode raises ValueError, lenient mode warns.
    A process under `ferrotrace run` other than the one the user launched, or a worker
    (`own_output`), writes to its own output file (the pid added to the name)."""
    global _given
    output_pid = os.getpid() if own_output or (under_run() and not _is_top()) else None
    with _lock:
        _settings.describe_interpreter()
        warnings = _native.configure(
            _settings.normalize(kwargs), _settings.environment(), lenient, output_pid
        )
        _given = dict(kwargs)
        _register_process_hooks()
    diagnose(warnings)
    return warnings


def given_settings() -> Mapping[str, Any]:
    """The settings given to `configure()` in this process (not those of the environment)."""
    return _given


def configure_worker(settings: Mapping[str, Any]) -> None:
    """In a process that runs work handed over by another: configures from `settings` (the
    other's) and the environment, leniently, with its own output file, unless configured;
    it exports everything when the worker leaves, by SIGTERM (as pools stop theirs) or by
    os._exit after multiprocessing's finalizers."""
    global _worker_pid
    if not _native.is_configured():
        configure(settings, lenient=True, own_output=True)
    if _worker_pid != os.getpid():
        _worker_pid = os.getpid()
        if "multiprocessing.util" in sys.modules:
            _flush_at_worker_exit(None)
        else:
            _native.sigterm_install()


def shutdown_timeout() -> float:
    """FERROTRACE_SHUTDOWN_TIMEOUT_MS in seconds (read once per process)."""
    global _timeout
    pid = os.getpid()
    if _timeout is None or _timeout[0] != pid:
        _timeout = (pid, _native.stats().get("shutdown_timeout_ms", 5000) / 1000.0)
    return _timeout[1]


def ensure_configured() -> None:
    """Configures from the environment (strictly) if nothing configured ferrotrace yet."""
    if not _native.is_configured():
        configure({}, lenient=False)


def configure_if_needed() -> None:
    """Configures leniently from the environment if nothing configured ferrotrace yet (a
    middleware wired by hand): an invalid setting is a diagnostic, never an exception."""
    try:
        if not _native.is_configured():
            configure({}, lenient=True)
    except Exception as exc:  # the application must start regardless
        not_traced(str(exc))


def _register_process_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    register_exit_hook()
    for install in on_first_configure:
        install()
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
    """A forked child exports to its own file (only the process `ferrotrace run` started
    prints the summary: see `_is_top`)."""
    _native.after_fork_child()


def _flush_at_worker_exit(token: object) -> None:
    """In a multiprocessing child: shut down (export everything) when the child exits, by
    multiprocessing's finalizers before os._exit or by SIGTERM (pools terminate theirs)."""
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, _at_exit, exitpriority=0)
    _native.sigterm_install()
    if token is not None:  # forked: the calls open in the parent never return here
        _native.disown_inherited_calls()


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
    diagnose(["no free sys.monitoring tool id; exception types are not recorded"])


def start_process_session(tag: str, attrs: Mapping[str, str] | None = None) -> _native.Session:
    """Starts the process-wide session, followed into threads started from now on."""
    global _previous_thread_profile, _thread_hook_set
    traceparent = os.environ.get("TRACEPARENT")
    tracestate = os.environ.get("TRACESTATE")
    session = _native.session_start(
        _settings.text(tag),
        [(_settings.text(str(k)), _settings.text(str(v))) for k, v in (attrs or {}).items()],
        None if traceparent is None else _settings.text(traceparent),
        True,
        None if tracestate is None else _settings.text(tracestate),
    )
    if session.sampled and _native.backend_name() == "setprofile":
        # New threads get the hook from `_handoff.threads`; a thread profiler of the
        # program's own is chained instead.
        _previous_thread_profile = getattr(threading, "_profile_hook", None)
        if _previous_thread_profile is not None:
            threading.setprofile(_thread_profile)
        _thread_hook_set = True
    return session


_signal_wrapped = False


def keep_sigterm_flush() -> None:
    """Once the native SIGTERM handler is installed: a program that later puts back the
    default disposition (`signal.signal(SIGTERM, SIG_DFL)`; uvicorn does, then re-raises the
    SIGTERM it handled gracefully) gets the handler back, so that its death by SIGTERM still
    exports first. `signal.signal` is wrapped for that; what it does and returns, and what
    `signal.getsignal` says, are unchanged."""
    global _signal_wrapped
    import signal

    if _signal_wrapped:
        return
    _signal_wrapped = True
    original = signal.signal

    def signal_(signalnum: Any, handler: Any, /) -> Any:
        previous = original(signalnum, handler)
        if signalnum == signal.SIGTERM and handler == signal.SIG_DFL:
            with contextlib.suppress(Exception):
                _native.sigterm_reclaim()
        return previous

    signal_.__name__ = original.__name__
    signal_.__qualname__ = original.__qualname__
    signal_.__doc__ = original.__doc__
    signal.signal = signal_


def register_exit_hook() -> None:
    """Exports everything at interpreter exit; under `ferrotrace run` the top process then
    prints the summary and every other process leaves its notes for it."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(_at_exit)


def _thread_profile(frame: Any, event: str, arg: Any) -> None:
    """`threading.setprofile` target while a process-wide session runs (setprofile backend).

    On a new thread's first event: puts back the thread profiler that was set before
    ferrotrace (which gets this event too), then installs ferrotrace's hook, which passes
    every later event on to that profiler."""
    previous = _previous_thread_profile
    sys.setprofile(previous)
    if previous is not None:
        previous(frame, event, arg)
    _native.thread_bootstrap()


def shutdown(timeout: float | None = None) -> bool:
    """Ends the process-wide session and exports everything, within the timeout."""
    if timeout is None:
        timeout = _native.stats().get("shutdown_timeout_ms", 5000) / 1000.0
    global _thread_hook_set
    if _thread_hook_set:
        _thread_hook_set = False
        thread_hook = getattr(threading, "_profile_hook", None)
        if thread_hook is _thread_profile:
            threading.setprofile(_previous_thread_profile)
        elif thread_hook is not _previous_thread_profile:
            _note_thread_hook_replaced(thread_hook)
    return _native.shutdown(timeout)


def _note_thread_hook_replaced(thread_hook: Any) -> None:
    """Says once that `threading.setprofile` was called after ferrotrace's: threads started
    since then were not traced (ferrotrace leaves the other hook in place)."""
    if thread_hook is None:
        name = "threading.setprofile(None)"
    else:
        name = getattr(thread_hook, "__qualname__", type(thread_hook).__qualname__)
        name = f"threading.setprofile({getattr(thread_hook, '__module__', '')}.{name})"
    _native.diagnostic(
        f"{name} replaced ferrotrace's hook for new threads; threads started after that were not traced",
        True,
    )


def _at_exit() -> None:
    done, failure = False, None
    try:
        done = shutdown()
    except Exception as exc:  # never let tracing change the program's exit
        failure = f"shutdown failed: {exc}"
    _report(done, failure)


def _report(done: bool, failure: str | None) -> None:
    """After the final export: outside `ferrotrace run` a failure is one warning; under it
    the top process prints the run's summary and every other process leaves its notes."""
    if not under_run():
        if failure:
            logger.warning("ferrotrace: %s", failure)
        return
    try:
        stats = _native.stats()
        diagnostics = [*stats.get("diagnostics", ()), *_pending]
        if _untraced:  # listed among the processes not traced
            diagnostics = [d for d in diagnostics if d != _disabled_message()]
        if failure:
            diagnostics.append(failure)
        if not _is_top():
            _notes.write(_notes.UNTRACED, [_untraced] if _untraced else [])
            _notes.write(_notes.DIAGNOSTICS, diagnostics)
            return
        notes = _notes.collect(exclude_pid=os.getpid())
        pid = os.getpid()
        untraced = ([(pid, _untraced)] if _untraced else []) + notes[_notes.UNTRACED]
        diagnosed = [(pid, d) for d in diagnostics] + notes[_notes.DIAGNOSTICS]
        top = _native.top_functions(10) if done and not _untraced else []
        print_summary(stats, top, done, untraced, diagnosed)
    except Exception:  # never let tracing change the program's exit
        pass


def _after_sigterm_flush(done: bool) -> None:
    """Called natively after a SIGTERM flushed the trace, just before the process dies."""
    _report(done, None)


#: Lines of each list the summary shows.
_SUMMARY_LINES = 10


def print_summary(
    stats: Mapping[str, Any],
    top: list[tuple[str, str, int, int, int]],
    done: bool,
    untraced: list[tuple[int, str]] = (),  # type: ignore[assignment]
    diagnostics: list[tuple[int, str]] = (),  # type: ignore[assignment]
) -> None:
    """The end-of-run summary: spans, drops, processes not traced and diagnostics of every
    process of the run, top functions, the file written."""
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
    for items, one, many in (
        (untraced, "process not traced", "processes not traced"),
        (diagnostics, "diagnostic (in the meta records)", "diagnostics (in the meta records)"),
    ):
        if not items:
            continue
        print(f"ferrotrace: {len(items)} {one if len(items) == 1 else many}:", file=out)
        for p, line in items[:_SUMMARY_LINES]:
            print(f"  pid {p}: {line}", file=out)
        if len(items) > _SUMMARY_LINES:
            print(f"  ... and {len(items) - _SUMMARY_LINES} more", file=out)
    if top:
        print("ferrotrace: top functions by total time", file=out)
        print(f"  {'total ms':>10} {'self ms':>10} {'calls':>8}  function", file=out)
        for module, qualname, calls, total_ns, self_ns in top:
            name = f"{module}.{qualname}" if module else qualname
            print(f"  {total_ns / 1e6:>10.3f} {self_ns / 1e6:>10.3f} {calls:>8}  {name}", file=out)
