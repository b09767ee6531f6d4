//! Strict W3C Trace Context `traceparent` parsing and formatting.
//!
//! Version 00 must have exactly four fields; a future version may carry more fields after
//! the flags, which are ignored as the specification says. Ids of all zeros, upper-case hex
//! and version ff are rejected.

use crate::ids::{SpanId, TraceId};

/// A parsed `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

/// Why a `traceparent` header was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTraceParent(pub &'static str);

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a header value per W3C Trace Context level 1.
pub fn parse(header: &str) -> Result<TraceParent, InvalidTraceParent> {
    let header = header.trim_matches(|c| c == ' ' || c == '\t');
    if header.len() < 55 {
        return Err(InvalidTraceParent("shorter than 55 characters"));
    }
    let parts: Vec<&str> = header.split('-').collect();
    if parts.len() < 4 {
        return Err(InvalidTraceParent("needs version-traceid-parentid-flags"));
    }
    let (version, trace, parent, flags) = (
        parts[0],
        parts[1],
        parts[2],
        &parts[3][..parts[3].len().min(2)],
    );
    if version.len() != 2 || !lower_hex(version) {
        return Err(InvalidTraceParent(
            "version must be 2 lower-case hex digits",
        ));
    }
    if version == "ff" {
        return Err(InvalidTraceParent("version ff is forbidden"));
    }
    if version == "00" && (parts.len() != 4 || header.len() != 55) {
        return Err(InvalidTraceParent(
            "version 00 has exactly 4 fields and 55 characters",
        ));
    }
    if version != "00" && parts[3].len() > 2 && !parts[3][2..].starts_with('-') && parts.len() == 4
    {
        return Err(InvalidTraceParent("unexpected characters after flags"));
    }
    if trace.len() != 32 || !lower_hex(trace) {
        return Err(InvalidTraceParent(
            "trace-id must be 32 lower-case hex digits",
        ));
    }
    if parent.len() != 16 || !lower_hex(parent) {
        return Err(InvalidTraceParent(
            "parent-id must be 16 lower-case hex digits",
        ));
    }
    if flags.len() != 2 || !lower_hex(flags) {
        return Err(InvalidTraceParent(
            "trace-flags must be 2 lower-case hex digits",
        ));
    }
    let trace_id =
        u128::from_str_radix(trace, 16).map_err(|_| InvalidTraceParent("bad trace-id"))?;
    let parent_id =
        u64::from_str_radix(parent, 16).map_err(|_| InvalidTraceParent("bad parent-id"))?;
    let flags = u8::from_str_radix(flags, 16).map_err(|_| InvalidTraceParent("bad flags"))?;
    if trace_id == 0 {
        return Err(InvalidTraceParent("trace-id of all zeros is invalid"));
    }
    if parent_id == 0 {
        return Err(InvalidTraceParent("parent-id of all zeros is invalid"));
    }
    Ok(TraceParent {
        trace_id: TraceId(trace_id),
        parent_id,
        sampled: flags & 1 == 1,
    })
}

/// Formats a version-00 `traceparent` for outgoing calls.
pub fn format(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
    format!(
        "00-{:032x}-{:016x}-{:02x}",
        trace_id.0,
        span_id,
        u8::from(sampled)
    )
}

/// Most list members a `tracestate` may carry (W3C Trace Context).
pub const TRACESTATE_MAX_MEMBERS: usize = 32;
/// Most characters a `tracestate` may have (W3C Trace Context).
pub const TRACESTATE_MAX_LEN: usize = 512;

fn tracestate_key(key: &str) -> bool {
    let simple = |k: &str, max: usize, first_digit: bool| {
        let b = k.as_bytes();
        !b.is_empty()
            && b.len() <= max
            && (b[0].is_ascii_lowercase() || (first_digit && b[0].is_ascii_digit()))
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(c))
    };
    match key.split_once('@') {
        Some((tenant, system)) => simple(tenant, 241, true) && simple(system, 14, false),
        None => simple(key, 256, false),
    }
}

fn tracestate_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b[b.len() - 1] != b' '
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// Checks a `tracestate` header per W3C Trace Context level 1: at most
/// [`TRACESTATE_MAX_LEN`] characters and [`TRACESTATE_MAX_MEMBERS`] `key=value` list members
/// (empty members between commas are allowed and dropped), valid keys and values, no key
/// twice. Returns the members joined by `,`, or None when the header is invalid.
pub fn parse_tracestate(header: &str) -> Option<String> {
    if header.len() > TRACESTATE_MAX_LEN {
        return None;
    }
    let mut members: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for member in header.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !tracestate_key(key) || !tracestate_value(value) || keys.contains(&key) {
            return None;
        }
        keys.push(key);
        members.push(member);
    }
    (!members.is_empty() && members.len() <= TRACESTATE_MAX_MEMBERS).then(|| members.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp = parse(GOOD).unwrap();
        assert_eq!(tp.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id, 0x00f0_67aa_0ba9_02b7);
        assert!(tp.sampled);
        assert_eq!(format(tp.trace_id, tp.parent_id, true), GOOD);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn future_versions_may_extend() {
        let tp = parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-the-future")
            .unwrap();
        assert!(!tp.sampled);
    }

    #[test]
    fn tracestate_follows_the_w3c_rules() {
        assert_eq!(
            parse_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,").as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(
            parse_tracestate("t1@sys=x y").as_deref(),
            Some("t1@sys=x y")
        );
        for bad in [
            "",
            "novalue",
            "Upper=1",
            "a=1,a=2",
            "a=b=c",
            "a=caf\u{e9}",
            "1abc=x",
        ] {
            assert_eq!(parse_tracestate(bad), None, "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_tracestate(&many.join(",")), None);
        assert!(parse_tracestate(&many[..32].join(",")).is_some());
        assert_eq!(parse_tracestate(&format!("a={}", "x".repeat(511))), None);
    }
}
