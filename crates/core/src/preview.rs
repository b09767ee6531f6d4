//! The bounded JSON writer behind argument and return-value previews.
//!
//! The CPython side walks objects and calls a [`PreviewWriter`] for each value; the writer
//! produces JSON text into a caller-owned (reusable) buffer and applies redaction as it writes:
//! by key ([`PreviewWriter::key`] reports a sensitive key so the caller writes
//! [`PreviewWriter::redacted`] instead of the value) and by value (every string goes through
//! [`Redactor::redact_value`] before it is cut). Strings are cut on a character boundary to
//! `max_str` characters with a visible `…[+N chars]` marker. The text is always valid JSON.

use crate::append;
use crate::redact::{Redactor, REDACTED};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

/// How many characters past `max_str` a caller should pass to [`PreviewWriter::str`] so a
/// secret that straddles the cut is still recognised (and redacted) as a whole. Every
/// built-in rule recognises a secret from its first 64 characters or fewer (a PEM header, a
/// token's prefix and minimum length, a `key=` form), so 256 leaves room for long e-mail
/// addresses and JWT headers and payloads; a JWT whose first two parts run longer past the
/// cut shows only those parts' start, never its signature. Each captured string is read and
/// scanned this far, whatever its length: it bounds a preview's cost (issue 26).
pub const REDACTION_SLACK: usize = 256;

/// Integers whose magnitude exceeds this lose precision in JSON consumers; they are written
/// as strings.
const MAX_SAFE_INT: u64 = 1 << 53;

/// The preview bounds (`FERROTRACE_MAX_STR`, `FERROTRACE_MAX_ITEMS`,
/// `FERROTRACE_MAX_PREVIEW_DEPTH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Characters kept of a string.
    pub max_str: usize,
    /// Items kept of a container or an argument list.
    pub max_items: usize,
    /// Container nesting shown; deeper containers are summarised.
    pub max_depth: usize,
}

/// Object keys (dict keys, field names) already judged plain on one thread under one
/// configuration: not sensitive, unchanged by value redaction and within `max_str`. The same
/// few keys recur in every preview of an object-heavy program, and judging one costs far more
/// than a set lookup. Short keys only, and at most [`KeyMemo::MAX_KEYS`] of them.
#[derive(Default)]
pub struct KeyMemo {
    generation: u32,
    plain: HashSet<Box<str>, BuildHasherDefault<KeyHasher>>,
}

/// A multiply-rotate hash over 8-byte words (as rustc's FxHash): keys are short, and a
/// general-purpose hasher cost more than the lookup it serves.
#[derive(Default)]
struct KeyHasher(u64);

impl KeyHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
}

impl KeyMemo {
    /// Keys remembered before the memo starts over.
    pub const MAX_KEYS: usize = 4096;
    /// Longest key remembered, in bytes.
    const MAX_KEY_LEN: usize = 64;

    /// The memo for configuration `generation`: what was judged under another one is
    /// forgotten (the redaction settings may have changed).
    pub fn for_generation(&mut self, generation: u32) -> &mut Self {
        if self.generation != generation {
            self.plain.clear();
            self.generation = generation;
        }
        self
    }

    fn remember(&mut self, key: &str) {
        if key.len() > Self::MAX_KEY_LEN {
            return;
        }
        if self.plain.len() >= Self::MAX_KEYS {
            self.plain.clear();
        }
        self.plain.insert(key.into());
    }
}

/// Writes one JSON value (with nested containers) into a borrowed buffer.
pub struct PreviewWriter<'a> {
    out: &'a mut String,
    redactor: &'a Redactor,
    memo: &'a mut KeyMemo,
    limits: Limits,
    /// Bit `n` set: the container open at nesting `n` already has an item.
    has_items: u64,
    /// Open containers.
    level: u32,
    /// The next value follows a key (no separator needed).
    after_key: bool,
}

