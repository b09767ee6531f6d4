//! Fixtures shared by the exporters' unit tests.

use ferrotrace_core::exporter::{ExportContext, MetaInfo};
use ferrotrace_core::functions::{FunctionInfo, FunctionTable};
use std::sync::Arc;

/// An export context for process `pid` whose function table holds `function`; returns the
/// context and that function's id.
pub fn context_with(pid: u32, function: FunctionInfo) -> (ExportContext, u32) {
    let functions = Arc::new(FunctionTable::default());
    let id = functions.intern(function);
    let meta = MetaInfo {
        agent_version: "0.1".into(),
        ..Default::default()
    };
    (
        ExportContext {
            functions,
            pid,
            meta,
            shutdown_deadline: None,
        },
        id,
    )
}
