//! Reads, chains and restores the profiler that was installed before ours.
//!
//! CPython keeps one profile function per thread: a C function and its object
//! (`tstate->c_profilefunc` / `c_profileobj`, set by `PyEval_SetProfile`). cProfile (before
//! 3.12) installs its C callback with the profiler as the object; `sys.setprofile(fn)`
//! installs CPython's trampoline with `fn` as the object. `PyEval_SetProfile` has no getter
//! for the C function, so ferrotrace reads both words from the thread state at the offsets
//! the CPython headers give for each supported version (3.10: 56/72, 3.11 and 3.12: 64/80,
//! 3.13: 80/96). Before trusting them it checks the object slot against `sys.getprofile()`;
//! if that does not match, ferrotrace reports the profiler as unreadable rather than guess.
//!
//! On 3.10 and 3.11 ferrotrace also *writes* the slot itself ([`set`]): `PyEval_SetProfile`
//! there holds a process-wide "being installed" flag while it runs the `sys.setprofile`
//! audit hooks, and a Python audit hook (CPython's own test runner has one) can switch
//! threads inside that window, so that any other thread's `sys.setprofile` at that moment
//! fails with "Cannot install a profile function while another profile function is being
//! installed" (a new thread dies before its target runs). Writing the slot as
//! `PyEval_SetProfile` does, without that flag or the audit call, never makes a program's own
//! `sys.setprofile` fail.

use crate::backends::setprofile::hook_handle;
use crate::recorder::SavedProfiler;
use pyo3::ffi;
use std::os::raw::c_void;

#[cfg(not(Py_3_11))]
const OFFSETS: (usize, usize) = (56, 72);
#[cfg(all(Py_3_11, not(Py_3_13)))]
const OFFSETS: (usize, usize) = (64, 80);
#[cfg(Py_3_13)]
const OFFSETS: (usize, usize) = (80, 96);

/// Offsets in `PyThreadState` of `tracing` (int), `cframe` (pointer to the `CFrame` whose
/// first field is `use_tracing`) and `c_tracefunc`, from the CPython headers.
#[cfg(not(Py_3_11))]
const TRACING_OFFSETS: (usize, usize, usize) = (44, 48, 64);
#[cfg(all(Py_3_11, not(Py_3_12)))]
const TRACING_OFFSETS: (usize, usize, usize) = (44, 56, 72);

/// The calling thread's profile function and its object (borrowed), as stored.
///
/// # Safety
/// The GIL is held.
unsafe fn slot() -> (*const c_void, *mut ffi::PyObject) {
    let tstate = ffi::PyThreadState_Get() as *const u8;
    // SAFETY: the offsets lie inside PyThreadState for this interpreter version (checked
    // against the headers), and the thread state lives as long as the thread.
    (
        *(tstate.add(OFFSETS.0) as *const *const c_void),
        *(tstate.add(OFFSETS.1) as *const *mut ffi::PyObject),
    )
}

/// The calling thread's profiler object (borrowed; null when it has none or only a C
/// function without one).
///
/// # Safety
/// The GIL is held.
pub unsafe fn current_object() -> *mut ffi::PyObject {
    slot().1
}

/// True when the calling thread has a profile function.
///
/// # Safety
/// The GIL is held.
pub unsafe fn any_installed() -> bool {
    !slot().0.is_null()
}

/// Reads the current thread's profiler, or None when its layout cannot be verified.
/// A profiler whose object is one of ferrotrace's hook handles (`sys.setprofile(handle)`)
/// is ferrotrace itself, and reads as no profiler.
///
/// # Safety
/// The GIL is held.
pub unsafe fn save() -> Option<SavedProfiler> {
    let (func_word, obj) = slot();
    let sys_obj = current_profile_object();
    let expected = if sys_obj == ffi::Py_None() {
        std::ptr::null_mut()
    } else {
        sys_obj
    };
    ffi::Py_XDECREF(sys_obj);
    if obj != expected {
        return None;
    }
    if func_word.is_null() || hook_handle::is_handle(obj) {
        return Some(SavedProfiler::NONE);
    }
    ffi::Py_XINCREF(obj);
    // SAFETY: the slot holds either null or the profiler's C function pointer.
    let func: Option<ffi::Py_tracefunc> =
        std::mem::transmute::<*const c_void, Option<ffi::Py_tracefunc>>(func_word);
    Some(SavedProfiler { func, obj })
}

