//! The `monitoring` backend (CPython 3.12+): C-level callbacks registered with
//! `sys.monitoring` on ferrotrace's own tool id, so it coexists with cProfile, coverage and
//! other tools.
//!
//! `PY_START`, `PY_RESUME` and `PY_THROW` open a call; `PY_RETURN`, `PY_YIELD` and
//! `PY_UNWIND` close it, so generators and coroutines give one span per resumption and
//! exceptions mark the frames they leave, as with `setprofile`. The callbacks are
//! [`vectorcall_callable`] objects, which CPython calls straight through their function
//! pointer without building an argument tuple. A code object that is filtered or
//! function-sampled out answers `DISABLE` from its local events, after which CPython never
//! calls ferrotrace for it again (until the configuration changes and `restart_events`
//! runs).
//!
//! Events are per interpreter, not per thread: they are switched on while at least one
//! sampled session holds a claim, and each callback first checks whether the calling thread
//! wants events (it has a session, or a process-wide session runs). Returns are paired with
//! calls by code object; a call of recorded code that is not recorded stays on the stack as
//! skipped so that recursion still pairs correctly.
//!
//! Calls `recorder`, `capture` and `process`, and `claims` beside it; called by CPython, by
//! the backend choice (`backends`) and by `api` (installing the callbacks).

#[cfg(all(Py_3_12, not(Py_3_13)))]
mod superinstructions;
mod vectorcall_callable;

use crate::backends::claims::Claims;
use crate::capture::exception;
use crate::capture::frame_args::Frame;
use crate::process::gil_cell::GilCell;
use crate::process::runtime::{self, HookState};
use crate::recorder::calls;
use crate::recorder::code_info::{self, CodeEntry};
use crate::recorder::previews;
use crate::recorder::{self, SKIPPED};
use ferrotrace_core::clock;
use ferrotrace_core::metrics::Counters;
use pyo3::prelude::*;
use pyo3::{ffi, Python};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};

/// The tool id ferrotrace registered on, or -1.
static TOOL: AtomicI32 = AtomicI32::new(-1);

/// `sys.monitoring.DISABLE`, `sys.monitoring` itself, and the event mask turned on while
/// sessions hold claims.
struct Handles {
    disable: *mut ffi::PyObject,
    module: *mut ffi::PyObject,
    mask: u64,
}

static HANDLES: GilCell<Option<Handles>> = GilCell::new(None);

/// Sampled sessions (across all threads) holding events on.
pub static CLAIMS: Claims = Claims::new(set_events);

/// The callbacks and the `sys.monitoring.events` attribute each one serves.
const CALLBACKS: [(&str, ffi::vectorcallfunc); 6] = [
    ("PY_START", py_start),
    ("PY_RESUME", py_resume),
    ("PY_THROW", py_throw),
    ("PY_RETURN", py_return),
    ("PY_YIELD", py_return),
    ("PY_UNWIND", py_unwind),
];

/// Registers the callbacks on `tool` (already claimed with `use_tool_id`); events stay off
/// until a session claims them.
pub fn install(py: Python<'_>, tool: i32) -> PyResult<()> {
    let module = py.import("sys")?.getattr("monitoring")?;
    let events = module.getattr("events")?;
    let mut mask = 0u64;
    for (event, callback) in CALLBACKS {
        let bit: u64 = events.getattr(event)?.extract()?;
        mask |= bit;
        let func = vectorcall_callable::new(py, callback)?;
        module.call_method1("register_callback", (tool, bit, func))?;
    }
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    superinstructions::install(py);
    publish(module, tool, mask)
}

/// For the setprofile backend on 3.12+: `PY_UNWIND` on `tool` (whose callback the caller
/// registered) shows it the exceptions leaving frames. Like the monitoring backend's
/// events, it is on only while a sampled session holds a claim.
pub fn install_unwind_only(py: Python<'_>, tool: i32) -> PyResult<()> {
    let module = py.import("sys")?.getattr("monitoring")?;
    let mask: u64 = module.getattr("events")?.getattr("PY_UNWIND")?.extract()?;
    publish(module, tool, mask)
}

/// Keeps `sys.monitoring`, its `DISABLE` and the event `mask` for the callbacks and marks
/// `tool` as ferrotrace's.
fn publish(module: Bound<'_, PyAny>, tool: i32, mask: u64) -> PyResult<()> {
    let disable = module.getattr("DISABLE")?.unbind().into_ptr();
    // SAFETY: the GIL is held (`module` is bound to it).
    unsafe {
        *HANDLES.get() = Some(Handles {
            disable,
            module: module.unbind().into_ptr(),
            mask,
        });
    }
    TOOL.store(tool, Ordering::Release);
    Ok(())
}

/// True once the callbacks are registered.
pub fn installed() -> bool {
    TOOL.load(Ordering::Acquire) >= 0
}

/// Turns the events on or off for ferrotrace's tool.
///
/// # Safety
/// The GIL is held.
unsafe fn set_events(on: bool) {
    let Some(h) = HANDLES.get().as_ref() else {
        return;
    };
    let tool = TOOL.load(Ordering::Acquire);
    let mask = if on { h.mask } else { 0 };
    let r = ffi::PyObject_CallMethod(h.module, c"set_events".as_ptr(), c"iK".as_ptr(), tool, mask);
    if r.is_null() {
        ffi::PyErr_Clear();
    } else {
        ffi::Py_DECREF(r);
    }
}

