//! The object installed beside ferrotrace's profile function on each thread.
//!
//! CPython passes a profile function's object back to it on every event, so the handle
//! carries the thread's recorder to the hook without a thread-local lookup. It is also what
//! `sys.getprofile()` returns while the hook is installed, so it is callable with the
//! `sys.setprofile` signature: code that saves and restores the profiler
//! (`sys.setprofile(sys.getprofile())`) keeps tracing, through the slower Python-level
//! path, instead of installing an object that raises on every call.

use crate::hook;
use crate::recorder::{self, ThreadRecorder};
use pyo3::ffi;
use pyo3::prelude::*;

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

#[pymethods]
impl HookHandle {
    /// Delivers a `sys.setprofile`-style event to ferrotrace's hook on the calling thread.
    /// Never raises.
    fn __call__(&self, frame: &Bound<'_, PyAny>, event: &str, arg: &Bound<'_, PyAny>) {
        let what = match event {
            "call" => ffi::PyTrace_CALL,
            "return" => ffi::PyTrace_RETURN,
            _ => return,
        };
        if let Some(rec) = recorder::existing() {
            // SAFETY: the GIL is held and `frame` is the frame the event is about; the
            // Python-level profiler passes None for a return by exception, which is then
            // recorded as a return of None.
            unsafe {
                hook::dispatch(
                    rec,
                    frame.as_ptr() as *mut ffi::PyFrameObject,
                    what,
                    arg.as_ptr(),
                )
            };
        }
    }
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
