//! Sampling decisions: per session from the trace id, per function from its name.
//!
//! Session sampling uses exactly the rule of OpenTelemetry's `TraceIdRatioBased` sampler
//! (Python SDK, `opentelemetry/sdk/trace/sampling.py`), so ferrotrace and every
//! OpenTelemetry-instrumented service agree on which traces are kept:
//!
//! ```python
//! TRACE_ID_LIMIT = (1 << 64) - 1
//! bound = round(rate * (TRACE_ID_LIMIT + 1))
//! sampled = trace_id & TRACE_ID_LIMIT < bound
//! ```
//!
//! Function sampling keeps a deterministic subset of functions: the same functions in every
//! process, because it depends only on a seahash of `module::qualname`.

use std::hash::Hasher;

use crate::ids::TraceId;

/// `2^64` as an `f64` (exact).
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// The sampling bound for `rate`, as Python computes `round(rate * 2**64)`.
///
/// Python multiplies a float by an int by converting the int to a float (`2**64` is exact), so
/// the product is `rate * 2^64` in `f64`, which is exact: scaling by a power of two only moves
/// the exponent. `round()` on a float rounds half to even and returns an exact integer. Only
/// rates below `2^-11` have a fractional part left to round. A NaN or negative rate gives 0
/// (nothing sampled); a rate above 1 gives a bound above `2^64` (everything sampled), where
/// Python would have refused the rate.
fn bound_for_rate(rate: f64) -> u128 {
    if rate.is_nan() || rate <= 0.0 {
        return 0;
    }
    let x = rate * TWO_POW_64;
    // From 2^52 on every f64 is an integer; below, `x - floor(x)` is exact. `as` saturates,
    // and the values are integer-valued, so the conversions are exact.
    if x >= 4_503_599_627_370_496.0 {
        return x as u128;
    }
    let floor = x.floor();
    let frac = x - floor;
    let floor = floor as u128;
    if frac > 0.5 || (frac == 0.5 && floor % 2 == 1) {
        floor + 1
    } else {
        floor
    }
}

/// Whether a session with this trace id is sampled at `rate`, by OpenTelemetry's
/// `TraceIdRatioBased` rule: the low 64 bits of the trace id are compared with
/// `round(rate * 2^64)` (rounding half to even). Rate 1 samples every trace, rate 0 none.
pub fn trace_id_ratio_sampled(trace_id: TraceId, rate: f64) -> bool {
    let low = trace_id.0 & u128::from(u64::MAX);
    low < bound_for_rate(rate)
}

