"""`ferrotrace report`: one streaming pass over files, directories or globs; a recursive
function's total time is that of its outermost calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import read_trace, spans

PROGRAM = """
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def even(n):
    return True if n == 0 else odd(n - 1)

def odd(n):
    return False if n == 0 else even(n - 1)

def main():
    fib(12)
    fib(8)
    even(20)

main()
"""


def _ferrotrace(args, cwd):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_") or k == "FERROTRACE_BACKEND"
    }
    return subprocess.run(
        [sys.executable, "-m", "ferrotrace", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _rows(stdout: str) -> dict[str, tuple[float, float, int]]:
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("__main__."):
            rows[parts[3]] = (float(parts[0]), float(parts[1]), int(parts[2]))
    return rows


def test_report_counts_outermost_calls_of_recursive_functions(tmp_path):
    (tmp_path / "prog.py").write_text(PROGRAM)
    assert _ferrotrace(["run", "prog.py"], tmp_path).returncode == 0
    calls = spans(read_trace(tmp_path / "ferrotrace.jsonl"))
    by_id = {s["span_id"]: s for s in calls}
    out = _ferrotrace(["report", "ferrotrace.jsonl", "--top", "50"], tmp_path)
    assert out.returncode == 0, out.stderr
    rows = _rows(out.stdout)
    for name in ("fib", "even", "odd"):
        mine = [s for s in calls if s["qualname"] == name]
        outermost = [s for s in mine if by_id[s["parent_span_id"]]["qualname"] != name]
        if name != "fib":  # even/odd alternate: each one's outer calls are those without itself above
            outermost = []
            for s in mine:
                p = by_id.get(s["parent_span_id"])
                while p is not None and p["qualname"] != name:
                    p = by_id.get(p["parent_span_id"])
                if p is None:
                    outermost.append(s)
        total, self_ms, count = rows[f"__main__.{name}"]
        assert count == len(mine)
        assert abs(total - sum(s["duration_ns"] for s in outermost) / 1e6) < 0.002
        assert abs(self_ms - sum(s["self_ns"] for s in mine) / 1e6) < 0.002
    assert (
        len([s for s in calls if s["qualname"] == "fib" and by_id[s["parent_span_id"]]["qualname"] != "fib"])
        == 2
    )


def test_report_reads_a_directory_and_a_glob_as_one_run(tmp_path):
    (tmp_path / "prog.py").write_text(PROGRAM)
    assert (
        _ferrotrace(
            ["run", "-o", "runs/a.jsonl", "prog.py"], tmp_path.joinpath("runs").mkdir() or tmp_path
        ).returncode
        == 0
    )
    assert _ferrotrace(["run", "-o", "runs/b.jsonl", "prog.py"], tmp_path).returncode == 0
    one = _rows(_ferrotrace(["report", "runs/a.jsonl"], tmp_path).stdout)
    for spec in (["runs"], ["runs/*.jsonl"], ["runs/a.jsonl", "runs/b.jsonl"]):
        out = _ferrotrace(["report", *spec], tmp_path)
        assert out.returncode == 0, out.stderr
        assert _rows(out.stdout)["__main__.fib"][2] == 2 * one["__main__.fib"][2]
        assert out.stdout.startswith(f"{tmp_path.joinpath('runs', 'a.jsonl').relative_to(tmp_path)}, ")
    missing = _ferrotrace(["report", "runs/*.nope"], tmp_path)
    assert missing.returncode == 2 and "runs/*.nope: no file matches" in missing.stderr


def test_report_matches_the_python_reader_and_skips_a_cut_off_last_line(tmp_path):
    """The native reader gives the rows the streaming Python reader gives (`heads` + `Summary`),
    and a killed process's last line is read as before: cut inside its previews, the span still
    counts; cut before them, the line is skipped."""
    from ferrotrace import _report, _trace_reader

    (tmp_path / "prog.py").write_text(PROGRAM)
    assert _ferrotrace(["run", "prog.py"], tmp_path).returncode == 0
    trace = tmp_path / "ferrotrace.jsonl"
    lines = trace.read_text().splitlines(keepends=True)
    whole = len(spans(read_trace(trace)))
    span_line = next(line for line in lines if '"type":"span"' in line and '"args":' in line)
    in_previews = span_line[: span_line.index('"args":') + 12]
    in_head = span_line[: span_line.index('"qualname"') + 5]
    for cut, counted in ((in_previews, 1), (in_head, 0)):
        trace.write_text("".join(lines) + "\xff not json\n" + cut)
        expected = _report.Summary()
        for record, _ in _trace_reader.heads([str(trace)]):
            expected.add(record)
        assert expected.spans == whole + counted
        out = _ferrotrace(["report", "ferrotrace.jsonl", "--top", "100"], tmp_path)
        assert out.returncode == 0, out.stderr
        assert (
            out.stdout.splitlines()[0]
            == f"ferrotrace.jsonl: {expected.spans} spans, {expected.sessions} sessions"
        )
        printed = [
            line for line in out.stdout.splitlines() if len(line.split()) == 4 and "." in line.split()[3]
        ]
        assert printed == [
            f"{total / 1e6:>10.3f} {self_ns / 1e6:>10.3f} {calls:>8}  {name}"
            for name, calls, total, self_ns in expected.functions.top(100)
        ]


FLASK_REQUESTS = """
import ferrotrace
ferrotrace.configure(output="trace.jsonl")
ferrotrace.instrument()
from flask import Flask

app = Flask(__name__)

@app.get("/items/<int:item_id>")
def item(item_id):
    return str(item_id)

client = app.test_client()
for i in range(3):
    with client.get(f"/items/{i}") as response:  # a WSGI request ends when its body is closed
        assert response.data == str(i).encode()
ferrotrace.shutdown()
"""


def test_html_report_lists_a_request_by_its_final_tag(runner, tmp_path):
    """A request's session starts as `GET` and is named `GET /items/<int:item_id>` once Flask
    routed it: the report's session list and flame graph show the final name."""
    runner.trace(FLASK_REQUESTS)
    out = tmp_path / "r.html"
    proc = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "report", str(tmp_path / "trace.jsonl"), "--html", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    marker = '<script id="ferrotrace-data" type="application/json">'
    data = json.JSONDecoder().raw_decode(page[page.index(marker) + len(marker) :])[0]
    assert [s[0] for s in data["sessions"]] == ["GET /items/<int:item_id>"] * 3
    assert "GET /items/<int:item_id>" in data["names"]
