//! Per-code-object decisions, taken on first sight and cached in the code object's
//! `co_extra` slot: whether calls are recorded and the interned function id; and, when
//! argument previews are on, each code object's argument names ([`ArgSpec`]), in a second
//! slot that owns its spec and frees it with the code object.
//!
//! The cached word is `func_id << 32 | generation << 8 | recorded << 1 | 1`. It is a plain
//! integer, not a pointer, so nothing needs freeing when the code object dies, and a new
//! configuration (a new generation) makes every cached decision stale at once.

use crate::capture::frame_args::{ArgSlot, Frame};
use crate::process::runtime::HookState;
use ferrotrace_core::functions::FunctionInfo;
use ferrotrace_core::metrics::Counters;
use ferrotrace_core::preview::json_key;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
#[cfg(not(Py_3_11))]
use pyo3::types::{PyString, PyTuple, PyType};
use std::os::raw::c_void;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

static EXTRA_INDEX: AtomicIsize = AtomicIsize::new(-1);

/// Byte offset of `co_extra` in `PyCodeObject`, from each version's `cpython/code.h`
/// (64-bit builds): the hook reads the slot there instead of calling the API, once a read
/// there has been checked against the API (see [`DIRECT_READ_CHECKED`]).
#[cfg(not(Py_3_11))]
const CO_EXTRA_OFFSET: Option<usize> = Some(144);
#[cfg(all(Py_3_11, not(Py_3_12)))]
const CO_EXTRA_OFFSET: Option<usize> = Some(176);
#[cfg(all(Py_3_12, not(Py_3_13)))]
const CO_EXTRA_OFFSET: Option<usize> = Some(184);
#[cfg(all(Py_3_13, not(Py_3_14)))]
const CO_EXTRA_OFFSET: Option<usize> = Some(192);
#[cfg(Py_3_14)]
const CO_EXTRA_OFFSET: Option<usize> = None;

/// Set once a direct read of a code object's slot gave exactly what the API gave for the
/// value just stored there; until then (and forever, if it never does) the API is used.
static DIRECT_READ_CHECKED: AtomicBool = AtomicBool::new(false);

/// Our `co_extra` slot of `code` read in place, as `PyUnstable_Code_GetExtra` reads it
/// (`_PyCodeObjectExtra`: a size, then the slots).
///
/// # Safety
/// The GIL is held, `code` is a live code object and `offset` is `co_extra`'s offset.
#[inline(always)]
unsafe fn read_extra_in_place(code: *mut ffi::PyObject, offset: usize, idx: isize) -> usize {
    let extra = *((code as *const u8).add(offset) as *const *const isize);
    if extra.is_null() || idx >= *extra {
        return 0;
    }
    *extra.add(1 + idx as usize) as usize
}

/// Our `co_extra` slot of `code` read through the API; None (with an exception set) when
/// `code` is not a code object.
///
/// # Safety
/// The GIL is held and `code` is a live object.
#[inline(always)]
unsafe fn read_extra_via_api(code: *mut ffi::PyObject, idx: isize) -> Option<usize> {
    let mut extra: *mut c_void = std::ptr::null_mut();
    (code_get_extra(code, idx as ffi::Py_ssize_t, &mut extra) == 0).then_some(extra as usize)
}

// The code-extra API: `_Py*` names up to 3.11, `PyUnstable_*` from 3.12 (where the old
// names are only macros, so no symbol exists under them).
#[cfg(not(Py_3_12))]
extern "C" {
    #[link_name = "_PyEval_RequestCodeExtraIndex"]
    fn request_extra_index(free: ffi::freefunc) -> std::os::raw::c_int;
    #[link_name = "_PyCode_GetExtra"]
    fn code_get_extra(
        code: *mut ffi::PyObject,
        index: ffi::Py_ssize_t,
        extra: *mut *mut c_void,
    ) -> std::os::raw::c_int;
    #[link_name = "_PyCode_SetExtra"]
    fn code_set_extra(
        code: *mut ffi::PyObject,
        index: ffi::Py_ssize_t,
        extra: *mut c_void,
    ) -> std::os::raw::c_int;
}
#[cfg(Py_3_12)]
extern "C" {
    #[link_name = "PyUnstable_Eval_RequestCodeExtraIndex"]
    fn request_extra_index(free: ffi::freefunc) -> std::os::raw::c_int;
    #[link_name = "PyUnstable_Code_GetExtra"]
    fn code_get_extra(
        code: *mut ffi::PyObject,
        index: ffi::Py_ssize_t,
        extra: *mut *mut c_void,
    ) -> std::os::raw::c_int;
    #[link_name = "PyUnstable_Code_SetExtra"]
    fn code_set_extra(
        code: *mut ffi::PyObject,
        index: ffi::Py_ssize_t,
        extra: *mut c_void,
    ) -> std::os::raw::c_int;
}

