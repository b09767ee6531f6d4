//! The export pipeline: a bounded queue of span batches and one background thread that
//! owns the exporters.
//!
//! Application threads never wait: a batch that would pass the queue's bounds (spans and
//! bytes, see [`crate::queue_bound`]) is dropped and counted, so tracing never blocks the
//! program. Session records and control requests travel on a
//! second bounded channel. `flush` and `shutdown` wait, up to a deadline, for everything
//! queued before them to reach the exporters.

use crate::event::{HttpRecord, SessionRecord, SpanBatch};
use crate::exporter::{ExportContext, ExportError, Exporter};
use crate::metrics::Counters;
use crate::queue_bound::QueueBound;
use crate::summary::{FunctionTotals, Summary};
use crossbeam_channel::{
    bounded, select, unbounded, Receiver, RecvTimeoutError, Sender, TrySendError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tunables of the pipeline (from [`crate::config::Config`]).
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Span records per batch (the per-thread buffer capacity).
    pub batch_size: usize,
    /// Span records that may wait in the queue (and [`crate::queue_bound::BYTES_PER_QUEUED_SPAN`]
    /// bytes each); more are dropped and counted.
    pub max_queue: usize,
    /// How often the export thread flushes exporters when idle.
    pub flush_interval: Duration,
    /// Test-only: sleep per batch in the export thread.
    pub debug_export_delay: Duration,
}

enum Control {
    Session(Box<SessionRecord>),
    Http(Box<HttpRecord>),
    Flush(Sender<()>),
    /// Ends the pipeline; the caller waits until the deadline.
    Shutdown(Sender<()>, Instant),
    Top(usize, Sender<Vec<(u32, FunctionTotals)>>),
    /// Wakes the thread to look at [`Parking`].
    Park,
}

/// Parking the export thread around `fork()`: CPython 3.12+ warns about a fork in a
/// multi-threaded process, and counts the process's threads right after `fork()` returns in
/// the parent, before any after-fork callback. So the thread stops (its state kept here)
/// before the fork and starts again after it.
#[derive(Default)]
struct Parking {
    state: Mutex<ParkState>,
    changed: Condvar,
}

#[derive(Default)]
struct ParkState {
    /// Forks in progress (threads may fork concurrently); the worker runs again at zero.
    requests: u32,
    /// The worker while it is parked.
    parked: Option<Worker>,
    /// The Linux thread id of the running worker (0 when unknown).
    tid: u32,
}

impl Parking {
    fn lock(&self) -> MutexGuard<'_, ParkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The queue and the export thread.
pub struct Pipeline {
    /// Unbounded itself: what it holds is bounded by `queued`.
    data_tx: Sender<SpanBatch>,
    queued: Arc<QueueBound>,
    control_tx: Sender<Control>,
    pool_rx: Receiver<SpanBatch>,
    /// Batches dropped because the queue was full go back to the pool from here, so a
    /// producer that outruns the exporter keeps reusing warm memory.
    pool_tx: Sender<SpanBatch>,
    counters: Arc<Counters>,
    batch_size: usize,
    /// The preview text the last submitted batch held: a batch handed out has room for half
    /// as much again, so it seldom fills its room before its span records.
    text_hint: AtomicUsize,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The per-function totals, left here by the export thread when it stops.
    final_summary: Arc<Mutex<Option<Summary>>>,
    parking: Arc<Parking>,
    /// The last export error of each exporter that failed, with its cause.
    errors: Arc<Mutex<Vec<(&'static str, String)>>>,
}

/// How long the exporters' own threads may take to stop before a fork (a send in progress
/// is finished first); one still busy after this is left running.
const EXPORTER_PARK_TIMEOUT: Duration = Duration::from_secs(1);

/// Session and control messages that may wait before new ones are dropped.
const CONTROL_CAPACITY: usize = 65_536;

impl Pipeline {
    /// Starts the export thread with these exporters.
    pub fn start(
        options: PipelineOptions,
        exporters: Vec<Box<dyn Exporter>>,
        ctx: ExportContext,
        counters: Arc<Counters>,
    ) -> std::io::Result<Pipeline> {
        let batch_size = options.batch_size.max(1);
        let capacity = options.max_queue.div_ceil(batch_size).max(1);
        let (data_tx, data_rx) = unbounded();
        let queued = Arc::new(QueueBound::new(options.max_queue));
        let (control_tx, control_rx) = bounded(CONTROL_CAPACITY);
        let (pool_tx, pool_rx) = bounded(capacity + 2);
        let final_summary = Arc::new(Mutex::new(None));
        let parking = Arc::new(Parking::default());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let worker = Worker {
            exporters,
            ctx,
            counters: Arc::clone(&counters),
            data_rx,
            queued: Arc::clone(&queued),
            control_rx,
            pool_tx: pool_tx.clone(),
            options,
            summary: Summary::default(),
            final_summary: Arc::clone(&final_summary),
            parking: Arc::clone(&parking),
            errors: Arc::clone(&errors),
        };
        let handle = spawn(worker)?;
        Ok(Pipeline {
            data_tx,
            queued,
            control_tx,
            pool_rx,
            pool_tx,
            counters,
            batch_size,
            text_hint: AtomicUsize::new(0),
            thread: Mutex::new(Some(handle)),
            final_summary,
            parking,
            errors,
        })
    }

