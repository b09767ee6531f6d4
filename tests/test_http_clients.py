"""Outgoing HTTP calls through requests, httpx (sync and async), urllib3, aiohttp and urllib,
made by traced programs against a real loopback server that echoes what it received: the
`traceparent` sent names the recorded client span, each call gives exactly one record, no
secret reaches any output, and the application sees exactly what it sees untraced."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import Runner, read_trace, spans
from otlp_server import Server

#: 10 MiB served by /big, the same every time.
BIG = bytes(range(256)) * 40960
BIG_SHA = hashlib.sha256(BIG).hexdigest()
#: 10 KB of text served by /text.
TEXT = "abcdefghij" * 1024


class Echo:
    """A loopback server: /echo answers with the request's headers as JSON (a POST's body is
    read and dropped), /big streams 10 MiB, /text 10 KB of text, /redirect sends to /echo;
    every request is counted by path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                with lock:
                    outer.hits[path] += 1
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/echo")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/big":
                    body = BIG
                elif path == "/text":
                    body = TEXT.encode()
                else:
                    body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header(
                    "Content-Type", "application/octet-stream" if path == "/big" else "application/json"
                )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


PASSWORD = "hunter2pw"
TOKEN = "tok3nSECRETvalue"
BEARER = "abcdefSECRET123456"

# How each library makes one GET of URL with HEADERS and returns the echoed headers; `fetch`
# is a sync or async function of the traced program.
CLIENTS = {
    "requests": """
import requests
def fetch(url, headers):
    return requests.get(url, headers=headers).json()
""",
    "httpx": """
import httpx
def fetch(url, headers):
    return httpx.get(url, headers=headers).json()
""",
    "httpx-async": """
import httpx
async def fetch(url, headers):
    async with httpx.AsyncClient() as client:
        response = await client.get(url, headers=headers)
        return response.json()
""",
    "urllib3": """
import json, urllib3
def fetch(url, headers):
    return json.loads(urllib3.request("GET", url, headers=headers).data)
""",
    "aiohttp": """
import aiohttp
async def fetch(url, headers):
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as response:
            return await response.json()
""",
    "urllib": """
import json, urllib.request
def fetch(url, headers):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
        return json.loads(response.read())
""",
}

CALL = """
import asyncio, inspect, json, os, sys
import ferrotrace

def call(url, headers):
    result = fetch(url, headers)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return result
"""


def library_of(client: str) -> str:
    return client.split("-")[0]


