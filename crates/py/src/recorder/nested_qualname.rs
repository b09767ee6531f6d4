//! CPython 3.10 has no `co_qualname`. Code that no function object in a class or the module
//! namespace owns directly (closures, lambdas, comprehensions, classes defined in functions)
//! is found by walking the code objects nested in the module's functions and classes, and
//! named as 3.11+ would: `outer.<locals>.inner`, `outer.<locals>.Local.method`.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyCode, PyDict, PyTuple, PyType};
use std::ptr::addr_of_mut;

/// How deep nested classes and code objects are followed.
const MAX_DEPTH: usize = 6;
/// How many code objects one search looks at, at most.
const MAX_VISITS: usize = 20_000;

// The types of `staticmethod` and `classmethod` objects (CPython data symbols pyo3-ffi does
// not declare).
extern "C" {
    static mut PyStaticMethod_Type: ffi::PyTypeObject;
    static mut PyClassMethod_Type: ffi::PyTypeObject;
}

/// True for the types of `staticmethod` and `classmethod` objects (exactly).
pub fn is_method_wrapper(ty: *mut ffi::PyTypeObject) -> bool {
    ty == addr_of_mut!(PyStaticMethod_Type) || ty == addr_of_mut!(PyClassMethod_Type)
}

/// `CO_OPTIMIZED`: set on function code, not on class bodies or module code.
const CO_OPTIMIZED: i64 = 0x1;

struct Search<'a, 'py> {
    target: &'a Bound<'py, PyAny>,
    visits: usize,
}

impl<'py> Search<'_, 'py> {
    /// The qualified name of the target when it is `code` (named `qualname`) or nested in it.
    fn in_code(
        &mut self,
        code: &Bound<'py, PyAny>,
        qualname: &str,
        depth: usize,
    ) -> Option<String> {
        if code.is(self.target) {
            return Some(qualname.to_string());
        }
        self.visits += 1;
        if depth >= MAX_DEPTH || self.visits > MAX_VISITS {
            return None;
        }
        let function = code
            .getattr("co_flags")
            .and_then(|f| f.extract::<i64>())
            .is_ok_and(|f| f & CO_OPTIMIZED != 0);
        let consts = code
            .getattr("co_consts")
            .ok()?
            .downcast_into::<PyTuple>()
            .ok()?;
        for c in consts.iter().filter(|c| c.is_instance_of::<PyCode>()) {
            let name: String = c.getattr("co_name").and_then(|n| n.extract()).ok()?;
            let inner = if function {
                format!("{qualname}.<locals>.{name}")
            } else {
                format!("{qualname}.{name}")
            };
            if let Some(q) = self.in_code(&c, &inner, depth + 1) {
                return Some(q);
            }
        }
        None
    }

    /// Searches a namespace value: a function (or one wrapped by staticmethod, classmethod
    /// or property) or a class and its members.
    fn in_value(&mut self, value: &Bound<'py, PyAny>, depth: usize) -> Option<String> {
        if depth >= MAX_DEPTH {
            return None;
        }
        if let Some([code, qualname, _]) = function_parts(value) {
            return self.in_code(&code, &qualname.extract::<String>().ok()?, depth);
        }
        if let Ok(cls) = value.downcast::<PyType>() {
            for member in class_dict(cls)?.values().iter() {
                if let Some(q) = self.in_value(&member, depth + 1) {
                    return Some(q);
                }
            }
            return None;
        }
        // Only the built-in wrappers are looked into: their attributes run no user code.
        // SAFETY: `value` is a live object; Py_TYPE reads its type pointer.
        let ty = unsafe { ffi::Py_TYPE(value.as_ptr()) };
        let attrs: &[&str] = if is_method_wrapper(ty) {
            &["__func__"]
        } else if ty == addr_of_mut!(ffi::PyProperty_Type) {
            &["fget", "fset", "fdel"]
        } else {
            &[]
        };
        attrs
            .iter()
            .filter_map(|a| value.getattr(*a).ok())
            .find_map(|f| self.in_value(&f, depth + 1))
    }
}

/// A Python function's code, qualified name and module (borrowed), read from its fields:
/// attribute access (`__code__`) raises the `object.__getattr__` audit event, which runs the
/// program's audit hooks, and a hook's own first call would ask for its name again, forever.
/// None when `value` is not a function.
pub fn function_parts<'py>(value: &Bound<'py, PyAny>) -> Option<[Bound<'py, PyAny>; 3]> {
    let py = value.py();
    // SAFETY: PyFunction_Check only reads the type pointer; a function object's fields are
    // null or references it owns, borrowed here while `value` keeps them alive.
    unsafe {
        if ffi::PyFunction_Check(value.as_ptr()) == 0 {
            return None;
        }
        let f = value.as_ptr().cast::<ffi::PyFunctionObject>();
        let part = |p: *mut ffi::PyObject| (!p.is_null()).then(|| Bound::from_borrowed_ptr(py, p));
        Some([
            part((*f).func_code)?,
            part((*f).func_qualname)?,
            part((*f).func_module).unwrap_or_else(|| py.None().into_bound(py)),
        ])
    }
}

/// The namespace of a class, read from its type object: never through attribute access,
/// where a metaclass's `__getattribute__` or descriptors would run user code.
pub fn class_dict<'py>(cls: &Bound<'py, PyType>) -> Option<Bound<'py, PyDict>> {
    // SAFETY: `cls` is a live type; tp_dict is null or its namespace dict, borrowed from it.
    unsafe {
        let dict = (*cls.as_ptr().cast::<ffi::PyTypeObject>()).tp_dict;
        (!dict.is_null() && ffi::PyDict_Check(dict) != 0)
            .then(|| Bound::from_borrowed_ptr(cls.py(), dict).downcast_into_unchecked())
    }
}

/// The module a function or class was defined in (`__module__`), read without running user
/// code: a function's own field, a class's namespace entry.
fn defined_in(value: &Bound<'_, PyAny>) -> Option<String> {
    let module = match value.downcast::<PyType>() {
        Ok(cls) => class_dict(cls)?.get_item("__module__").ok()??,
        Err(_) => {
            let [_, _, module] = function_parts(value)?;
            module
        }
    };
    module.extract().ok()
}

/// The 3.11-style qualified name of `code`, searched from the functions and classes in the
/// module namespace `globals` that belong to the module `module`; None when not found.
pub fn find(globals: &Bound<'_, PyDict>, module: &str, code: &Bound<'_, PyAny>) -> Option<String> {
    let mut search = Search {
        target: code,
        visits: 0,
    };
    for value in globals.values().iter() {
        // SAFETY: the checks only read the type pointer.
        let root = unsafe {
            ffi::PyFunction_Check(value.as_ptr()) != 0 || ffi::PyType_Check(value.as_ptr()) != 0
        };
        let own = root && defined_in(&value).is_some_and(|m| m == module);
        if own {
            if let Some(q) = search.in_value(&value, 0) {
                return Some(q);
            }
        }
    }
    None
}
