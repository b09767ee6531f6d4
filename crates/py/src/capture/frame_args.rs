//! Reading a call's argument values from its frame at the call event.
//!
//! The values are read straight from the frame's fast locals, never through
//! `PyFrame_GetLocals`/`f_locals` (which builds a dict, or on 3.13 a proxy, per call):
//! - 3.10: the profile hook's `PyFrameObject` holds `f_localsplus` (a captured argument
//!   lives only in its cell, after the locals).
//! - 3.11–3.13: the `_PyInterpreterFrame` (reached from a `PyFrameObject` through
//!   `f_frame`) holds `localsplus` at byte offset 72 on each of these versions (x86_64);
//!   arguments come first, in `co_varnames` order.
//! - The `sys.monitoring` backend (3.12+) gets no frame. `PyEval_GetFrame()` would
//!   materialise a frame object for every call (an allocation and a free: reading the thread
//!   state instead measured about 90 ns per call less on a recursive `fib` with previews on,
//!   CPython 3.12), so the current interpreter frame is read from the
//!   thread state instead: `tstate->cframe->current_frame` on 3.12 (offsets 56, then 0) and
//!   `tstate->current_frame` on 3.13 (offset 72), both from CPython's own headers. The frame
//!   found is only used when it runs the expected code object.
//! - The `evalframe` backend (3.10/3.11) is given the frame before it runs: the
//!   `PyFrameObject` on 3.10, the `_PyInterpreterFrame` on 3.11. Arguments are bound; on 3.11
//!   a captured argument is still its plain value (`MAKE_CELL` has not run), which `value`
//!   reads as is.

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

/// Where one argument of a code object lives in its frame, and how it is shown.
#[derive(Debug)]
pub struct ArgSlot {
    /// The shown name (the parameter name, `*name` for the varargs tuple, `**name` for
    /// kwargs) as a JSON object key, ready to write.
    pub key: String,
    /// The parameter name is a sensitive key: its value is never read.
    pub sensitive: bool,
    /// Index into the frame's fast locals.
    pub slot: usize,
    /// The parameter is captured by a closure: the slot may hold a cell around the value.
    pub cell: bool,
}

/// A frame whose arguments can be read: the `PyFrameObject` on 3.10, the
/// `_PyInterpreterFrame` on 3.11+.
#[derive(Clone, Copy)]
pub struct Frame(*mut u8);

impl Frame {
    /// The frame behind a frame object (from the profile hook).
    ///
    /// # Safety
    /// `frame` is a live frame object.
    pub unsafe fn of(frame: *mut ffi::PyFrameObject) -> Option<Frame> {
        #[cfg(Py_3_11)]
        // SAFETY: PyFrameObject starts with FrameHead on 3.11–3.13.
        let raw = (*(frame as *mut FrameHead)).f_frame;
        #[cfg(not(Py_3_11))]
        let raw = frame as *mut u8;
        (!raw.is_null()).then_some(Frame(raw))
    }

    /// The frame a PEP 523 frame-evaluation function is given: the `PyFrameObject` on 3.10,
    /// the `_PyInterpreterFrame` on 3.11.
    #[cfg(not(Py_3_12))]
    pub fn evaluated(raw: *mut u8) -> Frame {
        Frame(raw)
    }

    /// The frame's address, which identifies its activation while it runs.
    #[cfg(not(Py_3_12))]
    pub fn address(self) -> *mut ffi::PyObject {
        self.0 as *mut ffi::PyObject
    }

    /// The frame of the Python code running on this thread, when it runs `code`.
    ///
    /// # Safety
    /// The GIL is held, inside a `sys.monitoring` callback or profile event.
    pub unsafe fn current(code: *mut ffi::PyObject) -> Option<Frame> {
        let frame = current_raw();
        if frame.0.is_null() || frame.code() != code {
            return None;
        }
        Some(frame)
    }

