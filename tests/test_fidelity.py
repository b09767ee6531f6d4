"""The CI subset of the fidelity suite (python -m tests.fidelity runs the whole corpus): a few
CPython regression modules, one third-party suite from its sdist, imports, and the span-count
oracle, each untraced and under `ferrotrace run --capture all` with the standard library traced,
on this interpreter and the backend CI chose. Outcomes must be identical."""

from __future__ import annotations

import argparse
import os
import sys

import pytest
from fidelity import __main__ as fidelity
from fidelity import oracle

BACKEND = os.environ.get("FERROTRACE_BACKEND") or fidelity.backends_of(fidelity.version_of(sys.executable))[0]
ARGS = argparse.Namespace(ci=True, only=None, kinds=["regrtest", "lib", "import"])
_plain: dict = {}


def _cases():
    try:
        return fidelity.cases(sys.executable, ARGS)
    except Exception as exc:  # the sdist could not be fetched: still run the rest
        print(f"fidelity: library suite unavailable: {exc}", file=sys.stderr)
        ARGS.kinds = ["regrtest", "import"]
        return fidelity.cases(sys.executable, ARGS)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"{c.kind}-{c.name}")
def test_identical_outcome(case):
    result = fidelity.run_case(case, sys.executable, BACKEND, _plain, confirm=True)
    assert result.same, f"{case.name} on {BACKEND}: " + "; ".join(result.why)


def test_span_counts_match_setprofile_oracle():
    ok, why, _ = oracle.check(sys.executable, BACKEND)
    assert ok, why