def http_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "http"]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_the_traceparent_sent_names_the_one_recorded_client_span_and_no_secret_leaves(
    runner: Runner, echo: Echo, client: str
) -> None:
    # urllib does not take credentials in the URL, and aiohttp not with an Authorization
    # header; every other client is given some.
    userinfo = "" if client in ("urllib", "aiohttp") else f"alice:{PASSWORD}@"
    url = echo.url(f"/echo?token={TOKEN}&page=2", userinfo)
    program = (
        CALL
        + CLIENTS[client]
        + f"""
ferrotrace.configure(output="trace.jsonl", exporter="jsonl,chrome,otlp", chrome_output="trace.chrome.json")
ferrotrace.instrument()

def make_the_call():
    return call({url!r}, {{"Authorization": "Bearer {BEARER}", "X-Note": "fine"}})

with ferrotrace.session("job") as s:
    echoed = make_the_call()
print(json.dumps({{"trace_id": s.trace_id, "traceparent": echoed.get("traceparent")}}))
ferrotrace.shutdown()
"""
    )
    with Server() as collector:
        collector.start()
        proc = runner.run(
            program,
            env={
                "FERROTRACE_OTLP_ENDPOINT": collector.url(""),
                "FERROTRACE_CAPTURE_HEADERS": "authorization,x-note,content-type",
            },
        )
        assert proc.returncode == 0, proc.stderr
        otlp = collector.spans()
        otlp_bytes = b"".join(r.body for r in collector.requests)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    records = read_trace(runner.tmp / "trace.jsonl")
    (http,) = http_records(records)
    # the function that called the library (a coroutine: one span per resumed segment)
    callers = {s["span_id"]: s for s in spans(records) if s["qualname"] == "fetch"}
    version, trace_id, parent_id, flags = out["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", out["trace_id"], "01")
    assert http["span_id"] == parent_id
    assert http["trace_id"] == out["trace_id"]
    assert http["parent_span_id"] in callers
    assert http["library"] == library_of(client)
    assert (http["method"], http["status"]) == ("GET", 200)
    assert http["url"] == echo.url("/echo?token=[REDACTED]&page=2")
    assert http["request_headers"] == {"authorization": "[REDACTED]", "x-note": "fine"}
    assert http["response_headers"] == {"content-type": "application/json"}
    assert http["response_bytes"] > 0
    if client in ("httpx-async", "aiohttp"):
        assert http["task_id"] != 0
    assert echo.hits["/echo"] == 1

    (span,) = [s for s in otlp if s.span_id.hex() == parent_id]
    attrs = {a.key: a.value for a in span.attributes}
    assert span.kind == span.SPAN_KIND_CLIENT
    assert span.parent_span_id.hex() == http["parent_span_id"]
    assert attrs["http.request.method"].string_value == "GET"
    assert attrs["url.full"].string_value == http["url"]
    assert attrs["server.address"].string_value == "127.0.0.1"
    assert attrs["server.port"].int_value == echo.port
    assert attrs["http.response.status_code"].int_value == 200

    chrome = json.loads((runner.tmp / "trace.chrome.json").read_text())
    (slice_,) = [e for e in chrome if e.get("cat") == "http"]
    assert slice_["args"]["span_id"] == parent_id
    assert slice_["tid"] == next(e["tid"] for e in chrome if e.get("name") == "__main__.fetch")

    outputs = (
        (runner.tmp / "trace.jsonl").read_bytes()
        + (runner.tmp / "trace.chrome.json").read_bytes()
        + otlp_bytes
    )
    for secret in (PASSWORD, TOKEN, BEARER):
        assert secret.encode() not in outputs, secret


STREAM = {
    "requests": """
import requests
def download(url):
    h, n = hashlib.sha256(), 0
    with requests.get(url, stream=True) as response:
        for chunk in response.iter_content(65536):
            h.update(chunk); n += len(chunk)
    return h.hexdigest(), n
""",
    "requests-raw": """
import requests
def download(url):
    h, n = hashlib.sha256(), 0
    response = requests.get(url, stream=True)
    while chunk := response.raw.read(100000):
        h.update(chunk); n += len(chunk)
    response.close()
    return h.hexdigest(), n
""",
    "httpx": """
import httpx
def download(url):
    h, n = hashlib.sha256(), 0
    with httpx.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            h.update(chunk); n += len(chunk)
    return h.hexdigest(), n
""",
    "urllib3": """
import urllib3
def download(url):
    h, n = hashlib.sha256(), 0
    response = urllib3.request("GET", url, preload_content=False)
    for chunk in response.stream(65536):
        h.update(chunk); n += len(chunk)
    response.release_conn()
    return h.hexdigest(), n
""",
}


@pytest.mark.parametrize("client", list(STREAM))
def test_a_streamed_download_gives_the_same_bytes_traced_and_untraced(
    runner: Runner, echo: Echo, client: str
) -> None:
    program = (
        "import hashlib, json, os\n"
        + STREAM[client]
        + f"""
url = {echo.url("/big")!r}
if os.environ["MODE"] == "untraced":
    print(json.dumps(download(url)))
else:
    import ferrotrace
    ferrotrace.configure(output="trace.jsonl")
    ferrotrace.instrument()
    with ferrotrace.session("download"):
        print(json.dumps(download(url)))
    ferrotrace.shutdown()
"""
    )
    results = {}
    for mode in ("untraced", "traced"):
        proc = runner.run(program, env={"MODE": mode})
        assert proc.returncode == 0, proc.stderr
        results[mode] = json.loads(proc.stdout)
    assert results["traced"] == results["untraced"] == [BIG_SHA, len(BIG)]
    (http,) = http_records(read_trace(runner.tmp / "trace.jsonl"))
    assert http["response_bytes"] == len(BIG)
    assert http["status"] == 200


