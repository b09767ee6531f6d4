"""`ferrotrace report --html`: one self-contained HTML file (data, script and style inline,
nothing fetched) with a flame graph, a timeline per thread, sessions, top functions and a
banner when the trace lost spans.

Built in one streaming pass over the trace (see `_trace_reader`), in bounded memory:

- the flame graph is the call tree aggregated by stack. Spans arrive children first, so each
  call still open keeps the aggregated tree of its finished children, folded into its parent
  when it ends and into its session's tag when the session ends;
- the timeline keeps the `TIMELINE_SPANS` longest calls (the others are shorter than a pixel
  at any but a deep zoom), as their lines, parsed at the end for their previews (cut to
  `DETAIL_CHARS`);
- the sessions list keeps the first `MAX_SESSIONS` sessions (and counts the others).
"""

from __future__ import annotations

import glob
import heapq
import itertools
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ferrotrace import _report, _trace_reader

TIMELINE_SPANS = 60_000
DETAIL_CHARS = 160
MAX_SESSIONS = 5_000
#: Flame graph nodes below this share of the whole are merged away (never a pixel wide).
FLAME_MIN_SHARE = 1e-5

_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_html_report.html")

#: A flame graph node: [total_ns, self_ns, calls, children by name].
Node = list


def _merge(into: dict[str, Node], name: str, node: Node) -> None:
    """Adds `node` (and its subtree) into `into[name]` (without recursion: stacks may be
    deeper than Python's recursion limit)."""
    pending = [(into, name, node)]
    while pending:
        into, name, node = pending.pop()
        mine = into.get(name)
        if mine is None:
            into[name] = node
            continue
        mine[0] += node[0]
        mine[1] += node[1]
        mine[2] += node[2]
        pending.extend((mine[3], child_name, child) for child_name, child in node[3].items())


