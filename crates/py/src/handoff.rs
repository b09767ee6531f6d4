//! Work handed to another thread (a `Thread` started, an executor task, a timer) runs in the
//! session it was handed over in. [`capture`] takes, where the work is handed over, the
//! session in effect and the innermost recorded call there (the parent of the work's first
//! call); [`enter`] makes them current on the thread that runs the work (the session in the
//! context variable, the call as the thread's *anchor* for that session, the backend on) and
//! [`exit`] puts back what was there. A worker thread reused by other work therefore never
//! keeps a previous task's session. Calls only `session`, `recorder` and `backends`; called
//! by `api`. Above `backends` (it switches them on for the thread it hands work to).

use crate::backends;
use crate::process::runtime::HookState;
use crate::recorder;
use crate::session::{self, set_var, Session};
use ferrotrace_core::traceparent;
use pyo3::prelude::*;

/// A session and the call that handed work over inside it (`ferrotrace._native.Handoff`).
#[pyclass(frozen, module = "ferrotrace._native", name = "Handoff")]
pub struct Handoff {
    session: Py<Session>,
    /// The span the work's first recorded call becomes a child of.
    parent_span: u64,
}

#[pymethods]
impl Handoff {
    /// The W3C `traceparent` that makes another process's session a child of the handing
    /// call (same trace id, parent span, sampled flag).
    #[getter]
    fn traceparent(&self, py: Python<'_>) -> String {
        let info = self.session.bind(py).get().info;
        traceparent::format(info.trace_id, self.parent_span, info.sampled)
    }
}

/// Where a thread stood before [`enter`]: restored by [`exit`]
/// (`ferrotrace._native.HandoffScope`).
#[pyclass(module = "ferrotrace._native", name = "HandoffScope")]
pub struct Scope {
    /// The context-variable token to reset the session with.
    token: Option<PyObject>,
    anchor: Option<(u64, u64)>,
    retained: bool,
}

/// The session in effect here and the innermost recorded call of it on this thread, when
/// that session is sampled, still running and `FERROTRACE_FOLLOW_THREADS` is on.
///
/// # Safety
/// The GIL is held.
pub unsafe fn capture(py: Python<'_>, state: &HookState) -> Option<Handoff> {
    if !state.config.follow_threads {
        return None;
    }
    let session = session::current(py)?;
    let s = session.get();
    if !s.info.sampled || s.ended.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let parent_span = match recorder::existing() {
        Some(rec) => rec.parent_for(s.info.key, s.info.span_id),
        None => s.info.span_id,
    };
    Some(Handoff {
        session: session.unbind(),
        parent_span,
    })
}

/// Makes the handed-over session current on this thread, with the handing call as the
/// parent of its top-level calls, and has the backend deliver this thread's calls.
///
/// # Safety
/// The GIL is held.
pub unsafe fn enter(py: Python<'_>, state: &HookState, handoff: &Handoff) -> PyResult<Scope> {
    let session = handoff.session.bind(py);
    let token = set_var(py, session.as_any())?;
    let Some(rec) = recorder::current(state) else {
        return Ok(Scope {
            token: Some(token),
            anchor: None,
            retained: false,
        });
    };
    let anchor = rec
        .anchor
        .replace((session.get().info.key, handoff.parent_span));
    backends::retain_on_current_thread(rec);
    Ok(Scope {
        token: Some(token),
        anchor,
        retained: true,
    })
}

/// Puts back what [`enter`] replaced.
///
/// # Safety
/// The GIL is held.
pub unsafe fn exit(py: Python<'_>, scope: &mut Scope) -> PyResult<()> {
    if let Some(rec) = recorder::existing() {
        if scope.retained {
            scope.retained = false;
            rec.anchor = scope.anchor.take();
            backends::release_on_current_thread(rec);
        }
    }
    if let Some(token) = scope.token.take() {
        let token = token.into_bound(py);
        // An error means the work left in another context than it entered (nothing of
        // this scope to restore there); it is already fetched, so it is dropped here.
        let _ = session::reset_var(&token);
    }
    Ok(())
}
