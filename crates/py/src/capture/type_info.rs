//! What a preview needs to know about a type (how its instances are shown, its rendered
//! name, whether it keeps `object.__repr__`, and its `__slots__` members with the
//! sensitivity of each member name), computed once per type and cached.
//!
//! An entry holds no reference to its type (recording never keeps a class alive): it is
//! keyed by the type's address and its `tp_version_tag`, and serves only a type with both.
//! CPython hands out version tags from an interpreter-wide counter that only grows, so a
//! type freed and another allocated at the same address never share a tag; a modified type
//! gets a new tag on its next lookup, so a renamed class is computed again. A type with no
//! valid tag (0: modified and not looked up since, or out of tags) is asked for one by a
//! method-cache lookup; when it still has none its facts are computed and not cached.

use crate::capture::address_map::{self, AddressMap};
use crate::capture::type_name;
use crate::process::gil_cell::GilCell;
use ferrotrace_core::preview::{
    class_marker, json_key, name_marker, object_at_prefix, typed_object_start,
};
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
    /// An instance named instead of shown (`"<module.QualName>"`, see [`name_marker`]).
    pub name_marker: String,
    /// Writable object members of every heap type in the MRO, except dunder names.
    pub slots: Vec<SlotField>,
}

extern "C" {
    /// CPython's method-cache lookup (exported on 3.10–3.13): looking a name up on a type
    /// assigns the type a version tag when it has none and one can be given.
    fn _PyType_Lookup(ty: *mut ffi::PyTypeObject, name: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Slots of the cache's front table (a power of two): enough that the dozen types a
/// program previews most seldom share a slot (with 32, two of deltablue's hot types did).
const RECENT: usize = 256;

/// The entries, with a direct-mapped table in front of them: a program's previews ask for
/// the same few types again and again, and a slot is cheaper than a hash lookup.
struct Cache {
    entries: AddressMap<Entry>,
    /// Copies of recently asked-for entries, by [`slot`].
    recent: Box<[Option<Entry>; RECENT]>,
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

/// The facts about the type that had address `ty` and version tag `version` (never 0)
/// when they were computed under configuration `generation`.
#[derive(Clone)]
struct Entry {
    ty: usize,
    version: u32,
    generation: u32,
    info: Rc<TypeInfo>,
}

impl Entry {
    /// The entry describes the live type at `ty` whose tag is `version`, under `generation`.
    #[inline(always)]
    fn fits(&self, ty: usize, version: u32, generation: u32) -> bool {
        self.ty == ty && self.version == version && self.generation == generation
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
    let version = version_tag(ty);
    if version == 0 {
        return Rc::new(compute(ty, redactor));
    }
    let cache = CACHE.get().get_or_insert_with(Cache::default);
    let at = slot(ty as usize);
    if let Some(e) = cache.entries.get(&(ty as usize)) {
        if e.fits(ty as usize, version, generation) {
            cache.recent[at] = Some(e.clone());
            return Rc::clone(&e.info);
        }
    }
    if cache.entries.len() >= MAX_ENTRIES {
        cache.recent.fill_with(|| None);
        cache.entries.clear();
    }
    let entry = Entry {
        ty: ty as usize,
        version,
        generation,
        info: Rc::new(compute(ty, redactor)),
    };
    let info = Rc::clone(&entry.info);
    cache.recent[at] = Some(entry.clone());
    cache.entries.insert(ty as usize, entry);
    info
}

/// The version tag of `ty`, assigned now by a method-cache lookup when it has none; 0 when
/// CPython cannot give it one.
///
/// # Safety
/// The GIL is held and `ty` is a live type object. The lookup reads the dictionaries of
/// the MRO with a `str` key and runs no user code.
unsafe fn version_tag(ty: *mut ffi::PyTypeObject) -> u32 {
    if (*ty).tp_version_tag == 0 {
        static NAME: GilCell<usize> = GilCell::new(0);
        let name = NAME.get();
        if *name == 0 {
            *name = ffi::PyUnicode_InternFromString(c"__repr__".as_ptr()) as usize;
        }
        if *name != 0 {
            _PyType_Lookup(ty, *name as *mut ffi::PyObject);
            ffi::PyErr_Clear();
        }
    }
    (*ty).tp_version_tag
}

unsafe fn compute(ty: *mut ffi::PyTypeObject, redactor: &Redactor) -> TypeInfo {
    let name = type_name::qualified(ty);
    TypeInfo {
        kind: kind(ty),
        repr_prefix: object_at_prefix(&name),
        fields_start: typed_object_start(&name),
        class_marker: class_marker(&name),
        name_marker: name_marker(&name),
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