REFUSED = {
    "requests": "import requests\ndef get(url): requests.get(url)\n",
    "httpx": "import httpx\ndef get(url): httpx.get(url)\n",
    "httpx-async": (
        "import httpx\nasync def get(url):\n"
        "    async with httpx.AsyncClient() as c:\n        await c.get(url)\n"
    ),
    "urllib3": "import urllib3\ndef get(url): urllib3.request('GET', url, retries=False)\n",
    "aiohttp": (
        "import aiohttp\nasync def get(url):\n"
        "    async with aiohttp.ClientSession() as s:\n        await s.get(url)\n"
    ),
    "urllib": "import urllib.request\ndef get(url): urllib.request.urlopen(url)\n",
}


@pytest.mark.parametrize("client", list(REFUSED))
def test_a_refused_connection_raises_the_same_exception_and_is_recorded(runner: Runner, client: str) -> None:
    url = Server.refusing().url("/x")
    program = (
        "import asyncio, inspect, json, os, re\n"
        + REFUSED[client]
        + f"""
def attempt():
    try:
        result = get({url!r})
        if inspect.iscoroutine(result):
            asyncio.run(result)
    except Exception as exc:
        cls = type(exc)
        # object addresses differ from run to run
        return [f"{{cls.__module__}}.{{cls.__qualname__}}", re.sub(r"0x[0-9a-f]+", "0x", str(exc))]

if os.environ["MODE"] == "untraced":
    print(json.dumps(attempt()))
else:
    import ferrotrace
    ferrotrace.configure(output="trace.jsonl")
    ferrotrace.instrument()
    with ferrotrace.session("refused"):
        print(json.dumps(attempt()))
    ferrotrace.shutdown()
"""
    )
    results = {}
    for mode in ("untraced", "traced"):
        proc = runner.run(program, env={"MODE": mode})
        assert proc.returncode == 0, proc.stderr
        results[mode] = json.loads(proc.stdout)
    assert results["traced"] == results["untraced"]
    (http,) = http_records(read_trace(runner.tmp / "trace.jsonl"))
    assert http["status"] is None
    assert http["exception"]["type"] == results["traced"][0]
    assert http["library"] == library_of(client)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_call_outside_any_session_is_made_once_and_records_nothing(
    runner: Runner, echo: Echo, client: str
) -> None:
    program = (
        CALL
        + CLIENTS[client]
        + f"""
ferrotrace.configure(output="trace.jsonl")
ferrotrace.instrument()
with ferrotrace.session("before"):
    pass
echoed = call({echo.url("/echo")!r}, {{}})
print(json.dumps(echoed.get("traceparent")))
ferrotrace.shutdown()
"""
    )
    proc = runner.run(program)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is None
    assert echo.hits["/echo"] == 1
    assert http_records(read_trace(runner.tmp / "trace.jsonl")) == []


def test_an_unsampled_session_propagates_its_context_unsampled_and_records_nothing(
    runner: Runner, echo: Echo
) -> None:
    program = (
        CALL
        + CLIENTS["requests"]
        + f"""
ferrotrace.configure(output="trace.jsonl", sample_rate=0)
ferrotrace.instrument()
with ferrotrace.session("dropped") as s:
    echoed = call({echo.url("/echo")!r}, {{}})
print(json.dumps([s.trace_id, echoed.get("traceparent")]))
ferrotrace.shutdown()
"""
    )
    proc = runner.run(program)
    assert proc.returncode == 0, proc.stderr
    trace_id, traceparent = json.loads(proc.stdout)
    assert traceparent.startswith(f"00-{trace_id}-") and traceparent.endswith("-00")
    assert http_records(read_trace(runner.tmp / "trace.jsonl")) == []


