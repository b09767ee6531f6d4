"""The command line of `ferrotrace run`: ferrotrace's options, then the program.

As with `python` itself, everything after the script, the `-m module` or `--` belongs to
the program: `ferrotrace run -o t.jsonl -m pygments -f html x.py` passes `-f html x.py` to
pygments.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

#: Each option and the FERROTRACE_* setting it stands for (validated as that variable).
SETTING_OPTIONS = {
    "--output": "OUTPUT",
    "--include": "INCLUDE",
    "--exclude": "EXCLUDE",
    "--capture": "CAPTURE",
    "--sample-rate": "SAMPLE_RATE",
    "--exporter": "EXPORTER",
    "--backend": "BACKEND",
    "--max-depth": "MAX_DEPTH",
}

_HELP = {
    "--output": "trace file (FERROTRACE_OUTPUT; default ferrotrace.jsonl)",
    "--include": "regex over module::qualname to record, even in the standard library or "
    "site-packages (FERROTRACE_INCLUDE)",
    "--exclude": "regex over module::qualname to skip; wins over --include (FERROTRACE_EXCLUDE)",
    "--capture": "argument/return previews: none, args, return, all (FERROTRACE_CAPTURE; default all)",
    "--sample-rate": "fraction of sessions recorded, 0 to 1 (FERROTRACE_SAMPLE_RATE)",
    "--exporter": "comma-separated: jsonl, chrome, perfetto, otlp, http (FERROTRACE_EXPORTER)",
    "--backend": "auto, setprofile, monitoring, evalframe (FERROTRACE_BACKEND)",
    "--max-depth": "deepest call level recorded, 0 for unlimited (FERROTRACE_MAX_DEPTH)",
}

USAGE = "ferrotrace run [options] (script.py | -m module | -- command) [args...]"


@dataclass
class RunArgs:
    """What `ferrotrace run` was asked to do."""

    #: Setting name (`OUTPUT`, ...) -> value given on the command line.
    settings: dict[str, str] = field(default_factory=dict)
    #: Where to write the HTML report when the program ends, if asked.
    html: str | None = None
    #: The program: a module (`-m`), a script, or a command (`--`), and its arguments.
    module: str | None = None
    script: str | None = None
    command: list[str] | None = None
    args: list[str] = field(default_factory=list)


def parser() -> argparse.ArgumentParser:
    """The options parser (also the `--help` text)."""
    p = argparse.ArgumentParser(
        prog="ferrotrace run",
        usage=USAGE,
        description="Run a Python program under tracing. Everything after the script, the "
        "module or `--` is the program's. Each option is the same as its FERROTRACE_* variable "
        "and overrides it.",
    )
    for flag, name in SETTING_OPTIONS.items():
        flags = ["-o", flag] if flag == "--output" else [flag]
        p.add_argument(*flags, dest=name, metavar=name.replace("_", "-"), help=_HELP[flag])
    p.add_argument("--html", metavar="REPORT", help="write the HTML report of the run to REPORT when it ends")
    p.add_argument(
        "-m", dest="module", metavar="module", help="run a library module as a script (then its args)"
    )
    return p


def _takes_value(token: str) -> bool:
    name = token.partition("=")[0]
    return "=" not in token and (name in SETTING_OPTIONS or name in ("-o", "--html"))


def parse(argv: list[str]) -> RunArgs:
    """Splits `argv` (what follows `run`) into ferrotrace's options and the program; exits 2
    with the usage on a bad option, as argparse does."""
    p = parser()
    options: list[str] = []
    run = RunArgs()
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            run.command = argv[i + 1 :]
            if not run.command:
                p.error("nothing to run after --")
            break
        if token == "-m" or (token.startswith("-m") and not token.startswith("--")):
            module = token[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if not module:
                p.error("-m needs a module name")
            run.module = module
            run.args = argv[i + (1 if token[2:] else 2) :]
            break
        if token.startswith("-") and token != "-":
            options.append(token)
            if _takes_value(token) and i + 1 < len(argv):
                options.append(argv[i + 1])
                i += 1
            i += 1
            continue
        run.script = token
        run.args = argv[i + 1 :]
        break
    ns = p.parse_args(options)
    run.settings = {
        name: getattr(ns, name) for name in SETTING_OPTIONS.values() if getattr(ns, name) is not None
    }
    run.html = ns.html
    if run.module is None and run.script is None and run.command is None:
        p.error("give a script, -m module, or -- command")
    return run