/// What the hook needs to know about a code object.
#[derive(Clone, Copy, Debug)]
pub struct CodeEntry {
    pub func_id: u32,
    pub recorded: bool,
}

/// Nothing to free: the slot holds an integer.
unsafe extern "C" fn free_nothing(_: *mut c_void) {}

/// Reserves the `co_extra` slots (decision word, argument spec). Called once at module
/// import.
///
/// # Safety
/// The GIL is held.
pub unsafe fn init() {
    if EXTRA_INDEX.load(Ordering::Relaxed) < 0 {
        let idx = request_extra_index(free_nothing);
        EXTRA_INDEX.store(idx as isize, Ordering::Relaxed);
    }
    if SPEC_INDEX.load(Ordering::Relaxed) < 0 {
        let idx = request_extra_index(free_spec);
        SPEC_INDEX.store(idx as isize, Ordering::Relaxed);
    }
}

fn encode(entry: CodeEntry, generation: u32) -> usize {
    ((entry.func_id as usize) << 32)
        | (((generation & 0xFF_FFFF) as usize) << 8)
        | (usize::from(entry.recorded) << 1)
        | 1
}

/// The cached entry for `code` under `generation`, or None when it must be decided.
///
/// # Safety
/// The GIL is held and `code` is a live code object.
#[inline(always)]
pub unsafe fn cached(code: *mut ffi::PyObject, generation: u32) -> Option<CodeEntry> {
    let idx = EXTRA_INDEX.load(Ordering::Relaxed);
    if idx < 0 {
        return None;
    }
    let word = match CO_EXTRA_OFFSET {
        Some(offset) if DIRECT_READ_CHECKED.load(Ordering::Relaxed) => {
            read_extra_in_place(code, offset, idx)
        }
        _ => read_extra_via_api(code, idx)?,
    };
    // Bit 0 set (an entry) and bits 8..32 equal to the generation's low 24 bits.
    let expected = ((generation & 0xFF_FFFF) << 8) | 1;
    if (word as u32) & 0xFFFF_FF01 != expected {
        return None;
    }
    Some(CodeEntry {
        func_id: (word >> 32) as u32,
        recorded: word & 2 != 0,
    })
}

/// The decision on `code`, running in `frame`: the cached one, or taken now (see
/// [`decide`]).
///
/// # Safety
/// As for [`decide`].
#[inline(always)]
pub unsafe fn cached_or_decided(
    py: Python<'_>,
    frame: Option<Frame>,
    code: *mut ffi::PyObject,
    state: &HookState,
) -> CodeEntry {
    match cached(code, state.generation) {
        Some(e) => e,
        None => decide(py, frame, code, state),
    }
}