/// Whether the function `module::qualname` is kept at `rate`: the seahash of the UTF-8 bytes
/// of `module::qualname` is kept iff it is below `rate * 2^64`. Deterministic across processes;
/// rate 1 keeps every function, rate 0 none.
pub fn function_sampled(module: &str, qualname: &str, rate: f64) -> bool {
    let mut h = seahash::SeaHasher::new();
    h.write(module.as_bytes());
    h.write(b"::");
    h.write(qualname.as_bytes());
    u128::from(h.finish()) < bound_for_rate(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_matches_python_round() {
        // Values computed with CPython: round(r * (1 << 64)).
        assert_eq!(bound_for_rate(0.0), 0);
        assert_eq!(bound_for_rate(1.0), 1u128 << 64);
        assert_eq!(bound_for_rate(0.5), 1u128 << 63);
        assert_eq!(bound_for_rate(0.25), 1u128 << 62);
        // 0.1 * 2**64 == 1844674407370955264 in Python (the f64 nearest 0.1, scaled).
        assert_eq!(bound_for_rate(0.1), 1_844_674_407_370_955_264);
        // 0.01 * 2**64 == 184467440737095520
        assert_eq!(bound_for_rate(0.01), 184_467_440_737_095_520);
        // 0.99 * 2**64 == 18262276632972455936
        assert_eq!(bound_for_rate(0.99), 18_262_276_632_972_455_936);
        // Ties round to even: 2.5 * 2^-64 -> 2, 3.5 * 2^-64 -> 4, 0.5 * 2^-64 -> 0.
        assert_eq!(bound_for_rate(2.5 / TWO_POW_64), 2);
        assert_eq!(bound_for_rate(3.5 / TWO_POW_64), 4);
        assert_eq!(bound_for_rate(0.5 / TWO_POW_64), 0);
        assert_eq!(bound_for_rate(1.5 / TWO_POW_64), 2);
        // The smallest positive double rounds to 0.
        assert_eq!(bound_for_rate(f64::from_bits(1)), 0);
        assert_eq!(bound_for_rate(f64::NAN), 0);
        assert_eq!(bound_for_rate(-0.5), 0);
        assert!(bound_for_rate(2.0) > 1u128 << 64);
    }

    #[test]
    fn trace_id_rule_edges() {
        let max_low = TraceId(u128::from(u64::MAX));
        let zero_low = TraceId(1u128 << 64);
        // Rate 1 samples everything, including the largest low half.
        assert!(trace_id_ratio_sampled(max_low, 1.0));
        assert!(trace_id_ratio_sampled(zero_low, 1.0));
        // Rate 0 samples nothing, not even a zero low half.
        assert!(!trace_id_ratio_sampled(zero_low, 0.0));
        assert!(!trace_id_ratio_sampled(TraceId(1), 0.0));
        // Only the low 64 bits count.
        let high = 0xffff_ffff_ffff_ffffu128 << 64;
        assert!(trace_id_ratio_sampled(TraceId(high | 5), 0.5));
        assert!(!trace_id_ratio_sampled(TraceId(high | (1u128 << 63)), 0.5));
        assert!(trace_id_ratio_sampled(
            TraceId(high | ((1u128 << 63) - 1)),
            0.5
        ));
        // Values checked against opentelemetry-sdk's TraceIdRatioBased(0.1).
        let b = 1_844_674_407_370_955_264u128;
        assert!(trace_id_ratio_sampled(TraceId(b - 1), 0.1));
        assert!(!trace_id_ratio_sampled(TraceId(b), 0.1));
    }

    #[test]
    fn trace_id_rate_is_respected() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for rate in [0.01, 0.5, 0.99] {
            let n = 10_000;
            let kept = (0..n)
                .filter(|_| {
                    let id = (u128::from(next()) << 64) | u128::from(next());
                    trace_id_ratio_sampled(TraceId(id), rate)
                })
                .count();
            let frac = kept as f64 / n as f64;
            assert!((frac - rate).abs() < 0.02, "rate {rate}: kept {frac}");
        }
    }

    #[test]
    fn function_hash_is_seahash_of_joined_name() {
        for (m, q) in [
            ("pkg.mod", "Class.method"),
            ("", ""),
            ("a", "<lambda>"),
            ("é", "ünï"),
        ] {
            let mut h = seahash::SeaHasher::new();
            h.write(m.as_bytes());
            h.write(b"::");
            h.write(q.as_bytes());
            assert_eq!(h.finish(), seahash::hash(format!("{m}::{q}").as_bytes()));
        }
    }

    #[test]
    fn function_sampling_edges_and_determinism() {
        for i in 0..1000 {
            let q = format!("f{i}");
            assert!(function_sampled("m", &q, 1.0));
            assert!(!function_sampled("m", &q, 0.0));
            assert_eq!(
                function_sampled("m", &q, 0.3),
                function_sampled("m", &q, 0.3)
            );
            // Monotone in the rate: kept at 0.3 implies kept at 0.6.
            if function_sampled("m", &q, 0.3) {
                assert!(function_sampled("m", &q, 0.6));
            }
        }
        // A fixed value, so a change of hash or joining rule is noticed.
        let h = seahash::hash(b"pkg.mod::Class.method");
        let expected = u128::from(h) < bound_for_rate(0.5);
        assert_eq!(function_sampled("pkg.mod", "Class.method", 0.5), expected);
    }

    #[test]
    fn function_sampling_fraction_within_two_percent() {
        let names: Vec<(String, String)> = (0..10_000)
            .map(|i| {
                (
                    format!("app.module{}", i % 97),
                    format!("Class{}.method_{i}", i % 13),
                )
            })
            .collect();
        for rate in [0.1, 0.5, 0.9] {
            let kept = names
                .iter()
                .filter(|(m, q)| function_sampled(m, q, rate))
                .count();
            let frac = kept as f64 / names.len() as f64;
            assert!((frac - rate).abs() <= 0.02, "rate {rate}: kept {frac}");
        }
    }
}
