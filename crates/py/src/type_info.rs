//! What a preview needs to know about a type (how its instances are shown, its rendered
//! name, whether it keeps `object.__repr__`, and its `__slots__` members with the
//! sensitivity of each member name), computed once per type and cached.
//!
//! An entry is keyed by the type's address and holds a strong reference to the type, so the
//! address cannot be reused by another type while the entry exists. A type's members (its
//! `__slots__` layout) never change after creation; its name can, so an entry is computed
//! again when the type's `tp_version_tag` changed to another valid tag (a tag of 0, which
//! CPython gives a modified type until its next lookup, keeps the entry).

use crate::address_map::{self, AddressMap};
use crate::gil_cell::GilCell;
use crate::type_name;
use ferrotrace_core::preview::{class_marker, json_key, object_at_prefix, typed_object_start};
use ferrotrace_core::redact::Redactor;
use pyo3::ffi;
use std::ffi::CStr;
use std::rc::Rc;

/// More entries than this and the cache starts over (classes created in a loop).
const MAX_ENTRIES: usize = 4096;

/// `T_OBJECT` members (an object or None), as older classes and extensions declare them.
const T_OBJECT: std::os::raw::c_int = 6;

/// One `__slots__` member.
pub struct SlotField {
    /// The member (attribute) name as a JSON object key, ready to write.
    pub key: String,
    /// Byte offset of the object pointer in the instance.
    pub offset: isize,
    /// The member name is a sensitive key.
    pub sensitive: bool,
}

/// How instances of a type without a tp_flags category (int, str, bytes, list, tuple, dict,
/// type) are previewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `float` or a subclass.
    Float,
    /// `bytearray` or a subclass.
    ByteArray,
    /// `set`, `frozenset` or a subclass.
    Set,
    /// Exactly `function`.
    Function,
    /// Exactly `module`.
    Module,
    /// Anything else: by the preview mode.
    Object,
}

/// The cached facts about one type.
pub struct TypeInfo {
    /// How its instances are previewed.
    pub kind: Kind,
    /// The type keeps `object.__repr__`, so its repr is `<module.QualName object at 0x…>`
    /// and can be written without running user code.
    pub default_repr: bool,
    /// The start of that repr as JSON text (see [`object_at_prefix`]).
    pub repr_prefix: String,
    /// The start of its preview by fields as JSON text (see [`typed_object_start`]).
    pub fields_start: String,
    /// The type itself shown as a value, as JSON text (see [`class_marker`]).
    pub class_marker: String,
    /// Writable object members of every heap type in the MRO, except dunder names.
    pub slots: Vec<SlotField>,
}

struct Entry {
    /// A strong reference, released when the entry is dropped.
    ty: *mut ffi::PyTypeObject,
    version: u32,
    generation: u32,
    info: Rc<TypeInfo>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // SAFETY: entries live in a GIL-protected cache and are dropped with the GIL held;
        // `ty` is the reference taken when the entry was made.
        unsafe { ffi::Py_DECREF(self.ty as *mut ffi::PyObject) };
    }
}

/// Slots of the cache's front table (a power of two): enough that the dozen types a
/// program previews most seldom share a slot (with 32, two of deltablue's hot types did).
const RECENT: usize = 256;

/// The entries, with a direct-mapped table in front of them: a program's previews ask for
/// the same few types again and again, and a slot is cheaper than a hash lookup.
struct Cache {
    entries: AddressMap<Entry>,
    /// Copies of recently asked-for entries, by [`slot`]; cleared with `entries`, so the
    /// type each names is kept alive by its entry.
    recent: Box<[Option<RecentEntry>; RECENT]>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            entries: AddressMap::default(),
            recent: Box::new(std::array::from_fn(|_| None)),
        }
    }
}

/// The front-table slot of the type at `addr`.
fn slot(addr: usize) -> usize {
    (address_map::mix(addr) >> (64 - RECENT.trailing_zeros())) as usize
}

struct RecentEntry {
    ty: usize,
    version: u32,
    generation: u32,
    info: Rc<TypeInfo>,
}

impl RecentEntry {
    fn of(e: &Entry) -> Self {
        RecentEntry {
            ty: e.ty as usize,
            version: e.version,
            generation: e.generation,
            info: Rc::clone(&e.info),
        }
    }

    /// The entry is still right for `ty` at `version` under `generation`.
    fn fits(&self, ty: usize, version: u32, generation: u32) -> bool {
        self.ty == ty && (version == 0 || self.version == version) && self.generation == generation
    }
}

static CACHE: GilCell<Option<Cache>> = GilCell::new(None);

