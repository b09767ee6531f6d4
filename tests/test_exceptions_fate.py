"""Where an exception went: each span an exception left says which call caught it
(`caught_by`, the nearest recorded ancestor that did not end by that same exception) or that
it left the session (`escaped`), on every backend. The session's end record carries the
exception its block exited by.
"""

import sys

from conftest import TEST_BACKEND, read_trace, spans

PROGRAM = """
import asyncio, ferrotrace
ferrotrace.configure(output="trace.jsonl")

def leaf():
    raise ValueError("deep")

def middle():
    leaf()

def catcher():
    try:
        middle()
    except ValueError:
        pass
    return 1

def convert():
    try:
        leaf()
    except ValueError as e:
        raise KeyError("converted") from e

def outer_convert():
    try:
        convert()
    except KeyError:
        return 2

def cleanup():
    return 0

def with_finally():
    try:
        leaf()
    finally:
        cleanup()

def log(e):
    return str(e)

def relog():
    try:
        leaf()
    except ValueError as e:
        log(e)
        raise

def finally_catcher():
    try:
        with_finally()
    except ValueError:
        pass
    try:
        relog()
    except ValueError:
        pass

def same_frame():
    try:
        raise ValueError("here")
    except ValueError:
        return 3

def gen():
    yield 1
    raise LookupError("gen")

def consume():
    try:
        for _ in gen():
            pass
    except LookupError:
        return 4

def thrown():
    yield 1
    yield 2

def thrower():
    g = thrown()
    next(g)
    try:
        g.throw(OSError("thrown"))
    except OSError:
        return 5

def ends():
    yield 1

def drain():
    return list(ends())

async def inner():
    raise ValueError("inner")

async def boom():
    raise ValueError("task")

async def amain():
    try:
        await inner()
    except ValueError:
        pass
    t = asyncio.create_task(boom())
    try:
        await t
    except ValueError:
        pass

def run_async():
    asyncio.run(amain())

def top():
    middle()

with ferrotrace.session("ok"):
    catcher()
    outer_convert()
    finally_catcher()
    same_frame()
    consume()
    thrower()
    drain()
    run_async()
try:
    with ferrotrace.session("escape"):
        top()
except ValueError:
    print("caught outside")
"""


def trace(runner) -> tuple[list[dict], list[dict]]:
    proc = runner.run(PROGRAM, env={"FERROTRACE_BATCH_SIZE": "2"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "caught outside\n"
    records = read_trace(runner.tmp / "trace.jsonl")
    return records, spans(records)


def one(got: list[dict], name: str, **match) -> dict:
    (s,) = [s for s in got if s["qualname"] == name and all(s.get(k) == v for k, v in match.items())]
    return s


def raised(got: list[dict], name: str) -> list[dict]:
    return [s for s in got if s["qualname"] == name and "exception" in s]


def test_caught_two_levels_up_names_the_catcher_for_both_raising_spans(runner):
    _, got = trace(runner)
    catcher = one(got, "catcher")
    mid = one(got, "middle", parent_span_id=catcher["span_id"])
    lf = one(got, "leaf", parent_span_id=mid["span_id"])
    for s in (mid, lf):
        assert s["exception"] == {"type": "ValueError", "message": "deep", "caught_by": catcher["span_id"]}
    assert "exception" not in catcher


def test_raise_from_gives_each_exception_its_own_catcher(runner):
    _, got = trace(runner)
    outer = one(got, "outer_convert")
    conv = one(got, "convert")
    lf = one(got, "leaf", parent_span_id=conv["span_id"])
    assert lf["exception"]["type"] == "ValueError"
    assert lf["exception"]["caught_by"] == conv["span_id"]
    assert conv["exception"] == {"type": "KeyError", "message": "converted", "caught_by": outer["span_id"]}
    assert "exception" not in outer


def test_finally_and_reraise_propagate_to_the_real_catcher(runner):
    _, got = trace(runner)
    fc = one(got, "finally_catcher")
    wf = one(got, "with_finally")
    rl = one(got, "relog")
    for s in (
        wf,
        rl,
        one(got, "leaf", parent_span_id=wf["span_id"]),
        one(got, "leaf", parent_span_id=rl["span_id"]),
    ):
        assert s["exception"]["type"] == "ValueError"
        assert s["exception"]["caught_by"] == fc["span_id"], s
    # The calls made in the `finally` and `except` blocks raised nothing.
    assert "exception" not in one(got, "cleanup") and "exception" not in one(got, "log")


def test_caught_in_the_same_frame_is_no_raising_span(runner):
    _, got = trace(runner)
    assert "exception" not in one(got, "same_frame")


def test_generators(runner):
    _, got = trace(runner)
    # A generator that raises while its consumer's `for` resumes it.
    (g,) = raised(got, "gen")
    assert g["exception"]["type"] == "LookupError"
    assert g["exception"]["caught_by"] == one(got, "consume")["span_id"]
    # An exception thrown into a generator that does not catch it.
    (t,) = raised(got, "thrown")
    assert t["exception"]["type"] == "OSError"
    assert t["exception"]["caught_by"] == one(got, "thrower")["span_id"]
    # A generator that ends (StopIteration for its consumer) raised nothing.
    assert [s for s in got if s["qualname"] == "ends"] and not raised(got, "ends")
    assert "exception" not in one(got, "drain")


def test_async(runner):
    _, got = trace(runner)
    amain = [s for s in got if s["qualname"] == "amain"]
    (i,) = raised(got, "inner")
    # Awaited directly: the awaiting coroutine's segment caught it.
    assert i["exception"]["caught_by"] in {s["span_id"] for s in amain}
    assert i["exception"]["caught_by"] == i["parent_span_id"]
    # Raised out of its own task: it goes to the task, and no recorded call is named for
    # it (the awaiting coroutine caught it in its own frame: not a raising span).
    (b,) = raised(got, "boom")
    if sys.version_info >= (3, 12) or TEST_BACKEND != "setprofile":
        assert b["exception"]["type"] == "ValueError"  # a profile function < 3.12 cannot see it
    assert "caught_by" not in b["exception"] and "escaped" not in b["exception"]
    assert not any("exception" in s for s in amain)


def test_escaping_a_session_is_escaped_and_the_session_end_says_so(runner):
    records, got = trace(runner)
    t = one(got, "top")
    mid = one(got, "middle", parent_span_id=t["span_id"])
    lf = one(got, "leaf", parent_span_id=mid["span_id"])
    for s in (t, mid, lf):
        assert s["exception"] == {"type": "ValueError", "message": "deep", "escaped": True}
    ends = {r["tag"]: r for r in records if r["type"] == "session_end"}
    assert ends["escape"]["exception"] == {"type": "ValueError", "message": "deep", "escaped": True}
    assert "exception" not in ends["ok"]
    assert t["parent_span_id"] == ends["escape"]["span_id"]


def test_every_raising_span_has_a_single_fate(runner):
    _, got = trace(runner)
    ids = {s["span_id"] for s in got}
    for s in got:
        exc = s.get("exception")
        if exc is None or s["qualname"] == "boom":
            continue
        assert ("caught_by" in exc) != ("escaped" in exc), s
        if "caught_by" in exc:
            assert exc["caught_by"] in ids
