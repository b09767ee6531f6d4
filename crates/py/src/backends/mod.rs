//! The backends: how CPython's calls reach the recorder. One folder per backend
//! (`setprofile`, `monitoring`, `evalframe`), the per-thread claims that sessions take on the
//! interpreter-wide ones (`claims`), and, here, which backend delivers calls
//! (`FERROTRACE_BACKEND`) and the per-thread claims sessions take on it.
//!
//! The backend is chosen by the first configuration of the process (`auto` is `monitoring`
//! on CPython 3.12+, `evalframe` before) and stays for the life of the process: hooks
//! installed under one cannot be handed to another. `monitoring` and `evalframe` serve the
//! whole interpreter and are claimed per sampled session; `setprofile` is installed per
//! thread.
//!
//! Owns the hook functions CPython calls. Calls `recorder` (opening and closing calls,
//! per-code decisions), `capture` (exceptions, frames), `session` and `process`. Called by
//! `api` (configuration, sessions, shutdown) and by CPython.

pub mod claims;
#[cfg(not(Py_3_12))]
pub mod evalframe;
pub mod monitoring;
pub mod setprofile;

use crate::process::gil_cell::GilCell;
use crate::process::runtime::HookState;
use crate::recorder::ThreadRecorder;
use ferrotrace_core::config::Backend;

static CHOSEN: GilCell<Option<Backend>> = GilCell::new(None);

/// The backend `requested` resolves to on this interpreter, or the rule it breaks here.
pub fn resolve(requested: Backend) -> Result<Backend, &'static str> {
    match requested {
        Backend::Auto if cfg!(Py_3_12) => Ok(Backend::Monitoring),
        Backend::Auto => Ok(Backend::EvalFrame),
        Backend::Monitoring if !cfg!(Py_3_12) => {
            Err("monitoring needs sys.monitoring, which CPython has from 3.12 on")
        }
        Backend::EvalFrame if cfg!(Py_3_12) => {
            Err("evalframe is for CPython 3.10 and 3.11; from 3.12 on, monitoring is faster")
        }
        other => Ok(other),
    }
}

/// Fixes the backend on first use; later calls keep the first choice and say so when they
/// asked for another one.
///
/// # Safety
/// The GIL is held.
pub unsafe fn choose(wanted: Backend) -> Option<String> {
    let chosen = CHOSEN.get();
    match *chosen {
        None => {
            *chosen = Some(wanted);
            None
        }
        Some(b) if b == wanted => None,
        Some(b) => Some(format!(
            "FERROTRACE_BACKEND cannot change once tracing has started; staying on {}",
            name(b)
        )),
    }
}

/// The backend in use (`setprofile` before any configuration).
///
/// # Safety
/// The GIL is held.
pub unsafe fn current() -> Backend {
    CHOSEN.get().unwrap_or(Backend::SetProfile)
}

/// The backend's setting value.
pub fn name(b: Backend) -> &'static str {
    match b {
        Backend::Monitoring => "monitoring",
        Backend::EvalFrame => "evalframe",
        Backend::Auto | Backend::SetProfile => "setprofile",
    }
}

/// Which mechanism delivers calls now.
enum Delivery {
    /// `sys.monitoring` callbacks, once registered.
    Monitoring,
    /// The PEP 523 frame-evaluation function.
    #[cfg(not(Py_3_12))]
    EvalFrame,
    /// A profile function on each thread with a session.
    SetProfile,
}

/// The mechanism in use.
///
/// # Safety
/// The GIL is held.
unsafe fn delivery() -> Delivery {
    match current() {
        Backend::Monitoring if monitoring::installed() => Delivery::Monitoring,
        #[cfg(not(Py_3_12))]
        Backend::EvalFrame => Delivery::EvalFrame,
        _ => Delivery::SetProfile,
    }
}

/// One more sampled session on the calling thread needs calls delivered. Under setprofile
/// the session also claims the `PY_UNWIND` event (3.12+), so that nothing of ferrotrace's
/// runs while no sampled session does.
///
/// # Safety
/// The GIL is held.
pub unsafe fn retain_on_current_thread(rec: &mut ThreadRecorder) {
    match delivery() {
        Delivery::Monitoring => monitoring::CLAIMS.retain(rec),
        #[cfg(not(Py_3_12))]
        Delivery::EvalFrame => evalframe::CLAIMS.retain(rec),
        Delivery::SetProfile => {
            setprofile::retain_on_current_thread(rec);
            monitoring::CLAIMS.claim();
        }
    }
}

/// A session on the calling thread ended.
///
/// # Safety
/// The GIL is held.
pub unsafe fn release_on_current_thread(rec: &mut ThreadRecorder) {
    match delivery() {
        Delivery::Monitoring => monitoring::CLAIMS.release(rec),
        #[cfg(not(Py_3_12))]
        Delivery::EvalFrame => evalframe::CLAIMS.release(rec),
        Delivery::SetProfile if rec.hook_refs > 0 => {
            setprofile::release_on_current_thread(rec);
            monitoring::CLAIMS.unclaim();
        }
        Delivery::SetProfile => {}
    }
}

/// Drops every claim of the calling thread (at shutdown); the interpreter-wide backends
/// stop delivering calls for the whole process.
///
/// # Safety
/// The GIL is held.
pub unsafe fn remove_from_current_thread(rec: &mut ThreadRecorder) {
    match delivery() {
        Delivery::Monitoring => monitoring::CLAIMS.remove(rec),
        #[cfg(not(Py_3_12))]
        Delivery::EvalFrame => evalframe::CLAIMS.remove(rec),
        Delivery::SetProfile => {
            setprofile::remove_from_current_thread(rec);
            monitoring::CLAIMS.drop_all();
        }
    }
}

/// A thread started while a process-wide session runs: the setprofile backend installs its
/// hook there (the interpreter-wide backends already see every thread).
///
/// # Safety
/// The GIL is held.
pub unsafe fn ensure_on_current_thread(state: &HookState) {
    if let Delivery::SetProfile = delivery() {
        setprofile::ensure_on_current_thread(state);
    }
}

/// True when calls on the calling thread are delivered to ferrotrace.
///
/// # Safety
/// The GIL is held.
pub unsafe fn installed_here() -> bool {
    match delivery() {
        Delivery::Monitoring => monitoring::CLAIMS.active_here(),
        #[cfg(not(Py_3_12))]
        Delivery::EvalFrame => evalframe::CLAIMS.active_here(),
        Delivery::SetProfile => setprofile::installed_here(),
    }
}

/// After a new configuration: code objects `DISABLE`d under the old one are decided again.
///
/// # Safety
/// The GIL is held.
pub unsafe fn reconfigured() {
    if let Delivery::Monitoring = delivery() {
        monitoring::restart_events();
    }
}
