//! Opening a call of recorded code, shared by both backends: which session it belongs to,
//! whether it is recorded, and its parent span.

use crate::capture::frame_args::Frame;
use crate::process::runtime::HookState;
use crate::recorder::previews;
use crate::recorder::ThreadRecorder;
use crate::session;
use crate::session::task;
use ferrotrace_core::event::TextRef;
use pyo3::ffi;
use pyo3::Python;

/// Opens a call of the recorded function `func_id` (running `code` in `frame`; None means
/// the current frame) whose return will carry `activation`.
///
/// The call is recorded when a sampled session is in effect and the depth limit allows it,
/// and no preview of this thread is being built (calls a `repr` makes are not traced).
/// Otherwise, when `keep_skipped` is set (backends that pair returns by code object), it is
/// pushed as skipped so the calls around it still pair up. A recorded call gets its
/// argument preview when `FERROTRACE_CAPTURE` asks for one.
///
/// # Safety
/// The GIL is held and no exception is set; `code` runs in `frame`, at its call event.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn enter(
    py: Python<'_>,
    state: &HookState,
    rec: &mut ThreadRecorder,
    activation: *mut ffi::PyObject,
    code: *mut ffi::PyObject,
    frame: Option<Frame>,
    func_id: u32,
    keep_skipped: bool,
) {
    if rec.in_preview {
        if keep_skipped {
            rec.push_skipped(activation, 0);
        }
        return;
    }
    let (key, sampled) = match session::current_info(py, &mut rec.session_cache) {
        Some(s) => (s.key, s.sampled),
        None => (0, false),
    };
    let max_depth = state.config.max_depth;
    if !sampled || (max_depth != 0 && rec.next_depth() >= max_depth) {
        if keep_skipped {
            rec.push_skipped(activation, key);
        }
        return;
    }
    let (parent, task_id) = match rec.innermost_recorded() {
        Some(top) if top.session_key == key => (top.span_id, top.task_id),
        _ => (
            rec.top_level_parent(key, rec.session_cache.info().span_id),
            task::current_task_id(),
        ),
    };
    let args = if state.config.capture.args() {
        previews::args_preview(py, state, rec, code, frame)
    } else {
        TextRef::default()
    };
    let flags = rec.enter_function(func_id);
    rec.push(activation, func_id, parent, key, task_id, flags, args);
}
