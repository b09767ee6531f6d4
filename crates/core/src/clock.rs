//! Monotonic timestamps for the hot path and their conversion to Unix time.
//!
//! Every event carries nanoseconds since a per-process monotonic anchor, so durations never
//! go negative. Where the CPU's cycle counter is invariant and the kernel uses it as its own
//! clock, it is read directly (a few ns instead of a `clock_gettime` call) and scaled to
//! nanoseconds with a factor calibrated at start-up. Wall-clock Unix time is derived from a
//! single anchor pair (monotonic, Unix) taken once per process.

use once_cell::sync::Lazy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long start-up calibration of the cycle counter against the monotonic clock spins.
const CALIBRATION: Duration = Duration::from_millis(2);

/// The per-process anchor: a monotonic instant, the Unix time taken at the same moment, and
/// the cycle-counter scale when the cycle counter is used.
struct Anchor {
    instant: Instant,
    unix_ns: u64,
    tsc: Option<TscScale>,
}

/// Converts cycle-counter ticks to nanoseconds since the anchor.
struct TscScale {
    /// The counter at the anchor instant.
    start: u64,
    /// Nanoseconds per tick, times 2^32.
    mult: u64,
}

/// The anchor's cycle-counter scale, copied out of [`ANCHOR`] when it is taken so that
/// [`now_ns`] reads two plain words instead of checking the lazy cell on every call.
/// `TSC_MULT` is 0 until then, and stays 0 where the cycle counter is not used.
static TSC_START: AtomicU64 = AtomicU64::new(0);
static TSC_MULT: AtomicU64 = AtomicU64::new(0);

static ANCHOR: Lazy<Anchor> = Lazy::new(|| {
    let use_tsc = tsc::usable();
    let (instant, start) = paired_reading();
    let unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let tsc = use_tsc.then(|| calibrate(instant, start)).flatten();
    if let Some(scale) = &tsc {
        TSC_START.store(scale.start, Ordering::Relaxed);
        // Release: a reader that sees the factor also sees the start it goes with.
        TSC_MULT.store(scale.mult, Ordering::Release);
    }
    Anchor {
        instant,
        unix_ns,
        tsc,
    }
});

/// A monotonic instant and the cycle counter read at the same moment: of a few attempts, the
/// one whose two bracketing counter reads lie closest together (so a preemption between the
/// reads cannot skew calibration), with the counter taken at the bracket's midpoint.
fn paired_reading() -> (Instant, u64) {
    let mut best = (Instant::now(), 0, u64::MAX);
    for _ in 0..8 {
        let before = tsc::read();
        let instant = Instant::now();
        let after = tsc::read();
        let width = after.wrapping_sub(before);
        if width < best.2 {
            best = (instant, before + width / 2, width);
        }
    }
    (best.0, best.1)
}

/// Measures the cycle counter's rate against the monotonic clock from the paired reading
/// taken at `instant`, spinning briefly before taking the second pair.
fn calibrate(instant: Instant, start: u64) -> Option<TscScale> {
    while instant.elapsed() < CALIBRATION {
        std::hint::spin_loop();
    }
    let (later, end) = paired_reading();
    let ns = later.duration_since(instant).as_nanos();
    let ticks = end.checked_sub(start)?;
    let mult = u64::try_from((ns << 32) / u128::from(ticks.max(1))).ok()?;
    (mult > 0).then_some(TscScale { start, mult })
}

/// The x86_64 time-stamp counter, used only where the kernel itself uses it as its clock
/// source (so it is invariant and synchronised across CPUs).
#[cfg(target_arch = "x86_64")]
mod tsc {
    /// Whether Linux trusts the TSC as its clock source.
    pub fn usable() -> bool {
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc")
    }

    /// The current counter value.
    #[inline(always)]
    pub fn read() -> u64 {
        // SAFETY: RDTSC exists on every x86_64 CPU and only reads a counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
}

/// Other architectures use the monotonic clock.
#[cfg(not(target_arch = "x86_64"))]
mod tsc {
    /// No cycle counter is used here.
    pub fn usable() -> bool {
        false
    }

    /// Never called: `usable` is false.
    pub fn read() -> u64 {
        0
    }
}

/// Takes the anchor (and calibrates the cycle counter) now: call once at start-up, off the
/// hot path.
pub fn init() {
    Lazy::force(&ANCHOR);
}

/// Which clock [`now_ns`] reads: `"tsc"` (the cycle counter, calibrated to nanoseconds) or
/// `"monotonic"`.
pub fn source() -> &'static str {
    if ANCHOR.tsc.is_some() {
        "tsc"
    } else {
        "monotonic"
    }
}

