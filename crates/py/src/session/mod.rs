//! Sessions: one trace (or a child span of the enclosing session) whose calls are recorded.
//!
//! The current session lives in a `contextvars.ContextVar`, so each thread and each asyncio
//! task sees its own; a process-wide session (from `ferrotrace run` or `ferrotrace.auto`)
//! applies wherever the variable is unset. The hook remembers the session it found last on
//! each thread together with the context's position (`context_stamp`): while that stays the
//! same it reads nothing else; after a context switch it reads the variable and compares the
//! object with the cached one.
//!
//! Beside it: the context's position (`context_stamp`) and the asyncio task a call runs in
//! (`task`). Calls only `process`; called by the recorder, the backends and `api`.

pub mod context_stamp;
pub mod task;

use crate::process::gil_cell::GilCell;
use context_stamp::Stamp;
use ferrotrace_core::clock;
use ferrotrace_core::event::{ExceptionInfo, SessionRecord};
use ferrotrace_core::ids::{new_span_id, new_trace_id, span_hex, TraceId};
use ferrotrace_core::traceparent;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What the hook needs from a session, copied out of the Python object.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionInfo {
    /// Unique per session in this process.
    pub key: u64,
    pub trace_id: TraceId,
    pub span_id: u64,
    pub sampled: bool,
}

/// The last session object the hook saw on a thread (a strong reference, so its address
/// cannot be reused by another object while cached) and its info, and where the thread's
/// context stood when the hook last looked.
pub struct SessionCache {
    obj: *mut ffi::PyObject,
    info: SessionInfo,
    /// The context position of the last lookup, and whether it found a session.
    seen: Stamp,
    found: bool,
}

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache {
            obj: std::ptr::null_mut(),
            info: SessionInfo::default(),
            seen: Stamp::NEVER,
            found: false,
        }
    }
}

impl SessionCache {
    /// Drops the cached reference.
    pub fn clear(&mut self) {
        self.seen = Stamp::NEVER;
        let old = std::mem::replace(&mut self.obj, std::ptr::null_mut());
        // SAFETY: callers hold the GIL; `old` is null or a reference this cache owns.
        unsafe { ffi::Py_XDECREF(old) };
    }

    /// The info of the cached session (all zero when none is cached).
    #[inline(always)]
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Caches the session object `obj` (a new reference, consumed) if it is a session;
    /// returns whether it was.
    ///
    /// # Safety
    /// The GIL is held and `obj` is a live object.
    #[cold]
    unsafe fn replace(&mut self, py: Python<'_>, obj: *mut ffi::PyObject) -> bool {
        let bound = Bound::from_owned_ptr(py, obj);
        let Some(info) = bound.downcast::<Session>().ok().map(|s| s.get().info) else {
            return false;
        };
        let old = std::mem::replace(&mut self.obj, bound.into_ptr());
        self.info = info;
        ffi::Py_XDECREF(old);
        true
    }
}

/// A session as Python sees it (`ferrotrace._native.Session`).
#[pyclass(frozen, module = "ferrotrace._native", name = "Session")]
pub struct Session {
    pub info: SessionInfo,
    pub record: SessionRecord,
    /// The thread whose hook this session installed (0 when it installed none).
    pub hooked_thread: AtomicU64,
    pub ended: AtomicBool,
    pub process_wide: bool,
    /// The process that created the session; only that process records its end.
    pub pid: u32,
    /// The W3C `tracestate` outgoing requests carry: the one given with the incoming
    /// `traceparent`, else the enclosing session's.
    pub tracestate: Option<String>,
    /// Set for the session of a served request (kind `server`).
    pub request: Option<Box<Request>>,
}

/// What the session of a served request keeps until it ends.
pub struct Request {
    /// The request method, upper-case (the tag is `"{method} {route}"`).
    pub method: String,
    /// The framework's route template, once the framework has routed the request.
    pub route: Mutex<Option<String>>,
    /// The response carries a `traceresponse` header (`FERROTRACE_RESPONSE_TRACEPARENT=1`).
    pub traceresponse: bool,
    /// An exception the framework turned into an error response (already described).
    pub error: Mutex<Option<ExceptionInfo>>,
}

