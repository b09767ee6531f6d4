"""What recording where exceptions went costs, in instructions per call counted by callgrind.

    python benches/exception_cost.py [--python PATH ...] [--backend NAME]

For each interpreter given (a venv's python with ferrotrace installed; default: this one), a
child process runs, untraced and traced (JSONL to /dev/null), two loops of the same shape:
`catcher -> middle -> leaf`, where `leaf` returns (calls that raise nothing) or raises a
ValueError that `catcher` catches two levels up (two raising spans per round, both waiting
for `catcher`'s verdict). Each runs under `valgrind --tool=callgrind` for ROUNDS and for
3 x ROUNDS rounds; the difference, less untraced's, over the extra calls is the steady-state
cost of one recorded call on the program's thread (the export thread is counted apart).
Run it with the interpreters of two builds (before and after a change) to compare them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROUNDS = 20_000
CALLS_PER_ROUND = 3  # catcher, middle, leaf

CHILD = r"""
import sys
rounds, kind, traced = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
if traced:
    import ferrotrace
    ferrotrace.configure(output="/dev/null")

def leaf_ok(i):
    return i

def middle_ok(i):
    return leaf_ok(i)

def catcher_ok(i):
    try:
        return middle_ok(i)
    except ValueError:
        return -1

def leaf_raise(i):
    raise ValueError("no")

def middle_raise(i):
    return leaf_raise(i)

def catcher_raise(i):
    try:
        return middle_raise(i)
    except ValueError:
        return -1

def run(n):
    f = catcher_ok if kind == "ok" else catcher_raise
    for i in range(n):
        f(i)

if traced:
    with ferrotrace.session("bench"):
        run(rounds)
    ferrotrace.shutdown()
else:
    run(rounds)
"""


def main_thread_instructions(python: str, rounds: int, kind: str, traced: bool, backend: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(CHILD)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_")}
        env["PYTHONHASHSEED"] = "0"
        if backend:
            env["FERROTRACE_BACKEND"] = backend
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}.%p"]
        cmd += [python, str(script), str(rounds), kind, "1" if traced else "0"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, check=False)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        (main,) = Path(tmp).glob("callgrind.out.*-01")
        for line in main.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise SystemExit("no totals in callgrind's output")


def steady(python: str, kind: str, traced: bool, backend: str) -> int:
    high = main_thread_instructions(python, 3 * ROUNDS, kind, traced, backend)
    return high - main_thread_instructions(python, ROUNDS, kind, traced, backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--backend", default="", help="FERROTRACE_BACKEND (default: auto)")
    args = parser.parse_args()
    calls = 2 * ROUNDS * CALLS_PER_ROUND
    print(
        "| python | backend | per call, nothing raised | per call, raising rounds | extra per raising span |"
    )
    print("|---|---|---|---|---|")
    for python in args.python or [sys.executable]:
        cells = []
        for kind in ("ok", "raise"):
            extra = steady(python, kind, True, args.backend) - steady(python, kind, False, args.backend)
            cells.append(extra / calls)
        # A raising round has two raising spans (leaf, middle) and one that catches.
        per_raising = (cells[1] - cells[0]) * CALLS_PER_ROUND / 2
        backend = args.backend or "auto"
        print(f"| {python} | {backend} | {cells[0]:,.0f} | {cells[1]:,.0f} | {per_raising:,.0f} |")


if __name__ == "__main__":
    main()
