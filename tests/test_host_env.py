"""The traced program never notices: bytes that are not UTF-8 in its environment, argv and
paths change nothing; under `ferrotrace run` no process but the top one prints anything (its
summary), diagnostics go in meta records, and a child Python that cannot load ferrotrace runs
exactly as it would untraced while the summary counts it."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import TEST_BACKEND, read_trace, spans

ODD = b"\xe7"  # a Latin-1 byte: never valid UTF-8 on its own


def clean_env(**extra: str | bytes) -> dict[bytes, bytes]:
    """This environment without ferrotrace's variables, as bytes (values may hold any byte)."""
    env = {k: v for k, v in os.environb.items() if not k.startswith((b"FERROTRACE", b"OTEL_", b"PYTHONPATH"))}
    if TEST_BACKEND:
        env[b"FERROTRACE_BACKEND"] = TEST_BACKEND.encode()
    env.update({os.fsencode(k): os.fsencode(v) for k, v in extra.items()})
    return env


def run(argv: list, cwd: Path, env: dict[bytes, bytes]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=120)


def ferrotrace_run(*argv, cwd: Path, env: dict[bytes, bytes]) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "ferrotrace", "run", *argv], cwd, env)


def split_summary(stderr: bytes) -> tuple[bytes, list[str]]:
    """The program's own stderr and the lines of the summary the top process prints last."""
    at = stderr.find(b"ferrotrace: ")
    assert at >= 0, stderr
    return stderr[:at], stderr[at:].decode().splitlines()


def leftover_notes(tmp: Path) -> list[str]:
    return glob.glob(str(tmp / "ferrotrace-run-*"))


def another_python() -> str:
    """A CPython of another minor version than this one, from pyenv (every machine that runs
    the suite has several). Fails, rather than skips, when there is none."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    names = []
    pyenv = shutil.which("pyenv") or os.path.join(root, "bin", "pyenv")
    if os.path.exists(pyenv):
        out = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True)
        names = out.stdout.split()
    if not names and os.path.isdir(os.path.join(root, "versions")):
        names = os.listdir(os.path.join(root, "versions"))
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}."
    found = [
        os.path.join(root, "versions", n, "bin", "python")
        for n in names
        if re.fullmatch(r"3\.\d+\.\d+", n) and not n.startswith(mine)
    ]
    found = [p for p in found if os.access(p, os.X_OK)]
    assert found, f"no other CPython found under {root} (pyenv versions --bare: {names})"
    return sorted(found, key=lambda p: [int(x) for x in p.split("/")[-3].split(".")])[-1]


CHILD = """
import os, sys
def work(a):
    return a * 2
print("child argv", ascii(sys.argv[1:]), "X", ascii(os.environ.get("X")), work(21))
print("child stderr", ascii(os.getcwd()[-6:]), file=sys.stderr)
"""

PARENT = """
import os, subprocess, sys
def main():
    os.environ["X"] = "\\udce7"          # set by the program, as CPython's tests do
    env = dict(os.environb)
    env[b"Y"] = b"\\xff\\xfe"
    child = os.fsdecode(b"child\\xe7.py")
    subprocess.run([sys.executable, child, os.fsdecode(b"arg\\xe7"), "plain"], env=env, check=True)
    print("parent done", ascii(sys.argv[1:]))
