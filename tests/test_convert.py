"""`ferrotrace convert`: a real run's JSONL trace to Chrome's Trace Event Format (checked
against ferrotrace's own chrome exporter of the same run) and to speedscope's evented
profile format (checked against its file format spec: FileFormat.File in speedscope's
src/lib/file-format-spec.ts), read as a stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from conftest import read_trace, spans

PROGRAM = """
import threading

def leaf(x):
    return x * 2

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def fails():
    raise ValueError("boom")

together = threading.Barrier(3)

def worker(n):
    together.wait()  # all three threads alive at once: three thread ids
    for i in range(n):
        leaf(i)
    try:
        fails()
    except ValueError:
        pass
    return fib(10)

threads = [threading.Thread(target=worker, args=(30,)) for _ in range(2)]
for t in threads:
    t.start()
worker(10)
for t in threads:
    t.join()
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convert")
    (tmp / "prog.py").write_text(PROGRAM)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_") or k == "FERROTRACE_BACKEND"
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "run", "--exporter", "jsonl,chrome", "prog.py"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return tmp


def _convert(run, to, out):
    proc = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "convert", "ferrotrace.jsonl", "--to", to, "-o", out],
        cwd=run,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((run / out).read_text())


def test_chrome_matches_the_chrome_exporter_of_the_same_run(run):
    converted = _convert(run, "chrome", "converted.json")
    exported = json.loads((run / "ferrotrace.chrome.json").read_text())  # JSON Array Format
    calls = [e for e in converted["traceEvents"] if e["ph"] == "X" and e["cat"] == "python"]
    for e in converted["traceEvents"]:
        assert isinstance(e["name"], str) and e["ph"] in ("X", "M")
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0
    theirs = [e for e in exported if e.get("ph") == "X" and e.get("cat") == "python"]

    def key(e):
        return (e["name"], round(e["dur"], 3), json.dumps(e["args"].get("args"), sort_keys=True))

    assert Counter(map(key, calls)) == Counter(map(key, theirs))
    threads = {e["tid"] for e in calls}
    assert len(threads) == 3
    assert {e["tid"] for e in converted["traceEvents"] if e["ph"] == "M"} == threads
    fails = [e for e in calls if e["name"] == "__main__.fails"]
    # The exception as the JSONL has it (its type is "" where a backend cannot read it: the
    # setprofile backend on 3.10/3.11 until issue 26 lands).
    recorded = [
        s["exception"] for s in spans(read_trace(run / "ferrotrace.jsonl")) if s["qualname"] == "fails"
    ]
    assert len(fails) == 3 and [e["args"]["exception"] for e in fails] == recorded


def test_speedscope_follows_the_evented_format_one_profile_per_thread(run):
    doc = _convert(run, "speedscope", "speedscope.json")
    records = read_trace(run / "ferrotrace.jsonl")
    calls = spans(records)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert isinstance(doc["version"], str) and isinstance(doc["name"], str)
    frames = doc["shared"]["frames"]
    assert all(isinstance(f["name"], str) and isinstance(f.get("line", 0), int) for f in frames)
    threads = {(s["pid"], s["thread_id"]) for s in calls}
    assert len(doc["profiles"]) == len(threads) == 3
    assert {p["name"] for p in doc["profiles"]} == {f"pid {p} thread {t}" for p, t in threads}
    opened = Counter()
    for profile in doc["profiles"]:
        assert profile["type"] == "evented" and profile["unit"] == "nanoseconds"
        assert profile["endValue"] >= profile["startValue"]
        stack, last = [], profile["startValue"]
        for event in profile["events"]:
            assert event["at"] >= last, "events in non-decreasing order"
            assert profile["startValue"] <= event["at"] <= profile["endValue"]
            last = event["at"]
            assert 0 <= event["frame"] < len(frames)
            if event["type"] == "O":
                stack.append(event["frame"])
                opened[frames[event["frame"]]["name"]] += 1
            else:
                assert event["type"] == "C" and stack and stack.pop() == event["frame"], "balanced"
        assert stack == []
    by_name = Counter(f"{s['module']}.{s['qualname']}" for s in calls)
    assert opened == by_name
    # Nesting: each fib call opens inside its caller, so the deepest fib stack is 10 levels.
    deepest = 0
    for profile in doc["profiles"]:
        depth = 0
        for event in profile["events"]:
            if frames[event["frame"]]["name"] == "__main__.fib":
                depth += 1 if event["type"] == "O" else -1
                deepest = max(deepest, depth)
    assert deepest == 10


def test_convert_streams_in_sorted_runs(run, monkeypatch, tmp_path):
    """The external sort gives the same file with runs of 7 events as with one run."""
    from ferrotrace import _convert

    whole = tmp_path / "whole.json"
    small = tmp_path / "small.json"
    with whole.open("w") as out:
        _convert.to_speedscope([str(run / "ferrotrace.jsonl")], out, "x")
    monkeypatch.setattr(_convert, "SORT_RUN", 7)
    with small.open("w") as out:
        _convert.to_speedscope([str(run / "ferrotrace.jsonl")], out, "x")
    assert whole.read_text() == small.read_text()


def test_convert_missing_trace_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "convert", "nope.jsonl", "--to", "chrome"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "nope.jsonl: no such file" in proc.stderr
