"""Served requests per second and latency of a small Flask app under gunicorn and a small
FastAPI app under uvicorn, on loopback, measured with `wrk` (Debian package `wrk`):

- untraced;
- ferrotrace at FERROTRACE_SAMPLE_RATE=0.01 and 1.0 (`ferrotrace run`, function spans of the
  app's own code on, no previews, OTLP to a local sink);
- OpenTelemetry's zero-code instrumentation (`opentelemetry-instrument`, its Flask/FastAPI
  instrumentation, OTLP/HTTP to the same sink), one span per request;
- ddtrace-run, its agent a local sink.

Usage: python benches/services.py [--duration S] [--connections C] [--rounds K]
                                  [--peers-python PATH] [--only flask|fastapi]
The interpreter running it needs ferrotrace, flask, fastapi, uvicorn and gunicorn; the peers
(OpenTelemetry, ddtrace) run from `--peers-python`, a separate virtualenv with the packages
of benches/requirements-services.txt (left out when not given). Each configuration gets a
fresh server, a warm-up, then `wrk -t1 -cC -dS --latency`; with K rounds the modes run K
times in rotated order and the best round of each is kept. Both the server and wrk share this
machine's cores: compare figures of one run, not across machines.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: The applications: a handler that calls a few functions of the app's own code.
COMMON = """
def price(i):
    return i * 3 + 1

def total(n):
    return sum(price(i) for i in range(n))
"""

FLASK_APP = (
    COMMON
    + """
from flask import Flask
app = Flask(__name__)

@app.route("/items/<int:item_id>")
def item(item_id):
    return {"id": item_id, "total": total(10)}
"""
)

FASTAPI_APP = (
    COMMON
    + """
from fastapi import FastAPI
app = FastAPI()

@app.get("/items/{item_id}")
async def item(item_id: int):
    return {"id": item_id, "total": total(10)}
"""
)

MODES = ("untraced", "ferrotrace-0.01", "ferrotrace-1.0", "opentelemetry", "ddtrace")


class Sink(BaseHTTPRequestHandler):
    """Accepts whatever an exporter posts (OTLP, the Datadog agent API) with a 200, and
    counts the bytes (proof that the tracer exported)."""

    received = 0

    def do_POST(self) -> None:  # noqa: N802
        Sink.received += len(self.rfile.read(int(self.headers.get("content-length") or 0)))
        body = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} not ready")


def server_argv(app: str, python: str, port: int) -> list[str]:
    if app == "flask":
        return [python, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1", "flask_app:app"]
    return [
        python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", "fastapi_app:app",
    ]  # fmt: skip


def command(
    mode: str, app: str, port: int, sink: int, peers: str | None, out: Path
) -> tuple[list[str], dict]:
    """The server command of a mode and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERROTRACE", "OTEL_", "DD_"))}
    if mode == "untraced":
        return server_argv(app, sys.executable, port), env
    if mode.startswith("ferrotrace"):
        env.update(
            FERROTRACE_SAMPLE_RATE=mode.split("-")[1],
            FERROTRACE_EXPORTER="otlp",
            FERROTRACE_OTLP_ENDPOINT=f"http://127.0.0.1:{sink}",
            FERROTRACE_SPOOL_MAX_MB="0",
        )
        wrapped = [sys.executable, "-m", "ferrotrace", "run", "--capture", "none", "-o", str(out), "--"]
        return wrapped + server_argv(app, sys.executable, port), env
    assert peers is not None
    peers = os.path.abspath(peers)  # not resolved: a virtualenv's python is a symlink
    bindir = os.path.dirname(peers)
    if mode == "opentelemetry":
        env.update(
            OTEL_SERVICE_NAME="bench",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{sink}",
        )
        return [f"{bindir}/opentelemetry-instrument", *server_argv(app, peers, port)], env
    env.update(
        DD_TRACE_AGENT_URL=f"http://127.0.0.1:{sink}", DD_SERVICE="bench", DD_TELEMETRY_ENABLED="false"
    )
    env.update(DD_REMOTE_CONFIGURATION_ENABLED="false", DD_INSTRUMENTATION_TELEMETRY_ENABLED="false")
    return [f"{bindir}/ddtrace-run", *server_argv(app, peers, port)], env


def parse_wrk(text: str) -> tuple[float, float, float]:
    """Requests/s and p50/p99 latency (ms) from `wrk --latency` output."""

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m is None:
            raise RuntimeError(f"no {label}% in wrk output:\n{text}")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
    return float(rps.group(1)), ms("50"), ms("99")


def measure(mode: str, app: str, args: argparse.Namespace, sink: int, workdir: Path) -> tuple[float, ...]:
    """(requests/s, p50 ms, p99 ms, KiB the tracer sent to the sink) of one server run."""
    port = free_port()
    Sink.received = 0
    argv, env = command(mode, app, port, sink, args.peers_python, workdir / f"{app}-{mode}.jsonl")
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/items/7"
        wrk = ["wrk", "-t1", f"-c{args.connections}"]
        subprocess.run([*wrk, "-d2s", url], capture_output=True, check=True)
        result = subprocess.run(
            [*wrk, f"-d{args.duration}s", "--latency", url], capture_output=True, text=True
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return (*parse_wrk(result.stdout), Sink.received / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--peers-python", default=None, help="python of a virtualenv with the peers")
    parser.add_argument("--only", choices=["flask", "fastapi"], default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benches/services.py needs wrk: apt-get install -y wrk")
    modes = [m for m in MODES if args.peers_python or m not in ("opentelemetry", "ddtrace")]
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    apps = [args.only] if args.only else ["flask", "fastapi"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "flask_app.py").write_text(FLASK_APP)
        (workdir / "fastapi_app.py").write_text(FASTAPI_APP)
        best: dict[tuple[str, str], tuple[float, ...]] = {}
        for r in range(args.rounds):
            order = modes[r % len(modes) :] + modes[: r % len(modes)]
            for app in apps:
                for mode in order:
                    got = measure(mode, app, args, sink.server_address[1], workdir)
                    if (app, mode) not in best or got[0] > best[(app, mode)][0]:
                        best[(app, mode)] = got
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, best of {args.rounds} round(s)")
    head = f"{'app':<18} {'mode':<16} {'req/s':>7} {'x untraced':>10} {'p50 ms':>7} {'p99 ms':>7}"
    print(f"{head} {'sent KiB':>9}")
    for app in apps:
        server = "Flask/gunicorn" if app == "flask" else "FastAPI/uvicorn"
        base = best[(app, "untraced")][0]
        for mode in modes:
            rps, p50, p99, sent = best[(app, mode)]
            row = f"{server:<18} {mode:<16} {rps:>7.0f} {rps / base:>10.3f} {p50:>7.2f} {p99:>7.2f}"
            print(f"{row} {sent:>9.0f}")


if __name__ == "__main__":
    main()