def test_propagate_off_sends_no_traceparent_but_records(runner: Runner, echo: Echo) -> None:
    program = (
        CALL
        + CLIENTS["httpx"]
        + f"""
ferrotrace.configure(output="trace.jsonl", propagate="0")
ferrotrace.instrument()
with ferrotrace.session("quiet"):
    echoed = call({echo.url("/echo")!r}, {{}})
print(json.dumps(echoed.get("traceparent")))
ferrotrace.shutdown()
"""
    )
    proc = runner.run(program)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is None
    assert len(http_records(read_trace(runner.tmp / "trace.jsonl"))) == 1


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_a_followed_redirect_is_one_record_with_its_resend_count(
    runner: Runner, echo: Echo, client: str
) -> None:
    program = (
        CALL
        + CLIENTS[client].replace("httpx.get(url, headers=headers)", "httpx.get(url, follow_redirects=True)")
        + f"""
ferrotrace.configure(output="trace.jsonl")
ferrotrace.instrument()
with ferrotrace.session("hop"):
    echoed = call({echo.url("/redirect")!r}, {{}})
print(json.dumps(echoed.get("traceparent")))
ferrotrace.shutdown()
"""
    )
    proc = runner.run(program)
    assert proc.returncode == 0, proc.stderr
    (http,) = http_records(read_trace(runner.tmp / "trace.jsonl"))
    assert json.loads(proc.stdout).split("-")[2] == http["span_id"]
    assert (http["status"], http["resend_count"]) == (200, 1)
    assert echo.hits == Counter({"/redirect": 1, "/echo": 1})


