//! The event model: fixed-size span records made on the hot path, session records, and
//! the batches that carry them to the export thread.

use crate::clock;
use crate::ids::{SpanId, TraceId};
use crate::in_place::Room;

/// An outgoing HTTP request (a CLIENT span), the event kind the HTTP client
/// instrumentation records; see [`crate::http`].
pub use crate::http::HttpRecord;

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
    /// Monotonic start, nanoseconds since the process anchor (see [`crate::clock`]); in
    /// clock ticks while the batch's `times_in_ticks` is set, as are the two durations.
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
    /// JSON text of the argument preview (an object of name → preview) in the batch's text.
    pub args: TextRef,
    /// JSON text of the return-value preview in the batch's text.
    pub ret: TextRef,
    /// The exception that left the frame (rare). With `FLAG_EXCEPTION` set and no info, its
    /// type could not be known.
    pub exception: Option<Box<ExceptionInfo>>,
}

/// A piece of a [`SpanBatch`]'s text (empty: none). Previews are written into the batch
/// they travel in, so a span costs no allocation of its own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TextRef {
    pub start: u32,
    pub len: u32,
}

impl TextRef {
    /// No text.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// An exception that left a frame.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExceptionInfo {
    /// Qualified type name, e.g. `ValueError` or `myapp.errors.Declined`.
    pub type_name: String,
    /// Bounded, redacted message (empty when it could not be read without running user code).
    pub message: String,
    /// Where the exception went after leaving the frame (spans only).
    pub fate: ExceptionFate,
}

/// Where an exception that left a call went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionFate {
    /// Not known: it ended an asyncio task step or a thread, or the trace ended first.
    #[default]
    Unknown,
    /// Caught by this span (the nearest recorded ancestor that did not end by it; the
    /// session's root span when the code around the session's calls caught it).
    CaughtBy(SpanId),
    /// It left the session (the session ended by it).
    Escaped,
}

/// What a session stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionKind {
    /// A unit of work of the program (`ferrotrace.session`, the process-wide session).
    #[default]
    Internal,
    /// One HTTP request served by the program (the WSGI and ASGI integrations).
    Server,
}

impl SessionKind {
    /// The name written in JSONL (`"kind"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Internal => "internal",
            SessionKind::Server => "server",
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionStatus {
    /// Not ended yet, or ended without a verdict (an internal session).
    #[default]
    Unset,
    /// A request answered with a status below 500.
    Ok,
    /// A request answered with a 5xx status, or one the application raised out of.
    Error,
}

impl SessionStatus {
    /// The name written in JSONL (`"status"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Unset => "unset",
            SessionStatus::Ok => "ok",
            SessionStatus::Error => "error",
        }
    }
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
    pub kind: SessionKind,
    pub status: SessionStatus,
    /// The exception that escaped the request (type, redacted and bounded message).
    pub exception: Option<ExceptionInfo>,
}

/// A batch of span records from one thread's buffer, handed over in one channel send, with
/// the text (already bounded and redacted previews) its records point into. It derefs to
/// its records.
#[derive(Debug, Default)]
pub struct SpanBatch {
    pub spans: Vec<SpanRecord>,
    pub text: String,
    /// Whether the spans' times are in [`clock::now_ticks`] units (as the recorder writes
    /// them) rather than nanoseconds; the export thread converts them before exporting.
    pub times_in_ticks: bool,
}

impl SpanBatch {
    /// Text capacity a cleared batch keeps at most.
    pub const MAX_KEPT_TEXT: usize = 8 << 20;

    /// An empty batch with room for `spans` records.
    pub fn with_capacity(spans: usize) -> Self {
        SpanBatch {
            spans: Vec::with_capacity(spans),
            text: String::new(),
            times_in_ticks: false,
        }
    }

    /// Room for one more record, to be built in place (see [`crate::in_place`]).
    #[inline(always)]
    pub fn room(&mut self) -> Room<'_, SpanRecord> {
        Room::make(&mut self.spans)
    }

    /// Preview text a batch's reserved room must reach before a preview that does not fit
    /// makes the batch due (see [`Self::text_outgrows_room`]): below it, growing is cheap.
    pub const MIN_TEXT_ROOM: usize = 64 << 10;

    /// Whether appending `len` more bytes of text would make the batch's text outgrow the
    /// room reserved for it (and copy it), when that room is already worth keeping.
    #[inline(always)]
    pub fn text_outgrows_room(&self, len: usize) -> bool {
        let room = self.text.capacity();
        room >= Self::MIN_TEXT_ROOM && room - self.text.len() < len
    }

    /// Makes room for `wanted` bytes of text in this empty batch, without copying the old
    /// (unused) text storage.
    pub fn reserve_text(&mut self, wanted: usize) {
        let wanted = wanted.min(Self::MAX_KEPT_TEXT);
        if self.text.capacity() < wanted {
            debug_assert!(self.text.is_empty());
            self.text = String::with_capacity(wanted);
        }
    }

    /// Appends `text` to the batch's text and returns where it lies. Text beyond 4 GiB
    /// in one batch is not kept.
    pub fn add_text(&mut self, text: &str) -> TextRef {
        let (Ok(start), Ok(len)) = (u32::try_from(self.text.len()), u32::try_from(text.len()))
        else {
            return TextRef::default();
        };
        if start.checked_add(len).is_none() {
            return TextRef::default();
        }
        crate::append::str(&mut self.text, text);
        TextRef { start, len }
    }

    /// The text at `r`, None when empty (or not in this batch).
    pub fn text_at(&self, r: TextRef) -> Option<&str> {
        if r.is_empty() {
            return None;
        }
        let start = r.start as usize;
        self.text.get(start..start + r.len as usize)
    }

    /// The argument preview of `span` (a record of this batch).
    pub fn args(&self, span: &SpanRecord) -> Option<&str> {
        self.text_at(span.args)
    }

    /// The return-value preview of `span` (a record of this batch).
    pub fn return_value(&self, span: &SpanRecord) -> Option<&str> {
        self.text_at(span.ret)
    }

    /// Converts times recorded in clock ticks to nanoseconds (done by the export thread,
    /// off the application thread); no-op when they already are.
    pub fn convert_ticks(&mut self) {
        if !std::mem::take(&mut self.times_in_ticks) {
            return;
        }
        for span in &mut self.spans {
            span.start_ns = clock::ticks_to_ns(span.start_ns);
            span.duration_ns = clock::ticks_span_ns(span.duration_ns);
            span.self_ns = clock::ticks_span_ns(span.self_ns);
        }
    }

    /// Empties the batch, keeping its memory (but not an unusually large text).
    pub fn clear(&mut self) {
        self.times_in_ticks = false;
        self.spans.clear();
        if self.text.capacity() > Self::MAX_KEPT_TEXT {
            self.text = String::new();
        } else {
            self.text.clear();
        }
    }
}

impl std::ops::Deref for SpanBatch {
    type Target = Vec<SpanRecord>;
    fn deref(&self) -> &Vec<SpanRecord> {
        &self.spans
    }
}

impl std::ops::DerefMut for SpanBatch {
    fn deref_mut(&mut self) -> &mut Vec<SpanRecord> {
        &mut self.spans
    }
}

impl From<Vec<SpanRecord>> for SpanBatch {
    fn from(spans: Vec<SpanRecord>) -> Self {
        SpanBatch {
            spans,
            text: String::new(),
            times_in_ticks: false,
        }
    }
}
