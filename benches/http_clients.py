"""Added cost per HTTP request of ferrotrace's client instrumentation, against a loopback
server (HTTP/1.1 keep-alive, in its own process), for requests and httpx:

- untraced;
- ferrotrace inside a sampled session (a record per request, traceparent injected);
- ferrotrace outside any session (instrumented, nothing recorded);
- OpenTelemetry's requests/httpx instrumentation with an in-memory span exporter.

Usage: python benches/http_clients.py [--requests N] [--repeat R] [--rounds K]
The interpreter needs ferrotrace, requests, httpx and the packages of
benches/requirements-http.txt. The server answers every request with one canned write (an
asyncio loop: cheap and steady, so the clients' own cost shows). Each configuration runs in a
fresh process, K times, interleaved with the others in rotated order (no mode always first);
the figure is the best of all its loops of N requests, minus the untraced best.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

SERVER = """
import asyncio
RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            if not head:
                break
            writer.write(RESPONSE)  # one write: no Nagle / delayed-ACK stall
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
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
    ap.add_argument("--repeat", type=int, default=5, help="timed loops per process (best kept)")
    ap.add_argument("--rounds", type=int, default=5, help="processes per mode, modes interleaved")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/"
        print(
            f"python {sys.version.split()[0]}, {args.requests} requests x best of {args.repeat} loops"
            f" x {args.rounds} rounds (modes interleaved, order rotated each round)"
        )
        print(f"{'library':<9} {'mode':<20} {'us/request':>11} {'added us':>9}")
        with tempfile.TemporaryDirectory() as tmp:
            for library in ("requests", "httpx"):
                best = dict.fromkeys(MODES, float("inf"))
                for r in range(args.rounds):
                    for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
                        proc = subprocess.run(
                            [sys.executable, "-c", textwrap.dedent(CLIENT), library, mode, url,
                             str(args.requests), str(args.repeat), f"{tmp}/trace.jsonl"],
                            capture_output=True, text=True, check=True,
                        )  # fmt: skip
                        best[mode] = min(best[mode], json.loads(proc.stdout))
                for mode in MODES:
                    added = best[mode] - best["untraced"]
                    print(f"{library:<9} {mode:<20} {best[mode]:>11.1f} {added:>9.1f}", flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
