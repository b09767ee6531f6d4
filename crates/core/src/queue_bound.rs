//! What waits for the export thread, counted in spans and in bytes, against the queue's bounds:
//! at most `FERROTRACE_MAX_QUEUE` spans and [`BYTES_PER_QUEUED_SPAN`] bytes per allowed span.
//!
//! Counting spans rather than batches keeps the bound what `FERROTRACE_MAX_QUEUE` says even when
//! batches are handed over before they are full (a batch whose preview text would outgrow its
//! room, a thread's batch at the flush interval); counting bytes keeps memory bounded when such
//! batches are many, or their previews large.

use crate::event::{SpanBatch, SpanRecord};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory the queue may hold per span allowed by `FERROTRACE_MAX_QUEUE`: a span record
/// (`size_of::<SpanRecord>()`) and about 900 bytes of previews. At the default (262,144 spans)
/// the queue holds at most 256 MiB.
pub const BYTES_PER_QUEUED_SPAN: usize = 1024;

/// Spans and bytes in the queue, or being exported.
#[derive(Debug)]
pub struct QueueBound {
    spans: AtomicUsize,
    bytes: AtomicUsize,
    max_spans: usize,
    max_bytes: usize,
}

impl QueueBound {
    /// Bounds for a queue of `max_spans` spans.
    pub fn new(max_spans: usize) -> Self {
        QueueBound {
            spans: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_spans: max_spans.max(1),
            max_bytes: max_spans.max(1).saturating_mul(BYTES_PER_QUEUED_SPAN),
        }
    }

    /// Memory a batch holds (its records' and its text's storage).
    pub fn bytes_of(batch: &SpanBatch) -> usize {
        batch.spans.capacity() * std::mem::size_of::<SpanRecord>() + batch.text.capacity()
    }

    /// Takes room for `spans` spans of `bytes` bytes; false (nothing taken) when that would
    /// pass a bound. An empty queue always takes one batch, so a batch larger than the byte
    /// bound is not dropped for its size alone.
    pub fn try_take(&self, spans: usize, bytes: usize) -> bool {
        let before_spans = self.spans.fetch_add(spans, Ordering::AcqRel);
        let before_bytes = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        let empty = before_spans == 0 && before_bytes == 0;
        let fits = before_spans + spans <= self.max_spans && before_bytes + bytes <= self.max_bytes;
        if fits || empty {
            return true;
        }
        self.release(spans, bytes);
        false
    }

    /// Gives back what [`QueueBound::try_take`] took, once the batch is exported.
    pub fn release(&self, spans: usize, bytes: usize) {
        self.spans.fetch_sub(spans, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Spans waiting or being exported.
    pub fn spans(&self) -> usize {
        self.spans.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_spans_not_batches() {
        let q = QueueBound::new(100);
        for _ in 0..10 {
            assert!(q.try_take(10, 1000));
        }
        assert!(!q.try_take(1, 10), "the 101st span passes the bound");
        q.release(10, 1000);
        assert!(q.try_take(7, 700));
        assert_eq!(q.spans(), 97);
    }

    #[test]
    fn bytes_bound_the_queue_and_an_empty_queue_takes_any_batch() {
        let q = QueueBound::new(10);
        assert!(
            q.try_take(1, 50 * BYTES_PER_QUEUED_SPAN),
            "empty: taken whatever its size"
        );
        assert!(!q.try_take(1, 1), "over the byte bound");
        q.release(1, 50 * BYTES_PER_QUEUED_SPAN);
        assert!(q.try_take(1, 5 * BYTES_PER_QUEUED_SPAN));
        assert!(q.try_take(1, 5 * BYTES_PER_QUEUED_SPAN));
        assert!(!q.try_take(1, 1));
        assert_eq!(q.spans(), 2);
    }
}