    /// The last error of each exporter that failed (exporter name, cause), oldest first.
    pub fn errors(&self) -> Vec<(&'static str, String)> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Before `fork()`: stops the export thread (and the exporters' own threads) after the
    /// batch it is exporting, keeping everything queued, and waits until the thread is gone
    /// from the process, at most `timeout`. Producers never wait for this: `submit` keeps
    /// queueing (or dropping when full) meanwhile. Every call is followed by one
    /// [`Pipeline::resume`] in the parent. Returns false when the thread did not park in
    /// time (it then keeps running; the fork goes ahead).
    pub fn park(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.parking.lock();
        st.requests += 1;
        if st.requests == 1 && self.control_tx.try_send(Control::Park).is_err() {
            return false; // stopped (shut down) or its control queue is full
        }
        while st.parked.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .parking
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let tid = st.tid;
        drop(st);
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        crate::fork::wait_thread_gone(tid, deadline);
        true
    }

    /// After `fork()`, in the parent: starts the export thread again (once the last
    /// concurrent fork is done) with the exporters and the queue it left.
    pub fn resume(&self) {
        let mut st = self.parking.lock();
        st.requests = st.requests.saturating_sub(1);
        if st.requests > 0 {
            return;
        }
        if let Some(mut worker) = st.parked.take() {
            for e in &mut worker.exporters {
                e.resume();
            }
            drop(st);
            match spawn(worker) {
                Ok(handle) => *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
                Err(_) => Counters::add(&self.counters.export_errors, 1),
            }
        }
    }

    /// The counters this pipeline updates.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Span records per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// An empty buffer for a thread, reused from exported batches when one is available.
    pub fn take_buffer(&self) -> SpanBatch {
        let mut batch = self
            .pool_rx
            .try_recv()
            .unwrap_or_else(|_| SpanBatch::with_capacity(self.batch_size));
        let hint = self.text_hint.load(Ordering::Relaxed);
        batch.reserve_text(hint + hint / 2);
        batch
    }

    /// Hands a full (or final) batch to the export thread without blocking.
    pub fn submit(&self, batch: SpanBatch) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        Counters::add(&self.counters.recorded, n);
        self.text_hint.store(
            batch.text.len().min(SpanBatch::MAX_KEPT_TEXT),
            Ordering::Relaxed,
        );
        let bytes = QueueBound::bytes_of(&batch);
        if !self.queued.try_take(batch.len(), bytes) {
            Counters::add(&self.counters.dropped_queue_full, n);
            let mut dropped = batch;
            dropped.clear();
            let _ = self.pool_tx.try_send(dropped);
            return;
        }
        match self.data_tx.try_send(batch) {
            Ok(()) => Counters::add(&self.counters.batches, 1),
            Err(e) => {
                self.queued.release(n as usize, bytes);
                let reason = match e {
                    TrySendError::Full(_) => &self.counters.dropped_queue_full,
                    TrySendError::Disconnected(_) => &self.counters.dropped_after_shutdown,
                };
                Counters::add(reason, n);
            }
        }
    }

