//! Maps keyed by an object's address, for caches that hold no reference to their key: each
//! entry also records what identifies the object it was made for (a type's version tag, a
//! string's length and hash) and is used only for a live object that still matches.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from an object's address to `V`.
pub type AddressMap<V> = HashMap<usize, V, BuildHasherDefault<AddressHasher>>;

/// Object addresses are already well spread; one multiply mixes the low bits.
#[derive(Default)]
pub struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = mix(n);
    }
}

/// An object address with its bits spread into the high ones (one multiply).
#[inline(always)]
pub fn mix(addr: usize) -> u64 {
    (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
