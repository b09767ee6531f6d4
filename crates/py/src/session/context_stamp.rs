//! Where the calling thread's `contextvars` context stands, read in a few loads.
//!
//! A context variable's value can only change when the thread switches context
//! (`Context.run`, an asyncio task step: CPython bumps the thread state's `context_ver`) or
//! when the variable is set in the current context. ferrotrace sets its session variable only
//! through `session::set_var` / `session::reset_var`, which bump `SESSION_CHANGES`. So the
//! triple (thread-state id, `context_ver`, `SESSION_CHANGES`) names one value of the session
//! variable: while it stays the same, the hook can reuse the session it found last instead
//! of calling `PyContextVar_Get` (which on a miss searches the context's map every time).
//!
//! The thread-state fields are read at the offsets each version's `cpython/pystate.h` gives
//! (3.10: 248/256, 3.11: 232/240, 3.12 and 3.13: 216/224), and only after a check at import
//! that entering and leaving a fresh context moves them as expected; otherwise, and on
//! versions whose layout is not checked, every stamp differs from all others, so the hook
//! reads the variable on every call.

use pyo3::ffi;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Offsets of `context`, `context_ver` and `id` in `PyThreadState`.
#[cfg(not(Py_3_11))]
const OFFSETS: Option<(usize, usize, usize)> = Some((240, 248, 256));
#[cfg(all(Py_3_11, not(Py_3_12)))]
const OFFSETS: Option<(usize, usize, usize)> = Some((224, 232, 240));
#[cfg(all(Py_3_12, not(Py_3_14)))]
const OFFSETS: Option<(usize, usize, usize)> = Some((208, 216, 224));
#[cfg(Py_3_14)]
const OFFSETS: Option<(usize, usize, usize)> = None;

/// Set once the offsets have been checked against the running interpreter.
static CHECKED: AtomicBool = AtomicBool::new(false);

/// Bumped after every change of the session variable or the process-wide session.
static SESSION_CHANGES: AtomicU64 = AtomicU64::new(0);

/// Numbers the stamps handed out when the layout is not known to match, so no two are equal.
static UNSTAMPED: AtomicU64 = AtomicU64::new(0);

/// One position of a thread's context: equal stamps see the same session.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    /// Never 0 for a real thread state (CPython numbers them from 1).
    thread_state_id: u64,
    context_ver: u64,
    session_changes: u64,
}

impl Stamp {
    /// Equal to no stamp `current` returns.
    pub const NEVER: Stamp = Stamp {
        thread_state_id: 0,
        context_ver: 0,
        session_changes: u64::MAX,
    };
}

extern "C" {
    fn PyThreadState_GetID(tstate: *mut ffi::PyThreadState) -> u64;
}

/// The calling thread's stamp; one equal to no other when the layout is not known to match.
///
/// # Safety
/// The GIL is held.
#[inline(always)]
pub unsafe fn current() -> Stamp {
    match OFFSETS {
        Some((_, ver, id)) if CHECKED.load(Ordering::Relaxed) => {
            let ts = ffi::PyThreadState_Get() as *const u8;
            // SAFETY: the offsets lie inside this version's PyThreadState (checked at
            // import), and the thread state of the thread holding the GIL is alive.
            Stamp {
                thread_state_id: *(ts.add(id) as *const u64),
                context_ver: *(ts.add(ver) as *const u64),
                session_changes: SESSION_CHANGES.load(Ordering::Relaxed),
            }
        }
        _ => Stamp {
            thread_state_id: 0,
            context_ver: 0,
            session_changes: UNSTAMPED.fetch_add(1, Ordering::Relaxed),
        },
    }
}

/// Records that the session in effect may have changed (call after the change is made).
pub fn note_session_change() {
    SESSION_CHANGES.fetch_add(1, Ordering::Relaxed);
}

/// Enables stamps if entering and leaving a new context moves the thread-state fields at
/// `OFFSETS` as CPython's own code does. Called once at import.
///
/// # Safety
/// The GIL is held and no exception is set.
pub unsafe fn check_layout() {
    let Some((ctx_at, ver_at, id_at)) = OFFSETS else {
        return;
    };
    let tstate = ffi::PyThreadState_Get();
    let ts = tstate as *const u8;
    // SAFETY: the offsets are inside PyThreadState for this version (from its headers); what
    // is read there is only compared, never dereferenced.
    let read = |at: usize| *(ts.add(at) as *const u64);
    let ctx = ffi::PyContext_New();
    if ctx.is_null() {
        ffi::PyErr_Clear();
        return;
    }
    let before = read(ver_at);
    let mut ok = read(id_at) == PyThreadState_GetID(tstate);
    if ffi::PyContext_Enter(ctx) == 0 {
        ok &= read(ctx_at) == ctx as u64 && read(ver_at) == before.wrapping_add(1);
        if ffi::PyContext_Exit(ctx) == 0 {
            ok &= read(ver_at) == before.wrapping_add(2);
        } else {
            ffi::PyErr_Clear();
            ok = false;
        }
    } else {
        ffi::PyErr_Clear();
        ok = false;
    }
    ffi::Py_DECREF(ctx);
    CHECKED.store(ok, Ordering::Relaxed);
}
