//! Small JSON writing helpers shared by the file exporters.

use ferrotrace_core::append::hex_digits;
use ferrotrace_core::event::{SpanBatch, SpanRecord, FLAG_EXCEPTION};
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

/// Appends `v` in decimal (two digits per step, via `itoa`).
#[inline]
pub fn push_uint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `v` as a JSON number, or as a JSON string when it exceeds 2^53.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    if v > MAX_SAFE_INTEGER {
        out.push(b'"');
        push_uint(out, v);
        out.push(b'"');
    } else {
        push_uint(out, v);
    }
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
    if let Some(e) = &s.exception {
        out.extend_from_slice(b",\"exception\":{\"type\":");
        push_json_str(out, &e.type_name);
        out.extend_from_slice(b",\"message\":");
        push_json_str(out, &e.message);
        out.push(b'}');
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
