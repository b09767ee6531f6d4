//! Delivery for the network exporters: a bounded queue of request bodies served by one
//! sender thread per exporter, the shared retry policy, the spool, and a shutdown bounded by
//! a deadline.
//!
//! The export thread only converts and enqueues, so a slow or dead endpoint never stalls it
//! or the other exporters. The sender retries 429/502/503/504 and connection errors with
//! exponential backoff and jitter, honouring `Retry-After` (seconds or an HTTP-date). A
//! batch it cannot deliver goes to the spool; while the endpoint is down, new batches go
//! straight to the spool, and once it answers again the spool is replayed oldest first. At shutdown, what is
//! still queued or in flight when the deadline passes is spooled, not lost; a send still
//! hanging then is abandoned (its thread is not joined), and should its 2xx still arrive
//! before the process exits, the spooled copy is deleted so it is not delivered twice.

use crate::retry_after;
use crate::spool::{Payload, Spool};
use ferrotrace_core::ids::random_u64;
use ferrotrace_core::metrics::Counters;
use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where and how requests are sent.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    /// Extra headers (e.g. `Authorization`, OTLP headers).
    pub headers: Vec<(String, String)>,
    /// Timeout of one request, connection included.
    pub timeout: Duration,
}

/// How often and how long to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per batch, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled each time, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this gives up on the batch (it is spooled).
    pub max_retry_after: Duration,
    /// After a failure, how long new batches go straight to the spool before the endpoint
    /// is tried again.
    pub probe_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            probe_interval: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (0-based): `base * 2^retry`, capped, with
    /// half of it random (jitter).
    pub fn backoff(&self, retry: u32) -> Duration {
        let full = self
            .base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let half = full.as_nanos() as u64 / 2;
        Duration::from_nanos(half + random_u64() % (half + 1))
    }
}

/// Reads the number of spans a server rejected from a 2xx response body.
pub type ResponseParser = fn(body: &[u8], content_type: &str) -> u64;

/// A bounded shutdown deadline shared by the network exporters of one process, so that
/// together they finish within the pipeline's shutdown timeout.
#[derive(Clone, Debug)]
pub struct ShutdownBudget {
    budget: Duration,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl ShutdownBudget {
    /// A budget of three quarters of `shutdown_timeout`, leaving the rest to spool what is
    /// left and to the other exporters.
    pub fn new(shutdown_timeout: Duration) -> ShutdownBudget {
        ShutdownBudget {
            budget: shutdown_timeout * 3 / 4,
            deadline: Arc::default(),
        }
    }

    /// The deadline, fixed by the first exporter that shuts down: the budget from now, and
    /// no later than three quarters of the time left before `caller` (the moment the
    /// pipeline's caller stops waiting), which leaves the rest to spool and to the other
    /// exporters however long the export thread took to get here.
    pub fn deadline(&self, caller: Option<Instant>) -> Instant {
        *self
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| {
                let now = Instant::now();
                let own = now + self.budget;
                match caller {
                    Some(limit) => own.min(now + limit.saturating_duration_since(now) * 3 / 4),
                    None => own,
                }
            })
    }
}

/// Everything a [`Delivery`] needs.
pub struct DeliveryOptions {
    /// Thread name suffix and log name (`otlp`, `http`).
    pub name: &'static str,
    pub endpoint: Endpoint,
    pub retry: RetryPolicy,
    /// Batches that may wait for the sender; more go straight to the spool.
    pub max_queue: usize,
    pub spool: Option<Spool>,
    pub parse_response: ResponseParser,
    pub shutdown: ShutdownBudget,
}

struct State {
    queue: VecDeque<Payload>,
    /// The batch the sender is sending; shutdown takes it when the deadline passes.
    inflight: Option<Payload>,
    /// Where shutdown spooled the in-flight batch it took.
    inflight_spooled: Option<PathBuf>,
    /// The sender is sending (a queued batch or a spool file).
    busy: bool,
    /// Set when shutdown begins.
    deadline: Option<Instant>,
    /// Shutdown took everything: the sender exits.
    stopped: bool,
    /// A fork is coming: the sender leaves its thread after the send in progress.
    parked: bool,
    /// The sender left its thread for the fork.
    exited: bool,
    /// The sender thread's Linux thread id.
    tid: u32,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    counters: Arc<Counters>,
    spool: Option<Spool>,
}

