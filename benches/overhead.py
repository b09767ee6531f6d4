"""Overhead of ferrotrace against the floor and its peers, per Python call.

    python benches/overhead.py                     # CPython 3.10-3.13, 7 reps, all workloads
    python benches/overhead.py --quick --python 3.12 --workloads richards,micro

Sets up benches/.work/ (see _env.py), then for every Python version runs each configuration in a
fresh process, round-robin over configurations in every repetition, and reports medians: seconds
of in-process workload time, the ratio to untraced and the overhead in ns per Python call. Prints
the tables and the issue-4 target checks, and writes benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import _env

MONITORING_MINOR = 12  # sys.monitoring exists from CPython 3.12
VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
WORKLOADS = ["richards", "deltablue", "raytrace", "micro"]
# Iterations per run: full runs take about 0.2 s untraced per workload, quick ones about 0.05 s.
ITERATIONS = {"richards": 3, "deltablue": 60, "raytrace": 3, "micro": 100}
QUICK_ITERATIONS = {"richards": 1, "deltablue": 15, "raytrace": 1, "micro": 25}
FERROTRACE_MODES = {
    "all": {"FERROTRACE_CAPTURE": "none"},
    "args": {"FERROTRACE_CAPTURE": "all"},
    "filtered": {"FERROTRACE_CAPTURE": "none", "FERROTRACE_INCLUDE": "^$nothing"},
    "unsampled": {"FERROTRACE_CAPTURE": "none", "FERROTRACE_SAMPLE_RATE": "0"},
}
PROBE_WORKLOAD = "deltablue"  # one iteration: ~50,000 calls of a copied pyperformance file


@dataclass
class Config:
    name: str
    tracer: str  # a key of _child.TRACERS
    description: str
    min_minor: int = 10  # first CPython 3.x it applies to
    env: dict[str, str] = field(default_factory=dict)


PEER_CONFIGS = [
    Config("untraced", "untraced", "no tracer"),
    Config("c-setprofile", "c-setprofile", "empty C PyEval_SetProfile callback (the floor)"),
    Config(
        "c-monitoring",
        "c-monitoring",
        "empty C sys.monitoring PY_START/PY_RETURN callbacks",
        MONITORING_MINOR,
    ),
    Config("cprofile", "cprofile", "cProfile (stdlib)"),
    Config("yappi", "yappi", "yappi, wall clock"),
    Config("viztracer", "viztracer", "VizTracer defaults"),
    Config(
        "viztracer-args",
        "viztracer-args",
        "VizTracer with log_func_args and log_func_retval",
    ),
]
MODE_DESCRIPTIONS = {
    "all": "ferrotrace, every call recorded, no previews",
    "args": "ferrotrace, every call with args and return previews",
    "filtered": "ferrotrace, everything filtered out",
    "unsampled": "ferrotrace, unsampled session (sample rate 0)",
}


def ferrotrace_configs(backend: str | None) -> list[Config]:
    """The four ferrotrace modes, on one backend (None: ferrotrace's default)."""
    suffix = f"[{backend}]" if backend else ""
    backend_env = {"FERROTRACE_BACKEND": backend} if backend else {}
    min_minor = MONITORING_MINOR if backend == "monitoring" else 10
    return [
        Config(
            f"ft-{mode}{suffix}",
            "ferrotrace",
            MODE_DESCRIPTIONS[mode] + (f", {backend} backend" if backend else ""),
            min_minor,
            {"FERROTRACE_EXPORTER": "jsonl", **backend_env, **env},
        )
        for mode, env in FERROTRACE_MODES.items()
    ]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child_env(config: Config, trace_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_")}
    env.update(config.env)
    env["FERROTRACE_OUTPUT"] = os.path.join(trace_dir, "trace.jsonl")
    env["PYTHONHASHSEED"] = "0"
    return env


def child_command(env: _env.Env, config: Config, workload: str, iters: int, *extra: str) -> list:
    """The command line of one _child.py run."""
    return [
        env.python,
        _env.BENCHES / "_child.py",
        "--tracer",
        config.tracer,
        "--workload",
        workload,
        "--iters",
        str(iters),
        "--workloads",
        env.workloads,
        "--hooks",
        env.hooks,
        *extra,
    ]


def run_child(
    env: _env.Env,
    config: Config,
    workload: str,
    iters: int,
    *extra: str,
    spans: bool = False,
):
    """Run _child.py once; returns (CompletedProcess, spans written to the trace)."""
    traces = _env.WORK / "traces"
    traces.mkdir(exist_ok=True)
    trace_dir = tempfile.mkdtemp(dir=traces)
    try:
        proc = subprocess.run(
            child_command(env, config, workload, iters, *extra),
            check=False,
            capture_output=True,
            text=True,
            env=child_env(config, trace_dir),
            cwd=_env.WORK,
        )
        written = count_spans(Path(trace_dir)) if spans else 0
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
        # Tracers that wrote hundreds of MB leave dirty pages; write them back now, untimed,
        # rather than during the next configuration's run.
        os.sync()
    return proc, written


def count_spans(trace_dir: Path) -> int:
    spans = 0
    for path in trace_dir.iterdir():
        with path.open() as lines:
            spans += sum(1 for line in lines if '"span"' in line and json.loads(line).get("type") == "span")
    return spans


def probe(env: _env.Env, config: Config) -> str:
    """Why config cannot be measured in this venv, or "" if it can.

    ferrotrace must also stay silent on stderr, and in all-calls mode record a span for
    (nearly) every call of a copied pyperformance file.
    """
    proc, spans = run_child(env, config, PROBE_WORKLOAD, 1, spans=True)
    stderr = proc.stderr.strip()
    if proc.returncode != 0:
        return (stderr.splitlines() or [f"exit status {proc.returncode}"])[-1]
    if config.tracer == "ferrotrace":
        if stderr:
            return f"ferrotrace warned: {stderr.splitlines()[0]}"
        if not config.name.startswith("ft-all"):
            return ""
        calls = count_calls(env, PROBE_WORKLOAD, 1)
        if spans < 0.9 * calls:
            return f"ferrotrace recorded {spans:,} spans for {calls:,} calls (workload excluded?)"
        tools = json.loads(proc.stdout.splitlines()[-1])["monitoring_tools"]
        if config.env.get("FERROTRACE_BACKEND") == "monitoring" and not tools:
            return "FERROTRACE_BACKEND=monitoring accepted, but no sys.monitoring tool was registered"
    return ""


def available_configs(env: _env.Env, wanted: set[str] | None) -> tuple[list[Config], list[str]]:
    """Probe every configuration; returns the usable ones and notes on the others."""
    minor = int(env.version.split(".")[1])
    candidates = [c for c in PEER_CONFIGS if c.min_minor <= minor]
    notes = []
    if env.ferrotrace_note:
        notes.append(env.ferrotrace_note)
    else:
        candidates += ferrotrace_candidates(env, minor, notes)
    if wanted:
        candidates = [c for c in candidates if c.name == "untraced" or c.name in wanted]
    usable = []
    for config in candidates:
        reason = probe(env, config)
        if reason:
            notes.append(f"{config.name} unavailable: {reason}")
        else:
            usable.append(config)
    return usable, notes


def backends_of(minor: int) -> list[str]:
    """The FERROTRACE_BACKEND values CPython 3.`minor` can have."""
    return ["setprofile", "monitoring"] if minor >= MONITORING_MINOR else ["setprofile", "evalframe"]


def ferrotrace_candidates(env: _env.Env, minor: int, notes: list[str]) -> list[Config]:
    """ferrotrace's modes on each FERROTRACE_BACKEND that works, else on its default one."""
    backends = backends_of(minor)
    reasons = {b: probe(env, ferrotrace_configs(b)[0]) for b in backends}
    if "" in reasons.values():
        return [c for b in backends for c in ferrotrace_configs(b)]
    notes += [f"ft-all[{b}] unavailable: {reason}" for b, reason in reasons.items()]
    notes.append("no FERROTRACE_BACKEND value works: measuring ferrotrace's default backend")
    return ferrotrace_configs(None)


def count_calls(env: _env.Env, workload: str, iters: int) -> int:
    proc, _ = run_child(env, PEER_CONFIGS[0], workload, iters, "--count")
    if proc.returncode != 0:
        raise SystemExit(f"counting calls of {workload} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])["calls"]


def measure(env: _env.Env, config: Config, workload: str, iters: int) -> dict | None:
    """One timed run: its JSON line (seconds, and for ferrotrace the spans it recorded and
    dropped), or None when it failed."""
    proc, _ = run_child(env, config, workload, iters)
    if proc.returncode != 0:
        with (_env.WORK / "errors.log").open("a") as out:
            out.write(f"== {env.version} {config.name} {workload}\n{proc.stderr}\n")
        log(f"  {config.name} on {workload} failed (see {_env.WORK / 'errors.log'})")
        return None
    return json.loads(proc.stdout.splitlines()[-1])


@dataclass
class VersionResult:
    env: _env.Env
    configs: list[Config]
    notes: list[str]
    calls: dict[str, int]  # per workload
    times: dict[tuple[str, str], list[float]]  # (workload, config name) -> seconds per rep
    # (workload, ferrotrace config name) -> spans dropped, summed over repetitions
    dropped: dict[tuple[str, str], int]

    def median(self, workload: str, config: str) -> float | None:
        times = self.times.get((workload, config))
        return statistics.median(times) if times else None

    def overhead_ns(self, workload: str, config: str) -> float | None:
        t, base = self.median(workload, config), self.median(workload, "untraced")
        if t is None or base is None:
            return None
        return (t - base) / self.calls[workload] * 1e9

    def ratio(self, workload: str, config: str) -> float | None:
        t, base = self.median(workload, config), self.median(workload, "untraced")
        return None if t is None or base is None else t / base


def bench_version(version: str, args: argparse.Namespace) -> VersionResult:
    env = _env.prepare(version)
    configs, notes = available_configs(env, args.configs)
    for note in notes:
        log(f"[{version}] {note}")
    iterations = QUICK_ITERATIONS if args.quick else ITERATIONS
    calls = {w: count_calls(env, w, iterations[w]) for w in args.workloads}
    times: dict[tuple[str, str], list[float]] = {}
    dropped: dict[tuple[str, str], int] = {}
    for rep in range(args.reps):
        log(f"[{version}] repetition {rep + 1}/{args.reps}")
        # A different (reproducible) order each repetition, so no configuration always runs
        # right after the same heavy one.
        order = list(configs)
        random.Random(rep).shuffle(order)
        for workload in args.workloads:
            for config in order:
                run = measure(env, config, workload, iterations[workload])
                if run is None:
                    continue
                key = (workload, config.name)
                times.setdefault(key, []).append(run["seconds"])
                if "spans_dropped" in run:
                    dropped[key] = dropped.get(key, 0) + run["spans_dropped"]
                    if run["spans_dropped"]:
                        log(f"  {config.name} on {workload} dropped {run['spans_dropped']:,} spans")
    return VersionResult(env, configs, notes, calls, times, dropped)


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else format(value, spec) + unit


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def workload_table(result: VersionResult, workload: str) -> str:
    rows = []
    for config in result.configs:
        times = result.times.get((workload, config.name))
        spread = (max(times) - min(times)) / statistics.median(times) * 100 if times else None
        rows.append(
            [
                config.name,
                fmt(result.median(workload, config.name), ".4f"),
                fmt(result.ratio(workload, config.name), ".2f", "x"),
                "-" if config.name == "untraced" else fmt(result.overhead_ns(workload, config.name), ",.0f"),
                fmt(spread, ".0f", "%"),
                fmt(result.dropped.get((workload, config.name)), ",d"),
            ]
        )
    header = ["config", "median s", "x untraced", "ns/call overhead", "spread", "spans dropped"]
    return markdown_table(header, rows)


def ratio_check(limit: float, value: float | None, dropped: int = 0) -> str:
    if value is None:
        return "n/a"
    if dropped:
        # A run that dropped spans did less work than it was asked to: not a valid result.
        return f"FAIL ({value:.2f}x, {dropped:,} spans dropped)"
    return f"{'PASS' if value <= limit else 'FAIL'} ({value:.2f}x)"


def overhead_ratio(result: VersionResult, workload: str, config: str, peer: str) -> float | None:
    ours, theirs = (
        result.overhead_ns(workload, config),
        result.overhead_ns(workload, peer),
    )
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def floor_check(result: VersionResult, workload: str, config: str) -> str:
    ours, floor = (
        result.overhead_ns(workload, config),
        result.overhead_ns(workload, "c-setprofile"),
    )
    if ours is None or floor is None:
        return "n/a"
    return f"{'PASS' if ours <= floor + 10 else 'FAIL'} ({ours - floor:+.0f} ns)"


def targets(result: VersionResult, b: str) -> list[tuple[str, object]]:
    """The issue-4 targets for one ferrotrace backend: (label, workload -> verdict) pairs."""
    minor = int(result.env.version.split(".")[1])
    viz = 0.65 if minor >= MONITORING_MINOR else 0.9

    def versus(mode: str, peer: str, limit: float):
        config = f"ft-{mode}{b}"
        return lambda w: ratio_check(
            limit, overhead_ratio(result, w, config, peer), result.dropped.get((w, config), 0)
        )

    def untraced(mode: str, limit: float):
        config = f"ft-{mode}{b}"
        return lambda w: ratio_check(limit, result.ratio(w, config), result.dropped.get((w, config), 0))

    rows = [
        (f"ft-all{b} ≤ {viz}x viztracer overhead", versus("all", "viztracer", viz)),
        (f"ft-all{b} < cprofile overhead", versus("all", "cprofile", 0.9999)),
        (
            f"ft-args{b} ≤ 0.1x viztracer-args overhead",
            versus("args", "viztracer-args", 0.1),
        ),
        (f"ft-unsampled{b} ≤ 1.02x untraced", untraced("unsampled", 1.02)),
    ]
    if minor >= MONITORING_MINOR:
        rows.append((f"ft-filtered{b} ≤ 1.03x untraced", untraced("filtered", 1.03)))
    else:
        rows.append(
            (
                f"ft-filtered{b} ≤ floor + 10 ns/call",
                lambda w: floor_check(result, w, f"ft-filtered{b}"),
            )
        )
    return rows


def checks_table(result: VersionResult) -> str | None:
    """One row per target and ferrotrace backend, one column per workload."""
    names = [c.name for c in result.configs]
    backends = [n[len("ft-all") :] for n in names if n.startswith("ft-all")]
    rows = [
        [label, *(verdict(w) for w in result.calls)]
        for b in backends
        for label, verdict in targets(result, b)
    ]
    rows = [row for row in rows if any(cell != "n/a" for cell in row[1:])]
    return markdown_table(["target", *result.calls], rows) if rows else None


def version_report(result: VersionResult) -> str:
    env = result.env
    peers = ", ".join(f"{k} {v}" for k, v in sorted(env.packages.items()))
    parts = [f"## CPython {env.full_version}", "", f"Packages: {peers}.", ""]
    parts += [f"- {note}" for note in result.notes] + ([""] if result.notes else [])
    for workload, calls in result.calls.items():
        parts += [
            f"### {workload} ({calls:,} Python calls per run)",
            "",
            workload_table(result, workload),
            "",
        ]
    checks = checks_table(result)
    parts += [
        "### Targets (issue 4)",
        "",
        checks or "No target evaluated: their configurations were not all measured.",
        "",
    ]
    return "\n".join(parts)


def machine_description() -> list[str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- OS: {platform.platform()}",
        f"- Load average when the report was written: {load}",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]


def legend(configs: list[Config]) -> list[str]:
    seen = {}
    for config in configs:
        seen.setdefault(config.name, config.description)
    return [f"- `{name}`: {text}" for name, text in seen.items()]


def write_results(results: list[VersionResult], args: argparse.Namespace, command: str) -> Path:
    iterations = QUICK_ITERATIONS if args.quick else ITERATIONS
    kind = "a quick smoke run: noisy, not for quoting" if args.quick else "a full run"
    lines = [
        "# ferrotrace overhead results",
        "",
        f"Generated by `{command}` ({kind}); see benches/README.md for how to read this.",
        "",
        *machine_description(),
        f"- Python versions: {', '.join(r.env.full_version for r in results)}",
        f"- Repetitions: {args.reps} interleaved fresh processes per config; medians",
        f"- Iterations per run: {', '.join(f'{w} {iterations[w]}' for w in args.workloads)}",
        "",
        "Configurations:",
        "",
        *legend([c for r in results for c in r.configs]),
        "",
        *(version_report(r) for r in results),
    ]
    path = Path(args.output)
    path.write_text("\n".join(lines))
    return path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--python",
        action="append",
        choices=VERSIONS,
        help="CPython version (repeatable)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        help="fresh-process repetitions per config (default 7, --quick 3)",
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    parser.add_argument("--configs", help="comma-separated config names to run (untraced always runs)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations and 3 reps: a smoke run")
    parser.add_argument(
        "--output",
        default=str(_env.BENCHES / "RESULTS.md"),
        help="where to write the report (default benches/RESULTS.md)",
    )
    args = parser.parse_args()
    args.python = args.python or VERSIONS
    args.reps = args.reps or (3 if args.quick else 7)
    args.workloads = args.workloads.split(",")
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS}")
    args.configs = set(args.configs.split(",")) if args.configs else None
    return args


def main() -> None:
    args = parse_args()
    command = "python " + " ".join([os.path.relpath(__file__), *sys.argv[1:]])
    results = []
    for version in args.python:
        result = bench_version(version, args)
        results.append(result)
        print(version_report(result), flush=True)
    log(f"wrote {write_results(results, args, command)}")


if __name__ == "__main__":
    main()
