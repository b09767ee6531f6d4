//! The sampled sessions that need an interpreter-wide backend (`sys.monitoring` events, the
//! frame-evaluation function) switched on: the first claim switches it on, the last one off.
//! A session claims on its thread, which counts its claims in its recorder (`hook_refs`) and
//! so wants calls delivered.

use crate::process::gil_cell::GilCell;
use crate::recorder::{self, ThreadRecorder};
use crate::session;

/// A count of claims on one backend and the switch it turns.
pub struct Claims {
    count: GilCell<u32>,
    /// Switches the backend on (`true`) or off; called with the GIL held.
    switch: unsafe fn(bool),
}

impl Claims {
    /// No claims yet on the backend that `switch` turns on and off.
    pub const fn new(switch: unsafe fn(bool)) -> Self {
        Claims {
            count: GilCell::new(0),
            switch,
        }
    }

    /// One more claim; the first switches the backend on.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn claim(&self) {
        let count = self.count.get();
        *count += 1;
        if *count == 1 {
            (self.switch)(true);
        }
    }

    /// One claim fewer; the last switches the backend off.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn unclaim(&self) {
        let count = self.count.get();
        *count = count.saturating_sub(1);
        if *count == 0 {
            (self.switch)(false);
        }
    }

    /// Drops every claim and switches the backend off.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn drop_all(&self) {
        *self.count.get() = 0;
        (self.switch)(false);
    }

    /// One more sampled session on the thread of `rec`: the thread wants calls, and the
    /// backend is on.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn retain(&self, rec: &mut ThreadRecorder) {
        rec.hook_refs += 1;
        self.claim();
    }

    /// A session on the thread of `rec` ended; the last claim in the process switches the
    /// backend off.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn release(&self, rec: &mut ThreadRecorder) {
        if rec.hook_refs == 0 {
            return;
        }
        rec.hook_refs -= 1;
        self.unclaim();
    }

    /// Drops every claim, the thread's and the process's, and switches the backend off (at
    /// shutdown).
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn remove(&self, rec: &mut ThreadRecorder) {
        rec.hook_refs = 0;
        self.drop_all();
    }

    /// True when the backend delivers the calling thread's calls to ferrotrace.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn active_here(&self) -> bool {
        *self.count.get() > 0
            && (session::process_wide_sampled()
                || recorder::existing().is_some_and(|r| r.hook_refs > 0))
    }
}
