"""Starts the process-wide session for `ferrotrace.auto` and `ferrotrace run`."""

from __future__ import annotations

import os
import sys

from ferrotrace import _lifecycle, _native, _settings, instrumentation

#: Set by `ferrotrace run`: the pid of the process the user launched (others are children).
MAIN_PID_VAR = _lifecycle.MAIN_PID_VAR

_started = False


def _module_run(orig_argv: list[str]) -> str | None:
    """The module of `python [options] -m module ...`, from the interpreter's own command
    line; None when it runs no module."""
    i = 1
    while i < len(orig_argv):
        token = orig_argv[i]
        if not token.startswith("-") or token in ("-", "--"):
            return None
        for j, flag in enumerate(token[1:] if not token.startswith("--") else ""):
            rest = token[j + 2 :]
            if flag == "m":
                return rest or (orig_argv[i + 1] if i + 1 < len(orig_argv) else None)
            if flag == "c":
                return None
            if flag in "WX":  # an option with a value: the rest of the token, or the next one
                i += 0 if rest else 1
                break
        i += 1
    return None


def _tag() -> str:
    """The process session's tag: the script's file name, or the module of `python -m`
    (its sys.argv[0] is still "-m" while site runs)."""
    argv = getattr(sys, "argv", None) or [""]
    name = argv[0] if isinstance(argv[0], str) else ""
    if name == "-m":
        name = _module_run(list(getattr(sys, "orig_argv", ()))) or name
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
