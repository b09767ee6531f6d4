//! Self-metrics: what was recorded, exported and dropped, shared by the hook and the
//! export thread as relaxed atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters, exposed by `ferrotrace.stats()` and written in the `meta` record.
#[derive(Default, Debug)]
pub struct Counters {
    /// Span records handed from a thread buffer to the pipeline (kept or dropped).
    pub recorded: AtomicU64,
    /// Span records every exporter accepted.
    pub exported: AtomicU64,
    /// Span records dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Span records dropped because an exporter failed to write them.
    pub dropped_export_error: AtomicU64,
    /// Span records made after shutdown, or lost to a fork, that no exporter will see.
    pub dropped_after_shutdown: AtomicU64,
    /// Session or control messages dropped because their queue was full.
    pub dropped_sessions: AtomicU64,
    /// Export failures (each failed exporter call counts once).
    pub export_errors: AtomicU64,
    /// Bytes written by file exporters.
    pub bytes_written: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_ended: AtomicU64,
    /// Sessions not sampled (no hook installed for them).
    pub sessions_unsampled: AtomicU64,
    /// `traceparent` headers that were malformed and started a new trace instead.
    pub invalid_traceparent: AtomicU64,
    /// `tracestate` headers that were malformed (too long, too many members, bad members)
    /// and dropped.
    pub invalid_tracestate: AtomicU64,
    /// Per-code-object decisions taken (include/exclude, identity): one per code object.
    pub decisions: AtomicU64,
    /// Event locations the monitoring backend switched off with `DISABLE` (code that is never
    /// recorded): after that CPython no longer calls ferrotrace there.
    pub disabled_locations: AtomicU64,
    /// Batches handed to the export thread.
    pub batches: AtomicU64,
    /// Span records a network exporter delivered (a 2xx, including replays from the spool).
    pub network_delivered: AtomicU64,
    /// HTTP requests of the network exporters that were retried.
    pub network_retries: AtomicU64,
    /// Batches a network exporter could not deliver after its retries (then spooled).
    pub network_failures: AtomicU64,
    /// Span records a server rejected in an OTLP `partial_success` response.
    pub partial_success_rejected: AtomicU64,
    /// Span records a server refused as malformed (400, 413, 415, 422): not retried, not spooled.
    pub network_rejected: AtomicU64,
    /// Span records written to the spool.
    pub spooled: AtomicU64,
    /// Span records replayed from the spool and delivered.
    pub spool_replayed: AtomicU64,
    /// Span records lost by the network exporters: beyond the spool cap, or no spool to write to.
    pub spool_dropped: AtomicU64,
    /// Profilers that were on a thread when ferrotrace's setprofile hook went in, and that
    /// ferrotrace then passed every event to (chained) until it put them back.
    pub profilers_chained: AtomicU64,
    /// Times ferrotrace found its setprofile hook replaced or removed by other code (another
    /// profiler, `sys.setprofile`), or could not keep a previous profiler running.
    pub profiler_conflicts: AtomicU64,
    /// Nanoseconds spent building argument and return-value previews inside the program's
    /// calls: ferrotrace's time, taken out of the self time of the calls it fell in.
    pub capture_overhead_ns: AtomicU64,
}

/// A plain snapshot of [`Counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub recorded: u64,
    pub exported: u64,
    pub dropped_queue_full: u64,
    pub dropped_export_error: u64,
    pub dropped_after_shutdown: u64,
    pub dropped_sessions: u64,
    pub export_errors: u64,
    pub bytes_written: u64,
    pub sessions_started: u64,
    pub sessions_ended: u64,
    pub sessions_unsampled: u64,
    pub invalid_traceparent: u64,
    pub invalid_tracestate: u64,
    pub decisions: u64,
    pub disabled_locations: u64,
    pub batches: u64,
    pub network_delivered: u64,
    pub network_retries: u64,
    pub network_failures: u64,
    pub partial_success_rejected: u64,
    pub network_rejected: u64,
    pub spooled: u64,
    pub spool_replayed: u64,
    pub spool_dropped: u64,
    pub profilers_chained: u64,
    pub profiler_conflicts: u64,
    pub capture_overhead_ns: u64,
}

impl Snapshot {
    /// Span records lost for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_export_error + self.dropped_after_shutdown
    }

    /// Name/value pairs in a stable order, for `stats()` and the `meta` record.
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("recorded", self.recorded),
            ("exported", self.exported),
            ("dropped", self.dropped()),
            ("dropped_queue_full", self.dropped_queue_full),
            ("dropped_export_error", self.dropped_export_error),
            ("dropped_after_shutdown", self.dropped_after_shutdown),
            ("dropped_sessions", self.dropped_sessions),
            ("export_errors", self.export_errors),
            ("bytes_written", self.bytes_written),
            ("sessions_started", self.sessions_started),
            ("sessions_ended", self.sessions_ended),
            ("sessions_unsampled", self.sessions_unsampled),
            ("invalid_traceparent", self.invalid_traceparent),
            ("invalid_tracestate", self.invalid_tracestate),
            ("decisions", self.decisions),
            ("disabled_locations", self.disabled_locations),
            ("batches", self.batches),
            ("network_delivered", self.network_delivered),
            ("network_retries", self.network_retries),
            ("network_failures", self.network_failures),
            ("partial_success_rejected", self.partial_success_rejected),
            ("network_rejected", self.network_rejected),
            ("spooled", self.spooled),
            ("spool_replayed", self.spool_replayed),
            ("spool_dropped", self.spool_dropped),
            ("profilers_chained", self.profilers_chained),
            ("profiler_conflicts", self.profiler_conflicts),
            ("capture_overhead_ns", self.capture_overhead_ns),
        ]
    }
}

impl Counters {
    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            recorded: r(&self.recorded),
            exported: r(&self.exported),
            dropped_queue_full: r(&self.dropped_queue_full),
            dropped_export_error: r(&self.dropped_export_error),
            dropped_after_shutdown: r(&self.dropped_after_shutdown),
            dropped_sessions: r(&self.dropped_sessions),
            export_errors: r(&self.export_errors),
            bytes_written: r(&self.bytes_written),
            sessions_started: r(&self.sessions_started),
            sessions_ended: r(&self.sessions_ended),
            sessions_unsampled: r(&self.sessions_unsampled),
            invalid_traceparent: r(&self.invalid_traceparent),
            invalid_tracestate: r(&self.invalid_tracestate),
            decisions: r(&self.decisions),
            disabled_locations: r(&self.disabled_locations),
            batches: r(&self.batches),
            network_delivered: r(&self.network_delivered),
            network_retries: r(&self.network_retries),
            network_failures: r(&self.network_failures),
            partial_success_rejected: r(&self.partial_success_rejected),
            network_rejected: r(&self.network_rejected),
            spooled: r(&self.spooled),
            spool_replayed: r(&self.spool_replayed),
            spool_dropped: r(&self.spool_dropped),
            profilers_chained: r(&self.profilers_chained),
            profiler_conflicts: r(&self.profiler_conflicts),
            capture_overhead_ns: r(&self.capture_overhead_ns),
        }
    }
}