#[pymethods]
impl Session {
    /// The W3C trace id, 32 lower-case hex digits.
    #[getter]
    fn trace_id(&self) -> String {
        self.info.trace_id.to_hex()
    }
    /// The session's root span id, 16 hex digits.
    #[getter]
    fn span_id(&self) -> String {
        span_hex(self.info.span_id)
    }
    /// The parent span id, or None for a new trace.
    #[getter]
    fn parent_span_id(&self) -> Option<String> {
        (self.record.parent_span_id != 0).then(|| span_hex(self.record.parent_span_id))
    }
    /// A `traceparent` header for outgoing calls made inside this session.
    #[getter]
    fn traceparent(&self) -> String {
        traceparent::format(self.info.trace_id, self.info.span_id, self.info.sampled)
    }
    /// Whether this session is recorded.
    #[getter]
    fn sampled(&self) -> bool {
        self.info.sampled
    }
    /// The tag given at start.
    #[getter]
    fn tag(&self) -> &str {
        &self.record.tag
    }
    /// The string attributes given at start.
    #[getter]
    fn attrs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.record.attrs {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
    /// `"server"` for a served request, else `"internal"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.record.kind.as_str()
    }
    /// The W3C `traceresponse` header a served request's response carries, None unless
    /// `FERROTRACE_RESPONSE_TRACEPARENT=1`.
    #[getter]
    fn traceresponse(&self) -> Option<String> {
        self.request
            .as_ref()
            .filter(|r| r.traceresponse)
            .map(|_| self.traceparent())
    }
    /// True once the session has ended.
    #[getter]
    fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
    fn __repr__(&self) -> String {
        format!(
            "<ferrotrace Session {:?} trace_id={} sampled={}>",
            self.record.tag,
            self.info.trace_id.to_hex(),
            self.info.sampled
        )
    }
}

static SESSION_VAR: GilCell<*mut ffi::PyObject> = GilCell::new(std::ptr::null_mut());
static PROCESS_SESSION: GilCell<*mut ffi::PyObject> = GilCell::new(std::ptr::null_mut());
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
/// Whether a sampled process-wide session runs (read by the monitoring backend on every
/// event, without touching the session object).
static PROCESS_WIDE_SAMPLED: AtomicBool = AtomicBool::new(false);

/// True while a sampled process-wide session runs.
#[inline(always)]
pub fn process_wide_sampled() -> bool {
    PROCESS_WIDE_SAMPLED.load(Ordering::Relaxed)
}

/// Creates the context variable. Called once at module import; returns it (a new reference).
///
/// # Safety
/// The GIL is held.
pub unsafe fn init_context_var() -> *mut ffi::PyObject {
    let var = SESSION_VAR.get();
    if var.is_null() {
        *var = ffi::PyContextVar_New(c"ferrotrace_session".as_ptr(), std::ptr::null_mut());
    }
    ffi::Py_XINCREF(*var);
    *var
}

/// The session context variable's value here: a new reference, or null when it is unset;
/// None when it cannot be read (the error is cleared).
///
/// # Safety
/// The GIL is held.
#[inline(always)]
unsafe fn context_value() -> Option<*mut ffi::PyObject> {
    let mut value = std::ptr::null_mut();
    if ffi::PyContextVar_Get(*SESSION_VAR.get(), std::ptr::null_mut(), &mut value) < 0 {
        ffi::PyErr_Clear();
        return None;
    }
    Some(value)
}

/// The session object in effect here: the context variable's value, else the process-wide
/// session. A new reference, or None.
///
/// # Safety
/// The GIL is held.
unsafe fn current_object() -> Option<*mut ffi::PyObject> {
    let mut value = context_value()?;
    if value.is_null() {
        value = *PROCESS_SESSION.get();
        ffi::Py_XINCREF(value);
    }
    (!value.is_null()).then_some(value)
}