/// `sys.getprofile()` as a new reference (None on any failure).
unsafe fn current_profile_object() -> *mut ffi::PyObject {
    let sys = ffi::PyImport_ImportModule(c"sys".as_ptr());
    if sys.is_null() {
        ffi::PyErr_Clear();
        ffi::Py_IncRef(ffi::Py_None());
        return ffi::Py_None();
    }
    let r = ffi::PyObject_CallMethod(sys, c"getprofile".as_ptr(), std::ptr::null());
    ffi::Py_DECREF(sys);
    if r.is_null() {
        ffi::PyErr_Clear();
        ffi::Py_IncRef(ffi::Py_None());
        return ffi::Py_None();
    }
    r
}

/// True when the current thread's profile function is `hook`.
///
/// # Safety
/// The GIL is held.
pub unsafe fn is_installed(hook: ffi::Py_tracefunc) -> bool {
    slot().0 == hook as *const c_void
}

/// Puts a saved profiler back on the current thread (or none when nothing was saved).
///
/// # Safety
/// The GIL is held.
pub unsafe fn restore(saved: Option<SavedProfiler>) {
    match saved {
        Some(s) => {
            set(s.func, s.obj);
            ffi::Py_XDECREF(s.obj);
        }
        None => set(None, std::ptr::null_mut()),
    }
}

/// Makes `func` with `obj` (borrowed; the thread keeps its own reference) the calling
/// thread's profile function, as `PyEval_SetProfile` does.
///
/// # Safety
/// The GIL is held; `obj` is null or a live object.
#[cfg(Py_3_12)]
pub unsafe fn set(func: Option<ffi::Py_tracefunc>, obj: *mut ffi::PyObject) {
    ffi::PyEval_SetProfile(func, obj);
}

/// Makes `func` with `obj` (borrowed; the thread keeps its own reference) the calling
/// thread's profile function: `_PyEval_SetProfile` of 3.10/3.11 without its process-wide
/// reentrancy flag and audit event (see the module comment).
///
/// # Safety
/// The GIL is held; `obj` is null or a live object.
#[cfg(not(Py_3_12))]
pub unsafe fn set(func: Option<ffi::Py_tracefunc>, obj: *mut ffi::PyObject) {
    let tstate = ffi::PyThreadState_Get() as *mut u8;
    let (tracing_at, cframe_at, tracefunc_at) = TRACING_OFFSETS;
    // SAFETY: every offset lies inside this version's PyThreadState (checked against the
    // headers and `_PyEval_SetProfile`'s own code); the thread state and its current CFrame
    // live as long as the thread runs, and the GIL serialises every writer of these fields.
    let func_slot = tstate.add(OFFSETS.0) as *mut Option<ffi::Py_tracefunc>;
    let obj_slot = tstate.add(OFFSETS.1) as *mut *mut ffi::PyObject;
    let old = *obj_slot;
    ffi::Py_XINCREF(obj);
    *obj_slot = obj;
    *func_slot = func;
    let profiling =
        func.is_some() || !(*(tstate.add(tracefunc_at) as *const *const c_void)).is_null();
    let cframe = *(tstate.add(cframe_at) as *const *mut u8);
    #[cfg(not(Py_3_11))]
    {
        // 3.10: `cframe->use_tracing` is an int, set whenever a profile or trace function is.
        let _ = tracing_at;
        *(cframe as *mut i32) = i32::from(profiling);
    }
    #[cfg(Py_3_11)]
    {
        // 3.11: a byte, 255 when a function is set and the thread is not inside one.
        let tracing = *(tstate.add(tracing_at) as *const i32);
        *cframe = if tracing == 0 && profiling { 255 } else { 0 };
    }
    // Last, as CPython does: freeing the old object may run arbitrary code.
    ffi::Py_XDECREF(old);
}
