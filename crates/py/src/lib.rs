//! `ferrotrace._native`: the CPython hook, per-thread recorders, sessions and the functions
//! the Python package calls. This is the only crate that touches the CPython C API.

mod address_map;
mod api;
mod backend;
mod calls;
mod capture;
mod claims;
mod code_info;
mod context_stamp;
mod diagnostics;
#[cfg(not(Py_3_12))]
mod eval_frame;
mod exception;
mod frame_args;
mod gil_cell;
mod hook;
mod hook_handle;
mod http_client;
mod instance_attrs;
mod key_cache;
mod monitoring;
#[cfg(not(Py_3_11))]
mod nested_qualname;
mod preview;
mod profiler_slot;
mod recorder;
mod runtime;
mod session;
mod sigterm;
#[cfg(not(Py_3_12))]
mod stack_guard;
#[cfg(all(Py_3_12, not(Py_3_13)))]
mod superinstructions;
mod task;
mod type_info;
mod type_name;
mod vectorcall_callable;

use pyo3::prelude::*;

/// Rust allocations of the extension (span details and previews, made on application
/// threads and freed on the export thread) go to mimalloc: with previews on, glibc's
/// malloc/free were most of the per-call cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ferrotrace_core::clock::init();
    ferrotrace_core::fork::watch();
    // SAFETY: module initialisation runs with the GIL held.
    let var = unsafe {
        code_info::init();
        context_stamp::check_layout();
        Bound::from_owned_ptr_or_err(m.py(), session::init_context_var())?
    };
    m.add("SESSION_VAR", var)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<session::Session>()?;
    m.add_class::<hook_handle::HookHandle>()?;
    api::register(m)
}
