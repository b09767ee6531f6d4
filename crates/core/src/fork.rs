//! What a forked child must not do before it has its own export pipeline.
//!
//! `fork()` copies only the calling thread: a lock another thread held at that instant (the
//! function table's, read by the export thread; a channel's) stays held in the child for
//! good. Python's own after-fork callbacks run traced code in the child before ferrotrace's
//! callback replaces those shared structures, so from the fork until [`resume`] the hook
//! must take no such lock: a `pthread_atfork` child handler, which runs inside `fork()`
//! itself, sets [`paused`].

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static PAUSED: AtomicBool = AtomicBool::new(false);
static WATCH: Once = Once::new();

extern "C" {
    /// POSIX: registers handlers run around `fork()` (libc, always linked).
    fn pthread_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
    ) -> c_int;
}

/// Registers `handler` to run in the child of every later `fork()`, inside `fork()` itself.
/// It must be async-signal-safe (an atomic store or increment).
pub(crate) fn at_fork_child(handler: extern "C" fn()) {
    // SAFETY: registering a handler has no preconditions; the callers' handlers only touch
    // atomics, which is valid in a forked child.
    unsafe { pthread_atfork(None, None, Some(handler)) };
}

extern "C" fn pause_in_child() {
    PAUSED.store(true, Ordering::Relaxed);
}

/// Starts pausing forked children (once per process).
pub fn watch() {
    WATCH.call_once(|| at_fork_child(pause_in_child));
}

/// True in a forked child until [`resume`]: take no lock shared with the parent's threads.
#[inline]
pub fn paused() -> bool {
    PAUSED.load(Ordering::Relaxed)
}

/// Ends the pause (the child now has its own pipeline and tables).
pub fn resume() {
    PAUSED.store(false, Ordering::Relaxed);
}

/// The calling thread's Linux thread id (0 when it cannot be read).
pub fn thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// Waits, until `deadline`, for thread `tid` (joined already) to leave the process's thread
/// count: `pthread_join` returns when the thread has released its stack, a moment before the
/// kernel stops counting it in `/proc/self/stat`, which is what CPython reads after a fork.
pub fn wait_thread_gone(tid: u32, deadline: std::time::Instant) {
    if tid == 0 {
        return;
    }
    let path = format!("/proc/self/task/{tid}");
    while std::path::Path::new(&path).exists() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
}
