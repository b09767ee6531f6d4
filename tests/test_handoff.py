"""Work handed to threads, executors and processes lands in the trace of the session that
handed it over, with the handing call as parent, and nothing is lost (issue 19)."""

from __future__ import annotations

import collections
import json

import pytest
from conftest import read_trace


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["span_id"]: r for r in records if r["type"] == "span"}


def parent_name(records: list[dict], span: dict) -> str:
    """The qualname of a span's parent, or `session:TAG` when the parent is a session."""
    spans = by_id(records)
    parent = span["parent_span_id"]
    if parent in spans:
        return spans[parent]["qualname"]
    sessions = {r["span_id"]: r["tag"] for r in records if r["type"] == "session_start"}
    return f"session:{sessions[parent]}" if parent in sessions else f"unknown:{parent}"


def roots(records: list[dict]) -> list[dict]:
    """The start records of sessions that begin a trace."""
    return [r for r in records if r["type"] == "session_start" and not r["parent_span_id"]]


def shape(records: list[dict]) -> collections.Counter:
    """(qualname, parent name, session tag of the trace) of every span, counted."""
    tags = {r["trace_id"]: r["tag"] for r in roots(records)}
    return collections.Counter(
        (s["qualname"], parent_name(records, s), tags.get(s["trace_id"], "?"))
        for s in records
        if s["type"] == "span"
    )


THREADS = """
import threading, ferrotrace
ferrotrace.configure(output="trace.jsonl")

def leaf(i):
    return i

barrier = threading.Barrier(4)

def worker():
    barrier.wait()  # all four alive at once: four distinct thread ids
    for i in range(10):
        leaf(i)

def starter():
    threads = []
    while len(threads) < 4:  # no comprehension: a call of its own before 3.12
        threads.append(threading.Thread(target=worker))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

def outside():
    leaf(-1)

with ferrotrace.session("threads"):
    starter()
t = threading.Thread(target=outside)
t.start()
t.join()
ferrotrace.shutdown()
"""


def test_threads_started_in_a_session_run_in_it(runner):
    records = runner.trace(THREADS)
    assert shape(records) == {
        ("starter", "session:threads", "threads"): 1,
        ("worker", "starter", "threads"): 4,
        ("leaf", "worker", "threads"): 40,
    }
    workers = {s["thread_id"] for s in records if s["type"] == "span" and s["qualname"] == "worker"}
    assert len(workers) == 4, "each worker on its own thread"


def test_follow_threads_off_records_only_the_starting_thread(runner):
    records = runner.trace(THREADS, env={"FERROTRACE_FOLLOW_THREADS": "0"})
    assert shape(records) == {("starter", "session:threads", "threads"): 1}


EXECUTORS = """
import asyncio, threading, ferrotrace
from concurrent.futures import ThreadPoolExecutor
import anyio.to_thread
ferrotrace.configure(output="trace.jsonl")
asyncio.run(anyio.to_thread.run_sync(int))  # anyio's lazy imports, outside the sessions

def task(i):
    return i

def submit_a(ex, i):
    return ex.submit(task, i)

def submit_b(ex, i):
    return ex.submit(task, i)

def unsessioned(i):
    return i

ex = ThreadPoolExecutor(4)
a, b = ferrotrace.session("A"), ferrotrace.session("B")
futures = []
for i in range(100):
    # Alternately from two sessions, on the same 4 workers (started by session A).
    with (a if i % 2 == 0 else b):
        futures.append((submit_a if i % 2 == 0 else submit_b)(ex, i))
assert [f.result() for f in futures] == list(range(100))
# A task submitted outside any session runs untraced on the same (reused) workers.
assert list(ex.map(unsessioned, range(8))) == list(range(8))

def via_map(ex):
    return list(ex.map(task, range(5)))

def timer_fired():
    task(-1)

def start_timer():
    t = threading.Timer(0.01, timer_fired)
    t.start()
    t.join()

async def via_loop():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(ex, task, 1)
    await loop.run_in_executor(None, task, 2)
    await asyncio.to_thread(task, 3)
    await anyio.to_thread.run_sync(task, 4)

async def call_anyio():
    return await anyio.to_thread.run_sync(task, 5)

async def anyio_worker_reused():
    await anyio.to_thread.run_sync(unsessioned, 0)  # starts this loop's worker, no session
    with ferrotrace.session("R"):
        await call_anyio()
    await anyio.to_thread.run_sync(unsessioned, 1)

with ferrotrace.session("M"):
    via_map(ex)
with ferrotrace.session("T"):
    start_timer()
with ferrotrace.session("L"):
    asyncio.run(via_loop())
asyncio.run(anyio_worker_reused())
ex.shutdown()
ferrotrace.shutdown()
"""


