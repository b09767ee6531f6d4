"""Real servers on loopback for the service tests: start one (traced) on a free port, wait
until it accepts connections, drive the same requests at every application, stop it with
SIGTERM, and read back every trace file its processes wrote."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from conftest import TEST_BACKEND, read_trace

#: The directory holding `service_apps` (the servers run there).
TESTS = Path(__file__).resolve().parent

#: Requests of the scenario.
PLAIN = 5
WITH_PARENT = 5
CONCURRENT = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Polls until the server accepts a connection; fails if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"server exited with {proc.returncode}:\n{out}\n{err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server on port {port} not ready after {timeout}s")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def get(port: int, path: str, headers: dict[str, str] | None = None) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def new_parent() -> tuple[str, str]:
    """A fresh (trace id, parent span id) pair for an incoming `traceparent`."""
    return secrets.token_hex(16), secrets.token_hex(8)


def traceparent(trace_id: str, parent: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"


class Server:
    """A server command run in `cwd=tests/` with ferrotrace's output in `out`."""

    def __init__(self, argv: list[str], out: Path, env: dict[str, str], port: int) -> None:
        self.port = port
        self.out = out
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
        if TEST_BACKEND:
            full_env["FERROTRACE_BACKEND"] = TEST_BACKEND
        full_env.update(env)
        self.proc = subprocess.Popen(
            argv,
            cwd=TESTS,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            wait_for_port(port, self.proc)
        except BaseException:
            self.kill()
            raise

    def stop(self) -> tuple[int, str, str]:
        """SIGTERM, then waits for every process of the server to exit."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self.proc.returncode, out, err

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate()

    def records(self) -> list[dict]:
        """Every record of every trace file written (one per process)."""
        found: list[dict] = []
        for path in sorted(self.out.glob("*.jsonl")):
            found.extend(read_trace(path))
        return found


def traced(argv: list[str], out: Path, port: int, env: dict[str, str] | None = None) -> Server:
    """Starts `argv` under `ferrotrace run`, writing `out/trace.jsonl` (a file per process)."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "ferrotrace", "run", "-o", str(out / "trace.jsonl"), "--", *argv]
    return Server(command, out, {"FERROTRACE_EXCLUDED_URLS": "^/health$", **(env or {})}, port)


def gunicorn(app: str, port: int, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-b",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "20",
        *options,
        app,
    ]


def uvicorn(app: str, port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), *options, app]


@dataclass
class Outcome:
    """What the scenario sent and got, and what the server's processes wrote."""

    plain: dict[str, Response] = field(default_factory=dict)
    #: path -> (trace id, parent span id) sent, and the response.
    parented: dict[str, tuple[tuple[str, str], Response]] = field(default_factory=dict)
    #: trace id sent -> response, for the concurrent sleeping requests.
    concurrent: dict[str, Response] = field(default_factory=dict)
    stream: Response | None = None
    health: Response | None = None
    boom: Response | None = None
    extra: dict[str, Response] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    returncode: int = 0
    stderr: str = ""


def exercise(server: Server, *, sleep_path: str = "/sleep?s=0.1", extra: tuple[str, ...] = ()) -> Outcome:
    """The requests every application gets; then SIGTERM, and the trace read back."""
    port = server.port
    o = Outcome()
    try:
        for i in range(1, PLAIN + 1):
            o.plain[f"/items/{i}"] = get(port, f"/items/{i}")
        for i in range(PLAIN + 1, PLAIN + WITH_PARENT + 1):
            ids = new_parent()
            o.parented[f"/items/{i}"] = (ids, get(port, f"/items/{i}", {"traceparent": traceparent(*ids)}))
        parents = [new_parent() for _ in range(CONCURRENT)]
        with ThreadPoolExecutor(CONCURRENT) as pool:
            answers = pool.map(lambda ids: get(port, sleep_path, {"traceparent": traceparent(*ids)}), parents)
            o.concurrent = {ids[0]: r for ids, r in zip(parents, answers, strict=True)}
        o.stream = get(port, "/stream")
        o.health = get(port, "/health")
        o.boom = get(port, "/boom")
        for path in extra:
            o.extra[path] = get(port, path)
    except BaseException:
        server.kill()
        raise
    o.returncode, _, o.stderr = server.stop()
    o.records = server.records()
    return o


def server_sessions(records: list[dict]) -> list[dict]:
    """The ended request sessions."""
    return [r for r in records if r["type"] == "session_end" and r.get("kind") == "server"]


