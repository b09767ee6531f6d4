//! Argument and return-value previews of a recorded call (`FERROTRACE_CAPTURE`), already
//! bounded and redacted, written straight into the thread's text of open calls (copied into
//! the span batch when the call ends, so a span costs no allocation of its own).

use crate::capture::frame_args::{self, Frame};
use crate::capture::preview::{self, Walker};
use crate::process::runtime::HookState;
use crate::recorder::code_info;
use crate::recorder::{ThreadRecorder, SKIPPED};
use ferrotrace_core::event::TextRef;
use ferrotrace_core::preview::PreviewWriter;
use pyo3::ffi;
use pyo3::Python;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Writes the JSON object `{name: preview, ...}` of the arguments of the call starting in
/// `frame` (None: the current frame) at the end of the thread's open text, and returns where
/// it lies (empty when they cannot be read).
///
/// # Safety
/// The GIL is held, no exception is set, `code` is the code object running in `frame` (or,
/// with None, in the current frame) at its call event.
pub unsafe fn args_preview(
    py: Python<'_>,
    state: &HookState,
    rec: &mut ThreadRecorder,
    code: *mut ffi::PyObject,
    frame: Option<Frame>,
) -> TextRef {
    let Some(spec) = code_info::arg_spec(py, code, state) else {
        return TextRef::default();
    };
    let Some(frame) = frame.or_else(|| Frame::current(code)) else {
        return TextRef::default();
    };
    let max_items = state.limits.max_items;
    build(state, rec, |walker| {
        walker.writer().begin_object();
        for arg in spec.args.iter().take(max_items) {
            walker.writer().key_json(&arg.key);
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
    })
}

/// Writes the preview of the value the innermost open (recorded) call returns or yields and
/// notes it on that call, when `FERROTRACE_CAPTURE` asks for return values. Called right
/// before that call is closed.
///
/// # Safety
/// The GIL is held, no exception is set and `value` is a live object.
#[inline(always)]
pub unsafe fn record_return(
    state: &HookState,
    rec: &mut ThreadRecorder,
    value: *mut ffi::PyObject,
) {
    if !state.config.capture.returns()
        || value.is_null()
        || rec.stack.last().is_none_or(|top| top.flags & SKIPPED != 0)
    {
        return;
    }
    let start = rec.open_text.len();
    let ret = if preview::write_scalar(value, &mut rec.open_text) {
        written_since(&mut rec.open_text, start)
    } else {
        build(state, rec, |walker| walker.value(value, 0))
    };
    if let Some(top) = rec.stack.last_mut() {
        top.ret = ret;
    }
}

/// Runs `f` on a walker appending to the thread's open text, with the re-entrancy flag set
/// (a repr in repr mode may call traced code), and returns where the text it wrote lies.
unsafe fn build(
    state: &HookState,
    rec: &mut ThreadRecorder,
    f: impl FnOnce(&mut Walker),
) -> TextRef {
    let start = rec.open_text.len();
    rec.in_preview = true;
    let (buf, memo, open) = (
        &mut rec.open_text,
        &mut rec.key_memo,
        &mut rec.open_containers,
    );
    // A panic must not leave the flag set (the thread would stop being traced) nor a
    // half-written value behind.
    let done = catch_unwind(AssertUnwindSafe(|| {
        let memo = memo.for_generation(state.generation);
        let mut writer = PreviewWriter::new(buf, &state.redactor, memo, state.limits);
        let mut walker = Walker::new(&mut writer, state.config.preview, state.generation, open);
        f(&mut walker);
    }));
    rec.in_preview = false;
    let buf = &mut rec.open_text;
    if done.is_err() {
        ffi::PyErr_Clear();
        buf.truncate(start);
        buf.push_str("\"<preview failed>\"");
    }
    written_since(buf, start)
}

/// Where the text written to `buf` since `start` lies; beyond what a `TextRef` can address
/// it is dropped.
fn written_since(buf: &mut String, start: usize) -> TextRef {
    match (u32::try_from(start), u32::try_from(buf.len() - start)) {
        (Ok(start), Ok(len)) if start.checked_add(len).is_some() => TextRef { start, len },
        _ => {
            buf.truncate(start);
            TextRef::default()
        }
    }
}