/// Decides on a code object seen for the first time under this state, and caches it.
///
/// # Safety
/// The GIL is held and no exception is set; `frame` is the live frame running `code` (None
/// when it could not be found: the module is then unknown). Runs Python API calls (no user
/// code): attribute reads on the code and class dictionaries.
pub unsafe fn decide(
    py: Python<'_>,
    frame: Option<Frame>,
    code: *mut ffi::PyObject,
    state: &HookState,
) -> CodeEntry {
    if ferrotrace_core::fork::paused() {
        // A forked child before ferrotrace's after-fork callback: interning would take the
        // parent's table lock. Not recorded, and not cached, so it is decided again later.
        return CodeEntry {
            func_id: 0,
            recorded: false,
        };
    }
    let (info, module_file) = identity(py, frame, code);
    let filter_file = module_file.as_deref().unwrap_or(&info.file);
    let recorded = state
        .filter
        .decide(&info.module, &info.qualname, filter_file)
        && ferrotrace_core::sampling::function_sampled(
            &info.module,
            &info.qualname,
            state.config.function_sample_rate,
        );
    let entry = CodeEntry {
        func_id: state.functions.intern(redacted(info, state)),
        recorded,
    };
    Counters::add(&state.counters.decisions, 1);
    let idx = EXTRA_INDEX.load(Ordering::Relaxed);
    let word = encode(entry, state.generation);
    if idx >= 0 {
        if code_set_extra(code, idx as ffi::Py_ssize_t, word as *mut c_void) != 0 {
            ffi::PyErr_Clear();
        } else {
            check_direct_read(code, idx, word);
        }
    }
    entry
}

/// A function's identity as it may leave the process: module, qualified name and file with
/// their secrets redacted (a path may hold an e-mail address, a generated name a token).
fn redacted(info: FunctionInfo, state: &HookState) -> FunctionInfo {
    let r = &state.redactor;
    FunctionInfo {
        module: r.redact_value(&info.module).into_owned(),
        qualname: r.redact_value(&info.qualname).into_owned(),
        file: r.redact_value(&info.file).into_owned(),
        line: info.line,
    }
}

/// Enables in-place reads of the slot once one reads back `word`, just stored in `code`'s
/// slot `idx`, exactly as the API does.
unsafe fn check_direct_read(code: *mut ffi::PyObject, idx: isize, word: usize) {
    let Some(offset) = CO_EXTRA_OFFSET else {
        return;
    };
    if DIRECT_READ_CHECKED.load(Ordering::Relaxed) {
        return;
    }
    let Some(via_api) = read_extra_via_api(code, idx) else {
        ffi::PyErr_Clear();
        return;
    };
    if via_api == word && read_extra_in_place(code, offset, idx) == word {
        DIRECT_READ_CHECKED.store(true, Ordering::Relaxed);
    }
}

/// A `str` attribute as text. A `str` that is not valid Unicode (a path holding bytes that are
/// not UTF-8, surrogate-escaped by Python) becomes its bytes with those escaped as `\xNN`, as
/// ferrotrace's Python side writes the directory prefixes it hands over.
fn str_attr(obj: &Bound<'_, PyAny>, name: &str) -> String {
    let Ok(v) = obj.getattr(name) else {
        return String::new();
    };
    if let Ok(s) = v.extract::<String>() {
        return s;
    }
    v.call_method1("encode", ("utf-8", "surrogateescape"))
        .ok()
        .and_then(|b| b.downcast_into::<pyo3::types::PyBytes>().ok())
        .map(|b| ferrotrace_core::config::escape_invalid_utf8(b.as_bytes()))
        .unwrap_or_default()
}

/// Module, qualified name, file and first line of the function running in `frame`; and,
/// for code made by `exec`/`eval` (a file such as `<string>`), the file of the module its
/// globals belong to, which the filters judge it by: a library's generated code goes with
/// the library.
unsafe fn identity(
    py: Python<'_>,
    frame: Option<Frame>,
    code: *mut ffi::PyObject,
) -> (FunctionInfo, Option<String>) {
    let code_obj = Bound::from_borrowed_ptr(py, code);
    let globals = frame
        .map(|f| f.globals())
        .filter(|g| !g.is_null())
        .map(|g| Bound::from_borrowed_ptr(py, g));
    let module = globals
        .as_ref()
        .and_then(|g| {
            g.downcast::<PyDict>()
                .ok()
                .and_then(|d| d.get_item("__name__").ok().flatten())
        })
        .and_then(|n| n.extract::<String>().ok())
        .unwrap_or_default();
    let info = FunctionInfo {
        module,
        qualname: qualname(&code_obj, frame, globals.as_ref()),
        file: str_attr(&code_obj, "co_filename"),
        line: code_obj
            .getattr("co_firstlineno")
            .and_then(|v| v.extract())
            .unwrap_or(0),
    };
    let module_file = is_generated(&info.file)
        .then(|| {
            globals
                .as_ref()
                .and_then(|g| module_file(py, g, &info.module))
        })
        .flatten();
    ffi::PyErr_Clear();
    (info, module_file)
}