def test_auto_instruments_a_library_when_the_program_imports_it(runner: Runner, echo: Echo) -> None:
    program = f"""
import json, sys
import ferrotrace.auto
assert "requests" not in sys.modules and "httpx" not in sys.modules
import requests
print(json.dumps(requests.get({echo.url("/echo")!r}).json().get("traceparent")))
"""
    proc = runner.run(program, env={"FERROTRACE_OUTPUT": "trace.jsonl"})
    assert proc.returncode == 0, proc.stderr
    (http,) = http_records(read_trace(runner.tmp / "trace.jsonl"))
    assert json.loads(proc.stdout).split("-")[2] == http["span_id"]

    proc = runner.run(program, env={"FERROTRACE_OUTPUT": "trace.jsonl", "FERROTRACE_INSTRUMENT": "httpx"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is None
    assert http_records(read_trace(runner.tmp / "trace.jsonl")) == []


def test_an_invalid_instrument_setting_names_the_variable_value_and_rule(runner: Runner) -> None:
    proc = runner.run(
        "import ferrotrace\nferrotrace.configure()\n",
        env={"FERROTRACE_INSTRUMENT": "requests,curl"},
    )
    assert proc.returncode != 0
    assert (
        'FERROTRACE_INSTRUMENT="requests,curl" is invalid: all, none, or a comma-separated list of: '
        "requests, httpx, urllib3, aiohttp, urllib, flask, django, starlette"
    ) in proc.stderr


def test_uninstrument_puts_every_method_back(runner: Runner) -> None:
    proc = runner.run("""
import aiohttp, httpx, requests, urllib3, urllib.request

def methods():
    return [
        requests.Session.send, httpx.Client.send, httpx.AsyncClient.send,
        urllib3.PoolManager.urlopen, urllib3.HTTPConnectionPool.urlopen,
        aiohttp.ClientSession._request, urllib.request.OpenerDirector.open,
    ]

before = methods()
import ferrotrace
ferrotrace.instrument()
ferrotrace.instrument()
assert all(a is not b for a, b in zip(methods(), before))
assert requests.Session.send.__wrapped__ is before[0]
ferrotrace.uninstrument()
assert methods() == before
""")
    assert proc.returncode == 0, proc.stderr


def test_auto_instruments_urllib_when_the_program_imports_it_and_says_nothing(
    runner: Runner, echo: Echo
) -> None:
    proc = runner.run(
        f"""
import json
import ferrotrace.auto
import urllib.request
with urllib.request.urlopen({echo.url("/echo")!r}) as response:
    print(json.dumps(json.loads(response.read()).get("traceparent")))
""",
        env={"FERROTRACE_OUTPUT": "trace.jsonl"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    (http,) = http_records(read_trace(runner.tmp / "trace.jsonl"))
    assert json.loads(proc.stdout).split("-")[2] == http["span_id"]


# How each library posts a JSON payload, reads a whole text response, and opens a streamed
# response whose body it only starts to read (reporting whether anything had been read
# before it did).
BODIES = {
    "requests": """
import requests
def post(url, payload):
    return requests.post(url, json=payload).json()
def get_text(url):
    return requests.get(url).text
def stream_untouched(url):
    response = requests.get(url, stream=True)
    untouched = response.raw.tell() == 0 and response._content is False
    response.raw.read(10)
    response.close()
    return untouched
""",
    "httpx": """
import httpx
def post(url, payload):
    return httpx.post(url, json=payload).json()
def get_text(url):
    return httpx.get(url).text
def stream_untouched(url):
    with httpx.stream("GET", url) as response:
        untouched = response.num_bytes_downloaded == 0 and not hasattr(response, "_content")
        next(response.iter_raw(10))
    return untouched
""",
}


@pytest.mark.parametrize("capture", ["0", "1"])
@pytest.mark.parametrize("client", list(BODIES))
def test_bodies_are_recorded_only_when_asked_bounded_and_redacted(
    runner: Runner, echo: Echo, client: str, capture: str
) -> None:
    program = (
        "import json\nimport ferrotrace\n"
        + BODIES[client]
        + f"""
ferrotrace.configure(output="trace.jsonl")
ferrotrace.instrument()
with ferrotrace.session("job"):
    post({echo.url("/echo")!r}, {{"user": "bob", "password": "hunter2"}})
    text = get_text({echo.url("/text")!r})
    untouched = stream_untouched({echo.url("/text")!r})
print(json.dumps({{"text": len(text), "untouched": untouched}}))
ferrotrace.shutdown()
"""
    )
    proc = runner.run(program, env={"FERROTRACE_CAPTURE_BODIES": capture, "FERROTRACE_MAX_STR": "64"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"text": len(TEXT), "untouched": True}
    trace = (runner.tmp / "trace.jsonl").read_text()
    assert "hunter2" not in trace
    records = http_records(read_trace(runner.tmp / "trace.jsonl"))
    posted, got, streamed = sorted(records, key=lambda r: int(r["start_unix_ns"]))
    assert [r["method"] for r in (posted, got, streamed)] == ["POST", "GET", "GET"]
    # a streamed body the application only started to read is never recorded
    assert "response_body" not in streamed and "request_body" not in streamed
    assert "request_body" not in got
    if capture == "0":
        assert all("request_body" not in r and "response_body" not in r for r in (posted, got))
        return
    assert json.loads(posted["request_body"]) == {"user": "bob", "password": "[REDACTED]"}
    # the echoed headers, longer than MAX_STR
    assert posted["response_body"].startswith("{") and posted["response_body"].endswith("…")
    assert len(posted["response_body"]) == 65
    assert got["response_body"] == TEXT[:64] + "…"


INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("client", list(CLIENTS))
def test_an_incoming_tracestate_goes_out_with_the_traceparent(
    runner: Runner, echo: Echo, client: str
) -> None:
    state = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"
    too_many = ",".join(f"k{i}=v" for i in range(33))
    program = (
        CALL
        + CLIENTS[client]
        + f"""
ferrotrace.configure(output="trace.jsonl")
ferrotrace.instrument()
url = {echo.url("/echo")!r}
sent = []
with ferrotrace.session("in", traceparent={INCOMING!r}, tracestate={state!r}):
    sent.append(call(url, {{}}))
    with ferrotrace.session("nested"):
        sent.append(call(url, {{}}))
with ferrotrace.session("bad", traceparent={INCOMING!r}, tracestate={too_many!r}):
    sent.append(call(url, {{}}))
with ferrotrace.session("no parent", tracestate="rojo=1"):
    sent.append(call(url, {{}}))
print(json.dumps([[e.get("traceparent"), e.get("tracestate")] for e in sent]))
ferrotrace.shutdown()
"""
    )
    proc = runner.run(program)
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout.strip().splitlines()[-1])
    trace_id = INCOMING.split("-")[1]
    assert all(tp.split("-")[1] == trace_id for tp, _ in sent[:3])
    assert [ts for _, ts in sent] == [
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        None,
        None,
    ]
    (meta,) = [r for r in read_trace(runner.tmp / "trace.jsonl") if r["type"] == "meta"]
    assert meta["invalid_tracestate"] == 1
    assert meta["invalid_traceparent"] == 0
