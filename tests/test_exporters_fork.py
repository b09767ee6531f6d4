"""After os.fork() and in multiprocessing fork workers, each process exports its own spans,
to its own files, once, and nothing hangs, even when the fork happens while other threads
are busy tracing."""

from __future__ import annotations

import json
from collections import Counter

from conftest import read_trace

FORK_PROGRAM = """
import json, os, sys, threading, ferrotrace
ferrotrace.configure(exporter="jsonl,chrome", output="trace.{pid}.jsonl", chrome_output="chrome.json")

def leaf(i):
    return i

def work(n):
    for i in range(n):
        leaf(i)

def busy(started, stop):
    # Keeps tracing (and the export thread busy) while the main thread forks. Its total is
    # bounded (at most 50,000 spans, well under FERROTRACE_MAX_QUEUE) so that a slow machine
    # cannot make the queue overflow: this test is about forks, not about drops.
    with ferrotrace.session("busy"):
        for _ in range(1000):
            work(50)
            started.set()
            if stop.is_set():
                break

started, stop = threading.Event(), threading.Event()
bg = threading.Thread(target=busy, args=(started, stop))
bg.start()
started.wait()
children = []
with ferrotrace.session("parent") as s:
    work(10)
    for k in range(4):
        pid = os.fork()
        if pid == 0:
            work(100 + k)
            sys.exit(0)  # leaves the inherited session in the child: its end is the parent's
        children.append(pid)
    work(10)
stop.set()
bg.join()
for pid in children:
    assert os.waitpid(pid, 0)[1] == 0
print(json.dumps({"children": children, "trace_id": s.trace_id, "span_id": s.span_id}))
"""


def test_four_forked_children_each_write_their_own_trace(runner):
    proc = runner.run(FORK_PROGRAM, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    parent = next(
        p for p in runner.tmp.glob("trace.*.jsonl") if int(p.name.split(".")[1]) not in out["children"]
    )
    files = {int(p.name.split(".")[1]): read_trace(p) for p in runner.tmp.glob("trace.*.jsonl")}
    assert len(files) == 5 and set(out["children"]) < set(files)
    all_ids = Counter()
    for pid, records in files.items():
        assert all(r["pid"] == pid for r in records)
        assert records[-1]["type"] == "meta" and records[-1]["dropped"] == 0
        spans = [r for r in records if r["type"] == "span"]
        all_ids.update(r["span_id"] for r in records if r["type"] in ("span", "session_end"))
        if pid in out["children"]:
            k = out["children"].index(pid)
            leaves = [s for s in spans if s["qualname"] == "leaf" and s["trace_id"] == out["trace_id"]]
            assert len(leaves) == 100 + k, "the child's own work, in the inherited trace"
            assert not [s for s in spans if s["trace_id"] != out["trace_id"]], "nothing of the busy thread"
            ends = [r for r in records if r["type"] == "session_end"]
            assert not ends, "the parent's session is ended by the parent only"
    assert max(all_ids.values()) == 1, "no span id exported twice"
    parent_records = read_trace(parent)
    (end,) = [r for r in parent_records if r["type"] == "session_end" and r["tag"] == "parent"]
    assert end["span_id"] == out["span_id"]
    parent_leaves = [r for r in parent_records if r["type"] == "span" and r["trace_id"] == out["trace_id"]]
    assert sum(r["qualname"] == "leaf" for r in parent_leaves) == 20
    chrome = {p.name for p in runner.tmp.glob("chrome*.json")}
    assert chrome == {"chrome.json"} | {f"chrome.{pid}.json" for pid in out["children"]}, (
        "chrome output per pid"
    )
    for name in chrome:
        json.loads((runner.tmp / name).read_text())


POOL_PROGRAM = """
import json, multiprocessing, os, ferrotrace
ferrotrace.configure(output="trace.{pid}.jsonl")

def leaf(i):
    return i

def task(n):
    for i in range(n):
        leaf(i)
    return os.getpid()

if __name__ == "__main__":
    with ferrotrace.session("pool"):
        pool = multiprocessing.get_context("fork").Pool(3)
        pids = pool.map(task, [40] * 12, chunksize=1)
        pool.close()  # workers leave normally (the context manager would SIGTERM them)
        pool.join()
    print(json.dumps(sorted(set(pids))))
"""


def test_multiprocessing_fork_pool_workers_flush_their_spans(runner):
    proc = runner.run(POOL_PROGRAM, timeout=30)
    assert proc.returncode == 0, proc.stderr
    workers = json.loads(proc.stdout)
    files = {int(p.name.split(".")[1]): read_trace(p) for p in runner.tmp.glob("trace.*.jsonl")}
    assert set(workers) < set(files), "every worker that ran a task wrote its trace"
    tasks = Counter()
    ids = Counter()
    for pid, records in files.items():
        assert records[-1]["type"] == "meta", f"{pid} exported its final record"
        spans = [r for r in records if r["type"] == "span"]
        ids.update(r["span_id"] for r in spans)
        tasks[pid] = sum(s["qualname"] == "task" for s in spans)
        if pid in workers:
            assert sum(s["qualname"] == "leaf" for s in spans) == 40 * tasks[pid]
    assert sum(tasks.values()) == 12, "every task traced once, in the worker that ran it"
    assert max(ids.values()) == 1
