"""Suspended frames nest under whoever resumed them; exceptions mark every frame they leave."""

import sys

from conftest import TEST_BACKEND, spans

GENERATORS = """
import asyncio, ferrotrace
ferrotrace.configure(output="trace.jsonl")

def numbers():
    yield 1
    yield 2

def consume_first():
    return next(gen)

def consume_rest():
    return list(gen)

async def inner():
    await asyncio.sleep(0)
    return 1

async def outer():
    return await inner()

with ferrotrace.session("gen"):
    gen = numbers()
    consume_first()
    consume_rest()
    asyncio.run(outer())
"""


def test_generator_and_coroutine_segments_nest(runner):
    got = spans(runner.trace(GENERATORS))
    by_id = {s["span_id"]: s for s in got}
    segments = [s for s in got if s["qualname"] == "numbers"]
    assert len(segments) == 3, "start->yield 1, resume->yield 2, resume->end"
    parents = sorted(by_id[s["parent_span_id"]]["qualname"] for s in segments)
    assert parents == ["consume_first", "consume_rest", "consume_rest"]
    inner = [s for s in got if s["qualname"] == "inner"]
    outer = [s for s in got if s["qualname"] == "outer"]
    assert len(inner) == 2 and len(outer) == 2
    for s in inner:
        assert by_id[s["parent_span_id"]]["qualname"] == "outer"
        assert s["depth"] == by_id[s["parent_span_id"]]["depth"] + 1


EXCEPTIONS = """
import ferrotrace
ferrotrace.configure(output="trace.jsonl")

class Declined(Exception):
    pass

def charge():
    raise Declined("card declined")

def pay():
    return charge()

def checkout():
    return pay()

def safe():
    try:
        checkout()
    except Declined as exc:
        log(exc)

def log(exc):
    return exc

with ferrotrace.session("exc"):
    safe()
try:
    with ferrotrace.session("exc2"):
        checkout()
except Declined:
    pass
"""


def test_exception_marks_the_three_frames_it_leaves(runner):
    got = spans(runner.trace(EXCEPTIONS))
    failed = [s for s in got if "exception" in s]
    assert sorted(s["qualname"] for s in failed) == ["charge", "charge", "checkout", "checkout", "pay", "pay"]
    safe = next(s for s in got if s["qualname"] == "safe")
    for s in failed:
        assert (s["exception"]["type"], s["exception"]["message"]) == ("__main__.Declined", "card declined")
    # In session "exc" `safe` caught it; in "exc2" it left the session.
    caught = [s for s in failed if s["trace_id"] == safe["trace_id"]]
    assert len(caught) == 3 and all(s["exception"]["caught_by"] == safe["span_id"] for s in caught)
    escaped = [s for s in failed if s not in caught]
    assert len(escaped) == 3 and all(s["exception"].get("escaped") is True for s in escaped)
    assert all("caught_by" not in s["exception"] for s in escaped)
    ok = {s["qualname"] for s in got if "exception" not in s}
    assert ok == {"safe", "log"}


def test_exception_swallowed_without_a_call_is_still_flagged(runner):
    """`except: pass` gives no event inside the handler: the spans are still marked as
    failed. The type is exact wherever CPython reports it: sys.monitoring on 3.12+, and the
    evalframe backend (the default on 3.10/3.11); only a profile function before 3.12 lacks it."""
    got = spans(
        runner.trace("""
import ferrotrace
ferrotrace.configure(output="trace.jsonl")
def boom():
    raise KeyError("k")
def quiet():
    try:
        boom()
    except KeyError:
        pass
with ferrotrace.session("q"):
    quiet()
""")
    )
    boom = next(s for s in got if s["qualname"] == "boom")
    quiet = next(s for s in got if s["qualname"] == "quiet")
    assert "exception" in boom
    assert boom["exception"]["caught_by"] == quiet["span_id"]
    if sys.version_info >= (3, 12) or TEST_BACKEND != "setprofile":
        assert boom["exception"] == {"type": "KeyError", "message": "k", "caught_by": quiet["span_id"]}
    assert "exception" not in quiet
