//! The `evalframe` backend (CPython 3.10 and 3.11): a PEP 523 frame-evaluation function.
//!
//! CPython calls the interpreter's frame-evaluation function for every frame it runs: a
//! call, a generator or coroutine resumed (also by `throw()`), a module or class body. The
//! function opens a call before handing the frame to the evaluator it replaced and closes it
//! when that returns, with the returned (or yielded) value, or with the exception when it
//! returns null. So the call tree, generators, coroutines and exceptions come out as with
//! `setprofile`, and the exception type and message are known on 3.10/3.11 too.
//!
//! Why it is cheaper than a profile function: a profile function turns CPython's tracing
//! mode on, in which every bytecode instruction runs unspecialised (3.11) and every event
//! materialises a frame object; a frame-evaluation function changes neither. On 3.11 it makes
//! Python-to-Python calls recurse in C instead of being inlined in the evaluation loop, so
//! each Python call level takes C stack: `stack_guard` raises `RecursionError` rather than
//! let a deep recursion under a raised recursion limit overflow the C stack.
//!
//! Like `sys.monitoring`, the function serves the whole interpreter: it is installed while
//! at least one sampled session holds a claim, and on each frame it first checks whether the
//! calling thread wants calls (it has a session, or a process-wide session runs).
//!
//! Calls `recorder`, `capture` and `process`, and `claims` beside it; called by CPython and
//! by the backend choice (`backends`).

mod stack_guard;

use crate::backends::claims::Claims;
use crate::capture::exception::{self, ExcToken};
use crate::capture::frame_args::Frame;
use crate::process::gil_cell::GilCell;
use crate::process::runtime;
use crate::recorder::calls;
use crate::recorder::code_info;
use crate::recorder::previews;
use crate::recorder::{self, ThreadRecorder};
use ferrotrace_core::clock;
use ferrotrace_core::event::ExceptionInfo;
use pyo3::{ffi, Python};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

/// The frame an evaluation function is given: `PyFrameObject` on 3.10,
/// `_PyInterpreterFrame` on 3.11 (opaque here; read through [`Frame`]).
type RawFrame = *mut u8;

/// CPython's `_PyFrameEvalFunction`.
type EvalFunction =
    unsafe extern "C" fn(*mut ffi::PyThreadState, RawFrame, c_int) -> *mut ffi::PyObject;

extern "C" {
    fn _PyEval_EvalFrameDefault(
        tstate: *mut ffi::PyThreadState,
        frame: RawFrame,
        throw: c_int,
    ) -> *mut ffi::PyObject;
    fn _PyInterpreterState_GetEvalFrameFunc(interp: *mut ffi::PyInterpreterState) -> EvalFunction;
    fn _PyInterpreterState_SetEvalFrameFunc(
        interp: *mut ffi::PyInterpreterState,
        eval_frame: EvalFunction,
    );
}

/// The interpreter ferrotrace's function is installed on, while it is.
static INSTALLED: GilCell<Option<*mut ffi::PyInterpreterState>> = GilCell::new(None);

/// The evaluation function ferrotrace replaced (CPython's own, or another tool's), which runs
/// the frames ferrotrace is given and is put back at uninstall. It outlives `INSTALLED`: a
/// tool that replaced ferrotrace's function after it may still pass frames on to it.
static NEXT: GilCell<Option<EvalFunction>> = GilCell::new(None);

/// Sampled sessions (across all threads) holding the function installed.
pub static CLAIMS: Claims = Claims::new(switch);

/// The frame-evaluation function. Never lets a panic cross into CPython; raises only
/// `RecursionError`, when the C stack is about to run out.
///
/// # Safety
/// Called by CPython, with the GIL held, for a frame about to run on `tstate`.
unsafe extern "C" fn eval_frame(
    tstate: *mut ffi::PyThreadState,
    raw: RawFrame,
    throw: c_int,
) -> *mut ffi::PyObject {
    let next = NEXT.get().unwrap_or(_PyEval_EvalFrameDefault);
    if stack_guard::exhausted(tstate) {
        return stack_guard::refuse();
    }
    let frame = Frame::evaluated(raw);
    let opened = catch_unwind(AssertUnwindSafe(|| enter(frame, throw != 0))).unwrap_or(false);
    let result = next(tstate, raw, throw);
    if opened {
        let _ = catch_unwind(AssertUnwindSafe(|| exit(frame, result)));
    }
    result
}

/// Opens a call for `frame` when its code is recorded and the thread wants calls. Returns
/// whether a call was pushed. With `throwing` set an exception is pending (`throw()`); it is
/// set aside meanwhile and put back.
#[inline(always)]
unsafe fn enter(frame: Frame, throwing: bool) -> bool {
    let Some(state) = runtime::state() else {
        return false;
    };
    if !state.recording.load(Ordering::Relaxed) {
        return false;
    }
    let Some(rec) = recorder::wanting_calls(state) else {
        return false;
    };
    if creates_generator(frame) {
        return false;
    }
    if throwing {
        return with_error_aside(|_, _| open(state, rec, frame));
    }
    open(state, rec, frame)
}

