//! Per-function totals kept by the export thread for the end-of-run summary.

use crate::event::SpanRecord;

/// Call count, inclusive and self time of one function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionTotals {
    pub calls: u64,
    /// Sum of durations of calls that were not inside another call of the same function.
    pub total_ns: u64,
    pub self_ns: u64,
}

/// Function ids at or above this are left out of the summary (a function table that large
/// would need gigabytes; the bound keeps a corrupt id from sizing the vector).
const MAX_FUNCTIONS: usize = 1 << 24;

/// Aggregates span records by function id.
#[derive(Default, Debug)]
pub struct Summary {
    /// Indexed by function id: the ids are dense (handed out in order by the function table),
    /// so a vector is both smaller and far cheaper per span than a hash map.
    by_func: Vec<FunctionTotals>,
}

impl Summary {
    /// Adds a batch. `self_ns` and recursion are taken from the record's own fields.
    pub fn add(&mut self, spans: &[SpanRecord]) {
        for s in spans {
            let i = s.func_id as usize;
            if i >= MAX_FUNCTIONS {
                continue;
            }
            if i >= self.by_func.len() {
                self.by_func.resize(i + 1, FunctionTotals::default());
            }
            let t = &mut self.by_func[i];
            t.calls += 1;
            if s.flags & crate::event::FLAG_RECURSIVE == 0 {
                t.total_ns += s.duration_ns;
            }
            t.self_ns += s.self_ns;
        }
    }

    /// The `n` functions with the largest inclusive time.
    pub fn top(&self, n: usize) -> Vec<(u32, FunctionTotals)> {
        let mut v: Vec<_> = (0u32..)
            .zip(self.by_func.iter().copied())
            .filter(|(_, t)| t.calls > 0)
            .collect();
        v.sort_by(|a, b| b.1.total_ns.cmp(&a.1.total_ns).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}
