//! The per-thread recorder: the stack of open recorded calls and the buffer of finished
//! span records that is handed to the pipeline in one send when full.
//!
//! Each thread owns its recorder through a thread-local pointer. Recorders are also listed
//! in a registry so `flush` and `shutdown` can drain every thread's buffer; both run with
//! the GIL held, and the hook only touches a recorder with the GIL held, so the GIL is the
//! lock. A recorder is never freed while its thread may still use it: the thread-local's
//! destructor only marks it orphaned, and orphans are reaped later under the GIL.
//!
//! Beside it: opening a call (`calls`), the previews of a recorded call's arguments and
//! return value (`previews`), and the per-code-object decisions and identity (`code_info`,
//! with `nested_qualname` for CPython 3.10). Calls `capture` (values), `session` and
//! `process`; called by the backends and by `api`, never by what lies below it.

pub mod calls;
pub mod code_info;
pub mod fates;
#[cfg(not(Py_3_11))]
pub mod nested_qualname;
pub mod previews;

use crate::capture::exception::ExcToken;
use crate::process::gil_cell::GilCell;
use crate::process::runtime::HookState;
use crate::session::SessionCache;
use fates::{Fates, Outcome, Unsettled};
use ferrotrace_core::clock;
use ferrotrace_core::event::{
    ExceptionInfo, SpanBatch, SpanRecord, TextRef, FLAG_EXCEPTION, FLAG_RECURSIVE, FLAG_UNFINISHED,
};
use ferrotrace_core::ids::{IdGenerator, TraceId};
use ferrotrace_core::in_place::Room;
use ferrotrace_core::metrics::Counters;
use ferrotrace_core::preview::KeyMemo;
use pyo3::ffi;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Set on an [`OpenFrame`] that stands for a call of recorded code that was not recorded
/// (no sampled session, too deep): the monitoring backend matches returns by code object,
/// so such a call must still be on the stack for the calls around it to pair up. It is
/// never written.
pub const SKIPPED: u32 = 1 << 31;

/// A recorded call that has not returned yet.
#[derive(Clone, Copy)]
pub struct OpenFrame {
    /// Identifies the activation its return event carries: the frame object (setprofile
    /// backend) or the code object (monitoring backend).
    pub activation: *mut ffi::PyObject,
    pub trace_id: TraceId,
    pub span_id: u64,
    pub parent_span_id: u64,
    pub session_key: u64,
    /// When the call started, in clock ticks ([`clock::now_ticks`]).
    pub start: u64,
    /// Ticks spent in recorded children, for self time.
    pub child: u64,
    pub task_id: u64,
    pub func_id: u32,
    /// Recorded ancestors on this thread.
    pub depth: u32,
    pub flags: u32,
    /// The argument preview, in the recorder's `open_text`.
    pub args: TextRef,
    /// The return-value preview, in the recorder's `open_text`.
    pub ret: TextRef,
}

/// Where a call's previews (`args`, then `ret`) lie in `open_text`, or None when it has none.
#[inline(always)]
fn text_range(args: TextRef, ret: TextRef) -> Option<std::ops::Range<usize>> {
    let start = match (args.is_empty(), ret.is_empty()) {
        (false, _) => args.start,
        (true, false) => ret.start,
        (true, true) => return None,
    };
    let end = |r: TextRef| (r.start + r.len) as usize * usize::from(!r.is_empty());
    Some(start as usize..end(args).max(end(ret)))
}

/// A profiler that was installed on a thread before ferrotrace's hook; the `setprofile`
/// backend keeps it in the thread's recorder and puts it back when its last session ends.
pub struct SavedProfiler {
    /// The C profile function (None when the thread had no profiler).
    pub func: Option<ffi::Py_tracefunc>,
    /// Its object, a strong reference (or null).
    pub obj: *mut ffi::PyObject,
}

impl SavedProfiler {
    /// No profiler.
    pub const NONE: SavedProfiler = SavedProfiler {
        func: None,
        obj: std::ptr::null_mut(),
    };

    /// Releases the reference to the profiler's object without putting it back.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn forget(self) {
        ffi::Py_XDECREF(self.obj);
    }
}

