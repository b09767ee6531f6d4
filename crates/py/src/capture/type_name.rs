//! Type names read from the type object itself, never through attribute lookup (a metaclass
//! `__getattribute__` could run user code).

use pyo3::ffi;
use std::borrow::Cow;
use std::ffi::CStr;

/// `module.QualName` of a type (`ValueError`, `myapp.models.User`, `myapp.Outer.Inner`);
/// built-in types have no module prefix.
///
/// Heap types (classes defined in Python) give `ht_qualname` and the `__module__` entry of
/// their own dictionary; static types give `tp_name`, which is already qualified.
///
/// # Safety
/// The GIL is held and `ty` is a live type object.
pub unsafe fn qualified(ty: *mut ffi::PyTypeObject) -> String {
    if ffi::PyType_HasFeature(ty, ffi::Py_TPFLAGS_HEAPTYPE) == 0 {
        return short(ty).into_owned();
    }
    // SAFETY: a heap type is laid out as PyHeapTypeObject.
    let heap = ty as *mut ffi::PyHeapTypeObject;
    let qualname = exact_text((*heap).ht_qualname).unwrap_or_else(|| short(ty).into_owned());
    let dict = (*ty).tp_dict;
    if dict.is_null() || ffi::PyDict_CheckExact(dict) == 0 {
        return qualname;
    }
    // SAFETY: PyDict_GetItemString on an exact dict with a str key runs no user code (str
    // hashing and comparison are built in); the result is borrowed.
    let module = ffi::PyDict_GetItemString(dict, c"__module__".as_ptr());
    match exact_text(module) {
        Some(m) if m != "builtins" && !m.is_empty() => format!("{m}.{qualname}"),
        _ => qualname,
    }
}

/// The type's `tp_name` (for heap types the bare class name).
///
/// # Safety
/// `ty` is a live type object.
pub unsafe fn short<'a>(ty: *mut ffi::PyTypeObject) -> Cow<'a, str> {
    // SAFETY: tp_name is a NUL-terminated string that lives as long as the type.
    CStr::from_ptr((*ty).tp_name).to_string_lossy()
}

/// The text of an exact `str` object (null or anything else gives None).
///
/// # Safety
/// The GIL is held; `obj` is null or a live object.
pub unsafe fn exact_text(obj: *mut ffi::PyObject) -> Option<String> {
    if obj.is_null() || ffi::PyUnicode_CheckExact(obj) == 0 {
        return None;
    }
    let mut len: ffi::Py_ssize_t = 0;
    let p = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
    if p.is_null() {
        ffi::PyErr_Clear();
        return None;
    }
    // SAFETY: CPython returned `len` valid UTF-8 bytes at `p`, owned by `obj`.
    Some(
        String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len as usize))
            .into_owned(),
    )
}
