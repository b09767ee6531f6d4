//! The event model: fixed-size span records made on the hot path, session records, and
//! the batches that carry them to the export thread.

use crate::ids::{SpanId, TraceId};

/// The span ended by an exception leaving the frame.
pub const FLAG_EXCEPTION: u32 = 1;
/// The call was still open when its session ended or the process exited.
pub const FLAG_UNFINISHED: u32 = 2;
/// Another call of the same function was already open on this thread (recursion).
pub const FLAG_RECURSIVE: u32 = 4;

/// One completed (or unfinished) Python call. Names are resolved later from the
/// [`crate::functions::FunctionTable`] by `func_id`.
#[derive(Debug, Default)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The enclosing recorded call, or the session's root span.
    pub parent_span_id: SpanId,
    /// Monotonic start, nanoseconds since the process anchor (see [`crate::clock`]).
    pub start_ns: u64,
    pub duration_ns: u64,
    /// Duration minus the durations of recorded child calls.
    pub self_ns: u64,
    pub thread_id: u64,
    /// The asyncio task that ran the call (its `id()`), 0 outside a task.
    pub task_id: u64,
    pub func_id: u32,
    /// Number of recorded ancestors of this call on its thread.
    pub depth: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Rare, variable-sized parts: present only when previews are on or an exception left.
    pub detail: Option<Box<SpanDetail>>,
}

/// The variable-sized parts of a span, already bounded and redacted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SpanDetail {
    /// JSON text of the argument preview (an object of name → preview).
    pub args_json: Option<String>,
    /// JSON text of the return-value preview.
    pub return_json: Option<String>,
    pub exception: Option<ExceptionInfo>,
}

/// An exception that left a frame.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExceptionInfo {
    /// Qualified type name, e.g. `ValueError` or `myapp.errors.Declined`.
    pub type_name: String,
    /// Bounded, redacted message (empty when it could not be read without running user code).
    pub message: String,
}

/// A session (one trace, or a child span of an enclosing session).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionRecord {
    pub trace_id: TraceId,
    /// The session's root span.
    pub span_id: SpanId,
    /// The enclosing session's span, the frame that opened it, or the remote caller's span.
    pub parent_span_id: SpanId,
    /// The parent came from an incoming `traceparent`.
    pub remote_parent: bool,
    pub tag: String,
    pub attrs: Vec<(String, String)>,
    pub sampled: bool,
    pub thread_id: u64,
    /// The Python name of the thread (`threading.Thread.name`), empty when unknown.
    pub thread_name: String,
    pub start_ns: u64,
    /// Set on the record sent when the session ends.
    pub end_ns: Option<u64>,
}

/// A batch of span records from one thread's buffer, handed over in one channel send.
pub type SpanBatch = Vec<SpanRecord>;
