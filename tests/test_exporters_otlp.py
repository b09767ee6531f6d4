"""OTLP/HTTP end to end: what reaches a collector decodes with the official
opentelemetry-proto package into the expected spans, in protobuf and in JSON, and has the
same shape as what the OpenTelemetry SDK sends for the same program."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_server import Server

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# The same small program, traced by ferrotrace (MODE=ferrotrace) or by hand with the
# OpenTelemetry SDK (MODE=sdk): a session (root span) around calls, one of them failing.
PROGRAM = """
import json, os, sys
MODE = os.environ["MODE"]

if MODE == "sdk":
    import functools
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("mirror")

    def traced(f):
        code = f.__code__
        @functools.wraps(f)
        def wrapper(*a):
            with tracer.start_as_current_span(
                f"{f.__module__}.{f.__qualname__}",
                kind=trace.SpanKind.INTERNAL,
                attributes={
                    "code.function.name": f.__qualname__,
                    "code.namespace": f.__module__,
                    "code.file.path": code.co_filename,
                    "code.line.number": code.co_firstlineno,
                },
            ):
                return f(*a)
        return wrapper

    def session(tag, attrs):
        return tracer.start_as_current_span(tag, attributes=attrs)
else:
    import ferrotrace
    ferrotrace.configure()

    def traced(f):
        return f

    def session(tag, attrs):
        return ferrotrace.session(tag, attrs=attrs, traceparent=os.environ.get("INCOMING"))

@traced
def validate(cart):
    if not cart:
        raise ValueError("empty cart")

@traced
def total(cart):
    validate(cart)
    return sum(cart)

@traced
def report(cart):
    return len(cart)

@traced
def checkout(cart):
    try:
        return total(cart)
    except ValueError:
        # A handler that runs code, as handlers do: before 3.12 this is where the profile
        # hook learns which exception left the frames (a bare `return` would hide it).
        return report(cart)

with session("checkout", {"tier": "gold"}) as s:
    checkout([1, 2])
    checkout([])
if MODE == "ferrotrace":
    ferrotrace.shutdown()
    print(json.dumps({"trace_id": s.trace_id, "span_id": s.span_id, "stats": ferrotrace.stats()}))
else:
    provider.shutdown()