main()
"""


def test_odd_bytes_in_environment_argv_and_paths_do_not_disturb_tracing(tmp_path):
    home = tmp_path / os.fsdecode(b"dir" + ODD)  # cwd and file paths that are not UTF-8
    home.mkdir()
    (home / os.fsdecode(b"child" + ODD + b".py")).write_text(CHILD)
    (home / "parent.py").write_text(PARENT)
    env = clean_env(TMPDIR=str(tmp_path), Z=b"odd " + ODD)
    argv = ["parent.py", os.fsdecode(b"top" + ODD)]
    plain = run([sys.executable, *argv], home, env)
    traced = ferrotrace_run(*argv, cwd=home, env=env)
    assert plain.returncode == traced.returncode == 0, traced.stderr
    assert b"child argv ['arg\\udce7', 'plain'] X '\\udce7' 42" in plain.stdout
    assert traced.stdout == plain.stdout
    program_stderr, summary = split_summary(traced.stderr)
    assert program_stderr == plain.stderr
    assert summary[0].startswith("ferrotrace: ") and "spans written" in summary[0], summary
    assert not any("not traced" in s or "diagnostic" in s or "disabled" in s for s in summary), summary
    assert leftover_notes(tmp_path) == []
    # Both processes were traced, each to its own file, the child's names intact.
    top = read_trace(home / "ferrotrace.jsonl")
    assert "main" in {s["qualname"] for s in spans(top)}
    (child_file,) = [p for p in home.glob("ferrotrace.*.jsonl")]
    child = read_trace(child_file)
    work = [s for s in spans(child) if s["qualname"] == "work"]
    assert len(work) == 1 and work[0]["file"].endswith("child\\xe7.py"), work
    assert [r["tag"] for r in child if r["type"] == "session_start"] == ["child\\xe7.py"]
    assert child[-1]["type"] == "meta" and child[-1]["diagnostics"] == []


def test_a_setting_that_is_not_utf8_is_rejected_by_run_config_and_configure(tmp_path):
    (tmp_path / "app.py").write_text("print('ran')\n")
    env = clean_env(FERROTRACE_INCLUDE=b"^app" + ODD, TMPDIR=str(tmp_path))
    traced = ferrotrace_run("app.py", cwd=tmp_path, env=env)
    assert traced.returncode == 2 and traced.stdout == b"", traced
    assert b'FERROTRACE_INCLUDE=b"^app\\xe7" is invalid: valid UTF-8 text' in traced.stderr
    assert b"a regular expression over module::qualname" in traced.stderr
    assert b"Traceback" not in traced.stderr and leftover_notes(tmp_path) == []
    config = run([sys.executable, "-m", "ferrotrace", "config"], tmp_path, env)
    assert config.returncode == 2 and b"FERROTRACE_INCLUDE" in config.stdout, config
    api = run(
        [
            sys.executable,
            "-c",
            "import ferrotrace\n"
            "try:\n    ferrotrace.configure(max_depth='1\\udce7')\n"
            "except ValueError as e:\n    print(e)\n",
        ],
        tmp_path,
        clean_env(),
    )
    assert api.returncode == 0, api.stderr
    assert api.stdout.startswith(b'max_depth=b"1\\xe7" is invalid: valid UTF-8 text'), api.stdout


AUTO = """
import ferrotrace.auto
def work(n):
    return n + 1
