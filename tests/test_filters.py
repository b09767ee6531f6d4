"""Filters end to end: include/exclude over `module::qualname`, file and cwd rules, the
built-in excludes, and one decision per code object however often the code runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TEST_BACKEND, read_trace, spans

FILES = {
    "proj/shop/__init__.py": """
        def init():
            return "ready"
    """,
    "proj/shop/util.py": """
        import json

        def fmt(data):
            return json.dumps(data)
    """,
    "proj/shop/cart.py": """
        from shop import util

        class Cart:
            def __init__(self):
                self.items = []

            def add(self, item):
                self.items.append(item)

            def total(self):
                return sum(self.items)

            def summary(self):
                return util.fmt({"n": len(self.items), "total": self.total()})
    """,
    "proj/shop/payment/__init__.py": "",
    "proj/shop/payment/gateway.py": """
        from shop import util

        class Gateway:
            def authorize(self, amount):
                return amount > 0

        def charge(amount):
            return util.fmt({"charged": amount}) if Gateway().authorize(amount) else None
    """,
    "outside/extlib.py": """
        def ext_call(callback):
            return callback()
    """,
    # Everything is imported before tracing starts, so only calls are judged here.
    "proj/main.py": """
        import os, sys
        sys.path.insert(0, os.environ["OUTSIDE_DIR"])
        import extlib
        import shop
        from shop.cart import Cart
        from shop.payment import gateway
        import ferrotrace.auto

        def checkout(n):
            shop.init()
            cart = Cart()
            for i in range(n):
                cart.add(i)
            cart.summary()
            gateway.charge(cart.total())
            return extlib.ext_call(cart.total)

        checkout(3)
    """,
}

EVERYTHING = {
    "__main__::checkout",
    "shop::init",
    "shop.cart::Cart.__init__",
    "shop.cart::Cart.add",
    "shop.cart::Cart.total",
    "shop.cart::Cart.summary",
    "shop.util::fmt",
    "shop.payment.gateway::charge",
    "shop.payment.gateway::Gateway.authorize",
    "extlib::ext_call",
}
GATEWAY = {"shop.payment.gateway::charge", "shop.payment.gateway::Gateway.authorize"}
CART = {n for n in EVERYTHING if "::Cart." in n}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def run_in(project: Path, script: str, settings: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    if TEST_BACKEND:
        env["FERROTRACE_BACKEND"] = TEST_BACKEND
    env.update(OUTSIDE_DIR=str(project / "outside"), FERROTRACE_OUTPUT="trace.jsonl")
    env.update(settings)
    return subprocess.run(
        [sys.executable, script],
        cwd=project / "proj",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def traced(project: Path, **settings: str) -> list[dict]:
    proc = run_in(project, "main.py", {f"FERROTRACE_{k.upper()}": v for k, v in settings.items()})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return spans(read_trace(project / "proj" / "trace.jsonl"))


def names(records: list[dict]) -> set[str]:
    return {f"{s['module']}::{s['qualname']}" for s in records}


@pytest.mark.parametrize(
    "settings,expected",
    [
        ({}, EVERYTHING),
        # `^shop\.` is over module::qualname: the package's own `shop::init` does not match.
        ({"include": r"^shop\."}, {n for n in EVERYTHING if n.startswith("shop.")}),
        ({"include": r"::Cart\."}, CART),
        (
            {"exclude": r"Cart\.(add|total)$|^extlib::"},
            EVERYTHING - {"shop.cart::Cart.add", "shop.cart::Cart.total", "extlib::ext_call"},
        ),
        (
            {"include": "^shop", "exclude": "gateway"},
            {n for n in EVERYTHING if n.startswith("shop")} - GATEWAY,
        ),
        ({"exclude_files": "/payment/"}, EVERYTHING - GATEWAY),
        ({"capture_only_cwd": "1"}, EVERYTHING - {"extlib::ext_call"}),
        ({"capture_only_cwd": "1", "include": "Cart"}, CART),
    ],
    ids=[
        "defaults",
        "include-module",
        "include-qualname",
        "exclude",
        "include-and-exclude",
        "exclude-files",
        "only-cwd",
        "only-cwd-and-include",
    ],
)
def test_exactly_the_selected_functions_are_recorded(project, settings, expected):
    """Each case is the exact set: no json/encoder (stdlib) span, no ferrotrace span, so user
    filters keep the built-in excludes."""
    assert names(traced(project, **settings)) == expected


def test_only_cwd_is_not_fooled_by_dot_dot(project):
    """`proj/../outside/extlib.py` starts with `proj/` as text but is not under it."""
    settings = {"FERROTRACE_CAPTURE_ONLY_CWD": "1", "OUTSIDE_DIR": f"{project}/proj/../outside"}
    proc = run_in(project, "main.py", settings)
    assert proc.returncode == 0, proc.stderr
    assert names(spans(read_trace(project / "proj" / "trace.jsonl"))) == EVERYTHING - {"extlib::ext_call"}


def test_callees_of_an_excluded_function_are_judged_on_their_own(project):
    got = traced(project, exclude="^extlib::")
    assert names(got) == EVERYTHING - {"extlib::ext_call"}
    checkout = next(s for s in got if s["qualname"] == "checkout")
    totals = [s for s in got if s["qualname"] == "Cart.total"]
    # Called from summary, from checkout, and through the excluded ext_call: that one hangs
    # from the nearest recorded caller.
    assert len(totals) == 3
    assert sum(s["parent_span_id"] == checkout["span_id"] for s in totals) == 2
    assert all(
        s["depth"] == checkout["depth"] + 1 for s in totals if s["parent_span_id"] == checkout["span_id"]
    )


def test_explicit_include_wins_over_builtin_excludes_not_user_exclude(project):
    """Include means include: `^json` records json's functions though the standard library
    is excluded by default; the user's exclude still wins; ferrotrace is never recorded,
    even by an include that matches it."""
    got = names(traced(project, include=r"^(json|shop\.util)|^ferrotrace|_lifecycle"))
    assert {"shop.util::fmt", "json::dumps", "json.encoder::JSONEncoder.encode"} <= got
    assert not {n for n in got if n.startswith("ferrotrace")}
    assert got <= {n for n in got if n.startswith(("json", "shop.util"))}
    excluded = names(traced(project, include=r"^(json|shop\.util)", exclude=r"::JSONEncoder\."))
    assert "json::dumps" in excluded and not {n for n in excluded if "JSONEncoder." in n}


def test_exclude_defaults_0_records_the_standard_library(project):
    everything = names(traced(project, exclude_defaults="0"))
    assert everything >= EVERYTHING
    assert {"json::dumps", "json.encoder::JSONEncoder.encode"} <= everything
    only_stdlib = names(traced(project, exclude_defaults="0", exclude="^(shop|extlib|__main__)"))
    assert "json::dumps" in only_stdlib and not only_stdlib & EVERYTHING


DECISIONS = """
import json
import os, sys
sys.path.insert(0, os.environ["OUTSIDE_DIR"])
import extlib
import ferrotrace
from shop.cart import Cart

