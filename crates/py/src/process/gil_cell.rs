//! Global state serialised by the GIL instead of a lock.

use std::cell::UnsafeCell;

/// A value that is only read or written while the calling thread holds the GIL.
///
/// The GIL already serialises every entry into the hook and into the `_native` functions,
/// so a second lock would only add cost to the hot path.
pub struct GilCell<T>(UnsafeCell<T>);

// SAFETY: every access goes through `get`, whose contract requires the GIL, and the GIL
// admits one thread at a time.
unsafe impl<T> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        GilCell(UnsafeCell::new(value))
    }

    /// Mutable access to the value.
    ///
    /// # Safety
    /// The caller holds the GIL and does not keep the reference across a call that could run
    /// Python code (which may release the GIL and let another thread in).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        &mut *self.0.get()
    }
}