work(1)
print("ran")
"""


def test_auto_names_a_setting_that_is_not_utf8_and_applies_the_rest(tmp_path):
    for variable in ("FERROTRACE_INCLUDE", "FERROTRACE_MAX_DEPTH"):
        env = clean_env(FERROTRACE_OUTPUT="trace.jsonl", FERROTRACE_SERVICE_NAME="svc", Z=ODD)
        env[variable.encode()] = ODD
        proc = run([sys.executable, "-c", AUTO], tmp_path, env)
        assert proc.returncode == 0 and proc.stdout == b"ran\n", proc.stderr
        (warning,) = proc.stderr.decode().splitlines()
        assert warning.startswith(f'ferrotrace: {variable}=b"\\xe7" is invalid: valid UTF-8 text'), warning
        records = read_trace(tmp_path / "trace.jsonl")
        meta = records[-1]
        assert meta["type"] == "meta" and meta["service_name"] == "svc", meta
        assert meta["diagnostics"] == [warning.removeprefix("ferrotrace: ")]
        recorded = [s["qualname"] for s in spans(records)]
        if variable == "FERROTRACE_INCLUDE":  # a bad filter's safe fallback: trace nothing
            assert "tracing is disabled" in warning and recorded == []
        else:  # that setting takes its default; tracing goes on
            assert 'using the default "0"' in warning and "work" in recorded


def test_a_child_config_warning_goes_to_its_meta_record_not_to_stderr(tmp_path):
    (tmp_path / "child.py").write_text("def work():\n    return 1\nwork()\nprint('child')\n")
    (tmp_path / "parent.py").write_text(
        "import os, subprocess, sys\n"
        "env = dict(os.environ, FERROTRACE_MAX_DEPTH='deep')\n"
        "subprocess.run([sys.executable, 'child.py'], env=env, check=True)\n"
    )
    env = clean_env(TMPDIR=str(tmp_path))
    plain = run([sys.executable, "parent.py"], tmp_path, env)
    traced = ferrotrace_run("parent.py", cwd=tmp_path, env=env)
    assert traced.returncode == 0 and traced.stdout == plain.stdout == b"child\n"
    program_stderr, summary = split_summary(traced.stderr)
    assert program_stderr == plain.stderr == b""
    (child_file,) = tmp_path.glob("ferrotrace.*.jsonl")
    child = read_trace(child_file)
    assert "work" in {s["qualname"] for s in spans(child)}
    (diagnostic,) = child[-1]["diagnostics"]
    assert diagnostic.startswith('FERROTRACE_MAX_DEPTH="deep" is invalid'), diagnostic
    assert "ferrotrace: 1 diagnostic (in the meta records):" in summary, summary
    assert any(line.endswith(diagnostic) for line in summary), summary
    assert read_trace(tmp_path / "ferrotrace.jsonl")[-1]["diagnostics"] == []
    assert leftover_notes(tmp_path) == []


def test_a_child_python_without_ferrotrace_runs_as_untraced_and_is_counted(tmp_path):
    other = another_python()
    # The user's own sitecustomize must still run in that child.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.stderr.write('user sitecustomize\\n')\n")
    (tmp_path / "parent.py").write_text(
        "import os, subprocess, sys\n"
        "def main():\n"
        f"    path = os.pathsep.join(filter(None, [os.environ.get('PYTHONPATH'), {str(site)!r}]))\n"
        f"    subprocess.run([{other!r}, '-c', 'import sys; print(sys.version_info[:2]); "
        'print("err", file=sys.stderr); sys.exit(3)\'], env=dict(os.environ, PYTHONPATH=path))\n'
        "    print('parent')\n"
        "main()\n"
    )
    env = clean_env(TMPDIR=str(tmp_path))
    plain = run([sys.executable, "parent.py"], tmp_path, env)
    traced = ferrotrace_run("parent.py", cwd=tmp_path, env=env)
    assert plain.returncode == traced.returncode == 0
    assert traced.stdout == plain.stdout and plain.stdout.endswith(b"parent\n")
    program_stderr, summary = split_summary(traced.stderr)
    assert program_stderr == plain.stderr and plain.stderr.startswith(b"user sitecustomize\nerr\n")
    assert "ferrotrace: 1 process not traced:" in summary, summary
    assert any("cannot load ferrotrace" in s and "No module named 'ferrotrace'" in s for s in summary)
    assert "main" in {s["qualname"] for s in spans(read_trace(tmp_path / "ferrotrace.jsonl"))}
    assert leftover_notes(tmp_path) == []
    # The top process itself: it runs as untraced, and its summary is one line saying why.
    code = "import sys; print('top'); print('e', file=sys.stderr)"
    plain = run([other, "-c", code], tmp_path, env)
    traced = ferrotrace_run("--", other, "-c", code, cwd=tmp_path, env=env)
    assert plain.returncode == traced.returncode == 0
    assert traced.stdout == plain.stdout == b"top\n"
    program_stderr, summary = split_summary(traced.stderr)
    assert program_stderr == plain.stderr
    assert len(summary) == 1 and summary[0].startswith("ferrotrace: nothing traced: python "), summary
    assert leftover_notes(tmp_path) == []
