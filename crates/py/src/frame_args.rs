//! Reading a call's argument values from its frame at the call event.
//!
//! The values are read straight from the frame's fast locals, never through
//! `PyFrame_GetLocals`/`f_locals` (which builds a dict, or on 3.13 a proxy, per call):
//! - 3.10: the profile hook's `PyFrameObject` holds `f_localsplus` (a captured argument
//!   lives only in its cell, after the locals).
//! - 3.11–3.13: `PyFrameObject.f_frame` points to the `_PyInterpreterFrame`, whose
//!   `localsplus` array sits at byte offset 72 on every one of these versions (x86_64);
//!   arguments come first, in `co_varnames` order. The `sys.monitoring` backend gets the
//!   frame from `PyEval_GetFrame()`, which materialises a frame object the first time a
//!   frame is asked for (one small allocation, about 40 ns; measured as part of the
//!   `ft-args` benchmark), then costs a pointer read.

use crate::code_info::ArgSlot;
use pyo3::ffi;

#[cfg(Py_3_11)]
/// The head of `PyFrameObject` on 3.11–3.13 (cpython/internal/pycore_frame.h).
#[repr(C)]
struct FrameHead {
    ob_base: ffi::PyObject,
    f_back: *mut ffi::PyFrameObject,
    f_frame: *mut u8,
}

#[cfg(Py_3_11)]
/// Byte offset of `localsplus` in `_PyInterpreterFrame` (3.11, 3.12 and 3.13: eight
/// pointers, then an int, a bool/uint16 and a char, padded to 8).
const LOCALSPLUS_OFFSET: usize = 72;

extern "C" {
    static mut PyCell_Type: ffi::PyTypeObject;
}

/// The current value of the argument described by `arg` in `frame` (borrowed), or null
/// when it is unset.
///
/// # Safety
/// The GIL is held; `frame` is the live frame of the code object `arg` was built from, at
/// its call event (arguments are bound, no bytecode has rebound them yet).
pub unsafe fn value(frame: *mut ffi::PyFrameObject, arg: &ArgSlot) -> *mut ffi::PyObject {
    let v = slot(frame, arg.slot);
    if arg.cell && !v.is_null() && ffi::Py_TYPE(v) == std::ptr::addr_of_mut!(PyCell_Type) {
        // SAFETY: a cell object's first field after the header is its content.
        return *(v.add(1) as *mut *mut ffi::PyObject);
    }
    v
}

#[cfg(not(Py_3_11))]
unsafe fn slot(frame: *mut ffi::PyFrameObject, i: usize) -> *mut ffi::PyObject {
    // SAFETY: `i` indexes the frame's locals or cells (from the code object's counts).
    *(*frame).f_localsplus.as_ptr().add(i)
}

#[cfg(Py_3_11)]
unsafe fn slot(frame: *mut ffi::PyFrameObject, i: usize) -> *mut ffi::PyObject {
    // SAFETY: layout of PyFrameObject/_PyInterpreterFrame on 3.11–3.13, see the module docs;
    // `i` indexes the arguments, which come first in localsplus.
    let interp = (*(frame as *mut FrameHead)).f_frame;
    if interp.is_null() {
        return std::ptr::null_mut();
    }
    *(interp.add(LOCALSPLUS_OFFSET) as *mut *mut ffi::PyObject).add(i)
}
