"""Threads and asyncio tasks each keep their own session."""

from collections import Counter, defaultdict

from conftest import spans

PROGRAM = """
import asyncio, threading, json
import ferrotrace
ferrotrace.configure(output="trace.jsonl")
expected = {}

def leaf(i):
    return i * 2

def work(name, n):
    total = 0
    for i in range(n):
        total += leaf(i)
    return total

def in_thread(name):
    with ferrotrace.session(name) as s:
        expected[name] = s.trace_id
        for _ in range(200):
            work(name, 5)

async def step(i):
    await asyncio.sleep(0)
    return leaf(i)

async def task_body(name):
    with ferrotrace.session(name) as s:
        expected[name] = s.trace_id
        for i in range(5):
            await step(i)

async def main():
    await asyncio.gather(*(task_body(f"task{i}") for i in range(50)))

threads = [threading.Thread(target=in_thread, args=(f"thread{i}",)) for i in range(2)]
for t in threads: t.start()
for t in threads: t.join()
asyncio.run(main())
ferrotrace.shutdown()
json.dump(expected, open("expected.json", "w"))
"""


def test_threads_and_tasks_keep_their_sessions(runner):
    import json

    records = runner.trace(PROGRAM)
    expected = json.loads((runner.tmp / "expected.json").read_text())
    assert len(expected) == 52
    assert len(set(expected.values())) == 52, "each session is its own trace"
    sessions = {r["span_id"]: r for r in records if r["type"] == "session_start"}
    by_tag = {r["tag"]: r for r in sessions.values()}
    got = spans(records)
    by_id = {s["span_id"]: s for s in got}
    per_trace = defaultdict(Counter)
    for s in got:
        per_trace[s["trace_id"]][s["qualname"]] += 1
        # walk up to the session: every ancestor is in the same trace
        parent = s["parent_span_id"]
        while parent in by_id:
            assert by_id[parent]["trace_id"] == s["trace_id"]
            parent = by_id[parent]["parent_span_id"]
        assert sessions[parent]["trace_id"] == s["trace_id"]
    for i in range(2):
        tid = expected[f"thread{i}"]
        assert by_tag[f"thread{i}"]["trace_id"] == tid
        assert per_trace[tid] == {"work": 200, "leaf": 1000}
    for i in range(50):
        tid = expected[f"task{i}"]
        assert by_tag[f"task{i}"]["trace_id"] == tid
        # 6 segments (5 awaits); the first began before its `with session` ran, so 5 are in it
        assert per_trace[tid]["task_body"] == 5
        assert per_trace[tid]["step"] == 10, "each step suspends once: 2 segments"
        assert per_trace[tid]["leaf"] == 5
    task_ids = {s["task_id"] for s in got if s["qualname"] == "task_body"}
    assert len(task_ids) == 50 and 0 not in task_ids


CONTEXTS = """
import contextvars, json
import ferrotrace
ferrotrace.configure(output="trace.jsonl")

def leaf(where):
    return where

def in_outer():
    return leaf("outer")

def in_inner():
    return leaf("inner")

def nowhere():
    return leaf("nowhere")

before = contextvars.copy_context()
expected = {}
nowhere()
with ferrotrace.session("outer") as outer:
    expected["outer"] = outer.span_id
    in_outer()
    before.run(nowhere)
    in_outer()
    remote = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    with ferrotrace.session("inner", traceparent=remote) as inner:
        expected["inner"] = inner.span_id
        in_inner()
        before.run(nowhere)
        in_inner()
    in_outer()
    contextvars.copy_context().run(in_outer)
nowhere()
ferrotrace.shutdown()
json.dump(expected, open("expected.json", "w"))
"""


def test_session_follows_context_switches_and_sets_in_place(runner):
    """A session entered or left in the running context applies from the next call on; a
    context copied before it started never sees it, one copied inside it does."""
    import json

    records = runner.trace(CONTEXTS)
    expected = json.loads((runner.tmp / "expected.json").read_text())
    sessions = {r["span_id"]: r for r in records if r["type"] == "session_start"}
    assert sessions[expected["inner"]]["trace_id"] == "ab" * 16
    got = spans(records)
    by_id = {s["span_id"]: s for s in got}
    per_session = defaultdict(Counter)
    for s in got:
        parent = s["parent_span_id"]
        while parent in by_id:
            parent = by_id[parent]["parent_span_id"]
        assert s["trace_id"] == sessions[parent]["trace_id"], s
        per_session[parent][s["qualname"]] += 1
    assert per_session == {
        expected["outer"]: {"in_outer": 4, "leaf": 4},
        expected["inner"]: {"in_inner": 2, "leaf": 2},
    }