/// One thread's recording state.
pub struct ThreadRecorder {
    pub thread_id: u64,
    pub stack: Vec<OpenFrame>,
    buffer: SpanBatch,
    /// When the buffer's first span was recorded, in clock ticks.
    buffer_started: u64,
    /// Open calls per function id on this thread, to flag recursion.
    active: Vec<u32>,
    pub session_cache: SessionCache,
    /// Sessions on this thread that need the hook installed.
    pub hook_refs: u32,
    /// Work handed to this thread (`session::handoff`): its session's key and the call that
    /// handed it over, the parent of the session's top-level calls here.
    pub anchor: Option<(u64, u64)>,
    /// What to restore when the last session on this thread ends.
    pub saved_profiler: Option<SavedProfiler>,
    /// Spans in `buffer` that ended by an exception whose type is not known yet, with the
    /// frame it left (CPython < 3.12 hides the exception from profile functions).
    pending_exceptions: Vec<(usize, *mut ffi::PyObject)>,
    /// The frame of the span recorded last and its place in `buffer`: on 3.12+ the
    /// `PY_UNWIND` callback runs right after that frame's profile return and marks it
    /// (never set before 3.12).
    last_recorded: Option<(*mut ffi::PyObject, usize)>,
    /// Span ids for this thread's calls (one generator per recorder: no thread-local
    /// lookup per call).
    ids: IdGenerator,
    /// A preview is being built: calls it makes (a `repr` in repr mode) are not traced.
    pub in_preview: bool,
    /// The previews of the open calls, outermost first (a stack, like `stack`); a call's
    /// are copied into the span batch when it ends.
    pub open_text: String,
    /// Object keys this thread's previews already judged plain.
    pub key_memo: KeyMemo,
    /// The containers a preview in progress is inside (for its cycle check), kept to reuse
    /// their memory.
    pub open_containers: Vec<*mut ffi::PyObject>,
    /// Raising spans waiting for their fate (`caught_by` or `escaped`).
    fates: Fates,
    /// The session of the span recorded last by a return of None (3.12+, see
    /// [`mark_unwound`](Self::mark_unwound)).
    last_session_key: u64,
    orphaned: AtomicBool,
}

/// How a closed span ended, for [`fates`].
#[derive(Clone, Copy)]
enum End {
    Known(Outcome),
    /// Learnt after the span's end (see [`fates::Unsettled`]).
    Later {
        detached: bool,
    },
}

extern "C" {
    fn PyThread_get_thread_ident() -> std::os::raw::c_ulong;
}

thread_local! {
    /// The calling thread's recorder (null until created, and again once the thread's
    /// thread-locals are destroyed). Without a destructor, so reading it needs no check of
    /// the thread-local's state: the hook reads it on every event.
    static RECORDER: Cell<*mut ThreadRecorder> = const { Cell::new(std::ptr::null_mut()) };
    /// Registered with the recorder; its destructor marks the recorder orphaned when the
    /// thread exits.
    static EXIT_GUARD: ExitGuard = const { ExitGuard };
}

/// Marks the thread's recorder orphaned (to be reaped under the GIL) when dropped.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let p = RECORDER.with(|r| r.replace(std::ptr::null_mut()));
        if !p.is_null() {
            // SAFETY: recorders are freed only by `reap`, which skips those not yet orphaned,
            // so `p` is alive; setting an atomic flag needs no GIL. The slot is cleared
            // first, so this thread never reaches the recorder again once it may be freed.
            unsafe { (*p).orphaned.store(true, Ordering::Release) };
        }
    }
}

static REGISTRY: GilCell<Vec<*mut ThreadRecorder>> = GilCell::new(Vec::new());

/// Recorders holding spans that wait for an exception type (< 3.12), so the profile hook
/// can skip the thread-local lookup on most events.
static THREADS_WITH_PENDING: AtomicU32 = AtomicU32::new(0);

/// True when some thread has spans waiting for an exception type.
#[inline(always)]
pub fn any_pending_exceptions() -> bool {
    THREADS_WITH_PENDING.load(Ordering::Relaxed) != 0
}

/// The calling thread's recorder, if it has one.
#[inline(always)]
pub fn existing() -> Option<&'static mut ThreadRecorder> {
    // SAFETY: the pointer is either null or a live recorder owned by this thread.
    RECORDER.with(|r| unsafe { r.get().as_mut() })
}

/// The calling thread's recorder, created on first use.
///
/// # Safety
/// The GIL is held.
#[inline(always)]
pub unsafe fn current(state: &HookState) -> Option<&'static mut ThreadRecorder> {
    match existing() {
        Some(r) => Some(r),
        None => create(state),
    }
}

/// The calling thread's recorder when it wants calls from a backend that serves every
/// thread (`monitoring`, `evalframe`): it has a session, or a process-wide session runs (a
/// thread it follows gets its recorder here).
///
/// # Safety
/// The GIL is held.
#[inline(always)]
pub unsafe fn wanting_calls(state: &HookState) -> Option<&'static mut ThreadRecorder> {
    match existing() {
        Some(rec) if rec.hook_refs > 0 || crate::session::process_wide_sampled() => Some(rec),
        Some(_) => None,
        None if crate::session::process_wide_sampled() => current(state),
        None => None,
    }
}