/// True for the file name of code made by `exec`/`eval`/`compile` from text (`<string>`,
/// `<attrs generated init ...>`); frozen modules keep their own rules.
fn is_generated(file: &str) -> bool {
    file.starts_with('<') && !file.starts_with("<frozen")
}

/// The file of the module whose globals are `globals`: their `__file__`, else that of the
/// module named `module` in `sys.modules` (read from its dictionary: no module
/// `__getattr__` runs).
fn module_file(py: Python<'_>, globals: &Bound<'_, PyAny>, module: &str) -> Option<String> {
    let text = |v: Bound<'_, PyAny>| v.extract::<String>().ok().filter(|f| !f.starts_with('<'));
    let globals = globals.downcast::<PyDict>().ok()?;
    if let Some(f) = globals.get_item("__file__").ok().flatten().and_then(text) {
        return Some(f);
    }
    if module.is_empty() {
        return None;
    }
    // SAFETY: the GIL is held; `sys.modules` is borrowed and kept alive by the interpreter.
    let modules = unsafe { Bound::from_borrowed_ptr_or_opt(py, ffi::PyImport_GetModuleDict())? };
    let modules = modules.downcast::<PyDict>().ok()?;
    let m = modules.get_item(module).ok().flatten()?;
    let m = m.downcast::<pyo3::types::PyModule>().ok()?;
    m.dict().get_item("__file__").ok().flatten().and_then(text)
}

#[cfg(Py_3_11)]
unsafe fn qualname(
    code: &Bound<'_, PyAny>,
    _frame: Option<Frame>,
    _globals: Option<&Bound<'_, PyAny>>,
) -> String {
    str_attr(code, "co_qualname")
}

/// CPython 3.10 has no `co_qualname`: find the function object that owns this code (in the
/// class of the first argument when it is `self`/`cls`, else in the module globals) and use
/// its `__qualname__`, else search the code nested in the module's functions and classes;
/// fall back to `co_name`. Only dictionaries and code objects are read, no user code runs.
#[cfg(not(Py_3_11))]
unsafe fn qualname(
    code: &Bound<'_, PyAny>,
    frame: Option<Frame>,
    globals: Option<&Bound<'_, PyAny>>,
) -> String {
    let name = str_attr(code, "co_name");
    let first_arg = code
        .getattr("co_varnames")
        .ok()
        .and_then(|v| v.downcast_into::<PyTuple>().ok())
        .filter(|_| {
            code.getattr("co_argcount")
                .and_then(|c| c.extract::<usize>())
                .unwrap_or(0)
                > 0
        })
        .and_then(|v| v.get_item(0).ok())
        .and_then(|v| v.extract::<String>().ok());
    if matches!(first_arg.as_deref(), Some("self") | Some("cls")) {
        // SAFETY: at a call event the first fast local holds the first argument (or null),
        // and co_argcount > 0 was checked.
        let obj = frame.map_or(std::ptr::null_mut(), |f| f.local(0));
        if !obj.is_null() {
            let obj = Bound::from_borrowed_ptr(code.py(), obj);
            let cls = match obj.downcast::<PyType>() {
                Ok(t) if first_arg.as_deref() == Some("cls") => t.clone(),
                _ => obj.get_type(),
            };
            if let Some(q) = owner_in_class(&cls, &name, code) {
                return q;
            }
        }
    }
    let globals = globals.and_then(|g| g.downcast::<PyDict>().ok());
    globals
        .and_then(|d| d.get_item(&name).ok().flatten())
        .and_then(|f| function_qualname(&f, code))
        .or_else(|| {
            let d = globals?;
            let module: String = d.get_item("__name__").ok()??.extract().ok()?;
            crate::recorder::nested_qualname::find(d, &module, code)
        })
        .unwrap_or(name)
}

