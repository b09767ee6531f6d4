"""Put first on PYTHONPATH by `ferrotrace run`: traces this interpreter and every Python
child process it starts, then hands over to any other `sitecustomize` on the path.

Any Python may run this, with or without ferrotrace installed (2.7 included), so it is
written for all of them and imports nothing beyond what the interpreter has already loaded.
An interpreter that cannot load ferrotrace runs untraced and prints nothing: it leaves a
one-line note in the run's notes directory (FERROTRACE__NOTES), which the top process
counts in its summary (ferrotrace/_notes.py reads them).
"""

import os
import sys


def _chain_next_sitecustomize():
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        import importlib.machinery
        import importlib.util
    except ImportError:  # Python 2
        import imp

        try:
            found = imp.find_module("sitecustomize", rest)
        except ImportError:
            return
        try:
            sys.modules["sitecustomize"] = imp.load_module("sitecustomize", *found)
        finally:
            if found[0] is not None:
                found[0].close()
        return
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _untraced_reason(exc):
    version = ".".join(str(v) for v in sys.version_info[:3])
    return "python {} ({}) cannot load ferrotrace: {}: {}".format(
        version, sys.executable, type(exc).__name__, exc
    )


def _note(reason):
    """Leaves `<pid>.untraced` in the notes directory; never raises."""
    notes = os.environ.get("FERROTRACE__NOTES")
    if not notes:
        return
    try:
        if not isinstance(reason, bytes):
            reason = reason.encode("utf-8", "backslashreplace")
        path = os.path.join(notes, "{}.untraced".format(os.getpid()))
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b" ".join(reason.splitlines()) + b"\n")
        finally:
            os.close(fd)
        os.rename(path + ".tmp", path)
    except Exception:
        pass


def _summary_untraced(reason):
    """The top process could not load ferrotrace: its summary is this one line (and the
    count of the other processes that left a note), printed at exit; the notes go."""
    notes = os.environ.get("FERROTRACE__NOTES")
    others = 0
    try:
        if notes:
            for name in os.listdir(notes):
                if name.endswith(".untraced"):
                    others += 1
                os.unlink(os.path.join(notes, name))
            os.rmdir(notes)
    except Exception:
        pass
    try:
        more = ""
        if others:
            more = "; {} other process{} not traced".format(others, "es" if others > 1 else "")
        sys.stderr.write("ferrotrace: nothing traced: {}{}\n".format(reason, more))
        sys.stderr.flush()
    except Exception:
        pass


def _start():
    try:
        import ferrotrace.auto  # noqa: F401
    except Exception as exc:
        if "subinterpreter" in str(exc):
            # A subinterpreter of a traced process (PyO3 modules load only in the main
            # interpreter): it runs untraced, and its process is not an untraced process.
            return
        reason = _untraced_reason(exc)
        if os.environ.get("FERROTRACE__MAIN_PID") == str(os.getpid()):
            import atexit

            atexit.register(_summary_untraced, reason)
        else:
            _note(reason)


try:
    _start()
finally:
    _chain_next_sitecustomize()
