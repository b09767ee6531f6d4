//! ferrotrace exporters. Each consumes finished records on the export thread and writes
//! them somewhere; none of them calls back into Python.

pub mod factory;
pub mod json;
pub mod jsonl;
pub mod output;

pub use jsonl::JsonlExporter;
pub use factory::build_exporters;
