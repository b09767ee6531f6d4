"""Starts the process-wide session for `ferrotrace.auto` and `ferrotrace run`."""

from __future__ import annotations

import os
import sys

from ferrotrace import _lifecycle, _native, _settings, instrumentation

#: Set by `ferrotrace run`: the pid of the process the user launched (others are children).
MAIN_PID_VAR = _lifecycle.MAIN_PID_VAR

_started = False


def _tag() -> str:
    argv = getattr(sys, "argv", None) or [""]
    name = argv[0] if isinstance(argv[0], str) else ""
    return _settings.text(os.path.basename(name)) or "python"


def start() -> None:
    """Configures leniently from the environment and starts the process-wide session.
    Nothing here may disturb the program: a problem is a diagnostic (see
    `_lifecycle.diagnose`), and one that stops tracing leaves the program untraced."""
    global _started
    if _started:
        return
    _started = True
    try:
        _lifecycle.register_exit_hook()
        _lifecycle.configure({}, lenient=True)
        _lifecycle.start_process_session(_tag())
        if _native.sigterm_install():
            _lifecycle.keep_sigterm_flush()
        instrumentation.enable(_native.http_instrument())
    except Exception as exc:  # tracing must never stop the program
        _lifecycle.not_traced(str(exc))