impl<'a> PreviewWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(
        out: &'a mut String,
        redactor: &'a Redactor,
        memo: &'a mut KeyMemo,
        limits: Limits,
    ) -> Self {
        PreviewWriter {
            out,
            redactor,
            memo,
            limits,
            has_items: 0,
            level: 0,
            after_key: false,
        }
    }

    /// The bounds this writer applies.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The redactor this writer applies.
    pub fn redactor(&self) -> &Redactor {
        self.redactor
    }

    fn separator(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if self.level == 0 {
            return;
        }
        let bit = 1u64 << self.level.min(63);
        if self.has_items & bit != 0 {
            append::byte(self.out, b',');
        }
        self.has_items |= bit;
    }

    /// `null`.
    pub fn null(&mut self) {
        self.separator();
        append::str(self.out, "null");
    }

    /// `true` / `false`.
    pub fn bool(&mut self, b: bool) {
        self.separator();
        append::str(self.out, if b { "true" } else { "false" });
    }

    /// An integer: a JSON number when a JSON consumer keeps it exact, else a string; a 13–19
    /// digit number that is a Luhn-valid card number is redacted.
    pub fn int(&mut self, v: i64) {
        if v.unsigned_abs() < 1_000_000_000_000 {
            self.separator();
            append::int(self.out, v);
        } else {
            self.int_text(itoa::Buffer::new().format(v));
        }
    }

    /// An integer given as decimal text (beyond `i64`, or already formatted); written as a
    /// number when exact in JSON, else as a string, and redacted by value.
    pub fn int_text(&mut self, digits: &str) {
        self.separator();
        let magnitude = digits.trim_start_matches('-');
        if magnitude.len() < 13 {
            append::str(self.out, digits);
            return;
        }
        let redacted = self.redactor.redact_value(magnitude);
        if redacted != magnitude {
            append::byte(self.out, b'"');
            append::str(self.out, REDACTED);
            append::byte(self.out, b'"');
        } else if magnitude.parse::<u64>().is_ok_and(|m| m <= MAX_SAFE_INT) {
            append::str(self.out, digits);
        } else {
            append::byte(self.out, b'"');
            append::str(self.out, digits);
            append::byte(self.out, b'"');
        }
    }

    /// A float; NaN and infinities (not JSON numbers) become strings.
    pub fn float(&mut self, f: f64) {
        self.separator();
        if f.is_finite() {
            append::str(self.out, zmij::Buffer::new().format_finite(f));
        } else if f.is_nan() {
            append::str(self.out, "\"nan\"");
        } else if f > 0.0 {
            append::str(self.out, "\"inf\"");
        } else {
            append::str(self.out, "\"-inf\"");
        }
    }

    /// A string of `total_chars` characters of which `text` is a prefix (callers pass at most
    /// `max_str + REDACTION_SLACK` characters). Redacted by value, then cut to `max_str`
    /// characters with a `…[+N chars]` marker.
    pub fn str(&mut self, text: &str, total_chars: usize) {
        self.separator();
        let redacted = self.redactor.redact_value(text);
        let (shown, hidden) = cut(text, &redacted, total_chars, self.limits.max_str);
        append::byte(self.out, b'"');
        escape_into(self.out, shown);
        if hidden > 0 {
            let _ = write!(self.out, "…[+{hidden} chars]");
        }
        append::byte(self.out, b'"');
    }

    /// A string written as given (escaped, not redacted, not cut): type names and markers.
    pub fn marker(&mut self, text: &str) {
        self.separator();
        append::byte(self.out, b'"');
        escape_into(self.out, text);
        append::byte(self.out, b'"');
    }

    /// A value rendered ahead of time as JSON text (see [`class_marker`]).
    pub fn rendered(&mut self, json: &str) {
        self.separator();
        append::str(self.out, json);
    }

    /// `"<type_name object at 0x…>"`, the default repr of an object at address `addr`,
    /// from its start rendered by [`object_at_prefix`].
    pub fn object_at(&mut self, prefix: &str, addr: usize) {
        self.separator();
        append::around_hex(self.out, prefix, addr as u64, ">\"");
    }

    /// `"<kind name>"` or `"<kind name len=N>"` (`kind` empty: `"<name>"`): a container or
    /// object summarised instead of shown, written without building the text first.
    pub fn summary(&mut self, kind: &str, name: &str, len: Option<usize>) {
        self.separator();
        append::str(self.out, "\"<");
        if !kind.is_empty() {
            append::str(self.out, kind);
            append::byte(self.out, b' ');
        }
        escape_into(self.out, name);
        if let Some(len) = len {
            append::str(self.out, " len=");
            append::int(self.out, len as i64);
        }
        append::str(self.out, ">\"");
    }

    /// `"[REDACTED]"`.
    pub fn redacted(&mut self) {
        self.marker(REDACTED);
    }

    /// Opens an array.
    pub fn begin_array(&mut self) {
        self.separator();
        append::byte(self.out, b'[');
        self.open();
    }

    /// Closes the innermost array.
    pub fn end_array(&mut self) {
        self.close();
        append::byte(self.out, b']');
    }

    /// Opens an object.
    pub fn begin_object(&mut self) {
        self.separator();
        append::byte(self.out, b'{');
        self.open();
    }

    /// Opens an object whose first entry, `"__type__": type_name`, was rendered by
    /// [`typed_object_start`].
    pub fn begin_typed_object(&mut self, rendered: &str) {
        self.separator();
        append::str(self.out, rendered);
        self.open();
        self.has_items |= 1u64 << self.level.min(63);
    }

    /// Closes the innermost object.
    pub fn end_object(&mut self) {
        self.close();
        append::byte(self.out, b'}');
    }

    fn open(&mut self) {
        self.level += 1;
        self.has_items &= !(1u64 << self.level.min(63));
    }

    fn close(&mut self) {
        self.level = self.level.saturating_sub(1);
        self.after_key = false;
    }

    /// Writes an object key (redacted by value, then cut to `max_str` characters) and returns
    /// whether it is a sensitive key, whose value the caller must write as
    /// [`Self::redacted`].
    pub fn key(&mut self, key: &str) -> bool {
        if self.memo.plain.contains(key) {
            self.key_known(key);
            return false;
        }
        let sensitive = self.redactor.is_sensitive_key(key);
        let window = match key
            .char_indices()
            .nth(self.limits.max_str + REDACTION_SLACK)
        {
            Some((cut, _)) => &key[..cut],
            None => key,
        };
        let text = self.redactor.redact_value(window);
        let shown = match text.char_indices().nth(self.limits.max_str) {
            Some((cut, _)) => &text[..cut],
            None => &text,
        };
        if !sensitive && matches!(text, Cow::Borrowed(_)) && shown.len() == key.len() {
            self.memo.remember(key);
        }
        self.key_known(shown);
        sensitive
    }

    /// `Some(sensitive)` when `key` would be written as given (value redaction leaves it
    /// alone and it fits `max_str`), so its rendering can be reused; None otherwise.
    pub fn judge_key(&self, key: &str) -> Option<bool> {
        if key.len() > self.limits.max_str && key.chars().count() > self.limits.max_str {
            return None;
        }
        if !matches!(self.redactor.redact_value(key), Cow::Borrowed(_)) {
            return None;
        }
        Some(self.redactor.is_sensitive_key(key))
    }

    /// Writes an object key already rendered by [`json_key`] (argument names, judged once
    /// per code object).
    #[inline]
    pub fn key_json(&mut self, rendered: &str) {
        self.separator();
        append::str(self.out, rendered);
        self.after_key = true;
    }

    /// Writes an object key as given, without judging it (argument names, judged once per
    /// code object, and markers).
    pub fn key_known(&mut self, key: &str) {
        self.separator();
        append::byte(self.out, b'"');
        escape_into(self.out, key);
        append::str(self.out, "\":");
        self.after_key = true;
    }

    /// The marker item saying how many items of a container were not shown.
    pub fn more_items(&mut self, n: usize) {
        let mut text = String::with_capacity(24);
        let _ = write!(text, "…[+{n} items]");
        self.marker(&text);
    }

    /// For objects: the marker entry `"…": "[+N items]"` saying how many were not shown.
    pub fn more_entries(&mut self, n: usize) {
        self.key_known("…");
        let mut text = String::with_capacity(16);
        let _ = write!(text, "[+{n} items]");
        self.marker(&text);
    }
}

