//! The exception that leaves a frame, for the setprofile backend on 3.10 and 3.11.
//!
//! CPython before 3.12 fetches the exception out of the thread state around a profile
//! function's return event (`call_trace_protected`), so the profile function cannot see
//! it. It hands it to a *trace* function, though: as the `PyTrace_EXCEPTION` event of the
//! next Python frame the exception reaches (the caller's error path, or a `for` loop that
//! ends on `StopIteration`), which comes before any other event. So when a recorded frame
//! unwinds and the thread has no trace function of its own (no debugger or coverage tool),
//! [`arm`] installs [`watch`] as the thread's trace function until its first event:
//!
//! - an exception event whose traceback (or that of the exception it replaced, its
//!   `__context__`) passes through the frames that unwound gives their spans its type and
//!   message;
//! - any other event means C code caught the exception before Python code saw it
//!   (`hasattr`, `next(it, default)`): the spans then keep their flag, and get a type only
//!   if the exception being handled shows it (see `resolve_pending_exceptions`).
//!
//! `watch` removes itself at its first event. A thread that has a trace function keeps it
//! untouched, and its spans get what the exception being handled at the next event shows.
//! The slot is written as `PyEval_SetTrace` does, without its `sys.settrace` audit event
//! (audit hooks are user code) and with no object, so `sys.gettrace()` still says None.

use super::resolve_pending_exceptions;
use crate::capture::exception;
use crate::process::runtime::{self, HookState};
use crate::recorder::{self, ThreadRecorder};
use pyo3::ffi;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Offsets in `PyThreadState` of `c_tracefunc` and `c_traceobj`, from the CPython headers.
#[cfg(not(Py_3_11))]
const TRACE_SLOT: (usize, usize) = (64, 80);
#[cfg(Py_3_11)]
const TRACE_SLOT: (usize, usize) = (72, 88);

/// How many `__context__` links an exception is followed through to the one that left a
/// frame (C code that replaces an exception, as a generator's `StopIteration` becomes a
/// `RuntimeError`, links them).
const CONTEXT_DEPTH: usize = 4;

/// The calling thread's trace function slot and its object slot.
///
/// # Safety
/// The GIL is held.
unsafe fn slots() -> (*mut Option<ffi::Py_tracefunc>, *mut *mut ffi::PyObject) {
    let tstate = ffi::PyThreadState_Get() as *mut u8;
    // SAFETY: both offsets lie inside this version's PyThreadState (checked against the
    // headers); the thread state lives as long as the thread, and the GIL serialises every
    // writer of these fields.
    (
        tstate.add(TRACE_SLOT.0) as *mut Option<ffi::Py_tracefunc>,
        tstate.add(TRACE_SLOT.1) as *mut *mut ffi::PyObject,
    )
}

/// Installs `watch` when spans of `rec` wait for the exception that left their frames and
/// the thread has no trace function. CPython's tracing flag is already on (ferrotrace's
/// profile function is set), and it recomputes it from both slots after this hook returns.
///
/// # Safety
/// The GIL is held, inside ferrotrace's profile function.
pub unsafe fn arm(rec: &ThreadRecorder) {
    if !rec.has_pending_exceptions() {
        return;
    }
    let (func, obj) = slots();
    if (*func).is_none() && (*obj).is_null() {
        *func = Some(watch);
    }
}

/// Removes `watch` from the calling thread when it is installed there.
///
/// # Safety
/// The GIL is held.
pub unsafe fn disarm() {
    let (func, obj) = slots();
    let current = *(func as *const *const std::os::raw::c_void);
    if current == watch as *const std::os::raw::c_void && (*obj).is_null() {
        *func = None;
    }
}

/// The trace function: removes itself, then resolves the spans waiting for an exception
/// type with the exception event's exception, or, at any other event, with what the
/// exception being handled shows. Never raises and never lets a panic cross into CPython.
///
/// # Safety
/// Called by CPython with the GIL held; for `PyTrace_EXCEPTION`, `arg` is the
/// `(type, value, traceback)` tuple.
unsafe extern "C" fn watch(
    _obj: *mut ffi::PyObject,
    _frame: *mut ffi::PyFrameObject,
    what: c_int,
    arg: *mut ffi::PyObject,
) -> c_int {
    disarm();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(rec) = recorder::existing() else {
            return;
        };
        if what == ffi::PyTrace_EXCEPTION {
            if let Some(state) = runtime::state() {
                resolve_from_event(rec, arg, state);
                return;
            }
        }
        resolve_pending_exceptions(rec);
    }));
    0
}

/// Gives each waiting span the exception of the event's `(type, value, traceback)` tuple,
/// or one it replaced, whose traceback passes through the span's frame.
///
/// # Safety
/// The GIL is held; `arg` is null or the exception event's tuple.
unsafe fn resolve_from_event(rec: &mut ThreadRecorder, arg: *mut ffi::PyObject, state: &HookState) {
    if arg.is_null() || ffi::PyTuple_Check(arg) == 0 || ffi::PyTuple_GET_SIZE(arg) != 3 {
        resolve_pending_exceptions(rec);
        return;
    }
    let value = ffi::PyTuple_GET_ITEM(arg, 1);
    let tb = ffi::PyTuple_GET_ITEM(arg, 2);
    rec.resolve_pending_exceptions(|frame| {
        left_through(value, tb, frame as *mut ffi::PyFrameObject)
            .map(|e| (exception::describe(e, state), exception::token(e)))
    });
}

/// The exception among `value` (whose traceback is `tb`) and those it replaced whose
/// traceback passes through `frame` (borrowed), if any.
///
/// # Safety
/// The GIL is held; `value` and `tb` are live objects (the event's tuple holds them).
unsafe fn left_through(
    value: *mut ffi::PyObject,
    tb: *mut ffi::PyObject,
    frame: *mut ffi::PyFrameObject,
) -> Option<*mut ffi::PyObject> {
    if ffi::PyExceptionInstance_Check(value) == 0 {
        return None;
    }
    if exception::traceback_passes(tb, frame) {
        return Some(value);
    }
    let mut cur = value;
    for _ in 0..CONTEXT_DEPTH {
        // SAFETY: an exception instance is laid out as PyBaseExceptionObject; its context
        // is null or another exception instance, kept alive by `value`'s chain.
        let ctx = (*(cur as *mut ffi::PyBaseExceptionObject)).context;
        if ctx.is_null() || ffi::PyExceptionInstance_Check(ctx) == 0 {
            return None;
        }
        let ctx_tb = (*(ctx as *mut ffi::PyBaseExceptionObject)).traceback;
        if !ctx_tb.is_null() && exception::traceback_passes(ctx_tb, frame) {
            return Some(ctx);
        }
        cur = ctx;
    }
    None
}
