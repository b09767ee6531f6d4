"""Other profilers: ferrotrace chains the one set before it and gives it back, names one set
after it, and `auto` coexists with cProfile; unsampled sessions install nothing."""

import json
import sys
from collections import Counter

import pytest
from conftest import read_trace, spans


def test_cprofile_keeps_working_after_a_session(runner):
    proc = runner.run("""
import cProfile, pstats, io, sys, ferrotrace
from ferrotrace import _native
ferrotrace.configure(output="trace.jsonl")
def work():
    return sum(range(10))
def after():
    return 1
prof = cProfile.Profile()
prof.enable()
with ferrotrace.session("inner"):
    assert _native.hook_installed()
    work()
after()
prof.disable()
assert not _native.hook_installed()
stats = pstats.Stats(prof)
names = {fn for (_, _, fn) in stats.stats}
print("after" in names)
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True", "cProfile must record calls made after the session ends"


def test_unsampled_session_records_nothing_and_installs_no_hook(runner):
    records = runner.trace("""
import sys, ferrotrace
from ferrotrace import _native
ferrotrace.configure(output="trace.jsonl", sample_rate=0)
def f():
    return 1
with ferrotrace.session("off") as s:
    assert not s.sampled
    assert not _native.hook_installed()
    assert sys.getprofile() is None
    f()
st = ferrotrace.stats()
assert st["sessions_unsampled"] == 1 and st["recorded"] == 0, st
""")
    assert spans(records) == []
    assert [r["type"] for r in records] == ["meta"]


def test_invalid_setting_is_a_clear_value_error(runner):
    proc = runner.run("""
import ferrotrace
try:
    ferrotrace.configure(sample_rate=1.5)
except ValueError as e:
    print(e)
""")
    assert "sample_rate" in proc.stdout and "1.5" in proc.stdout and "from 0 to 1" in proc.stdout


def test_saving_and_restoring_the_profiler_keeps_tracing(runner):
    """Code that saves and puts back the profiler (`sys.setprofile(sys.getprofile())`) gets
    ferrotrace's hook object back, which keeps recording and never raises."""
    proc = runner.run("""
import sys, threading, ferrotrace
ferrotrace.configure(output="trace.jsonl")
def before():
    return 1
def after(x):
    return x + 1
def in_thread():
    return after(1)
with ferrotrace.session("s"):
    before()
    saved = sys.getprofile()
    sys.setprofile(saved)
    after(1)
    threading.setprofile(saved)
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
print("ok", after(2))
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "3"] and proc.stderr == ""
    got = spans(read_trace(runner.tmp / "trace.jsonl"))
    names = sorted(s["qualname"] for s in got)
    # The thread started in the session runs in it; the call after the session is not recorded.
    assert names == ["after", "after", "before", "in_thread"]


# A program that counts, with cProfile, the calls of `work` once untraced and once inside a
# ferrotrace session, and prints both counts. `START` is "before" (cProfile enabled, then
# the session starts) or "inside" (the session starts, then cProfile is enabled; it is
# disabled after the session ends).
PROFILED_TWICE = """
import cProfile, json, pstats, ferrotrace
from ferrotrace import _native
ferrotrace.configure(output="trace.jsonl")
START = {start!r}

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

class Box:
    def __init__(self, v):
        self.v = v
    def get(self):
        return self.v

def work():
    boxes = [Box(i) for i in range(20)]
    return fib(12) + sum(b.get() for b in boxes) + len(sorted([3, 1, 2]))

BUILTINS = {{f"<built-in method builtins.{{n}}>" for n in ("sorted", "len", "sum")}}

def counts(prof):
    out = {{}}
    for (file, _, name), (cc, nc, *_rest) in pstats.Stats(prof).stats.items():
        # The builtins `work` calls too, when ferrotrace's own exit (which calls some of them)
        # is outside the profile.
        if file == __file__ or (START == "before" and name in BUILTINS):
            out[name] = [cc, nc]
    return out

untraced = cProfile.Profile()
untraced.enable()
work()
untraced.disable()

traced = cProfile.Profile()
if START == "before":
    traced.enable()
    with ferrotrace.session("s"):
        hooked = _native.hook_installed()
        work()
    traced.disable()
else:
    with ferrotrace.session("s"):
        traced.enable()
        work()
        hooked = _native.hook_installed()
    traced.disable()
print(json.dumps({{"untraced": counts(untraced), "traced": counts(traced), "hooked": hooked,
                  "backend": _native.backend_name()}}))
"""


def run_profiled_twice(runner, start: str, backend: str) -> tuple[dict, list[dict], str]:
    proc = runner.run(PROFILED_TWICE.format(start=start), env={"FERROTRACE_BACKEND": backend})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    return got, read_trace(runner.tmp / "trace.jsonl"), proc.stderr


def assert_ferrotrace_recorded_work(records: list[dict]) -> None:
    names = Counter(s["qualname"] for s in spans(records))
    # fib(12) makes 465 calls; 20 boxes built and read, plus the generator expression.
    assert names["work"] == 1 and names["fib"] == 465, names
    assert names["Box.__init__"] == 20 and names["Box.get"] == 20, names
    assert meta(records)["profiler_conflicts"] == 0


def meta(records: list[dict]) -> dict:
    return next(r for r in records if r["type"] == "meta")


def test_cprofile_started_before_a_setprofile_session_still_counts_every_call(runner):
    """Under setprofile, cProfile (a C profile function before 3.12) is chained: it counts the
    traced code's calls exactly as untraced, and ferrotrace records them too."""
    got, records, stderr = run_profiled_twice(runner, "before", "setprofile")
    assert got["hooked"], "ferrotrace's hook must be installed beside cProfile"
    assert got["untraced"]["fib"][1] == 465, got
    assert got["traced"] == got["untraced"], "cProfile must see every call under ferrotrace"
    assert_ferrotrace_recorded_work(records)
    assert "Warning" not in stderr and "replaced" not in stderr, stderr
    if sys.version_info < (3, 12):
        assert meta(records)["profilers_chained"] == 1
        assert any("cProfile.Profile" in d for d in meta(records)["diagnostics"])


@pytest.mark.parametrize("start", ["before", "inside"])
def test_auto_backend_and_cprofile_both_get_complete_data(runner, start):
    """`auto` picks a backend that never uses the profile slot (evalframe before 3.12,
    monitoring on a free tool id from 3.12): cProfile enabled before or during a session
    counts every call, ferrotrace records every call, and nothing is reported."""
    got, records, stderr = run_profiled_twice(runner, start, "auto")
    assert got["backend"] == ("monitoring" if sys.version_info >= (3, 12) else "evalframe")
    assert got["traced"] == got["untraced"]
    assert_ferrotrace_recorded_work(records)
    assert meta(records)["diagnostics"] == [] and stderr == "", stderr


PY_PROFILER = """
import json, sys, ferrotrace
ferrotrace.configure(output="trace.jsonl")
events = []
on = False

def prof(frame, event, arg):
    global on
    if event in ("call", "return"):
        name = frame.f_code.co_name
    else:
        name = getattr(arg, "__name__", "?")
    if event == "call" and name == "begin":
        on = True
    if on:
        events.append((event, name))
    if event == "return" and name == "end":
        on = False

def begin():
    pass

def end():
    pass

def leaf(x):
    return x * 2

def fails():
    raise KeyError("k")

def work():
    total = sum(leaf(i) for i in range(5))
    try:
        fails()
    except KeyError:
        total += len("abc")
    return total

def region():
    begin()
    work()
    end()

sys.setprofile(prof)
region()
sys.setprofile(None)
untraced, events = events, []

sys.setprofile(prof)
with ferrotrace.session("s"):
    region()
restored = sys.getprofile() is prof
sys.setprofile(None)
print(json.dumps({"untraced": untraced, "traced": events, "restored": restored}))
"""


def test_python_profiler_set_before_gets_every_event_and_is_put_back(runner):
    proc = runner.run(PY_PROFILER, env={"FERROTRACE_BACKEND": "setprofile"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["untraced"], "the profiler saw the region untraced"
    assert got["traced"] == got["untraced"], "the chained profiler sees every event"
    assert got["restored"], "the profiler is put back when the session ends"
    records = read_trace(runner.tmp / "trace.jsonl")
    names = Counter(s["qualname"] for s in spans(records))
    assert names["leaf"] == 5 and names["fails"] == 1 and names["work"] == 1, names
    assert meta(records)["profilers_chained"] == 1
    assert meta(records)["profiler_conflicts"] == 0
    assert proc.stderr == ""


def test_a_profiler_set_after_ferrotrace_is_named_once_and_left_in_place(runner):
    proc = runner.run(
        """
import sys, ferrotrace
ferrotrace.configure(output="trace.jsonl")
seen = []
def late(frame, event, arg):
    if event == "call":
        seen.append(frame.f_code.co_name)
def before():
    return 1
def after():
    return 2
for _ in range(2):
    with ferrotrace.session("s"):
        before()
        sys.setprofile(late)
        after()
    assert sys.getprofile() is late, "the later profiler is never displaced"
    sys.setprofile(None)
print(seen.count("after"))
""",
        env={"FERROTRACE_BACKEND": "setprofile"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2"], "the later profiler gets its events"
    warnings = [line for line in proc.stderr.splitlines() if "replaced" in line]
    assert len(warnings) == 1, proc.stderr
    assert "__main__.late" in warnings[0] and "setprofile hook" in warnings[0]
    records = read_trace(runner.tmp / "trace.jsonl")
    names = [s["qualname"] for s in spans(records)]
    assert names.count("before") == 2 and "after" not in names
    m = meta(records)
    assert m["profiler_conflicts"] == 1
    assert len(m["diagnostics"]) == 1 and "__main__.late" in m["diagnostics"][0]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="cProfile uses sys.monitoring from 3.12")
def test_cprofile_enabled_inside_a_setprofile_session_is_named(runner):
    got, records, stderr = run_profiled_twice(runner, "inside", "setprofile")
    assert got["traced"] == got["untraced"], "cProfile, enabled later, keeps its data"
    assert not got["hooked"], "cProfile took the profile function"
    warnings = [line for line in stderr.splitlines() if "replaced" in line]
    assert len(warnings) == 1 and "cProfile.Profile" in warnings[0], stderr
    assert meta(records)["profiler_conflicts"] == 1
    assert "cProfile.Profile" in meta(records)["diagnostics"][0]


def test_a_raising_chained_profiler_is_removed_as_without_ferrotrace(runner):
    proc = runner.run(
        """
import sys, ferrotrace
ferrotrace.configure(output="trace.jsonl")
def prof(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "boom":
        raise RuntimeError("profiler failed")
def boom():
    return 1
def after():
    return 2
sys.setprofile(prof)
with ferrotrace.session("s"):
    try:
        boom()
    except RuntimeError as e:
        print("raised", e)
    after()
print(sys.getprofile())
""",
        env={"FERROTRACE_BACKEND": "setprofile"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["raised profiler failed", "None"]
    records = read_trace(runner.tmp / "trace.jsonl")
    names = [s["qualname"] for s in spans(records)]
    assert "after" in names, "ferrotrace keeps recording after the chained profiler is gone"
    assert "boom" not in names, "a call the profiler failed never ran"
    assert any("__main__.prof" in d and "raised" in d for d in meta(records)["diagnostics"])
