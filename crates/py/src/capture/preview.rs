//! Previews of Python objects, written through the core [`PreviewWriter`].
//!
//! Safe mode (`FERROTRACE_PREVIEW=safe`, the default) never runs user code: built-in types
//! and their subclasses are read through their C storage (never through `__repr__`,
//! `__iter__`, `__len__`, `__eq__` or `__hash__`). Any other object whose class keeps
//! `object.__repr__` is written as that repr would be (`<mod.Qual object at 0x…>`, formatted
//! here); one whose class defines its own `__repr__` (a dataclass, a model) is shown by its
//! fields, one level deep: its qualified type name plus its instance attributes (read where
//! they lie, see [`instance_attrs`]: no descriptors, and no `__dict__` is created) and
//! `__slots__` values (read at the member offsets), each a scalar (None, bool, int, float,
//! str, bytes) shown as such, a container as its short form (`"<list len=3>"`) and any other
//! object as its type name (`"<mod.Name>"`); an exception's `args` likewise. Fields mode
//! shows every such object by its fields, walked to `max_depth`. Repr mode calls `repr()` for
//! those other objects, with the caller's re-entrancy flag set; its exception is cleared.
//!
//! Every container is bounded by `max_items`, nesting by `max_depth` (deeper containers
//! become a `"<list len=N>"` summary), and a container that contains itself is written as a
//! `"<cycle ...>"` marker.

use crate::capture::instance_attrs::{self, Attributes};
use crate::capture::key_cache::{self, KeyVerdict};
use crate::capture::type_info::{self, Kind, TypeInfo};
use crate::capture::type_name;
use ferrotrace_core::append;
use ferrotrace_core::config::PreviewMode;
use ferrotrace_core::preview::{json_key, PreviewWriter, REDACTION_SLACK};
use pyo3::ffi;
use std::borrow::Cow;

/// Integers wider than this are shown as a size marker: converting them to decimal costs
/// quadratic time.
const MAX_INT_BITS: usize = 4096;

/// Containers open at once are at most `max_depth` (≤ 32) plus the argument list.
const MAX_OPEN: usize = 40;

/// One preview in progress.
pub struct Walker<'w, 'a> {
    w: &'w mut PreviewWriter<'a>,
    mode: PreviewMode,
    /// The configuration generation (type facts cached under another are recomputed).
    generation: u32,
    /// Containers being written, for the cycle check (the caller's reused, empty vector).
    open: &'w mut Vec<*mut ffi::PyObject>,
}

impl<'w, 'a> Walker<'w, 'a> {
    /// A walker writing through `w`, under the configuration `generation`, keeping the
    /// containers it is inside in `open`.
    pub fn new(
        w: &'w mut PreviewWriter<'a>,
        mode: PreviewMode,
        generation: u32,
        open: &'w mut Vec<*mut ffi::PyObject>,
    ) -> Self {
        open.clear();
        Walker {
            w,
            mode,
            generation,
            open,
        }
    }

