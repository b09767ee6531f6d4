"""`ferrotrace convert TRACE... --to chrome|speedscope|perfetto|otlp-json [-o OUT]`: a JSONL
trace in another viewer's format, streamed in bounded memory (the trace is read once, one
record at a time).

- `chrome`: the Trace Event Format (`{"traceEvents": [...]}`) that chrome://tracing,
  Perfetto UI and speedscope open: one complete (`X`) event per call and per session, on a
  track per process and thread. Written as it is read.
- `speedscope`: speedscope's evented profile format, one profile per process and thread, of
  open (`O`) and close (`C`) events in time order. The trace holds calls in the order they
  ended, so the events go through an external sort: runs of `SORT_RUN` events are sorted in
  memory and spilled to a temporary file, then merged.
"""

from __future__ import annotations

import heapq
import json
import os
import struct
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from ferrotrace import _native, _trace_reader

FORMATS = ("chrome", "speedscope", "perfetto", "otlp-json")
#: File name endings of the formats (default output: TRACE.<ending>).
SUFFIXES = {
    "chrome": "chrome.json",
    "speedscope": "speedscope.json",
    "perfetto": "perfetto-trace",
    "otlp-json": "otlp.jsonl",
}
OTLP_JSON_BATCH = 512
SORT_RUN = 250_000
SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"

#: A speedscope event while sorting: track, time (ns), 0 close / 1 open, depth (negated for
#: a close, so deeper calls close first and shallower ones open first at equal times), frame.
_EVENT = struct.Struct("<IqBiI")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def to_chrome(files: Sequence[str], out: IO[str]) -> int:
    """Writes the Chrome trace of `files` to `out`; returns the number of calls."""
    tracks: set[tuple[int, int]] = set()
    calls = 0
    out.write('{"displayTimeUnit":"ns","traceEvents":[')
    first = True
    for r in _trace_reader.records(files):
        kind = r.get("type")
        if kind not in ("span", "session_end"):
            continue
        pid, tid = r.get("pid", 0), r.get("thread_id", 0)
        lines = []
        if (pid, tid) not in tracks:
            tracks.add((pid, tid))
            lines.append(
                _dumps(
                    {
                        "name": "thread_name",
                        "ph": "M",
                        "pid": pid,
                        "tid": tid,
                        "args": {"name": f"thread {tid}"},
                    }
                )
            )
        start = _trace_reader.start_ns(r)
        event: dict[str, Any] = {"ph": "X", "ts": start / 1000, "dur": r.get("duration_ns", 0) / 1000}
        event.update(pid=pid, tid=tid)
        if kind == "span":
            calls += 1
            args = {k: r[k] for k in ("module", "file", "line", "span_id", "trace_id") if k in r}
            args.update({k: r[k] for k in ("args", "return", "exception", "unfinished") if k in r})
            event.update(name=_trace_reader.function_name(r), cat="python", args=args)
        else:
            event.update(
                name=r.get("tag") or "session", cat="session", args={"trace_id": r.get("trace_id", "")}
            )
        lines.append(_dumps(event))
        out.write(("" if first else ",\n") + ",\n".join(lines))
        first = False
    out.write("]}\n")
    return calls


class _Runs:
    """Sorted runs of speedscope events spilled to one temporary file."""

    def __init__(self, spill: IO[bytes]) -> None:
        self.spill = spill
        self.pending: list[tuple[int, int, int, int, int]] = []
        self.bounds: list[tuple[int, int]] = []

    def add(self, event: tuple[int, int, int, int, int]) -> None:
        self.pending.append(event)
        if len(self.pending) >= SORT_RUN:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.pending.sort()
        start = self.spill.tell()
        self.spill.write(b"".join(_EVENT.pack(*e) for e in self.pending))
        self.bounds.append((start, len(self.pending)))
        self.pending = []

    def _read(self, start: int, count: int) -> Iterator[tuple[int, int, int, int, int]]:
        block = 4096
        done = 0
        while done < count:
            n = min(block, count - done)
            self.spill.seek(start + done * _EVENT.size)
            data = self.spill.read(n * _EVENT.size)
            done += n
            yield from _EVENT.iter_unpack(data)

    def merged(self) -> Iterator[tuple[int, int, int, int, int]]:
        self.flush()
        return heapq.merge(*(self._read(s, n) for s, n in self.bounds))


