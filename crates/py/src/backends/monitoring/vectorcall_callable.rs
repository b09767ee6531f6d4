//! Callables that CPython calls straight through their own vectorcall function: the
//! `sys.monitoring` callbacks.
//!
//! `sys.monitoring` invokes a callback through vectorcall. A builtin function object adds
//! a layer there (`cfunction_vectorcall_FASTCALL`: keyword check, recursion guard, lookup
//! of `self`) that cost 38 interpreter instructions per event on 3.12, two events per call.
//! An object whose type stores the vectorcall pointer in the instance is called with one
//! indirect jump instead.

use crate::process::gil_cell::GilCell;
use pyo3::prelude::*;
use pyo3::{ffi, Python};
use std::os::raw::{c_int, c_uint, c_void};

/// An instance: the object header and the function CPython calls.
#[repr(C)]
struct Callable {
    ob_base: ffi::PyObject,
    call: ffi::vectorcallfunc,
}

/// The heap type of [`Callable`], made on first use and kept for the process.
static TYPE: GilCell<*mut ffi::PyObject> = GilCell::new(std::ptr::null_mut());

/// The type, created the first time.
///
/// # Safety
/// The GIL is held.
unsafe fn callable_type(py: Python<'_>) -> PyResult<*mut ffi::PyObject> {
    let tp = TYPE.get();
    if !tp.is_null() {
        return Ok(*tp);
    }
    // Leaked: the type refers to its spec's members and slots for as long as it lives.
    let members: &'static mut [ffi::PyMemberDef; 2] = Box::leak(Box::new([
        ffi::PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: std::mem::offset_of!(Callable, call) as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: std::ptr::null(),
        },
        std::mem::zeroed(),
    ]));
    let slots: &'static mut [ffi::PyType_Slot; 4] = Box::leak(Box::new([
        ffi::PyType_Slot {
            slot: ffi::Py_tp_call,
            pfunc: ffi::PyVectorcall_Call as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_members,
            pfunc: members.as_mut_ptr() as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_doc,
            pfunc: c"A sys.monitoring callback of ferrotrace.".as_ptr() as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: 0,
            pfunc: std::ptr::null_mut(),
        },
    ]));
    // No instances from Python: one without a function pointer must never exist.
    let flags = ffi::Py_TPFLAGS_DEFAULT
        | ffi::Py_TPFLAGS_HAVE_VECTORCALL
        | ffi::Py_TPFLAGS_IMMUTABLETYPE
        | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION;
    let spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"ferrotrace._native.MonitoringCallback".as_ptr(),
        basicsize: std::mem::size_of::<Callable>() as c_int,
        itemsize: 0,
        flags: flags as c_uint,
        slots: slots.as_mut_ptr(),
    }));
    let made = ffi::PyType_FromSpec(spec);
    if made.is_null() {
        return Err(PyErr::fetch(py));
    }
    *tp = made;
    Ok(made)
}

/// A new callable that CPython calls as `call(self, args, nargsf, kwnames)`.
pub fn new(py: Python<'_>, call: ffi::vectorcallfunc) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: the GIL is held (`py`); the object is allocated by the type's own allocator with
    // the type's basic size, so `call` lies inside it, and it is filled in before anyone can
    // see the object.
    unsafe {
        let tp = callable_type(py)? as *mut ffi::PyTypeObject;
        let obj = ffi::PyType_GenericAlloc(tp, 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        (*(obj as *mut Callable)).call = call;
        Ok(Bound::from_owned_ptr(py, obj))
    }
}