    /// The writer, for the caller's own structure (the argument object).
    pub fn writer(&mut self) -> &mut PreviewWriter<'a> {
        self.w
    }

    /// Writes the preview of `obj` found at nesting `depth` (0: an argument or return value).
    ///
    /// # Safety
    /// The GIL is held, `obj` is a live object and no exception is set. In repr mode the
    /// caller has set its re-entrancy flag.
    #[inline(always)]
    pub unsafe fn value(&mut self, obj: *mut ffi::PyObject, depth: usize) {
        // The commonest values are written here, without a call into the general case.
        if obj == ffi::Py_None() {
            return self.w.null();
        }
        if !obj.is_null() {
            let ty = ffi::Py_TYPE(obj);
            if ty == std::ptr::addr_of_mut!(ffi::PyLong_Type) {
                if let Some(v) = compact_int(obj) {
                    return self.w.int(v);
                }
            } else if ty == std::ptr::addr_of_mut!(ffi::PyFloat_Type) {
                // SAFETY: a float stores its value in ob_fval.
                return self.w.float(ffi::PyFloat_AS_DOUBLE(obj));
            }
        }
        self.any_value(obj, depth)
    }

    /// [`Self::value`] for any object.
    #[inline(never)]
    unsafe fn any_value(&mut self, obj: *mut ffi::PyObject, depth: usize) {
        if obj.is_null() {
            self.w.marker("<unset>");
            return;
        }
        if obj == ffi::Py_None() {
            return self.w.null();
        }
        let ty = ffi::Py_TYPE(obj);
        // Built-in categories CPython marks in tp_flags first: one load decides them.
        let flags = (*ty).tp_flags;
        if flags & ffi::Py_TPFLAGS_LONG_SUBCLASS != 0 {
            if ty == std::ptr::addr_of_mut!(ffi::PyBool_Type) {
                return self.w.bool(obj == ffi::Py_True());
            }
            return self.int(obj);
        }
        if flags & ffi::Py_TPFLAGS_UNICODE_SUBCLASS != 0 {
            return self.str(obj);
        }
        if flags & ffi::Py_TPFLAGS_BYTES_SUBCLASS != 0 {
            let data = ffi::PyBytes_AsString(obj) as *const u8;
            let len = ffi::PyBytes_Size(obj).max(0) as usize;
            return self.bytes("b'", data, len, "'");
        }
        if flags & (ffi::Py_TPFLAGS_LIST_SUBCLASS | ffi::Py_TPFLAGS_TUPLE_SUBCLASS) != 0 {
            return self.sequence(obj, flags & ffi::Py_TPFLAGS_LIST_SUBCLASS != 0, depth);
        }
        if flags & ffi::Py_TPFLAGS_DICT_SUBCLASS != 0 {
            return self.dict(obj, depth);
        }
        if flags & ffi::Py_TPFLAGS_TYPE_SUBCLASS != 0 {
            let class = type_info::get(
                obj as *mut ffi::PyTypeObject,
                self.w.redactor(),
                self.generation,
            );
            return self.w.rendered(&class.class_marker);
        }
        if ty == std::ptr::addr_of_mut!(ffi::PyFloat_Type) {
            // SAFETY: a float instance stores its value in ob_fval.
            return self.w.float(ffi::PyFloat_AS_DOUBLE(obj));
        }
        let info = type_info::get(ty, self.w.redactor(), self.generation);
        match info.kind {
            // SAFETY: a float subclass instance stores its value in ob_fval.
            Kind::Float => self.w.float(ffi::PyFloat_AS_DOUBLE(obj)),
            Kind::ByteArray => {
                let data = ffi::PyByteArray_AsString(obj) as *const u8;
                let len = ffi::PyByteArray_Size(obj).max(0) as usize;
                self.bytes("bytearray(b'", data, len, "')")
            }
            Kind::Set => self.set(obj, depth),
            Kind::Function => {
                // SAFETY: CPython keeps a function's __qualname__ a str (its setter checks).
                let q = (*(obj as *mut ffi::PyFunctionObject)).func_qualname;
                self.named("function", q)
            }
            Kind::Module => {
                // SAFETY: reads `__name__` from the module's own dict; no user code runs.
                let name = ffi::PyModule_GetNameObject(obj);
                self.named("module", name);
                ffi::Py_XDECREF(name);
            }
            Kind::Object => match self.mode {
                PreviewMode::Repr => self.repr(obj),
                PreviewMode::Fields => self.object(obj, &info, depth),
                PreviewMode::Safe if info.default_repr => {
                    self.w.object_at(&info.repr_prefix, obj as usize)
                }
                PreviewMode::Safe => self.object(obj, &info, depth),
            },
        }
    }

    /// `"<kind name>"` for functions and modules; `name` is null or a `str`.
    unsafe fn named(&mut self, kind: &str, name: *mut ffi::PyObject) {
        let text = if name.is_null() || ffi::PyUnicode_Check(name) == 0 {
            ffi::PyErr_Clear();
            None
        } else {
            read_str(name, self.w.limits().max_str)
        };
        match text {
            Some((n, _)) => self.w.marker(&format!("<{kind} {n}>")),
            None => self.w.marker(&format!("<{kind}>")),
        }
    }

    unsafe fn int(&mut self, obj: *mut ffi::PyObject) {
        if let Some(v) = compact_int(obj) {
            return self.w.int(v);
        }
        let mut overflow = 0;
        // SAFETY: for an int (or subclass) this reads the digits; no __index__ is called.
        let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        if overflow == 0 && (v != -1 || ffi::PyErr_Occurred().is_null()) {
            return self.w.int(v);
        }
        ffi::PyErr_Clear();
        let bits = ffi::_PyLong_NumBits(obj);
        if bits == usize::MAX || bits > MAX_INT_BITS {
            ffi::PyErr_Clear();
            let sign = if overflow < 0 { "-" } else { "" };
            return self.w.marker(&format!("<int {sign}{bits} bits>"));
        }
        // SAFETY: int's own tp_repr (not a subclass override) formats the value in C.
        let text = match (*std::ptr::addr_of_mut!(ffi::PyLong_Type)).tp_repr {
            Some(repr) => repr(obj),
            None => std::ptr::null_mut(),
        };
        match type_name::exact_text(text) {
            Some(digits) => self.w.int_text(&digits),
            None => {
                ffi::PyErr_Clear();
                self.w.marker(&format!("<int {bits} bits>"));
            }
        }
        ffi::Py_XDECREF(text);
    }

    unsafe fn str(&mut self, obj: *mut ffi::PyObject) {
        match read_str(obj, self.w.limits().max_str + REDACTION_SLACK) {
            Some((text, total)) => self.w.str(&text, total),
            None => self.w.marker("<str>"),
        }
    }

    unsafe fn bytes(&mut self, prefix: &str, data: *const u8, len: usize, suffix: &str) {
        if data.is_null() {
            ffi::PyErr_Clear();
            return self.w.marker("<bytes>");
        }
        let window = self.w.limits().max_str + REDACTION_SLACK;
        let take = len.min(window);
        // SAFETY: the object owns `len` bytes at `data`; nothing runs while we read them.
        let raw = std::slice::from_raw_parts(data, take);
        let mut text = String::with_capacity(take + prefix.len() + suffix.len() + 16);
        text.push_str(prefix);
        // Runs of printable bytes are copied whole; the rest written as Python escapes them,
        // until the text is as long as a string preview reads.
        let budget = prefix.len() + window;
        let mut start = 0;
        let mut read = take;
        for (i, &b) in raw.iter().enumerate() {
            if text.len() + (i - start) >= budget {
                read = i;
                break;
            }
            let escape = match b {
                b'\\' => "\\\\",
                b'\'' => "\\'",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x20..=0x7e => continue,
                _ => "",
            };
            // SAFETY: raw[start..i] holds only printable ASCII bytes (0x20..=0x7e), valid UTF-8.
            text.push_str(std::str::from_utf8_unchecked(&raw[start..i]));
            if escape.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                text.push_str("\\x");
                text.push(char::from(HEX[usize::from(b >> 4)]));
                text.push(char::from(HEX[usize::from(b & 15)]));
            } else {
                text.push_str(escape);
            }
            start = i + 1;
        }
        // SAFETY: as above, the bytes after the last escaped one are printable ASCII.
        text.push_str(std::str::from_utf8_unchecked(&raw[start..read]));
        // Everything written above is ASCII: its byte length is its character count.
        let total = if read == len {
            text.push_str(suffix);
            text.len()
        } else {
            text.len() + (len - read)
        };
        self.w.str(&text, total);
    }

    /// Enters a container; false (and a marker written) when it is already open (a cycle)
    /// or too deep.
    unsafe fn enter(&mut self, obj: *mut ffi::PyObject, depth: usize, len: isize) -> bool {
        if self.open.contains(&obj) {
            let name = type_name::short(ffi::Py_TYPE(obj));
            self.w.summary("cycle", &name, None);
            return false;
        }
        if depth >= self.w.limits().max_depth || self.open.len() >= MAX_OPEN {
            let name = type_name::short(ffi::Py_TYPE(obj));
            self.w.summary("", &name, usize::try_from(len).ok());
            return false;
        }
        self.open.push(obj);
        true
    }

    fn leave(&mut self) {
        self.open.pop();
    }

    unsafe fn sequence(&mut self, obj: *mut ffi::PyObject, is_list: bool, depth: usize) {
        let len = if is_list {
            ffi::PyList_GET_SIZE(obj)
        } else {
            ffi::PyTuple_GET_SIZE(obj)
        };
        if !self.enter(obj, depth, len) {
            return;
        }
        let max = self.w.limits().max_items;
        self.w.begin_array();
        let mut i = 0;
        // Re-read the length each time: a repr called in repr mode may shrink the list.
        while i < (max as isize) {
            let len = if is_list {
                ffi::PyList_GET_SIZE(obj)
            } else {
                ffi::PyTuple_GET_SIZE(obj)
            };
            if i >= len {
                break;
            }
            // SAFETY: 0 <= i < len; the item is kept alive while it is written.
            let item = if is_list {
                ffi::PyList_GET_ITEM(obj, i)
            } else {
                ffi::PyTuple_GET_ITEM(obj, i)
            };
            ffi::Py_INCREF(item);
            self.value(item, depth + 1);
            ffi::Py_DECREF(item);
            i += 1;
        }
        let len = if is_list {
            ffi::PyList_GET_SIZE(obj)
        } else {
            ffi::PyTuple_GET_SIZE(obj)
        };
        if len > i {
            self.w.more_items((len - i) as usize);
        }
        self.w.end_array();
        self.leave();
    }

    unsafe fn dict(&mut self, obj: *mut ffi::PyObject, depth: usize) {
        let len = ffi::PyDict_Size(obj);
        if !self.enter(obj, depth, len) {
            return;
        }
        self.w.begin_object();
        self.entries(obj, depth, 0, false);
        self.w.end_object();
        self.leave();
    }

    /// Writes up to `max_items - already` entries of the dict `obj` (and a marker for the
    /// rest) into the open object; `shallow`: the values as [`Self::field`]s.
    unsafe fn entries(
        &mut self,
        obj: *mut ffi::PyObject,
        depth: usize,
        already: usize,
        shallow: bool,
    ) {
        let max = self.w.limits().max_items.saturating_sub(already);
        let mut pos: ffi::Py_ssize_t = 0;
        let (mut k, mut v) = (std::ptr::null_mut(), std::ptr::null_mut());
        let mut shown = 0;
        // SAFETY: PyDict_Next reads the dict's table (also for subclasses) without calling
        // __eq__, __hash__ or __iter__; a dict mutated by a repr (repr mode) ends the loop
        // early at worst.
        while shown < max && ffi::PyDict_Next(obj, &mut pos, &mut k, &mut v) != 0 {
            self.entry(k, v, depth, shallow);
            shown += 1;
        }
        let len = ffi::PyDict_Size(obj).max(0) as usize;
        if len > shown {
            self.w.more_entries(len - shown);
        }
    }

    /// Writes one `key: value` entry of an object at `depth` (the value redacted when the
    /// key is sensitive; `shallow`: written as a [`Self::field`]). `k` and `v` are borrowed;
    /// a reference to each is held while they are written.
    unsafe fn entry(
        &mut self,
        k: *mut ffi::PyObject,
        v: *mut ffi::PyObject,
        depth: usize,
        shallow: bool,
    ) {
        ffi::Py_INCREF(k);
        ffi::Py_INCREF(v);
        if self.key(k) {
            self.w.redacted();
        } else {
            self.item(v, depth, shallow);
        }
        ffi::Py_DECREF(k);
        ffi::Py_DECREF(v);
    }

    /// Writes `v`, an item of a container at `depth`: as a [`Self::field`] when `shallow`,
    /// else by its full preview.
    #[inline(always)]
    unsafe fn item(&mut self, v: *mut ffi::PyObject, depth: usize, shallow: bool) {
        if shallow {
            self.field(v);
        } else {
            self.value(v, depth + 1);
        }
    }

    /// Safe mode's view of a value held by an object: a scalar (None, bool, int, float, str,
    /// bytes) by its preview; a container by its short form (`"<list len=3>"`); a class,
    /// function or module by its marker; any other object by its type name (`"<mod.Name>"`).
    /// Never enters a container or an object, so it needs no cycle check.
    unsafe fn field(&mut self, v: *mut ffi::PyObject) {
        if v == ffi::Py_None() {
            return self.w.null();
        }
        let ty = ffi::Py_TYPE(v);
        let flags = (*ty).tp_flags;
        let written_whole = ffi::Py_TPFLAGS_LONG_SUBCLASS
            | ffi::Py_TPFLAGS_UNICODE_SUBCLASS
            | ffi::Py_TPFLAGS_BYTES_SUBCLASS
            | ffi::Py_TPFLAGS_TYPE_SUBCLASS;
        if flags & written_whole != 0 {
            return self.any_value(v, 0);
        }
        let len = if flags & ffi::Py_TPFLAGS_LIST_SUBCLASS != 0 {
            ffi::PyList_GET_SIZE(v)
        } else if flags & ffi::Py_TPFLAGS_TUPLE_SUBCLASS != 0 {
            ffi::PyTuple_GET_SIZE(v)
        } else if flags & ffi::Py_TPFLAGS_DICT_SUBCLASS != 0 {
            ffi::PyDict_Size(v)
        } else {
            let info = type_info::get(ty, self.w.redactor(), self.generation);
            match info.kind {
                Kind::Float | Kind::Function | Kind::Module => return self.any_value(v, 0),
                Kind::Object => return self.w.rendered(&info.name_marker),
                Kind::ByteArray => ffi::PyByteArray_Size(v),
                Kind::Set => ffi::PySet_Size(v),
            }
        };
        let name = type_name::short(ty);
        self.w.summary("", &name, usize::try_from(len).ok());
    }

    /// Writes a dict key; true when its value must be redacted.
    unsafe fn key(&mut self, k: *mut ffi::PyObject) -> bool {
        if key_cache::cacheable(k) {
            if let Some(v) = key_cache::get(k, self.generation) {
                self.w.key_json(&v.rendered);
                return v.sensitive;
            }
            if let Some((text, _)) = read_str(k, self.w.limits().max_str + REDACTION_SLACK) {
                if let Some(sensitive) = self.w.judge_key(&text) {
                    let verdict = KeyVerdict {
                        rendered: json_key(&text).into(),
                        sensitive,
                    };
                    self.w.key_json(&verdict.rendered);
                    key_cache::put(k, self.generation, verdict);
                    return sensitive;
                }
            }
        }
        if ffi::PyUnicode_Check(k) != 0 {
            return match read_str(k, self.w.limits().max_str + REDACTION_SLACK) {
                Some((text, _)) => self.w.key(&text),
                None => self.w.key("<str>"),
            };
        }
        let text = if k == ffi::Py_None() {
            Cow::Borrowed("None")
        } else if k == ffi::Py_True() {
            Cow::Borrowed("True")
        } else if k == ffi::Py_False() {
            Cow::Borrowed("False")
        } else if ffi::PyLong_Check(k) != 0 {
            let mut overflow = 0;
            let v = ffi::PyLong_AsLongLongAndOverflow(k, &mut overflow);
            ffi::PyErr_Clear();
            if overflow == 0 {
                Cow::Owned(v.to_string())
            } else {
                Cow::Borrowed("<int>")
            }
        } else {
            Cow::Owned(format!("<{}>", type_name::short(ffi::Py_TYPE(k))))
        };
        self.w.key(&text)
    }

    unsafe fn set(&mut self, obj: *mut ffi::PyObject, depth: usize) {
        let len = ffi::PySet_Size(obj);
        if !self.enter(obj, depth, len) {
            return;
        }
        // SAFETY: set's own tp_iter (shared by frozenset) walks the table in C, bypassing a
        // subclass's __iter__; hashing is not involved.
        let iter = match (*std::ptr::addr_of_mut!(ffi::PySet_Type)).tp_iter {
            Some(f) => f(obj),
            None => std::ptr::null_mut(),
        };
        self.w.begin_array();
        let mut shown = 0usize;
        if !iter.is_null() {
            let max = self.w.limits().max_items;
            while shown < max {
                let item = ffi::PyIter_Next(iter);
                if item.is_null() {
                    break;
                }
                self.value(item, depth + 1);
                ffi::Py_DECREF(item);
                shown += 1;
            }
            ffi::Py_DECREF(iter);
        }
        ffi::PyErr_Clear();
        let len = len.max(0) as usize;
        if len > shown {
            self.w.more_items(len - shown);
        }
        self.w.end_array();
        self.leave();
    }

    /// Any other object shown by its fields: `{"__type__": "mod.Qual", field: preview, ...}`.
    unsafe fn object(&mut self, obj: *mut ffi::PyObject, info: &TypeInfo, depth: usize) {
        let ty = ffi::Py_TYPE(obj);
        if !self.enter(obj, depth, -1) {
            return;
        }
        self.w.begin_typed_object(&info.fields_start);
        // Safe mode shows an object one level deep; fields mode walks it to max_depth.
        let shallow = self.mode == PreviewMode::Safe;
        if (*ty).tp_flags & ffi::Py_TPFLAGS_BASE_EXC_SUBCLASS != 0 {
            self.exception_args(obj, depth, shallow);
        }
        let max = self.w.limits().max_items;
        let fields = match instance_attrs::of(obj, ty) {
            Attributes::Inline(mut attrs) => {
                let mut shown = 0;
                while shown < max {
                    let Some((k, v)) = attrs.next() else {
                        break;
                    };
                    self.entry(k, v, depth, shallow);
                    shown += 1;
                }
                let rest = attrs.count_rest();
                if rest > 0 {
                    self.w.more_entries(rest);
                }
                shown
            }
            Attributes::Dict(dict) => {
                ffi::Py_INCREF(dict);
                self.dict_fields(dict, depth, shallow)
            }
            Attributes::Empty => 0,
            Attributes::Unmanaged => self.dict_fields(instance_dict(obj, ty), depth, shallow),
        };
        self.slots(obj, info, depth, fields, shallow);
        self.w.end_object();
        self.leave();
    }

    /// Writes the entries of an instance dict (a new reference, released here; null: none)
    /// into the open object (`shallow`: as [`Self::field`]s); returns how many.
    unsafe fn dict_fields(
        &mut self,
        dict: *mut ffi::PyObject,
        depth: usize,
        shallow: bool,
    ) -> usize {
        if dict.is_null() {
            return 0;
        }
        let fields = (ffi::PyDict_Size(dict).max(0) as usize).min(self.w.limits().max_items);
        self.entries(dict, depth, 0, shallow);
        ffi::Py_DECREF(dict);
        fields
    }

    /// An exception's `args` entry, read from its C struct (no `__getattribute__`); when
    /// `shallow`, each argument as a [`Self::field`].
    unsafe fn exception_args(&mut self, obj: *mut ffi::PyObject, depth: usize, shallow: bool) {
        // SAFETY: an instance of a BaseException subclass starts with PyBaseExceptionObject;
        // its `args` is null or a tuple (the args setter converts whatever it is given).
        let args = (*(obj as *mut ffi::PyBaseExceptionObject)).args;
        if args.is_null() || ffi::PyTuple_Check(args) == 0 {
            return;
        }
        self.w.key_json("\"args\":");
        ffi::Py_INCREF(args);
        if shallow {
            // An exception's tuple is immutable: its items stay while they are written.
            let len = ffi::PyTuple_GET_SIZE(args);
            let shown = len.min(self.w.limits().max_items as isize);
            self.w.begin_array();
            for i in 0..shown {
                self.field(ffi::PyTuple_GET_ITEM(args, i));
            }
            if len > shown {
                self.w.more_items((len - shown) as usize);
            }
            self.w.end_array();
        } else {
            self.value(args, depth + 1);
        }
        ffi::Py_DECREF(args);
    }

    /// `__slots__` values, read at the member offsets (`shallow`: as [`Self::field`]s).
    unsafe fn slots(
        &mut self,
        obj: *mut ffi::PyObject,
        info: &TypeInfo,
        depth: usize,
        mut shown: usize,
        shallow: bool,
    ) {
        let max = self.w.limits().max_items;
        let mut hidden = 0;
        for field in &info.slots {
            // SAFETY: an object member of one of the object's types holds an object pointer
            // (or null when unset) at this offset.
            let v = *((obj as *mut u8).offset(field.offset) as *mut *mut ffi::PyObject);
            if v.is_null() {
                continue;
            }
            if shown >= max {
                hidden += 1;
                continue;
            }
            shown += 1;
            self.w.key_json(&field.key);
            if field.sensitive {
                self.w.redacted();
                continue;
            }
            ffi::Py_INCREF(v);
            self.item(v, depth, shallow);
            ffi::Py_DECREF(v);
        }
        if hidden > 0 {
            self.w.more_entries(hidden);
        }
    }

    /// Repr mode: `repr(obj)`, bounded and redacted; a raising repr gives a marker.
    unsafe fn repr(&mut self, obj: *mut ffi::PyObject) {
        let text = ffi::PyObject_Repr(obj);
        if text.is_null() {
            ffi::PyErr_Clear();
            let name = type_name::qualified(ffi::Py_TYPE(obj));
            return self.w.marker(&format!("<{name} (repr failed)>"));
        }
        self.str(text);
        ffi::Py_DECREF(text);
    }
}

