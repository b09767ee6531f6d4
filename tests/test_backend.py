"""The backend the suite runs on is the one asked for; `auto` picks sys.monitoring on 3.12+,
which coexists with cProfile and stops calling ferrotrace for code it never records, and a
PEP 523 frame-evaluation function (`evalframe`) on 3.10/3.11."""

import sys

import pytest
from conftest import TEST_BACKEND, read_trace, spans

NEW = sys.version_info >= (3, 12)


def expected_backend() -> str:
    if TEST_BACKEND:
        return TEST_BACKEND
    return "monitoring" if NEW else "evalframe"


def test_the_requested_backend_records_the_calls(runner):
    records = runner.trace("""
import ferrotrace
from ferrotrace import _native
ferrotrace.configure(output="trace.jsonl")
def leaf():
    return 1
with ferrotrace.session("s"):
    leaf()
print(_native.backend_name())
""")
    assert [s["qualname"] for s in spans(records)] == ["leaf"]
    proc = runner.run("import ferrotrace; ferrotrace.configure(); print(ferrotrace._native.backend_name())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected_backend()


def test_monitoring_backend_needs_3_12(runner):
    proc = runner.run("""
import ferrotrace
try:
    ferrotrace.configure(backend="monitoring")
    print("configured", ferrotrace._native.backend_name())
except ValueError as e:
    print("error", e)
""")
    assert proc.returncode == 0, proc.stderr
    if NEW:
        assert proc.stdout.strip() == "configured monitoring"
    else:
        assert proc.stdout.startswith("error")
        assert 'backend="monitoring" is invalid' in proc.stdout and "3.12" in proc.stdout


@pytest.mark.skipif(not NEW, reason="sys.monitoring exists from CPython 3.12")
def test_filtered_code_is_switched_off_after_its_first_call(runner):
    """Excluded code answers DISABLE once per event location, however often it runs."""
    proc = runner.run(
        """
import ferrotrace
ferrotrace.configure(output="trace.jsonl", exclude=r"::skipped$")
def skipped():
    return 1
def kept():
    return skipped()
with ferrotrace.session("s"):
    for _ in range(5000):
        kept()
ferrotrace.flush()
st = ferrotrace.stats()
print(st["recorded"], st["disabled_locations"], st["decisions"])
""",
        env={"FERROTRACE_BACKEND": "monitoring"},
    )
    assert proc.returncode == 0, proc.stderr
    recorded, disabled, decisions = map(int, proc.stdout.split())
    assert recorded == 5000
    # PY_START and the one PY_RETURN location of `skipped`, plus ferrotrace's own excluded
    # frames (the session's __exit__): a handful, not one per call.
    assert 2 <= disabled <= 10, disabled
    assert decisions <= 5


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 12),
    reason="only 3.12 takes superinstructions from code when it is instrumented",
)
def test_monitored_code_keeps_its_superinstructions_and_other_tools_see_every_line(runner):
    """3.12 un-fuses a code object's superinstructions (LOAD_FAST__LOAD_FAST, ...) the first
    time any tool instruments it, which slows every later call even of filtered code.
    ferrotrace fuses them back, for recorded and filtered code alike; a tool that turns on
    LINE events afterwards still sees every line, and the results do not change."""
    proc = runner.run(
        """
import dis, sys
import ferrotrace
ferrotrace.configure(output="trace.jsonl", exclude=r"::skipped$")

def kept(x, y):
    a = x + y
    b = a + x
    return b

def skipped(x, y):
    a = x + y
    b = a + x
    return b

def never_run(x, y):
    a = x + y
    b = a + x
    return b

def fused(f):
    return [i.opname for i in dis.get_instructions(f, adaptive=True) if "__" in i.opname]

with ferrotrace.session("s"):
    for _ in range(3):
        kept(1, 2)
        skipped(1, 2)
    print(fused(never_run) != [], fused(kept) == fused(never_run), fused(skipped) == fused(never_run))

M = sys.monitoring
lines = []
M.use_tool_id(4, "other")
def on_line(code, line):
    lines.append((code.co_name, line - code.co_firstlineno))
M.register_callback(4, M.events.LINE, on_line)
M.set_events(4, M.events.LINE)
total = kept(1, 2) + skipped(1, 2)
M.set_events(4, 0)
print(total, sorted({l for l in lines if l[0] in ("kept", "skipped")}))
""",
        env={"FERROTRACE_BACKEND": "monitoring"},
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "True True True"
    every_line = [(f, n) for f in ("kept", "skipped") for n in (1, 2, 3)]
    assert second == f"8 {every_line}"
    names = [s["qualname"] for s in spans(read_trace(runner.tmp / "trace.jsonl"))]
    assert names.count("kept") == 3 and "skipped" not in names


@pytest.mark.skipif(not NEW, reason="sys.monitoring exists from CPython 3.12")
def test_monitoring_coexists_with_cprofile(runner):
    records = runner.trace(
        """
import cProfile, pstats, ferrotrace
ferrotrace.configure(output="trace.jsonl")
def work():
    return sum(range(10))
prof = cProfile.Profile()
prof.enable()
with ferrotrace.session("s"):
    work()
prof.disable()
names = {fn for (_, _, fn) in pstats.Stats(prof).stats}
assert "work" in names, names
""",
        env={"FERROTRACE_BACKEND": "monitoring"},
    )
    assert [s["qualname"] for s in spans(records)] == ["work"]


DIFFERENTIAL_PROGRAM = """
import asyncio, threading, ferrotrace
ferrotrace.configure(output="trace.jsonl", max_depth=40)

def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)

def gen(n):
    for i in range(n):
        yield fact(i)

def delegating():
    yield from gen(3)
    return "done"

class Fail(Exception):
    pass

def deep_raise(n):
    if n == 0:
        raise Fail("bottom")
    return deep_raise(n - 1)

def catches():
    try:
        deep_raise(3)
    except Fail:
        return "caught"

def closes_early():
    g = gen(10)
    next(g)
    g.close()

def thrown_into():
    g = gen(5)
    next(g)
    try:
        g.throw(Fail("thrown"))
    except Fail:
        pass

async def leaf(i):
    await asyncio.sleep(0)
    return fact(i)

async def main():
    return sum(await asyncio.gather(*(leaf(i) for i in range(3))))

def worker():
    with ferrotrace.session("worker"):
        fact(4)

with ferrotrace.session("main"):
    fact(6)
    list(delegating())
    catches()
    closes_early()
    thrown_into()
    asyncio.run(main())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
"""


def span_shape(records: list[dict]) -> list[tuple]:
    """Each span as (qualname, parent qualname, depth, exception type), sorted."""
    got = spans(records)
    by_id = {s["span_id"]: s for s in got}
    shape = []
    for s in got:
        parent = by_id.get(s.get("parent_span_id"))
        exc = (s.get("exception") or {}).get("type")
        shape.append((s["qualname"], parent["qualname"] if parent else None, s["depth"], exc))
    return sorted(shape, key=repr)


def test_both_backends_give_the_same_call_tree(runner):
    """Recursion, generators (yield from, close, throw), exceptions, asyncio tasks and a
    second thread come out identically from setprofile and from the interpreter-wide backend
    of this version (sys.monitoring on 3.12+, evalframe before)."""
    other = "monitoring" if NEW else "evalframe"
    shapes = {}
    for backend in ("setprofile", other):
        records = runner.trace(DIFFERENTIAL_PROGRAM, env={"FERROTRACE_BACKEND": backend})
        shapes[backend] = span_shape(records)
    assert len(shapes[other]) > 40
    if not NEW:
        # A profile function on 3.10/3.11 cannot see the exception leaving a frame (it finds
        # the type only when the exception is later handled through that frame); evalframe
        # gets it from CPython, so it names every one.
        assert all(exc for *_, exc in shapes[other] if exc is not None)
        shapes = {
            b: sorted(((*r, exc is not None) for *r, exc in got), key=repr) for b, got in shapes.items()
        }
    assert shapes[other] == shapes["setprofile"]


DEEP_RECURSION = """
import sys, threading, ferrotrace
ferrotrace.configure(output="trace.jsonl")
sys.setrecursionlimit(10**6)

def down(n):
    return 0 if n == 0 else 1 + down(n - 1)

def attempt(label):
    try:
        print(label, down(400_000))
    except RecursionError as e:
        print(label, "RecursionError", e)

with ferrotrace.session("deep"):
    attempt("main")
    threading.stack_size(1 << 20)
    t = threading.Thread(target=attempt, args=("thread",))
    t.start()
    t.join()
    print("after", down(50))
"""


@pytest.mark.skipif(NEW, reason="evalframe is the backend of CPython 3.10/3.11")
def test_evalframe_refuses_a_recursion_deeper_than_the_c_stack(runner):
    """A frame-evaluation function makes every Python call level take C stack: a recursion
    that a raised limit lets run past the end of the thread's stack gets RecursionError, on
    the main thread and on a thread with a small stack, instead of crashing the process."""
    proc = runner.run(DEEP_RECURSION, env={"FERROTRACE_BACKEND": "evalframe"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["main", "thread", "after"]
    for line in lines[:2]:
        assert "RecursionError" in line and "C stack" in line, line
    assert lines[2] == "after 50"
    names = [s["qualname"] for s in spans(read_trace(runner.tmp / "trace.jsonl"))]
    assert names.count("down") > 1000
