//! The `setprofile` backend: a C profile function installed with `PyEval_SetProfile`.
//!
//! Steady state per call: the thread's recorder read from the profile object CPython passes
//! back (`hook_handle`), one `co_extra` read, a check that the thread's context has not moved
//! (`context_stamp`), a clock read and a push onto a preallocated stack. Per return:
//! a frame-pointer comparison with the top of the stack, a clock read and a push into the
//! preallocated buffer. No regex, string formatting, hashing, allocation or attribute
//! lookup happens after a code object has been seen once.
//!
//! Other profilers: CPython has one profile function per thread. When a thread already has
//! one (cProfile before 3.12, a `sys.setprofile` function) ferrotrace installs
//! `profile_hook_chained` instead, which passes every event on to that function with its
//! own object, as CPython would have, and puts it back when the thread's last session ends.
//! A thread without one gets `profile_hook`, whose path is unchanged by this. When other
//! code replaces or removes ferrotrace's hook, that is noticed when sessions start or end
//! and at shutdown, and said once (`diagnostics`): ferrotrace never takes the slot back.
//!
//! Beside it: the object installed with the hook (`hook_handle`) and the reading of the
//! thread's profile slot (`profiler_slot`). Calls `recorder`, `capture` and `process`;
//! called by CPython, by the backend choice (`backends`) and by `api`.

#[cfg(not(Py_3_12))]
mod exception_watch;
pub mod hook_handle;
mod profiler_slot;

use crate::capture::exception;
use crate::capture::frame_args::Frame;
use crate::process::diagnostics;
use crate::process::runtime::{self, HookState};
use crate::recorder::calls;
use crate::recorder::code_info;
use crate::recorder::previews;
use crate::recorder::{self, SavedProfiler, ThreadRecorder};
use ferrotrace_core::clock;
use ferrotrace_core::event::FLAG_EXCEPTION;
use hook_handle::HookHandle;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
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

/// The profile function on a thread where another profiler was installed first: delivers
/// each event to ferrotrace and to that profiler. Returns what the other profiler returned,
/// so that an exception it raises reaches the program as it would without ferrotrace.
///
/// # Safety
/// As `profile_hook`.
pub unsafe extern "C" fn profile_hook_chained(
    obj: *mut ffi::PyObject,
    frame: *mut ffi::PyFrameObject,
    what: c_int,
    arg: *mut ffi::PyObject,
) -> c_int {
    match hook_handle::recorder_of(obj) {
        Some(rec) => chained_event(rec, frame, what, arg),
        None => 0,
    }
}

/// Delivers one event to ferrotrace's recorder `rec` and to the profiler chained on its
/// thread, if any: the other profiler sees a call before ferrotrace and a return after it,
/// so ferrotrace's spans do not include its time. Returns -1 with its exception set when
/// the other profiler failed.
///
/// # Safety
/// The GIL is held, `frame` is live and `rec` is the calling thread's recorder.
pub unsafe fn chained_event(
    rec: &mut ThreadRecorder,
    frame: *mut ffi::PyFrameObject,
    what: c_int,
    arg: *mut ffi::PyObject,
) -> c_int {
    let Some((func, obj)) = rec
        .saved_profiler
        .as_ref()
        .and_then(|s| s.func.map(|f| (f, s.obj)))
    else {
        dispatch(rec, frame, what, arg);
        return 0;
    };
    if what != ffi::PyTrace_CALL {
        dispatch(rec, frame, what, arg);
    }
    // The other profiler may drop the saved reference (by ending ferrotrace's session), or
    // CPython's own reference to ferrotrace's handle (`sys.setprofile(None)`) while it runs.
    ffi::Py_XINCREF(obj);
    let status = if func(obj, frame, what, arg) != 0 {
        chained_failed(rec, obj)
    } else {
        if what == ffi::PyTrace_CALL {
            // A call the other profiler failed is unwound by CPython without a return
            // event, so it is recorded only once the other profiler accepted it.
            dispatch(rec, frame, what, arg);
        }
        0
    };
    ffi::Py_XDECREF(obj);
    status
}