def _cut(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"


class HtmlReport:
    """Gathers what the page shows, one record at a time."""

    def __init__(self) -> None:
        self.summary = _report.Summary()
        self.roots: dict[str, Node] = {}
        self._open: dict[str, dict[str, Node]] = {}
        self._session_tags: dict[str, str] = {}
        #: Tags of the latest sessions that ended (calls still open at a session's end, such
        #: as the `<module>` of a process session, are written after it).
        self._ended: dict[str, str] = {}
        self.sessions: list[list[Any]] = []
        self.sessions_total = 0
        self.tracks: dict[tuple[int, int], int] = {}
        self.names: dict[str, int] = {}
        self._timeline: list[tuple[int, int, list[Any]]] = []
        self._seq = itertools.count()
        self.t0: int | None = None
        self.t1 = 0

    def _name(self, name: str) -> int:
        index = self.names.get(name)
        if index is None:
            index = self.names[name] = len(self.names)
        return index

    def _track(self, record: dict[str, Any]) -> int:
        key = (record.get("pid", 0), record.get("thread_id", 0))
        index = self.tracks.get(key)
        if index is None:
            index = self.tracks[key] = len(self.tracks)
        return index

    def _time(self, start: int, duration: int) -> None:
        if self.t0 is None or start < self.t0:
            self.t0 = start
        self.t1 = max(self.t1, start + duration)

    def add(self, record: dict[str, Any], line: str) -> None:
        """Takes one record of any type, a span without its previews (see
        `_trace_reader.heads`), with the line it was read from."""
        self.summary.add(record)
        kind = record.get("type")
        if kind == "span":
            self._span(record, line)
        elif kind == "session_start":
            self._session_tags[record.get("span_id", "")] = str(record.get("tag", ""))
        elif kind == "session_end":
            self._session_end(record)

    def _span(self, span: dict[str, Any], line: str) -> None:
        name = _trace_reader.function_name(span)
        duration = span.get("duration_ns", 0)
        node = [duration, span.get("self_ns", 0), 1, self._open.pop(span.get("span_id", ""), None) or {}]
        parent = span.get("parent_span_id") or ""
        into = self._open.get(parent)
        if into is None:
            into = self._open[parent] = {}
        _merge(into, name, node)
        start = _trace_reader.start_ns(span)
        self._time(start, duration)
        full = len(self._timeline) >= TIMELINE_SPANS
        if full and duration <= self._timeline[0][0]:
            return
        # The line stays whole until the end: only the calls still kept then are parsed for
        # their previews.
        entry = [self._track(span), start, duration, span.get("depth", 0), self._name(name), line]
        item = (duration, next(self._seq), entry)
        if full:
            heapq.heapreplace(self._timeline, item)
        else:
            heapq.heappush(self._timeline, item)

    def _session_end(self, end: dict[str, Any]) -> None:
        span_id = end.get("span_id", "")
        # The end's tag is the final one (a request's route is known only once it was routed).
        started = self._session_tags.pop(span_id, "")
        tag = str(end.get("tag") or started)
        self._ended[span_id] = tag
        if len(self._ended) > MAX_SESSIONS:
            del self._ended[next(iter(self._ended))]
        self._close(tag, self._open.pop(span_id, {}))
        self.sessions_total += 1
        start = _trace_reader.start_ns(end)
        self._time(start, end.get("duration_ns", 0))
        if len(self.sessions) < MAX_SESSIONS:
            self._track(end)
            self.sessions.append(
                [tag, end.get("trace_id", ""), self._track(end), start, end.get("duration_ns", 0)]
            )

    def _close(self, tag: str, calls: dict[str, Node]) -> None:
        if not calls:
            return
        node = [sum(n[0] for n in calls.values()), 0, 1, calls]
        _merge(self.roots, tag or "(untagged)", node)

    def finish(self) -> dict[str, Any]:
        """The page's data (call once, after the last record)."""
        for parent, calls in list(self._open.items()):  # sessions that never ended
            tag = self._session_tags.get(parent) or self._ended.get(parent) or "(session not ended)"
            self._close(tag, calls)
        self._open.clear()
        total = sum(n[0] for n in self.roots.values())
        floor = total * FLAME_MIN_SHARE

        # Flat, in pre-order: [parent index, name index, total_ns, self_ns, calls] (a nested
        # form would be as deep as the deepest stack, beyond what JSON encoders recurse).
        flame: list[list[int]] = [[-1, self._name("all"), total, 0, 0]]
        pending = [(0, self.roots)]
        while pending:
            parent, children = pending.pop()
            for name, node in sorted(children.items(), key=lambda kv: kv[1][0]):
                if node[0] >= floor:
                    flame.append([parent, self._name(name), node[0], node[1], node[2]])
                    pending.append((len(flame) - 1, node[3]))
        t0 = self.t0 or 0
        spans = [e for _, _, e in self._timeline]
        for e in spans:
            e[1] -= t0
            whole = json.loads(e.pop())
            e.extend(
                None if d is None else _cut(d)
                for d in (whole.get(k) for k in ("args", "return", "exception"))
            )
        spans.sort(key=lambda e: (e[0], e[1]))
        for s in self.sessions:
            s[3] -= t0
        metas = self.summary.metas
        return {
            "names": list(self.names),
            "flame": flame,
            "tracks": [{"pid": pid, "tid": tid} for pid, tid in self.tracks],
            "spans": spans,
            "spans_total": self.summary.spans,
            "sessions": self.sessions,
            "sessions_total": self.sessions_total,
            "range": max(self.t1 - t0, 1),
            "top": [list(row) for row in self.summary.functions.top(50)],
            "drops": [
                {k: m.get(k, 0) for k in ("pid", "recorded", "exported", "dropped", "dropped_queue_full")}
                for m in metas
                if m.get("dropped", 0)
            ],
            "processes": len(metas),
        }


def write(files: Sequence[str], out: str) -> dict[str, Any]:
    """Reads `files` once and writes the page to `out`; returns the page's data."""
    report = HtmlReport()
    for record, line in _trace_reader.heads(files):
        report.add(record, line)
    data = report.finish()
    data["title"] = ", ".join(os.path.basename(f) for f in files)
    with open(_TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    with open(out, "w", encoding="utf-8") as f:
        head, tail = template.split("/*FERROTRACE_DATA*/", 1)
        f.write(head)
        f.write(payload)
        f.write(tail)
    return data


def run_files(output: str, since: float) -> list[str]:
    """The JSONL files one `ferrotrace run` wrote, started at `since` (a time.time()):
    `output` and its child processes' files (`output` with `.PID` before the extension, or
    `{pid}` filled in), those written since the run started."""
    if "{pid}" in output:
        found = glob.glob(glob.escape(output).replace(glob.escape("{pid}"), "*"))
    else:
        root, ext = os.path.splitext(output)
        found = [output, *glob.glob(f"{glob.escape(root)}.[0-9]*{glob.escape(ext)}")]
    return sorted(p for p in set(found) if os.path.isfile(p) and os.path.getmtime(p) >= since)


def main(specs: Sequence[str], out: str) -> int:
    """`ferrotrace report TRACE... --html OUT`; returns the exit status."""
    try:
        files = _trace_reader.expand(specs)
        if not files:
            raise _trace_reader.TraceError("no trace file written")
        data = write(files, out)
    except _trace_reader.TraceError as exc:
        print(f"ferrotrace report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ferrotrace report: {out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(
        f"ferrotrace: HTML report of {data['spans_total']} calls -> {os.path.abspath(out)}",
        file=sys.stderr,
    )
    return 0