/// `key` as a JSON object key with its colon (`"key":`), for [`PreviewWriter::key_json`].
pub fn json_key(key: &str) -> String {
    escaped_between("\"", key, "\":")
}

/// `{"__type__":"type_name"`: the start of an object shown by its fields, for
/// [`PreviewWriter::begin_typed_object`].
pub fn typed_object_start(type_name: &str) -> String {
    escaped_between("{\"__type__\":\"", type_name, "\"")
}

/// `"<class type_name>"`: a class shown as a value, as JSON text for
/// [`PreviewWriter::rendered`].
pub fn class_marker(type_name: &str) -> String {
    escaped_between("\"<class ", type_name, ">\"")
}

/// `"<type_name>"`: an object named by its type instead of shown, as JSON text for
/// [`PreviewWriter::rendered`] (the fields of an object in safe mode that hold objects).
pub fn name_marker(type_name: &str) -> String {
    escaped_between("\"<", type_name, ">\"")
}

/// `<type_name object at 0x` as the start of a JSON string, for
/// [`PreviewWriter::object_at`].
pub fn object_at_prefix(type_name: &str) -> String {
    escaped_between("\"<", type_name, " object at 0x")
}

/// `before`, then `text` escaped for the inside of a JSON string, then `after`.
fn escaped_between(before: &str, text: &str, after: &str) -> String {
    let mut out = String::with_capacity(before.len() + text.len() + after.len());
    append::str(&mut out, before);
    escape_into(&mut out, text);
    append::str(&mut out, after);
    out
}