impl Shared {
    /// Waits for notifications on `wake` while `pending` holds of the state, until
    /// `deadline`; returns the guard and whether `pending` stopped holding in time.
    fn wait_while<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        deadline: Instant,
        pending: impl Fn(&State) -> bool,
    ) -> (MutexGuard<'a, State>, bool) {
        while pending(&st) {
            let now = Instant::now();
            if now >= deadline {
                return (st, false);
            }
            st = self
                .wake
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        (st, true)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spools `p`, or counts it as lost when there is no spool; returns the spool file.
    fn spool(&self, p: &Payload) -> Option<PathBuf> {
        match &self.spool {
            Some(s) => s.write(p),
            None => {
                Counters::add(&self.counters.spool_dropped, p.spans);
                None
            }
        }
    }
}

/// The queue and sender thread of one network exporter.
pub struct Delivery {
    shared: Arc<Shared>,
    max_queue: usize,
    budget: ShutdownBudget,
    name: &'static str,
    thread: Option<JoinHandle<Sender>>,
    /// The sender while it is parked for a fork.
    idle: Option<Sender>,
}

/// What became of one batch.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A 2xx; the server rejected this many spans in a partial success.
    Delivered(u64),
    /// Not delivered: spool it and try later.
    Failed,
    /// The server refused it as malformed: never retried.
    Rejected,
    /// A fork interrupted the retries: sent again after it.
    Interrupted,
}

fn spawn(name: &'static str, sender: Sender) -> std::io::Result<JoinHandle<Sender>> {
    std::thread::Builder::new()
        .name(format!("ferrotrace-{name}"))
        .spawn(move || sender.run())
}

impl Delivery {
    /// Starts the sender thread.
    pub fn start(options: DeliveryOptions, counters: Arc<Counters>) -> std::io::Result<Delivery> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                inflight: None,
                inflight_spooled: None,
                busy: false,
                deadline: None,
                stopped: false,
                parked: false,
                exited: false,
                tid: 0,
            }),
            wake: Condvar::new(),
            counters,
            spool: options.spool,
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("ferrotrace/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let sender = Sender {
            shared: Arc::clone(&shared),
            agent,
            endpoint: options.endpoint,
            retry: options.retry,
            parse_response: options.parse_response,
            down_until: None,
        };
        let thread = spawn(options.name, sender)?;
        Ok(Delivery {
            shared,
            max_queue: options.max_queue.max(1),
            budget: options.shutdown,
            name: options.name,
            thread: Some(thread),
            idle: None,
        })
    }

    /// Before `fork()`: the sender finishes the send in progress (retries are cut short and
    /// the batch goes back to the front of the queue) and leaves its thread, waiting at most
    /// until `deadline`; queued batches wait for [`Delivery::resume`]. A sender stuck in a
    /// send past the deadline is left running.
    pub fn park(&mut self, deadline: Instant) {
        if self.thread.is_none() {
            return;
        }
        let mut st = self.shared.lock();
        st.parked = true;
        self.shared.wake.notify_all();
        let (mut st, exited) = self.shared.wait_while(st, deadline, |s| !s.exited);
        if !exited {
            return;
        }
        st.exited = false;
        let tid = st.tid;
        drop(st);
        self.join_parked();
        ferrotrace_core::fork::wait_thread_gone(tid, deadline);
    }

    fn join_parked(&mut self) {
        if let Some(t) = self.thread.take() {
            if let Ok(sender) = t.join() {
                self.idle = Some(sender);
            }
        }
    }

    /// After `fork()`, in the parent: the sender carries on, in a new thread if it left.
    pub fn resume(&mut self) {
        let mut st = self.shared.lock();
        st.parked = false;
        let late = std::mem::take(&mut st.exited);
        self.shared.wake.notify_all();
        drop(st);
        if late {
            self.join_parked();
        }
        if let Some(sender) = self.idle.take() {
            match spawn(self.name, sender) {
                Ok(t) => self.thread = Some(t),
                Err(_) => Counters::add(&self.shared.counters.network_failures, 1),
            }
        }
    }

    /// Queues a batch without blocking; when the queue is full it is spooled instead.
    pub fn enqueue(&self, p: Payload) {
        let mut st = self.shared.lock();
        if st.stopped {
            drop(st);
            self.shared.spool(&p);
        } else if st.queue.len() >= self.max_queue {
            drop(st);
            Counters::add(&self.shared.counters.network_failures, 1);
            self.shared.spool(&p);
        } else {
            st.queue.push_back(p);
            self.shared.wake.notify_all();
        }
    }

    /// Waits, at most until the shared shutdown deadline, for the queue to be delivered
    /// (and a spool file being replayed to be sent); then spools whatever is still queued
    /// or in flight and stops the sender, joining it only when it is not stuck in a send.
    /// `caller` is when the pipeline's caller stops waiting (see [`ShutdownBudget::deadline`]).
    pub fn shutdown(&mut self, caller: Option<Instant>) {
        if self.idle.is_some() || self.shared.lock().parked {
            self.resume();
        }
        let deadline = self.budget.deadline(caller);
        let mut st = self.shared.lock();
        st.deadline = Some(deadline);
        self.shared.wake.notify_all();
        let (mut st, _) = self.shared.wait_while(st, deadline, |s| {
            !s.queue.is_empty() || s.inflight.is_some() || s.busy
        });
        if let Some(p) = st.inflight.take() {
            st.inflight_spooled = self.shared.spool(&p);
        }
        for p in st.queue.drain(..) {
            self.shared.spool(&p);
        }
        st.stopped = true;
        let stuck = st.busy;
        self.shared.wake.notify_all();
        drop(st);
        if let Some(t) = self.thread.take() {
            if !stuck {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown(None);
        }
    }
}

