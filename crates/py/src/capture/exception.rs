//! Reads the exception that is leaving a frame, without running user code.

use crate::capture::preview;
use crate::capture::type_name;
use crate::process::runtime::HookState;
use ferrotrace_core::event::ExceptionInfo;
use ferrotrace_core::preview::{bounded_text, REDACTION_SLACK};
use pyo3::ffi;

/// The head of CPython's `PyTracebackObject` (cpython/traceback.h, unchanged 3.10–3.13).
#[repr(C)]
struct Traceback {
    ob_base: ffi::PyObject,
    tb_next: *mut Traceback,
    tb_frame: *mut ffi::PyFrameObject,
}

/// Type name and bounded, redacted message of an exception object (no user code runs).
///
/// # Safety
/// The GIL is held and `exc` is a live exception instance.
pub unsafe fn describe(exc: *mut ffi::PyObject, state: &HookState) -> ExceptionInfo {
    ExceptionInfo {
        type_name: type_name::qualified(ffi::Py_TYPE(exc)),
        message: message(exc, state),
        ..Default::default()
    }
}

/// Type name and bounded, redacted message of an exception raised as a type and a value
/// not yet made into an instance (`PyErr_SetString` and the like leave it so on 3.10/3.11).
///
/// # Safety
/// The GIL is held; `ty` is a live type object and `value` null or a live object.
#[cfg(not(Py_3_12))]
pub unsafe fn describe_unnormalized(
    ty: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    state: &HookState,
) -> ExceptionInfo {
    ExceptionInfo {
        type_name: type_name::qualified(ty as *mut ffi::PyTypeObject),
        message: message(value, state),
        ..Default::default()
    }
}