    /// Queues a session start or end record without blocking.
    pub fn submit_session(&self, session: SessionRecord) {
        if self
            .control_tx
            .try_send(Control::Session(Box::new(session)))
            .is_err()
        {
            Counters::add(&self.counters.dropped_sessions, 1);
        }
    }

    /// Queues an outgoing HTTP request's record without blocking (counted in
    /// `dropped_sessions` when the control queue is full).
    pub fn submit_http(&self, http: HttpRecord) {
        if self
            .control_tx
            .try_send(Control::Http(Box::new(http)))
            .is_err()
        {
            Counters::add(&self.counters.dropped_sessions, 1);
        }
    }

    fn request<T>(&self, make: impl FnOnce(Sender<T>) -> Control, timeout: Duration) -> Option<T> {
        let (tx, rx) = bounded(1);
        let deadline = Instant::now() + timeout;
        self.control_tx.send_deadline(make(tx), deadline).ok()?;
        rx.recv_deadline(deadline).ok()
    }

    /// Waits until everything queued so far has been exported, up to `timeout`.
    /// Returns false when the deadline passed first.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.request(Control::Flush, timeout).is_some()
    }

    /// The functions with the largest inclusive time exported so far (all of them once the
    /// pipeline has shut down).
    pub fn top_functions(&self, n: usize, timeout: Duration) -> Vec<(u32, FunctionTotals)> {
        let stopped = self.final_summary.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(summary) = stopped.as_ref() {
            return summary.top(n);
        }
        drop(stopped);
        self.request(|tx| Control::Top(n, tx), timeout)
            .unwrap_or_default()
    }

    /// Waits, at most until `deadline`, for a shutdown begun elsewhere to finish; returns
    /// whether it did. (Polls: for the rare path of a signal arriving during shutdown.)
    pub fn wait_shut_down(&self, deadline: Instant) -> bool {
        loop {
            if self
                .final_summary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Exports everything queued, writes the final records and stops the thread, waiting at
    /// most `timeout`. Returns false when the deadline passed first (the thread is then left
    /// to finish on its own and the process may exit without it).
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let done = self
            .request(|ack| Control::Shutdown(ack, deadline), timeout)
            .is_some();
        if done {
            if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = handle.join();
            }
        }
        done
    }
}

/// Counts an exporter's failure and keeps its cause.
fn failed(
    counters: &Counters,
    errors: &Mutex<Vec<(&'static str, String)>>,
    exporter: &'static str,
    error: ExportError,
) {
    Counters::add(&counters.export_errors, 1);
    let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
    match errors.iter_mut().find(|(name, _)| *name == exporter) {
        Some(slot) => slot.1 = error.0,
        None => errors.push((exporter, error.0)),
    }
}

fn spawn(worker: Worker) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ferrotrace-export".into())
        .spawn(move || worker.run())
}

