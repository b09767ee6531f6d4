"""Added cost per HTTP request of ferrotrace's client instrumentation, against a loopback
server (HTTP/1.1 keep-alive, in its own process), for requests and httpx:

- untraced;
- ferrotrace inside a sampled session (a record per request, traceparent injected);
- ferrotrace outside any session (instrumented, nothing recorded);
- OpenTelemetry's requests/httpx instrumentation with an in-memory span exporter.

Usage: python benches/http_clients.py [--requests N] [--repeat R]
The interpreter needs ferrotrace, requests, httpx and the packages of
benches/requirements-http.txt. Each configuration runs in a fresh process; the figure is the
best of R runs of N requests, minus the untraced best.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):  # one write: no Nagle / delayed-ACK stall between headers and body
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""

CLIENT = """
import json, sys, time
library, mode, url, n, repeat, out = sys.argv[1:7]
n, repeat = int(n), int(repeat)
if mode.startswith("ferrotrace"):
    import ferrotrace
    ferrotrace.configure(output=out)
    ferrotrace.instrument()
elif mode == "otel":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if library == "requests":
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        RequestsInstrumentor().instrument()
    else:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        HTTPXClientInstrumentor().instrument()
if library == "requests":
    import requests
    client = requests.Session()
else:
    import httpx
    client = httpx.Client()

def loop():
    for _ in range(n):
        client.get(url).content

def timed():
    t = time.perf_counter()
    loop()
    return (time.perf_counter() - t) / n * 1e6

loop()  # warm up the connection
best = float("inf")
for _ in range(repeat):
    if mode == "ferrotrace-session":
        with ferrotrace.session("bench"):
            best = min(best, timed())
    elif mode == "otel":
        with trace.get_tracer("bench").start_as_current_span("bench"):
            best = min(best, timed())
        exporter.clear()
    else:
        best = min(best, timed())
print(json.dumps(best))
"""

MODES = ["untraced", "ferrotrace-session", "ferrotrace-outside", "otel"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/"
        print(f"python {sys.version.split()[0]}, {args.requests} requests x best of {args.repeat}")
        print(f"{'library':<9} {'mode':<20} {'us/request':>11} {'added us':>9}")
        with tempfile.TemporaryDirectory() as tmp:
            for library in ("requests", "httpx"):
                base = None
                for mode in MODES:
                    proc = subprocess.run(
                        [sys.executable, "-c", textwrap.dedent(CLIENT), library, mode, url,
                         str(args.requests), str(args.repeat), f"{tmp}/trace.jsonl"],
                        capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    per = json.loads(proc.stdout)
                    base = per if base is None else base
                    print(f"{library:<9} {mode:<20} {per:>11.1f} {per - base:>9.1f}", flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
