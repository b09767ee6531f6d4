"""Every span that ends by an exception carries its type and message, on every backend.

The workload counts, without making any call that a profiler could see, how often each of
its functions raised and what; the trace must say exactly that, span by span. A tiny batch
size puts batch boundaries right after raising spans, where they used to lose exceptions.
"""

import json
import os
import subprocess
import sys

from conftest import TEST_BACKEND, read_trace, spans

WORKLOAD = """
import json, ferrotrace
ferrotrace.configure(output="trace.jsonl")

RAISED = {}          # qualname -> [type, message, count], counted where it raises

class Declined(Exception):
    pass

def leaf(i):
    RAISED["leaf"][2] += 1
    raise Declined("card declined")

def middle(i):
    RAISED["middle"][2] += 1
    return leaf(i)

def outer(i):
    RAISED["outer"][2] += 1
    return middle(i)

def swallow_quietly(n):
    # pyparsing's MatchFirst: the handler makes no call, the loop calls again.
    caught = 0
    for i in range(n):
        try:
            outer(i)
        except Declined:
            caught += 1
    return caught

class Countdown:
    def __init__(self, n):
        self.n = n
    def __iter__(self):
        return self
    def __next__(self):
        if self.n == 0:
            RAISED["Countdown.__next__"][2] += 1
            raise StopIteration
        self.n -= 1
        return self.n

def iterate(n):
    total = 0
    for v in Countdown(n):
        total += v
    return total

def keys():
    yield 1
    RAISED["keys"][2] += 1
    raise KeyError("gone")

def drain():
    try:
        for _ in keys():
            pass
    except KeyError:
        return 0

def convert():
    try:
        leaf(0)
    except Declined:
        RAISED["convert"][2] += 1
        raise TypeError("converted")

def call_convert():
    try:
        convert()
    except TypeError:
        pass

def bad_key(x):
    RAISED["bad_key"][2] += 1
    raise ValueError("no key")

def through_c():
    try:
        sorted([3, 1, 2], key=bad_key)
    except ValueError:
        pass

def secret():
    RAISED["secret"][2] += 1
    raise RuntimeError("password=hunter2 " + "x" * 5000)

def call_secret():
    try:
        secret()
    except RuntimeError:
        pass

class Suppress:
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return True

def in_with():
    with Suppress():
        leaf(0)

for name, ty, msg in [
    ("leaf", "__main__.Declined", "card declined"),
    ("middle", "__main__.Declined", "card declined"),
    ("outer", "__main__.Declined", "card declined"),
    ("Countdown.__next__", "StopIteration", ""),
    ("keys", "KeyError", "gone"),
    ("convert", "TypeError", "converted"),
    ("bad_key", "ValueError", "no key"),
    ("secret", "RuntimeError", None),
]:
    RAISED[name] = [ty, msg, 0]

with ferrotrace.session("raising"):
    for _ in range(40):
        swallow_quietly(7)
        iterate(3)
        drain()
        call_convert()
        through_c()
        call_secret()
        in_with()

json.dump(RAISED, open("oracle.json", "w"))
"""


def test_each_raising_span_carries_what_the_program_saw(runner):
    got = spans(runner.trace(WORKLOAD, env={"FERROTRACE_BATCH_SIZE": "3"}))
    oracle = json.loads((runner.tmp / "oracle.json").read_text())
    raised = {}
    for s in got:
        if "exception" in s:
            raised.setdefault(s["qualname"], []).append(s["exception"])
    assert sorted(raised) == sorted(oracle), raised.keys()
    for name, (ty, msg, count) in oracle.items():
        assert len(raised[name]) == count, (name, len(raised[name]), count)
        for exc in raised[name]:
            assert exc["type"] == ty, (name, exc)
            if msg is not None:
                assert exc["message"] == msg, (name, exc)
    for exc in raised["secret"]:
        assert "hunter2" not in exc["message"]
        assert exc["message"].startswith("password=")
        assert len(exc["message"]) < 1000
    # A span that ended by an exception has no return value.
    assert all("return" not in s for s in got if "exception" in s)


SWALLOWED_BY_C = """
import ferrotrace
ferrotrace.configure(output="trace.jsonl")

class Lazy:
    def __getattr__(self, name):
        raise AttributeError(name)

def probe():
    return hasattr(Lazy(), "missing")

with ferrotrace.session("c"):
    probe()
"""


def test_exception_caught_by_c_code(runner):
    """`hasattr` catches the AttributeError in C, before any Python frame sees it. Every
    backend flags the span; all but setprofile before 3.12 also know the type (CPython
    gives a profile function no way to it there, which `ferrotrace config` says)."""
    got = spans(runner.trace(SWALLOWED_BY_C))
    span = next(s for s in got if s["qualname"] == "Lazy.__getattr__")
    assert "exception" in span
    probe = next(s for s in got if s["qualname"] == "probe")
    assert span["exception"]["caught_by"] == probe["span_id"]
    if sys.version_info >= (3, 12) or TEST_BACKEND != "setprofile":
        assert span["exception"] == {
            "type": "AttributeError",
            "message": "missing",
            "caught_by": probe["span_id"],
        }
    assert "exception" not in next(s for s in got if s["qualname"] == "probe")


OWN_TRACER = """
import sys, ferrotrace
ferrotrace.configure(output="trace.jsonl")
events = []

def tracer(frame, event, arg):
    if event == "exception":
        events.append(arg[0].__name__)
    return tracer

def boom():
    raise KeyError("k")

def quiet():
    try:
        boom()
    except KeyError:
        pass

with ferrotrace.session("t"):
    sys.settrace(tracer)
    quiet()
    sys.settrace(None)
    assert sys.gettrace() is None
    quiet()
    assert sys.gettrace() is None
print(events)
"""


def test_a_programs_own_trace_function_is_left_alone(runner):
    """setprofile before 3.12 borrows the trace slot while an exception unwinds, but never
    from a trace function the program installed, and never shows in `sys.gettrace()`."""
    proc = runner.run(OWN_TRACER)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['KeyError', 'KeyError']"
    got = spans(read_trace(runner.tmp / "trace.jsonl"))
    booms = [s for s in got if s["qualname"] == "boom"]
    assert len(booms) == 2 and all("exception" in s for s in booms)
    if sys.version_info >= (3, 12) or TEST_BACKEND != "setprofile":
        assert all(s["exception"]["type"] == "KeyError" for s in booms)
    else:
        # Untraced by the program: the exception is read at the `except` block.
        quiets = [s for s in got if s["qualname"] == "quiet"]
        assert booms[1]["exception"] == {
            "type": "KeyError",
            "message": "k",
            "caught_by": quiets[1]["span_id"],
        }


def test_config_says_where_setprofile_cannot_see_exceptions(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    out = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "config", "--set", "backend=setprofile"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    row = next(line for line in out.splitlines() if line.startswith("backend"))
    assert ("flagged without its type" in row) == (sys.version_info < (3, 12)), row
    assert "auto never picks setprofile" in row or sys.version_info >= (3, 12)