struct Worker {
    exporters: Vec<Box<dyn Exporter>>,
    ctx: ExportContext,
    counters: Arc<Counters>,
    data_rx: Receiver<SpanBatch>,
    queued: Arc<QueueBound>,
    control_rx: Receiver<Control>,
    pool_tx: Sender<SpanBatch>,
    options: PipelineOptions,
    summary: Summary,
    final_summary: Arc<Mutex<Option<Summary>>>,
    parking: Arc<Parking>,
    errors: Arc<Mutex<Vec<(&'static str, String)>>>,
}

impl Worker {
    fn run(mut self) {
        self.parking.lock().tid = crate::fork::thread_id();
        loop {
            let mut park = false;
            select! {
                recv(self.data_rx) -> batch => match batch {
                    Ok(batch) => self.export_batch(batch),
                    Err(_) => return,
                },
                recv(self.control_rx) -> msg => match msg {
                    Ok(Control::Park) => park = true,
                    Ok(msg) => if !self.control(msg) { return },
                    Err(_) => return,
                },
                default(self.options.flush_interval) => self.flush_exporters(),
            }
            if park && self.parking.lock().requests > 0 {
                let deadline = Instant::now() + EXPORTER_PARK_TIMEOUT;
                for e in &mut self.exporters {
                    e.park(deadline);
                }
                let parking = Arc::clone(&self.parking);
                let mut st = parking.lock();
                if st.requests > 0 {
                    st.parked = Some(self);
                    parking.changed.notify_all();
                    return;
                }
                // The fork gave up waiting and is already done: keep going.
                drop(st);
                for e in &mut self.exporters {
                    e.resume();
                }
            }
        }
    }

    /// Handles one control message; false means stop.
    fn control(&mut self, msg: Control) -> bool {
        match msg {
            Control::Park => {}
            Control::Session(s) => self.export_session(&s),
            Control::Http(h) => self.export_http(&h),
            Control::Flush(ack) => {
                self.drain();
                self.flush_exporters();
                let _ = ack.send(());
            }
            Control::Top(n, ack) => {
                self.drain();
                let _ = ack.send(self.summary.top(n));
            }
            Control::Shutdown(ack, deadline) => {
                self.ctx.shutdown_deadline = Some(deadline);
                self.drain();
                self.drain_sessions();
                self.exporters.sort_by_key(|e| !e.delivers_remotely());
                for e in &mut self.exporters {
                    let snapshot = self.counters.snapshot();
                    match e.shutdown(&snapshot, &self.ctx) {
                        Ok(bytes) => Counters::add(&self.counters.bytes_written, bytes),
                        Err(err) => failed(&self.counters, &self.errors, e.name(), err),
                    }
                }
                *self.final_summary.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::mem::take(&mut self.summary));
                let _ = ack.send(());
                return false;
            }
        }
        true
    }