def to_speedscope(files: Sequence[str], out: IO[str], name: str) -> int:
    """Writes the speedscope file of `files` to `out`; returns the number of calls."""
    frames: dict[tuple[str, str, int], int] = {}
    tracks: dict[tuple[int, int], int] = {}
    calls = 0
    t0: int | None = None
    with tempfile.TemporaryFile() as spill:
        runs = _Runs(spill)
        for r in _trace_reader.records(files):
            if r.get("type") != "span":
                continue
            calls += 1
            key = (_trace_reader.function_name(r), r.get("file", ""), r.get("line", 0))
            frame = frames.get(key)
            if frame is None:
                frame = frames[key] = len(frames)
            track_key = (r.get("pid", 0), r.get("thread_id", 0))
            track = tracks.get(track_key)
            if track is None:
                track = tracks[track_key] = len(tracks)
            start, depth = _trace_reader.start_ns(r), r.get("depth", 0)
            t0 = start if t0 is None else min(t0, start)
            runs.add((track, start, 1, depth, frame))
            runs.add((track, start + r.get("duration_ns", 0), 0, -depth, frame))
        names = {i: f"pid {pid} thread {tid}" for (pid, tid), i in tracks.items()}
        out.write(
            f'{{"$schema":"{SPEEDSCOPE_SCHEMA}","version":"0.0.1","exporter":"ferrotrace","name":{_dumps(name)},'
        )
        out.write('"activeProfileIndex":0,"profiles":[')
        current, first_at, last_at, sep = -1, 0, 0, ""
        for track, at, is_open, _, frame in runs.merged():
            at -= t0 or 0
            if track != current:
                if current >= 0:
                    out.write(f'],"startValue":{first_at},"endValue":{last_at}}},')
                current, first_at, sep = track, at, ""
                out.write(f'{{"type":"evented","name":{_dumps(names[track])},"unit":"nanoseconds","events":[')
            out.write(f'{sep}{{"type":"{"O" if is_open else "C"}","frame":{frame},"at":{at}}}')
            sep, last_at = ",", at
        if current >= 0:
            out.write(f'],"startValue":{first_at},"endValue":{last_at}}}')
    listed = sorted(frames.items(), key=lambda kv: kv[1])
    out.write('],"shared":{"frames":[')
    out.write(",".join(_dumps({"name": n, "file": f, "line": ln}) for (n, f, ln), _ in listed))
    out.write("]}}\n")
    return calls


