//! An instance's attributes, read without creating its `__dict__`.
//!
//! Since 3.11 an instance of a plain class keeps its attributes as a values array next to
//! the object ("inline values"), keyed by its class's shared keys, and gets a real dict only
//! when one is asked for. `PyObject_GenericGetDict` is such a request: it creates the dict
//! and moves the values into it for good, so the instance costs more memory and the
//! interpreter's specialised attribute loads on it stop working (a preview of a `Vector`
//! would slow every later `v.x`). This module reads the values array where it lies, through
//! the layouts of CPython's own internal headers:
//! - 3.11: values pointer at `obj - 4` words, dict pointer at `obj - 3` words
//!   (`_PyObject_ValuesPointer`, `_PyObject_ManagedDictPointer`).
//! - 3.12: one word at `obj - 3`, a dict pointer, or the values pointer minus 1 (odd)
//!   (`_PyObject_DictOrValuesPointer`, `_PyDictOrValues_IsValues`).
//! - 3.11/3.12 insertion order: the byte at `values - 2` counts the attributes, and their
//!   indices are the bytes below it (`_PyDictValues_AddToInsertionOrder`).
//! - 3.13: dict pointer at `obj - 3` words; the values follow the object (`tp_basicsize`)
//!   with a header of four bytes (`capacity`, `size`, `embedded`, `valid`), and the
//!   insertion order follows the `capacity` values (`get_insertion_order_array`).
//! - Shared keys (`ht_cached_keys`, a split `PyDictKeysObject`): `dk_log2_index_bytes` at
//!   byte 9, `dk_kind` at 10, `dk_nentries` at 24, the index table at 32, then
//!   `(key, value)` entries of two words.
//!
//! Every index read is checked against the keys' entry count (and on 3.13 the values'
//! capacity) before it is used. On 3.10 (no inline values) and on 3.14+ (layout not yet
//! checked) the generic `__dict__` getter is used.

use pyo3::ffi;

/// Where an instance's attributes are.
pub enum Attributes {
    /// In a dict (borrowed).
    Dict(*mut ffi::PyObject),
    /// Inline, read one at a time.
    Inline(InlineAttrs),
    /// The instance has none yet.
    Empty,
    /// Not a managed-dict instance: ask the generic `__dict__` getter.
    Unmanaged,
}

/// A cursor over an instance's inline attributes. Each step reads the object's layout
/// afresh, so code that runs between steps (a finalizer started by a collection) and
/// changes the instance cannot leave it reading freed memory: the walk just ends early.
pub struct InlineAttrs {
    obj: *mut ffi::PyObject,
    ty: *mut ffi::PyTypeObject,
    /// Position in the insertion order.
    next: usize,
}

impl InlineAttrs {
    /// The next set attribute, as borrowed `(key, value)`; None at the end, or when the
    /// instance no longer keeps its attributes inline.
    ///
    /// # Safety
    /// The GIL is held and the caller keeps the instance alive.
    pub unsafe fn next(&mut self) -> Option<(*mut ffi::PyObject, *mut ffi::PyObject)> {
        if ffi::Py_TYPE(self.obj) != self.ty {
            return None;
        }
        let (dict, values) = managed(self.obj, self.ty, self.obj as *mut usize);
        let values = values.filter(|_| dict.is_null())?;
        let keys = shared_keys(self.ty)?;
        let log2_index_bytes = u32::from(*keys.add(9));
        let entries_n = (*(keys.add(24) as *const isize)).max(0) as usize;
        let entries = keys.add(32 + (1usize << log2_index_bytes)) as *const *mut ffi::PyObject;
        while self.next < values.count {
            let j = self.next as isize;
            self.next += 1;
            let ix = usize::from(*values.order.offset(values.order_step * j));
            if ix >= entries_n || ix >= values.capacity {
                continue;
            }
            let value = *values.slots.add(ix);
            let key = *entries.add(2 * ix);
            if !value.is_null() && !key.is_null() {
                return Some((key, value));
            }
        }
        None
    }

    /// How many set attributes follow (consuming them).
    ///
    /// # Safety
    /// As for [`Self::next`].
    pub unsafe fn count_rest(&mut self) -> usize {
        let mut n = 0;
        while self.next().is_some() {
            n += 1;
        }
        n
    }
}

const MANAGED_DICT: std::os::raw::c_ulong = 1 << 4;
#[cfg(all(Py_3_13, not(Py_3_14)))]
const INLINE_VALUES: std::os::raw::c_ulong = 1 << 2;
const DICT_KEYS_SPLIT: u8 = 2;

