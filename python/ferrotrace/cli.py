"""The `ferrotrace` command: run, report, config."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence

from ferrotrace import _convert, _html_report, _lifecycle, _native, _notes, _report, _run_args, _settings

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferrotrace", description="Function-level tracing for CPython.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run a Python program under tracing", usage=_run_args.USAGE, add_help=False)

    report = sub.add_parser("report", help="summarise JSONL traces (files, directories, globs) as one run")
    report.add_argument("trace", nargs="+")
    report.add_argument("--top", type=int, default=20)
    report.add_argument(
        "--html", metavar="OUT", help="write a self-contained HTML report (flame graph, timeline) to OUT"
    )

    convert = sub.add_parser("convert", help="convert JSONL traces to another viewer's format, streaming")
    convert.add_argument("trace", nargs="+", help="JSONL files, directories or globs, read as one run")
    convert.add_argument("--to", required=True, choices=_convert.FORMATS)
    convert.add_argument(
        "-o",
        "--output",
        help="output file (default: TRACE.chrome.json, .speedscope.json, .perfetto-trace, .otlp.jsonl)",
    )

    config = sub.add_parser("config", help="print the effective configuration and validate it")
    config.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting given as an argument (as configure(name=value) would); repeatable",
    )
    return p


def _run_env(run: _run_args.RunArgs) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"FERROTRACE_{name}": value for name, value in run.settings.items()})
    env.setdefault("FERROTRACE_CAPTURE", "all")
    env["FERROTRACE_OUTPUT"] = os.path.abspath(env.get("FERROTRACE_OUTPUT", "ferrotrace.jsonl"))
    env[_lifecycle.MAIN_PID_VAR] = str(os.getpid())
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + path if path else "")
    return env


def _invalid_settings(env: dict[str, str]) -> list[str]:
    rows, _ = _native.config_report({}, _settings.environment(env))
    return [error for *_, error in rows if error]


def _program(run: _run_args.RunArgs) -> list[str] | None:
    if run.module is not None:
        return [sys.executable, "-m", run.module, *run.args]
    if run.script is not None:
        return [sys.executable, run.script, *run.args]
    assert run.command
    exe = shutil.which(run.command[0])
    if exe is None:
        print(f"ferrotrace run: command not found: {run.command[0]}", file=sys.stderr)
        return None
    return [exe, *run.command[1:]]


def _run(argv: list[str]) -> int:
    run = _run_args.parse(argv)
    program = _program(run)
    if program is None:
        return 2
    env = _run_env(run)
    errors = _invalid_settings(env)
    if errors:
        options = {f"FERROTRACE_{name}=": flag for flag, name in _run_args.SETTING_OPTIONS.items()}
        for e in errors:
            given = next((f" (given as {flag})" for var, flag in options.items() if e.startswith(var)), "")
            if not given or e.split("=", 1)[0][11:] not in run.settings:
                given = ""
            print(f"ferrotrace: {e}{given}", file=sys.stderr)
        return 2
    # Where processes that cannot be traced (or have diagnostics) leave a note for the
    # summary, instead of printing on the program's stderr; the top process removes it.
    env[_notes.NOTES_VAR] = tempfile.mkdtemp(prefix="ferrotrace-run-")
    sys.stdout.flush()
    sys.stderr.flush()
    if run.html is not None:
        return _run_then_report(program, env, run.html)
    _exec(program, env)
    return 127  # pragma: no cover - execve does not return


def _exec(program: list[str], env: dict[str, str]) -> None:
    """Replaces this process with the program (so its pid, exit code and output are its own)."""
    try:
        os.execve(program[0], program, env)
    except OSError:
        shutil.rmtree(env[_notes.NOTES_VAR], ignore_errors=True)
        raise


def _run_then_report(program: list[str], env: dict[str, str], html: str) -> int:
    """`run --html`: the program runs in a child process (the top process of the run, with
    its own pid); this one waits, writes the HTML report of the run's trace files, and ends
    as the program did (same exit code, or killed by the same signal)."""
    started = time.time()
    pid = os.fork()
    if pid == 0:
        try:
            env[_lifecycle.MAIN_PID_VAR] = str(os.getpid())
            _exec(program, env)
        finally:
            os._exit(127)
    # Ctrl-C reaches the program (same process group); SIGTERM and SIGHUP are passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:  # pragma: no cover - reaped elsewhere
            status = 0
            break
    _html_report.main(_html_report.run_files(env["FERROTRACE_OUTPUT"], started), html)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP keep theirs
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status)


def _config(assignments: Sequence[str]) -> int:
    args: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            print(f"ferrotrace config: --set wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        args[name.strip()] = value
    try:
        rows, warnings = _native.config_report(_settings.normalize(args), _settings.environment())
    except ValueError as exc:  # a name that is no setting
        print(f"ferrotrace config: {exc}", file=sys.stderr)
        return 2
    width = max(len(r[0]) for r in rows)
    bad = 0
    for name, _env, value, source, _rule, error in rows:
        print(f"{name:<{width}}  {value!r:<28} {source}")
        if error:
            bad += 1
            print(f"{'':<{width}}  ERROR: {error}")
    print(f"recorded: {_filter_rule({r[0].upper(): r[2] for r in rows})}")
    _print_integrations({r[0]: r[2] for r in rows}.get("instrument", "all"))
    for w in warnings:
        print(f"warning: {w}")
    if bad:
        print(f"{bad} invalid setting(s)", file=sys.stderr)
        return 2
    return 0


def _filter_rule(values: dict[str, str]) -> str:
    """The effective include/exclude rule in words, as the native filter applies it."""
    include, exclude = values.get("INCLUDE", ""), values.get("EXCLUDE", "")
    defaults = values.get("EXCLUDE_DEFAULTS") == "1"
    if include:
        rule = f"functions whose module::qualname matches INCLUDE {include!r}"
        if defaults:
            rule += " (even in the standard library and site-packages)"
    elif defaults:
        rule = "every function outside the standard library and site-packages"
    else:
        rule = "every function"
    if exclude:
        rule += f", except those matching EXCLUDE {exclude!r}"
    return rule + "; never ferrotrace's own code"


def _print_integrations(setting: str) -> None:
    """What `FERROTRACE_INSTRUMENT` applies here: each library and framework, whether it is
    installed (its version) and whether it is instrumented when the program imports it."""
    from ferrotrace import instrumentation

    names = setting.split(",")
    chosen = (
        set(instrumentation.LIBRARIES) if setting == "all" else set() if setting == "none" else set(names)
    )
    print("integrations (on: applied under `ferrotrace run` and `import ferrotrace.auto` once imported):")
    for lib, version in instrumentation.available().items():
        kind = "framework" if lib in instrumentation.FRAMEWORKS else "http client"
        state = "not installed" if version is None else "on" if lib in chosen else "off"
        found = "" if version is None else f" {version}"
        print(f"  {lib:<10} {kind:<11} {state}{found}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ferrotrace` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:  # its own parser: the program's arguments are not ferrotrace's
        return _run(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "report":
        if args.html:
            return _html_report.main(args.trace, args.html)
        return _report.main(args.trace, args.top)
    if args.command == "convert":
        return _convert.main(args.trace, args.to, args.output)
    return _config(args.set)


if __name__ == "__main__":
    sys.exit(main())
