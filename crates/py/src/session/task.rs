//! The asyncio task a call runs in, looked up only where a session's call tree starts on a
//! thread (a task resuming), never for nested calls, which inherit it.

use crate::process::gil_cell::GilCell;
use pyo3::ffi;

extern "C" {
    /// Part of the stable C API since 3.7 (not bound by pyo3-ffi): the module from
    /// `sys.modules`, or NULL without an exception when it is not imported.
    fn PyImport_GetModule(name: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// `_asyncio._get_running_loop`, and `_asyncio.current_task` (3.12+) or, before 3.12, the
/// `_asyncio._current_tasks` dict (loop -> task), once `_asyncio` is imported.
static FUNCTIONS: GilCell<Option<(*mut ffi::PyObject, *mut ffi::PyObject)>> = GilCell::new(None);

#[cfg(Py_3_12)]
const CURRENT_TASK: &std::ffi::CStr = c"current_task";
#[cfg(not(Py_3_12))]
const CURRENT_TASK: &std::ffi::CStr = c"_current_tasks";

unsafe fn functions() -> Option<(*mut ffi::PyObject, *mut ffi::PyObject)> {
    let slot = FUNCTIONS.get();
    if slot.is_none() {
        let name = ffi::PyUnicode_FromString(c"_asyncio".as_ptr());
        let module = PyImport_GetModule(name);
        ffi::Py_DECREF(name);
        if module.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let get_loop = ffi::PyObject_GetAttrString(module, c"_get_running_loop".as_ptr());
        let current = ffi::PyObject_GetAttrString(module, CURRENT_TASK.as_ptr());
        ffi::Py_DECREF(module);
        if get_loop.is_null() || current.is_null() {
            ffi::Py_XDECREF(get_loop);
            ffi::Py_XDECREF(current);
            ffi::PyErr_Clear();
            return None;
        }
        *slot = Some((get_loop, current));
    }
    *slot
}

/// `id()` of the running asyncio task, or 0 outside one (or before asyncio is imported).
///
/// # Safety
/// The GIL is held and no exception is set.
pub unsafe fn current_task_id() -> u64 {
    let Some((get_loop, current)) = functions() else {
        return 0;
    };
    let running = ffi::PyObject_CallNoArgs(get_loop);
    if running.is_null() {
        ffi::PyErr_Clear();
        return 0;
    }
    if running == ffi::Py_None() {
        ffi::Py_DECREF(running);
        return 0;
    }
    let task = current_task(current, running);
    ffi::Py_DECREF(running);
    if task.is_null() {
        ffi::PyErr_Clear();
        return 0;
    }
    let id = if task == ffi::Py_None() {
        0
    } else {
        task as u64
    };
    ffi::Py_DECREF(task);
    id
}

/// The task running on `running_loop` (a new reference, None, or null on error).
#[cfg(Py_3_12)]
unsafe fn current_task(
    current_task: *mut ffi::PyObject,
    running_loop: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    ffi::PyObject_CallOneArg(current_task, running_loop)
}

/// The task running on `running_loop` (a new reference, None, or null on error).
#[cfg(not(Py_3_12))]
unsafe fn current_task(
    current_tasks: *mut ffi::PyObject,
    running_loop: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if ffi::PyDict_Check(current_tasks) == 0 {
        return std::ptr::null_mut();
    }
    let task = ffi::PyDict_GetItemWithError(current_tasks, running_loop);
    if task.is_null() {
        if ffi::PyErr_Occurred().is_null() {
            ffi::Py_IncRef(ffi::Py_None());
            return ffi::Py_None();
        }
        return std::ptr::null_mut();
    }
    ffi::Py_IncRef(task);
    task
}
