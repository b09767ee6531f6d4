"""A loopback HTTP server for the exporter tests: it records every request (path, headers,
decompressed body) and answers in one of several modes, like a real collector would when it
is healthy, overloaded, broken or gone."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MODES = ("ok", "500", "hang", "partial")


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes  # as received (maybe gzip)
    body: bytes  # decompressed
    at: float  # time.monotonic() when received
    answered: bool = False  # a 2xx was sent back: the client counts it as delivered

    def otlp(self) -> ExportTraceServiceRequest:
        """The body as an OTLP request, protobuf or JSON by content type."""
        if "json" in self.headers.get("content-type", ""):
            return otlp_json_to_proto(self.body)
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(self.body)
        return msg

    def jsonl(self) -> list[dict]:
        return [json.loads(line) for line in self.body.decode().splitlines()]


@dataclass
class Collector:
    """The server state shared with the handler threads."""

    mode: str = "ok"
    # One-shot answers used before `mode`: (status, headers, or a function making them when
    # the answer is sent), e.g. (429, {"Retry-After": "1"}).
    script: list[tuple[int, dict[str, str] | Callable[[], dict[str, str]]]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def record(self, req: Request) -> None:
        with self.lock:
            self.requests.append(req)


def _make_handler(c: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
            req = Request(self.path, headers, raw, body, time.monotonic())
            c.record(req)
            with c.lock:
                scripted = c.script.pop(0) if c.script else None
            mode = c.mode
            if scripted is not None:
                status, extra = scripted
                self._answer(req, status, b"", "text/plain", extra() if callable(extra) else extra)
                return
            if mode == "hang":
                c.release.wait(60)
                self.close_connection = True
                return
            if mode == "500":
                self._answer(req, 500, b"broken", "text/plain")
            elif mode == "partial":
                resp = ExportTraceServiceResponse(
                    partial_success=ExportTracePartialSuccess(rejected_spans=1, error_message="one too old")
                )
                self._answer(req, 200, resp.SerializeToString(), "application/x-protobuf")
            else:
                self._answer(req, 200, b"", "application/x-protobuf")

        def _answer(
            self, req: Request, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
        ) -> None:
            """Sends the answer; a 2xx marks the request delivered."""
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            req.answered = 200 <= status < 300

    return Handler


class Server:
    """A threaded collector. `mode` is one of MODES: ok, 500 (every request fails), hang
    (accepts and never answers), partial (a partial_success rejecting one span); `script`
    queues one-shot answers such as 429 with Retry-After; `Server.refusing()` gives a port
    where nothing listens (connection refused) that `start()` opens later (down, then up)."""

    def __init__(self, mode: str = "ok", port: int = 0, host: str = "127.0.0.1") -> None:
        assert mode in MODES, mode
        self.collector = Collector(mode=mode)
        self.port = port
        self.host = host
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def refusing(cls) -> Server:
        """A server bound to nothing yet: connections to its port are refused."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return cls("ok", port)

    def start(self, mode: str | None = None) -> Server:
        if mode:
            self.collector.mode = mode
        self._httpd = ThreadingHTTPServer((self.host, self.port), _make_handler(self.collector))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.collector.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def mode(self) -> str:
        return self.collector.mode

    @mode.setter
    def mode(self, value: str) -> None:
        assert value in MODES, value
        self.collector.mode = value

    def url(self, path: str = "/v1/traces") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> list[Request]:
        with self.collector.lock:
            return list(self.collector.requests)

    def spans(self, answered_only: bool = True) -> list:
        """Every OTLP span received (in requests answered 2xx, by default)."""
        out = []
        for r in self.requests:
            if r.answered or not answered_only:
                for rs in r.otlp().resource_spans:
                    for ss in rs.scope_spans:
                        out.extend(ss.spans)
        return out

    def wait_for(self, cond: Callable[[Server], bool], timeout: float = 10.0) -> None:
        """Waits until `cond(self)` holds; fails the test at the deadline."""
        deadline = time.monotonic() + timeout
        while not cond(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s; {len(self.requests)} requests")
            time.sleep(0.02)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def otlp_json_to_proto(body: bytes) -> ExportTraceServiceRequest:
    """Parses the OTLP/JSON encoding, whose ids are hex (protobuf's JSON mapping would want
    base64); a malformed id fails the parse."""
    import base64

    from google.protobuf import json_format

    def fix(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    node[k] = base64.b64encode(bytes.fromhex(v)).decode()
                else:
                    fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    doc = json.loads(body)
    fix(doc)
    return json_format.ParseDict(doc, ExportTraceServiceRequest())


def spool_spans(root: object) -> list:
    """Every OTLP span in the spool files under `root` (any endpoint's directory)."""
    from pathlib import Path

    out = []
    for path in sorted(Path(str(root)).rglob("*.spool*")):
        head, _, body = path.read_bytes().partition(b"\n")
        fields = dict(f.split("=", 1) for f in head.decode().split()[2:])
        if fields["gzip"] == "1":
            body = gzip.decompress(body)
        msg = ExportTraceServiceRequest()
        if "json" in fields["content-type"]:
            msg = otlp_json_to_proto(body)
        else:
            msg.ParseFromString(body)
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                out.extend(ss.spans)
    return out
