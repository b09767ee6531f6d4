"""The traced program never notices: forking prints no new warning, SIGTERM with the default
disposition still ends the program by SIGTERM (after the trace is written), and a full disk
leaves a trace of whole lines whose size is the bytes reported written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import TEST_BACKEND, read_trace
from otlp_server import Server

FORK_PROGRAM = """
import json, os, sys, warnings, ferrotrace
ferrotrace.configure(output="trace.{pid}.jsonl", exporter=os.environ["EXPORTERS"])

def leaf(i):
    return i

def work(n):
    for i in range(n):
        leaf(i)

children = []
caught = []  # what `-W error` would hide: CPython clears the fork warning it turned into an error
with ferrotrace.session("parent"):
    work(1000)  # queued or being exported when the fork comes
    for k in range(3):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pid = os.fork()
        caught += [str(w.message) for w in seen]
        if pid == 0:
            work(100 + k)
            sys.exit(0)
        children.append(pid)
        work(10)
for pid in children:
    assert os.waitpid(pid, 0)[1] == 0
print(json.dumps({"children": children, "warnings": caught}))
"""


def check_forked_traces(tmp: Path, children: list[int]) -> dict[int, list[dict]]:
    files = {int(p.name.split(".")[1]): read_trace(p) for p in tmp.glob("trace.*.jsonl")}
    assert set(children) < set(files) and len(files) == 4
    ids = Counter()
    for pid, records in files.items():
        meta = records[-1]
        assert meta["type"] == "meta", f"{pid} wrote its final record"
        spans = [r for r in records if r["type"] == "span"]
        assert meta["recorded"] == meta["exported"] == len(spans), "the meta counts add up"
        assert meta["dropped"] == 0
        ids.update(r["span_id"] for r in spans)
        leaves = sum(s["qualname"] == "leaf" for s in spans)
        if pid in children:
            assert leaves == 100 + children.index(pid), "the child's own work, and only that"
        else:
            assert leaves == 1030, "the parent's work, queued before and during the forks"
    assert max(ids.values()) == 1, "no span written twice"
    return files


@pytest.mark.parametrize("warnings", ["error::DeprecationWarning", "default"])
def test_forking_prints_nothing_new_and_each_span_is_written_once(runner, warnings):
    proc = runner.run(FORK_PROGRAM, args=["-W", warnings], env={"EXPORTERS": "jsonl"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "no multi-threaded-fork warning"
    out = json.loads(proc.stdout)
    assert out["warnings"] == []
    check_forked_traces(runner.tmp, out["children"])


def test_forking_with_the_otlp_sender_running(runner):
    with Server().start() as server:
        env = {
            "EXPORTERS": "jsonl,otlp",
            "FERROTRACE_OTLP_ENDPOINT": server.url(),
            "FERROTRACE_SPOOL_MAX_MB": "0",
        }
        proc = runner.run(FORK_PROGRAM, args=["-W", "error::DeprecationWarning"], env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        out = json.loads(proc.stdout)
        assert out["warnings"] == []
        files = check_forked_traces(runner.tmp, out["children"])
        in_files = sorted(r["span_id"] for recs in files.values() for r in recs if r["type"] == "span")
        sessions = {r["span_id"] for recs in files.values() for r in recs if r["type"].startswith("session")}
        sent = sorted(s.span_id.hex() for s in server.spans() if s.span_id.hex() not in sessions)
        assert sent == in_files, "every span delivered once, by the process that recorded it"


SIGTERM_SELF = """
import os, signal, time
def leaf(i):
    return i

def work(n):
    for i in range(n):
        leaf(i)

assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the program's view is unchanged"
work(20000)
os.kill(os.getpid(), signal.SIGTERM)
open("after-kill", "w").close()  # never runs, as without ferrotrace
"""


def check_killed_trace(path: Path, min_leaves: int) -> list[dict]:
    lines = path.read_text().splitlines(keepends=True)
    assert lines and all(line.endswith("\n") for line in lines), "no cut-off line"
    records = [json.loads(line) for line in lines]
    meta = records[-1]
    assert meta["type"] == "meta"
    spans = [r for r in records if r["type"] == "span"]
    assert meta["recorded"] == meta["exported"] == len(spans)
    assert meta["dropped"] == 0
    assert sum(s["qualname"] == "leaf" for s in spans) >= min_leaves
    return spans


def run_cli(runner, code: str, *argv: str, **env: str) -> subprocess.Popen:
    """Starts `ferrotrace run prog.py ARGV...` without waiting for it."""
    script = runner.tmp / "prog.py"
    script.write_text(textwrap.dedent(code))
    full = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    if TEST_BACKEND:
        full["FERROTRACE_BACKEND"] = TEST_BACKEND
    full.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "ferrotrace", "run", str(script), *argv],
        cwd=runner.tmp,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_to_itself_writes_every_span_and_still_dies_by_sigterm(runner):
    proc = runner.run(
        SIGTERM_SELF, args=["-m", "ferrotrace", "run"], env={"FERROTRACE_OUTPUT": "trace.jsonl"}
    )
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert not (runner.tmp / "after-kill").exists(), "the program ran on after SIGTERM"
    spans = check_killed_trace(runner.tmp / "trace.jsonl", 20000)
    assert sum(s["qualname"] == "leaf" for s in spans) == 20000
    assert sum(s["qualname"] == "work" for s in spans) == 1
    assert "20002 spans written, 0 dropped" in proc.stderr  # leaf, work, <module> (unfinished)


def test_sigterm_under_ferrotrace_auto(runner):
    code = "import ferrotrace.auto\n" + textwrap.dedent(SIGTERM_SELF)
    proc = runner.run(code, env={"FERROTRACE_OUTPUT": "trace.jsonl"})
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert proc.stderr == ""
    check_killed_trace(runner.tmp / "trace.jsonl", 20000)


BUSY = """
import sys, time
def leaf(i):
    return i

for i in range(5000):
    leaf(i)
open("ready", "w").close()
if sys.argv[1:] == ["sleep"]:
    time.sleep(60)  # blocked outside Python: the main thread never reaches a bytecode
i = 0
while True:
    leaf(i)
    i += 1
"""


@pytest.mark.parametrize("where", ["loop", "sleep"])
def test_sigterm_from_outside_while_busy(runner, where):
    proc = run_cli(runner, BUSY, where, FERROTRACE_OUTPUT="trace.jsonl")
    deadline = time.monotonic() + 30
    while not (runner.tmp / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the program never got ready"
        time.sleep(0.01)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err
    assert time.monotonic() - start < 5 + 1, "within FERROTRACE_SHUTDOWN_TIMEOUT_MS"
    check_killed_trace(runner.tmp / "trace.jsonl", 5000)


def test_a_handler_the_program_installed_keeps_its_behaviour(runner):
    code = """
    import os, signal, sys
    def leaf(i):
        return i
    def bye(signum, frame):
        open("handled", "w").close()
        sys.exit(3)
    signal.signal(signal.SIGTERM, bye)
    for i in range(100):
        leaf(i)
    os.kill(os.getpid(), signal.SIGTERM)
    """
    proc = runner.run(code, args=["-m", "ferrotrace", "run"], env={"FERROTRACE_OUTPUT": "trace.jsonl"})
    assert proc.returncode == 3, proc.stderr
    assert (runner.tmp / "handled").exists()
    check_killed_trace(runner.tmp / "trace.jsonl", 100)

    ignored = """
    import os, signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.kill(os.getpid(), signal.SIGTERM)
    print("still here")
    """
    proc = runner.run(ignored, args=["-m", "ferrotrace", "run"], env={"FERROTRACE_OUTPUT": "trace.jsonl"})
    assert proc.returncode == 0 and proc.stdout == "still here\n", proc.stderr


DISK_FULL = """
import json, os, ferrotrace
ferrotrace.configure(output=os.environ["OUT"])
def leaf(i):
    return "x" * 40

with ferrotrace.session("fill"):
    for i in range(20000):
        leaf(i)
ferrotrace.shutdown()
print(json.dumps(ferrotrace.stats()))
"""


def test_a_full_disk_leaves_whole_lines_and_says_why(runner):
    mnt = runner.tmp / "full"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs: {mounted.stderr!r}")
    try:
        out = mnt / "trace.jsonl"
        proc = runner.run(DISK_FULL, env={"OUT": str(out)})
        assert proc.returncode == 0, proc.stderr
        stats = json.loads(proc.stdout)
        data = out.read_bytes()
        assert data.endswith(b"\n"), "no cut-off line"
        records = [json.loads(line) for line in data.splitlines()]
        assert stats["bytes_written"] == len(data), "bytes written are what the file holds"
        spans = [r for r in records if r["type"] == "span"]
        assert stats["dropped_export_error"] > 0
        assert stats["exported"] == len(spans)
        (cause,) = stats["export_error_causes"]
        assert "No space left on device" in cause and str(out) in cause

        summary = runner.run(
            "def leaf(i):\n    return 'x' * 40\n\nfor i in range(20000):\n    leaf(i)\n",
            args=["-m", "ferrotrace", "run"],
            env={"FERROTRACE_OUTPUT": str(out)},
        )
        assert summary.returncode == 0, summary.stderr
        assert "export failed" in summary.stderr
        assert f"No space left on device (os error 28) writing {out}" in summary.stderr
        assert out.read_bytes().endswith(b"\n")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