def test_executor_tasks_run_in_their_submitters_session(runner):
    records = runner.trace(EXECUTORS)
    got = shape(records)
    assert got[("task", "submit_a", "A")] == 50
    assert got[("task", "submit_b", "B")] == 50
    assert got[("task", "via_map", "M")] == 5
    assert got[("timer_fired", "start_timer", "T")] == 1
    assert got[("task", "timer_fired", "T")] == 1
    assert got[("task", "via_loop", "L")] == 4, "run_in_executor (own and default), to_thread, anyio"
    assert got[("task", "call_anyio", "R")] == 1, "anyio worker started outside any session"
    assert not [k for k in got if k[0] == "unsessioned"], "a reused worker kept a session"
    tasks = [s for s in records if s["type"] == "span" and s["qualname"] == "task"]
    assert len(tasks) == 100 + 5 + 1 + 4 + 1


OUTLIVES = """
import threading, ferrotrace
ferrotrace.configure(output="trace.jsonl")
go = threading.Event()

def late(i):
    return i

def slow():
    go.wait()
    late(1)

with ferrotrace.session("short") as s:
    t = threading.Thread(target=slow)
    t.start()
go.set()
t.join()
ferrotrace.shutdown()
"""


def test_a_thread_that_outlives_its_session_ends_its_spans_in_it(runner):
    """Documented behaviour: the thread keeps recording into the session it began in, after
    that session's end record."""
    records = runner.trace(OUTLIVES)
    (end,) = [r for r in records if r["type"] == "session_end"]
    spans = {s["qualname"]: s for s in records if s["type"] == "span"}
    assert set(spans) == {"slow", "late"}
    assert all(s["trace_id"] == end["trace_id"] for s in spans.values())
    assert spans["slow"]["parent_span_id"] == end["span_id"]
    assert int(spans["late"]["start_unix_ns"]) > int(end["end_unix_ns"])
    assert "unfinished" not in spans["slow"]


