//! Object keys (attribute names, dict-literal keys) already judged under one configuration,
//! by the address of their interned `str` object: the same few interned keys recur in every
//! preview of an object-heavy program, and a pointer lookup costs far less than hashing and
//! comparing the text, then escaping it again.
//!
//! An entry holds no reference to its key (recording never keeps a program's object alive):
//! it also stores the key's length and cached hash, and serves only a live key at the same
//! address with the same length and hash. A key freed and another interned `str` allocated
//! at its address is served only if it also has the same length and the same 64-bit hash,
//! which for different text is a hash collision. A `str` is immutable, so a verdict never
//! goes stale within a configuration generation.

use crate::capture::address_map::AddressMap;
use crate::process::gil_cell::GilCell;
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
    /// The key's length and hash, which must match the key asked about.
    length: ffi::Py_ssize_t,
    hash: ffi::Py_hash_t,
    generation: u32,
    verdict: KeyVerdict,
}

/// The length and cached hash of an exact `str` (interned strings always have their hash).
///
/// # Safety
/// `key` is a live exact `str`.
#[inline(always)]
unsafe fn shape(key: *mut ffi::PyObject) -> (ffi::Py_ssize_t, ffi::Py_hash_t) {
    // SAFETY: an exact str is a PyASCIIObject; its length and hash fields are read only.
    let head = &*(key as *mut ffi::PyASCIIObject);
    (head.length, head.hash)
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
/// The GIL is held and `key` is a live [`cacheable`] key.
#[inline]
pub unsafe fn get(key: *mut ffi::PyObject, generation: u32) -> Option<KeyVerdict> {
    let cache = CACHE.get().as_ref()?;
    let e = cache.get(&(key as usize))?;
    let (length, hash) = shape(key);
    (e.generation == generation && e.length == length && e.hash == hash && hash != -1)
        .then(|| e.verdict.clone())
}

/// Remembers the verdict on `key` (a [`cacheable`] key) under configuration `generation`.
///
/// # Safety
/// The GIL is held and `key` is a live [`cacheable`] key.
pub unsafe fn put(key: *mut ffi::PyObject, generation: u32, verdict: KeyVerdict) {
    let cache = CACHE.get().get_or_insert_with(Cache::default);
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    let (length, hash) = shape(key);
    cache.insert(
        key as usize,
        Entry {
            length,
            hash,
            generation,
            verdict,
        },
    );
}