/// Redacts `text` (a prefix of a string of `total_chars` characters) by value and cuts it to
/// `max_chars` characters with a `…[+N chars]` marker: exception messages and other plain
/// (not JSON) text.
pub fn bounded_text(
    redactor: &Redactor,
    text: &str,
    total_chars: usize,
    max_chars: usize,
) -> String {
    let redacted = redactor.redact_value(text);
    let (shown, hidden) = cut(text, &redacted, total_chars, max_chars);
    let mut out = String::with_capacity(shown.len() + 20);
    out.push_str(shown);
    if hidden > 0 {
        let _ = write!(out, "…[+{hidden} chars]");
    }
    out
}

/// The part of `redacted` (the redaction of `given`, a prefix of a `total_chars` string)
/// that is shown, and how many characters are not.
fn cut<'r>(given: &str, redacted: &'r str, total_chars: usize, max: usize) -> (&'r str, usize) {
    // The common case without counting characters: a whole ASCII string (its byte length is
    // its character count) whose redaction fits.
    if given.len() == total_chars && redacted.len() <= max && given.is_ascii() {
        return (redacted, 0);
    }
    // An ASCII prefix (a cut string's usual case) is counted and cut by bytes.
    if given.is_ascii() && redacted.is_ascii() {
        let unread = total_chars.saturating_sub(given.len());
        return match redacted.len().checked_sub(max) {
            Some(over) if over > 0 => (&redacted[..max], over + unread),
            _ => (redacted, unread),
        };
    }
    let unread = total_chars.saturating_sub(given.chars().count());
    match redacted.char_indices().nth(max) {
        Some((i, _)) => (&redacted[..i], redacted[i..].chars().count() + unread),
        None => (redacted, unread),
    }
}

