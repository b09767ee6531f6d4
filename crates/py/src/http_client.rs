//! Outgoing HTTP requests made by the instrumented client libraries
//! (`ferrotrace.instrumentation`): a client span is started where the application calls
//! the library and ended when the exchange is over; its record is redacted here, before it
//! is queued.

use crate::process::runtime;
use crate::recorder;
use crate::session;
use crate::session::task;
use ferrotrace_core::clock;
use ferrotrace_core::event::{ExceptionInfo, HttpRecord};
use ferrotrace_core::http::host_port;
use ferrotrace_core::ids::{new_span_id, span_hex, TraceId};
use ferrotrace_core::traceparent;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule, PyString};
use std::sync::atomic::{AtomicBool, Ordering};

/// A client span for one outgoing request (`ferrotrace._native.HttpSpan`).
#[pyclass(frozen, module = "ferrotrace._native", name = "HttpSpan")]
pub struct HttpSpan {
    trace_id: TraceId,
    span_id: u64,
    parent_span_id: u64,
    thread_id: u64,
    task_id: u64,
    start_ns: u64,
    /// Recorded when it ends (the session is sampled and tracing is on).
    recorded: bool,
    /// The `traceparent` to send, None when `FERROTRACE_PROPAGATE=0`.
    header: Option<String>,
    /// The session's `tracestate` to send beside it, None when there is none or
    /// propagation is off.
    tracestate: Option<String>,
    /// Header values are wanted (`FERROTRACE_CAPTURE_HEADERS` names some).
    wants_headers: bool,
    /// Bodies are wanted (`FERROTRACE_CAPTURE_BODIES=1`).
    wants_bodies: bool,
    ended: AtomicBool,
}

#[pymethods]
impl HttpSpan {
    /// The `traceparent` header to send with the request, None when propagation is off.
    #[getter]
    fn traceparent(&self) -> Option<&str> {
        self.header.as_deref()
    }
    /// The `tracestate` header to send with the request, None when there is none or
    /// propagation is off.
    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
    /// The client span id, 16 hex digits.
    #[getter]
    fn span_id(&self) -> String {
        span_hex(self.span_id)
    }
    /// Whether the request is recorded when it ends.
    #[getter]
    fn recorded(&self) -> bool {
        self.recorded
    }
    /// Whether `http_end` wants the request and response headers.
    #[getter]
    fn wants_headers(&self) -> bool {
        self.wants_headers
    }
    /// Whether `http_end` wants the request and response bodies.
    #[getter]
    fn wants_bodies(&self) -> bool {
        self.wants_bodies
    }
}

/// Starts a client span for a request made here, or returns None outside any session (and
/// in an unsampled one when propagation is off): the caller then makes the request
/// untouched. In an unsampled session the span only carries the session's context, with
/// the sampled flag off, and records nothing.
#[pyfunction]
fn http_start(py: Python<'_>) -> Option<HttpSpan> {
    let state = runtime::state()?;
    // SAFETY: pyfunctions run with the GIL held.
    let session = unsafe { session::current(py) }?;
    let s = session.get();
    let recorded = s.info.sampled
        && state.config.enabled
        && state.recording.load(Ordering::Relaxed)
        && !s.ended.load(Ordering::Relaxed);
    let propagate = state.config.propagate;
    if !recorded && !propagate {
        return None;
    }
    let (span_id, parent_span_id, thread_id, task_id) = if recorded {
        // SAFETY: pyfunctions run with the GIL held, with no exception set.
        unsafe {
            let rec = recorder::current(state)?;
            let parent = rec.parent_for(s.info.key, s.info.span_id);
            (
                new_span_id(),
                parent,
                rec.thread_id,
                task::current_task_id(),
            )
        }
    } else {
        (s.info.span_id, 0, 0, 0)
    };
    Some(HttpSpan {
        trace_id: s.info.trace_id,
        span_id,
        parent_span_id,
        thread_id,
        task_id,
        start_ns: clock::now_ns(),
        recorded,
        header: propagate.then(|| traceparent::format(s.info.trace_id, span_id, recorded)),
        tracestate: s.tracestate.clone().filter(|_| propagate),
        wants_headers: recorded && !state.config.capture_headers.is_empty(),
        wants_bodies: recorded && state.config.capture_bodies,
        ended: AtomicBool::new(false),
    })
}