/// The exception being handled (`sys.exc_info()[1]`), when its traceback passes through
/// `frame`: proof that it is the exception that left that frame. A new reference or null.
///
/// # Safety
/// The GIL is held.
pub unsafe fn handled_through(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyObject {
    let (ty, value, tb) = exc_info();
    ffi::Py_XDECREF(ty);
    let found = traceback_passes(tb, frame);
    ffi::Py_XDECREF(tb);
    if found && !value.is_null() && value != ffi::Py_None() {
        value
    } else {
        ffi::Py_XDECREF(value);
        std::ptr::null_mut()
    }
}

/// The exception that ended the program (`sys.last_value`, set when the interpreter printed
/// it), when its traceback passes through `frame`. A new reference or null.
///
/// # Safety
/// The GIL is held.
pub unsafe fn escaped_through(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyObject {
    let value = ffi::PySys_GetObject(c"last_value".as_ptr());
    if value.is_null() || ffi::PyExceptionInstance_Check(value) == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: an exception instance is laid out as PyBaseExceptionObject.
    let tb = (*(value as *mut ffi::PyBaseExceptionObject)).traceback;
    if traceback_passes(tb, frame) {
        ffi::Py_INCREF(value);
        value
    } else {
        std::ptr::null_mut()
    }
}

/// True when the traceback `tb` (borrowed; null or any object) has an entry for `frame`.
///
/// # Safety
/// The GIL is held.
pub unsafe fn traceback_passes(tb: *mut ffi::PyObject, frame: *mut ffi::PyFrameObject) -> bool {
    let mut cur = tb;
    while !cur.is_null() && ffi::PyTraceBack_Check(cur) != 0 {
        // SAFETY: a traceback object is laid out as `Traceback` on every supported version.
        let t = cur as *mut Traceback;
        if (*t).tb_frame == frame {
            return true;
        }
        cur = (*t).tb_next as *mut ffi::PyObject;
    }
    false
}

/// The first argument of the exception when it is a string (`str(exc)` could run user
/// code), redacted by value and cut to `FERROTRACE_MAX_STR` characters.
unsafe fn message(value: *mut ffi::PyObject, state: &HookState) -> String {
    if value.is_null() {
        return String::new();
    }
    let text = if ffi::PyUnicode_Check(value) != 0 {
        value
    } else if ffi::PyExceptionInstance_Check(value) != 0 {
        // SAFETY: an exception instance is laid out as PyBaseExceptionObject.
        let args = (*(value as *mut ffi::PyBaseExceptionObject)).args;
        if !args.is_null() && ffi::PyTuple_Check(args) != 0 && ffi::PyTuple_GET_SIZE(args) >= 1 {
            ffi::PyTuple_GET_ITEM(args, 0)
        } else {
            return String::new();
        }
    } else {
        return String::new();
    };
    if ffi::PyUnicode_Check(text) == 0 {
        return String::new();
    }
    let max = state.limits.max_str;
    match preview::read_str(text, max + REDACTION_SLACK) {
        Some((s, total)) => bounded_text(&state.redactor, &s, total, max),
        None => String::new(),
    }
}

/// A cheap identity of an exception in flight, taken where it leaves a frame; it holds no
/// reference, so the exception is never kept alive (its addresses are only compared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExcToken {
    /// The exception instance, or the raw value of one not yet normalized.
    ptr: usize,
    /// Its type.
    ty: usize,
    /// For an instance: its single argument (or its argument tuple), which is what an
    /// unnormalized value becomes once CPython makes the instance out of it.
    alt: usize,
}

impl ExcToken {
    /// Whether both tokens name the same exception: the same object, or an unnormalized
    /// value and the instance CPython made of it (same type, the value is its argument).
    pub fn same(self, other: ExcToken) -> bool {
        self.ptr == other.ptr
            || (self.ty == other.ty && (self.ptr == other.alt || self.alt == other.ptr))
    }
}

/// The token of the exception instance `exc`.
///
/// # Safety
/// The GIL is held and `exc` is a live exception instance.
pub unsafe fn token(exc: *mut ffi::PyObject) -> ExcToken {
    // SAFETY: an exception instance is laid out as PyBaseExceptionObject.
    let args = (*(exc as *mut ffi::PyBaseExceptionObject)).args;
    let alt =
        if !args.is_null() && ffi::PyTuple_Check(args) != 0 && ffi::PyTuple_GET_SIZE(args) == 1 {
            ffi::PyTuple_GET_ITEM(args, 0) as usize
        } else {
            args as usize
        };
    ExcToken {
        ptr: exc as usize,
        ty: ffi::Py_TYPE(exc) as usize,
        alt,
    }
}

/// The token of an exception raised as a type and a raw value (null or any object), or of
/// the instance when `value` already is one.
///
/// # Safety
/// The GIL is held; `ty` is a live type and `value` null or a live object.
#[cfg(not(Py_3_12))]
pub unsafe fn token_unnormalized(ty: *mut ffi::PyObject, value: *mut ffi::PyObject) -> ExcToken {
    if !value.is_null() && ffi::PyExceptionInstance_Check(value) != 0 {
        return token(value);
    }
    ExcToken {
        ptr: value as usize,
        ty: ty as usize,
        alt: 0,
    }
}

/// The token of the exception the running frame is handling (`sys.exc_info()[1]`), if any:
/// inside an `except` or `finally` block, or a `with` block's `__exit__`, while an
/// exception is in flight.
///
/// # Safety
/// The GIL is held.
pub unsafe fn handled_token() -> Option<ExcToken> {
    let (ty, value, tb) = exc_info();
    ffi::Py_XDECREF(ty);
    ffi::Py_XDECREF(tb);
    let found =
        (!value.is_null() && ffi::PyExceptionInstance_Check(value) != 0).then(|| token(value));
    ffi::Py_XDECREF(value);
    found
}

/// True for the code of a coroutine or an async generator: a segment of one that raises
/// out of an asyncio task step hands its exception to the task, not to a recorded caller.
///
/// # Safety
/// The GIL is held and `code` is a live code object.
pub unsafe fn is_async_code(code: *mut ffi::PyObject) -> bool {
    const ASYNC_FLAGS: i64 = 0x80 | 0x100 | 0x200;
    let flags = ffi::PyObject_GetAttrString(code, c"co_flags".as_ptr());
    if flags.is_null() {
        ffi::PyErr_Clear();
        return false;
    }
    let v = ffi::PyLong_AsLongLong(flags);
    ffi::Py_DECREF(flags);
    if v == -1 && !ffi::PyErr_Occurred().is_null() {
        ffi::PyErr_Clear();
        return false;
    }
    v & ASYNC_FLAGS != 0
}

/// The exception being handled on this thread (`sys.exc_info()`): type, value and
/// traceback as new references, each null when absent.
///
/// # Safety
/// The GIL is held.
#[allow(deprecated)]
unsafe fn exc_info() -> (*mut ffi::PyObject, *mut ffi::PyObject, *mut ffi::PyObject) {
    let (mut ty, mut value, mut tb) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    ffi::PyErr_GetExcInfo(&mut ty, &mut value, &mut tb);
    (ty, value, tb)
}
