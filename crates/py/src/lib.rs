//! `ferrotrace._native`: the CPython hook, per-thread recorders, sessions and the functions
//! the Python package calls. This is the only crate that touches the CPython C API.
//!
//! One folder per part, each using only the parts below it: `api`, `http_client`,
//! `server`, `handoff`, `trace_report`, `convert` (the functions the Python package calls; `http_client` records
//! outgoing HTTP calls, `server` served requests, `handoff` carries a session into the
//! threads work is handed to, `trace_report` reads traces for `ferrotrace report`, `convert`
//! is the Perfetto writer of `ferrotrace convert`) → `backends`
//! (how CPython's calls reach us) → `recorder` (per-thread records of calls) → `capture`
//! (reading values) and `session` (which session a call is in) → `process` (process-wide
//! state).

mod api;
mod backends;
mod capture;
mod convert;
mod handoff;
mod http_client;
mod process;
mod recorder;
mod server;
mod session;
mod trace_report;

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
        recorder::code_info::init();
        session::context_stamp::check_layout();
        Bound::from_owned_ptr_or_err(m.py(), session::init_context_var())?
    };
    m.add("SESSION_VAR", var)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<session::Session>()?;
    m.add_class::<backends::setprofile::hook_handle::HookHandle>()?;
    api::register(m)?;
    http_client::register(m)?;
    server::register(m)?;
    trace_report::register(m)
}