def by_path(records: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for s in server_sessions(records):
        found.setdefault(s["attrs"]["url.path"], []).append(s)
    return found


def spans_in(records: list[dict], trace_id: str) -> list[dict]:
    return [r for r in records if r["type"] == "span" and r["trace_id"] == trace_id]


def descends_from(span: dict, root_span_id: str, records: list[dict]) -> bool:
    """Whether following parents from `span` within its trace reaches `root_span_id`."""
    by_id = {r["span_id"]: r for r in spans_in(records, span["trace_id"])}
    seen = set()
    parent = span["parent_span_id"]
    while parent is not None and parent not in seen:
        if parent == root_span_id:
            return True
        seen.add(parent)
        nxt = by_id.get(parent)
        parent = nxt["parent_span_id"] if nxt else None
    return False


# What every application's trace must show (each one a test in the framework's module).


def check_one_session_per_request(o: Outcome, extra_sessions: int = 0) -> None:
    """Exactly one request session per request served, none for the excluded path."""
    paths = by_path(o.records)
    for path in [*o.plain, *o.parented]:
        assert len(paths.get(path, [])) == 1, (path, paths.get(path))
    assert len(paths.get("/sleep", [])) == CONCURRENT
    assert len(paths.get("/stream", [])) == 1
    assert len(paths.get("/boom", [])) == 1
    assert "/health" not in paths
    assert o.health is not None and o.health.status == 200
    assert len(server_sessions(o.records)) == PLAIN + WITH_PARENT + CONCURRENT + 2 + extra_sessions


def check_trace_ids_parents_routes(o: Outcome, route: str) -> None:
    """An incoming traceparent is continued (same trace id, remote parent); without one a
    new trace starts; the tag and http.route name the framework's route template."""
    paths = by_path(o.records)
    for path, r in o.plain.items():
        assert r.status == 200
        (s,) = paths[path]
        assert s["parent_span_id"] is None and not s["remote_parent"]
        assert s["tag"] == f"GET {route}" and s["attrs"]["http.route"] == route
        assert s["attrs"]["http.response.status_code"] == "200" and s["status"] == "ok"
        assert s["attrs"]["http.request.method"] == "GET" and s["attrs"]["url.scheme"] == "http"
        assert s["attrs"]["client.address"] == "127.0.0.1"
    for path, ((trace_id, parent), r) in o.parented.items():
        assert r.status == 200
        (s,) = paths[path]
        assert (s["trace_id"], s["parent_span_id"], s["remote_parent"]) == (trace_id, parent, True)
        assert s["tag"] == f"GET {route}"
    trace_ids = [s["trace_id"] for s in server_sessions(o.records)]
    assert len(set(trace_ids)) == len(trace_ids), "every request is its own trace"


def check_handler_spans_inside(o: Outcome, paths: list[str] | None = None) -> None:
    """The handler's work is recorded in its request's trace, under the request's span."""
    sessions = by_path(o.records)
    for path in paths or [*o.plain, *o.parented]:
        (s,) = sessions[path]
        inside = spans_in(o.records, s["trace_id"])
        work = [r for r in inside if r["qualname"] == "work" and r["module"] == "service_apps.common"]
        assert len(work) == 1, (path, [r["qualname"] for r in inside])
        assert descends_from(work[0], s["span_id"], o.records)
        assert all(descends_from(r, s["span_id"], o.records) for r in inside)


def check_concurrent_requests_apart(o: Outcome, qualname: str) -> None:
    """20 requests served at once: each trace holds its own request's work and nothing else."""
    sessions = {s["trace_id"]: s for s in by_path(o.records)["/sleep"]}
    assert set(sessions) == set(o.concurrent)
    for trace_id, r in o.concurrent.items():
        assert r.status == 200
        inside = spans_in(o.records, trace_id)
        mine = [x for x in inside if x["qualname"] == qualname and x["module"] == "service_apps.common"]
        assert len(mine) == 1, [x["qualname"] for x in inside]
        assert all(descends_from(x, sessions[trace_id]["span_id"], o.records) for x in inside)


def check_stream(o: Outcome) -> None:
    """The streamed body is byte for byte the application's, and produced inside the trace."""
    from service_apps import common

    assert o.stream is not None and o.stream.status == 200
    assert o.stream.body == b"".join(common.chunks())
    (s,) = by_path(o.records)["/stream"]
    assert s["status"] == "ok"
    produced = [r for r in spans_in(o.records, s["trace_id"]) if r["qualname"] == "chunks"]
    assert produced, "the body's generator ran inside the request's trace"


def check_error(o: Outcome) -> None:
    """A request the application failed is a 500 and its session an error with the exception."""
    assert o.boom is not None and o.boom.status == 500
    (s,) = by_path(o.records)["/boom"]
    assert s["status"] == "error" and s["attrs"]["http.response.status_code"] == "500"
    assert s["exception"]["type"] == "LookupError"
    assert "abc123secret" not in s["exception"]["message"]


def check_nothing_lost_or_doubled(o: Outcome) -> None:
    """After SIGTERM every process wrote its meta record, every session started ended, and
    no record was written twice (by a forked worker and its parent)."""
    metas = [r for r in o.records if r["type"] == "meta"]
    pids = {r["pid"] for r in o.records}
    assert {m["pid"] for m in metas} == pids
    for m in metas:
        assert m["sessions_started"] == m["sessions_ended"], m
        assert m["dropped"] == 0
        mine = [r for r in o.records if r["pid"] == m["pid"]]
        assert m["exported"] == len([r for r in mine if r["type"] == "span"])
    ids = [(r["type"], r["span_id"]) for r in o.records if "span_id" in r]
    assert len(ids) == len(set(ids)), "a record was exported twice"