    /// The code object this frame runs (borrowed).
    ///
    /// # Safety
    /// The frame is live (its code object is kept alive by it).
    pub unsafe fn code(self) -> *mut ffi::PyObject {
        #[cfg(Py_3_12)]
        {
            // SAFETY: f_code (3.12) / f_executable (3.13) is the first field.
            *(self.0 as *mut *mut ffi::PyObject)
        }
        #[cfg(all(Py_3_11, not(Py_3_12)))]
        {
            // SAFETY: f_code is the fifth pointer of _PyInterpreterFrame on 3.11.
            *(self.0 as *mut *mut ffi::PyObject).add(4)
        }
        #[cfg(not(Py_3_11))]
        {
            (*(self.0 as *mut ffi::PyFrameObject)).f_code as *mut ffi::PyObject
        }
    }

    /// The globals the frame runs with (borrowed).
    ///
    /// # Safety
    /// The frame is live.
    pub unsafe fn globals(self) -> *mut ffi::PyObject {
        #[cfg(Py_3_12)]
        {
            // SAFETY: f_globals is the fourth pointer of _PyInterpreterFrame on 3.12/3.13.
            *(self.0 as *mut *mut ffi::PyObject).add(3)
        }
        #[cfg(all(Py_3_11, not(Py_3_12)))]
        {
            // SAFETY: f_globals is the second pointer of _PyInterpreterFrame on 3.11.
            *(self.0 as *mut *mut ffi::PyObject).add(1)
        }
        #[cfg(not(Py_3_11))]
        {
            (*(self.0 as *mut ffi::PyFrameObject)).f_globals
        }
    }

    /// Fast local `i` (an argument, at the call event), borrowed; null when unset.
    ///
    /// # Safety
    /// The frame is live and `i` is below its code object's count of locals.
    #[cfg(not(Py_3_11))]
    pub unsafe fn local(self, i: usize) -> *mut ffi::PyObject {
        slot(self, i)
    }
}

#[cfg(all(Py_3_12, not(Py_3_13)))]
unsafe fn current_raw() -> Frame {
    // SAFETY: PyThreadState.cframe is at offset 56 and _PyCFrame.current_frame at 0 (3.12).
    let tstate = ffi::PyThreadState_Get() as *mut u8;
    let cframe = *(tstate.add(56) as *mut *mut u8);
    if cframe.is_null() {
        return Frame(std::ptr::null_mut());
    }
    Frame(*(cframe as *mut *mut u8))
}

#[cfg(Py_3_13)]
unsafe fn current_raw() -> Frame {
    // SAFETY: PyThreadState.current_frame is at offset 72 (3.13).
    let tstate = ffi::PyThreadState_Get() as *mut u8;
    Frame(*(tstate.add(72) as *mut *mut u8))
}

#[cfg(not(Py_3_12))]
unsafe fn current_raw() -> Frame {
    let f = ffi::PyEval_GetFrame();
    if f.is_null() {
        return Frame(std::ptr::null_mut());
    }
    Frame::of(f).unwrap_or(Frame(std::ptr::null_mut()))
}

/// The current value of the argument described by `arg` in `frame` (borrowed), or null
/// when it is unset.
///
/// # Safety
/// The GIL is held; `frame` is the live frame of the code object `arg` was built from, at
/// its call event (arguments are bound, no bytecode has rebound them yet).
pub unsafe fn value(frame: Frame, arg: &ArgSlot) -> *mut ffi::PyObject {
    let v = slot(frame, arg.slot);
    if arg.cell && !v.is_null() && ffi::Py_TYPE(v) == std::ptr::addr_of_mut!(PyCell_Type) {
        // SAFETY: a cell object's first field after the header is its content.
        return *(v.add(1) as *mut *mut ffi::PyObject);
    }
    v
}

#[cfg(not(Py_3_11))]
unsafe fn slot(frame: Frame, i: usize) -> *mut ffi::PyObject {
    // SAFETY: `i` indexes the frame's locals or cells (from the code object's counts).
    *(*(frame.0 as *mut ffi::PyFrameObject))
        .f_localsplus
        .as_ptr()
        .add(i)
}

#[cfg(Py_3_11)]
unsafe fn slot(frame: Frame, i: usize) -> *mut ffi::PyObject {
    // SAFETY: layout of _PyInterpreterFrame on 3.11–3.13, see the module docs; `i` indexes
    // the arguments, which come first in localsplus.
    *(frame.0.add(LOCALSPLUS_OFFSET) as *mut *mut ffi::PyObject).add(i)
}