/// Creates the calling thread's recorder.
///
/// # Safety
/// The GIL is held, and the thread has no recorder.
#[cold]
unsafe fn create(state: &HookState) -> Option<&'static mut ThreadRecorder> {
    reap(state);
    let rec = Box::into_raw(Box::new(ThreadRecorder {
        thread_id: PyThread_get_thread_ident() as u64,
        stack: Vec::with_capacity(64),
        buffer: state.pipeline.take_buffer(),
        buffer_started: 0,
        active: Vec::new(),
        session_cache: SessionCache::default(),
        hook_refs: 0,
        anchor: None,
        saved_profiler: None,
        pending_exceptions: Vec::new(),
        last_recorded: None,
        ids: IdGenerator::new(),
        in_preview: false,
        open_text: String::new(),
        key_memo: KeyMemo::default(),
        open_containers: Vec::new(),
        fates: Fates::default(),
        last_session_key: 0,
        orphaned: AtomicBool::new(false),
    }));
    // The guard is registered first: on a thread whose thread-locals are already being
    // destroyed it cannot be, and the recorder would never be reaped.
    if EXIT_GUARD.try_with(|_| ()).is_err() {
        drop(Box::from_raw(rec));
        return None;
    }
    RECORDER.with(|r| r.set(rec));
    REGISTRY.get().push(rec);
    rec.as_mut()
}

/// Submits the buffers of threads that have exited and frees their recorders.
unsafe fn reap(state: &HookState) {
    REGISTRY.get().retain(|&p| {
        if (*p).orphaned.load(Ordering::Acquire) {
            let mut rec = Box::from_raw(p);
            rec.submit_final(state);
            rec.session_cache.clear();
            false
        } else {
            true
        }
    });
}

/// Runs `f` on every live recorder (after reaping exited threads).
///
/// # Safety
/// The GIL is held, and `f` runs no Python code.
pub unsafe fn for_each(state: &HookState, mut f: impl FnMut(&mut ThreadRecorder)) {
    reap(state);
    for &p in REGISTRY.get().iter() {
        f(&mut *p);
    }
}

/// In a forked child only the forking thread exists: forget the other recorders (their
/// memory is a copy of the parent's and is leaked rather than touched).
///
/// # Safety
/// The GIL is held, in the child right after fork.
pub unsafe fn forget_other_threads() {
    let me = existing().map_or(std::ptr::null_mut(), |r| r as *mut ThreadRecorder);
    REGISTRY.get().retain(|&p| p == me);
    let pending = me
        .as_ref()
        .is_some_and(|r| !r.pending_exceptions.is_empty());
    THREADS_WITH_PENDING.store(u32::from(pending), Ordering::Relaxed);
}

impl ThreadRecorder {
    /// Marks a call of `func_id` open; returns `FLAG_RECURSIVE` when one already was.
    #[inline(always)]
    pub fn enter_function(&mut self, func_id: u32) -> u32 {
        let i = func_id as usize;
        if i >= self.active.len() {
            self.active.resize(i + 64, 0);
        }
        let n = self.active[i];
        self.active[i] = n + 1;
        if n > 0 {
            FLAG_RECURSIVE
        } else {
            0
        }
    }

