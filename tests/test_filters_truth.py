"""ferrotrace never records itself, and generated code is filtered by the module it runs in."""

import os
import subprocess
import sys

import pytest
from conftest import read_trace, spans

USER = """
import ferrotrace

def work(n):
    return n * 2

with ferrotrace.session("s"):
    work(3)
print(work(4))
"""


def own_code(s: dict) -> bool:
    return (
        s["module"] == "ferrotrace"
        or s["module"].startswith("ferrotrace.")
        or "/ferrotrace/_bootstrap/" in s["file"]
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"FERROTRACE_EXCLUDE_DEFAULTS": "0"},
        {"FERROTRACE_EXCLUDE_DEFAULTS": "0", "FERROTRACE_INCLUDE": ".*"},
        {"FERROTRACE_INCLUDE": "ferrotrace|sitecustomize|work"},
    ],
)
def test_ferrotrace_never_records_itself(tmp_path, settings):
    (tmp_path / "app.py").write_text(USER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    env.update(settings)
    proc = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "run", "app.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == "8\n", proc.stderr
    got = spans(read_trace(tmp_path / "ferrotrace.jsonl"))
    assert sum(s["qualname"] == "work" for s in got) == 2
    assert [s for s in got if own_code(s)] == []


GENLIB = """
SOURCE = "def made(x):\\n    return x + 1\\n"
exec(SOURCE, globals())
fresh = {"__name__": __name__}
exec(SOURCE.replace("made", "made_fresh"), fresh)
made_fresh = fresh["made_fresh"]

def call():
    return made(1) + made_fresh(1)
"""

PROGRAM = """
import sys
sys.path.insert(0, "lib/site-packages")
import ferrotrace, genlib, userlib
ferrotrace.configure(output="trace.jsonl")
exec("def made_main(x):\\n    return x\\n")
with ferrotrace.session("gen"):
    genlib.call()
    genlib.made(2)
    userlib.call()
    made_main(3)
"""


def test_generated_code_follows_its_module(runner):
    lib = runner.tmp / "lib" / "site-packages" / "genlib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text(GENLIB)
    (runner.tmp / "userlib.py").write_text(GENLIB)
    got = spans(runner.trace(PROGRAM))
    seen = sorted((s["module"], s["qualname"], s["file"]) for s in got)
    assert seen == [
        ("__main__", "made_main", "<string>"),
        ("userlib", "call", str(runner.tmp / "userlib.py")),
        ("userlib", "made", "<string>"),
        ("userlib", "made_fresh", "<string>"),
    ], seen


def test_generated_code_excluded_by_the_users_excludes(runner):
    (runner.tmp / "userlib.py").write_text(GENLIB)
    got = spans(
        runner.trace(
            """
import ferrotrace, userlib
ferrotrace.configure(output="trace.jsonl", exclude="^userlib::made")
with ferrotrace.session("gen"):
    userlib.call()
"""
        )
    )
    assert [s["qualname"] for s in got] == ["call"]
