//! Where an exception that left a recorded call went: the call that caught it
//! (`caught_by`), or the session it escaped from.
//!
//! A span that ends by an exception waits here (its record stays in the thread's batch)
//! for the span it awaits, at first its parent. When that parent ends by the same exception
//! (compared by [`ExcToken`], which holds no reference), the waiting spans await the
//! parent's parent, and the parent waits with them. When the parent ends normally or by
//! another exception, or starts a call while it no longer handles the exception, it caught
//! it: every span awaiting it gets `caught_by` = its span id. Spans awaiting a session's
//! root span are settled when the session ends: `escaped` when it ended by that exception,
//! else caught by the code around the session's calls (the session's span).
//!
//! Calls that raise nothing pay one emptiness check of the two lists at push and pop. The
//! waiting list holds at most [`MAX_WAITING`] spans; a raising span beyond that is written
//! without a fate. A coroutine segment that raises out of an asyncio task step (its
//! recorded caller is not a coroutine) and a thread's top call, whose caller is on another
//! thread, hand their exception to the task or the thread machinery: no recorded caller
//! catches it there, so their fate stays unknown.

use crate::capture::exception::{self, ExcToken};
use ferrotrace_core::event::{ExceptionFate, ExceptionInfo, SpanBatch};
use pyo3::ffi;

/// Raising spans that wait for their fate, per thread, at most.
pub const MAX_WAITING: usize = 1024;

/// A raising span whose fate depends on the span it awaits.
#[derive(Clone, Copy)]
pub struct Waiting {
    /// Its place in the thread's batch.
    pub index: usize,
    /// The span whose end (or going on) decides its fate.
    pub awaiting: u64,
    /// The exception (None: not known, taken to be the one its ancestors end by).
    pub token: Option<ExcToken>,
    /// Its session.
    pub session_key: u64,
}

/// A closed span whose outcome is learnt after its end (the setprofile backend: a return
/// of None may be an unwind on 3.12+; an unwind's exception is read at the next event
/// before 3.12).
#[derive(Clone, Copy)]
pub struct Unsettled {
    /// Its place in the batch (None when it was too short to be recorded).
    pub index: Option<usize>,
    pub span_id: u64,
    pub parent_span_id: u64,
    pub session_key: u64,
    /// The frame it ran in.
    pub activation: *mut ffi::PyObject,
    /// It hands an exception to an asyncio task or another thread (see the module doc).
    pub detached: bool,
}

/// How a span ended, as far as its fate and its children's are concerned.
#[derive(Clone, Copy)]
pub enum Outcome {
    /// It returned or yielded.
    Returned,
    /// An exception left it (`detached`: see [`Unsettled::detached`]).
    Raised {
        token: Option<ExcToken>,
        detached: bool,
    },
}

/// The per-thread lists.
#[derive(Default)]
pub struct Fates {
    pub waiting: Vec<Waiting>,
    pub unsettled: Vec<Unsettled>,
}

/// Whether a child's exception `a` is the one its ancestor ended by (`b`); unknown on
/// either side counts as the same (an exception that passes through frames is the rule).
fn same(a: Option<ExcToken>, b: Option<ExcToken>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.same(b),
        _ => true,
    }
}

/// Gives the span at `index` of `batch` its fate.
fn stamp(batch: &mut SpanBatch, index: usize, fate: ExceptionFate) {
    if let Some(span) = batch.get_mut(index) {
        span.exception
            .get_or_insert_with(|| Box::new(ExceptionInfo::default()))
            .fate = fate;
    }
}

impl Fates {
    /// True when no span waits: the only check calls that raise nothing pay.
    #[inline(always)]
    pub fn idle(&self) -> bool {
        self.waiting.is_empty() && self.unsettled.is_empty()
    }

    /// The span `span_id` (child of `parent`, at `index` in `batch` when recorded) ended
    /// with `outcome`: settles the spans awaiting it, and makes it wait when it raised.
    pub fn ended(
        &mut self,
        batch: &mut SpanBatch,
        index: Option<usize>,
        span_id: u64,
        parent: u64,
        session_key: u64,
        outcome: Outcome,
    ) {
        let raised = match outcome {
            Outcome::Returned => None,
            Outcome::Raised { token, .. } => Some(token),
        };
        self.waiting.retain_mut(|w| {
            if w.awaiting != span_id {
                return true;
            }
            match raised {
                Some(token) if same(w.token, token) => {
                    w.awaiting = parent;
                    true
                }
                _ => {
                    stamp(batch, w.index, ExceptionFate::CaughtBy(span_id));
                    false
                }
            }
        });
        if let (Outcome::Raised { token, detached }, Some(index)) = (outcome, index) {
            if !detached && self.waiting.len() < MAX_WAITING {
                self.waiting.push(Waiting {
                    index,
                    awaiting: parent,
                    token,
                    session_key,
                });
            }
        }
    }

    /// A call starts whose parent is `parent`: spans awaiting `parent` whose exception it no
    /// longer handles were caught by it.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn child_starts(&mut self, batch: &mut SpanBatch, parent: u64) {
        if self.waiting.last().is_none_or(|w| w.awaiting != parent) {
            return;
        }
        let handled = exception::handled_token();
        self.waiting.retain(|w| {
            let keep =
                w.awaiting != parent || handled.is_some_and(|h| w.token.is_none_or(|t| t.same(h)));
            if !keep {
                stamp(batch, w.index, ExceptionFate::CaughtBy(parent));
            }
            keep
        });
    }

    /// Spans awaiting `span_id`, a call still open when its session ended, were caught by it
    /// (it went on).
    pub fn open_call_ended(&mut self, batch: &mut SpanBatch, span_id: u64) {
        self.waiting.retain(|w| {
            let keep = w.awaiting != span_id;
            if !keep {
                stamp(batch, w.index, ExceptionFate::CaughtBy(span_id));
            }
            keep
        });
    }

    /// Session `key` (root span `session_span`) ended, by the exception `exc` if any: its
    /// spans awaiting the root span escaped (by that exception) or were caught around the
    /// session's calls; its others (awaiting a call on another thread) stay unknown.
    pub fn session_ended(
        &mut self,
        batch: &mut SpanBatch,
        key: u64,
        session_span: u64,
        exc: Option<ExcToken>,
    ) {
        self.waiting.retain(|w| {
            if w.session_key != key {
                return true;
            }
            if w.awaiting == session_span {
                let fate = match exc {
                    Some(e) if same(w.token, Some(e)) => ExceptionFate::Escaped,
                    _ => ExceptionFate::CaughtBy(session_span),
                };
                stamp(batch, w.index, fate);
            }
            false
        });
    }

    /// Moves the waiting spans out of `old` (about to be handed over) into `new`, with their
    /// previews, so they are written once their fate is known.
    pub fn carry_over(&mut self, old: &mut SpanBatch, new: &mut SpanBatch) {
        let mut order: Vec<usize> = (0..self.waiting.len()).collect();
        order.sort_unstable_by_key(|&k| std::cmp::Reverse(self.waiting[k].index));
        for k in order {
            let i = self.waiting[k].index;
            if i >= old.len() {
                continue;
            }
            let mut span = old.spans.remove(i);
            for r in [&mut span.args, &mut span.ret] {
                *r = match old.text_at(*r) {
                    Some(text) => new.add_text(text),
                    None => Default::default(),
                };
            }
            self.waiting[k].index = new.len();
            new.push(span);
        }
        if !new.is_empty() {
            new.times_in_ticks = old.times_in_ticks;
        }
    }
}
