//! Opening a call of recorded code, shared by both backends: which session it belongs to,
//! whether it is recorded, and its parent span.

use crate::recorder::ThreadRecorder;
use crate::runtime::HookState;
use crate::session;
use crate::task;
use pyo3::ffi;
use pyo3::Python;

/// Opens a call of the recorded function `func_id` whose return will carry `activation`.
///
/// The call is recorded when a sampled session is in effect and the depth limit allows it.
/// Otherwise, when `keep_skipped` is set (backends that pair returns by code object), it is
/// pushed as skipped so the calls around it still pair up.
///
/// # Safety
/// The GIL is held and no exception is set.
#[inline(always)]
pub unsafe fn enter(
    py: Python<'_>,
    state: &HookState,
    rec: &mut ThreadRecorder,
    activation: *mut ffi::PyObject,
    func_id: u32,
    keep_skipped: bool,
) {
    let session = session::current_info(py, rec);
    let max_depth = state.config.max_depth;
    let session = match session {
        Some(s) if s.sampled && (max_depth == 0 || rec.next_depth() < max_depth) => s,
        other => {
            if keep_skipped {
                rec.push_skipped(activation, other.map_or(0, |s| s.key));
            }
            return;
        }
    };
    let (parent, task_id) = match rec.innermost_recorded() {
        Some(top) if top.session_key == session.key => (top.span_id, top.task_id),
        _ => (session.span_id, task::current_task_id()),
    };
    let flags = rec.enter_function(func_id);
    rec.push(
        activation,
        func_id,
        session.trace_id,
        parent,
        session.key,
        task_id,
        flags,
        None,
    );
}
