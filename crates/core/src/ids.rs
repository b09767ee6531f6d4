//! W3C trace and span identifiers, generated without locks.
//!
//! Each thread (and each recorder) keeps its own splitmix64 state, seeded from the OS
//! entropy source mixed with the process id and a per-thread counter, so ids from forked
//! children and from threads never collide in practice and generating one costs a few
//! arithmetic operations.

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

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
/// Bumped in the child of every `fork()`: a generator seeded under an older epoch reseeds.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(1);
static REGISTER_AT_FORK: Once = Once::new();

/// The `pthread_atfork` child handler: marks every generator as needing a reseed.
extern "C" fn bump_fork_epoch() {
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
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

/// A splitmix64 generator of random non-zero ids, for one thread.
///
/// It is reseeded from OS entropy on first use and after every `fork()` (detected by an
/// epoch counter a `pthread_atfork` child handler bumps, so no system call per id), so a
/// forked child never repeats the ids its parent goes on to generate.
#[derive(Debug, Default)]
pub struct IdGenerator {
    state: u64,
    epoch: u64,
}

impl IdGenerator {
    /// A generator that seeds itself on first use.
    pub const fn new() -> Self {
        IdGenerator { state: 0, epoch: 0 }
    }

    /// The next random, non-zero 64-bit value.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let epoch = FORK_EPOCH.load(Ordering::Relaxed);
        if self.epoch != epoch {
            self.reseed(epoch);
        }
        loop {
            self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    }

    /// Seeds from OS entropy, the pid and a per-process counter; registers the fork
    /// handler on first use.
    #[cold]
    fn reseed(&mut self, epoch: u64) {
        REGISTER_AT_FORK.call_once(|| {
            // The handler only increments an atomic: async-signal-safe in a forked child.
            crate::fork::at_fork_child(bump_fork_epoch);
        });
        let n = THREAD_SEEDS.fetch_add(1, Ordering::Relaxed);
        self.state = os_entropy()
            ^ (u64::from(std::process::id()) << 32)
            ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        self.epoch = FORK_EPOCH.load(Ordering::Relaxed).max(epoch);
    }
}

thread_local! {
    static GENERATOR: RefCell<IdGenerator> = const { RefCell::new(IdGenerator::new()) };
}

/// A random, non-zero 64-bit value from this thread's generator (see [`IdGenerator`]).
#[inline]
pub fn random_u64() -> u64 {
    GENERATOR.with(|g| g.borrow_mut().next_u64())
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
    fn a_forked_child_reseeds() {
        let mut g = IdGenerator::new();
        let first = g.next_u64();
        let before = g.state;
        bump_fork_epoch();
        let after_fork = g.next_u64();
        assert_ne!(first, after_fork);
        assert_ne!(g.state, before.wrapping_add(0x9E37_79B9_7F4A_7C15));
    }

    #[test]
    fn hex_forms() {
        assert_eq!(TraceId(1).to_hex(), "00000000000000000000000000000001");
        assert_eq!(span_hex(0xabc), "0000000000000abc");
    }
}
