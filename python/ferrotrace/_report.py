"""`ferrotrace report`: top functions by total and self time, sessions and losses."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def load(path: str) -> list[dict[str, Any]]:
    """Every record of a JSONL trace (a truncated last line is skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def main(path: str, top: int) -> int:
    """Prints the report; returns the exit status."""
    try:
        records = load(path)
    except OSError as exc:
        print(f"ferrotrace report: {exc}", file=sys.stderr)
        return 2
    spans = [r for r in records if r.get("type") == "span"]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_id = {s["span_id"]: s for s in spans}
    for s in spans:
        name = f"{s['module']}.{s['qualname']}" if s["module"] else s["qualname"]
        t = totals[name]
        t[0] += 1
        t[2] += s.get("self_ns", 0)
        if not _inside_same_function(s, by_id):
            t[1] += s["duration_ns"]
    sessions = [r for r in records if r.get("type") == "session_start"]
    metas = [r for r in records if r.get("type") == "meta"]
    print(f"{path}: {len(spans)} spans, {len(sessions)} sessions")
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
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]
    for name, (calls, total, self_ns) in ranked:
        print(f"{total / 1e6:>10.3f} {self_ns / 1e6:>10.3f} {calls:>8}  {name}")
    return 0


def _inside_same_function(span: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> bool:
    parent = by_id.get(span.get("parent_span_id") or "")
    while parent is not None:
        if parent["module"] == span["module"] and parent["qualname"] == span["qualname"]:
            return True
        parent = by_id.get(parent.get("parent_span_id") or "")
    return False
