"""Turns Python values into the native configuration and knows the interpreter's layout."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections.abc import Mapping
from typing import Any

from ferrotrace import _native


def _as_setting(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return str(value)


def normalize(kwargs: Mapping[str, Any]) -> dict[str, str]:
    """`configure()` keyword arguments as setting name -> text (None means unset)."""
    return {k.upper(): _as_setting(v) for k, v in kwargs.items() if v is not None}


def default_prefixes() -> list[str]:
    """Directories whose code is excluded by default: the standard library and site-packages,
    each as given and with symbolic links resolved (code objects may carry either form)."""
    paths = sysconfig.get_paths()
    found = {paths.get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        found.update(site.getsitepackages())
        found.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - virtualenv's legacy site module
        pass
    found.add(os.path.dirname(os.path.abspath(__file__)))  # ferrotrace itself and its bootstrap
    forms = {f(p) for p in found if p for f in (os.path.abspath, os.path.realpath)}
    return sorted(os.path.join(p, "") for p in forms)


def environment() -> dict[str, str]:
    """A snapshot of the process environment."""
    return dict(os.environ)


def describe_interpreter() -> None:
    """Hands the interpreter facts the native filters need to `_native`."""
    _native.set_environment(
        default_prefixes(),
        os.getcwd(),
        ".".join(str(v) for v in sys.version_info[:3]),
    )
