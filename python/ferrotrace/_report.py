"""`ferrotrace report`: top functions by total and self time, sessions and losses, read in
one streaming pass (bounded memory, whatever the trace's size)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ferrotrace import _native, _trace_reader


class FunctionTotals:
    """Calls, total and self time per function, fed spans in the order the trace holds them
    (a call's children before the call itself).

    A recursive function's total counts its outermost calls only: each open parent keeps,
    per function name, the time of the outermost calls seen below it; when the parent turns
    out to be the same function, those inner calls are taken back out. Memory grows with the
    calls still open and the distinct names below them, not with the trace.
    """

    def __init__(self) -> None:
        #: name -> [calls, total_ns, self_ns]
        self.by_name: dict[str, list[int]] = {}
        self._below: dict[str, dict[str, int]] = {}

    def add(self, span: dict[str, Any]) -> None:
        """Counts one span."""
        name = _trace_reader.function_name(span)
        duration = span.get("duration_ns", 0)
        row = self.by_name.get(name)
        if row is None:
            row = self.by_name[name] = [0, 0, 0]
        row[0] += 1
        row[1] += duration
        row[2] += span.get("self_ns", 0)
        below = self._below.pop(span.get("span_id", ""), None)
        parent = span.get("parent_span_id") or ""
        into = self._below.get(parent)
        if into is None:
            into = self._below[parent] = {}
        if below:
            row[1] -= below.pop(name, 0)
            for other, ns in below.items():
                into[other] = into.get(other, 0) + ns
        into[name] = into.get(name, 0) + duration

    def end_session(self, session_span_id: str) -> None:
        """Forgets what was kept for a session that ended (its calls are all in)."""
        self._below.pop(session_span_id, None)

    def top(self, n: int) -> list[tuple[str, int, int, int]]:
        """The `n` functions with the most total time: (name, calls, total_ns, self_ns)."""
        ranked = sorted(self.by_name.items(), key=lambda kv: -kv[1][1])[:n]
        return [(name, calls, total, self_ns) for name, (calls, total, self_ns) in ranked]


class Summary:
    """What `ferrotrace report` prints, gathered in one pass over the records."""

    def __init__(self) -> None:
        self.functions = FunctionTotals()
        self.spans = 0
        self.sessions = 0
        self.metas: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        """Takes one record of any type."""
        kind = record.get("type")
        if kind == "span":
            self.spans += 1
            self.functions.add(record)
        elif kind == "session_start":
            self.sessions += 1
        elif kind == "session_end":
            self.functions.end_session(record.get("span_id", ""))
        elif kind == "meta":
            self.metas.append(record)


def main(specs: Sequence[str], top: int) -> int:
    """Prints the report of the traces `specs` (files, directories, globs); returns the exit
    status. The files are read natively (`_native.report_summary`, the same rules as
    `_trace_reader.heads` and `Summary`, in a fraction of the time)."""
    try:
        files = _trace_reader.expand(specs)
        spans, sessions, meta_lines, rows = _native.report_summary(files, max(top, 0))
    except _trace_reader.TraceError as exc:
        print(f"ferrotrace report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else exc.strerror
        print(f"ferrotrace report: {exc.filename}: {reason}", file=sys.stderr)
        return 2
    metas = [json.loads(line) for line in meta_lines]
    print(f"{', '.join(files)}: {spans} spans, {sessions} sessions")
    for m in metas:
        print(
            f"  pid {m['pid']}: recorded {m['recorded']}, exported {m['exported']}, dropped {m['dropped']}"
            f" (queue full {m['dropped_queue_full']}), export errors {m['export_errors']}"
        )
        if m.get("capture_overhead_ns"):
            print(
                f"    ferrotrace's own time capturing previews: "
                f"{m['capture_overhead_ns'] / 1e6:.3f} ms (not in any function's self time)"
            )
        for d in m.get("diagnostics", ()):
            print(f"    diagnostic: {d}")
    print(f"\n{'total ms':>10} {'self ms':>10} {'calls':>8}  function")
    for name, calls, total, self_ns in rows:
        print(f"{total / 1e6:>10.3f} {self_ns / 1e6:>10.3f} {calls:>8}  {name}")
    return 0
