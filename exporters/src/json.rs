//! Small JSON writing helpers shared by the file exporters.

use ferrotrace_core::append::hex_digits;
use ferrotrace_core::event::{ExceptionFate, ExceptionInfo, SpanBatch, SpanRecord, FLAG_EXCEPTION};
use std::io::{self, Write};

/// The largest integer a JSON consumer using doubles reads exactly (2^53).
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Writes `v` as a JSON number, or as a JSON string when it exceeds 2^53.
pub fn write_u64(w: &mut impl Write, v: u64) -> io::Result<()> {
    if v > MAX_SAFE_INTEGER {
        write!(w, "\"{v}\"")
    } else {
        write!(w, "{v}")
    }
}

/// Writes `s` as an escaped JSON string.
pub fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(w, s).map_err(io::Error::other)
}

/// Appends an escaped JSON string to `out`.
pub fn push_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// Appends `v` in decimal.
#[inline]
pub fn push_uint(out: &mut Vec<u8>, v: u64) {
    let mut w = Reserved::new(out, 20);
    // SAFETY: a u64 has at most 20 decimal digits.
    unsafe { w.uint(v) };
    w.finish();
}

/// Appends `v` as a JSON number, or as a JSON string when it exceeds 2^53.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut w = Reserved::new(out, 22);
    // SAFETY: `json_u64` writes at most 22 bytes.
    unsafe { w.json_u64(v) };
    w.finish();
}

/// Appends the low `digits` (at most 32) hex digits of `v`, lower-case and zero-padded.
#[inline]
pub fn push_hex(out: &mut Vec<u8>, v: u128, digits: usize) {
    let low = hex_digits(v as u64);
    if digits <= 16 {
        out.extend_from_slice(&low[16 - digits..]);
        return;
    }
    let mut buf = [0u8; 32];
    buf[..16].copy_from_slice(&hex_digits((v >> 64) as u64));
    buf[16..].copy_from_slice(&low);
    out.extend_from_slice(&buf[32 - digits.min(32)..]);
}

/// Appends the span's `"args"`, `"return"` and `"exception"` members, each after a comma,
/// when it has them (an exception whose type could not be known has empty strings).
pub fn push_span_details(out: &mut Vec<u8>, batch: &SpanBatch, s: &SpanRecord) {
    if let Some(args) = batch.args(s) {
        out.extend_from_slice(b",\"args\":");
        out.extend_from_slice(args.as_bytes());
    }
    if let Some(ret) = batch.return_value(s) {
        out.extend_from_slice(b",\"return\":");
        out.extend_from_slice(ret.as_bytes());
    }
    push_exception(out, s);
}

/// Whether the span has an `"exception"` member.
#[inline]
pub fn has_exception(s: &SpanRecord) -> bool {
    s.exception.is_some() || s.flags & FLAG_EXCEPTION != 0
}

/// Appends an `"exception"` member (`type`, `message`, and `caught_by` or `escaped` when
/// its fate is known) after a comma.
pub fn push_exception_info(out: &mut Vec<u8>, e: &ExceptionInfo) {
    out.extend_from_slice(b",\"exception\":{\"type\":");
    push_json_str(out, &e.type_name);
    out.extend_from_slice(b",\"message\":");
    push_json_str(out, &e.message);
    match e.fate {
        ExceptionFate::Unknown => {}
        ExceptionFate::CaughtBy(id) => {
            out.extend_from_slice(b",\"caught_by\":\"");
            push_hex(out, u128::from(id), 16);
            out.push(b'"');
        }
        ExceptionFate::Escaped => out.extend_from_slice(b",\"escaped\":true"),
    }
    out.push(b'}');
}

/// Appends string pairs as a JSON object of escaped strings.
pub fn push_string_map(out: &mut Vec<u8>, pairs: &[(String, String)]) {
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, k);
        out.push(b':');
        push_json_str(out, v);
    }
    out.push(b'}');
}

/// Appends the span's `"exception"` member after a comma, when it has one.
pub fn push_exception(out: &mut Vec<u8>, s: &SpanRecord) {
    if let Some(e) = &s.exception {
        push_exception_info(out, e);
    } else if s.flags & FLAG_EXCEPTION != 0 {
        out.extend_from_slice(b",\"exception\":{\"type\":\"\",\"message\":\"\"}");
    }
}

/// Appends `s` as an escaped JSON string.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Bytes a digit writer of [`Reserved`] may store past the end of its number (it stores
/// eight digits at a time).
const DIGIT_SLACK: usize = 8;

/// 10^8: numbers are written eight digits at a time.
const E8: u64 = 100_000_000;

/// `b'0'` in each byte.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// Appends to a `Vec<u8>` with one capacity check for a whole piece of bounded length:
/// [`Reserved::new`] reserves the room, the (unsafe) writers store through a raw pointer
/// without further checks, and [`Reserved::finish`] sets the vector's length.
///
/// Each writer's contract: everything written since `new`, this write included, is at most
/// the `max_len` given to `new`. Its doc says how much it writes at most.
pub struct Reserved<'a> {
    out: &'a mut Vec<u8>,
    dst: *mut u8,
    /// Where the `max_len` bytes end (checked in debug builds).
    end: *const u8,
}

