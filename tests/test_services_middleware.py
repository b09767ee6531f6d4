"""The WSGI and ASGI middleware wired by hand, driven in a traced program with requests made
as a server would make them (a PEP 3333 environ, an ASGI 3 scope): sampling per request,
propagation, the `traceresponse` header, captured and redacted headers, exceptions reaching
the caller unchanged, pass-through scopes, and the request session in every exporter."""

from __future__ import annotations

import json

import pytest
from conftest import Runner, read_trace, spans
from otlp_server import Server

#: A traced program's prelude: a WSGI and an ASGI application (each doing `work()`), both
#: wrapped, and `wsgi(path, headers)` / `asgi(path, headers)` that serve one request and
#: return (status, response headers, body).
PRELUDE = """
import asyncio, json, sys
from wsgiref.util import setup_testing_defaults
import ferrotrace
from ferrotrace.integrations import asgi as ft_asgi, wsgi as ft_wsgi

def work():
    return 42

class Failure(Exception):
    pass

def wsgi_app(environ, start_response):
    work()
    if environ["PATH_INFO"] == "/fail":
        raise Failure("card 4111 1111 1111 1111 declined")
    status = "503 Unavailable" if environ["PATH_INFO"] == "/down" else "200 OK"
    start_response(status, [("content-type", "text/plain")])
    return [b"hello"]

async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        msg = await receive()
        await send({"type": "lifespan.startup.complete"})
        return
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        return
    work()
    if scope["path"] == "/fail":
        raise Failure("boom")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hel", "more_body": True})
    await send({"type": "http.response.body", "body": b"lo"})

WSGI = ft_wsgi.TracingMiddleware(wsgi_app)
ASGI = ft_asgi.TracingMiddleware(asgi_app)

def wsgi(path, headers=(), app=WSGI):
    environ = {"PATH_INFO": path, "QUERY_STRING": "page=2&token=s3cr3tvalue"}
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    got = {}
    def start_response(status, hdrs, exc_info=None):
        got["status"], got["headers"] = status, dict(hdrs)
    body = app(environ, start_response)
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return got["status"], got["headers"], data.decode()

def asgi(path, headers=(), kind="http", app=ASGI):
    scope = {"type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"a=1",
             "root_path": "", "headers": [(n.lower().encode(), v.encode()) for n, v in headers],
             "client": ("10.1.2.3", 5555), "server": ("example.test", 8080)}
    sent = []
    async def receive():
        return {"type": "lifespan.startup"} if kind == "lifespan" else {"type": "http.request", "body": b""}
    async def send(message):
        sent.append(message)
    asyncio.run(app(scope, receive, send))
    return sent
"""

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def run(runner: Runner, body: str, env: dict[str, str] | None = None, output: str = "trace.jsonl") -> dict:
    """Runs PRELUDE + body (which sets `out`), then flushes; returns `out` and the trace."""
    proc = runner.run(
        PRELUDE + body + "\nferrotrace.shutdown()\nprint(json.dumps(out, default=bytes.decode))\n",
        env={"FERROTRACE_OUTPUT": str(runner.tmp / output), **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    if output.endswith(".jsonl"):
        out["records"] = read_trace(runner.tmp / output)
    return out


def requests(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "session_end" and r["kind"] == "server"]


def meta(records: list[dict]) -> dict:
    return next(r for r in records if r["type"] == "meta")


def test_sample_rate_zero_makes_no_request_session_and_a_sampled_parent_is_honoured(runner: Runner) -> None:
    out = run(
        runner,
        f"""
out = {{"plain": wsgi("/a"), "unsampled_parent": wsgi("/b", [("traceparent", "{TP[:-2]}00")]),
       "asgi": asgi("/c"), "sampled_parent": wsgi("/d", [("traceparent", "{TP}")])}}
""",
        env={"FERROTRACE_SAMPLE_RATE": "0"},
    )
    for key in ("plain", "unsampled_parent", "sampled_parent"):
        assert out[key] == ["200 OK", {"content-type": "text/plain"}, "hello"]
    (s,) = requests(out["records"])
    assert s["attrs"]["url.path"] == "/d" and s["trace_id"] == TP[3:35]
    assert not [r for r in spans(out["records"]) if r["trace_id"] != s["trace_id"]]
    assert meta(out["records"])["sessions_unsampled"] == 3


def test_invalid_traceparent_starts_a_new_trace_and_is_counted(runner: Runner) -> None:
    out = run(runner, 'out = {"r": wsgi("/a", [("traceparent", "00-zz-nope-01")])}')
    (s,) = requests(out["records"])
    assert s["parent_span_id"] is None and len(s["trace_id"]) == 32
    assert meta(out["records"])["invalid_traceparent"] == 1


def test_traceresponse_only_when_asked(runner: Runner) -> None:
    body = f'out = {{"wsgi": wsgi("/a", [("traceparent", "{TP}")]), "asgi": asgi("/b")}}'
    out = run(runner, body)
    assert "traceresponse" not in out["wsgi"][1]
    assert all(b"traceresponse" not in dict(m.get("headers", ())) for m in out["asgi"])
    out = run(
        runner,
        body + "\nout['asgi'] = [m for m in out['asgi'] if 'headers' in m]\n",
        {"FERROTRACE_RESPONSE_TRACEPARENT": "1"},
    )
    by_path = {s["attrs"]["url.path"]: s for s in requests(out["records"])}
    s = by_path["/a"]
    assert out["wsgi"][1]["traceresponse"] == f"00-{s['trace_id']}-{s['span_id']}-01"
    s = by_path["/b"]
    (start,) = out["asgi"]
    assert [v for k, v in start["headers"] if k == "traceresponse"] == [
        f"00-{s['trace_id']}-{s['span_id']}-01"
    ]


def test_attributes_and_captured_headers_are_redacted(runner: Runner) -> None:
    out = run(
        runner,
        'out = {"w": wsgi("/items/7", [("authorization", "Bearer abc.def.ghi"), ("x-request-id", "r-1"), '
        '("user-agent", "probe/1")]), "a": asgi("/x", [("x-request-id", "r-2"), ("cookie", "sid=1")])}',
        {"FERROTRACE_CAPTURE_HEADERS": "authorization,x-request-id,cookie"},
    )
    by_path = {s["attrs"]["url.path"]: s["attrs"] for s in requests(out["records"])}
    w = by_path["/items/7"]
    assert w["url.query"] == "page=2&token=[REDACTED]"
    assert w["http.request.header.authorization"] == "[REDACTED]"
    assert w["http.request.header.x-request-id"] == "r-1"
    assert w["user_agent.original"] == "probe/1"
    assert w["server.port"] == "80" and w["url.scheme"] == "http"
    a = by_path["/x"]
    assert a["http.request.header.cookie"] == "[REDACTED]"
    assert (a["server.address"], a["server.port"], a["client.address"]) == (
        "example.test",
        "8080",
        "10.1.2.3",
    )
    assert "s3cr3tvalue" not in (runner.tmp / "trace.jsonl").read_text()


def test_an_escaping_exception_reaches_the_server_unchanged_and_marks_the_session(runner: Runner) -> None:
    out = run(
        runner,
        """
out = {}
for name, call in (("wsgi", lambda: wsgi("/fail")), ("asgi", lambda: asgi("/fail"))):
    try:
        call()
    except Failure as exc:
        out[name] = [type(exc).__name__, str(exc), exc.__traceback__ is not None]
out["down"] = wsgi("/down")
""",
    )
    assert out["wsgi"] == ["Failure", "card 4111 1111 1111 1111 declined", True]
    assert out["asgi"] == ["Failure", "boom", True]
    assert out["down"][0] == "503 Unavailable"
    by_path = {}
    for s in requests(out["records"]):
        by_path.setdefault(s["attrs"]["url.path"], []).append(s)
    for s in by_path["/fail"]:
        assert s["status"] == "error" and s["exception"]["type"] == "__main__.Failure"
        assert "4111" not in s["exception"]["message"]
        assert "http.response.status_code" not in s["attrs"]
    (down,) = by_path["/down"]
    assert down["status"] == "error" and "exception" not in down
    assert down["attrs"]["http.response.status_code"] == "503"


def test_websocket_and_lifespan_pass_through_and_double_wrapping_records_once(runner: Runner) -> None:
    out = run(
        runner,
        """
twice_w = ft_wsgi.TracingMiddleware(WSGI)
twice_a = ft_asgi.TracingMiddleware(ASGI)
out = {"ws": asgi("/ws", kind="websocket"), "life": asgi("/", kind="lifespan"),
       "w2": wsgi("/w2", app=twice_w), "a2": asgi("/a2", app=twice_a)}
""",
    )
    assert out["ws"] == [{"type": "websocket.accept"}]
    assert out["life"] == [{"type": "lifespan.startup.complete"}]
    assert sorted(s["attrs"]["url.path"] for s in requests(out["records"])) == ["/a2", "/w2"]
    assert out["w2"][2] == "hello"
    assert [m.get("body") for m in out["a2"]] == [None, "hel", "lo"]


def test_the_request_is_a_server_span_in_otlp_and_a_slice_in_chrome(runner: Runner) -> None:
    with Server().start() as server:
        run(
            runner,
            'out = {"r": wsgi("/items/7")}',
            {
                "FERROTRACE_EXPORTER": "otlp,chrome",
                "FERROTRACE_OTLP_ENDPOINT": server.url(),
                "FERROTRACE_CHROME_OUTPUT": str(runner.tmp / "trace.chrome.json"),
            },
            output="unused.jsonl.off",
        )
        spans_out = server.spans()
    (request,) = [s for s in spans_out if s.kind == 2]  # SPAN_KIND_SERVER
    attrs = {a.key: a.value for a in request.attributes}
    assert request.name == "GET"
    assert attrs["http.request.method"].string_value == "GET"
    assert attrs["url.path"].string_value == "/items/7"
    assert attrs["http.response.status_code"].int_value == 200
    (app,) = [s for s in spans_out if s.name.endswith("wsgi_app")]
    (work,) = [s for s in spans_out if s.name.endswith("work")]
    assert app.trace_id == work.trace_id == request.trace_id
    assert (app.parent_span_id, work.parent_span_id) == (request.span_id, app.span_id)
    events = json.loads((runner.tmp / "trace.chrome.json").read_text())
    (slice_,) = [e for e in events if e.get("cat") == "request"]
    assert slice_["name"] == "GET" and slice_["ph"] == "X"
    assert slice_["args"]["status"] == "ok"


@pytest.mark.parametrize("setting", ["FERROTRACE_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"])
def test_excluded_urls_get_no_session(runner: Runner, setting: str) -> None:
    out = run(
        runner,
        'out = {"h": wsgi("/healthz"), "a": asgi("/ready"), "k": wsgi("/keep")}',
        {setting: "^/healthz$,ready"},
    )
    assert out["h"][2] == "hello"
    assert [s["attrs"]["url.path"] for s in requests(out["records"])] == ["/keep"]


def test_config_lists_the_integrations_and_names_invalid_server_settings(runner: Runner) -> None:
    import subprocess
    import sys

    def config(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ferrotrace", "config"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    proc = config({"FERROTRACE_INSTRUMENT": "flask,requests", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert lines["flask"][:2] == ["framework", "on"]
    assert lines["django"][:2] == ["framework", "off"]
    assert lines["requests"][:3] == ["http", "client", "on"]
    proc = config({"FERROTRACE_EXCLUDED_URLS": "^/ok,(", "FERROTRACE_RESPONSE_TRACEPARENT": "sure"})
    assert proc.returncode == 2
    assert 'FERROTRACE_EXCLUDED_URLS="^/ok,(" is invalid: comma-separated regular expressions' in proc.stdout
    assert 'FERROTRACE_RESPONSE_TRACEPARENT="sure" is invalid: a boolean' in proc.stdout


@pytest.mark.parametrize(
    ("setting", "expected"), [("all", ["flask", "starlette"]), ("flask", ["flask"]), ("none", [])]
)
def test_auto_applies_the_chosen_integrations_when_the_framework_is_imported(
    runner: Runner, setting: str, expected: list[str]
) -> None:
    proc = runner.run(
        """
import json, sys
import ferrotrace.auto
import ferrotrace
before = "flask" in sys.modules or "starlette" in sys.modules
import flask, starlette.applications
auto = sorted(lib for lib in ferrotrace.stats()["instrumented"] if lib in ("flask", "django", "starlette"))
ferrotrace.instrument()
ferrotrace.instrument()
inner = getattr(flask.Flask.wsgi_app, "__wrapped__", None)
once = inner is not None and not hasattr(inner, "__wrapped__")
print(json.dumps({"before": before, "auto": auto, "once": once}))
""",
        env={"FERROTRACE_INSTRUMENT": setting, "FERROTRACE_OUTPUT": "/dev/null"},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["before"] is False, "ferrotrace imports no framework itself"
    assert out["auto"] == expected
    assert out["once"], "instrument() again does not wrap twice"


def test_a_session_still_open_at_exit_is_ended(runner: Runner) -> None:
    """A request whose body the server never closed, and a session the program never left
    (a process that dies inside one): both end at shutdown, so the counts add up."""
    out = run(
        runner,
        """
def streaming(environ, start_response):
    start_response("200 OK", [])
    yield b"first"
    yield b"second"
environ = {"PATH_INFO": "/open"}
setup_testing_defaults(environ)
body = ft_wsgi.TracingMiddleware(streaming)(environ, lambda *a: None)
first = next(iter(body))
left = ferrotrace.session("left-open")
left.__enter__()
out = {"first": first}
""",
    )
    assert out["first"] == "first"
    ended = {r["tag"] for r in out["records"] if r["type"] == "session_end"}
    assert {"GET", "left-open"} <= ended
    m = meta(out["records"])
    assert m["sessions_started"] == m["sessions_ended"] == 2
