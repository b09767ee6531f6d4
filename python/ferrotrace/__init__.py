"""ferrotrace: function-level tracing for CPython with a native Rust core.

import ferrotrace
ferrotrace.configure(include=r"^myapp\\.", output="trace.jsonl")
with ferrotrace.session("checkout", attrs={"tier": "gold"}) as s:
    ...
ferrotrace.flush(timeout=5.0)
"""

from __future__ import annotations

from typing import Any

from ferrotrace import _handoff, _lifecycle, _native, instrumentation
from ferrotrace._native import Session
from ferrotrace._session import session, trace
from ferrotrace.instrumentation import instrument, uninstrument

__version__: str = _native.__version__

# Threads, executors and processes started once ferrotrace is configured carry the session.
_lifecycle.on_first_configure.append(_handoff.install)

__all__ = [
    "Session",
    "__version__",
    "configure",
    "current_session",
    "flush",
    "instrument",
    "session",
    "shutdown",
    "stats",
    "trace",
    "uninstrument",
]


def configure(**settings: Any) -> None:
    """Sets ferrotrace's configuration; keyword names are the settings' names in lower case
    (`include`, `capture`, `output`, `sample_rate`, ...). Arguments win over `FERROTRACE_*`
    variables, which win over defaults. Raises ValueError naming each invalid setting, its
    value and the rule it breaks."""
    _lifecycle.configure(settings, lenient=False)


def current_session() -> Session | None:
    """The session in effect here (this task or thread, else the process-wide one)."""
    return _native.current_session()


def flush(timeout: float = 5.0) -> bool:
    """Waits until everything recorded so far is exported, at most `timeout` seconds.
    Returns False if the deadline passed first."""
    return _native.flush(timeout)


def stats() -> dict[str, Any]:
    """Counters: recorded, exported, dropped (and by reason), export errors, bytes written,
    sessions, per-code-object decisions, functions seen, the output path, and the HTTP
    clients and web frameworks instrumented in this process (`instrumented`)."""
    return {**_native.stats(), "instrumented": instrumentation.instrumented()}


def shutdown(timeout: float | None = None) -> bool:
    """Stops tracing and exports everything, with the final `meta` record; waits at most
    `timeout` seconds (default: FERROTRACE_SHUTDOWN_TIMEOUT_MS). Runs at interpreter exit."""
    return _lifecycle.shutdown(timeout)