/// Brings the thread's session cache up to date with the session in effect here and
/// returns it (None when no session is). While the thread's context has not moved since the
/// last call, that is a few loads; otherwise one context-variable read and a pointer
/// comparison, with no reference counting of the process-wide session.
///
/// # Safety
/// The GIL is held.
#[inline(always)]
pub unsafe fn current_info<'a>(
    py: Python<'_>,
    cache: &'a mut SessionCache,
) -> Option<&'a SessionInfo> {
    let now = context_stamp::current();
    if now != cache.seen {
        let found = look_up(py, cache);
        cache.seen = if found.is_some() { now } else { Stamp::NEVER };
        cache.found = found.unwrap_or(false);
    }
    cache.found.then_some(&cache.info)
}

/// Reads the session in effect here into `cache`: whether there is one, or None when the
/// variable cannot be read.
///
/// # Safety
/// The GIL is held.
unsafe fn look_up(py: Python<'_>, cache: &mut SessionCache) -> Option<bool> {
    let mut value = context_value()?;
    if value.is_null() {
        let process = *PROCESS_SESSION.get();
        if process.is_null() {
            return Some(false);
        }
        if process == cache.obj {
            return Some(true);
        }
        ffi::Py_INCREF(process);
        value = process;
    } else if value == cache.obj {
        // The cache holds its own reference, so this one is never the last.
        ffi::Py_DECREF(value);
        return Some(true);
    }
    Some(cache.replace(py, value))
}

