"""A known call tree comes out with exact counts, parent links and consistent ids."""

from collections import Counter

from conftest import spans

PROGRAM = """
import ferrotrace
ferrotrace.configure(output="trace.jsonl")

def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)

class Parser:
    def parse(self, text):
        out = []
        for t in text.split():
            out.append(self.token(t))
        return out
    def token(self, t):
        return Checker().check(t)

class Checker:
    def check(self, t):
        return self.normalise(t)
    def normalise(self, t):
        return t.lower()

def main():
    fact(6)
    Parser().parse("A B C")

with ferrotrace.session("tree") as s:
    main()
"""


def test_call_tree_counts_links_and_durations(runner):
    records = runner.trace(PROGRAM)
    got = spans(records)
    counts = Counter(s["qualname"] for s in got)
    assert counts == {
        "main": 1,
        "fact": 6,
        "Parser.parse": 1,
        "Parser.token": 3,
        "Checker.check": 3,
        "Checker.normalise": 3,
    }
    session = next(r for r in records if r["type"] == "session_start")
    by_id = {s["span_id"]: s for s in got}
    assert len(by_id) == len(got), "span ids are unique"
    assert all(s["trace_id"] == session["trace_id"] for s in got)
    expected_parent = {
        "main": None,
        "Parser.parse": "main",
        "Parser.token": "Parser.parse",
        "Checker.check": "Parser.token",
        "Checker.normalise": "Checker.check",
    }
    for s in got:
        parent = by_id.get(s["parent_span_id"])
        if s["qualname"] == "main":
            assert s["parent_span_id"] == session["span_id"]
        elif s["qualname"] == "fact":
            assert parent["qualname"] in ("main", "fact")
        else:
            assert parent["qualname"] == expected_parent[s["qualname"]]
        assert s["module"] == "__main__" and s["file"].endswith("prog.py")
    fact_depths = sorted(s["depth"] for s in got if s["qualname"] == "fact")
    assert fact_depths == [1, 2, 3, 4, 5, 6]
    children: dict[str, int] = Counter()
    for s in got:
        children[s["parent_span_id"]] += s["duration_ns"]
    for s in got:
        assert s["duration_ns"] >= children.get(s["span_id"], 0)
        assert 0 <= s["self_ns"] <= s["duration_ns"]
    meta = records[-1]
    assert meta["type"] == "meta" and meta["recorded"] == meta["exported"] == len(got)
    assert meta["dropped"] == 0
