"""Type stubs for ferrotrace's native core (crates/py). Most users call `ferrotrace` instead."""

from contextvars import ContextVar, Token
from typing import Any

__version__: str
SESSION_VAR: ContextVar[Session | None]

class Session:
    """A session: one trace (or a child span of the enclosing session) whose calls are recorded."""

    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def traceparent(self) -> str: ...
    @property
    def sampled(self) -> bool: ...
    @property
    def tag(self) -> str: ...
    @property
    def attrs(self) -> dict[str, str]: ...
    @property
    def kind(self) -> str:
        """ "server" for a served request, else "internal"."""
    @property
    def traceresponse(self) -> str | None:
        """The `traceresponse` header of a served request's response (only with
        FERROTRACE_RESPONSE_TRACEPARENT=1)."""
    @property
    def ended(self) -> bool: ...

class HookHandle:
    """What `sys.getprofile()` returns while ferrotrace's hook is installed on a thread.

    Callable like a `sys.setprofile` function, so saving and restoring the profiler keeps
    tracing."""

    def __call__(self, frame: Any, event: str, arg: Any) -> None: ...

def set_environment(default_prefixes: list[str], cwd: str, python_version: str) -> None: ...
def configure(
    args: dict[str, bytes], env: dict[str, bytes], lenient: bool, output_pid: int | None = None
) -> list[str]:
    """Validates and applies settings (values as bytes; not UTF-8 is invalid); returns
    warnings (lenient) or raises ValueError. `output_pid` puts the pid in the output name."""

def is_configured() -> bool: ...
def add_diagnostics(messages: list[str]) -> bool:
    """Adds to this process's `meta` record diagnostics; False when not configured."""

def config_report(
    args: dict[str, bytes], env: dict[str, bytes]
) -> tuple[list[tuple[str, str, str, str, str, str | None]], list[str]]:
    """(name, variable, value, source, rule, error) per setting, and warnings."""

def session_start(
    tag: str,
    attrs: list[tuple[str, str]],
    traceparent: str | None = None,
    process_wide: bool = False,
    tracestate: str | None = None,
) -> Session:
    """A new session; `tracestate` is kept (when valid per W3C) only with a valid
    `traceparent`, and sent on outgoing requests beside it."""

def session_end(session: Session, exception: BaseException | None = None) -> None:
    """End `session`; `exception` is the one its block exited by (recorded as escaped)."""

def current_session() -> Session | None: ...
def session_var_set(value: Session | None) -> Token[Session | None]:
    """Make `value` the session of the current context; returns the reset token."""

def session_var_reset(token: Token[Session | None]) -> None: ...
def thread_bootstrap(*args: Any) -> None: ...

class Handoff:
    """A session and the call that handed work over inside it."""

    @property
    def traceparent(self) -> str:
        """`traceparent` naming the handing call, for a session in another process."""

class HandoffScope:
    """What `handoff_enter` replaced on its thread, put back by `handoff_exit`."""

class PerfettoWriter:
    """Writes a Perfetto protobuf trace one record at a time (`convert --to perfetto`), with
    the encoder of the `perfetto` exporter."""

    def __init__(self, path: str) -> None:
        """Creates (or truncates) the file at `path`."""
    def call(
        self,
        pid: int,
        thread_id: int,
        module: str,
        qualname: str,
        start_ns: int,
        duration_ns: int,
        args: str | None = None,
        ret: str | None = None,
        exception: tuple[str, str, str | None, bool] | None = None,
        unfinished: bool = False,
    ) -> None:
        """One call: a slice named `module.qualname` on its thread's track, with the argument
        and return previews (JSON text) and the exception (type, message, the hex span id
        that caught it, whether it escaped) when given."""
    def thread_slice(
        self,
        pid: int,
        thread_id: int,
        name: str,
        start_ns: int,
        end_ns: int,
        annotations: list[tuple[str, str]],
    ) -> None:
        """A slice named `name` on a thread's track (a session), with string annotations."""
    def close(self) -> int:
        """Writes what is left and closes the file; returns the bytes written."""

def handoff_capture() -> Handoff | None:
    """The sampled session in effect and the innermost recorded call; None when there is no
    sampled session or FERROTRACE_FOLLOW_THREADS is 0."""

