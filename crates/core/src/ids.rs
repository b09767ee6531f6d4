//! W3C trace and span identifiers, generated without locks.
//!
//! Each thread keeps its own splitmix64 state, seeded from the OS entropy source mixed with
//! the process id and a per-thread counter, so ids from forked children and from threads
//! never collide in practice and generating one costs a few arithmetic operations.

use std::cell::Cell;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// A 16-byte W3C trace id; zero is invalid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

/// An 8-byte W3C span id; zero is invalid (and means "no parent" in records).
pub type SpanId = u64;

impl TraceId {
    /// Lower-case 32-hex-digit form used by W3C and OTLP/JSON.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Big-endian bytes, the OTLP protobuf representation.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

/// Lower-case 16-hex-digit form of a span id.
pub fn span_hex(id: SpanId) -> String {
    format!("{:016x}", id)
}

static THREAD_SEEDS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
    static STATE_PID: Cell<u32> = const { Cell::new(0) };
}

fn os_entropy() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        if f.read_exact(&mut buf).is_ok() {
            return u64::from_ne_bytes(buf);
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (&buf as *const _ as u64)
}

fn splitmix64(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
    state.set(s);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random, non-zero 64-bit value from this thread's generator.
///
/// The generator is reseeded when the process id changes, so a forked child never repeats
/// the ids its parent goes on to generate.
#[inline]
pub fn random_u64() -> u64 {
    STATE.with(|state| {
        let pid = std::process::id();
        if STATE_PID.with(|p| p.get()) != pid {
            STATE_PID.with(|p| p.set(pid));
            let n = THREAD_SEEDS.fetch_add(1, Ordering::Relaxed);
            state
                .set(os_entropy() ^ (u64::from(pid) << 32) ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        }
        loop {
            let v = splitmix64(state);
            if v != 0 {
                return v;
            }
        }
    })
}

/// A new random span id.
#[inline]
pub fn new_span_id() -> SpanId {
    random_u64()
}

/// A new random trace id.
pub fn new_trace_id() -> TraceId {
    TraceId((u128::from(random_u64()) << 64) | u128::from(random_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_nonzero() {
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = new_span_id();
            assert_ne!(id, 0);
            assert!(seen.insert(id));
        }
        assert_ne!(new_trace_id(), new_trace_id());
    }

    #[test]
    fn hex_forms() {
        assert_eq!(TraceId(1).to_hex(), "00000000000000000000000000000001");
        assert_eq!(span_hex(0xabc), "0000000000000abc");
    }
}
