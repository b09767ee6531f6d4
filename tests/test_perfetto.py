"""The perfetto exporter and `convert --to perfetto|otlp-json`: Perfetto's protobuf trace,
decoded here with Perfetto's own protos (perfetto_trace_pb2 of the `perfetto` package), shows
the same calls, names, nesting and timestamps as the JSONL of the same run; a forked child
writes its own file; the OTLP/JSON lines parse as OTLP's ExportTraceServiceRequest and carry
the run's spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import spans
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

PROGRAM = """
import threading, ferrotrace
ferrotrace.configure(exporter="jsonl,perfetto", output="trace.jsonl", perfetto_output="trace.perfetto-trace",
                     service_name="perfy", capture="all")

def leaf(i):
    return i * 2

def fails():
    raise ValueError("boom")

def middle(n):
    for i in range(n):
        leaf(i)
    try:
        fails()
    except ValueError:
        pass

everyone = threading.Barrier(3)

def worker(name, n):
    with ferrotrace.session(name):
        middle(n)
    everyone.wait()

threads = [threading.Thread(target=worker, args=(f"t{k}", 5 + k), name=f"worker-{k}") for k in range(2)]
for t in threads:
    t.start()
worker("main", 3)
for t in threads:
    t.join()
"""


@dataclass
class Slice:
    track: int
    name: str
    start: int
    end: int = -1
    annotations: dict = field(default_factory=dict)
    parent: Slice | None = None


def annotation_value(a: pb.DebugAnnotation):
    if a.dict_entries:
        return {e.name: annotation_value(e) for e in a.dict_entries}
    kind = a.WhichOneof("value")
    if kind == "legacy_json_value":
        return json.loads(a.legacy_json_value)
    return getattr(a, kind) if kind else None


@dataclass
class Decoded:
    packets: list
    slices: list[Slice]
    instants: dict[str, Slice]
    threads: dict[int, pb.ThreadDescriptor]
    processes: dict[int, pb.ProcessDescriptor]


def decode(path: Path) -> Decoded:
    """The trace as a reader builds it: incremental state per packet sequence (defaults,
    interned names), then per track begin/end events in time order paired into slices."""
    packets = list(pb.Trace.FromString(path.read_bytes()).packet)
    state: dict[int, dict] = {}
    events: dict[int, list] = defaultdict(list)
    threads, processes, instants = {}, {}, {}
    for order, p in enumerate(packets):
        seq = p.trusted_packet_sequence_id
        assert seq > 0, "every packet names its sequence"
        if p.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
            state[seq] = {"names": {}, "track": None}
        if p.sequence_flags & pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE:
            assert seq in state, "incremental state used before it was cleared"
        s = state.setdefault(seq, {"names": {}, "track": None})
        if p.HasField("trace_packet_defaults"):
            s["track"] = p.trace_packet_defaults.track_event_defaults.track_uuid
        for n in p.interned_data.event_names:
            s["names"][n.iid] = n.name
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.HasField("thread"):
                threads[d.uuid] = d.thread
            if d.HasField("process"):
                processes[d.uuid] = d.process
        if p.HasField("track_event"):
            e = p.track_event
            track = e.track_uuid if e.HasField("track_uuid") else s["track"]
            assert track, "an event on no track"
            name = e.name if e.HasField("name") else s["names"].get(e.name_iid)
            if e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
                assert name, "a slice without a name"
            annotations = {a.name: annotation_value(a) for a in e.debug_annotations}
            if e.type == pb.TrackEvent.TYPE_INSTANT:
                instants[name] = Slice(track, name, p.timestamp, p.timestamp, annotations)
            else:
                events[track].append((p.timestamp, order, e.type, name, annotations))
    slices = []
    for track, evs in events.items():
        stack: list[Slice] = []
        for ts, _, kind, name, annotations in sorted(evs):
            if kind == pb.TrackEvent.TYPE_SLICE_BEGIN:
                sl = Slice(track, name, ts, annotations=annotations, parent=stack[-1] if stack else None)
                stack.append(sl)
                slices.append(sl)
            else:
                assert kind == pb.TrackEvent.TYPE_SLICE_END and stack, "an end without a begin"
                stack.pop().end = ts
        assert not stack, "every slice ends"
    return Decoded(packets, slices, instants, threads, processes)


def jsonl_name(r: dict) -> str:
    if r["type"] == "span":
        return f"{r['module']}.{r['qualname']}" if r.get("module") else r["qualname"]
    return f"session {r['tag']}"


def check_against_jsonl(trace: Decoded, records: list[dict], offset: int) -> None:
    """Same calls and sessions (name, start, end, enclosing slice), thread by thread (a
    thread id too large for the readers gets a compact one: threads are matched by their
    calls); `offset` is what is added to a Perfetto timestamp to get `start_unix_ns`."""
    by_id = {r["span_id"]: r for r in records if r["type"] in ("span", "session_end")}
    ours: dict[int, Counter] = defaultdict(Counter)
    for sl in trace.slices:
        assert sl.track in trace.threads, "calls and sessions are on thread tracks"
        parent = sl.parent.name if sl.parent else None
        ours[sl.track][(sl.name, sl.start + offset, sl.end + offset, parent)] += 1
    theirs: dict[int, Counter] = defaultdict(Counter)
    for r in by_id.values():
        start = int(r["start_unix_ns"])
        up = by_id.get(r.get("parent_span_id"))
        parent = jsonl_name(up) if up and up["thread_id"] == r["thread_id"] else None
        theirs[r["thread_id"]][(jsonl_name(r), start, start + r["duration_ns"], parent)] += 1

    def threads(by_thread: dict[int, Counter]) -> list:
        return sorted(sorted(c.items()) for c in by_thread.values())

    assert threads(ours) == threads(theirs)


def test_exporter_matches_the_jsonl_of_the_same_run(runner):
    records = runner.trace(PROGRAM)
    path = runner.tmp / "trace.perfetto-trace"
    assert path.stat().st_mode & 0o777 == 0o600
    trace = decode(path)
    pid = records[0]["pid"]
    assert [(p.pid, p.process_name) for p in trace.processes.values()] == [(pid, f"perfy (pid {pid})")]
    assert sorted(t.thread_name for t in trace.threads.values()) == ["MainThread", "worker-0", "worker-1"]
    assert {t.pid for t in trace.threads.values()} == {pid}
    zero = trace.instants["ferrotrace clock"].annotations["unix_ns_at_zero"]
    check_against_jsonl(trace, records, zero)

    calls = spans(records)
    assert len(calls) == 3 * 2 + 3 + 5 + 6  # middle, fails, leaf per worker
    leaves = [s for s in trace.slices if s.name == "__main__.leaf"]
    assert Counter(json.dumps(s.annotations["args"]) for s in leaves) == Counter(
        json.dumps(c["args"]) for c in calls if c["qualname"] == "leaf"
    )
    assert sorted(s.annotations["return"] for s in leaves) == sorted(
        c["return"] for c in calls if c["qualname"] == "leaf"
    )
    fails = [s for s in trace.slices if s.name == "__main__.fails"]
    # Spans waiting for their exception's fate may be written in another order than they ended.
    assert Counter(json.dumps(s.annotations["exception"], sort_keys=True) for s in fails) == Counter(
        json.dumps(c["exception"], sort_keys=True) for c in calls if c["qualname"] == "fails"
    )
    sessions = [s for s in trace.slices if s.name.startswith("session ")]
    assert sorted(s.name for s in sessions) == ["session main", "session t0", "session t1"]
    assert all(s.annotations["trace_id"] for s in sessions)
    meta = trace.instants["ferrotrace meta"].annotations
    assert meta["recorded"] == len(calls) and meta["dropped"] == 0


def test_convert_to_perfetto_matches_the_jsonl(runner):
    records = runner.trace(PROGRAM)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferrotrace",
            "convert",
            "trace.jsonl",
            "--to",
            "perfetto",
            "-o",
            "c.perfetto-trace",
        ],
        cwd=runner.tmp,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    trace = decode(runner.tmp / "c.perfetto-trace")
    check_against_jsonl(trace, records, 0)
    pid = records[0]["pid"]
    jsonl_threads = {r["thread_id"] for r in records if r["type"] == "span"}
    assert sorted(t.thread_name for t in trace.threads.values()) == sorted(
        f"thread {t}" for t in jsonl_threads
    )
    fails = [s for s in trace.slices if s.name == "__main__.fails"]
    assert [s.annotations["exception"] for s in fails] == [
        c["exception"] for c in spans(records) if c["qualname"] == "fails"
    ]
    assert {p.pid for p in trace.processes.values()} == {pid}


def test_convert_to_otlp_json_is_export_requests_with_the_runs_spans(runner):
    records = runner.trace(PROGRAM)
    proc = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "convert", "trace.jsonl", "--to", "otlp-json"],
        cwd=runner.tmp,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = (runner.tmp / "trace.otlp.jsonl").read_text().splitlines()
    assert lines
    got = []
    for line in lines:
        json_format.Parse(line, ExportTraceServiceRequest())  # OTLP's message, no unknown field
        for rs in json.loads(line)["resourceSpans"]:
            attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
            assert attrs["process.pid"] == {"intValue": str(records[0]["pid"])}
            for ss in rs["scopeSpans"]:
                got.extend(ss["spans"])
    ended = [r for r in records if r["type"] in ("span", "session_end")]
    assert sorted(s["spanId"] for s in got) == sorted(r["span_id"] for r in ended)
    by_id = {r["span_id"]: r for r in ended}
    for s in got:
        r = by_id[s["spanId"]]
        assert len(s["traceId"]) == 32 and s["traceId"] == r["trace_id"]
        assert s.get("parentSpanId") == r.get("parent_span_id")
        assert int(s["startTimeUnixNano"]) == int(r["start_unix_ns"])
        assert int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) == r["duration_ns"]
        attrs = {a["key"]: a["value"] for a in s["attributes"]}
        if r["type"] == "span":
            assert s["name"] == jsonl_name(r) and s["kind"] == 1
            assert attrs["code.function.name"] == {"stringValue": r["qualname"]}
            assert attrs["code.line.number"] == {"intValue": str(r["line"])}
        else:
            assert s["name"] == r["tag"] and attrs["ferrotrace.session"] == {"stringValue": r["tag"]}
        if r["type"] == "span" and r["qualname"] == "fails":
            assert s["status"]["code"] == 2
            (event,) = s["events"]
            assert event["name"] == "exception"
            event_attrs = {a["key"]: a["value"]["stringValue"] for a in event["attributes"]}
            assert event_attrs == {
                "exception.type": r["exception"]["type"],
                "exception.message": r["exception"]["message"],
            }


FORK_PROGRAM = """
import os, sys, ferrotrace
ferrotrace.configure(exporter="perfetto", perfetto_output="trace.perfetto-trace")

def leaf(i):
    return i

def work(n):
    for i in range(n):
        leaf(i)

with ferrotrace.session("parent"):
    work(3)
    pid = os.fork()
    if pid == 0:
        work(7)
        sys.exit(0)
    assert os.waitpid(pid, 0)[1] == 0
print(pid)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_its_own_file(runner):
    proc = runner.run(FORK_PROGRAM)
    assert proc.returncode == 0, proc.stderr
    child = int(proc.stdout)
    parent = decode(runner.tmp / "trace.perfetto-trace")
    mine = decode(runner.tmp / f"trace.{child}.perfetto-trace")
    assert [p.pid for p in mine.processes.values()] == [child]
    assert [p.pid for p in parent.processes.values()] != [child]
    assert Counter(s.name for s in parent.slices)["__main__.leaf"] == 3
    assert Counter(s.name for s in mine.slices)["__main__.leaf"] == 7
    assert mine.instants["ferrotrace meta"].annotations["recorded"] >= 7
