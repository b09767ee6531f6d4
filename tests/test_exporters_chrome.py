"""The chrome exporter writes Trace Event Format JSON: one track per thread with a complete
("X") event per call, properly nested, named process and threads, visible sessions, and a
file that stays loadable when the process is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

from conftest import TEST_BACKEND, spans

PROGRAM = """
import threading, ferrotrace
ferrotrace.configure(exporter="jsonl,chrome", output="trace.jsonl", chrome_output="trace.chrome.json",
                     service_name="chromey")

def leaf(i):
    return i

def middle(n):
    for i in range(n):
        leaf(i)

# All four threads live at once, so none reuses another's thread id.
everyone = threading.Barrier(4)

def worker(name, n):
    with ferrotrace.session(name):
        for _ in range(n):
            middle(3)
    everyone.wait()

threads = [threading.Thread(target=worker, args=(f"t{k}", 10 + k), name=f"worker-{k}") for k in range(3)]
for t in threads:
    t.start()
worker("main", 5)
for t in threads:
    t.join()
"""


def load(path) -> list[dict]:
    """The events, as a viewer reads them: the array may lack its closing bracket."""
    text = path.read_text().rstrip()
    if not text.endswith("]"):
        text += "]"
    return json.loads(text)


def test_threads_calls_nesting_and_names(runner):
    records = runner.trace(PROGRAM)
    path = runner.tmp / "trace.chrome.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().rstrip().endswith("]"), "a clean exit closes the array"
    events = load(path)
    pid = records[0]["pid"]
    assert all(e["pid"] == pid for e in events)
    meta = [e for e in events if e["ph"] == "M"]
    assert {
        "name": "process_name",
        "ph": "M",
        "pid": pid,
        "tid": 0,
        "args": {"name": f"chromey (pid {pid})"},
    } in meta
    # A track may be named twice (its id first, the Python name once a session tells it):
    # viewers keep the last name.
    thread_names = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert sorted(thread_names.values()) == ["MainThread", "worker-0", "worker-1", "worker-2"]

    calls = [e for e in events if e["ph"] == "X" and e["cat"] == "python"]
    jsonl = {s["span_id"]: s for s in spans(records)}
    assert sorted(e["args"]["span_id"] for e in calls) == sorted(jsonl), "one X event per call"
    by_thread = defaultdict(list)
    for e in calls:
        assert e["tid"] in thread_names, "every track is named"
        by_thread[e["tid"]].append(e)
    # Four threads, each its own track: n * (1 + 3) calls in the session of worker(n).
    assert sorted(len(v) for v in by_thread.values()) == [n * 4 for n in (5, 10, 11, 12)]
    for evs in by_thread.values():
        assert len({jsonl[e["args"]["span_id"]]["thread_id"] for e in evs}) == 1
        # Nesting by ts/dur: every call lies inside its parent call, on the same track.
        ids = {e["args"]["span_id"]: e for e in evs}
        for e in evs:
            assert e["name"] == f"__main__.{jsonl[e['args']['span_id']]['qualname']}"
            assert e["args"]["line"] > 0 and e["args"]["file"].endswith("prog.py")
            parent = ids.get(jsonl[e["args"]["span_id"]]["parent_span_id"])
            if parent is not None:
                assert parent["ts"] <= e["ts"] and e["ts"] + e["dur"] <= parent["ts"] + parent["dur"] + 0.001
        # Siblings never overlap.
        stack: list[float] = []
        for e in sorted(evs, key=lambda e: (e["ts"], -e["dur"])):
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            assert not stack or e["ts"] + e["dur"] <= stack[-1] + 0.001
            stack.append(e["ts"] + e["dur"])

    sessions = [e for e in events if e.get("cat") == "session"]
    assert sorted((e["name"], e["ph"]) for e in sessions) == sorted(
        (f"session {n}", ph) for n in ("main", "t0", "t1", "t2") for ph in ("i", "X")
    ), "session starts and spans are visible"
    assert events[-1]["name"] == "ferrotrace meta"


def test_killed_process_leaves_a_loadable_file(tmp_path):
    script = tmp_path / "forever.py"
    script.write_text(
        """
import ferrotrace, sys
ferrotrace.configure(exporter="chrome", chrome_output="killed.json", flush_interval_ms=20, batch_size=64)
def leaf(i):
    return i
with ferrotrace.session("forever"):
    n = 0
    while True:
        leaf(n)
        n += 1
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    if TEST_BACKEND:
        env["FERROTRACE_BACKEND"] = TEST_BACKEND
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env)
    path = tmp_path / "killed.json"
    try:
        deadline = time.monotonic() + 15
        while not (path.exists() and path.stat().st_size > 300_000):
            assert proc.poll() is None and time.monotonic() < deadline, "the trace never grew"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    text = path.read_text()
    assert not text.rstrip().endswith("]"), "killed before closing the array"
    events = load(path)
    calls = [e for e in events if e["ph"] == "X"]
    assert len(calls) > 1000 and all(e["name"] == "__main__.leaf" for e in calls)
    assert events[0]["name"] == "process_name"