POOL = """
import json, multiprocessing as mp, sys, ferrotrace
from concurrent.futures import ProcessPoolExecutor

def leaf(x):
    return x * x

def work(x):
    return leaf(x)

def fan_out(method):
    with mp.get_context(method).Pool(4) as pool:
        return pool.map(work, range(20))

def submit_all(method):
    ctx = mp.get_context(method)
    results = []
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        for i in range(6):  # no comprehension: a call of its own before 3.12
            results.append(ex.submit(work, i).result())
    return results

def one_process(method):
    p = mp.get_context(method).Process(target=work, args=(7,))
    p.start()
    p.join()
    return p.exitcode

if __name__ == "__main__":
    method = sys.argv[1]
    ferrotrace.configure(output="out/trace.jsonl")
    ids = {}
    for name, fn in (("pool", fan_out), ("executor", submit_all), ("process", one_process)):
        with ferrotrace.session(name) as s:
            fn(method)
        ids[name] = s.trace_id
    ferrotrace.shutdown()
    print(json.dumps(ids))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pools_record_into_the_submitting_trace(runner, method):
    (runner.tmp / "out").mkdir()
    proc = runner.run(POOL.replace("sys.argv[1]", repr(method)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    ids = json.loads(proc.stdout)
    files = sorted((runner.tmp / "out").glob("*.jsonl"))
    records = [r for f in files for r in read_trace(f)]
    spans = [r for r in records if r["type"] == "span"]
    metas = [r for r in records if r["type"] == "meta"]
    # Every file that holds anything ends with its meta record; the counts add up.
    for f in files:
        lines = read_trace(f)
        assert not lines or lines[-1]["type"] == "meta", f"{f.name} lost its meta record"
    assert sum(m["recorded"] for m in metas) == len(spans)
    assert sum(m["dropped"] for m in metas) == 0
    by_trace = collections.Counter((s["trace_id"], s["qualname"]) for s in spans)
    assert by_trace == {
        (ids["pool"], "fan_out"): 1,
        (ids["executor"], "submit_all"): 1,
        (ids["process"], "one_process"): 1,
        (ids["pool"], "work"): 20,
        (ids["pool"], "leaf"): 20,
        (ids["executor"], "work"): 6,
        (ids["executor"], "leaf"): 6,
        (ids["process"], "work"): 1,
        (ids["process"], "leaf"): 1,
    }
    # Each task runs in a session continuing the submitting trace, a child of the call
    # that handed it over.
    submitter = {
        s["trace_id"]: s["span_id"]
        for s in spans
        if s["qualname"] in ("fan_out", "submit_all", "one_process")
    }
    tasks = [r for r in records if r["type"] == "session_start" and r["parent_span_id"]]
    assert tasks and all(t["parent_span_id"] == submitter[t["trace_id"]] for t in tasks)
    assert {t["tag"] for t in tasks} == {"work"}
    assert len({m["pid"] for m in metas}) >= 3, "the workers wrote their own files"


SUBPROCESS = """
import os, subprocess, sys, ferrotrace
ferrotrace.configure(output="trace.jsonl")

SHOW = "import os; print(os.environ.get('TRACEPARENT'))"

def child(env=None):
    proc = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True)
    return proc.stdout.strip()

def launch():
    return child(), child({**os.environ, "TRACEPARENT": "mine"})

with ferrotrace.session("parent") as s:
    inside = launch()
outside = launch()[0]
ferrotrace.shutdown()
print(s.trace_id, inside[0], inside[1], outside)
"""


def test_subprocesses_get_the_session_as_traceparent(runner):
    proc = runner.run(SUBPROCESS)
    assert proc.returncode == 0, proc.stderr
    trace_id, inside, kept, outside = proc.stdout.split()
    records = read_trace(runner.tmp / "trace.jsonl")
    first, _ = sorted(
        (s for s in records if s["type"] == "span" and s["qualname"] == "child"),
        key=lambda s: int(s["start_unix_ns"]),
    )
    assert inside == f"00-{trace_id}-{first['span_id']}-01", "child of the launching call"
    assert kept == "mine", "an env the caller gave is passed on untouched"
    assert outside == "None"


STRESS = """
import threading, time, ferrotrace
ferrotrace.configure(output="trace.jsonl")

def leaf(i):
    return i

def inner_work(n):
    for i in range(n):
        leaf(i)

def worker(k):
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with ferrotrace.session(f"outer{k}"):
            inner_work(3)
            with ferrotrace.session(f"inner{k}"):
                t = threading.Thread(target=inner_work, args=(2,))
                t.start()
                inner_work(2)
                t.join()

threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
for t in threads: t.start()
for t in threads: t.join()
ferrotrace.shutdown()
"""


def test_many_threads_with_nested_sessions_keep_their_traces_apart(runner):
    records = runner.trace(STRESS, timeout=120)
    sessions = {r["span_id"]: r for r in records if r["type"] == "session_start"}
    spans = by_id(records)
    assert len(spans) > 1000
    (meta,) = [r for r in records if r["type"] == "meta"]
    assert meta["dropped"] == 0
    for s in spans.values():
        # Walk up to the session the span belongs to: same trace id all the way.
        parent = s["parent_span_id"]
        while parent in spans:
            assert spans[parent]["trace_id"] == s["trace_id"]
            parent = spans[parent]["parent_span_id"]
        assert parent in sessions, "every span hangs under a session"
        assert sessions[parent]["trace_id"] == s["trace_id"]
        assert not s.get("unfinished")