def make_adder(k):
    def adder(x):
        return x + k
    return adder

def ticks(n):
    for i in range(n):
        yield i

def workload(rounds):
    calls = 0
    for r in range(rounds):
        cart = Cart()
        for i in ticks(5):
            cart.add(i)
            calls += 1
        cart.total()
        add = make_adder(r)
        add(1)
        extlib.ext_call(cart.total)
        calls += 7  # Cart.__init__, ticks, total, make_adder, adder, ext_call, total
    return calls

# The code objects the workload runs: a closure made anew each round is one code object.
codes = {f.__code__ for f in (workload, Cart.__init__, Cart.add, Cart.total, make_adder,
                              make_adder(0), make_adder(1), ticks, extlib.ext_call)}
ferrotrace.configure(exclude=r"Cart\\.add$|^extlib::")
with ferrotrace.session("decisions"):
    ferrotrace.stats()
    before = ferrotrace.stats()["decisions"]
    calls = workload(50)
    first = ferrotrace.stats()["decisions"]
    calls += workload(50)
    second = ferrotrace.stats()["decisions"]
print(json.dumps({"codes": len(codes), "calls": calls, "first": first - before,
                  "second": second - first}))
"""


def test_one_decision_per_code_object_not_per_call(project):
    (project / "proj" / "decisions.py").write_text(DECISIONS)
    proc = run_in(project, "decisions.py", {})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["codes"] == 8
    assert got["calls"] > 50 * got["codes"]
    # Included and excluded code alike is decided once, on first sight.
    assert got["first"] == got["codes"], got
    assert got["second"] == 0, got
    recorded = spans(read_trace(project / "proj" / "trace.jsonl"))
    counts: dict[str, int] = {}
    for s in recorded:
        counts[s["qualname"]] = counts.get(s["qualname"], 0) + 1
    # Every call of included code is a span: two workloads of 50 rounds.
    assert counts["workload"] == 2
    # On CPython 3.10 (no co_qualname) the closure's name is found through make_adder's code.
    assert counts["Cart.total"] == 200 and counts["make_adder.<locals>.adder"] == 100
    assert "Cart.add" not in counts and "ext_call" not in counts