    fn drain(&mut self) {
        loop {
            match self.data_rx.recv_timeout(Duration::ZERO) {
                Ok(batch) => self.export_batch(batch),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn drain_sessions(&mut self) {
        let pending: Vec<Control> = self.control_rx.try_iter().collect();
        for msg in pending {
            match msg {
                Control::Session(s) => self.export_session(&s),
                Control::Http(h) => self.export_http(&h),
                Control::Flush(ack) | Control::Shutdown(ack, _) => {
                    let _ = ack.send(());
                }
                Control::Top(_, ack) => {
                    let _ = ack.send(Vec::new());
                }
                Control::Park => {}
            }
        }
    }

    fn export_batch(&mut self, mut batch: SpanBatch) {
        if !self.options.debug_export_delay.is_zero() {
            std::thread::sleep(self.options.debug_export_delay);
        }
        let held = (batch.len(), QueueBound::bytes_of(&batch));
        batch.convert_ticks();
        let n = batch.len() as u64;
        let mut failures = 0;
        for e in &mut self.exporters {
            match e.export_spans(&batch, &self.ctx) {
                Ok(bytes) => Counters::add(&self.counters.bytes_written, bytes),
                Err(err) => {
                    failures += 1;
                    failed(&self.counters, &self.errors, e.name(), err);
                }
            }
        }
        if failures > 0 && failures == self.exporters.len() {
            Counters::add(&self.counters.dropped_export_error, n);
        } else {
            self.counters.exported.fetch_add(n, Ordering::Relaxed);
        }
        self.summary.add(&batch);
        self.queued.release(held.0, held.1);
        batch.clear();
        let _ = self.pool_tx.try_send(batch);
    }

    fn export_session(&mut self, s: &SessionRecord) {
        for e in &mut self.exporters {
            match e.export_session(s, &self.ctx) {
                Ok(bytes) => Counters::add(&self.counters.bytes_written, bytes),
                Err(err) => failed(&self.counters, &self.errors, e.name(), err),
            }
        }
    }

    fn export_http(&mut self, h: &HttpRecord) {
        for e in &mut self.exporters {
            match e.export_http(h, &self.ctx) {
                Ok(bytes) => Counters::add(&self.counters.bytes_written, bytes),
                Err(err) => failed(&self.counters, &self.errors, e.name(), err),
            }
        }
    }

    fn flush_exporters(&mut self) {
        for e in &mut self.exporters {
            match e.flush() {
                Ok(bytes) => Counters::add(&self.counters.bytes_written, bytes),
                Err(err) => failed(&self.counters, &self.errors, e.name(), err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SpanRecord;
    use crate::exporter::MetaInfo;
    use crate::metrics::Snapshot;

    struct Counting(Arc<Mutex<(u64, bool)>>);

    impl Exporter for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn export_spans(
            &mut self,
            spans: &SpanBatch,
            _: &ExportContext,
        ) -> Result<u64, ExportError> {
            self.0.lock().unwrap().0 += spans.len() as u64;
            Ok(0)
        }
        fn export_session(
            &mut self,
            _: &SessionRecord,
            _: &ExportContext,
        ) -> Result<u64, ExportError> {
            Ok(0)
        }
        fn export_http(&mut self, _: &HttpRecord, _: &ExportContext) -> Result<u64, ExportError> {
            Ok(0)
        }
        fn flush(&mut self) -> Result<u64, ExportError> {
            Ok(0)
        }
        fn shutdown(&mut self, _: &Snapshot, _: &ExportContext) -> Result<u64, ExportError> {
            self.0.lock().unwrap().1 = true;
            Ok(0)
        }
    }

    fn start(max_queue: usize, delay_ms: u64) -> (Pipeline, Arc<Mutex<(u64, bool)>>) {
        let seen = Arc::new(Mutex::new((0, false)));
        let ctx = ExportContext {
            functions: Default::default(),
            pid: 1,
            meta: MetaInfo::default(),
            shutdown_deadline: None,
        };
        let opts = PipelineOptions {
            batch_size: 10,
            max_queue,
            flush_interval: Duration::from_millis(50),
            debug_export_delay: Duration::from_millis(delay_ms),
        };
        let p = Pipeline::start(
            opts,
            vec![Box::new(Counting(Arc::clone(&seen)))],
            ctx,
            Arc::default(),
        )
        .unwrap();
        (p, seen)
    }

    fn batch(n: usize) -> SpanBatch {
        SpanBatch::from((0..n).map(|_| SpanRecord::default()).collect::<Vec<_>>())
    }

    #[test]
    fn a_batch_handed_out_has_room_for_more_text_than_the_last_one_held() {
        let (p, _) = start(1000, 0);
        let mut full = batch(10);
        full.add_text(&"x".repeat(SpanBatch::MIN_TEXT_ROOM));
        p.submit(full);
        let next = p.take_buffer();
        assert!(next.text.capacity() >= SpanBatch::MIN_TEXT_ROOM * 3 / 2);
        assert!(!next.text_outgrows_room(SpanBatch::MIN_TEXT_ROOM));
        let mut small = SpanBatch::with_capacity(10);
        small.add_text("y");
        assert!(
            !small.text_outgrows_room(1 << 20),
            "a small room just grows"
        );
        assert!(p.shutdown(Duration::from_secs(5)));
    }

    #[test]
    fn everything_queued_is_exported_on_shutdown() {
        let (p, seen) = start(1000, 0);
        for _ in 0..20 {
            p.submit(batch(10));
        }
        assert!(p.shutdown(Duration::from_secs(5)));
        let s = p.counters().snapshot();
        assert_eq!(s.recorded, 200);
        assert_eq!(s.exported, 200);
        assert_eq!(*seen.lock().unwrap(), (200, true));
    }

    /// Delivers on shutdown (remote), or remembers the counters its shutdown was given.
    struct Final {
        remote: Option<Arc<Counters>>,
        seen: Arc<Mutex<Option<Snapshot>>>,
    }

    impl Exporter for Final {
        fn name(&self) -> &'static str {
            "final"
        }
        fn export_spans(&mut self, _: &SpanBatch, _: &ExportContext) -> Result<u64, ExportError> {
            Ok(0)
        }
        fn export_session(
            &mut self,
            _: &SessionRecord,
            _: &ExportContext,
        ) -> Result<u64, ExportError> {
            Ok(0)
        }
        fn export_http(&mut self, _: &HttpRecord, _: &ExportContext) -> Result<u64, ExportError> {
            Ok(0)
        }
        fn flush(&mut self) -> Result<u64, ExportError> {
            Ok(0)
        }
        fn shutdown(&mut self, s: &Snapshot, _: &ExportContext) -> Result<u64, ExportError> {
            match &self.remote {
                Some(c) => Counters::add(&c.network_delivered, 5),
                None => *self.seen.lock().unwrap() = Some(s.clone()),
            }
            Ok(0)
        }
        fn delivers_remotely(&self) -> bool {
            self.remote.is_some()
        }
    }

    #[test]
    fn final_records_count_what_the_network_exporters_delivered() {
        let counters = Arc::new(Counters::default());
        let seen = Arc::new(Mutex::new(None));
        let file = Final {
            remote: None,
            seen: Arc::clone(&seen),
        };
        let net = Final {
            remote: Some(Arc::clone(&counters)),
            seen: Arc::default(),
        };
        let ctx = ExportContext {
            functions: Default::default(),
            pid: 1,
            meta: MetaInfo::default(),
            shutdown_deadline: None,
        };
        let opts = PipelineOptions {
            batch_size: 10,
            max_queue: 100,
            flush_interval: Duration::from_millis(50),
            debug_export_delay: Duration::ZERO,
        };
        let p = Pipeline::start(opts, vec![Box::new(file), Box::new(net)], ctx, counters).unwrap();
        assert!(p.shutdown(Duration::from_secs(5)));
        let seen = seen.lock().unwrap().clone().unwrap();
        assert_eq!(seen.network_delivered, 5);
    }

    #[test]
    fn a_parked_pipeline_keeps_its_queue_and_exports_it_after_resume() {
        let (p, seen) = start(1000, 0);
        p.submit(batch(10));
        assert!(p.park(Duration::from_secs(5)));
        assert!(
            p.thread.lock().unwrap().is_none(),
            "the export thread was joined"
        );
        let t = Instant::now();
        for _ in 0..5 {
            p.submit(batch(10));
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "submit waited for the park"
        );
        p.resume();
        assert!(p.flush(Duration::from_secs(5)));
        assert_eq!(seen.lock().unwrap().0, 60);
        // Two forks at once: the thread runs again after the second one only.
        assert!(p.park(Duration::from_secs(5)));
        assert!(p.park(Duration::from_secs(5)));
        p.resume();
        assert!(p.thread.lock().unwrap().is_none());
        p.resume();
        assert!(p.shutdown(Duration::from_secs(5)));
        assert_eq!(*seen.lock().unwrap(), (60, true));
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let (p, _) = start(10, 20);
        let t = Instant::now();
        for _ in 0..100 {
            p.submit(batch(10));
        }
        assert!(t.elapsed() < Duration::from_millis(500), "submit blocked");
        assert!(p.shutdown(Duration::from_secs(10)));
        let s = p.counters().snapshot();
        assert_eq!(s.recorded, 1000);
        assert!(s.dropped_queue_full > 0);
        assert_eq!(s.recorded, s.exported + s.dropped());
    }
}