/// The first `max` characters of `s`.
fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// The start of a body given as bytes or text, as text (invalid UTF-8 replaced), cut at
/// twice `max` characters: the redactor then sees whole any secret that straddles the final
/// cut at `max`. None for any other object (a stream, a file): it is never read.
fn body_head(body: &Bound<'_, PyAny>, max: usize) -> Option<String> {
    let limit = max.saturating_mul(2);
    if let Ok(bytes) = body.downcast::<PyBytes>() {
        let bytes = bytes.as_bytes();
        // A character is at most 4 bytes.
        let head = &bytes[..bytes.len().min(limit.saturating_mul(4))];
        Some(bounded(&String::from_utf8_lossy(head), limit))
    } else if let Ok(text) = body.downcast::<PyString>() {
        Some(bounded(&text.to_string_lossy(), limit))
    } else {
        None
    }
}

/// Ends a client span (once; later calls do nothing) and, when it is recorded, queues its
/// `http` record: the URL, headers and exception message are redacted first, and only the
/// headers named in `FERROTRACE_CAPTURE_HEADERS` are kept. `status` 0: no response came.
/// The bodies (bytes or str; anything else is ignored) are kept only with
/// `FERROTRACE_CAPTURE_BODIES=1`, redacted, then bounded by `FERROTRACE_MAX_STR`.
#[pyfunction]
#[pyo3(signature = (
    span, library, method, url, status, request_bytes=0, response_bytes=0, resend_count=0,
    exception=None, request_headers=Vec::new(), response_headers=Vec::new(),
    request_body=None, response_body=None
))]
#[allow(clippy::too_many_arguments)]
fn http_end(
    span: &HttpSpan,
    library: &str,
    method: &str,
    url: &str,
    status: u16,
    request_bytes: u64,
    response_bytes: u64,
    resend_count: u32,
    exception: Option<(String, String)>,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    request_body: Option<&Bound<'_, PyAny>>,
    response_body: Option<&Bound<'_, PyAny>>,
) {
    if !span.recorded || span.ended.swap(true, Ordering::Relaxed) {
        return;
    }
    let Some(state) = runtime::state() else {
        return;
    };
    if !state.recording.load(Ordering::Relaxed) {
        return;
    }
    let end = clock::now_ns();
    let (host, port) = host_port(url);
    let max = state.config.max_str;
    let body = |b: Option<&Bound<'_, PyAny>>| {
        b.filter(|_| state.config.capture_bodies)
            .and_then(|b| body_head(b, max))
    };
    let mut record = HttpRecord {
        trace_id: span.trace_id,
        span_id: span.span_id,
        parent_span_id: span.parent_span_id,
        thread_id: span.thread_id,
        task_id: span.task_id,
        library: library.to_string(),
        method: method.to_ascii_uppercase(),
        url: url.to_string(),
        host,
        port,
        status,
        start_ns: span.start_ns,
        duration_ns: end.saturating_sub(span.start_ns),
        request_bytes,
        response_bytes,
        resend_count,
        exception: exception.map(|(type_name, message)| ExceptionInfo {
            type_name,
            message: bounded(&message, max),
            ..Default::default()
        }),
        request_headers,
        response_headers,
        request_body: body(request_body),
        response_body: body(response_body),
    };
    record.redact(&state.redactor, &state.config.capture_headers);
    for b in [&mut record.request_body, &mut record.response_body]
        .into_iter()
        .flatten()
    {
        *b = bounded(b, max);
    }
    state.pipeline.submit_http(record);
}

/// The libraries `FERROTRACE_INSTRUMENT` names (all of them before configuration).
#[pyfunction]
fn http_instrument() -> Vec<String> {
    match runtime::state() {
        Some(state) => state.config.instrument.clone(),
        None => ferrotrace_core::config::INSTRUMENTABLE
            .iter()
            .map(|l| l.to_string())
            .collect(),
    }
}

/// Adds the class and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HttpSpan>()?;
    m.add_function(wrap_pyfunction!(http_start, m)?)?;
    m.add_function(wrap_pyfunction!(http_end, m)?)?;
    m.add_function(wrap_pyfunction!(http_instrument, m)?)?;
    Ok(())
}