/// Appends `s` as the inside of a JSON string.
pub fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let Some(first) = bytes.iter().position(|&b| needs_escape(b)) else {
        append::str(out, s);
        return;
    };
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// The byte must be escaped inside a JSON string.
#[inline(always)]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_str: 8,
        max_items: 3,
        max_depth: 2,
    };

    fn with(f: impl FnOnce(&mut PreviewWriter)) -> String {
        let r = Redactor::default();
        let mut out = String::new();
        let mut memo = KeyMemo::default();
        let mut w = PreviewWriter::new(&mut out, &r, &mut memo, LIMITS);
        f(&mut w);
        out
    }

    #[test]
    fn key_memo_remembers_only_plain_keys_per_generation() {
        let r = Redactor::new(&["colour".to_string()], &[]).0;
        let mut memo = KeyMemo::default();
        let mut out = String::new();
        for _ in 0..2 {
            let mut w = PreviewWriter::new(&mut out, &r, memo.for_generation(1), LIMITS);
            w.begin_object();
            assert!(!w.key("name"));
            w.null();
            assert!(w.key("password"));
            w.redacted();
            assert!(w.key("colour"));
            w.redacted();
            w.end_object();
        }
        assert!(memo.plain.contains("name"));
        assert!(!memo.plain.contains("password") && !memo.plain.contains("colour"));
        assert!(memo.for_generation(2).plain.is_empty());
    }

    #[test]
    fn scalars() {
        assert_eq!(with(|w| w.null()), "null");
        assert_eq!(with(|w| w.bool(true)), "true");
        assert_eq!(with(|w| w.int(-42)), "-42");
        assert_eq!(with(|w| w.int(i64::MAX)), "\"9223372036854775807\"");
        assert_eq!(with(|w| w.int(1 << 53)), "9007199254740992");
        assert_eq!(with(|w| w.float(1.5)), "1.5");
        assert_eq!(with(|w| w.float(1.0)), "1.0");
        assert_eq!(with(|w| w.float(1e300)), "1e+300");
        assert_eq!(with(|w| w.float(f64::NAN)), "\"nan\"");
        assert_eq!(with(|w| w.float(f64::NEG_INFINITY)), "\"-inf\"");
    }

    #[test]
    fn card_numbers_as_ints_are_redacted() {
        assert_eq!(with(|w| w.int(4111111111111111)), "\"[REDACTED]\"");
        assert_eq!(with(|w| w.int(4111111111111112)), "4111111111111112");
        assert_eq!(
            with(|w| w.int_text("123456789012345678901234567890")),
            "\"123456789012345678901234567890\""
        );
    }

    #[test]
    fn strings_cut_on_char_boundary_with_marker() {
        assert_eq!(with(|w| w.str("short", 5)), "\"short\"");
        assert_eq!(
            with(|w| w.str("ééééééééééé", 11)),
            "\"éééééééé…[+3 chars]\""
        );
        // Only a prefix was read: the rest of the original is counted.
        assert_eq!(
            with(|w| w.str("abcdefghij", 100)),
            "\"abcdefgh…[+92 chars]\""
        );
        assert_eq!(with(|w| w.str("abc", 100)), "\"abc…[+97 chars]\"");
        assert_eq!(
            with(|w| w.str("🙂🙂🙂🙂🙂🙂🙂🙂🙂", 9)),
            "\"🙂🙂🙂🙂🙂🙂🙂🙂…[+1 chars]\""
        );
    }

    #[test]
    fn summaries_name_the_type_and_length() {
        assert_eq!(with(|w| w.summary("", "list", Some(3))), "\"<list len=3>\"");
        assert_eq!(with(|w| w.summary("", "Point", None)), "\"<Point>\"");
        assert_eq!(
            with(|w| w.summary("cycle", "dict", None)),
            "\"<cycle dict>\""
        );
        assert_eq!(
            with(|w| w.summary("", "we\"ird", Some(0))),
            "\"<we\\\"ird len=0>\""
        );
    }

    #[test]
    fn plain_text_is_redacted_and_cut() {
        let r = Redactor::default();
        assert_eq!(bounded_text(&r, "short", 5, 8), "short");
        assert_eq!(
            bounded_text(&r, "to bob@example.com", 18, 100),
            "to [REDACTED]"
        );
        assert_eq!(
            bounded_text(&r, "ééééééééééé", 11, 8),
            "éééééééé…[+3 chars]"
        );
    }

    #[test]
    fn escaping() {
        let out = with(|w| w.str("a\"b\\c\n\0\u{1f}", 7));
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0000\\u001f\"");
        let out = with(|w| w.marker("tab\there"));
        assert_eq!(out, "\"tab\\there\"");
    }

    #[test]
    fn strings_are_redacted_before_the_cut() {
        // The e-mail straddles the cut: redacted as a whole, nothing of it shown.
        let out = with(|w| w.str("ab bob@example.com", 18));
        assert_eq!(out, "\"ab [REDA…[+5 chars]\"");
        assert!(!out.contains("bob"));
    }

    #[test]
    fn containers_and_keys() {
        let out = with(|w| {
            w.begin_object();
            assert!(!w.key("n"));
            w.int(1);
            if w.key("password") {
                w.redacted();
            }
            w.key("list");
            w.begin_array();
            w.int(1);
            w.begin_array();
            w.end_array();
            w.str("x", 1);
            w.more_items(4);
            w.end_array();
            w.key_known("secret");
            w.redacted();
            w.more_entries(2);
            w.end_object();
        });
        assert_eq!(
            out,
            "{\"n\":1,\"password\":\"[REDACTED]\",\"list\":[1,[],\"x\",\"…[+4 items]\"],\
             \"secret\":\"[REDACTED]\",\"…\":\"[+2 items]\"}"
        );
        let v: Vec<u8> = out.into_bytes();
        assert!(std::str::from_utf8(&v).is_ok());
    }

    #[test]
    fn keys_are_bounded_and_redacted_by_value() {
        let out = with(|w| {
            w.begin_object();
            w.key("alice@example.com");
            w.int(1);
            w.key("abcdefghijkl");
            w.int(2);
            w.end_object();
        });
        assert_eq!(out, "{\"[REDACTE\":1,\"abcdefgh\":2}");
    }
}
