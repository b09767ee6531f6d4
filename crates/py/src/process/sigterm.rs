//! SIGTERM with the default disposition (how containers and process managers stop a
//! program): export what was recorded and the final `meta` record, then die by SIGTERM as
//! the program would have.
//!
//! The program's view does not change: the handler is native (`sigaction`), so
//! `signal.getsignal(SIGTERM)` still says `SIG_DFL`, and it is installed only when the
//! disposition is the default one; a handler the program installs later replaces it.
//!
//! The handler itself only asks for the work: it adds a pending call (run by the main thread
//! at its next bytecode boundary, with the GIL, so the program runs no further) and wakes a
//! watcher thread. The watcher also starts a thread that takes the GIL, for a main thread
//! blocked outside Python (`accept`, `sleep`) that would run the pending call only later.
//! Whichever of the two gets the GIL first ends the process-wide session, hands every
//! thread's buffered records to the queue and shuts the pipeline down without releasing the
//! GIL. When neither gets the GIL within half of `FERROTRACE_SHUTDOWN_TIMEOUT_MS` (a main
//! thread busy in C code), the watcher exports what is queued and the final record without
//! it. At the deadline, or when done, the default disposition is restored and SIGTERM
//! raised again.

use crate::process::runtime;
use pyo3::prelude::*;
use std::cell::UnsafeCell;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Our handler is installed.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// A SIGTERM arrived: the flush is under way.
static TRIGGERED: AtomicBool = AtomicBool::new(false);
/// One thread took the flush.
static CLAIMED: AtomicBool = AtomicBool::new(false);
/// The process whose watcher thread runs; in any other (a child forked without Python's
/// fork hooks) the handler dies at once, as without ferrotrace.
static WATCHER_PID: AtomicU32 = AtomicU32::new(0);
/// The watcher leaves its thread (before a fork).
static PARK: AtomicBool = AtomicBool::new(false);
/// What ends the recording and exports, given by `install`.
static SHUTDOWN: OnceLock<Shutdown> = OnceLock::new();
static WATCHER: Mutex<Option<(JoinHandle<()>, u32)>> = Mutex::new(None);

/// The semaphore the handler posts (`sem_post` is async-signal-safe).
struct Semaphore(UnsafeCell<libc::sem_t>);
// SAFETY: POSIX semaphores are made to be used from several threads at once.
unsafe impl Sync for Semaphore {}
// SAFETY: an all-zero `sem_t` is only a placeholder; `sem_init` runs before any use.
static WAKE: Semaphore = Semaphore(UnsafeCell::new(unsafe { std::mem::zeroed() }));

fn sem() -> *mut libc::sem_t {
    WAKE.0.get()
}

fn pid() -> u32 {
    std::process::id()
}

/// Ends the process-wide session and the recording and exports everything within a
/// timeout; with its last argument false it does not release the GIL (the program must not
/// run on). True when everything was exported. `api` gives its shutdown, so that this module
/// needs nothing above the process state.
pub type Shutdown = fn(Python<'_>, Duration, bool) -> PyResult<bool>;

/// Installs the handler when SIGTERM has the default disposition; true when it is ours. A
/// SIGTERM then runs `shutdown`.
pub fn install(shutdown: Shutdown) -> bool {
    let _ = SHUTDOWN.set(shutdown);
    if INSTALLED.load(Ordering::Relaxed) {
        return true;
    }
    // SAFETY: plain sigaction/sem_init calls on zero-initialised structures.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut old) != 0
            || old.sa_sigaction != libc::SIG_DFL
        {
            return false;
        }
        if libc::sem_init(sem(), 0, 0) != 0 || !start_watcher() {
            return false;
        }
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        if libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut()) != 0 {
            return false;
        }
    }
    INSTALLED.store(true, Ordering::Relaxed);
    true
}

/// The program put back the default disposition (`signal.signal(SIGTERM, SIG_DFL)`, as
/// uvicorn does before re-raising the SIGTERM it handled): installs the handler again, so
/// that the SIGTERM it raises next still exports first. True when it is in place.
pub fn reclaim() -> bool {
    if !INSTALLED.load(Ordering::Relaxed) || WATCHER_PID.load(Ordering::Relaxed) != pid() {
        return false;
    }
    // SAFETY: plain sigaction calls on zero-initialised structures.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut old) != 0 {
            return false;
        }
        if old.sa_sigaction == handler as *const () as usize {
            return true;
        }
        if old.sa_sigaction != libc::SIG_DFL {
            return false;
        }
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut()) == 0
    }
}

extern "C" fn handler(_sig: c_int, _info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    // SAFETY: only async-signal-safe calls (and atomics); errno is restored.
    unsafe {
        let errno = *libc::__errno_location();
        if WATCHER_PID.load(Ordering::Relaxed) != libc::getpid() as u32 {
            restore_default();
            libc::raise(libc::SIGTERM); // delivered when the handler returns
        } else if !TRIGGERED.swap(true, Ordering::SeqCst) {
            pyo3::ffi::Py_AddPendingCall(Some(on_main_thread), std::ptr::null_mut());
            libc::sem_post(sem());
        }
        *libc::__errno_location() = errno;
    }
}

