//! Small JSON writing helpers shared by the file exporters.

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