/// Re-enables every event `DISABLE` switched off, so code objects are decided again under a
/// new configuration.
///
/// # Safety
/// The GIL is held.
pub unsafe fn restart_events() {
    let Some(h) = HANDLES.get().as_ref() else {
        return;
    };
    let r = ffi::PyObject_CallMethod(h.module, c"restart_events".as_ptr(), std::ptr::null());
    if r.is_null() {
        ffi::PyErr_Clear();
    } else {
        ffi::Py_DECREF(r);
    }
}

/// The value a callback returns: `DISABLE` or None, as a new reference.
#[inline(always)]
unsafe fn answer(disable: bool) -> *mut ffi::PyObject {
    let obj = if disable {
        disable_or_none()
    } else {
        ffi::Py_None()
    };
    ffi::Py_INCREF(obj);
    obj
}

/// `DISABLE` (borrowed), or None before the callbacks are registered.
///
/// # Safety
/// The GIL is held.
#[cold]
unsafe fn disable_or_none() -> *mut ffi::PyObject {
    HANDLES
        .get()
        .as_ref()
        .map_or_else(|| ffi::Py_None(), |h| h.disable)
}

/// The number of positional arguments in a vectorcall's `nargsf`.
#[inline(always)]
fn positional(nargsf: usize) -> usize {
    nargsf & !ffi::PY_VECTORCALL_ARGUMENTS_OFFSET
}

/// `PY_START(code, offset)`.
unsafe extern "C" fn py_start(
    _callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let nargs = positional(nargsf);
    let disable =
        nargs >= 1 && catch_unwind(AssertUnwindSafe(|| on_call(*args, true))).unwrap_or(false);
    answer(disable)
}

/// `PY_RESUME(code, offset)`: a generator or coroutine continues.
unsafe extern "C" fn py_resume(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    py_start(callable, args, nargsf, kwnames)
}

/// `PY_THROW(code, offset, exception)`: a generator resumed by `throw()`; not disableable.
unsafe extern "C" fn py_throw(
    _callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let nargs = positional(nargsf);
    if nargs >= 1 {
        let _ = catch_unwind(AssertUnwindSafe(|| on_call(*args, false)));
    }
    answer(false)
}

/// `PY_RETURN(code, offset, value)` and `PY_YIELD(code, offset, value)`.
unsafe extern "C" fn py_return(
    _callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let nargs = positional(nargsf);
    let value = if nargs >= 3 {
        *args.add(2)
    } else {
        std::ptr::null_mut()
    };
    let disable = nargs >= 1
        && catch_unwind(AssertUnwindSafe(|| {
            on_return(*args, std::ptr::null_mut(), value)
        }))
        .unwrap_or(false);
    answer(disable)
}

/// `PY_UNWIND(code, offset, exception)`: the frame exits by an exception; not disableable.
unsafe extern "C" fn py_unwind(
    _callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    _kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let nargs = positional(nargsf);
    if nargs >= 3 {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            on_return(*args, *args.add(2), std::ptr::null_mut())
        }));
    }
    answer(false)
}

/// The decision for `code`, taken now if it has not been under this state (and then, on
/// 3.12, the superinstructions instrumentation took from `code` are given back).
#[inline(always)]
unsafe fn entry(py: Python<'_>, code: *mut ffi::PyObject, state: &HookState) -> CodeEntry {
    match code_info::cached(code, state.generation) {
        Some(e) => e,
        None => {
            #[cfg(all(Py_3_12, not(Py_3_13)))]
            superinstructions::restore(code);
            code_info::decide(py, Frame::current(code), code, state)
        }
    }
}

/// A call of `code` starts (or resumes). Returns whether to answer `DISABLE` (only when
/// `local`, and only for code that is never recorded under this configuration).
#[inline(always)]
unsafe fn on_call(code: *mut ffi::PyObject, local: bool) -> bool {
    let Some(state) = runtime::state() else {
        return false;
    };
    if !state.recording.load(Ordering::Relaxed) {
        return false;
    }
    let py = Python::assume_gil_acquired();
    let entry = entry(py, code, state);
    if !entry.recorded {
        if local {
            Counters::add(&state.counters.disabled_locations, 1);
        }
        return local;
    }
    if let Some(rec) = recorder::wanting_calls(state) {
        calls::enter(py, state, rec, code, code, None, entry.func_id, true);
    }
    false
}

/// A frame running `code` returns or yields `value` (`exc` null) or unwinds with `exc`.
/// Returns whether to answer `DISABLE`.
#[inline(always)]
unsafe fn on_return(
    code: *mut ffi::PyObject,
    exc: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> bool {
    if let Some(rec) = recorder::existing() {
        if rec.stack.last().is_some_and(|top| top.activation == code) {
            let end = clock::now_ticks();
            let Some(state) = runtime::state() else {
                return false;
            };
            if rec.stack.last().is_some_and(|t| t.flags & SKIPPED != 0) {
                rec.pop(state, end, 0, None);
            } else if exc.is_null() {
                previews::record_return(state, rec, value);
                rec.pop(state, end, 0, None);
            } else {
                let info = exception::describe(exc, state);
                let detached = rec.hands_to_task(code, true, |a| a);
                let token = Some(exception::token(exc));
                rec.pop_raised(state, end, Some(Box::new(info)), token, detached);
            }
            return false;
        }
    }
    if !exc.is_null() {
        return false;
    }
    runtime::state()
        .is_some_and(|state| code_info::cached(code, state.generation).is_some_and(|e| !e.recorded))
}
