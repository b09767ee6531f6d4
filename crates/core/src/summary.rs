//! Per-function totals kept by the export thread for the end-of-run summary.

use crate::event::SpanRecord;
use std::collections::HashMap;

/// Call count, inclusive and self time of one function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionTotals {
    pub calls: u64,
    /// Sum of durations of calls that were not inside another call of the same function.
    pub total_ns: u64,
    pub self_ns: u64,
}

/// Aggregates span records by function id.
#[derive(Default, Debug)]
pub struct Summary {
    by_func: HashMap<u32, FunctionTotals>,
}

impl Summary {
    /// Adds a batch. `self_ns` and recursion are taken from the record's own fields.
    pub fn add(&mut self, spans: &[SpanRecord]) {
        for s in spans {
            let t = self.by_func.entry(s.func_id).or_default();
            t.calls += 1;
            if s.flags & crate::event::FLAG_RECURSIVE == 0 {
                t.total_ns += s.duration_ns;
            }
            t.self_ns += s.self_ns;
        }
    }

    /// The `n` functions with the largest inclusive time.
    pub fn top(&self, n: usize) -> Vec<(u32, FunctionTotals)> {
        let mut v: Vec<_> = self.by_func.iter().map(|(k, t)| (*k, *t)).collect();
        v.sort_by(|a, b| b.1.total_ns.cmp(&a.1.total_ns).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}
