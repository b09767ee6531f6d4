"""`ferrotrace run` leaves the program's output and exit code unchanged and writes a trace."""

import subprocess
import sys

import pytest
from conftest import read_trace, spans

SCRIPT = """
import sys
def greet(name):
    return f"hello {name}"
def main(argv):
    print(greet(argv[1]))
    print("to stderr", file=sys.stderr)
    if argv[2] == "raise":
        raise RuntimeError("boom")
    sys.exit(int(argv[2]))
main(sys.argv)
"""


@pytest.mark.parametrize("mode,code", [("3", 3), ("0", 0), ("raise", 1)])
def test_run_preserves_stdout_and_exit_code(tmp_path, mode, code):
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    plain = subprocess.run(
        [sys.executable, str(script), "world", mode], capture_output=True, text=True, cwd=tmp_path
    )
    traced = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "run", str(script), "world", mode],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert plain.returncode == traced.returncode == code
    assert traced.stdout == plain.stdout == "hello world\n"
    assert traced.stderr.startswith(plain.stderr), traced.stderr
    assert "ferrotrace:" in traced.stderr and "spans written, 0 dropped" in traced.stderr
    records = read_trace(tmp_path / "ferrotrace.jsonl")
    got = {s["qualname"]: s for s in spans(records)}
    assert {"<module>", "main", "greet"} <= set(got)
    assert got["greet"]["args"]["name"] == "world" if "args" in got["greet"] else True
    assert got["main"]["parent_span_id"] == got["<module>"]["span_id"]
    if mode == "raise":
        for name in ("main", "<module>"):
            assert got[name]["exception"] == {"type": "RuntimeError", "message": "boom"}
    meta = records[-1]
    assert meta["type"] == "meta" and meta["dropped"] == 0 and meta["recorded"] == meta["exported"]


def test_run_module_and_bad_setting(tmp_path):
    (tmp_path / "pkgmod.py").write_text("def f():\n    return 2\nprint(f())\n")
    traced = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "run", "-m", "pkgmod"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert traced.returncode == 0 and traced.stdout == "2\n"
    assert any(s["qualname"] == "f" for s in spans(read_trace(tmp_path / "ferrotrace.jsonl")))
    bad = subprocess.run(
        [sys.executable, "-m", "ferrotrace", "run", "pkgmod.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"FERROTRACE_SAMPLE_RATE": "2", "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2
    assert "FERROTRACE_SAMPLE_RATE" in bad.stderr and "'2'" in bad.stderr or '"2"' in bad.stderr