/// Sets the session variable in the current context; returns the token to reset it with.
///
/// # Safety
/// The GIL is held; `value` is a session or None.
pub unsafe fn set_var(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<PyObject> {
    let token = ffi::PyContextVar_Set(*SESSION_VAR.get(), value.as_ptr());
    context_stamp::note_session_change();
    Ok(Bound::from_owned_ptr_or_err(py, token)?.unbind())
}

/// Resets the session variable with a token from `set_var`.
///
/// # Safety
/// The GIL is held.
pub unsafe fn reset_var(token: &Bound<'_, PyAny>) -> PyResult<()> {
    let status = ffi::PyContextVar_Reset(*SESSION_VAR.get(), token.as_ptr());
    context_stamp::note_session_change();
    if status < 0 {
        return Err(PyErr::fetch(token.py()));
    }
    Ok(())
}

/// The current session object, for nesting a new one under it.
///
/// # Safety
/// The GIL is held.
pub unsafe fn current(py: Python<'_>) -> Option<Bound<'_, Session>> {
    let obj = current_object()?;
    Bound::from_owned_ptr(py, obj)
        .downcast_into::<Session>()
        .ok()
}

/// Sampled sessions begun in this process and not yet ended, by key (strong references to
/// ferrotrace's own session objects, none of the program's): those still open at shutdown
/// are ended then (a process that dies by SIGTERM inside one, a request whose server never
/// closed its body), so that every `session_start` has its `session_end`.
static OPEN: GilCell<BTreeMap<u64, Py<Session>>> = GilCell::new(BTreeMap::new());

/// Most sessions [`OPEN`] keeps (sessions a program never ends do not grow it further).
const MAX_OPEN: usize = 1 << 16;

/// Remembers a sampled session until it ends (see [`OPEN`]).
///
/// # Safety
/// The GIL is held.
pub unsafe fn track(session: &Bound<'_, Session>) {
    let open = OPEN.get();
    if open.len() < MAX_OPEN {
        open.insert(session.get().info.key, session.clone().unbind());
    }
}

/// Forgets an ended session.
///
/// # Safety
/// The GIL is held.
pub unsafe fn untrack(key: u64) {
    let removed = OPEN.get().remove(&key);
    // Released after the map is no longer borrowed.
    drop(removed);
}

/// Takes every session still open (at shutdown).
///
/// # Safety
/// The GIL is held.
pub unsafe fn take_open() -> Vec<Py<Session>> {
    std::mem::take(OPEN.get()).into_values().collect()
}

/// Sets (or clears) the process-wide session.
///
/// # Safety
/// The GIL is held.
pub unsafe fn set_process_session(session: Option<&Bound<'_, Session>>) {
    let slot = PROCESS_SESSION.get();
    PROCESS_WIDE_SAMPLED.store(
        session.is_some_and(|s| s.get().info.sampled),
        Ordering::Relaxed,
    );
    let old = std::mem::replace(
        slot,
        session.map_or(std::ptr::null_mut(), |s| s.clone().into_ptr()),
    );
    ffi::Py_XDECREF(old);
    context_stamp::note_session_change();
}

/// The process-wide session, if one is running.
///
/// # Safety
/// The GIL is held.
pub unsafe fn process_session(py: Python<'_>) -> Option<Bound<'_, Session>> {
    let p = *PROCESS_SESSION.get();
    (!p.is_null())
        .then(|| Bound::from_borrowed_ptr(py, p))
        .and_then(|b| b.downcast_into::<Session>().ok())
}

/// How a new session relates to what came before it.
pub struct Lineage {
    pub trace_id: TraceId,
    pub parent_span_id: u64,
    pub remote_parent: bool,
    /// The sampling decision inherited from a parent, if one is honoured.
    pub inherited_sampled: Option<bool>,
}

/// Builds the lineage from an incoming `traceparent` (if valid) or the enclosing session.
/// Returns whether a header was given but invalid.
pub fn lineage(
    header: Option<&str>,
    parent: Option<(&Session, u64)>,
    honor_parent: bool,
) -> (Lineage, bool) {
    if let Some(h) = header {
        if let Ok(tp) = traceparent::parse(h) {
            return (
                Lineage {
                    trace_id: tp.trace_id,
                    parent_span_id: tp.parent_id,
                    remote_parent: true,
                    inherited_sampled: honor_parent.then_some(tp.sampled),
                },
                false,
            );
        }
    }
    let invalid = header.is_some();
    let lineage = match parent {
        Some((p, parent_span)) => Lineage {
            trace_id: p.info.trace_id,
            parent_span_id: parent_span,
            remote_parent: false,
            inherited_sampled: honor_parent.then_some(p.info.sampled),
        },
        None => Lineage {
            trace_id: new_trace_id(),
            parent_span_id: 0,
            remote_parent: false,
            inherited_sampled: None,
        },
    };
    (lineage, invalid)
}

/// The Python name of the thread whose `threading.get_ident()` is `ident`, read from
/// `threading._active` without calling Python code (so nothing of it is traced); empty when
/// the thread is not a `threading` thread.
pub fn thread_name(py: Python<'_>, ident: u64) -> String {
    py.import("threading")
        .and_then(|t| t.getattr("_active"))
        .and_then(|active| active.get_item(ident))
        .and_then(|thread| thread.getattr("_name"))
        .and_then(|name| name.extract::<String>())
        .unwrap_or_default()
}

/// A new session object (not yet started).
pub fn new_session(
    lineage: Lineage,
    sampled: bool,
    tag: String,
    attrs: Vec<(String, String)>,
    thread_id: u64,
    process_wide: bool,
) -> Session {
    let info = SessionInfo {
        key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
        trace_id: lineage.trace_id,
        span_id: new_span_id(),
        sampled,
    };
    Session {
        info,
        record: SessionRecord {
            trace_id: info.trace_id,
            span_id: info.span_id,
            parent_span_id: lineage.parent_span_id,
            remote_parent: lineage.remote_parent,
            tag,
            attrs,
            sampled,
            thread_id,
            thread_name: String::new(),
            start_ns: clock::now_ns(),
            end_ns: None,
            ..Default::default()
        },
        hooked_thread: AtomicU64::new(0),
        ended: AtomicBool::new(false),
        process_wide,
        pid: std::process::id(),
        tracestate: None,
        request: None,
    }
}