/// The attributes of `obj`, an instance of `ty`.
///
/// # Safety
/// The GIL is held and `obj` is a live instance of `ty`.
pub unsafe fn of(obj: *mut ffi::PyObject, ty: *mut ffi::PyTypeObject) -> Attributes {
    let flags = (*ty).tp_flags;
    // Before 3.11 there are no inline values; from 3.14 the layout is not checked yet.
    if cfg!(any(not(Py_3_11), Py_3_14))
        || flags & MANAGED_DICT == 0
        || flags & ffi::Py_TPFLAGS_HEAPTYPE == 0
        || shared_keys(ty).is_none()
    {
        return Attributes::Unmanaged;
    }
    match managed(obj, ty, obj as *mut usize) {
        (dict, _) if !dict.is_null() => Attributes::Dict(dict),
        (_, Some(_)) => Attributes::Inline(InlineAttrs { obj, ty, next: 0 }),
        (_, None) => Attributes::Empty,
    }
}

/// The shared (split) keys of a managed-dict class, if it has them.
///
/// # Safety
/// `ty` is a live heap type.
unsafe fn shared_keys(ty: *mut ffi::PyTypeObject) -> Option<*const u8> {
    // SAFETY: a heap type is a PyHeapTypeObject.
    let keys = (*(ty as *mut ffi::PyHeapTypeObject)).ht_cached_keys as *const u8;
    (!keys.is_null() && *keys.add(10) == DICT_KEYS_SPLIT).then_some(keys)
}

/// The values of an instance in one layout: its values array, its indices in insertion
/// order, and the capacity of the array (indices beyond it are never read).
struct Values {
    slots: *const *mut ffi::PyObject,
    order: *const u8,
    /// Step between successive order bytes (the 3.11/3.12 order grows downwards).
    order_step: isize,
    count: usize,
    capacity: usize,
}

/// The managed dict of `obj` (null when it has none) and, when its attributes are inline,
/// where they are.
#[cfg(all(Py_3_11, not(Py_3_12)))]
unsafe fn managed(
    _obj: *mut ffi::PyObject,
    _ty: *mut ffi::PyTypeObject,
    words: *mut usize,
) -> (*mut ffi::PyObject, Option<Values>) {
    let dict = *words.sub(3) as *mut ffi::PyObject;
    let values = *words.sub(4) as *const u8;
    (dict, below_values(values))
}

#[cfg(all(Py_3_12, not(Py_3_13)))]
unsafe fn managed(
    _obj: *mut ffi::PyObject,
    _ty: *mut ffi::PyTypeObject,
    words: *mut usize,
) -> (*mut ffi::PyObject, Option<Values>) {
    let word = *words.sub(3);
    if word & 1 == 0 {
        return (word as *mut ffi::PyObject, None);
    }
    (std::ptr::null_mut(), below_values((word + 1) as *const u8))
}

/// 3.11/3.12: the values array at `values` (null: none), its insertion order below it.
#[cfg(all(Py_3_11, not(Py_3_13)))]
unsafe fn below_values(values: *const u8) -> Option<Values> {
    if values.is_null() {
        return None;
    }
    // The prefix (its size at values[-1]) holds the count at values[-2] and the order
    // below it, so the count is below the prefix size.
    let prefix = usize::from(*values.sub(1));
    let count = usize::from(*values.sub(2)).min(prefix.saturating_sub(2));
    Some(Values {
        slots: values as *const *mut ffi::PyObject,
        order: values.sub(3),
        order_step: -1,
        count,
        capacity: usize::MAX,
    })
}

#[cfg(all(Py_3_13, not(Py_3_14)))]
unsafe fn managed(
    obj: *mut ffi::PyObject,
    ty: *mut ffi::PyTypeObject,
    words: *mut usize,
) -> (*mut ffi::PyObject, Option<Values>) {
    let dict = *words.sub(3) as *mut ffi::PyObject;
    if !dict.is_null() || (*ty).tp_flags & INLINE_VALUES == 0 {
        return (dict, None);
    }
    let header = (obj as *const u8).offset((*ty).tp_basicsize);
    let (capacity, count, valid) = (*header, *header.add(1), *header.add(3));
    if valid == 0 {
        return (dict, None);
    }
    let slots = header.add(8) as *const *mut ffi::PyObject;
    let values = Values {
        slots,
        order: slots.add(usize::from(capacity)) as *const u8,
        order_step: 1,
        count: usize::from(count.min(capacity)),
        capacity: usize::from(capacity),
    };
    (dict, Some(values))
}

#[cfg(any(not(Py_3_11), Py_3_14))]
unsafe fn managed(
    _obj: *mut ffi::PyObject,
    _ty: *mut ffi::PyTypeObject,
    _words: *mut usize,
) -> (*mut ffi::PyObject, Option<Values>) {
    (std::ptr::null_mut(), None)
}
