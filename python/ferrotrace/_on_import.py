"""Runs a callback once a module is imported (at once if it already is), without importing
it: a finder placed first on `sys.meta_path` wraps the module's `exec_module`. Used by the
HTTP and framework instrumentation and by `_handoff` (threads, executors, processes)."""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

_lock = threading.RLock()
#: Module name -> callbacks waiting for its import.
_waiting: dict[str, list[Callable[[ModuleType], None]]] = {}


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Calls `callback(module)` once `name` is imported. A callback never raises into the
    importer: the ones here catch their own errors."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    with _lock:
        _waiting.setdefault(name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._finding = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _waiting or getattr(self._finding, "name", None) == fullname:
            return None
        self._finding.name = fullname
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._finding.name = None
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            loader.__dict__.pop("exec_module", None)
            original(module)
            with _lock:
                callbacks = _waiting.pop(fullname, [])
            for callback in callbacks:
                callback(module)

        try:
            loader.exec_module = exec_module
        except Exception:
            return spec
        return spec


_finder = _Finder()