"""

OTLP_ENV = {
    "MODE": "ferrotrace",
    "INCOMING": INCOMING,
    "FERROTRACE_EXPORTER": "otlp",
    "OTEL_SERVICE_NAME": "shop",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=pay%20ments",
    "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc123,x-tenant=t1",
    "FERROTRACE_SPOOL_MAX_MB": "0",
}


def run(runner, server: Server, **env: str | None) -> dict:
    """Runs PROGRAM against `server`; a variable given as None is left unset."""
    env = {**OTLP_ENV, "FERROTRACE_OTLP_ENDPOINT": server.url(), **env}
    proc = runner.run(PROGRAM, env={k: v for k, v in env.items() if v is not None}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout else {}


def attrs(obj) -> dict:
    """Attributes as {key: (value kind, value)}."""
    return {
        kv.key: (kv.value.WhichOneof("value"), getattr(kv.value, kv.value.WhichOneof("value")))
        for kv in obj.attributes
    }


def check_ferrotrace_spans(server: Server, out: dict, script_path: str) -> None:
    (req,) = server.requests
    (rs,) = req.otlp().resource_spans
    resource = attrs(rs.resource)
    assert resource["service.name"] == ("string_value", "shop")
    assert resource["deployment.environment"] == ("string_value", "test")
    assert resource["team"] == ("string_value", "pay ments")
    spans = [s for ss in rs.scope_spans for s in ss.spans]
    assert len({s.span_id for s in spans}) == len(spans) == 8
    trace_id = bytes.fromhex(out["trace_id"])
    assert trace_id == bytes.fromhex(INCOMING.split("-")[1]), "continues the incoming trace"
    assert all(s.trace_id == trace_id for s in spans)
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if s.name == "checkout"]
    assert root.span_id.hex() == out["span_id"]
    assert root.parent_span_id.hex() == INCOMING.split("-")[2], "child of the incoming traceparent"
    assert root.flags & 0x300 == 0x300, "parent flagged remote"
    assert attrs(root)["tier"] == ("string_value", "gold")
    assert root.kind == Span.SPAN_KIND_INTERNAL

    def chain(s) -> list[str]:
        names = []
        while s.parent_span_id in by_id:
            s = by_id[s.parent_span_id]
            names.append(s.name)
        return names

    lines = {"validate": 0, "total": 0, "checkout": 0, "report": 0}
    source = Path(script_path).read_text().splitlines()
    for name in lines:
        # co_firstlineno: the decorator's line, as the SDK mirror reports it too.
        lines[name] = next(i for i, line in enumerate(source, 1) if line.startswith(f"def {name}(")) - 1
    calls = [s for s in spans if s is not root]
    for s in calls:
        qual = s.name.removeprefix("__main__.")
        assert s.kind == Span.SPAN_KIND_INTERNAL
        a = attrs(s)
        assert a["code.function.name"] == ("string_value", qual)
        assert a["code.file.path"] == ("string_value", script_path)
        assert a["code.line.number"] == ("int_value", lines[qual])
        assert s.start_time_unix_nano <= s.end_time_unix_nano
        parent = by_id[s.parent_span_id]
        assert (
            parent.start_time_unix_nano
            <= s.start_time_unix_nano
            <= s.end_time_unix_nano
            <= parent.end_time_unix_nano
        )
    shape = sorted((s.name, tuple(chain(s))) for s in calls)
    assert shape == sorted(
        [("__main__.validate", ("__main__.total", "__main__.checkout", "checkout"))] * 2
        + [("__main__.total", ("__main__.checkout", "checkout"))] * 2
        + [("__main__.checkout", ("checkout",))] * 2
        + [("__main__.report", ("__main__.checkout", "checkout"))]
    )
    failed = [s for s in calls if s.status.code == Status.STATUS_CODE_ERROR]
    assert sorted(s.name for s in failed) == ["__main__.total", "__main__.validate"]
    for s in failed:
        (ev,) = s.events
        assert ev.name == "exception"
        assert attrs(ev)["exception.type"] == ("string_value", "ValueError")
        assert attrs(ev)["exception.message"] == ("string_value", "empty cart")
        assert "ValueError" in s.status.message
        # Caught by `checkout` (two levels above `validate`): not escaped, and which span.
        catcher = by_id[s.parent_span_id]
        if s.name == "__main__.validate":
            catcher = by_id[catcher.parent_span_id]
        assert catcher.name == "__main__.checkout"
        assert attrs(ev)["exception.escaped"] == ("bool_value", False)
        assert attrs(ev)["ferrotrace.exception.caught_by"] == ("string_value", catcher.span_id.hex())
    for s in calls:
        if s not in failed:
            assert not s.events, "no empty exception events"
            assert s.status.code == Status.STATUS_CODE_UNSET
    assert out["stats"]["network_delivered"] == 8
    assert req.headers["x-api-key"] == "abc123" and req.headers["x-tenant"] == "t1"
    assert req.headers["user-agent"].startswith("ferrotrace/")


def test_protobuf_gzip_decodes_into_the_expected_spans(runner):
    with Server().start() as server:
        out = run(runner, server)
        (req,) = server.requests
        assert req.path == "/v1/traces"
        assert req.headers["content-type"] == "application/x-protobuf"
        assert req.headers["content-encoding"] == "gzip" and req.raw[:2] == b"\x1f\x8b"
        check_ferrotrace_spans(server, out, str(runner.tmp / "prog.py"))


def test_json_on_request_decodes_into_the_same_spans(runner):
    with Server().start() as server:
        out = run(
            runner,
            server,
            FERROTRACE_OTLP_ENDPOINT=None,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.port}",  # /v1/traces appended
            OTEL_EXPORTER_OTLP_PROTOCOL="http/json",
            FERROTRACE_OTLP_COMPRESSION="none",
        )
        (req,) = server.requests
        assert req.headers["content-type"] == "application/json"
        assert "content-encoding" not in req.headers
        doc = json.loads(req.body)
        span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16, "hex ids"
        check_ferrotrace_spans(server, out, str(runner.tmp / "prog.py"))


def test_partial_success_is_counted(runner):
    with Server("partial").start() as server:
        out = run(runner, server)
        assert out["stats"]["partial_success_rejected"] == 1
        assert out["stats"]["network_delivered"] == 8


def shape(server: Server) -> list[tuple]:
    """The span tree as comparable facts: name, kind, status, parent's name, event names
    with their attributes' keys and types, and the code.* attributes' keys and types."""
    spans = server.spans()
    names = {s.span_id: s.name for s in spans}
    out = []
    for s in spans:
        code = {k: kind for k, (kind, _) in attrs(s).items() if k.startswith("code.")}
        events = tuple(
            (
                e.name,
                tuple(
                    sorted(
                        (k, kind)
                        for k, (kind, _) in attrs(e).items()
                        if k in ("exception.type", "exception.message")
                    )
                ),
            )
            for e in s.events
        )
        out.append(
            (s.name, s.kind, s.status.code, names.get(s.parent_span_id), events, tuple(sorted(code.items())))
        )
    return sorted(out, key=repr)


def test_same_tree_as_the_opentelemetry_sdk(runner):
    with Server().start() as ours, Server().start() as sdk:
        run(runner, ours)
        proc = runner.run(
            PROGRAM,
            env={
                "MODE": "sdk",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sdk.url(),
                "OTEL_SERVICE_NAME": "shop",
            },
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        sdk.wait_for(lambda s: len(s.spans()) == 8)
        assert shape(ours) == shape(sdk)
        (theirs,) = sdk.requests[-1].otlp().resource_spans
        (mine,) = ours.requests[0].otlp().resource_spans
        assert attrs(mine.resource)["service.name"] == attrs(theirs.resource)["service.name"]