/// The chained profiler `failed` raised (its exception is set). Without ferrotrace,
/// CPython would have removed it and let its exception reach the program: ferrotrace does
/// the same, keeps its own hook on the thread without the chain, and says so once.
#[cold]
#[inline(never)]
unsafe fn chained_failed(rec: &mut ThreadRecorder, failed: *mut ffi::PyObject) -> c_int {
    let py = Python::assume_gil_acquired();
    let exc = PyErr::take(py);
    let name = diagnostics::describe(py, failed);
    let chained_is_failed = rec.saved_profiler.as_ref().is_some_and(|s| s.obj == failed);
    if chained_is_failed {
        if let Some(s) = rec.saved_profiler.replace(SavedProfiler::NONE) {
            s.forget();
        }
    }
    if rec.hook_refs > 0
        && (!profiler_slot::any_installed() || profiler_slot::is_installed(profile_hook_chained))
    {
        install(rec, profile_hook);
    }
    diagnostics::conflict(
        py,
        &format!(
            "the profiler {name} that ferrotrace passed events to raised; as CPython does \
             without ferrotrace, it was removed and its exception reached the program"
        ),
    );
    match exc {
        Some(e) => e.restore(py),
        None => PyRuntimeError::new_err("the chained profiler failed").restore(py),
    }
    -1
}

