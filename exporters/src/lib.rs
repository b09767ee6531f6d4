//! ferrotrace exporters. Each consumes finished records on the export thread and writes
//! them somewhere; none of them calls back into Python.

pub mod chrome;
pub mod delivery;
pub mod factory;
pub mod http;
pub mod json;
pub mod jsonl;
pub mod network;
pub mod otlp;
pub mod output;
pub mod perfetto;
pub mod retry_after;
pub mod spool;
#[cfg(test)]
mod testserver;
#[cfg(test)]
mod testsupport;

pub use chrome::ChromeExporter;
pub use factory::{build_exporters, build_exporters_with_counters};
pub use jsonl::JsonlExporter;
pub use perfetto::PerfettoExporter;