/// The facts about `ty` under the configuration `generation` (whose redactor judges member
/// names).
///
/// # Safety
/// The GIL is held and `ty` is a live type object. Runs no user code.
#[inline(always)]
pub unsafe fn get(
    ty: *mut ffi::PyTypeObject,
    redactor: &Redactor,
    generation: u32,
) -> Rc<TypeInfo> {
    // The front table answers nearly every call; it is checked here, inline, and the rest
    // (with its many registers to save) is called only when it misses.
    if let Some(cache) = CACHE.get() {
        if let Some(recent) = &cache.recent[slot(ty as usize)] {
            if recent.fits(ty as usize, (*ty).tp_version_tag, generation) {
                return Rc::clone(&recent.info);
            }
        }
    }
    get_missed(ty, redactor, generation)
}

/// [`get`] when the front table does not hold `ty`.
///
/// # Safety
/// As for [`get`].
#[inline(never)]
unsafe fn get_missed(
    ty: *mut ffi::PyTypeObject,
    redactor: &Redactor,
    generation: u32,
) -> Rc<TypeInfo> {
    let version = (*ty).tp_version_tag;
    let cache = CACHE.get().get_or_insert_with(Cache::default);
    let at = slot(ty as usize);
    if let Some(e) = cache.entries.get(&(ty as usize)) {
        let recent = RecentEntry::of(e);
        if recent.fits(ty as usize, version, generation) {
            let info = Rc::clone(&recent.info);
            cache.recent[at] = Some(recent);
            return info;
        }
    }
    let info = Rc::new(compute(ty, redactor));
    // Entries released when the cache starts over are dropped last: dropping one may free a
    // class, and a weakref callback on it may run Python code that previews (and so uses
    // the cache) again.
    let released = if cache.entries.len() >= MAX_ENTRIES {
        cache.recent.fill_with(|| None);
        Some(std::mem::take(&mut cache.entries))
    } else {
        None
    };
    ffi::Py_INCREF(ty as *mut ffi::PyObject);
    let entry = Entry {
        ty,
        version,
        generation,
        info: Rc::clone(&info),
    };
    cache.recent[at] = Some(RecentEntry::of(&entry));
    // A replaced entry (same type, new version) holds a reference to that same type, which
    // the new entry keeps alive, so dropping it here frees nothing.
    cache.entries.insert(ty as usize, entry);
    drop(released);
    info
}

unsafe fn compute(ty: *mut ffi::PyTypeObject, redactor: &Redactor) -> TypeInfo {
    let name = type_name::qualified(ty);
    TypeInfo {
        kind: kind(ty),
        repr_prefix: object_at_prefix(&name),
        fields_start: typed_object_start(&name),
        class_marker: class_marker(&name),
        default_repr: (*ty).tp_repr.map(|f| f as usize)
            == (*std::ptr::addr_of!(ffi::PyBaseObject_Type))
                .tp_repr
                .map(|f| f as usize),
        slots: slots(ty, redactor),
    }
}

unsafe fn kind(ty: *mut ffi::PyTypeObject) -> Kind {
    let is = |base: *mut ffi::PyTypeObject| ffi::PyType_IsSubtype(ty, base) != 0;
    if ty == std::ptr::addr_of_mut!(ffi::PyFunction_Type) {
        Kind::Function
    } else if ty == std::ptr::addr_of_mut!(ffi::PyModule_Type) {
        Kind::Module
    } else if is(std::ptr::addr_of_mut!(ffi::PyFloat_Type)) {
        Kind::Float
    } else if is(std::ptr::addr_of_mut!(ffi::PyByteArray_Type)) {
        Kind::ByteArray
    } else if is(std::ptr::addr_of_mut!(ffi::PySet_Type))
        || is(std::ptr::addr_of_mut!(ffi::PyFrozenSet_Type))
    {
        Kind::Set
    } else {
        Kind::Object
    }
}

unsafe fn slots(ty: *mut ffi::PyTypeObject, redactor: &Redactor) -> Vec<SlotField> {
    let mut out = Vec::new();
    let mro = (*ty).tp_mro;
    if mro.is_null() || ffi::PyTuple_Check(mro) == 0 {
        return out;
    }
    for i in 0..ffi::PyTuple_GET_SIZE(mro) {
        let base = ffi::PyTuple_GET_ITEM(mro, i) as *mut ffi::PyTypeObject;
        if ffi::PyType_HasFeature(base, ffi::Py_TPFLAGS_HEAPTYPE) == 0 {
            continue;
        }
        let mut m = (*base).tp_members;
        // SAFETY: tp_members is null or an array ended by an entry with a null name.
        while !m.is_null() && !(*m).name.is_null() {
            let def = &*m;
            m = m.add(1);
            if (def.type_code != ffi::Py_T_OBJECT_EX && def.type_code != T_OBJECT)
                || def.flags & ffi::Py_READONLY != 0
            {
                continue;
            }
            let name = CStr::from_ptr(def.name).to_string_lossy().into_owned();
            if name.starts_with("__") {
                continue;
            }
            out.push(SlotField {
                sensitive: redactor.is_sensitive_key(&name),
                key: json_key(&name),
                offset: def.offset,
            });
        }
    }
    out
}
