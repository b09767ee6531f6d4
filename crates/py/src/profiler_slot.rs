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

use pyo3::ffi;
use std::os::raw::c_void;

#[cfg(not(Py_3_11))]
const OFFSETS: (usize, usize) = (56, 72);
#[cfg(all(Py_3_11, not(Py_3_13)))]
const OFFSETS: (usize, usize) = (64, 80);
#[cfg(Py_3_13)]
const OFFSETS: (usize, usize) = (80, 96);

/// A profiler that was installed on a thread before ferrotrace's hook.
pub struct SavedProfiler {
    /// The C profile function (None when the thread had no profiler).
    pub func: Option<ffi::Py_tracefunc>,
    /// Its object, a strong reference (or null).
    pub obj: *mut ffi::PyObject,
}

impl SavedProfiler {
    /// No profiler.
    pub const NONE: SavedProfiler = SavedProfiler {
        func: None,
        obj: std::ptr::null_mut(),
    };

    /// Releases the reference to the profiler's object without putting it back.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn forget(self) {
        ffi::Py_XDECREF(self.obj);
    }
}

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
    if func_word.is_null() || crate::hook_handle::is_handle(obj) {
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
            ffi::PyEval_SetProfile(s.func, s.obj);
            ffi::Py_XDECREF(s.obj);
        }
        None => ffi::PyEval_SetProfile(None, std::ptr::null_mut()),
    }
}
