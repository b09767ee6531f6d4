"""`ferrotrace run` leaves the program's output and exit code unchanged and writes a trace."""

import os
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
            # It ended the program: it escaped the process-wide session.
            assert got[name]["exception"] == {"type": "RuntimeError", "message": "boom", "escaped": True}
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


def _ferrotrace(args, cwd, env=None, **kw):
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_") or k == "FERROTRACE_BACKEND"
    }
    return subprocess.run(
        [sys.executable, "-m", "ferrotrace", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        **kw,
    )


def test_run_module_arguments_are_the_programs_pygments(tmp_path):
    """`ferrotrace run -m pygments -f html -o out.html file.py`: pygments gets its own
    arguments, writes the same file as untraced, and its functions are in the trace (the
    explicit include wins over the site-packages exclude); the session is tagged `pygments`."""
    source = tmp_path / "file.py"
    source.write_text(SCRIPT)
    plain = subprocess.run(
        [sys.executable, "-m", "pygments", "-f", "html", "-o", "plain.html", "file.py"], cwd=tmp_path
    )
    assert plain.returncode == 0
    traced = _ferrotrace(
        ["run", "--include", "^pygments", "-m", "pygments", "-f", "html", "-o", "out.html", "file.py"],
        tmp_path,
    )
    assert traced.returncode == 0, traced.stderr
    assert (tmp_path / "out.html").read_bytes() == (tmp_path / "plain.html").read_bytes()
    records = read_trace(tmp_path / "ferrotrace.jsonl")
    names = {(s["module"], s["qualname"]) for s in spans(records)}
    assert ("pygments.cmdline", "main") in names
    assert any(m.startswith("pygments.formatters.html") for m, _ in names)
    assert all(m.startswith("pygments") for m, _ in names), sorted(names)[:5]
    assert [r["tag"] for r in records if r["type"] == "session_start"] == ["pygments"]


def test_run_script_session_tag_is_its_file_name(tmp_path):
    (tmp_path / "tool.py").write_text("def f():\n    return 1\nf()\n")
    assert _ferrotrace(["run", "tool.py"], tmp_path).returncode == 0
    records = read_trace(tmp_path / "ferrotrace.jsonl")
    assert [r["tag"] for r in records if r["type"] == "session_start"] == ["tool.py"]
    # `python -m pkg` is tagged `pkg` (its sys.argv[0] is still "-m" when tracing starts).
    assert (
        _ferrotrace(["run", "--", sys.executable, "-u", "-W", "ignore", "-m", "tool"], tmp_path).returncode
        == 0
    )
    records = read_trace(tmp_path / "ferrotrace.jsonl")
    assert [r["tag"] for r in records if r["type"] == "session_start"] == ["tool"]


def test_run_program_options_after_script_are_not_ferrotraces(tmp_path):
    (tmp_path / "echo.py").write_text("import sys\nprint(sys.argv[1:])\n")
    out = _ferrotrace(["run", "echo.py", "-o", "x", "--include", "y", "-m", "z", "--", "w"], tmp_path)
    assert out.returncode == 0 and out.stdout == "['-o', 'x', '--include', 'y', '-m', 'z', '--', 'w']\n"
    out = _ferrotrace(["run", "--", sys.executable, "echo.py", "-m", "q"], tmp_path)
    assert out.returncode == 0 and out.stdout == "['-m', 'q']\n"


OPTIONS_PROGRAM = """
import sys
def leaf(x):
    return x
def middle(x):
    return leaf(x) + 1
def main():
    print(type(sys.getprofile()).__name__)
    return middle(41)
main()
"""


def _option_effects(tmp_path, how, option, variable, value):
    """Runs OPTIONS_PROGRAM with the setting given as `how` (option or variable); returns
    (stdout, spans by qualname, files written)."""
    (tmp_path / "prog.py").write_text(OPTIONS_PROGRAM)
    for f in tmp_path.glob("*.json*"):
        f.unlink()
    if how == "option":
        result = _ferrotrace(["run", option, value, "prog.py"], tmp_path, env={"FERROTRACE_BACKEND": "auto"})
    else:
        result = _ferrotrace(
            ["run", "prog.py"], tmp_path, env={"FERROTRACE_BACKEND": "auto", variable: value}
        )
    assert result.returncode == 0, result.stderr
    files = sorted(f.name for f in tmp_path.glob("*.json*"))
    jsonl = [f for f in files if f.endswith(".jsonl")]
    got = {s["qualname"]: s for s in spans(read_trace(tmp_path / jsonl[0]))} if jsonl else {}
    return result.stdout, got, files


@pytest.mark.parametrize(
    "option,variable,value,check",
    [
        ("--output", "FERROTRACE_OUTPUT", "mine.jsonl", lambda out, got, files: files == ["mine.jsonl"]),
        ("--include", "FERROTRACE_INCLUDE", "::leaf$", lambda out, got, files: set(got) == {"leaf"}),
        (
            "--exclude",
            "FERROTRACE_EXCLUDE",
            "::leaf$",
            lambda out, got, files: "leaf" not in got and "middle" in got,
        ),
        ("--capture", "FERROTRACE_CAPTURE", "none", lambda out, got, files: "args" not in got["leaf"]),
        ("--sample-rate", "FERROTRACE_SAMPLE_RATE", "0", lambda out, got, files: got == {}),
        (
            "--exporter",
            "FERROTRACE_EXPORTER",
            "chrome",
            lambda out, got, files: files == ["ferrotrace.chrome.json"],
        ),
        (
            "--backend",
            "FERROTRACE_BACKEND",
            "setprofile",
            lambda out, got, files: out.startswith("HookHandle"),
        ),
        (
            "--max-depth",
            "FERROTRACE_MAX_DEPTH",
            "3",
            lambda out, got, files: "middle" in got and "leaf" not in got,
        ),
    ],
)
def test_each_run_option_is_its_variable(tmp_path, option, variable, value, check):
    by_option = _option_effects(tmp_path, "option", option, variable, value)
    by_variable = _option_effects(tmp_path, "variable", option, variable, value)
    assert check(*by_option), by_option
    assert check(*by_variable), by_variable
    assert by_option[0] == by_variable[0] and set(by_option[1]) == set(by_variable[1])


@pytest.mark.parametrize(
    "option,variable,value",
    [
        ("--sample-rate", "FERROTRACE_SAMPLE_RATE", "2"),
        ("--capture", "FERROTRACE_CAPTURE", "some"),
        ("--backend", "FERROTRACE_BACKEND", "fast"),
        ("--max-depth", "FERROTRACE_MAX_DEPTH", "-1"),
        ("--include", "FERROTRACE_INCLUDE", "(unclosed"),
        ("--exporter", "FERROTRACE_EXPORTER", "csv"),
        ("--output", "FERROTRACE_OUTPUT", "no/such/dir/t.jsonl"),
    ],
)
def test_invalid_run_option_names_variable_value_and_rule(tmp_path, option, variable, value):
    (tmp_path / "prog.py").write_text("print('ran')\n")
    if option == "--output":  # `run` makes the path absolute before checking it
        value = str(tmp_path / value)
    by_option = _ferrotrace(["run", option, value, "prog.py"], tmp_path)
    by_variable = _ferrotrace(["run", "prog.py"], tmp_path, env={variable: value})
    assert by_option.returncode == by_variable.returncode == 2
    assert by_option.stdout == by_variable.stdout == ""
    assert f"{variable}={value!r}".replace("'", '"') in by_option.stderr, by_option.stderr
    assert " is invalid: " in by_option.stderr and f"(given as {option})" in by_option.stderr
    assert by_variable.stderr.strip() == by_option.stderr.strip().replace(f" (given as {option})", "")


def test_run_help_lists_every_option(tmp_path):
    out = _ferrotrace(["run", "--help"], tmp_path)
    assert out.returncode == 0
    for flag in [
        "-o",
        "--output",
        "--include",
        "--exclude",
        "--capture",
        "--sample-rate",
        "--exporter",
        "--backend",
        "--max-depth",
        "-m",
    ]:
        assert f"{flag} " in out.stdout or f"{flag}," in out.stdout, flag


def test_config_shows_the_effective_filter_rule(tmp_path):
    out = _ferrotrace(
        ["config"], tmp_path, env={"FERROTRACE_INCLUDE": "^pygments", "FERROTRACE_EXCLUDE": "::secret"}
    )
    assert out.returncode == 0
    assert (
        "recorded: functions whose module::qualname matches INCLUDE '^pygments' (even in the standard library"
        " and site-packages), except those matching EXCLUDE '::secret'; never ferrotrace's own code"
    ) in out.stdout


def test_run_html_keeps_the_programs_output_and_exit_status(tmp_path):
    (tmp_path / "app.py").write_text(SCRIPT)
    plain = subprocess.run(
        [sys.executable, "app.py", "world", "3"], capture_output=True, text=True, cwd=tmp_path
    )
    traced = _ferrotrace(["run", "--html", "r.html", "app.py", "world", "3"], tmp_path)
    assert traced.returncode == plain.returncode == 3
    assert traced.stdout == plain.stdout
    assert "HTML report of" in traced.stderr and (tmp_path / "r.html").stat().st_size > 0
    (tmp_path / "die.py").write_text(
        "import os, signal\ndef f():\n    os.kill(os.getpid(), signal.SIGKILL)\nf()\n"
    )
    died = _ferrotrace(["run", "--html", "d.html", "die.py"], tmp_path)
    assert died.returncode == -9
