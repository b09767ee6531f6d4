"""HTTP client instrumentation (requests, httpx, urllib3, aiohttp and urllib), and the
switch for the web framework integrations (Flask, Django, Starlette/FastAPI: see
`ferrotrace.integrations`).

Inside a sampled session every request the application makes gives one `http` record (a
CLIENT span) whose parent is the recorded call that made it, and carries a `traceparent`
naming it; in an unsampled session the request carries the session's context with the
sampled flag off. Outside any session the call goes through untouched.

A library is instrumented when it is imported (already imported: at once): ferrotrace never
imports a library the program does not use, and one that is not installed is skipped
without a word. The library's answers, streams and exceptions are never changed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from ferrotrace._on_import import when_imported
from ferrotrace.instrumentation import _aiohttp, _common, _httpx, _requests, _urllib, _urllib3
from ferrotrace.integrations import _django, _flask, _starlette

#: Library name -> its instrumentation module (`MODULE`, `patch()`).
_LIBRARIES: dict[str, ModuleType] = {
    "requests": _requests,
    "httpx": _httpx,
    "urllib3": _urllib3,
    "aiohttp": _aiohttp,
    "urllib": _urllib,
    "flask": _flask,
    "django": _django,
    "starlette": _starlette,
}

#: Every library name `instrument()` accepts.
LIBRARIES: tuple[str, ...] = tuple(_LIBRARIES)

#: The web frameworks among them (served requests).
FRAMEWORKS: tuple[str, ...] = ("flask", "django", "starlette")

_lock = threading.RLock()
#: Instrumented libraries -> the (owner, attribute, original) to put back.
_patched: dict[str, list[tuple[Any, str, Any]]] = {}
#: Libraries wanted but not imported yet.
_waiting: set[str] = set()
#: Libraries found unsupported (warned once; not retried).
_unsupported: set[str] = set()


def _apply(library: str) -> None:
    """Instruments `library`, whose module is imported; never raises."""
    with _lock:
        if library in _patched or library in _unsupported:
            return
        _waiting.discard(library)
        try:
            restore = _LIBRARIES[library].patch()
        except Exception as exc:
            _common.unsupported(library, "", f"instrumenting it failed: {exc}")
            restore = None
        if restore is None:
            _unsupported.add(library)
        else:
            _patched[library] = restore


def _apply_if_waiting(library: str) -> None:
    """Instruments `library` on its import, unless `uninstrument()` came first."""
    if library in _waiting:
        _apply(library)


def instrument(
    requests: bool = True,
    httpx: bool = True,
    urllib3: bool = True,
    aiohttp: bool = True,
    urllib: bool = True,
    flask: bool = True,
    django: bool = True,
    starlette: bool = True,
) -> None:
    """Instruments the HTTP client libraries and web frameworks given True: now if imported,
    else when they are imported. Calling it again is harmless."""
    wanted = {
        "requests": requests,
        "httpx": httpx,
        "urllib3": urllib3,
        "aiohttp": aiohttp,
        "urllib": urllib,
        "flask": flask,
        "django": django,
        "starlette": starlette,
    }
    enable([lib for lib, on in wanted.items() if on])


def enable(libraries: Iterable[str]) -> None:
    """`instrument()` for a list of library names (those of `FERROTRACE_INSTRUMENT`)."""
    with _lock:
        now = []
        for lib in libraries:
            if lib not in _LIBRARIES or lib in _patched:
                continue
            if _LIBRARIES[lib].MODULE in sys.modules:
                now.append(lib)
            elif lib not in _waiting:
                _waiting.add(lib)
                when_imported(_LIBRARIES[lib].MODULE, lambda _module, lib=lib: _apply_if_waiting(lib))
    for lib in now:
        _apply(lib)


def uninstrument() -> None:
    """Undoes `instrument()`: every patched method is put back, and libraries imported later
    are left alone."""
    with _lock:
        _waiting.clear()
        for restore in _patched.values():
            for owner, name, original in reversed(restore):
                setattr(owner, name, original)
        _patched.clear()
        _unsupported.clear()


def instrumented() -> list[str]:
    """The libraries instrumented now."""
    with _lock:
        return list(_patched)


def available() -> dict[str, str | None]:
    """Every instrumentable library or framework -> its installed version (None: not
    installed), found from the installed distributions without importing anything."""
    from importlib import metadata

    distributions = {"urllib": None, "starlette": "starlette", "django": "Django", "flask": "Flask"}
    found: dict[str, str | None] = {}
    for lib in _LIBRARIES:
        dist = distributions.get(lib, lib)
        if dist is None:
            found[lib] = "stdlib"
            continue
        try:
            found[lib] = metadata.version(dist)
        except Exception:
            found[lib] = None
    return found
