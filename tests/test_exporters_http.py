"""The http exporter: the JSONL records, gzip-compressed, POSTed with the API key as a
bearer token, and the key never sent in clear to another machine unless allowed."""

from __future__ import annotations

from conftest import read_trace
from otlp_server import Server

PROGRAM = """
import ferrotrace{auto}
{configure}
def leaf(i):
    return i + 1
with ferrotrace.session("ingest"):
    for i in range(50):
        leaf(i)
"""


def run(runner, server: Server, host: str, *, auto: bool = False, **env: str):
    code = PROGRAM.format(
        auto=", ferrotrace.auto" if auto else "",
        configure="" if auto else "ferrotrace.configure()",
    )
    return runner.run(
        code,
        env={
            "FERROTRACE_EXPORTER": "jsonl,http",
            "FERROTRACE_OUTPUT": "trace.jsonl",
            "FERROTRACE_HTTP_ENDPOINT": f"http://{host}:{server.port}/ingest",
            "FERROTRACE_API_KEY": "sk-test-123",
            "FERROTRACE_SPOOL_MAX_MB": "0",
            "FERROTRACE_SHUTDOWN_TIMEOUT_MS": "3000",
            **env,
        },
        timeout=30,
    )


def test_gzip_jsonl_with_the_bearer_key(runner):
    with Server().start() as server:
        proc = run(runner, server, "127.0.0.1")
        assert proc.returncode == 0, proc.stderr
        reqs = server.requests
        assert reqs and all(r.path == "/ingest" for r in reqs)
        for r in reqs:
            assert r.headers["authorization"] == "Bearer sk-test-123"
            assert r.headers["content-encoding"] == "gzip" and r.raw[:2] == b"\x1f\x8b"
            assert r.headers["content-type"] == "application/x-ndjson"
        posted = [rec for r in reqs for rec in r.jsonl()]
        written = read_trace(runner.tmp / "trace.jsonl")
        key = lambda rec: (rec["type"], rec.get("span_id"))  # noqa: E731
        assert sorted(map(key, posted)) == sorted(map(key, written)), "the same records as the file"
        assert sum(rec["type"] == "span" for rec in posted) == 50
        assert posted[-1]["type"] == "meta"


def test_no_key_in_clear_to_another_host(runner):
    # 0.0.0.0 reaches this machine, but it is not a loopback address: to the rule it is
    # another host.
    with Server().start() as server:
        proc = run(runner, server, "0.0.0.0")
        assert proc.returncode != 0
        assert "FERROTRACE_ALLOW_INSECURE" in proc.stderr and "sk-test-123" not in proc.stderr
        assert not server.requests

        proc = run(runner, server, "0.0.0.0", auto=True)
        assert proc.returncode == 0, proc.stderr
        assert "FERROTRACE_ALLOW_INSECURE" in proc.stderr, "a warning under ferrotrace.auto"
        server.wait_for(lambda s: len(s.requests) > 0)
        assert all("authorization" not in r.headers for r in server.requests), "data, but never the key"

        proc = run(runner, server, "0.0.0.0", FERROTRACE_ALLOW_INSECURE="1")
        assert proc.returncode == 0, proc.stderr
        allowed = [r for r in server.requests if "authorization" in r.headers]
        assert allowed and all(r.headers["authorization"] == "Bearer sk-test-123" for r in allowed)
