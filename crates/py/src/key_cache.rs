//! Object keys (attribute names, dict-literal keys) already judged under one configuration,
//! by the address of their interned `str` object: the same few interned keys recur in every
//! preview of an object-heavy program, and a pointer lookup costs far less than hashing and
//! comparing the text, then escaping it again.
//!
//! An entry holds a strong reference to its key, so the address cannot be reused by another
//! object while the entry exists; a `str` is immutable, so its verdict never goes stale
//! within a configuration generation. Releasing a `str` runs no Python code (no finalizer,
//! no weak references), so clearing the cache is safe at any point.

use crate::address_map::AddressMap;
use crate::gil_cell::GilCell;
use pyo3::ffi;
use std::rc::Rc;

/// More entries than this and the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// What a preview writes for one key.
#[derive(Clone)]
pub struct KeyVerdict {
    /// The key as a JSON object key with its colon, ready to write.
    pub rendered: Rc<str>,
    /// Values under this key are redacted.
    pub sensitive: bool,
}

struct Entry {
    /// A strong reference, released when the entry is dropped.
    key: *mut ffi::PyObject,
    generation: u32,
    verdict: KeyVerdict,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // SAFETY: entries live in a GIL-protected cache and are dropped with the GIL held;
        // `key` is the reference taken when the entry was made.
        unsafe { ffi::Py_DECREF(self.key) };
    }
}

type Cache = AddressMap<Entry>;

static CACHE: GilCell<Option<Cache>> = GilCell::new(None);

/// True when `key` is an exact, interned `str`: the kind of key worth caching by address.
///
/// # Safety
/// The GIL is held and `key` is a live object.
#[inline]
pub unsafe fn cacheable(key: *mut ffi::PyObject) -> bool {
    #[cfg(not(Py_3_14))]
    {
        // SAFETY: an exact str is a PyASCIIObject; its state word is read, not written.
        ffi::PyUnicode_CheckExact(key) != 0
            && (*(key as *mut ffi::PyASCIIObject)).interned() != ffi::SSTATE_NOT_INTERNED
    }
    #[cfg(Py_3_14)]
    {
        let _ = key;
        false
    }
}

/// The verdict on `key` (a [`cacheable`] key) under configuration `generation`, if known.
///
/// # Safety
/// The GIL is held.
#[inline]
pub unsafe fn get(key: *mut ffi::PyObject, generation: u32) -> Option<KeyVerdict> {
    let cache = CACHE.get().as_ref()?;
    let e = cache.get(&(key as usize))?;
    (e.generation == generation).then(|| e.verdict.clone())
}

/// Remembers the verdict on `key` (a [`cacheable`] key) under configuration `generation`.
///
/// # Safety
/// The GIL is held and `key` is a live object.
pub unsafe fn put(key: *mut ffi::PyObject, generation: u32, verdict: KeyVerdict) {
    let cache = CACHE.get().get_or_insert_with(Cache::default);
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    ffi::Py_INCREF(key);
    cache.insert(
        key as usize,
        Entry {
            key,
            generation,
            verdict,
        },
    );
}
