"""ferrotrace gives back the profiler it replaced; unsampled sessions install nothing."""

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
    names = [s["qualname"] for s in got]
    assert names.count("before") == 1
    assert names.count("after") == 1, "the call after the session ended is not recorded"