/// The default disposition again.
fn restore_default() {
    // SAFETY: sigaction with a zeroed structure set to SIG_DFL.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut());
    }
}

/// Ends the process by SIGTERM, as it would have ended without ferrotrace.
fn die() -> ! {
    restore_default();
    // SAFETY: plain signal calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The pending call: the main thread, at a bytecode boundary, with the GIL.
extern "C" fn on_main_thread(_: *mut c_void) -> c_int {
    // SAFETY: pending calls run on the main thread with the GIL held.
    let py = unsafe { Python::assume_gil_acquired() };
    flush_and_die(py, true);
    0
}

/// With the GIL: exports everything and dies. When another thread took the flush, the main
/// thread waits for the end without the GIL (the program must not run on); a helper thread
/// just leaves.
fn flush_and_die(py: Python<'_>, main: bool) {
    if CLAIMED.swap(true, Ordering::SeqCst) {
        if main {
            py.allow_threads(|| loop {
                std::thread::sleep(Duration::from_secs(1));
            });
        }
        return;
    }
    let timeout = runtime::state().map_or(5000, |s| s.config.shutdown_timeout_ms);
    let done = SHUTDOWN.get().is_some_and(|shutdown| {
        shutdown(py, Duration::from_millis(timeout), false).unwrap_or(false)
    });
    if let Ok(m) = py.import("ferrotrace._lifecycle") {
        let _ = m.call_method1("_after_sigterm_flush", (done,));
    }
    die();
}

fn start_watcher() -> bool {
    PARK.store(false, Ordering::Relaxed);
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ferrotrace-sigterm".into())
        .spawn(move || {
            let _ = tx.send(ferrotrace_core::fork::thread_id());
            watch()
        });
    let Ok(handle) = spawned else {
        return false;
    };
    let tid = rx.recv().unwrap_or(0);
    *WATCHER.lock().unwrap_or_else(|e| e.into_inner()) = Some((handle, tid));
    WATCHER_PID.store(pid(), Ordering::Relaxed);
    true
}

fn watch() {
    loop {
        // SAFETY: the semaphore was initialised before this thread started.
        while unsafe { libc::sem_wait(sem()) } != 0 {}
        if PARK.load(Ordering::Relaxed) {
            return;
        }
        if TRIGGERED.load(Ordering::SeqCst) {
            terminate();
        }
    }
}

/// The watcher's part after a SIGTERM: see the module documentation.
fn terminate() -> ! {
    let start = Instant::now();
    let Some(state) = runtime::state() else {
        die();
    };
    let timeout = Duration::from_millis(state.config.shutdown_timeout_ms);
    let deadline = start + timeout;
    if !state.recording.load(Ordering::SeqCst) && !CLAIMED.load(Ordering::SeqCst) {
        // Shutting down already (the interpreter is exiting, as a pool worker told to stop
        // does while its pool also terminates it): the GIL must not be taken during
        // finalization; the export under way gets until the deadline to finish.
        state.pipeline.wait_shut_down(deadline);
        die();
    }
    let _ = std::thread::Builder::new()
        .name("ferrotrace-sigterm-flush".into())
        .spawn(|| Python::with_gil(|py| flush_and_die(py, false)));
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= start + timeout / 2 && !CLAIMED.swap(true, Ordering::SeqCst) {
            // No thread could take the GIL: export what is queued, and the final record.
            state.pipeline.shutdown(deadline - now);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    die();
}

/// Before a fork: the watcher leaves its thread (CPython 3.12+ warns about forking a
/// multi-threaded process).
pub fn park() {
    if TRIGGERED.load(Ordering::SeqCst) {
        return; // the watcher is ending the process
    }
    let Some((handle, tid)) = WATCHER.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    PARK.store(true, Ordering::Relaxed);
    // SAFETY: the semaphore is initialised (the watcher runs).
    unsafe { libc::sem_post(sem()) };
    let _ = handle.join();
    ferrotrace_core::fork::wait_thread_gone(tid, Instant::now() + Duration::from_secs(1));
}

/// After a fork, in the parent: the watcher again.
pub fn resume() {
    let running = WATCHER.lock().unwrap_or_else(|e| e.into_inner()).is_some();
    if INSTALLED.load(Ordering::Relaxed) && !running {
        start_watcher();
    }
}

/// After a fork, in the child: its own watcher (the handler is inherited).
pub fn after_fork_child() {
    if !INSTALLED.load(Ordering::Relaxed) {
        return;
    }
    std::mem::forget(WATCHER.lock().unwrap_or_else(|e| e.into_inner()).take());
    TRIGGERED.store(false, Ordering::SeqCst);
    CLAIMED.store(false, Ordering::SeqCst);
    // SAFETY: re-initialising the semaphore; no other thread exists in the child yet.
    unsafe { libc::sem_init(sem(), 0, 0) };
    start_watcher();
}