/// The sender thread's state.
struct Sender {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    endpoint: Endpoint,
    retry: RetryPolicy,
    parse_response: ResponseParser,
    /// The endpoint failed: until then, batches go straight to the spool.
    down_until: Option<Instant>,
}

enum Next {
    Send(Payload),
    Replay,
}

/// How long the idle sender sleeps before looking at the spool again.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Statuses that say "this body will never be accepted".
fn is_malformed(status: u16) -> bool {
    matches!(status, 400 | 413 | 415 | 422)
}

fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

impl Sender {
    fn run(mut self) -> Sender {
        self.shared.lock().tid = ferrotrace_core::fork::thread_id();
        while let Some(next) = self.next() {
            match next {
                Next::Send(p) => self.send_queued(p),
                Next::Replay => self.replay(),
            }
            self.shared.lock().busy = false;
            self.shared.wake.notify_all();
        }
        self
    }

    /// Waits for the next thing to do; None when stopped.
    fn next(&mut self) -> Option<Next> {
        let mut st = self.shared.lock();
        loop {
            if st.stopped {
                return None;
            }
            if st.parked {
                st.exited = true;
                self.shared.wake.notify_all();
                return None;
            }
            if let Some(p) = st.queue.pop_front() {
                st.inflight = Some(p.clone());
                st.busy = true;
                return Some(Next::Send(p));
            }
            if st.deadline.is_some() {
                self.shared.wake.notify_all();
                st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let now = Instant::now();
            let wait = match self.down_until {
                Some(t) if t > now => (t - now).min(IDLE_POLL),
                _ => {
                    if self.shared.spool.as_ref().is_some_and(Spool::has_files) {
                        st.busy = true;
                        return Some(Next::Replay);
                    }
                    IDLE_POLL
                }
            };
            st = self
                .shared
                .wake
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn is_down(&self) -> bool {
        self.down_until.is_some_and(|t| Instant::now() < t)
    }

    fn mark(&mut self, outcome: &Outcome) {
        self.down_until = match outcome {
            Outcome::Failed => Some(Instant::now() + self.retry.probe_interval),
            Outcome::Interrupted => self.down_until,
            _ => None,
        };
    }

    fn send_queued(&mut self, p: Payload) {
        let outcome = if self.is_down() {
            Outcome::Failed
        } else {
            self.send_with_retry(&p)
        };
        let counters = &self.shared.counters;
        let mut st = self.shared.lock();
        if st.inflight.take().is_none() {
            // Shutdown spooled this batch meanwhile: a late 2xx takes it back out.
            let spooled = st.inflight_spooled.take();
            if let (Outcome::Delivered(_), Some(path)) = (&outcome, spooled) {
                if std::fs::remove_file(path).is_ok() {
                    Counters::add(&counters.network_delivered, p.spans);
                }
            }
            return;
        }
        match outcome {
            Outcome::Delivered(rejected) => {
                Counters::add(&counters.network_delivered, p.spans);
                Counters::add(&counters.partial_success_rejected, rejected);
            }
            Outcome::Failed => {
                Counters::add(&counters.network_failures, 1);
                self.shared.spool(&p);
            }
            Outcome::Rejected => Counters::add(&counters.network_rejected, p.spans),
            Outcome::Interrupted => st.queue.push_front(p),
        }
        self.shared.wake.notify_all();
        drop(st);
        self.mark(&outcome);
    }

    /// Sends spooled batches oldest first until the spool is empty, a send fails, new
    /// batches are queued, or shutdown begins.
    fn replay(&mut self) {
        let shared = Arc::clone(&self.shared);
        let Some(spool) = shared.spool.as_ref() else {
            return;
        };
        while let Some(claim) = spool.claim_oldest() {
            let Ok(p) = claim.payload() else {
                claim.remove();
                continue;
            };
            let outcome = self.send_with_retry(&p);
            let counters = &self.shared.counters;
            match outcome {
                Outcome::Delivered(rejected) => {
                    claim.remove();
                    Counters::add(&counters.network_delivered, p.spans);
                    Counters::add(&counters.spool_replayed, p.spans);
                    Counters::add(&counters.partial_success_rejected, rejected);
                }
                Outcome::Rejected => {
                    claim.remove();
                    Counters::add(&counters.network_rejected, p.spans);
                }
                Outcome::Failed | Outcome::Interrupted => claim.release(),
            }
            self.mark(&outcome);
            let st = self.shared.lock();
            if matches!(outcome, Outcome::Failed | Outcome::Interrupted)
                || st.parked
                || st.deadline.is_some()
                || st.stopped
                || !st.queue.is_empty()
            {
                return;
            }
        }
    }

    /// The time left before the shutdown deadline, None when there is no deadline yet.
    fn until_deadline(&self) -> Option<Duration> {
        self.shared
            .lock()
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Sleeps `d`, cut short by shutdown; false when the deadline leaves no time to retry.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut st = self.shared.lock();
        loop {
            let now = Instant::now();
            if st.stopped || st.parked || st.deadline.is_some_and(|dl| dl <= until) {
                return false;
            }
            if now >= until {
                return true;
            }
            st = self
                .shared
                .wake
                .wait_timeout(st, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn send_with_retry(&self, p: &Payload) -> Outcome {
        for attempt in 0..self.retry.max_attempts.max(1) {
            let timeout = match self.until_deadline() {
                Some(left) if left.is_zero() => return Outcome::Failed,
                Some(left) => left.min(self.endpoint.timeout),
                None => self.endpoint.timeout,
            };
            let wait = match self.post(p, timeout) {
                Ok((status, _, body, ct)) if (200..300).contains(&status) => {
                    return Outcome::Delivered((self.parse_response)(&body, &ct));
                }
                Ok((status, _, _, _)) if is_malformed(status) => return Outcome::Rejected,
                Ok((status, retry_after, _, _)) if is_retryable(status) => {
                    retry_after.unwrap_or_else(|| self.retry.backoff(attempt))
                }
                Ok(_) => return Outcome::Failed,
                Err(_) => self.retry.backoff(attempt),
            };
            if attempt + 1 >= self.retry.max_attempts || wait > self.retry.max_retry_after {
                break;
            }
            Counters::add(&self.shared.counters.network_retries, 1);
            if !self.sleep(wait) {
                if self.shared.lock().parked {
                    return Outcome::Interrupted;
                }
                break;
            }
        }
        Outcome::Failed
    }

    /// One POST: (status, Retry-After, response body, response content type).
    fn post(
        &self,
        p: &Payload,
        timeout: Duration,
    ) -> Result<(u16, Option<Duration>, Vec<u8>, String), ureq::Error> {
        let mut req = self
            .agent
            .post(&self.endpoint.url)
            .header("Content-Type", p.content_type.as_str());
        if p.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        for (k, v) in &self.endpoint.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(&p.body[..])?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after")
            .and_then(|v| retry_after::parse(&v, std::time::SystemTime::now()));
        let ct = header("content-type").unwrap_or_default();
        let mut body = Vec::new();
        let _ = resp
            .body_mut()
            .as_reader()
            .take(1 << 20)
            .read_to_end(&mut body);
        Ok((status, retry_after, body, ct))
    }
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{Reply, TestServer};
    use std::net::TcpListener;
    use std::path::PathBuf;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
            probe_interval: Duration::from_millis(100),
        }
    }

    fn spool_root(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ft-delivery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn start(
        url: &str,
        spool: Option<&PathBuf>,
        counters: &Arc<Counters>,
        shutdown: Duration,
    ) -> Delivery {
        let spool = spool
            .map(|root| Spool::open(root, "test", url, 1 << 20, Arc::clone(counters)).unwrap());
        let options = DeliveryOptions {
            name: "test",
            endpoint: Endpoint {
                url: url.to_string(),
                headers: vec![("x-test".into(), "1".into())],
                timeout: Duration::from_secs(10),
            },
            retry: fast(),
            max_queue: 16,
            spool,
            parse_response: |_, _| 0,
            shutdown: ShutdownBudget::new(shutdown),
        };
        Delivery::start(options, Arc::clone(counters)).unwrap()
    }

    fn payload(tag: u8) -> Payload {
        Payload {
            body: vec![tag; 8],
            content_type: "application/x-test".into(),
            gzip: false,
            spans: 2,
        }
    }

    fn refused_url() -> (String, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (format!("http://127.0.0.1:{port}/v1/traces"), port)
    }

    #[test]
    fn retries_503_then_delivers() {
        let server = TestServer::start(vec![
            Reply::Status(503, vec![], vec![]),
            Reply::Status(503, vec![], vec![]),
        ]);
        let counters = Arc::new(Counters::default());
        let mut d = start(
            &server.url("/v1/traces"),
            None,
            &counters,
            Duration::from_secs(5),
        );
        d.enqueue(payload(1));
        d.shutdown(None);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[2].header("x-test"), Some("1"));
        assert_eq!(reqs[2].body, payload(1).body);
        let s = counters.snapshot();
        assert_eq!(
            (s.network_retries, s.network_delivered, s.spool_dropped),
            (2, 2, 0)
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let server = TestServer::start(vec![Reply::Status(
            429,
            vec![("Retry-After", "1".into())],
            vec![],
        )]);
        let counters = Arc::new(Counters::default());
        let mut d = start(&server.url("/"), None, &counters, Duration::from_secs(8));
        d.enqueue(payload(1));
        d.shutdown(None);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        let gap = reqs[1].at - reqs[0].at;
        assert!(
            gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
            "{gap:?}"
        );
        assert_eq!(counters.snapshot().network_delivered, 2);
    }

    #[test]
    fn connection_refused_is_spooled() {
        let (url, _) = refused_url();
        let root = spool_root("refused");
        let counters = Arc::new(Counters::default());
        let mut d = start(&url, Some(&root), &counters, Duration::from_secs(5));
        for tag in 0..3 {
            d.enqueue(payload(tag));
        }
        d.shutdown(None);
        let s = counters.snapshot();
        assert_eq!((s.spooled, s.network_delivered, s.spool_dropped), (6, 0, 0));
        assert!(s.network_retries > 0);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn spool_is_replayed_once_by_later_processes() {
        let (url, port) = refused_url();
        let root = spool_root("replay");
        let counters = Arc::new(Counters::default());
        let mut d = start(&url, Some(&root), &counters, Duration::from_secs(5));
        for tag in 0..6 {
            d.enqueue(payload(tag));
        }
        d.shutdown(None);
        assert_eq!(counters.snapshot().spooled, 12);
        let server = TestServer::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), vec![]);
        let later = Arc::new(Counters::default());
        let mut a = start(&url, Some(&root), &later, Duration::from_secs(5));
        let mut b = start(&url, Some(&root), &later, Duration::from_secs(5));
        let t = Instant::now();
        while server.requests().len() < 6 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        a.shutdown(None);
        b.shutdown(None);
        let mut tags: Vec<u8> = server.requests().iter().map(|r| r.body[0]).collect();
        tags.sort();
        assert_eq!(
            tags,
            vec![0, 1, 2, 3, 4, 5],
            "every batch delivered exactly once"
        );
        let s = later.snapshot();
        assert_eq!((s.spool_replayed, s.network_delivered), (12, 12));
        assert_eq!(
            std::fs::read_dir(root.join(format!("test-{:016x}", seahash::hash(url.as_bytes()))))
                .unwrap()
                .count(),
            0
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn hanging_server_does_not_delay_shutdown() {
        let server = TestServer::start(vec![Reply::Hang(Duration::from_secs(10))]);
        let root = spool_root("hang");
        let counters = Arc::new(Counters::default());
        let mut d = start(
            &server.url("/"),
            Some(&root),
            &counters,
            Duration::from_secs(1),
        );
        d.enqueue(payload(1));
        d.enqueue(payload(2));
        while server.requests().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = Instant::now();
        d.shutdown(None);
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "shutdown took {:?}",
            t.elapsed()
        );
        let s = counters.snapshot();
        assert_eq!(
            (s.spooled, s.network_delivered),
            (4, 0),
            "in-flight and queued batches are spooled"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let t = Instant::now();
        while !cond() {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn spool_files(root: &std::path::Path) -> usize {
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
            .sum()
    }

    #[test]
    fn the_spool_drains_in_order_once_the_endpoint_is_back() {
        let (url, port) = refused_url();
        let root = spool_root("back");
        let counters = Arc::new(Counters::default());
        let mut d = start(&url, Some(&root), &counters, Duration::from_secs(5));
        for tag in 0..3 {
            d.enqueue(payload(tag));
        }
        wait_until("the batches to be spooled", || {
            counters.snapshot().spooled == 6
        });
        let server = TestServer::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), vec![]);
        wait_until("the replay", || server.requests().len() == 3);
        d.enqueue(payload(9));
        d.shutdown(None);
        let tags: Vec<u8> = server.requests().iter().map(|r| r.body[0]).collect();
        assert_eq!(tags, vec![0, 1, 2, 9], "oldest first, each once");
        let s = counters.snapshot();
        assert_eq!((s.spool_replayed, s.network_delivered), (6, 8));
        assert_eq!(spool_files(&root), 0);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_late_2xx_takes_the_batch_out_of_the_spool() {
        let server = TestServer::start(vec![Reply::Late(Duration::from_millis(700))]);
        let root = spool_root("late");
        let counters = Arc::new(Counters::default());
        let mut d = start(
            &server.url("/"),
            Some(&root),
            &counters,
            Duration::from_millis(400),
        );
        d.enqueue(payload(1));
        wait_until("the request", || !server.requests().is_empty());
        d.shutdown(None);
        assert_eq!(counters.snapshot().spooled, 2, "shutdown spooled the batch");
        wait_until("the late 2xx", || {
            counters.snapshot().network_delivered == 2
        });
        assert_eq!(spool_files(&root), 0, "no copy left to deliver twice");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_replay_hanging_at_shutdown_does_not_delay_it() {
        let server = TestServer::start(vec![Reply::Hang(Duration::from_secs(10))]);
        let url = server.url("/");
        let root = spool_root("replay-hang");
        let counters = Arc::new(Counters::default());
        Spool::open(&root, "test", &url, 1 << 20, Arc::clone(&counters))
            .unwrap()
            .write(&payload(3));
        let mut d = start(&url, Some(&root), &counters, Duration::from_secs(1));
        wait_until("the replayed request", || !server.requests().is_empty());
        let t = Instant::now();
        d.shutdown(None);
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "shutdown took {:?}",
            t.elapsed()
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let p = RetryPolicy::default();
        for retry in 0..10 {
            let full = (p.base_delay * (1 << retry)).min(p.max_delay);
            let d = p.backoff(retry);
            assert!(d >= full / 2 && d <= full, "{retry}: {d:?}");
        }
    }
}
