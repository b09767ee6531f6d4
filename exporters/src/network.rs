//! What the network exporters (`otlp`, `http`) share: counters, shutdown deadline, spool and
//! retry policy, and the start of their delivery. Used by those exporters and by the factory
//! that builds them; calls only `delivery` and `spool`.

use crate::delivery::{
    Delivery, DeliveryOptions, Endpoint, ResponseParser, RetryPolicy, ShutdownBudget,
};
use crate::spool::{default_root, Spool};
use ferrotrace_core::config::Config;
use ferrotrace_core::metrics::Counters;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Requests a network exporter's sender may have queued; more go straight to the spool.
const MAX_QUEUED_REQUESTS: usize = 64;

/// What the network exporters share: counters, shutdown deadline, spool and retry policy.
#[derive(Clone, Debug)]
pub struct NetworkOptions {
    pub counters: Arc<Counters>,
    pub shutdown: ShutdownBudget,
    /// The spool root, None when spooling is off.
    pub spool_root: Option<PathBuf>,
    /// The root was configured explicitly (failing to create it is then an error).
    pub spool_explicit: bool,
    pub spool_max_bytes: u64,
    pub retry: RetryPolicy,
    pub max_queue: usize,
    /// Spans wait at most this long before their request is queued.
    pub max_age: Duration,
}

impl NetworkOptions {
    /// The options `config` asks for, updating `counters`.
    pub fn from_config(config: &Config, counters: Arc<Counters>) -> NetworkOptions {
        let explicit = !config.spool_dir.as_os_str().is_empty();
        let root = if config.spool_max_mb == 0 {
            None
        } else if explicit {
            Some(config.spool_dir.clone())
        } else {
            default_root()
        };
        NetworkOptions {
            counters,
            shutdown: ShutdownBudget::new(Duration::from_millis(config.shutdown_timeout_ms)),
            spool_root: root,
            spool_explicit: explicit,
            spool_max_bytes: config.spool_max_mb.saturating_mul(1 << 20),
            retry: RetryPolicy::default(),
            max_queue: MAX_QUEUED_REQUESTS,
            max_age: Duration::from_millis(config.flush_interval_ms),
        }
    }

    /// Starts the sender thread of network exporter `name`, with its spool and the shared
    /// retry policy, queue bound and shutdown budget.
    pub fn start_delivery(
        &self,
        name: &'static str,
        endpoint: Endpoint,
        parse_response: ResponseParser,
    ) -> std::io::Result<Delivery> {
        let spool = self.spool(name, &endpoint.url)?;
        Delivery::start(
            DeliveryOptions {
                name,
                endpoint,
                retry: self.retry.clone(),
                max_queue: self.max_queue,
                spool,
                parse_response,
                shutdown: self.shutdown.clone(),
            },
            self.counters.clone(),
        )
    }

    /// Opens the spool of `exporter` sending to `url`. A default spool root that cannot be
    /// created turns spooling off; an explicit one is an error.
    pub fn spool(&self, exporter: &str, url: &str) -> std::io::Result<Option<Spool>> {
        let Some(root) = &self.spool_root else {
            return Ok(None);
        };
        match Spool::open(
            root,
            exporter,
            url,
            self.spool_max_bytes,
            Arc::clone(&self.counters),
        ) {
            Ok(s) => Ok(Some(s)),
            Err(e) if self.spool_explicit => Err(e),
            Err(_) => Ok(None),
        }
    }
}