/// True when `frame` only creates its generator, coroutine or async generator: on 3.11 that
/// runs the frame up to `RETURN_GENERATOR` (a profile function sees no call there). Its
/// resumptions are evaluated from a frame the generator owns. The fields read are
/// `co_flags` at offset 48 of `PyCodeObject` and `owner` at offset 69 of
/// `_PyInterpreterFrame` (3.11 `cpython/code.h`, `internal/pycore_frame.h`).
///
/// # Safety
/// `frame` is live.
#[cfg(Py_3_11)]
#[inline(always)]
unsafe fn creates_generator(frame: Frame) -> bool {
    const GENERATOR_FLAGS: c_int = 0x20 | 0x80 | 0x200;
    const OWNED_BY_THREAD: u8 = 0;
    let flags = *((frame.code() as *const u8).add(48) as *const c_int);
    flags & GENERATOR_FLAGS != 0 && *(frame.address() as *const u8).add(69) == OWNED_BY_THREAD
}

/// 3.10 creates generators without evaluating their frame.
#[cfg(not(Py_3_11))]
#[inline(always)]
unsafe fn creates_generator(_frame: Frame) -> bool {
    false
}

/// Opens the call (no exception is set). Returns whether a call was pushed.
#[inline(always)]
unsafe fn open(state: &runtime::HookState, rec: &mut ThreadRecorder, frame: Frame) -> bool {
    let py = Python::assume_gil_acquired();
    let code = frame.code();
    let entry = code_info::cached_or_decided(py, Some(frame), code, state);
    if !entry.recorded {
        return false;
    }
    let depth = rec.stack.len();
    calls::enter(
        py,
        state,
        rec,
        frame.address(),
        code,
        Some(frame),
        entry.func_id,
        false,
    );
    rec.stack.len() > depth
}

/// Closes the call opened for `frame`, which returned or yielded `result` (null: it raised).
#[inline(always)]
unsafe fn exit(frame: Frame, result: *mut ffi::PyObject) {
    let Some(rec) = recorder::existing() else {
        return;
    };
    if rec
        .stack
        .last()
        .is_none_or(|top| top.activation != frame.address())
    {
        return;
    }
    let end = clock::now_ticks();
    let Some(state) = runtime::state() else {
        return;
    };
    if result.is_null() {
        let (info, token, detached) = raised(state, rec, frame);
        rec.pop_raised(state, end, info.map(Box::new), token, detached);
    } else {
        previews::record_return(state, rec, result);
        rec.pop(state, end, 0, None);
    }
}

/// The exception being raised out of `frame` (the top call of `rec`), described without
/// running user code, its token, and whether it goes to an asyncio task; it stays set.
#[cold]
unsafe fn raised(
    state: &runtime::HookState,
    rec: &ThreadRecorder,
    frame: Frame,
) -> (Option<ExceptionInfo>, Option<ExcToken>, bool) {
    with_error_aside(|ty, value| {
        let detached = rec.hands_to_task(frame.code(), true, |a| {
            Frame::evaluated(a as RawFrame).code()
        });
        if !value.is_null() && ffi::PyExceptionInstance_Check(value) != 0 {
            let info = exception::describe(value, state);
            (Some(info), Some(exception::token(value)), detached)
        } else if !ty.is_null() && ffi::PyType_Check(ty) != 0 {
            let info = exception::describe_unnormalized(ty, value, state);
            let token = exception::token_unnormalized(ty, value);
            (Some(info), Some(token), detached)
        } else {
            (None, None, detached)
        }
    })
}

/// Runs `f` with the pending exception (its type and value, either may be null) set aside,
/// then sets it again: `f` may call the C API, which expects no exception set.
///
/// # Safety
/// The GIL is held.
unsafe fn with_error_aside<R>(f: impl FnOnce(*mut ffi::PyObject, *mut ffi::PyObject) -> R) -> R {
    let (mut ty, mut value, mut tb) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    ffi::PyErr_Fetch(&mut ty, &mut value, &mut tb);
    let result = f(ty, value);
    ffi::PyErr_Restore(ty, value, tb);
    result
}

/// Installs the function on the calling thread's interpreter, in front of the one there.
///
/// # Safety
/// The GIL is held.
unsafe fn install() {
    let slot = INSTALLED.get();
    if slot.is_some() {
        return;
    }
    let interp = ffi::PyInterpreterState_Get();
    let next = _PyInterpreterState_GetEvalFrameFunc(interp);
    if next as usize == eval_frame as EvalFunction as usize {
        return;
    }
    *NEXT.get() = Some(next);
    *slot = Some(interp);
    _PyInterpreterState_SetEvalFrameFunc(interp, eval_frame);
}

/// Puts back the function ferrotrace replaced, unless another tool has replaced ferrotrace's
/// since (then frames keep coming here, and are only passed on).
///
/// # Safety
/// The GIL is held.
unsafe fn uninstall() {
    let (Some(interp), Some(next)) = (INSTALLED.get().take(), *NEXT.get()) else {
        return;
    };
    if _PyInterpreterState_GetEvalFrameFunc(interp) as usize == eval_frame as EvalFunction as usize
    {
        _PyInterpreterState_SetEvalFrameFunc(interp, next);
    }
}

/// Installs the function (`on`) or puts back the one it replaced.
///
/// # Safety
/// The GIL is held.
unsafe fn switch(on: bool) {
    if on {
        install();
    } else {
        uninstall();
    }
}
