//! Reads the exception that is leaving a frame, without running user code.

use ferrotrace_core::event::ExceptionInfo;
use pyo3::ffi;
use std::ffi::CStr;

/// The head of CPython's `PyTracebackObject` (cpython/traceback.h, unchanged 3.10–3.13).
#[repr(C)]
struct Traceback {
    ob_base: ffi::PyObject,
    tb_next: *mut Traceback,
    tb_frame: *mut ffi::PyFrameObject,
}

/// Type name and bounded message of an exception object (no user code runs).
///
/// # Safety
/// The GIL is held and `exc` is a live exception instance.
pub unsafe fn describe(exc: *mut ffi::PyObject, max_chars: usize) -> ExceptionInfo {
    ExceptionInfo {
        type_name: type_name(ffi::Py_TYPE(exc)),
        message: message(exc, max_chars),
    }
}

/// The exception being handled (`sys.exc_info()[1]`), when its traceback passes through
/// `frame`: proof that it is the exception that left that frame. A new reference or null.
///
/// # Safety
/// The GIL is held.
#[allow(deprecated)]
pub unsafe fn handled_through(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyObject {
    let (mut ty, mut value, mut tb) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    ffi::PyErr_GetExcInfo(&mut ty, &mut value, &mut tb);
    ffi::Py_XDECREF(ty);
    let mut found = false;
    let mut cur = tb;
    while !cur.is_null() && ffi::PyTraceBack_Check(cur) != 0 {
        // SAFETY: a traceback object is laid out as `Traceback` on every supported version.
        let t = cur as *mut Traceback;
        if (*t).tb_frame == frame {
            found = true;
            break;
        }
        cur = (*t).tb_next as *mut ffi::PyObject;
    }
    ffi::Py_XDECREF(tb);
    if found && !value.is_null() && value != ffi::Py_None() {
        value
    } else {
        ffi::Py_XDECREF(value);
        std::ptr::null_mut()
    }
}

unsafe fn type_name(ty: *mut ffi::PyTypeObject) -> String {
    // SAFETY: tp_name is a NUL-terminated string owned by the type object.
    let name = CStr::from_ptr((*ty).tp_name).to_string_lossy().into_owned();
    if name.contains('.') {
        return name;
    }
    let module = ffi::PyObject_GetAttrString(ty as *mut ffi::PyObject, c"__module__".as_ptr());
    let qualified = if !module.is_null() && ffi::PyUnicode_CheckExact(module) != 0 {
        let m = exact_str(module);
        if m == "builtins" || m.is_empty() {
            name
        } else {
            format!("{m}.{name}")
        }
    } else {
        name
    };
    ffi::Py_XDECREF(module);
    ffi::PyErr_Clear();
    qualified
}

unsafe fn exact_str(obj: *mut ffi::PyObject) -> String {
    let mut len: ffi::Py_ssize_t = 0;
    let p = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
    if p.is_null() {
        ffi::PyErr_Clear();
        return String::new();
    }
    // SAFETY: CPython returned `len` valid UTF-8 bytes at `p`.
    String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len as usize)).into_owned()
}

unsafe fn message(value: *mut ffi::PyObject, max_chars: usize) -> String {
    if value.is_null() {
        return String::new();
    }
    let text = if ffi::PyUnicode_CheckExact(value) != 0 {
        exact_str(value)
    } else if ffi::PyExceptionInstance_Check(value) != 0 {
        // SAFETY: an exception instance is laid out as PyBaseExceptionObject.
        let args = (*(value as *mut ffi::PyBaseExceptionObject)).args;
        if !args.is_null() && ffi::PyTuple_CheckExact(args) != 0 && ffi::PyTuple_GET_SIZE(args) >= 1
        {
            let first = ffi::PyTuple_GET_ITEM(args, 0);
            if ffi::PyUnicode_CheckExact(first) != 0 {
                exact_str(first)
            } else {
                String::new()
            }
        } else {
            String::new()
        }
    } else {
        String::new()
    };
    truncate_chars(text, max_chars)
}

/// Cuts `text` to at most `max` characters on a character boundary, marking the cut.
pub fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => {
            let total = text.chars().count();
            format!("{}…[+{} chars]", &text[..i], total - max)
        }
        None => text,
    }
}
