"""Turns Python values into the native configuration and knows the interpreter's layout."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections.abc import Mapping
from typing import Any

from ferrotrace import _native

#: Environment variables the native configuration reads (the others are never handed over,
#: so a variable holding bytes that are not UTF-8 cannot disturb tracing).
ENV_PREFIXES = ("FERROTRACE_", "OTEL_")


def text(value: str) -> str:
    """`value` made safe to hand to the native core, which takes UTF-8 only: a str holding
    surrogate escapes (bytes from the OS that are not UTF-8, as in argv, paths and the
    environment) becomes those bytes with the stray ones written `\\xNN`."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        try:
            return os.fsencode(value).decode("utf-8", "backslashreplace")
        except UnicodeError:  # a lone surrogate that escapes no byte
            return value.encode("utf-8", "backslashreplace").decode("utf-8")


def as_bytes(value: str) -> bytes:
    """A setting's text as bytes, the way the OS would give it (surrogate escapes become the
    bytes they stand for); the native side rejects what is not valid UTF-8, naming it."""
    try:
        return os.fsencode(value)
    except UnicodeError:
        return value.encode("utf-8", "surrogatepass")


def _as_setting(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return str(value)


def normalize(kwargs: Mapping[str, Any]) -> dict[str, bytes]:
    """`configure()` keyword arguments as setting name -> value bytes (None means unset)."""
    return {text(k).upper(): as_bytes(_as_setting(v)) for k, v in kwargs.items() if v is not None}


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
    return sorted(text(os.path.join(p, "")) for p in forms)


def environment(env: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """The variables the configuration reads (`FERROTRACE_*`, `OTEL_*`) from `env` (default:
    the process environment), values as the bytes the OS holds."""
    source = os.environ if env is None else env
    return {text(k): os.fsencode(v) for k, v in source.items() if k.startswith(ENV_PREFIXES)}


def describe_interpreter() -> None:
    """Hands the interpreter facts the native filters need to `_native`."""
    _native.set_environment(
        default_prefixes(),
        text(os.getcwd()),
        ".".join(str(v) for v in sys.version_info[:3]),
    )
