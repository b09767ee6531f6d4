//! Appending to a `Vec` on the hot path without a copy through the stack.
//!
//! `Vec::push` takes a value that is already built and then checks the capacity; its
//! out-of-line growth call forces every field of the value onto the stack, to be copied
//! into place afterwards. A [`Room`] makes the room first, so the caller builds the value
//! after it and the stores go straight into the vector.

use std::mem::MaybeUninit;

/// A vector with room for one more element.
pub struct Room<'a, T>(&'a mut Vec<T>);

impl<'a, T> Room<'a, T> {
    /// Makes room in `v` for one more element.
    #[inline(always)]
    pub fn make(v: &'a mut Vec<T>) -> Self {
        if v.len() == v.capacity() {
            v.reserve(1);
        }
        Room(v)
    }

    /// Appends `value` in the room made.
    #[inline(always)]
    pub fn fill(self, value: T) {
        let v = self.0;
        let len = v.len();
        let slot: *mut MaybeUninit<T> = v.spare_capacity_mut().as_mut_ptr();
        // SAFETY: `make` left room for one element and `self` (consumed here) held the only
        // reference to `v` since, so `slot` is allocated and unused; once written it is
        // initialised, and counting it makes it part of `v`.
        unsafe {
            slot.write(MaybeUninit::new(value));
            v.set_len(len + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_grows() {
        let mut v = Vec::new();
        for i in 0..100 {
            Room::make(&mut v).fill(i * 2);
        }
        assert_eq!(v.len(), 100);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i * 2));
    }
}