// `HookHandle` called from Python (`sys.setprofile(sys.getprofile())`): defined here, beside
// the hook it feeds, so that `hook_handle` needs nothing above the recorder.
#[pymethods]
impl HookHandle {
    /// Delivers a `sys.setprofile`-style event to ferrotrace's hook on the calling thread,
    /// and to the profiler it chains there. Raises only what that profiler raised.
    fn __call__(
        &self,
        frame: &Bound<'_, PyAny>,
        event: &str,
        arg: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let what = match event {
            "call" => ffi::PyTrace_CALL,
            "return" => ffi::PyTrace_RETURN,
            "c_call" => ffi::PyTrace_C_CALL,
            "c_return" => ffi::PyTrace_C_RETURN,
            "c_exception" => ffi::PyTrace_C_EXCEPTION,
            _ => return Ok(()),
        };
        let Some(rec) = recorder::existing() else {
            return Ok(());
        };
        // SAFETY: the GIL is held and `frame` is the frame the event is about; the
        // Python-level profiler passes None for a return by exception, which is then
        // recorded as a return of None.
        let status = unsafe {
            chained_event(
                rec,
                frame.as_ptr() as *mut ffi::PyFrameObject,
                what,
                arg.as_ptr(),
            )
        };
        if status == 0 {
            return Ok(());
        }
        Err(PyErr::take(frame.py())
            .unwrap_or_else(|| PyRuntimeError::new_err("the chained profiler failed")))
    }
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

/// CPython < 3.12 hides the exception leaving a frame from profile functions (see
/// `exception_watch`, which reads most of them). Otherwise the first event after it stops
/// propagating may run inside the `except`/`with` block that caught it, or after the
/// interpreter printed it as the one that ended the program: if that exception passed
/// through the frames that exited, their spans get its type and message.
#[inline(always)]
unsafe fn resolve_pending_exceptions(rec: &mut ThreadRecorder) {
    if !rec.has_pending_exceptions() {
        return;
    }
    let Some(state) = runtime::state() else {
        return;
    };
    rec.resolve_pending_exceptions(|frame| {
        let frame = frame as *mut ffi::PyFrameObject;
        let mut exc = exception::handled_through(frame);
        if exc.is_null() {
            exc = exception::escaped_through(frame);
        }
        if exc.is_null() {
            return None;
        }
        let info = exception::describe(exc, state);
        let token = exception::token(exc);
        ffi::Py_DECREF(exc);
        Some((info, token))
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
    let frame = ffi::PyEval_GetFrame();
    let detached = |rec: &ThreadRecorder| {
        !frame.is_null()
            && rec.hands_to_task(frame_code(frame), false, |a| {
                frame_code(a as *mut ffi::PyFrameObject)
            })
    };
    let token = exception::token(exc);
    rec.mark_unwound(
        frame as *mut ffi::PyObject,
        || exception::describe(exc, state),
        token,
        detached,
    );
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
        // Before 3.12 (3.12+ never passes null): the exception is read at the next event.
        let detached = rec.hands_to_task(frame_code(frame), true, |a| {
            frame_code(a as *mut ffi::PyFrameObject)
        });
        rec.pop_before_unwind(state, end, FLAG_EXCEPTION, detached);
        #[cfg(not(Py_3_12))]
        exception_watch::arm(rec);
    } else {
        previews::record_return(state, rec, arg);
        if cfg!(Py_3_12) && arg == ffi::Py_None() {
            rec.pop_before_unwind(state, end, 0, false);
        } else {
            rec.pop(state, end, 0, None);
        }
    }
}

/// Installs `hook` with a new handle for `rec` on the calling thread (nothing when the
/// handle cannot be made).
///
/// # Safety
/// The GIL is held and `rec` is the calling thread's recorder.
unsafe fn install(rec: &mut ThreadRecorder, hook: ffi::Py_tracefunc) -> bool {
    let handle = hook_handle::new(Python::assume_gil_acquired(), rec);
    if handle.is_null() {
        return false;
    }
    profiler_slot::set(Some(hook), handle);
    ffi::Py_DECREF(handle);
    true
}

/// Installs the hook on the calling thread for one more session. A profiler already on the
/// thread is chained; one that cannot be read safely is left in place, and said so.
///
/// # Safety
/// The GIL is held.
pub unsafe fn retain_on_current_thread(rec: &mut ThreadRecorder) {
    if rec.hook_refs > 0 {
        check_still_ours();
    } else if !ours_installed() {
        let py = Python::assume_gil_acquired();
        let Some(saved) = profiler_slot::save() else {
            let name = diagnostics::describe(py, profiler_slot::current_object());
            diagnostics::conflict(
                py,
                &format!(
                    "the profiler {name} was already installed and ferrotrace cannot pass \
                     events on to it on this interpreter, so it was left in place and the \
                     setprofile backend records nothing on that thread; \
                     FERROTRACE_BACKEND=auto coexists with it"
                ),
            );
            return;
        };
        let chained = saved.func.is_some();
        let name = chained.then(|| diagnostics::describe(py, saved.obj));
        rec.saved_profiler = Some(saved);
        let hook = if chained {
            profile_hook_chained
        } else {
            profile_hook
        };
        if !install(rec, hook) {
            if let Some(s) = rec.saved_profiler.take() {
                s.forget();
            }
            return;
        }
        if let (Some(name), Some(state)) = (name, runtime::state()) {
            ferrotrace_core::metrics::Counters::add(&state.counters.profilers_chained, 1);
            diagnostics::info(
                py,
                &format!(
                    "the profiler {name} was already installed; ferrotrace's setprofile hook \
                     passes every event on to it and puts it back when tracing ends"
                ),
            );
        }
    }
    rec.hook_refs += 1;
}

/// Releases one session's claim on the calling thread's hook; the last one restores the
/// profiler that was there before (if the hook is still ours: a profiler that replaced it
/// stays, and is reported).
///
/// # Safety
/// The GIL is held.
pub unsafe fn release_on_current_thread(rec: &mut ThreadRecorder) {
    if rec.hook_refs == 0 {
        return;
    }
    let ours = check_still_ours();
    rec.hook_refs -= 1;
    if rec.hook_refs > 0 {
        return;
    }
    #[cfg(not(Py_3_12))]
    exception_watch::disarm();
    let saved = rec.saved_profiler.take();
    if ours {
        profiler_slot::restore(saved);
    } else if let Some(s) = saved {
        s.forget();
    }
}

/// Drops every session's claim on the calling thread's hook and restores the previous
/// profiler if the hook is ours (at shutdown).
///
/// # Safety
/// The GIL is held.
pub unsafe fn remove_from_current_thread(rec: &mut ThreadRecorder) {
    if rec.hook_refs > 0 {
        rec.hook_refs = 1;
        release_on_current_thread(rec);
    }
}

/// True when the calling thread's profile function is ferrotrace's: either hook, or a
/// Python-level profiler that is one of ferrotrace's handles.
///
/// # Safety
/// The GIL is held.
unsafe fn ours_installed() -> bool {
    profiler_slot::is_installed(profile_hook)
        || profiler_slot::is_installed(profile_hook_chained)
        || hook_handle::is_handle(profiler_slot::current_object())
}

/// While sessions on the calling thread hold the hook: whether it is still there. When
/// another tool replaced or removed it, says so once.
///
/// # Safety
/// The GIL is held.
unsafe fn check_still_ours() -> bool {
    if ours_installed() {
        return true;
    }
    let py = Python::assume_gil_acquired();
    let note = if profiler_slot::any_installed() {
        let name = diagnostics::describe(py, profiler_slot::current_object());
        format!(
            "the profiler {name} replaced ferrotrace's setprofile hook while a session was \
             tracing; ferrotrace recorded nothing on that thread after that and left {name} \
             in place; start it before ferrotrace (it is then chained), or use \
             FERROTRACE_BACKEND=auto, which coexists with it"
        )
    } else {
        "ferrotrace's setprofile hook was removed while a session was tracing \
         (sys.setprofile(None), or a profiler such as cProfile enabled and disabled again); \
         ferrotrace recorded nothing on that thread after that; FERROTRACE_BACKEND=auto \
         coexists with other profilers"
            .to_string()
    };
    diagnostics::conflict(py, &note);
    false
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
    ours_installed()
}
