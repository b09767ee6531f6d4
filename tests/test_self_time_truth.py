"""ferrotrace's time is not the program's: the time spent capturing previews is taken out of
the self time of the call it fell in, and reported as ferrotrace's own in the meta record."""

import pytest
from conftest import spans

PROGRAM = """
import ferrotrace
ferrotrace.configure(output="trace.jsonl")

def take(data, more):
    return data

def work(data):
    for _ in range(50):
        take(data, [data] * 20)
    return len(data)

with ferrotrace.session("s"):
    work("x" * 100_000)
"""


@pytest.mark.parametrize("capture", ["all", "none"])
def test_capture_time_is_not_the_callers_self_time(runner, capture):
    records = runner.trace(PROGRAM, env={"FERROTRACE_CAPTURE": capture})
    got = spans(records)
    work = next(s for s in got if s["qualname"] == "work")
    takes = [s for s in got if s["qualname"] == "take"]
    assert len(takes) == 50
    children = sum(s["duration_ns"] for s in takes)
    # Each figure is converted from clock ticks on its own: allow a nanosecond of rounding each.
    unaccounted = work["duration_ns"] - children - work["self_ns"]
    meta = next(r for r in records if r["type"] == "meta")
    if capture == "none":
        assert abs(unaccounted) <= len(takes) + 1, unaccounted
        assert meta["capture_overhead_ns"] == 0
        assert "args" not in takes[0]
    else:
        assert "args" in takes[0] and "return" in takes[0]
        # The 100 argument and 50 return previews built inside `work` are not its time.
        assert unaccounted > 0
        assert meta["capture_overhead_ns"] >= unaccounted
    for s in takes:
        assert 0 <= s["self_ns"] <= s["duration_ns"]