/// The value of an int (or subclass) whose magnitude fits one 30-bit digit, read from its
/// storage; None for larger ones.
///
/// Writes `obj` to `out` as JSON when it is None, a bool or an int of one digit (below 2^30
/// in magnitude: too short for the card-number rule), the values calls return most, without
/// setting up a walker; false (nothing written) for any other value.
///
/// # Safety
/// The GIL is held and `obj` is a live object.
#[inline(always)]
pub unsafe fn write_scalar(obj: *mut ffi::PyObject, out: &mut String) -> bool {
    let text = if obj == ffi::Py_None() {
        "null"
    } else if obj == ffi::Py_True() {
        "true"
    } else if obj == ffi::Py_False() {
        "false"
    } else if ffi::Py_TYPE(obj) == std::ptr::addr_of_mut!(ffi::PyLong_Type) {
        let Some(v) = compact_int(obj) else {
            return false;
        };
        append::int(out, v);
        return true;
    } else {
        return false;
    };
    append::str(out, text);
    true
}

/// # Safety
/// `obj` is a live int instance.
#[inline(always)]
unsafe fn compact_int(obj: *mut ffi::PyObject) -> Option<i64> {
    // SAFETY (both layouts): an int instance is a PyObject header followed by a size word
    // and at least one 30-bit digit (CPython's `Include/cpython/longintrepr.h`).
    let size_word = *((obj as *const u8).add(std::mem::size_of::<ffi::PyObject>()) as *const isize);
    let digit = || {
        i64::from(*((obj as *const u8).add(std::mem::size_of::<ffi::PyObject>() + 8) as *const u32))
    };
    if cfg!(Py_3_12) {
        // `lv_tag`: the digit count above 3 flag bits, the sign in the low 2 (0: positive,
        // 1: zero, 2: negative). Compact means at most one digit.
        let tag = size_word as usize;
        (tag < (2 << 3)).then(|| (1 - (tag & 3) as i64) * digit())
    } else {
        // `ob_size`: the digit count, negative for a negative value, 0 for zero.
        (-1..=1)
            .contains(&size_word)
            .then(|| size_word as i64 * digit())
    }
}

