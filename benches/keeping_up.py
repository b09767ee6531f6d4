"""Does the export path keep up with the hook? Spans/s each backend produces against spans/s
each exporter consumes, with previews (`FERROTRACE_CAPTURE=all`), and the drops at the
default queue settings.

    python benches/keeping_up.py [--python .venv-3.12/bin/python ...] [--calls 300000]

For each interpreter, backend and exporter, a child process runs a call-heavy workload (small
functions called with a list, a string, a dict and ints, like an itertools library's tests)
under `ferrotrace run`, then waits for the export to finish and reports:

- produced: spans recorded per CPU second of the program's thread (the hook's rate; the
  program does nothing but make calls);
- consumed: spans exported per CPU second of the `ferrotrace-export` thread (read from
  /proc before shutdown), the exporter's rate with this workload's previews;
- dropped: spans lost at the default FERROTRACE_MAX_QUEUE / BATCH_SIZE.

Rates are per CPU second, so they compare on a busy machine; a drop count depends on the
machine (the export thread needs a core of its own while the program runs). Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import glob
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORKLOAD = '''
import json, os, sys, time
import ferrotrace


def leaf(value, text, options):
    return value + len(text) + len(options)


def window(items, text, options):
    total = 0
    for value in items:
        total += leaf(value, text, options)
    return total


def run(calls):
    items = list(range(9))
    text = "more-itertools " * int(sys.argv[2])
    options = {"size": 3, "fill": None, "strict": True, "key": str.lower, "pad": [0.5] * 20}
    for _ in range(calls // 10):
        window(items, text, options)


def cpu_seconds_of(thread_name):
    """CPU seconds of this process's thread called `thread_name` (utime + stime)."""
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as f:
            if f.read().strip() != thread_name[:15]:  # the kernel keeps 15 bytes of a name
                continue
        with open(f"/proc/self/task/{task}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


cpu0 = time.thread_time()
wall0 = time.perf_counter()
run(int(sys.argv[1]))
cpu = time.thread_time() - cpu0
wall = time.perf_counter() - wall0
ferrotrace.flush(600)
stats = ferrotrace.stats()
print("KEEPING_UP " + json.dumps({
    "recorded": stats["recorded"], "exported": stats["exported"], "dropped": stats["dropped"],
    "bytes": stats["bytes_written"],
    "program_cpu": cpu, "program_wall": wall, "export_cpu": cpu_seconds_of("ferrotrace-export"),
}))
'''


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that reads and discards every request."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def backends(python: str) -> list[str]:
    minor = int(subprocess.check_output([python, "-c", "import sys; print(sys.version_info[1])"]))
    return ["monitoring" if minor >= 12 else "evalframe", "setprofile"]


def measure(
    python: str, backend: str, exporter: str, calls: int, text_repeat: int, tmp: Path, sink: str
) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERROTRACE_", "OTEL_"))}
    env.update(FERROTRACE_BACKEND=backend, FERROTRACE_CAPTURE="all", FERROTRACE_OUTPUT=os.devnull)
    if exporter == "jsonl-file":
        env.update(FERROTRACE_OUTPUT=str(tmp / "trace.jsonl"))
    elif exporter == "chrome":
        env.update(FERROTRACE_EXPORTER="chrome", FERROTRACE_CHROME_OUTPUT=os.devnull)
    elif exporter == "otlp":
        env.update(FERROTRACE_EXPORTER="otlp", FERROTRACE_OTLP_ENDPOINT=sink)
    script = tmp / "workload.py"
    script.write_text(WORKLOAD)
    proc = subprocess.run(
        [python, "-m", "ferrotrace", "run", str(script), str(calls), str(text_repeat)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    for f in glob.glob(str(tmp / "trace*.jsonl")):
        os.unlink(f)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("KEEPING_UP ")), None)
    if line is None:
        sys.exit(f"{python} {backend} {exporter} failed: {proc.stderr[-2000:]}")
    return json.loads(line.split(" ", 1)[1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--python", action="append", help="interpreters with ferrotrace installed")
    p.add_argument("--calls", type=int, default=300_000, help="calls made by the workload")
    p.add_argument("--exporters", default="jsonl,jsonl-file,chrome,otlp")
    p.add_argument("--text", type=int, default=4, help="the str argument is 'more-itertools ' times this")
    a = p.parse_args()
    pythons = (
        [os.path.abspath(p) for p in a.python]
        if a.python
        else sorted(str(p) for p in REPO.glob(".venv-3.1*/bin/python"))
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{server.server_address[1]}"
    print(
        "| python | backend | exporter | produced spans/s | consumed spans/s | consumed/produced "
        "| bytes/span | recorded | dropped |\n|---|---|---|---:|---:|---:|---:|---:|---:|",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="ferrotrace-keeping-up-") as tmp:
        for python in pythons:
            version = subprocess.check_output([python, "-c", "import sys; print(sys.version.split()[0])"])
            for backend in backends(python):
                for exporter in a.exporters.split(","):
                    r = measure(python, backend, exporter, a.calls, a.text, Path(tmp), sink)
                    produced = r["recorded"] / max(r["program_cpu"], 1e-9)
                    consumed = r["exported"] / max(r["export_cpu"] or 0, 1e-2)
                    per_span = r["bytes"] / max(r["exported"], 1)
                    print(
                        f"| {version.decode().strip()} | {backend} | {exporter} | {produced:,.0f} "
                        f"| {consumed:,.0f} | {consumed / produced:.2f} | {per_span:.0f} "
                        f"| {r['recorded']:,} | {r['dropped']:,} |",
                        flush=True,
                    )
    server.shutdown()


if __name__ == "__main__":
    main()
