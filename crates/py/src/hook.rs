//! The `setprofile` backend: a C profile function installed with `PyEval_SetProfile`.
//!
//! Steady state per call: the thread's recorder read from the profile object CPython passes
//! back (`hook_handle`), one `co_extra` read, a check that the thread's context has not moved
//! (`context_stamp`), a clock read and a push onto a preallocated stack. Per return:
//! a frame-pointer comparison with the top of the stack, a clock read and a push into the
//! preallocated buffer. No regex, string formatting, hashing, allocation or attribute
//! lookup happens after a code object has been seen once.

use crate::calls;
use crate::capture;
use crate::code_info;
use crate::exception;
use crate::frame_args::Frame;
use crate::hook_handle;
use crate::profiler_slot;
use crate::recorder::{self, ThreadRecorder};
use crate::runtime::{self, HookState};
use ferrotrace_core::clock;
use ferrotrace_core::event::FLAG_EXCEPTION;
use pyo3::ffi;
use pyo3::Python;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

/// The profile function. Never raises and never lets a panic cross into CPython.
///
/// The handlers of call and return events are separate functions, so events ferrotrace
/// ignores, such as C calls and returns, leave without the handlers' register saves.
///
/// # Safety
/// Called by CPython with the GIL held and a live frame, with the `HookHandle` that
/// `retain_on_current_thread` installed it with on this thread.
pub unsafe extern "C" fn profile_hook(
    obj: *mut ffi::PyObject,
    frame: *mut ffi::PyFrameObject,
    what: c_int,
    arg: *mut ffi::PyObject,
) -> c_int {
    if let Some(rec) = hook_handle::recorder_of(obj) {
        dispatch(rec, frame, what, arg);
    }
    0
}

/// Handles one profile event for the calling thread's recorder `rec`.
///
/// # Safety
/// The GIL is held, `frame` is live and `rec` is the calling thread's recorder.
#[inline(always)]
pub unsafe fn dispatch(
    rec: &mut ThreadRecorder,
    frame: *mut ffi::PyFrameObject,
    what: c_int,
    arg: *mut ffi::PyObject,
) {
    match what {
        ffi::PyTrace_CALL => call_event(rec, frame),
        ffi::PyTrace_RETURN => return_event(rec, frame, arg),
        ffi::PyTrace_C_CALL if recorder::any_pending_exceptions() => c_call_event(rec),
        _ => {}
    }
}

/// A Python function's call event.
#[inline(never)]
unsafe fn call_event(rec: &mut ThreadRecorder, frame: *mut ffi::PyFrameObject) {
    let _ = catch_unwind(AssertUnwindSafe(|| on_call(rec, frame)));
}

/// A Python function's return event (`arg` is null when an exception leaves it).
#[inline(never)]
unsafe fn return_event(
    rec: &mut ThreadRecorder,
    frame: *mut ffi::PyFrameObject,
    arg: *mut ffi::PyObject,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| on_return(rec, frame, arg)));
}

/// A C function's call event while spans wait for an exception type.
#[cold]
#[inline(never)]
unsafe fn c_call_event(rec: &mut ThreadRecorder) {
    let _ = catch_unwind(AssertUnwindSafe(|| resolve_pending_exceptions(rec)));
}

/// CPython < 3.12 hides the exception leaving a frame from profile functions. The first
/// event after it stops propagating usually runs inside the `except`/`with` block that
/// caught it: if the exception being handled there passed through the frames that exited,
/// their spans get its type and message.
#[inline(always)]
unsafe fn resolve_pending_exceptions(rec: &mut ThreadRecorder) {
    if !rec.has_pending_exceptions() {
        return;
    }
    let Some(state) = runtime::state() else {
        return;
    };
    rec.resolve_pending_exceptions(|frame| {
        let exc = exception::handled_through(frame as *mut ffi::PyFrameObject);
        if exc.is_null() {
            return None;
        }
        let info = exception::describe(exc, state);
        ffi::Py_DECREF(exc);
        Some(info)
    });
}

/// `sys.monitoring` `PY_UNWIND` callback (3.12+). CPython calls tools from the highest id
/// down, so the legacy profiler (tool 6) has already recorded the frame's return: mark that
/// span with the exception leaving the frame.
///
/// # Safety
/// The GIL is held; `exc` is the exception being raised.
pub unsafe fn on_unwind(exc: *mut ffi::PyObject) {
    let Some(rec) = recorder::existing() else {
        return;
    };
    let Some(state) = runtime::state() else {
        return;
    };
    rec.mark_unwound(ffi::PyEval_GetFrame() as *mut ffi::PyObject, || {
        exception::describe(exc, state)
    });
}

