"""Sampling end to end: session sampling agrees with OpenTelemetry's TraceIdRatioBased
decision by decision, a parent's flag wins when honoured, unsampled sessions install
nothing, function sampling is deterministic across processes, and the depth and duration
limits hold."""

from __future__ import annotations

import json
import sys

from conftest import TEST_BACKEND, read_trace, spans

# The backends that serve the whole interpreter and leave the profile slot alone: auto picks
# sys.monitoring on 3.12+ and evalframe before.
INTERPRETER_WIDE = TEST_BACKEND != "setprofile"

SESSION_SAMPLING = """
import json, random
import ferrotrace
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

rng = random.Random(20261129)
report = {}
for rate in (0.01, 0.5, 0.99):
    ferrotrace.configure(output="trace.jsonl", sample_rate=rate, honor_parent_sampled=False)
    sampler = TraceIdRatioBased(rate)
    bound = sampler.bound
    ids = [rng.getrandbits(128) | (1 << 100) for _ in range(10_000)]
    # The ids on either side of the bound, and the extremes of the low 64 bits.
    ids += [(7 << 64) | low for low in (0, 1, bound - 1, bound, bound + 1, (1 << 64) - 1)]
    before = ferrotrace.stats()
    mismatches, kept = [], 0
    for tid in ids:
        header = f"00-{tid:032x}-{rng.getrandbits(64) | 1:016x}-00"
        with ferrotrace.session("s", traceparent=header) as s:
            assert s.trace_id == f"{tid:032x}"
            ours = s.sampled
        theirs = sampler.should_sample(None, tid, "s").decision.is_sampled()
        kept += ours
        if ours != theirs:
            mismatches.append(f"{tid:032x}")
    after = ferrotrace.stats()
    report[str(rate)] = {
        "n": len(ids),
        "kept": kept,
        "mismatches": mismatches[:5],
        "started": after["sessions_started"] - before["sessions_started"],
        "unsampled": after["sessions_unsampled"] - before["sessions_unsampled"],
    }
print(json.dumps(report))
"""