impl<'a> Reserved<'a> {
    /// Reserves room in `out` for `max_len` more bytes (and the digit writers' slack).
    #[inline(always)]
    pub fn new(out: &'a mut Vec<u8>, max_len: usize) -> Self {
        out.reserve(max_len + DIGIT_SLACK);
        // SAFETY: the capacity is now at least `len + max_len`, so both pointers lie in (or
        // one past the end of) the allocation.
        let (dst, end) = unsafe {
            let dst = out.as_mut_ptr().add(out.len());
            (dst, dst.add(max_len).cast_const())
        };
        Reserved { out, dst, end }
    }

    /// Makes the bytes written part of the vector.
    #[inline(always)]
    pub fn finish(self) {
        // SAFETY: `dst` is within the room reserved (the writers' contract) and was derived
        // from the vector's pointer, and every byte before it has been written.
        unsafe {
            let len = self.dst.offset_from(self.out.as_ptr()) as usize;
            self.out.set_len(len);
        }
    }

    /// Stores `src` and moves on by `len` (at most `src.len()`) bytes.
    ///
    /// # Safety
    /// `len` more bytes stay within `max_len`, and `src` within that plus [`DIGIT_SLACK`].
    #[inline(always)]
    unsafe fn put(&mut self, src: &[u8], len: usize) {
        debug_assert!(self.dst.wrapping_add(len).cast_const() <= self.end);
        debug_assert!(src.len() <= len + DIGIT_SLACK);
        std::ptr::copy_nonoverlapping(src.as_ptr(), self.dst, src.len());
        self.dst = self.dst.add(len);
    }

    /// Writes `b` (`b.len()` bytes).
    ///
    /// # Safety
    /// See the type's contract.
    #[inline(always)]
    pub unsafe fn bytes(&mut self, b: &[u8]) {
        self.put(b, b.len());
    }

    /// Writes the 16 lower-case hex digits of `v`.
    ///
    /// # Safety
    /// See the type's contract.
    #[inline(always)]
    pub unsafe fn hex16(&mut self, v: u64) {
        self.bytes(&hex_digits(v));
    }

    /// Writes span id `id` as a quoted 16-digit hex string, or `null` for 0 (at most 18
    /// bytes).
    ///
    /// # Safety
    /// See the type's contract.
    #[inline(always)]
    pub unsafe fn span_id_or_null(&mut self, id: u64) {
        if id == 0 {
            self.bytes(b"null");
        } else {
            self.bytes(b"\"");
            self.hex16(id);
            self.bytes(b"\"");
        }
    }

    /// Writes `v` in decimal (at most 20 bytes).
    ///
    /// # Safety
    /// See the type's contract.
    #[inline(always)]
    pub unsafe fn uint(&mut self, v: u64) {
        if v < E8 {
            self.leading_digits(v as u32);
        } else if v < E8 * E8 {
            self.leading_digits((v / E8) as u32);
            self.eight_digits((v % E8) as u32);
        } else {
            let high = v / E8;
            self.leading_digits((high / E8) as u32);
            self.eight_digits((high % E8) as u32);
            self.eight_digits((v % E8) as u32);
        }
    }

    /// Writes `v` as a JSON number, or as a JSON string when it exceeds 2^53 (at most 22
    /// bytes).
    ///
    /// # Safety
    /// See the type's contract.
    #[inline(always)]
    pub unsafe fn json_u64(&mut self, v: u64) {
        if v > MAX_SAFE_INTEGER {
            self.bytes(b"\"");
            self.uint(v);
            self.bytes(b"\"");
        } else {
            self.uint(v);
        }
    }

    /// Writes `v` (below 10^8) in decimal without leading zeros.
    ///
    /// # Safety
    /// See the type's contract (at most 8 bytes).
    #[inline(always)]
    unsafe fn leading_digits(&mut self, v: u32) {
        let digits = if v < 10_000 {
            u64::from(decimal4(v)) << 32
        } else {
            decimal8(v)
        };
        // Leading zeros are the low bytes; a 0 keeps its last digit.
        let zeros = ((digits | (1 << 56)).trailing_zeros() / 8) as usize;
        let text = (digits >> (8 * zeros)) + ASCII_ZEROS;
        self.put(&text.to_le_bytes(), 8 - zeros);
    }

    /// Writes `v` (below 10^8) as 8 decimal digits, zero-padded.
    ///
    /// # Safety
    /// See the type's contract (8 bytes).
    #[inline(always)]
    unsafe fn eight_digits(&mut self, v: u32) {
        self.put(&(decimal8(v) + ASCII_ZEROS).to_le_bytes(), 8);
    }
}

/// Writes timestamps in nanoseconds as [`Reserved::json_u64`] does, reusing the digits
/// before the last eight of the previous one: the timestamps of a batch are close together,
/// and share those nearly always.
pub struct Timestamps {
    /// The last timestamp above 2^53 divided by 10^8 (`u64::MAX`: none yet).
    high: u64,
    /// `"` and the digits of `high`; `len` bytes of it are in use.
    text: [u8; 16],
    len: usize,
}