/// The qualified name of the function named `name` whose code is `code`, found in the
/// namespaces of `cls` and its bases (read from the type objects: no attribute access, so
/// no metaclass or descriptor code runs).
#[cfg(not(Py_3_11))]
fn owner_in_class(cls: &Bound<'_, PyType>, name: &str, code: &Bound<'_, PyAny>) -> Option<String> {
    // SAFETY: `cls` is a live type; tp_mro is null or a tuple of types it owns.
    let mro = unsafe {
        let mro = (*cls.as_ptr().cast::<ffi::PyTypeObject>()).tp_mro;
        if mro.is_null() || ffi::PyTuple_Check(mro) == 0 {
            return None;
        }
        Bound::from_borrowed_ptr(cls.py(), mro).downcast_into_unchecked::<PyTuple>()
    };
    for klass in mro.iter() {
        let Ok(klass) = klass.downcast::<PyType>() else {
            continue;
        };
        let Some(v) = crate::recorder::nested_qualname::class_dict(klass)
            .and_then(|d| d.get_item(name).ok().flatten())
        else {
            continue;
        };
        // Only the built-in wrappers are unwrapped: their `__func__` runs no user code.
        // SAFETY: reading the type pointer of a live object.
        let ty = unsafe { ffi::Py_TYPE(v.as_ptr()) };
        let func = if crate::recorder::nested_qualname::is_method_wrapper(ty) {
            v.getattr("__func__").ok()?
        } else {
            v
        };
        if let Some(q) = function_qualname(&func, code) {
            return Some(q);
        }
    }
    None
}

#[cfg(not(Py_3_11))]
fn function_qualname(func: &Bound<'_, PyAny>, code: &Bound<'_, PyAny>) -> Option<String> {
    let [own, qualname, _] = crate::recorder::nested_qualname::function_parts(func)?;
    if !own.is(code) {
        return None;
    }
    qualname
        .downcast_into::<PyString>()
        .ok()
        .map(|s| s.to_string())
}

/// The arguments of a code object, read once per code object and configuration.
#[derive(Debug)]
pub struct ArgSpec {
    generation: u32,
    /// In signature order: positional, `*args`, keyword-only, `**kwargs`.
    pub args: Vec<ArgSlot>,
}

/// The `co_extra` slot holding each code object's [`ArgSpec`] (-1 until reserved).
///
/// The spec lives in the code object it describes, not in a table keyed by the code
/// object's address or by the function's identity: a code object freed and another
/// allocated at the same address (or one with the same module, name, file and line, as
/// code made by `exec` has) must never be read with the other's parameter layout, whose
/// slots would lie beyond its frame's arguments.
static SPEC_INDEX: AtomicIsize = AtomicIsize::new(-1);

/// What the spec slot points to: a box owned by the code object, freed with it by
/// [`free_spec`]. Its content is replaced in place when the configuration changes, so the
/// slot is written once per code object.
type SpecBox = Option<Rc<ArgSpec>>;

/// Frees a code object's spec box; CPython calls it when the code object is deallocated.
///
/// # Safety
/// `ptr` is null or a pointer made by `Box::into_raw` in [`arg_spec`], passed once.
unsafe extern "C" fn free_spec(ptr: *mut c_void) {
    if !ptr.is_null() {
        drop(Box::from_raw(ptr as *mut SpecBox));
    }
}

/// The argument spec of `code`, built on first use under this state from `co_varnames`,
/// `co_argcount`, `co_kwonlyargcount`, `co_flags` and `co_cellvars`, and kept in the code
/// object's own `co_extra` slot.
///
/// # Safety
/// The GIL is held, `code` is a live code object and no exception is set. Attribute reads
/// on the code object run no user code.
pub unsafe fn arg_spec(
    py: Python<'_>,
    code: *mut ffi::PyObject,
    state: &HookState,
) -> Option<Rc<ArgSpec>> {
    let idx = SPEC_INDEX.load(Ordering::Relaxed);
    if idx < 0 {
        return None;
    }
    let Some(slot) = read_extra_via_api(code, idx) else {
        ffi::PyErr_Clear();
        return None;
    };
    // SAFETY: a non-null slot was set below to a live box, which only `free_spec` frees,
    // when `code` (alive here) dies; the GIL serialises every access to it.
    let held = (slot as *mut SpecBox).as_mut();
    if let Some(Some(spec)) = held.as_deref() {
        if spec.generation == state.generation {
            return Some(Rc::clone(spec));
        }
    }
    let spec = Rc::new(build_arg_spec(py, code, state)?);
    match held {
        Some(held) => *held = Some(Rc::clone(&spec)),
        None => {
            let boxed = Box::into_raw(Box::new(Some(Rc::clone(&spec))));
            if code_set_extra(code, idx as ffi::Py_ssize_t, boxed as *mut c_void) != 0 {
                ffi::PyErr_Clear();
                free_spec(boxed as *mut c_void);
            }
        }
    }
    Some(spec)
}

