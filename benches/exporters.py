"""Bytes per span and spans per second of each exporter (jsonl, chrome, perfetto, otlp) on
pyperformance's richards and deltablue, without previews (FERROTRACE_CAPTURE=none).

    python benches/exporters.py --python .venv-3.12/bin/python [--workloads richards,deltablue]

The interpreter needs ferrotrace and pyperformance installed (its workload files are copied
to benches/.work/workloads/, see _env.py). Per workload:

1. Bytes per span of a real run: the workload runs traced once with
   FERROTRACE_EXPORTER=jsonl,chrome,perfetto; each file's size divided by the calls recorded.
2. Spans per second of the export thread on one core: the run's calls (functions, threads,
   start times, durations) are exported again, in batches as the export thread gets them, by
   each exporter in `cargo bench -p ferrotrace-exporters --bench export`
   (FERROTRACE_BENCH_TRACE), which also gives OTLP protobuf's bytes per span.

Prints a Markdown table and writes it to benches/RESULTS-exporters.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import _env

ITERATIONS = {"richards": 3, "deltablue": 60}
FILES = {"jsonl": "t.jsonl", "chrome": "t.chrome.json", "perfetto": "t.perfetto-trace"}
#: Calls the export bench replays (the first of the run's trace): enough for a steady rate.
BENCH_LINES = 100_000
ROW = re.compile(r"^(\w+)[^\d]*?\s+(\d+) spans/s\s+([\d.]+) bytes/span(?:.*?(\d+) spans per CPU second)?")


def traced_run(python: Path, workload: str, workloads: Path, out: Path) -> int:
    """Runs `workload` traced into `out`; returns the calls recorded (none dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_")}
    env.update(
        FERROTRACE_EXPORTER="jsonl,chrome,perfetto",
        FERROTRACE_OUTPUT=str(out / FILES["jsonl"]),
        FERROTRACE_CHROME_OUTPUT=str(out / FILES["chrome"]),
        FERROTRACE_PERFETTO_OUTPUT=str(out / FILES["perfetto"]),
        FERROTRACE_CAPTURE="none",
        FERROTRACE_MAX_QUEUE="100000000",
    )
    cmd = [str(python), str(_env.BENCHES / "_child.py"), "--tracer", "ferrotrace", "--workload", workload]
    cmd += ["--iters", str(ITERATIONS[workload]), "--workloads", str(workloads), "--hooks", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["spans_dropped"]:
        raise SystemExit(f"{workload}: {result['spans_dropped']} spans dropped; the figures would be wrong")
    return result["spans_recorded"]


def export_bench(trace: Path) -> dict[str, tuple[float, float, float]]:
    """exporter → (spans/s, bytes/span, spans per CPU second) from the Rust export bench on
    `trace`'s calls."""
    env = dict(os.environ, FERROTRACE_BENCH_TRACE=str(trace))
    proc = subprocess.run(
        ["cargo", "bench", "-q", "-p", "ferrotrace-exporters", "--bench", "export"],
        cwd=_env.REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {}
    for line in proc.stdout.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)), float(m.group(4) or 0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="interpreter with ferrotrace and pyperformance")
    parser.add_argument("--workloads", default="richards,deltablue")
    args = parser.parse_args()
    python = Path(args.python).absolute()
    version = _env.query(python, "import sys; print('%d.%d' % sys.version_info[:2])")
    workloads = _env.copy_workloads(version, python)
    lines = [
        f"# Exporters: bytes per span and spans/s ({datetime.date.today()}, CPython {version})",
        "",
        "Command: `python benches/exporters.py --python "
        + args.python
        + "`. Without previews. Bytes per span:",
        "file size / calls recorded of one traced run (sessions and final records included);",
        "OTLP: protobuf bytes of the same calls from the export bench (encoding only). Spans/s: the",
        "export bench re-exporting the run's calls on one core (file exporters write to a file), by",
        "wall time and per CPU second of the exporting thread (the machine may be shared;",
        f"{platform.machine()}).",
        "",
        "| workload | calls | exporter | bytes/span (run) | bytes/span (bench) | spans/s | spans/CPU s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for workload in args.workloads.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            calls = traced_run(python, workload, workloads, out)
            sample = out / "bench.jsonl"
            with (out / FILES["jsonl"]).open() as src, sample.open("w") as dst:
                dst.writelines(line for _, line in zip(range(BENCH_LINES), src, strict=False))
            bench = export_bench(sample)
            for exporter in ("jsonl", "chrome", "perfetto", "otlp"):
                run_bytes = (
                    f"{(out / FILES[exporter]).stat().st_size / calls:.1f}" if exporter in FILES else "-"
                )
                rate, per_span, cpu_rate = bench.get(exporter, (0.0, 0.0, 0.0))
                cpu = f"{cpu_rate / 1e6:.2f} M" if cpu_rate else "-"
                cells = [
                    workload,
                    str(calls),
                    exporter,
                    run_bytes,
                    f"{per_span:.1f}",
                    f"{rate / 1e6:.2f} M",
                    cpu,
                ]
                lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    (_env.BENCHES / "RESULTS-exporters.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