impl Default for Timestamps {
    fn default() -> Self {
        Timestamps {
            high: u64::MAX,
            text: [0; 16],
            len: 0,
        }
    }
}

impl Timestamps {
    /// Writes `v` (at most 22 bytes).
    ///
    /// # Safety
    /// See the contract of [`Reserved`].
    #[inline(always)]
    pub unsafe fn write(&mut self, w: &mut Reserved, v: u64) {
        if v <= MAX_SAFE_INTEGER {
            return w.json_u64(v);
        }
        // Above 2^53, `high` has 8 to 12 digits: with the quote at most 13 bytes, and the
        // whole number at least 18, so storing all 16 bytes of `text` stays within it.
        let high = v / E8;
        if high != self.high {
            let mut text = Vec::with_capacity(32);
            text.push(b'"');
            push_uint(&mut text, high);
            self.text[..text.len()].copy_from_slice(&text);
            self.len = text.len();
            self.high = high;
        }
        w.put(&self.text, self.len);
        w.eight_digits((v % E8) as u32);
        w.bytes(b"\"");
    }
}

/// The 4 decimal digits of `v` (below 10^4) as byte values 0..=9, most significant in the
/// lowest byte (as [`decimal8`] does, in half the width).
#[inline(always)]
fn decimal4(v: u32) -> u32 {
    debug_assert!(v < 10_000);
    let hundreds = (v * 5_243) >> 19;
    let pairs = ((v - 100 * hundreds) << 16) | hundreds;
    let tens = ((pairs * 103) >> 10) & 0x000F_000F;
    tens | ((pairs - 10 * tens) << 8)
}

/// The 8 decimal digits of `v` (below 10^8) as byte values 0..=9, most significant in the
/// lowest byte, computed in parallel lanes of one integer (halves, then quarters, then
/// digits; the multiply-shifts divide by 100 and by 10 exactly in this range).
#[inline(always)]
fn decimal8(v: u32) -> u64 {
    debug_assert!(v < 100_000_000);
    let v = u64::from(v);
    let halves = (v / 10_000) | ((v % 10_000) << 32);
    let hundreds = ((halves * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let quarters = ((halves - 100 * hundreds) << 16) | hundreds;
    let tens = ((quarters * 103) >> 10) & 0x000F_000F_000F_000F;
    tens | ((quarters - 10 * tens) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_matches_format_for_every_width() {
        let values = [
            0u128,
            1,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ];
        for v in values {
            for digits in 1..=32 {
                let mut out = Vec::new();
                push_hex(&mut out, v, digits);
                let full = format!("{v:032x}");
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    full[32 - digits..],
                    "{v:x} {digits}"
                );
            }
        }
    }

    /// 0, every power of ten and its neighbours, 2^53 and its neighbours, u64::MAX, and a
    /// spread of values of every bit length.
    fn decimal_cases() -> Vec<u64> {
        let mut v = vec![0, u64::MAX, u64::MAX - 1];
        for p in 0..20 {
            let t = 10u64.pow(p);
            v.extend([t - 1, t, t + 1]);
        }
        v.extend([MAX_SAFE_INTEGER - 1, MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for shift in 0..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            v.push(x >> shift);
        }
        v
    }

    #[test]
    fn decimals_match_format() {
        for v in decimal_cases() {
            let mut out = b"x".to_vec();
            push_uint(&mut out, v);
            push_u64(&mut out, v);
            let quoted = if v > MAX_SAFE_INTEGER {
                format!("\"{v}\"")
            } else {
                v.to_string()
            };
            assert_eq!(String::from_utf8(out).unwrap(), format!("x{v}{quoted}"));
        }
    }

    #[test]
    fn timestamps_match_push_u64() {
        let mut cases = decimal_cases();
        // Runs of close timestamps, crossing multiples of 10^8.
        let now = 1_760_000_000_000_000_000u64;
        cases.extend((0..1000).map(|i| now - 30_000_000 + i * 97_531));
        cases.extend([now, MAX_SAFE_INTEGER + 1, now, u64::MAX, now]);
        let mut times = Timestamps::default();
        for v in cases {
            let mut out = Vec::new();
            let mut w = Reserved::new(&mut out, 22);
            // SAFETY: `write` writes at most 22 bytes.
            unsafe { times.write(&mut w, v) };
            w.finish();
            let mut expected = Vec::new();
            push_u64(&mut expected, v);
            assert_eq!(out, expected, "{v}");
        }
    }

    #[test]
    fn pushed_values_parse_back() {
        let mut out = Vec::new();
        out.push(b'[');
        push_uint(&mut out, 0);
        out.push(b',');
        push_u64(&mut out, u64::MAX);
        out.push(b',');
        push_json_str(&mut out, "a\"b\\c\n\u{1}é");
        out.extend_from_slice(b",\"");
        push_hex(&mut out, 0xabc, 16);
        out.extend_from_slice(b"\"]");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                0,
                u64::MAX.to_string(),
                "a\"b\\c\n\u{1}é",
                "0000000000000abc"
            ])
        );
    }
}