/// Untracks `tuple` from the cycle collector when it is an exact tuple of exact strings,
/// which can never be part of a reference cycle (what the collector's own pass does to
/// such tuples; `_PyTuple_MaybeUntrack` is not exported on every version).
///
/// # Safety
/// The GIL is held and `tuple` is a live object.
unsafe fn untrack_tuple_of_strings(tuple: *mut ffi::PyObject) {
    if ffi::PyTuple_CheckExact(tuple) == 0 || ffi::PyObject_GC_IsTracked(tuple) == 0 {
        return;
    }
    let len = ffi::PyTuple_Size(tuple);
    for i in 0..len {
        // SAFETY: `i` is within the tuple's length; the item is borrowed from a live tuple.
        if ffi::PyUnicode_CheckExact(ffi::PyTuple_GetItem(tuple, i)) == 0 {
            return;
        }
    }
    ffi::PyObject_GC_UnTrack(tuple as *mut c_void);
}

unsafe fn build_arg_spec(
    py: Python<'_>,
    code: *mut ffi::PyObject,
    state: &HookState,
) -> Option<ArgSpec> {
    const CO_VARARGS: usize = 0x04;
    const CO_VARKEYWORDS: usize = 0x08;
    let code_obj = Bound::from_borrowed_ptr(py, code);
    let int = |name: &str| code_obj.getattr(name).and_then(|v| v.extract::<usize>());
    let names = |name: &str| {
        let tuple = code_obj.getattr(name)?;
        // 3.12+ builds `co_varnames`/`co_cellvars` on first use and caches them in the code
        // object: a new tuple the collector tracks until its next pass would make a traced
        // call leave one more object in `gc.get_objects()` than an untraced one. A tuple of
        // strings is untracked now, as that pass would do.
        untrack_tuple_of_strings(tuple.as_ptr());
        tuple.extract::<Vec<String>>()
    };
    let read = || -> PyResult<ArgSpec> {
        let flags = int("co_flags")?;
        let argcount = int("co_argcount")?;
        let positional = argcount + int("co_kwonlyargcount")?;
        let varargs = flags & CO_VARARGS != 0;
        let total = positional + usize::from(varargs) + usize::from(flags & CO_VARKEYWORDS != 0);
        let varnames = names("co_varnames")?;
        let cellvars = names("co_cellvars")?;
        let nlocals = int("co_nlocals")?;
        let mut args = varnames
            .iter()
            .take(total)
            .enumerate()
            .map(|(i, name)| {
                let cell_index = cellvars.iter().position(|c| c == name);
                let shown = if i < positional {
                    name.clone()
                } else if varargs && i == positional {
                    format!("*{name}")
                } else {
                    format!("**{name}")
                };
                let slot = match cell_index {
                    // 3.10 keeps a captured argument only in its cell, after the locals.
                    Some(c) if cfg!(not(Py_3_11)) => nlocals + c,
                    _ => i,
                };
                ArgSlot {
                    key: json_key(&shown),
                    sensitive: state.redactor.is_sensitive_key(name),
                    slot,
                    cell: cell_index.is_some(),
                }
            })
            .collect::<Vec<_>>();
        if varargs && args.len() > positional {
            // Shown in signature order: `*args` before the keyword-only parameters.
            let star = args.remove(positional);
            args.insert(argcount, star);
        }
        Ok(ArgSpec {
            generation: state.generation,
            args,
        })
    };
    let spec = read().ok();
    ffi::PyErr_Clear();
    spec
}
