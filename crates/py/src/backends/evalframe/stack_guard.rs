//! Keeps a deep recursion from overflowing the C stack under the `evalframe` backend.
//!
//! With a frame-evaluation function installed, each Python call level also takes C stack
//! (on 3.11, where CPython otherwise runs Python-to-Python calls without C recursion, and
//! more of it on 3.10). A program that raised its recursion limit could then reach the end
//! of its thread's stack before the limit: instead of letting it crash, the frame is refused
//! with `RecursionError`, as CPython refuses one past the limit. The stack is only measured
//! past [`CHECKED_FROM_DEPTH`] Python frames, so ordinary calls pay one comparison.

use pyo3::ffi;
use std::cell::Cell;
use std::os::raw::c_int;

/// Python depth from which the remaining C stack is measured.
const CHECKED_FROM_DEPTH: c_int = 100;

/// C stack kept free below the deepest frame let in (at most a quarter of the stack).
const MARGIN: usize = 256 << 10;

thread_local! {
    /// The lowest stack address a frame may start below, once measured (0: not yet; 1: the
    /// stack bounds are unknown, nothing is refused).
    static LOWEST: Cell<usize> = const { Cell::new(0) };
}

/// The Python call depth of `tstate`: `recursion_depth` on 3.10 (offset 32), the recursion
/// limit minus `recursion_remaining` on 3.11 (offsets 36 and 32), from `cpython/pystate.h`.
///
/// # Safety
/// `tstate` is the live thread state of the calling thread.
#[inline(always)]
unsafe fn python_depth(tstate: *mut ffi::PyThreadState) -> c_int {
    let fields = tstate as *const u8;
    #[cfg(Py_3_11)]
    {
        *(fields.add(36) as *const c_int) - *(fields.add(32) as *const c_int)
    }
    #[cfg(not(Py_3_11))]
    {
        *(fields.add(32) as *const c_int)
    }
}

/// True when a frame entered now on `tstate` could overflow the C stack.
///
/// # Safety
/// `tstate` is the live thread state of the calling thread.
#[inline(always)]
pub unsafe fn exhausted(tstate: *mut ffi::PyThreadState) -> bool {
    python_depth(tstate) >= CHECKED_FROM_DEPTH && below_lowest()
}

/// True when the stack pointer is below the thread's lowest allowed address.
#[cold]
#[inline(never)]
fn below_lowest() -> bool {
    let marker = 0u8;
    let sp = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    let lowest = LOWEST.with(|l| {
        if l.get() == 0 {
            l.set(measure().unwrap_or(1));
        }
        l.get()
    });
    sp < lowest
}

/// The calling thread's stack bottom plus the margin.
#[cfg(target_os = "linux")]
fn measure() -> Option<usize> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread, which is destroyed
    // after its stack bounds are read.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| addr as usize + MARGIN.min(size / 4))
    }
}

/// The calling thread's stack bottom plus the margin.
#[cfg(target_os = "macos")]
fn measure() -> Option<usize> {
    // SAFETY: both calls only read the calling thread's own stack bounds.
    unsafe {
        let top = libc::pthread_get_stackaddr_np(libc::pthread_self()) as usize;
        let size = libc::pthread_get_stacksize_np(libc::pthread_self());
        Some(top - size + MARGIN.min(size / 4))
    }
}

/// Stack bounds are not read on this platform: nothing is refused.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn measure() -> Option<usize> {
    None
}

/// Sets `RecursionError` for the refused frame and returns null, the evaluation result
/// CPython expects with it.
///
/// # Safety
/// The GIL is held.
#[cold]
pub unsafe fn refuse() -> *mut ffi::PyObject {
    ffi::PyErr_SetString(
        ffi::PyExc_RecursionError,
        c"maximum recursion depth exceeded: the C stack is nearly used up (ferrotrace's \
evalframe backend makes each Python call use C stack; FERROTRACE_BACKEND=setprofile does not)"
            .as_ptr(),
    );
    std::ptr::null_mut()
}
