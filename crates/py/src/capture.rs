//! Argument and return-value previews of a recorded call (`FERROTRACE_CAPTURE`), built in the
//! thread's reusable buffer and copied out once, already bounded and redacted.

use crate::code_info;
use crate::frame_args::{self, Frame};
use crate::preview::Walker;
use crate::recorder::ThreadRecorder;
use crate::runtime::HookState;
use ferrotrace_core::preview::PreviewWriter;
use pyo3::ffi;
use pyo3::Python;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The JSON object `{name: preview, ...}` of the arguments of the call starting in `frame`
/// (null: the current frame), or None when they cannot be read.
///
/// # Safety
/// The GIL is held, no exception is set, `code` is the code object running in `frame` (or,
/// with a null `frame`, in the current frame) at its call event.
pub unsafe fn args_json(
    py: Python<'_>,
    state: &HookState,
    rec: &mut ThreadRecorder,
    code: *mut ffi::PyObject,
    frame: *mut ffi::PyFrameObject,
    func_id: u32,
) -> Option<String> {
    let spec = code_info::arg_spec(py, code, func_id, state)?;
    let frame = if frame.is_null() {
        Frame::current(code)?
    } else {
        Frame::of(frame)?
    };
    let max_items = state.limits.max_items;
    Some(build(state, rec, |walker| {
        walker.writer().begin_object();
        for arg in spec.args.iter().take(max_items) {
            walker.writer().key_known(&arg.name);
            if arg.sensitive {
                walker.writer().redacted();
                continue;
            }
            let v = frame_args::value(frame, arg);
            if v.is_null() {
                walker.writer().marker("<unset>");
                continue;
            }
            ffi::Py_INCREF(v);
            walker.value(v, 0);
            ffi::Py_DECREF(v);
        }
        if spec.args.len() > max_items {
            walker.writer().more_entries(spec.args.len() - max_items);
        }
        walker.writer().end_object();
    }))
}

/// Stores the preview of the value the innermost open call returns (or yields) in its
/// detail, when `FERROTRACE_CAPTURE` asks for return values. Called right before that call
/// is closed, so the span gets it without another allocation.
///
/// # Safety
/// The GIL is held, no exception is set and `value` is a live object.
#[inline(always)]
pub unsafe fn record_return(
    state: &HookState,
    rec: &mut ThreadRecorder,
    value: *mut ffi::PyObject,
) {
    if !state.config.capture.returns() || value.is_null() {
        return;
    }
    let json = value_json(state, rec, value);
    if let Some(top) = rec.stack.last_mut() {
        top.detail.get_or_insert_with(Default::default).return_json = Some(json);
    }
}

/// The JSON preview of one value (a return value).
///
/// # Safety
/// The GIL is held, no exception is set and `obj` is a live object.
pub unsafe fn value_json(
    state: &HookState,
    rec: &mut ThreadRecorder,
    obj: *mut ffi::PyObject,
) -> String {
    build(state, rec, |walker| walker.value(obj, 0))
}

/// Runs `f` on a walker over the thread's buffer, with the re-entrancy flag set (a repr in
/// repr mode may call traced code), and returns a copy of the text.
unsafe fn build(
    state: &HookState,
    rec: &mut ThreadRecorder,
    f: impl FnOnce(&mut Walker),
) -> String {
    let mut buf = std::mem::take(&mut rec.preview_buf);
    buf.clear();
    let mut memo = std::mem::take(&mut rec.key_memo);
    rec.in_preview = true;
    // A panic must not leave the flag set (the thread would stop being traced) nor a
    // half-written value behind.
    let done = catch_unwind(AssertUnwindSafe(|| {
        let memo = memo.for_generation(state.generation);
        let mut writer = PreviewWriter::new(&mut buf, &state.redactor, memo, state.limits);
        let mut walker = Walker::new(&mut writer, state.config.preview, state.generation);
        f(&mut walker);
    }));
    rec.in_preview = false;
    if done.is_err() {
        ffi::PyErr_Clear();
        buf.clear();
        buf.push_str("\"<preview failed>\"");
    }
    let text = buf.as_str().to_owned();
    rec.preview_buf = buf;
    rec.key_memo = memo;
    text
}