def handoff_enter(handoff: Handoff) -> HandoffScope:
    """Runs this thread's work, until `handoff_exit`, in the handed-over session."""

def handoff_exit(scope: HandoffScope) -> None:
    """Puts back the session and parent this thread had before `handoff_enter`."""

def disown_inherited_calls() -> None:
    """In a forked multiprocessing child: the parent's open calls are not recorded."""

def diagnostic(note: str, conflict: bool) -> None:
    """Says `note` once on the `ferrotrace` logger and keeps it for the meta record."""

def flush(timeout: float) -> bool: ...
def shutdown(timeout: float) -> bool: ...
def stats() -> dict[str, Any]: ...
def top_functions(n: int) -> list[tuple[str, str, int, int, int]]:
    """(module, qualname, calls, total_ns, self_ns) for the `n` functions with most total time."""

def report_summary(files: list[str], top: int) -> tuple[int, int, list[str], list[tuple[str, int, int, int]]]:
    """What `ferrotrace report` prints of the JSONL `files` (read in order as one run, with the
    GIL released): (spans, sessions, the meta records' lines, the `top` functions by total
    time as (name, calls, total_ns, self_ns)). Raises OSError(errno, message, path) for a file
    that cannot be read."""

def before_fork() -> None: ...
def after_fork_parent() -> None: ...
def after_fork_child() -> None: ...
def sigterm_install() -> bool: ...
def sigterm_reclaim() -> bool:
    """After the program set SIGTERM back to SIG_DFL: the flushing handler is put back."""

def hook_installed() -> bool:
    """True when calls on the calling thread are delivered to ferrotrace."""

def per_process_output(template: str, pid: int) -> str: ...
def on_unwind(code: Any, offset: int, exc: BaseException) -> None: ...
def backend_name() -> str:
    """The backend delivering calls: "monitoring", "evalframe" or "setprofile"."""

def monitoring_install(tool: int) -> None: ...
def monitoring_install_unwind(tool: int) -> None:
    """Setprofile backend, 3.12+: PY_UNWIND on `tool` only while a sampled session runs."""

class HttpSpan:
    """A client span for one outgoing HTTP request (see `ferrotrace.instrumentation`)."""

    @property
    def traceparent(self) -> str | None:
        """The header to send; None when FERROTRACE_PROPAGATE=0."""
    @property
    def tracestate(self) -> str | None:
        """The session's `tracestate` to send beside it; None without one or propagation."""
    @property
    def span_id(self) -> str: ...
    @property
    def recorded(self) -> bool:
        """Whether `http_end` records the request (a sampled session)."""
    @property
    def wants_headers(self) -> bool:
        """Whether FERROTRACE_CAPTURE_HEADERS names headers to keep."""
    @property
    def wants_bodies(self) -> bool:
        """Whether FERROTRACE_CAPTURE_BODIES=1 (and the request is recorded)."""

def http_start() -> HttpSpan | None:
    """A client span for a request made here; None outside any session."""

def http_end(
    span: HttpSpan,
    library: str,
    method: str,
    url: str,
    status: int,
    request_bytes: int = 0,
    response_bytes: int = 0,
    resend_count: int = 0,
    exception: tuple[str, str] | None = None,
    request_headers: list[tuple[str, str]] = ...,
    response_headers: list[tuple[str, str]] = ...,
    request_body: bytes | str | None = None,
    response_body: bytes | str | None = None,
) -> None:
    """Ends the span once and queues its `http` record, redacted (status 0: no response)."""

def http_instrument() -> list[str]:
    """The libraries FERROTRACE_INSTRUMENT names."""

def wsgi_start(environ: dict[str, Any]) -> Session | None:
    """The session of a WSGI request (kind "server"), or None: excluded, unsampled, or
    tracing off (then serve it untouched)."""

def asgi_start(scope: Any) -> Session | None:
    """The session of an ASGI `http` request (kind "server"), or None (serve it untouched)."""

def server_route(route: str) -> None:
    """Names the route template of the request being served here."""

def server_exception(exception: BaseException) -> None:
    """Notes an exception the framework answered with an error response."""

def server_end(
    session: Session, status: int, exception: BaseException | None = None, route: str | None = None
) -> None:
    """Ends a request's session once: tag "{method} {route}", status code, error status."""
