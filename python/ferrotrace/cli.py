"""The `ferrotrace` command: run, report, config."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from ferrotrace import _lifecycle, _native, _notes, _report, _settings

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferrotrace", description="Function-level tracing for CPython.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a Python program under tracing",
        usage="ferrotrace run [options] (script.py [args] | -m module [args] | -- command [args])",
    )
    run.add_argument("-o", "--output", help="trace file (default ferrotrace.jsonl)")
    run.add_argument("--capture", choices=["none", "args", "return", "all"], help="previews (default all)")
    run.add_argument("--include", help="regex over module::qualname to record")
    run.add_argument("--exclude", help="regex over module::qualname to skip")
    run.add_argument("--exporter", help="comma-separated exporters (default jsonl)")
    run.add_argument("-m", dest="module", help="run a library module as a script")
    run.add_argument("target", nargs=argparse.REMAINDER, help="script and its arguments, or -- command")

    report = sub.add_parser("report", help="summarise a JSONL trace")
    report.add_argument("trace")
    report.add_argument("--top", type=int, default=20)

    config = sub.add_parser("config", help="print the effective configuration and validate it")
    config.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting given as an argument (as configure(name=value) would); repeatable",
    )
    return p


def _run_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    flags = {
        "FERROTRACE_OUTPUT": args.output,
        "FERROTRACE_CAPTURE": args.capture,
        "FERROTRACE_INCLUDE": args.include,
        "FERROTRACE_EXCLUDE": args.exclude,
        "FERROTRACE_EXPORTER": args.exporter,
    }
    env.update({k: v for k, v in flags.items() if v is not None})
    env.setdefault("FERROTRACE_CAPTURE", "all")
    env["FERROTRACE_OUTPUT"] = os.path.abspath(env.get("FERROTRACE_OUTPUT", "ferrotrace.jsonl"))
    env[_lifecycle.MAIN_PID_VAR] = str(os.getpid())
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + path if path else "")
    return env


def _invalid_settings(env: dict[str, str]) -> list[str]:
    rows, _ = _native.config_report({}, _settings.environment(env))
    return [error for *_, error in rows if error]


def _run(args: argparse.Namespace) -> int:
    target = list(args.target)
    if args.module:
        argv = [sys.executable, "-m", args.module, *target]
    elif target and target[0] == "--":
        if len(target) < 2:
            print("ferrotrace run: nothing to run after --", file=sys.stderr)
            return 2
        exe = shutil.which(target[1])
        if exe is None:
            print(f"ferrotrace run: command not found: {target[1]}", file=sys.stderr)
            return 2
        argv = [exe, *target[2:]]
    elif target:
        argv = [sys.executable, *target]
    else:
        print("ferrotrace run: give a script, -m module, or -- command", file=sys.stderr)
        return 2
    env = _run_env(args)
    errors = _invalid_settings(env)
    if errors:
        for e in errors:
            print(f"ferrotrace: {e}", file=sys.stderr)
        return 2
    # Where processes that cannot be traced (or have diagnostics) leave a note for the
    # summary, instead of printing on the program's stderr; the top process removes it.
    env[_notes.NOTES_VAR] = tempfile.mkdtemp(prefix="ferrotrace-run-")
    sys.stdout.flush()
    sys.stderr.flush()
    # The program replaces this process, so its pid, exit code and output are its own.
    try:
        os.execve(argv[0], argv, env)
    except OSError:
        shutil.rmtree(env[_notes.NOTES_VAR], ignore_errors=True)
        raise
    return 127  # pragma: no cover - execve does not return


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
    _print_integrations({r[0]: r[2] for r in rows}.get("instrument", "all"))
    for w in warnings:
        print(f"warning: {w}")
    if bad:
        print(f"{bad} invalid setting(s)", file=sys.stderr)
        return 2
    return 0


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
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "report":
        return _report.main(args.trace, args.top)
    return _config(args.set)


if __name__ == "__main__":
    sys.exit(main())
