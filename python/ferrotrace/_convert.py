"""`ferrotrace convert TRACE... --to chrome|speedscope [-o OUT]`: a JSONL trace in another
viewer's format, streamed in bounded memory (the trace is read once, one record at a time).

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

from ferrotrace import _trace_reader

FORMATS = ("chrome", "speedscope")
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


def main(specs: Sequence[str], to: str, output: str | None) -> int:
    """`ferrotrace convert`; returns the exit status."""
    try:
        files = _trace_reader.expand(specs)
    except _trace_reader.TraceError as exc:
        print(f"ferrotrace convert: {exc}", file=sys.stderr)
        return 2
    if output is None:
        root = os.path.splitext(files[0])[0]
        output = f"{root}.{to}.json"
    try:
        with open(output, "w", encoding="utf-8") as out:
            if to == "chrome":
                calls = to_chrome(files, out)
            else:
                calls = to_speedscope(files, out, os.path.basename(files[0]))
    except _trace_reader.TraceError as exc:
        print(f"ferrotrace convert: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ferrotrace convert: {output}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"ferrotrace: {calls} calls -> {os.path.abspath(output)} ({to})", file=sys.stderr)
    return 0