/// The instance `__dict__` of `obj` (new reference) or null, without running descriptors:
/// only for types that have a dict slot, through `PyObject_GenericGetDict`.
unsafe fn instance_dict(obj: *mut ffi::PyObject, ty: *mut ffi::PyTypeObject) -> *mut ffi::PyObject {
    const MANAGED_DICT: std::os::raw::c_ulong = 1 << 4;
    if (*ty).tp_dictoffset == 0 && ffi::PyType_HasFeature(ty, MANAGED_DICT) == 0 {
        return std::ptr::null_mut();
    }
    if ffi::PyModule_Check(obj) != 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: the generic __dict__ getter reads (or creates) the dict slot; no user code.
    let d = ffi::PyObject_GenericGetDict(obj, std::ptr::null_mut());
    if d.is_null() {
        ffi::PyErr_Clear();
        return std::ptr::null_mut();
    }
    if ffi::PyDict_Check(d) == 0 {
        ffi::Py_DECREF(d);
        return std::ptr::null_mut();
    }
    d
}

/// The first `max_chars` characters of a `str` (or subclass) read from its storage (borrowed
/// when it is ASCII), and its length in characters. Lone surrogates (not valid in UTF-8) become U+FFFD.
///
/// # Safety
/// The GIL is held, `obj` is a `str` instance and outlives the returned text.
pub unsafe fn read_str<'o>(
    obj: *mut ffi::PyObject,
    max_chars: usize,
) -> Option<(Cow<'o, str>, usize)> {
    #[cfg(not(Py_3_12))]
    if ffi::PyUnicode_READY(obj) != 0 {
        ffi::PyErr_Clear();
        return None;
    }
    let len = ffi::PyUnicode_GET_LENGTH(obj).max(0) as usize;
    let take = len.min(max_chars);
    let data = ffi::PyUnicode_DATA(obj);
    if data.is_null() {
        return None;
    }
    if ffi::PyUnicode_IS_ASCII(obj) != 0 {
        // SAFETY: ASCII storage is `len` bytes, all < 0x80, so any prefix is valid UTF-8; a
        // str is immutable and the caller keeps `obj` alive while it uses the text.
        let bytes = std::slice::from_raw_parts(data as *const u8, take);
        return Some((Cow::Borrowed(std::str::from_utf8_unchecked(bytes)), len));
    }
    let mut text = String::with_capacity(take * 2);
    let kind = ffi::PyUnicode_KIND(obj);
    for i in 0..take {
        // SAFETY: i < len, and the storage holds `len` units of `kind` bytes each.
        let cp = match kind {
            ffi::PyUnicode_1BYTE_KIND => u32::from(*(data as *const u8).add(i)),
            ffi::PyUnicode_2BYTE_KIND => u32::from(*(data as *const u16).add(i)),
            _ => *(data as *const u32).add(i),
        };
        text.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
    }
    Some((Cow::Owned(text), len))
}
