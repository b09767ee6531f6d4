//! The contract between the export thread and the exporters. Exporters only consume.

use crate::event::{HttpRecord, SessionRecord, SpanBatch};
use crate::functions::FunctionTable;
use crate::metrics::Snapshot;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What every exporter may read while exporting.
pub struct ExportContext {
    pub functions: Arc<FunctionTable>,
    pub pid: u32,
    pub meta: MetaInfo,
    /// Set when shutdown begins: the moment its caller stops waiting. Exporters that may
    /// block (network sends) finish before it.
    pub shutdown_deadline: Option<Instant>,
}

/// Static facts written in the `meta` record.
#[derive(Clone, Debug, Default)]
pub struct MetaInfo {
    pub agent_version: String,
    pub python_version: String,
    pub config_digest: String,
    pub service_name: String,
    /// What went wrong in this process that the program must not see (settings that were
    /// rejected, tracing that could not start): written in the `meta` record.
    pub diagnostics: Arc<Diagnostics>,
}

/// The diagnostics of one process, added while it runs and read when the `meta` record is
/// written. Bounded: past [`Diagnostics::MAX`] messages only a count is kept.
#[derive(Debug, Default)]
pub struct Diagnostics {
    inner: Mutex<(Vec<String>, u64)>,
}

impl Diagnostics {
    /// Messages kept; more are counted as omitted.
    pub const MAX: usize = 64;
    /// Characters kept of one message.
    pub const MAX_CHARS: usize = 2000;

    /// Adds one message (cut to [`Diagnostics::MAX_CHARS`] characters).
    pub fn push(&self, message: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.len() >= Self::MAX {
            g.1 += 1;
            return;
        }
        let text = match message.char_indices().nth(Self::MAX_CHARS) {
            Some((cut, _)) => format!("{}...", &message[..cut]),
            None => message.to_string(),
        };
        g.0.push(text);
    }

    /// Adds `message` unless the same message was added before; returns whether it is new
    /// (so that callers say it once).
    pub fn push_once(&self, message: &str) -> bool {
        let seen = {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.0.iter().any(|m| m == message)
        };
        if !seen {
            self.push(message);
        }
        !seen
    }

    /// The messages so far, with a last line counting those left out.
    pub fn messages(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = g.0.clone();
        if g.1 > 0 {
            v.push(format!("{} more diagnostics omitted", g.1));
        }
        v
    }
}

/// An exporter's failure, counted by the pipeline; never propagated to the application.
#[derive(Debug)]
pub struct ExportError(pub String);

impl<E: std::error::Error> From<E> for ExportError {
    fn from(e: E) -> Self {
        ExportError(e.to_string())
    }
}

/// A sink for finished records, owned by the export thread.
pub trait Exporter: Send {
    /// Short name used in errors and stats (`jsonl`, `chrome`, ...).
    fn name(&self) -> &'static str;
    /// Exports finished span records (with the text their previews point into). Returns the
    /// bytes written, if the exporter counts them.
    fn export_spans(&mut self, batch: &SpanBatch, ctx: &ExportContext) -> Result<u64, ExportError>;
    /// Exports a session start (`end_ns` is None) or end.
    fn export_session(
        &mut self,
        session: &SessionRecord,
        ctx: &ExportContext,
    ) -> Result<u64, ExportError>;
    /// Exports one outgoing HTTP request (already redacted).
    fn export_http(&mut self, http: &HttpRecord, ctx: &ExportContext) -> Result<u64, ExportError>;
    /// Pushes buffered output (and records held back for the next write) to its destination,
    /// which a file exporter then closes until there is more to write. Returns the bytes
    /// written by this call, if the exporter counts them.
    fn flush(&mut self) -> Result<u64, ExportError>;
    /// Writes the final record with the counters and closes the destination.
    fn shutdown(&mut self, counters: &Snapshot, ctx: &ExportContext) -> Result<u64, ExportError>;
    /// True for an exporter whose shutdown waits for network delivery. These shut down
    /// first, so that the final records of the others count what they delivered or spooled.
    fn delivers_remotely(&self) -> bool {
        false
    }
    /// Before `fork()`: stops any thread of the exporter's own (keeping its queue), waiting
    /// at most until `deadline`.
    fn park(&mut self, _deadline: std::time::Instant) {}
    /// After `fork()`, in the parent: starts again what [`Exporter::park`] stopped.
    fn resume(&mut self) {}
}
