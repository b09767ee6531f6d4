//! Notes about other tools met at run time (another profiler, a hook replaced): each is said
//! once on the `ferrotrace` logger and kept in the process's diagnostics (the `diagnostics`
//! list of the `meta` record).
//!
//! Only cold paths call these (a session starting or ending, a chained profiler failing);
//! they keep any exception that is set when they are called.

use crate::process::runtime;
use ferrotrace_core::metrics::Counters;
use pyo3::ffi;
use pyo3::prelude::*;

/// A conflict with another tool: counted, kept for the `meta` record and logged as a
/// warning, the first time this note is made.
pub fn conflict(py: Python<'_>, note: &str) {
    let Some(state) = runtime::state() else {
        return;
    };
    if state.diagnostics.push_once(note) {
        Counters::add(&state.counters.profiler_conflicts, 1);
        log(py, "warning", note);
    }
}

/// Coexistence worth knowing about: kept for the `meta` record and logged at info level,
/// the first time this note is made.
pub fn info(py: Python<'_>, note: &str) {
    let Some(state) = runtime::state() else {
        return;
    };
    if state.diagnostics.push_once(note) {
        log(py, "info", note);
    }
}

/// Logs `note` on the `ferrotrace` logger at `level`; a logging failure is dropped. Under
/// `ferrotrace run` nothing is logged (the program's stderr is its own): the note is in the
/// `meta` record and the run's summary.
fn log(py: Python<'_>, level: &str, note: &str) {
    if std::env::var_os("FERROTRACE__MAIN_PID").is_some() {
        return;
    }
    let pending = PyErr::take(py);
    let _ = py
        .import("logging")
        .and_then(|m| m.call_method1("getLogger", ("ferrotrace",)))
        .and_then(|l| l.call_method1(level, ("ferrotrace: %s", note)));
    if let Some(e) = pending {
        e.restore(py);
    }
}

/// A short name for a profiler object: `module.qualname` for a function or method, else
/// `module.Type` of the object (`cProfile.Profile`); "a C profile function" without one.
///
/// # Safety
/// The GIL is held; `obj` is null or a live object.
pub unsafe fn describe(py: Python<'_>, obj: *mut ffi::PyObject) -> String {
    let Some(obj) = pyo3::Borrowed::from_ptr_or_opt(py, obj) else {
        return "(a C profile function)".to_string();
    };
    let pending = PyErr::take(py);
    let named = |o: &Bound<'_, PyAny>| -> Option<String> {
        let qualname: String = o.getattr("__qualname__").ok()?.extract().ok()?;
        let module: Option<String> = o.getattr("__module__").ok()?.extract().ok();
        Some(match module {
            Some(m) if !m.is_empty() => format!("{m}.{qualname}"),
            _ => qualname,
        })
    };
    let name = named(&obj)
        .or_else(|| named(obj.get_type().as_any()))
        .unwrap_or_else(|| "(unnamed)".to_string());
    if let Some(e) = pending {
        e.restore(py);
    }
    name
}