#[inline(always)]
unsafe fn on_call(rec: &mut ThreadRecorder, frame: *mut ffi::PyFrameObject) {
    if recorder::any_pending_exceptions() {
        resolve_pending_exceptions(rec);
    }
    let Some(state) = runtime::state() else {
        return;
    };
    if !state.recording.load(Ordering::Relaxed) {
        return;
    }
    let py = Python::assume_gil_acquired();
    let code = frame_code(frame);
    let view = Frame::of(frame);
    let entry = code_info::cached_or_decided(py, view, code, state);
    if !entry.recorded {
        return;
    }
    calls::enter(
        py,
        state,
        rec,
        frame as *mut ffi::PyObject,
        code,
        view,
        entry.func_id,
        false,
    );
}

/// The code object `frame` runs, borrowed (the frame keeps it alive): read from the
/// frame's public struct before 3.11, where the struct became opaque.
///
/// # Safety
/// The GIL is held and `frame` is a live frame.
#[cfg(not(Py_3_11))]
#[inline(always)]
unsafe fn frame_code(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyObject {
    (*frame).f_code as *mut ffi::PyObject
}

/// The code object `frame` runs, borrowed: read from the interpreter frame behind it on
/// 3.11 (the default backend there; see `frame_args` for the layout).
///
/// # Safety
/// The GIL is held and `frame` is a live frame.
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[inline(always)]
unsafe fn frame_code(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyObject {
    match Frame::of(frame) {
        Some(f) => f.code(),
        None => code_via_api(frame),
    }
}

/// The code object `frame` runs, borrowed.
///
/// # Safety
/// The GIL is held and `frame` is a live frame.
#[cfg(Py_3_12)]
#[inline(always)]
unsafe fn frame_code(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyObject {
    code_via_api(frame)
}

/// The code object `frame` runs, borrowed (the frame keeps it alive, so the new reference
/// `PyFrame_GetCode` returns can be dropped at once).
///
/// # Safety
/// The GIL is held and `frame` is a live frame.
#[cfg(Py_3_11)]
#[inline(always)]
unsafe fn code_via_api(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyObject {
    let code = ffi::PyFrame_GetCode(frame) as *mut ffi::PyObject;
    ffi::Py_DECREF(code);
    code
}

#[inline(always)]
unsafe fn on_return(
    rec: &mut ThreadRecorder,
    frame: *mut ffi::PyFrameObject,
    arg: *mut ffi::PyObject,
) {
    if !arg.is_null() {
        resolve_pending_exceptions(rec);
    }
    match rec.stack.last() {
        Some(top) if top.activation == frame as *mut ffi::PyObject => {}
        _ => return,
    }
    let end = clock::now_ticks();
    let Some(state) = runtime::state() else {
        return;
    };
    if arg.is_null() {
        rec.pop(state, end, FLAG_EXCEPTION, None);
    } else {
        capture::record_return(state, rec, arg);
        rec.pop(state, end, 0, None);
    }
}

/// Installs the hook on the calling thread for one more session.
///
/// # Safety
/// The GIL is held.
pub unsafe fn retain_on_current_thread(rec: &mut ThreadRecorder) {
    if rec.hook_refs == 0 && !profiler_slot::is_installed(profile_hook) {
        let handle = hook_handle::new(Python::assume_gil_acquired(), rec);
        if handle.is_null() {
            return;
        }
        rec.saved_profiler = profiler_slot::save();
        ffi::PyEval_SetProfile(Some(profile_hook), handle);
        ffi::Py_DECREF(handle);
    }
    rec.hook_refs += 1;
}

/// Releases one session's claim on the calling thread's hook; the last one restores the
/// profiler that was there before (if the hook is still ours).
///
/// # Safety
/// The GIL is held.
pub unsafe fn release_on_current_thread(rec: &mut ThreadRecorder) {
    rec.hook_refs = rec.hook_refs.saturating_sub(1);
    if rec.hook_refs == 0 && profiler_slot::is_installed(profile_hook) {
        profiler_slot::restore(rec.saved_profiler.take());
    }
}

/// Drops every session's claim on the calling thread's hook and restores the previous
/// profiler if the hook is ours (at shutdown).
///
/// # Safety
/// The GIL is held.
pub unsafe fn remove_from_current_thread(rec: &mut ThreadRecorder) {
    rec.hook_refs = 1;
    release_on_current_thread(rec);
}

/// Installs the hook on the calling thread if it is not there (threads started while a
/// process-wide session runs).
///
/// # Safety
/// The GIL is held.
pub unsafe fn ensure_on_current_thread(state: &HookState) {
    if let Some(rec) = recorder::current(state) {
        if rec.hook_refs == 0 {
            retain_on_current_thread(rec);
        }
    }
}

/// True when the calling thread's profile function is ferrotrace's hook.
///
/// # Safety
/// The GIL is held.
pub unsafe fn installed_here() -> bool {
    profiler_slot::is_installed(profile_hook)
}