def test_session_sampling_matches_opentelemetry_trace_id_ratio_based(runner):
    proc = runner.run(SESSION_SAMPLING, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for rate, got in json.loads(proc.stdout).items():
        assert got["mismatches"] == [], (rate, got)
        assert got["n"] == 10_006
        assert abs(got["kept"] / got["n"] - float(rate)) < 0.02, (rate, got)
        # The decision was taken by the session path itself: it is what got recorded.
        assert (got["started"], got["unsampled"]) == (got["kept"], got["n"] - got["kept"])


def test_parent_sampled_flag_wins_when_honoured(runner):
    proc = runner.run("""
import ferrotrace
tid = "4bf92f3577b34da6a3ce929d0e0e4736"
def sampled(rate, flag, honor):
    ferrotrace.configure(output="trace.jsonl", sample_rate=rate, honor_parent_sampled=honor)
    with ferrotrace.session("s", traceparent=f"00-{tid}-00f067aa0ba902b7-{flag}") as s:
        with ferrotrace.session("child") as child:
            assert child.sampled == s.sampled
        return s.sampled
print([sampled(r, f, h) for r, f, h in
       [(0, "01", True), (1, "00", True), (0, "01", False), (1, "00", False)]])
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[True, False, False, True]"


UNSAMPLED = """
import json, sys
import ferrotrace

events = []
def python_profiler(frame, event, arg):
    events.append(event)

def tool_events():
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return None
    tool = next(t for t in range(6) if monitoring.get_tool(t) == "ferrotrace")
    return monitoring.get_events(tool)

def fresh_a():
    return 1
def fresh_b():
    return 2

ferrotrace.configure(output="trace.jsonl", sample_rate=0.0)
sys.setprofile(python_profiler)
out = {}
with ferrotrace.session("off") as s:
    d0 = ferrotrace.stats()["decisions"]
    fresh_a()
    out["off"] = {"sampled": s.sampled, "profiler_kept": sys.getprofile() is python_profiler,
                  "python_profiler_saw_calls": events.count("call") > 0,
                  "decisions": ferrotrace.stats()["decisions"] - d0, "events": tool_events()}
with ferrotrace.session("on", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") as s:
    d0 = ferrotrace.stats()["decisions"]
    fresh_b()
    out["on"] = {"sampled": s.sampled, "profiler_kept": sys.getprofile() is python_profiler,
                 "decisions": ferrotrace.stats()["decisions"] - d0, "events": tool_events()}
sys.setprofile(None)
out["stats"] = ferrotrace.stats()
print(json.dumps(out))
"""


def test_unsampled_session_records_nothing_and_installs_no_hook(runner):
    """An unsampled session leaves the profile slot and sys.monitoring untouched: the user's
    own profiler keeps running, and ferrotrace never even looks at a new code object."""
    proc = runner.run(UNSAMPLED)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    off, on = got["off"], got["on"]
    assert off["sampled"] is False and on["sampled"] is True
    assert off["decisions"] == 0 and on["decisions"] >= 1
    assert off["profiler_kept"] and off["python_profiler_saw_calls"]
    if sys.version_info >= (3, 12):
        # Both backends use ferrotrace's tool (setprofile only for PY_UNWIND), only while sampled.
        assert off["events"] == 0 and on["events"] != 0
    else:
        assert off["events"] is None and on["events"] is None
    if INTERPRETER_WIDE:
        assert on["profiler_kept"], f"the {TEST_BACKEND or 'auto'} backend leaves the profile slot alone"
    else:
        assert not on["profiler_kept"], "the setprofile backend takes the slot while sampled"
    records = read_trace(runner.tmp / "trace.jsonl")
    recorded = {s["qualname"] for s in spans(records)}
    assert "fresh_b" in recorded and "fresh_a" not in recorded
    starts = [r["tag"] for r in records if r["type"] == "session_start"]
    assert starts == ["on"]
    assert got["stats"]["sessions_unsampled"] == 1


def test_unsampled_auto_session_installs_nothing(runner):
    proc = runner.run(
        """
import sys, threading
import ferrotrace.auto
import ferrotrace
def work():
    return 1
work()
monitoring = getattr(sys, "monitoring", None)
tools = [t for t in range(6) if monitoring and monitoring.get_tool(t) == "ferrotrace"]
print(sys.getprofile(), getattr(threading, "_profile_hook", None),
      [monitoring.get_events(t) for t in tools], ferrotrace.current_session().sampled)
""",
        env={"FERROTRACE_OUTPUT": "trace.jsonl", "FERROTRACE_SAMPLE_RATE": "0"},
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    tools = "[0]" if sys.version_info >= (3, 12) else "[]"
    assert proc.stdout.split() == ["None", "None", tools, "False"]
    assert spans(read_trace(runner.tmp / "trace.jsonl")) == []


FUNCTION_SAMPLING = """
import json, sys
import ferrotrace
n = 10_000
source = "\\n".join(f"def f{i}():\\n    return {i}" for i in range(n))
namespace = {"__name__": "generated"}
exec(compile(source, "/generated/app.py", "exec"), namespace)
functions = [namespace[f"f{i}"] for i in range(n)]
ferrotrace.configure(output="trace.jsonl", function_sample_rate=float(sys.argv[1]))
with ferrotrace.session("fs"):
    for f in functions:
        f()
"""


def kept_functions(runner, rate: str) -> list[str]:
    proc = runner.run(FUNCTION_SAMPLING.replace("sys.argv[1]", repr(rate)))
    assert proc.returncode == 0, proc.stderr
    records = read_trace(runner.tmp / "trace.jsonl")
    got = [s["qualname"] for s in spans(records)]
    assert all(s["module"] == "generated" for s in spans(records))
    return got


def test_function_sampling_is_deterministic_and_keeps_the_rate(runner):
    first = kept_functions(runner, "0.3")
    second = kept_functions(runner, "0.3")
    assert len(first) == len(set(first)), "one span per call of a kept function"
    assert set(first) == set(second), "the same functions are kept in every process"
    assert abs(len(first) / 10_000 - 0.3) <= 0.02, len(first)
    wider = set(kept_functions(runner, "0.6"))
    assert set(first) < wider, "a higher rate keeps a superset"
    assert abs(len(wider) / 10_000 - 0.6) <= 0.02, len(wider)


def test_max_depth_limits_recorded_nesting(runner):
    records = runner.trace(
        """
import ferrotrace
def d(): return 1
def c(): return d()
def b(): return c()
def a(): return b() + b()
with ferrotrace.session("depth"):
    a()
""",
        env={"FERROTRACE_OUTPUT": "trace.jsonl", "FERROTRACE_MAX_DEPTH": "2"},
    )
    got = sorted((s["depth"], s["qualname"]) for s in spans(records))
    assert got == [(0, "a"), (1, "b"), (1, "b")]


def test_min_duration_drops_short_spans(runner):
    records = runner.trace(
        """
import time, ferrotrace
def slow():
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
def fast():
    return 1
def main():
    for _ in range(100):
        fast()
    slow()
with ferrotrace.session("min"):
    main()
""",
        env={"FERROTRACE_OUTPUT": "trace.jsonl", "FERROTRACE_MIN_DURATION_US": "20000"},
    )
    got = spans(records)
    assert sorted(s["qualname"] for s in got) == ["main", "slow"]
    assert all(s["duration_ns"] >= 20_000_000 for s in got)
