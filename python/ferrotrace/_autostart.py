"""Starts the process-wide session for `ferrotrace.auto` and `ferrotrace run`."""

from __future__ import annotations

import os
import sys

from ferrotrace import _lifecycle, _native

#: Set by `ferrotrace run`: the pid of the process the user launched (others are children).
MAIN_PID_VAR = "FERROTRACE__MAIN_PID"

_started = False


def _tag() -> str:
    argv = getattr(sys, "argv", None) or [""]
    return os.path.basename(argv[0]) or "python"


def start() -> None:
    """Configures leniently from the environment and starts the process-wide session."""
    global _started
    if _started:
        return
    _started = True
    try:
        overrides: dict[str, str] = {}
        main_pid = os.environ.get(MAIN_PID_VAR)
        is_child = main_pid is not None and main_pid != str(os.getpid())
        if is_child:
            template = os.environ.get("FERROTRACE_OUTPUT", "ferrotrace.jsonl")
            overrides["output"] = _native.per_process_output(template, os.getpid())
        _lifecycle.configure(overrides, lenient=True)
        _lifecycle.start_process_session(_tag())
        _native.sigterm_install()
        if main_pid is not None and not is_child:
            _lifecycle.request_exit_summary()
    except Exception as exc:  # tracing must never stop the program
        _lifecycle.logger.warning("ferrotrace: tracing disabled: %s", exc)
