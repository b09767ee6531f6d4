//! The object installed beside ferrotrace's profile function on each thread.
//!
//! CPython passes a profile function's object back to it on every event, so the handle
//! carries the thread's recorder to the hook without a thread-local lookup. It is also what
//! `sys.getprofile()` returns while the hook is installed, so it is callable with the
//! `sys.setprofile` signature: code that saves and restores the profiler
//! (`sys.setprofile(sys.getprofile())`) keeps tracing, through the slower Python-level
//! path, instead of installing an object that raises on every call. Called that way it also
//! passes each event on to the profiler ferrotrace chains on the thread, if any. That
//! `__call__` is defined with the hook it feeds (`setprofile`), so this module needs only the
//! recorder.

use crate::recorder::ThreadRecorder;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyTypeInfo;

/// The recorder of the thread a handle was made on.
struct RecorderPtr(*mut ThreadRecorder);

// SAFETY: the pointer is only dereferenced by `recorder_of`, which CPython calls on the
// thread whose profile function carries this handle: the thread that made it. Moving or
// sharing the handle object itself touches no recorder.
unsafe impl Send for RecorderPtr {}
// SAFETY: as above; `__call__` (reachable from any thread) uses the calling thread's own
// recorder, never this pointer.
unsafe impl Sync for RecorderPtr {}

/// `ferrotrace._native.HookHandle`: the profile object of one thread.
#[pyclass(frozen, module = "ferrotrace._native", name = "HookHandle")]
pub struct HookHandle {
    recorder: RecorderPtr,
}

/// A new handle for the calling thread's recorder `rec` (a new reference), or null with no
/// exception set when it cannot be made.
///
/// # Safety
/// The GIL is held and `rec` is the calling thread's recorder.
pub unsafe fn new(py: Python<'_>, rec: &mut ThreadRecorder) -> *mut ffi::PyObject {
    let handle = HookHandle {
        recorder: RecorderPtr(rec),
    };
    match Bound::new(py, handle) {
        Ok(b) => b.into_ptr(),
        Err(_) => std::ptr::null_mut(),
    }
}

/// The recorder a handle carries (None for a null `obj`).
///
/// # Safety
/// The GIL is held, `obj` is null or a `HookHandle` made on the calling thread, and that
/// thread's recorder is alive: recorders are freed only after their thread exited, and a
/// thread's profile object is released before that (`PyThreadState_Clear`).
#[inline(always)]
pub unsafe fn recorder_of(obj: *mut ffi::PyObject) -> Option<&'static mut ThreadRecorder> {
    let py = Python::assume_gil_acquired();
    let handle = pyo3::Borrowed::from_ptr_or_opt(py, obj)?;
    Some(&mut *handle.downcast_unchecked::<HookHandle>().get().recorder.0)
}

/// True when `obj` is a hook handle (ferrotrace's own profile object).
///
/// # Safety
/// The GIL is held; `obj` is null or a live object.
pub unsafe fn is_handle(obj: *mut ffi::PyObject) -> bool {
    !obj.is_null()
        && ffi::Py_TYPE(obj) == HookHandle::type_object_raw(Python::assume_gil_acquired())
}