    /// Pushes a new open call of the session in the thread's session cache (the one
    /// `session::current_info` just returned). Its span id and start time are taken last,
    /// as it is written into the stack.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        activation: *mut ffi::PyObject,
        func_id: u32,
        parent_span_id: u64,
        session_key: u64,
        task_id: u64,
        flags: u32,
        args: TextRef,
    ) {
        if !self.fates.idle() {
            self.before_child(parent_span_id);
        }
        let depth = self.next_depth();
        let room = Room::make(&mut self.stack);
        room.fill(OpenFrame {
            activation,
            trace_id: self.session_cache.info().trace_id,
            span_id: self.ids.next_u64(),
            parent_span_id,
            session_key,
            start: clock::now_ticks(),
            child: 0,
            task_id,
            func_id,
            depth,
            flags,
            args,
            ret: TextRef::default(),
        });
    }

    /// Pushes a call of recorded code that is not recorded (see [`SKIPPED`]).
    #[inline(always)]
    pub fn push_skipped(&mut self, activation: *mut ffi::PyObject, session_key: u64) {
        self.stack.push(OpenFrame {
            activation,
            trace_id: TraceId::default(),
            span_id: 0,
            parent_span_id: 0,
            session_key,
            start: 0,
            child: 0,
            task_id: 0,
            func_id: u32::MAX,
            depth: self.next_depth(),
            flags: SKIPPED,
            args: TextRef::default(),
            ret: TextRef::default(),
        });
    }

    /// How many recorded calls a call pushed now is nested in.
    #[inline(always)]
    pub fn next_depth(&self) -> u32 {
        self.stack
            .last()
            .map_or(0, |t| t.depth + u32::from(t.flags & SKIPPED == 0))
    }

    /// The innermost call that is recorded (skipped calls are passed over).
    #[inline(always)]
    pub fn innermost_recorded(&self) -> Option<&OpenFrame> {
        self.stack.iter().rev().find(|f| f.flags & SKIPPED == 0)
    }

    /// The parent of a new call, session or HTTP request of session `key` on this thread
    /// whose innermost recorded call is of another session (or none): the call that handed
    /// this thread its work in that session, else the session's own span `session_span`.
    #[inline(always)]
    pub fn top_level_parent(&self, key: u64, session_span: u64) -> u64 {
        match self.anchor {
            Some((k, span)) if k == key => span,
            _ => session_span,
        }
    }

    /// The parent of a new call, session or HTTP request of session `key` on this thread:
    /// its innermost recorded call of that session, else [`Self::top_level_parent`].
    pub fn parent_for(&self, key: u64, session_span: u64) -> u64 {
        match self.innermost_recorded() {
            Some(top) if top.session_key == key => top.span_id,
            _ => self.top_level_parent(key, session_span),
        }
    }

    /// Closes the top call, whose frame is returning (or unwinding with `exception`) at `end`
    /// (clock ticks), and records its span.
    #[inline(always)]
    pub fn pop(
        &mut self,
        state: &HookState,
        end: u64,
        extra_flags: u32,
        exception: Option<Box<ExceptionInfo>>,
    ) {
        let outcome = Outcome::Returned;
        self.close_top(
            state,
            end,
            extra_flags,
            exception,
            End::Known(outcome),
            true,
        );
    }

    /// As [`pop`](Self::pop) for a call that an exception leaves: `token` identifies it (None
    /// when unknown); `detached` when it goes to an asyncio task (see [`fates`]).
    #[inline(never)]
    pub fn pop_raised(
        &mut self,
        state: &HookState,
        end: u64,
        exception: Option<Box<ExceptionInfo>>,
        token: Option<ExcToken>,
        detached: bool,
    ) {
        let outcome = Outcome::Raised { token, detached };
        self.close_top(
            state,
            end,
            FLAG_EXCEPTION,
            exception,
            End::Known(outcome),
            true,
        );
    }

    /// As [`pop`](Self::pop) for a span whose exception is learnt only after its profile
    /// return event: on 3.12+ a `PY_UNWIND` callback may still turn a return of None into
    /// an unwind ([`mark_unwound`](Self::mark_unwound)); before 3.12 an unwind's exception
    /// is read at the next event ([`resolve_pending_exceptions`](Self::resolve_pending_exceptions)).
    /// The span stays in this thread's batch even when the batch is due, so that it is still
    /// there then; the next span hands the batch over. (Held spans are bounded by the depth
    /// of the stack that unwinds.)
    #[inline(always)]
    pub fn pop_before_unwind(
        &mut self,
        state: &HookState,
        end: u64,
        extra_flags: u32,
        detached: bool,
    ) {
        self.close_top(
            state,
            end,
            extra_flags,
            None,
            End::Later { detached },
            false,
        );
    }

    /// Closes the top call (see [`pop`](Self::pop)); hands a due batch over only when
    /// `hand_over` is set. With previews on, what ferrotrace spends from `end` until
    /// the caller goes on (the return preview taken after `end`, copying previews, handing
    /// the batch over) is ferrotrace's time: see [`charge_overhead`](Self::charge_overhead).
    #[inline(always)]
    fn close_top(
        &mut self,
        state: &HookState,
        end: u64,
        extra_flags: u32,
        exception: Option<Box<ExceptionInfo>>,
        how: End,
        hand_over: bool,
    ) {
        self.close_top_span(state, end, extra_flags, exception, how, hand_over);
        if state.config.capture.args() || state.config.capture.returns() {
            self.charge_overhead(state, 0, end, clock::now_ticks());
        }
    }

    /// ferrotrace's own time from `from` to `to` (clock ticks) inside the program's calls:
    /// taken out of the self time of the innermost recorded open call below the top `skip`
    /// ones (the call it fell in), and counted as `capture_overhead_ns`.
    #[inline(always)]
    pub fn charge_overhead(&mut self, state: &HookState, skip: usize, from: u64, to: u64) {
        let spent = to.saturating_sub(from);
        if let Some(around) = self
            .stack
            .iter_mut()
            .rev()
            .skip(skip)
            .find(|f| f.flags & SKIPPED == 0)
        {
            around.child += spent;
        }
        Counters::add(
            &state.counters.capture_overhead_ns,
            clock::ticks_span_ns(spent),
        );
    }

    /// The body of [`close_top`](Self::close_top).
    #[inline(always)]
    fn close_top_span(
        &mut self,
        state: &HookState,
        end: u64,
        extra_flags: u32,
        exception: Option<Box<ExceptionInfo>>,
        how: End,
        hand_over: bool,
    ) {
        if !self.fates.unsettled.is_empty() && cfg!(Py_3_12) {
            self.settle_unsettled_as_returned();
        }
        let Some(top) = self.stack.len().checked_sub(1) else {
            return;
        };
        let f = &self.stack[top];
        let (flags, start, func_id, args, ret) = (f.flags, f.start, f.func_id, f.args, f.ret);
        let (span_id, parent_span_id, session_key) = (f.span_id, f.parent_span_id, f.session_key);
        let activation = f.activation;
        if flags & SKIPPED != 0 {
            self.release_text(state, args, ret, false);
            self.stack.truncate(top);
            return;
        }
        let duration = end.saturating_sub(start);
        if let Some(parent) = self.stack[..top]
            .iter_mut()
            .rev()
            .find(|p| p.flags & SKIPPED == 0)
        {
            parent.child += duration;
        }
        if let Some(n) = self.active.get_mut(func_id as usize) {
            *n = n.saturating_sub(1);
        }
        let keep = duration >= state.min_duration_ticks;
        let (args, ret) = self.release_text(state, args, ret, keep);
        if !keep {
            self.stack.truncate(top);
            let ids = (span_id, parent_span_id, session_key);
            self.span_ended(None, ids, activation, how);
            return;
        }
        self.before_span(end);
        // The frame is read where it lies, and the span is built in the batch.
        let f = &self.stack[top];
        if cfg!(not(Py_3_12)) && extra_flags & FLAG_EXCEPTION != 0 {
            if self.pending_exceptions.is_empty() {
                THREADS_WITH_PENDING.fetch_add(1, Ordering::Relaxed);
            }
            self.pending_exceptions
                .push((self.buffer.len(), f.activation));
        }

        if cfg!(Py_3_12) {
            self.last_recorded = Some((f.activation, self.buffer.len()));
        }
        let room = self.buffer.room();
        room.fill(SpanRecord {
            args,
            ret,
            exception,
            ..span_of(f, self.thread_id, duration, f.flags | extra_flags)
        });
        self.stack.truncate(top);
        let index = self.buffer.len() - 1;
        let ids = (span_id, parent_span_id, session_key);
        self.span_ended(Some(index), ids, activation, how);
        if hand_over && self.batch_is_due(state, end) {
            self.submit(state);
        }
    }

    /// Fates: the span `span_id` just closed (at `index` in the batch when recorded).
    #[inline(always)]
    fn span_ended(
        &mut self,
        index: Option<usize>,
        (span_id, parent, session_key): (u64, u64, u64),
        activation: *mut ffi::PyObject,
        how: End,
    ) {
        match how {
            End::Known(Outcome::Returned) if self.fates.waiting.is_empty() => {}
            End::Known(mut outcome) => {
                if let Outcome::Raised { detached, .. } = &mut outcome {
                    *detached |= self.is_detached(parent);
                }
                self.fates.ended(
                    &mut self.buffer,
                    index,
                    span_id,
                    parent,
                    session_key,
                    outcome,
                );
            }
            End::Later { .. } if cfg!(Py_3_12) && self.fates.waiting.is_empty() => {
                // No span awaits this one: `mark_unwound` makes it wait if it unwound.
                self.last_session_key = session_key;
            }
            End::Later { detached } => {
                let detached = detached || self.is_detached(parent);
                self.fates.unsettled.push(Unsettled {
                    index,
                    span_id,
                    parent_span_id: parent,
                    session_key,
                    activation,
                    detached,
                })
            }
        }
    }

    /// Whether a span whose parent is `parent` hands its exception to another thread: its
    /// parent is the call that handed this thread its work.
    fn is_detached(&self, parent: u64) -> bool {
        self.innermost_recorded()
            .is_none_or(|f| f.span_id != parent)
            && self.anchor.is_some_and(|(_, span)| span == parent)
    }

    /// 3.12+: spans closed by a return of None that no `PY_UNWIND` followed returned.
    #[cold]
    fn settle_unsettled_as_returned(&mut self) {
        for u in std::mem::take(&mut self.fates.unsettled) {
            let outcome = Outcome::Returned;
            let (id, parent, key) = (u.span_id, u.parent_span_id, u.session_key);
            self.fates
                .ended(&mut self.buffer, u.index, id, parent, key, outcome);
        }
    }

    /// Settles the spans closed by an unwind whose exception was being looked for, with the
    /// token `found` gives for their frame (None: unknown).
    fn settle_unsettled_as_raised(
        &mut self,
        mut found: impl FnMut(*mut ffi::PyObject) -> Option<ExcToken>,
    ) {
        for u in std::mem::take(&mut self.fates.unsettled) {
            let token = if u.activation.is_null() {
                None
            } else {
                found(u.activation)
            };
            let outcome = Outcome::Raised {
                token,
                detached: u.detached,
            };
            let (id, parent, key) = (u.span_id, u.parent_span_id, u.session_key);
            self.fates
                .ended(&mut self.buffer, u.index, id, parent, key, outcome);
        }
    }

    /// Whether a coroutine segment running `code` that raises hands its exception to an
    /// asyncio task: its recorded caller (below the top call when `below_top`) is not a
    /// coroutine too, so it runs in a task step. `code_of` gives the code an open call's
    /// activation runs.
    ///
    /// # Safety
    /// The GIL is held, no exception is set, `code` is live and so are the activations of
    /// the open calls.
    #[cold]
    pub unsafe fn hands_to_task(
        &self,
        code: *mut ffi::PyObject,
        below_top: bool,
        code_of: impl Fn(*mut ffi::PyObject) -> *mut ffi::PyObject,
    ) -> bool {
        if !crate::capture::exception::is_async_code(code) {
            return false;
        }
        let parent = self
            .stack
            .iter()
            .rev()
            .skip(usize::from(below_top))
            .find(|f| f.flags & SKIPPED == 0);
        parent.is_none_or(|p| !crate::capture::exception::is_async_code(code_of(p.activation)))
    }

    /// A call whose parent is `parent` starts (see [`Fates::child_starts`]).
    #[cold]
    #[inline(never)]
    fn before_child(&mut self, parent: u64) {
        if cfg!(Py_3_12) && !self.fates.unsettled.is_empty() {
            self.settle_unsettled_as_returned();
        }
        // SAFETY: calls are pushed by the hooks, with the GIL held.
        unsafe { self.fates.child_starts(&mut self.buffer, parent) };
    }

    /// Session `key` (root span `session_span`) ended on this thread, by the exception
    /// `exc` if any: settles its spans awaiting the root span (see [`Fates::session_ended`]).
    pub fn session_ended(&mut self, key: u64, session_span: u64, exc: Option<ExcToken>) {
        self.settle_pending_unsettled();
        self.fates
            .session_ended(&mut self.buffer, key, session_span, exc);
    }

    /// Settles spans whose outcome was still to be learnt: a return on 3.12+, an unwind by
    /// an unknown exception before.
    fn settle_pending_unsettled(&mut self) {
        if self.fates.unsettled.is_empty() {
            return;
        }
        if cfg!(Py_3_12) {
            self.settle_unsettled_as_returned();
        } else {
            self.settle_unsettled_as_raised(|_| None);
        }
    }

    /// Copies the previews `args` and `ret` of the call being closed into the span batch
    /// when `keep` is set, and frees their room in `open_text`.
    #[inline(always)]
    fn release_text(
        &mut self,
        state: &HookState,
        args: TextRef,
        ret: TextRef,
        keep: bool,
    ) -> (TextRef, TextRef) {
        let Some(range) = text_range(args, ret) else {
            return (TextRef::default(), TextRef::default());
        };
        let start = range.start;
        let copied = if keep {
            self.copy_previews(state, args, ret, range)
        } else {
            (TextRef::default(), TextRef::default())
        };
        self.open_text.truncate(start);
        copied
    }

    /// Copies previews from `open_text` into the span batch, in one piece: a call's return
    /// value is written right after its arguments (its callees' text is freed when they
    /// end), so both lie in `range`. A batch whose text room they would outgrow is submitted
    /// first, so a full batch's text is never copied to grow it.
    fn copy_previews(
        &mut self,
        state: &HookState,
        args: TextRef,
        ret: TextRef,
        range: std::ops::Range<usize>,
    ) -> (TextRef, TextRef) {
        let none = (TextRef::default(), TextRef::default());
        let start = range.start;
        if self.buffer.text_outgrows_room(range.len()) && !self.buffer.is_empty() {
            self.submit(state);
        }
        let Some(text) = self.open_text.get(range) else {
            return none;
        };
        let base = self.buffer.add_text(text);
        if base.len as usize != text.len() {
            return none;
        }
        let moved = |r: TextRef| match r.is_empty() {
            true => r,
            false => TextRef {
                start: base.start + (r.start - start as u32),
                len: r.len,
            },
        };
        (moved(args), moved(ret))
    }

    /// Marks the span just recorded for `frame` as ended by `exception` (3.12+), whose token
    /// is `token`; `detached` says whether it goes to an asyncio task (see [`fates`]).
    pub fn mark_unwound(
        &mut self,
        frame: *mut ffi::PyObject,
        exception: impl FnOnce() -> ExceptionInfo,
        token: ExcToken,
        detached: impl FnOnce(&ThreadRecorder) -> bool,
    ) {
        let mut waits = None;
        if let Some((f, i)) = self.last_recorded.take() {
            if f == frame {
                if let Some(span) = self.buffer.get_mut(i) {
                    span.flags |= FLAG_EXCEPTION;
                    // The legacy profiler reported this exit as a return of None.
                    span.ret = TextRef::default();
                    span.exception = Some(Box::new(exception()));
                    waits = Some((i, span.span_id, span.parent_span_id));
                }
            }
        }
        if self.fates.unsettled.is_empty() {
            if let Some((i, id, parent)) = waits {
                let outcome = Outcome::Raised {
                    token: Some(token),
                    detached: self.is_detached(parent) || detached(self),
                };
                let key = self.last_session_key;
                self.fates
                    .ended(&mut self.buffer, Some(i), id, parent, key, outcome);
            }
        } else if let Some(k) = self
            .fates
            .unsettled
            .iter()
            .position(|u| u.activation == frame)
        {
            let u = self.fates.unsettled.remove(k);
            self.settle_unsettled_as_returned();
            let outcome = Outcome::Raised {
                token: Some(token),
                detached: u.detached || detached(self),
            };
            let (id, parent, key) = (u.span_id, u.parent_span_id, u.session_key);
            self.fates
                .ended(&mut self.buffer, u.index, id, parent, key, outcome);
        }
    }

    /// True when spans of this thread wait for an exception type.
    #[inline(always)]
    pub fn has_pending_exceptions(&self) -> bool {
        !self.pending_exceptions.is_empty()
    }

    /// Gives each span awaiting an exception type what `found` says left its frame (called
    /// with the frame), and stops waiting: a span `found` knows nothing for keeps its flag
    /// without a type.
    pub fn resolve_pending_exceptions(
        &mut self,
        mut found: impl FnMut(*mut ffi::PyObject) -> Option<(ExceptionInfo, ExcToken)>,
    ) {
        let pending = std::mem::take(&mut self.pending_exceptions);
        if pending.is_empty() && self.fates.unsettled.is_empty() {
            return;
        }
        if !pending.is_empty() {
            THREADS_WITH_PENDING.fetch_sub(1, Ordering::Relaxed);
        }
        let mut tokens = Vec::new();
        for (i, frame) in pending {
            let Some((info, token)) = found(frame) else {
                continue;
            };
            tokens.push((frame, token));
            if let Some(span) = self.buffer.get_mut(i) {
                span.exception = Some(Box::new(info));
            }
        }
        self.settle_unsettled_as_raised(|frame| {
            tokens.iter().find(|(f, _)| *f == frame).map(|(_, t)| *t)
        });
    }

    /// Appends `span` (timed in clock ticks, recorded at `now`) to the buffer, handing the
    /// buffer over when it is due.
    fn record(&mut self, state: &HookState, span: SpanRecord, now: u64) {
        self.before_span(now);
        self.buffer.push(span);
        if self.batch_is_due(state, now) {
            self.submit(state);
        }
    }

    /// Before a span recorded at `now` (clock ticks) is added: an empty buffer starts its
    /// flush-interval clock and is marked as timed in ticks.
    #[inline(always)]
    fn before_span(&mut self, now: u64) {
        if self.buffer.is_empty() {
            self.buffer_started = now;
            self.buffer.times_in_ticks = true;
        }
    }

    /// Whether the buffer is full or its first span is older than the flush interval (`now`
    /// in clock ticks).
    #[inline(always)]
    fn batch_is_due(&self, state: &HookState, now: u64) -> bool {
        self.buffer.len() >= state.pipeline.batch_size()
            || now.saturating_sub(self.buffer_started) > state.flush_interval_ticks
    }

    /// Hands the buffer to the pipeline (not in a forked child before its pipeline is
    /// replaced: the parent's channels may be locked for good there).
    pub fn submit(&mut self, state: &HookState) {
        if ferrotrace_core::fork::paused() {
            return;
        }
        if !self.pending_exceptions.is_empty() {
            THREADS_WITH_PENDING.fetch_sub(1, Ordering::Relaxed);
            self.pending_exceptions.clear();
        }
        self.settle_pending_unsettled();
        self.last_recorded = None;
        if !self.buffer.is_empty() {
            let mut full = std::mem::replace(&mut self.buffer, state.pipeline.take_buffer());
            if !self.fates.waiting.is_empty() {
                self.fates.carry_over(&mut full, &mut self.buffer);
                self.buffer_started = clock::now_ticks();
            }
            if !full.is_empty() {
                state.pipeline.submit(full);
            }
        }
    }

    /// As [`submit`](Self::submit) when this thread records nothing more (it exited, or
    /// recording stops): spans still waiting for their fate are written without one.
    pub fn submit_final(&mut self, state: &HookState) {
        self.settle_pending_unsettled();
        self.fates.waiting.clear();
        self.submit(state);
    }

    /// Records every open call that `pred` selects as unfinished and removes it from the stack.
    pub fn close_unfinished(&mut self, state: &HookState, pred: impl Fn(&OpenFrame) -> bool) {
        let now = clock::now_ticks();
        let mut kept = Vec::with_capacity(self.stack.len());
        for f in std::mem::take(&mut self.stack) {
            if pred(&f) && f.flags & SKIPPED != 0 {
                continue;
            }
            if pred(&f) {
                if !self.fates.waiting.is_empty() {
                    self.fates.open_call_ended(&mut self.buffer, f.span_id);
                }
                let (args, ret) = match text_range(f.args, f.ret) {
                    Some(range) => self.copy_previews(state, f.args, f.ret, range),
                    None => (TextRef::default(), TextRef::default()),
                };
                let span = SpanRecord {
                    args,
                    ret,
                    ..span_of(
                        &f,
                        self.thread_id,
                        now.saturating_sub(f.start),
                        f.flags | FLAG_UNFINISHED,
                    )
                };
                self.record(state, span, now);
            } else {
                kept.push(f);
            }
        }
        let text_end = kept
            .iter()
            .filter_map(|f| text_range(f.args, f.ret))
            .map(|r| r.end)
            .max()
            .unwrap_or(0);
        self.open_text.truncate(text_end);
        self.stack = kept;
        self.active.iter_mut().for_each(|n| *n = 0);
        for f in &self.stack {
            if let Some(n) = self.active.get_mut(f.func_id as usize) {
                *n += 1;
            }
        }
    }

    /// Open calls inherited from the parent process that this one will never return to (a
    /// multiprocessing child leaves by `os._exit`): they are neither recorded nor parents.
    pub fn disown_open_calls(&mut self) {
        for f in &mut self.stack {
            f.flags |= SKIPPED;
        }
    }

    /// Drops buffered records and gives open calls fresh span ids: used in a forked child,
    /// whose copies of the parent's records and ids belong to the parent.
    pub fn rebirth_after_fork(&mut self, state: &HookState) {
        self.buffer = state.pipeline.take_buffer();
        self.fates = Fates::default();
        let mut previous: Option<(u64, u64)> = None;
        self.ids = IdGenerator::new();
        for f in self.stack.iter_mut().filter(|f| f.flags & SKIPPED == 0) {
            let new_id = self.ids.next_u64();
            if let Some((old, new)) = previous {
                if f.parent_span_id == old {
                    f.parent_span_id = new;
                }
            }
            previous = Some((f.span_id, new_id));
            f.span_id = new_id;
        }
        self.session_cache.clear();
    }
}

/// The span of `f` (times in clock ticks), without previews or exception.
#[inline(always)]
fn span_of(f: &OpenFrame, thread_id: u64, duration: u64, flags: u32) -> SpanRecord {
    SpanRecord {
        trace_id: f.trace_id,
        span_id: f.span_id,
        parent_span_id: f.parent_span_id,
        start_ns: f.start,
        duration_ns: duration,
        self_ns: duration.saturating_sub(f.child),
        thread_id,
        task_id: f.task_id,
        func_id: f.func_id,
        depth: f.depth,
        flags,
        ..Default::default()
    }
}
