//! Monotonic timestamps for the hot path and their conversion to Unix time.
//!
//! Every event carries nanoseconds since a per-process monotonic anchor, so durations never
//! go negative. Wall-clock Unix time is derived from a single anchor pair (monotonic, Unix)
//! taken once per process.

use once_cell::sync::Lazy;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The per-process anchor: a monotonic instant and the Unix time taken at the same moment.
struct Anchor {
    instant: Instant,
    unix_ns: u64,
}

static ANCHOR: Lazy<Anchor> = Lazy::new(|| {
    let instant = Instant::now();
    let unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Anchor { instant, unix_ns }
});

/// Forces the anchor to be taken now (call once at start-up, off the hot path).
pub fn init() {
    Lazy::force(&ANCHOR);
}

/// Monotonic nanoseconds since the process anchor.
#[inline(always)]
pub fn now_ns() -> u64 {
    ANCHOR.instant.elapsed().as_nanos() as u64
}

/// Converts a monotonic timestamp from [`now_ns`] to nanoseconds since the Unix epoch.
pub fn to_unix_ns(mono_ns: u64) -> u64 {
    ANCHOR.unix_ns.saturating_add(mono_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_anchored() {
        init();
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let derived = to_unix_ns(now_ns());
        assert!(
            derived.abs_diff(unix_now) < 1_000_000_000,
            "anchor drifted by more than 1 s"
        );
    }
}
