"""Instructions per Python call over untraced, counted by callgrind: the overhead figures
without the machine's noise.

    python benches/instructions.py --python 3.12 --workloads micro
    python benches/instructions.py --configs viztracer,ft-all[monitoring]

Uses the same venvs, workloads and configurations as overhead.py. Each configuration runs each
workload under `valgrind --tool=callgrind` for 1 and for 3 iterations; the growth between the
two, less untraced's growth, over the calls of the two extra iterations is the steady-state
cost of one call on the thread that runs the program (ferrotrace's export thread is counted
apart by callgrind and left out). Instruction counts do not weigh cache misses or branch
mispredictions, so they rank tracers reliably but do not replace the wall-clock medians.
Needs valgrind; every run is about 50 times slower than natively (about 15 minutes per
version with the default configurations). Prints one table per version.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _env
import overhead

DEFAULT_CONFIGS = "c-setprofile,c-monitoring,cprofile,viztracer,ft-all,ft-filtered"
LOW, HIGH = 1, 3  # iterations of the two runs whose difference is measured
# The peers each ferrotrace mode is compared with, as in issue 4's targets.
PEERS = {"ft-all": ("viztracer", "cprofile"), "ft-args": ("viztracer-args",)}


def main_thread_instructions(env: _env.Env, config: overhead.Config, workload: str, iters: int) -> int:
    """Instructions the program's main thread executed, from one run under callgrind."""
    traces = _env.WORK / "traces"
    traces.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=traces) as trace_dir:
        out = Path(trace_dir) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}.%p",
            *overhead.child_command(env, config, workload, iters),
        ]
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            env=overhead.child_env(config, trace_dir),
            cwd=_env.WORK,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{config.name} on {workload} failed under valgrind:\n{proc.stderr[-2000:]}")
        # Thread 1 of the program; callgrind names it <file>.<pid>-01.
        (main,) = Path(trace_dir).glob("callgrind.out.*-01")
        for line in main.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise SystemExit(f"no totals in callgrind's output for {config.name} on {workload}")


def steady_cost(env: _env.Env, config: overhead.Config, workload: str) -> int:
    """Instructions the extra iterations took under `config`."""
    return main_thread_instructions(env, config, workload, HIGH) - main_thread_instructions(
        env, config, workload, LOW
    )


def wanted_names(spec: str, version_minor: int) -> set[str]:
    """Config names from `spec`; a bare ft-MODE stands for that mode on every backend."""
    names = set()
    for name in spec.split(","):
        if name.startswith("ft-") and "[" not in name:
            names.update(f"{name}[{b}]" for b in overhead.backends_of(version_minor))
        else:
            names.add(name)
    return names


def version_table(version: str, workloads: list[str], spec: str) -> str:
    env = _env.prepare(version)
    minor = int(version.split(".")[1])
    configs, notes = overhead.available_configs(env, wanted_names(spec, minor))
    for note in notes:
        overhead.log(f"[{version}] {note}")
    untraced = next(c for c in configs if c.name == "untraced")
    per_call: dict[str, dict[str, float]] = {c.name: {} for c in configs if c is not untraced}
    for workload in workloads:
        calls = overhead.count_calls(env, workload, HIGH) - overhead.count_calls(env, workload, LOW)
        base = steady_cost(env, untraced, workload)
        for config in configs:
            if config is untraced:
                continue
            overhead.log(f"[{version}] {config.name} on {workload}")
            per_call[config.name][workload] = (steady_cost(env, config, workload) - base) / calls
    rows = [[name] + [f"{costs[w]:,.0f}" for w in workloads] for name, costs in per_call.items()]
    for name in per_call:
        mode = name.split("[")[0]
        for peer in PEERS.get(mode, ()):
            if peer in per_call:
                rows.append(
                    [f"{name} ÷ {peer}"]
                    + [f"{per_call[name][w] / per_call[peer][w]:.2f}x" for w in workloads]
                )
    header = ["instructions per call over untraced", *workloads]
    return f"## CPython {env.full_version}\n\n" + overhead.markdown_table(header, rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--python", action="append", choices=overhead.VERSIONS, help="CPython version (repeatable)"
    )
    parser.add_argument("--workloads", default=",".join(overhead.WORKLOADS), help="comma-separated subset")
    parser.add_argument("--output", help="also write the tables to this Markdown file")
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help=f"comma-separated config names (default {DEFAULT_CONFIGS}); ft-MODE means every backend",
    )
    args = parser.parse_args()
    args.python = args.python or overhead.VERSIONS
    args.workloads = args.workloads.split(",")
    unknown = set(args.workloads) - set(overhead.WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {overhead.WORKLOADS}")
    return args


def main() -> None:
    args = parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("benches/instructions.py needs valgrind (apt install valgrind)")
    command = "python " + " ".join([os.path.relpath(__file__), *sys.argv[1:]])
    tables = []
    for version in args.python:
        tables.append(version_table(version, args.workloads, args.configs))
        print(tables[-1], flush=True)
    if args.output:
        header = [
            "# ferrotrace instructions per call (callgrind)",
            "",
            f"Generated by `{command}`; see benches/README.md for how to read this.",
            "",
            *overhead.machine_description(),
            "",
        ]
        Path(args.output).write_text("\n".join(header) + "\n" + "\n\n".join(tables) + "\n")
        overhead.log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