def _json_text(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def to_perfetto(files: Sequence[str], path: str) -> int:
    """Writes the Perfetto trace of `files` to `path`; returns the number of calls."""
    writer = _native.PerfettoWriter(path)
    calls = 0
    try:
        for r in _trace_reader.records(files):
            kind = r.get("type")
            pid, tid = r.get("pid", 0), r.get("thread_id", 0)
            if kind == "span":
                calls += 1
                exc = r.get("exception")
                exception = (
                    (
                        str(exc.get("type", "")),
                        str(exc.get("message", "")),
                        exc.get("caught_by") if isinstance(exc.get("caught_by"), str) else None,
                        exc.get("escaped") is True,
                    )
                    if isinstance(exc, dict)
                    else None
                )
                writer.call(
                    pid,
                    tid,
                    r.get("module") or "",
                    r.get("qualname", ""),
                    _trace_reader.start_ns(r),
                    r.get("duration_ns", 0),
                    _json_text(r.get("args")),
                    _json_text(r.get("return")),
                    exception,
                    bool(r.get("unfinished")),
                )
            elif kind == "session_end":
                start = _trace_reader.start_ns(r)
                tag = r.get("tag") or "session"
                name = tag if r.get("kind") == "server" else f"session {tag}"
                notes = [(k, str(r[k])) for k in ("trace_id", "span_id", "status") if r.get(k) is not None]
                writer.thread_slice(pid, tid, name, start, start + r.get("duration_ns", 0), notes)
    finally:
        writer.close()
    return calls


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _otlp_span(r: dict[str, Any]) -> dict[str, Any]:
    """The OTLP span of a JSONL span or ended session, as the `otlp` exporter maps it."""
    start = _trace_reader.start_ns(r)
    end = start + r.get("duration_ns", 0)
    span: dict[str, Any] = {"traceId": r.get("trace_id", ""), "spanId": r.get("span_id", "")}
    if r.get("parent_span_id"):
        span["parentSpanId"] = r["parent_span_id"]
    attrs: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    status: dict[str, Any] | None = None
    if r.get("type") == "span":
        span["name"] = _trace_reader.function_name(r)
        span["kind"] = 1
        attrs += [
            _attr("code.function.name", r.get("qualname", "")),
            _attr("code.namespace", r.get("module") or ""),
            _attr("code.file.path", r.get("file", "")),
            _attr("code.line.number", r.get("line", 0)),
            _attr("thread.id", r.get("thread_id", 0)),
        ]
        if r.get("task_id"):
            attrs.append(_attr("ferrotrace.task_id", r["task_id"]))
        if r.get("unfinished"):
            attrs.append(_attr("ferrotrace.unfinished", True))
        for key, name in (("args", "ferrotrace.args"), ("return", "ferrotrace.return")):
            if key in r:
                attrs.append(_attr(name, _dumps(r[key])))
        exc = r.get("exception")
        if isinstance(exc, dict):
            etype, message = str(exc.get("type", "")), str(exc.get("message", ""))
            events.append(
                {
                    "timeUnixNano": str(end),
                    "name": "exception",
                    "attributes": [_attr("exception.type", etype), _attr("exception.message", message)],
                }
            )
            status = {"code": 2, "message": f"{etype}: {message}" if message else etype}
    else:
        span["name"] = r.get("tag") or "session"
        span["kind"] = 2 if r.get("kind") == "server" else 1
        attrs += [_attr(k, v) for k, v in (r.get("attrs") or {}).items()]
        attrs += [_attr("thread.id", r.get("thread_id", 0)), _attr("ferrotrace.session", r.get("tag", ""))]
        if r.get("status") == "error":
            status = {"code": 2}
    span.update(startTimeUnixNano=str(start), endTimeUnixNano=str(end), attributes=attrs)
    if events:
        span["events"] = events
    if status is not None:
        span["status"] = status
    return span


def _otlp_request(pid: int, spans: list[dict[str, Any]]) -> str:
    resource = {
        "attributes": [
            _attr("telemetry.sdk.name", "ferrotrace"),
            _attr("telemetry.sdk.language", "python"),
            _attr("process.pid", pid),
        ]
    }
    scope = {"scope": {"name": "ferrotrace", "version": _native.__version__}, "spans": spans}
    return _dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [scope]}]}) + "\n"


def to_otlp_json(files: Sequence[str], out: IO[str]) -> int:
    """Writes the OTLP/JSON lines of `files` to `out`; returns the number of calls."""
    calls = 0
    pending: dict[int, list[dict[str, Any]]] = {}
    for r in _trace_reader.records(files):
        kind = r.get("type")
        if kind not in ("span", "session_end"):
            continue
        calls += kind == "span"
        pid = r.get("pid", 0)
        spans = pending.setdefault(pid, [])
        spans.append(_otlp_span(r))
        if len(spans) >= OTLP_JSON_BATCH:
            out.write(_otlp_request(pid, spans))
            del pending[pid]
    for pid, spans in pending.items():
        out.write(_otlp_request(pid, spans))
    return calls


def main(specs: Sequence[str], to: str, output: str | None) -> int:
    """`ferrotrace convert`; returns the exit status."""
    try:
        files = _trace_reader.expand(specs)
    except _trace_reader.TraceError as exc:
        print(f"ferrotrace convert: {exc}", file=sys.stderr)
        return 2
    if output is None:
        root = os.path.splitext(files[0])[0]
        output = f"{root}.{SUFFIXES[to]}"
    try:
        if to == "perfetto":
            calls = to_perfetto(files, output)
        else:
            with open(output, "w", encoding="utf-8") as out:
                if to == "chrome":
                    calls = to_chrome(files, out)
                elif to == "otlp-json":
                    calls = to_otlp_json(files, out)
                else:
                    calls = to_speedscope(files, out, os.path.basename(files[0]))
    except _trace_reader.TraceError as exc:
        print(f"ferrotrace convert: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ferrotrace convert: {output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"ferrotrace: {calls} calls -> {os.path.abspath(output)} ({to})", file=sys.stderr)
    return 0
