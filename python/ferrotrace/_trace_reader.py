"""Reads JSONL traces as one stream of records, in bounded memory.

A trace may be given as files, directories (their `*.jsonl` files, as `ferrotrace run`
writes one per process) or glob patterns; all of them are read as one run, one line at a
time. `ferrotrace report`, `report --html` and `convert` all read through here.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any


class TraceError(Exception):
    """A trace that cannot be read: no such file, nothing matched, not readable."""


def expand(specs: Iterable[str]) -> list[str]:
    """The files named by `specs`: a directory gives its `*.jsonl` files, a pattern with
    `*`, `?` or `[` its matches (sorted), anything else itself. Raises TraceError when a
    spec names nothing."""
    files: list[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(glob.glob(os.path.join(glob.escape(spec), "*.jsonl")))
            missing = "no *.jsonl file in this directory"
        elif any(c in spec for c in "*?[") and not os.path.exists(spec):
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            missing = "no file matches"
        else:
            found = [spec] if os.path.isfile(spec) else []
            missing = "no such file"
        if not found:
            raise TraceError(f"{spec}: {missing}")
        files.extend(p for p in found if p not in files)
    return files


def records(files: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Every record of `files`, in file order, one line in memory at a time. A line that is
    not a JSON object (a cut-off last line of a killed process) is skipped."""
    loads = json.loads
    for path in files:
        for line in _lines(path):
            try:
                record = loads(line)
            except ValueError:
                continue
            if type(record) is dict:
                yield record


#: Where a span's optional members start (previews, mostly): `heads` parses a span line only
#: up to the first of them. Such text cannot occur inside a JSON string (a quote in a string is
#: escaped), and every member before them is a scalar.
_TAIL_KEYS = (',"args":', ',"return":', ',"exception":', ',"unfinished":')


def heads(files: Iterable[str]) -> Iterator[tuple[dict[str, Any], str]]:
    """Like `records`, but a span comes without its optional members (`args`, `return`,
    `exception`, `unfinished`), which are most of its bytes and most of the parsing time;
    each record comes with its line, for the few a reader wants whole (`json.loads(line)`)."""
    loads = json.loads
    for path in files:
        for line in _lines(path):
            text = line
            if line.startswith('{"v":1,"type":"span"'):
                cut = min((i for i in (line.find(k, 40) for k in _TAIL_KEYS) if i > 0), default=-1)
                if cut > 0:
                    text = line[:cut] + "}"
            try:
                record = loads(text)
            except ValueError:
                continue
            if type(record) is dict:
                yield record, line


def _lines(path: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from exc


def function_name(span: dict[str, Any]) -> str:
    """`module.qualname` of a span (the qualname alone without a module)."""
    module = span.get("module")
    return f"{module}.{span['qualname']}" if module else span["qualname"]


def start_ns(record: dict[str, Any]) -> int:
    """`start_unix_ns` as an int (the JSONL writes integers above 2^53 as strings)."""
    return int(record.get("start_unix_ns") or 0)
