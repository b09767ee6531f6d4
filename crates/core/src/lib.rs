//! ferrotrace's pure-Rust core. Nothing here knows about Python: the CPython hook in
//! `crates/py` turns interpreter events into the records defined in [`event`], and the
//! [`pipeline`] carries them to the exporters on one background thread.

pub mod append;
pub mod clock;
pub mod config;
pub mod config_view;
pub mod event;
pub mod exporter;
pub mod filter;
pub mod fork;
pub mod functions;
pub mod http;
pub mod ids;
pub mod in_place;
pub mod metrics;
pub mod pipeline;
pub mod preview;
pub mod queue_bound;
pub mod redact;
pub mod redact_prefilter;
pub mod sampling;
pub mod server;
pub mod summary;
pub mod trace_report;
pub mod traceparent;