/// Monotonic nanoseconds since the process anchor.
#[inline(always)]
pub fn now_ns() -> u64 {
    let mult = TSC_MULT.load(Ordering::Acquire);
    if mult != 0 {
        return scale_ticks(TSC_START.load(Ordering::Relaxed), mult);
    }
    now_ns_from_anchor()
}

/// Nanoseconds from the anchor's counter value `start` to now, at `mult` (ns per tick × 2^32).
#[inline(always)]
fn scale_ticks(start: u64, mult: u64) -> u64 {
    let ticks = tsc::read().saturating_sub(start);
    ((u128::from(ticks) * u128::from(mult)) >> 32) as u64
}

/// [`now_ns`] before the anchor is taken, or where the cycle counter is not used.
#[inline(never)]
fn now_ns_from_anchor() -> u64 {
    let anchor = &*ANCHOR;
    match &anchor.tsc {
        Some(scale) => scale_ticks(scale.start, scale.mult),
        None => anchor.instant.elapsed().as_nanos() as u64,
    }
}

/// The hot path's timestamp: the raw cycle counter where it is used, else [`now_ns`]. Spans
/// are recorded in ticks and converted by the export thread ([`ticks_to_ns`],
/// [`ticks_span_ns`]), so the application thread does no multiplication. The unit is fixed by
/// [`init`], which runs before anything is recorded.
#[inline(always)]
pub fn now_ticks() -> u64 {
    if TSC_MULT.load(Ordering::Relaxed) != 0 {
        return tsc::read();
    }
    now_ns_from_anchor()
}

/// Nanoseconds since the anchor for a timestamp from [`now_ticks`].
pub fn ticks_to_ns(ticks: u64) -> u64 {
    match TSC_MULT.load(Ordering::Acquire) {
        0 => ticks,
        mult => {
            let since = ticks.saturating_sub(TSC_START.load(Ordering::Relaxed));
            ((u128::from(since) * u128::from(mult)) >> 32) as u64
        }
    }
}

/// Nanoseconds in a span of `ticks` (a difference of two [`now_ticks`] readings).
pub fn ticks_span_ns(ticks: u64) -> u64 {
    match TSC_MULT.load(Ordering::Acquire) {
        0 => ticks,
        mult => ((u128::from(ticks) * u128::from(mult)) >> 32) as u64,
    }
}

/// The number of ticks in `ns` nanoseconds (saturating), for thresholds compared with spans
/// of ticks.
pub fn ns_to_ticks_span(ns: u64) -> u64 {
    match TSC_MULT.load(Ordering::Acquire) {
        0 => ns,
        mult => u64::try_from((u128::from(ns) << 32) / u128::from(mult)).unwrap_or(u64::MAX),
    }
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

    #[test]
    fn ticks_convert_to_the_same_nanoseconds() {
        init();
        let before = now_ns();
        let t0 = now_ticks();
        std::thread::sleep(Duration::from_millis(20));
        let t1 = now_ticks();
        let after = now_ns();
        let (a, b) = (ticks_to_ns(t0), ticks_to_ns(t1));
        assert!(
            before <= a && a <= b && b <= after,
            "{before} {a} {b} {after}"
        );
        let span = ticks_span_ns(t1 - t0);
        assert!(span.abs_diff(b - a) <= 1, "{span} vs {}", b - a);
        assert!(span >= 20_000_000 && span < 20_000_000 + (after - before));
        let threshold = ns_to_ticks_span(1_000_000);
        assert!(ticks_span_ns(threshold).abs_diff(1_000_000) <= 1);
    }

    #[test]
    fn agrees_with_the_monotonic_clock() {
        init();
        let start = Instant::now();
        let a = now_ns();
        std::thread::sleep(Duration::from_millis(50));
        let b = now_ns();
        let real = start.elapsed().as_nanos() as u64;
        let measured = b - a;
        // Calibration error under a loaded test runner stays far below 1 %.
        assert!(
            measured * 1000 <= real * 1005 && measured * 1000 >= real * 990,
            "{} clock measured {measured} ns over {real} ns",
            source()
        );
    }
}
