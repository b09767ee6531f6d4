//! `ferrotrace report`'s reading of JSONL traces, done natively with the GIL released (see
//! `ferrotrace_core::trace_report`).

use std::path::PathBuf;

use ferrotrace_core::trace_report::TraceReport;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// Adds this module's functions to the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(report_summary, m)?)
}

/// What the text report of `files` (read in order, as one run) shows: (spans, sessions, the
/// `meta` records' lines, the `top` functions by total time as (name, calls, total_ns,
/// self_ns)). A file that cannot be read raises OSError(errno, message, path).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn report_summary(
    py: Python<'_>,
    files: Vec<PathBuf>,
    top: usize,
) -> PyResult<(u64, u64, Vec<String>, Vec<(String, u64, i64, i64)>)> {
    let report = py.allow_threads(|| {
        let mut report = TraceReport::new();
        for path in &files {
            if let Err(e) = report.read_file(path) {
                return Err((e, path.clone()));
            }
        }
        Ok(report)
    });
    let report = report.map_err(|(e, path)| {
        PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string(), path))
    })?;
    let rows = report
        .top(top)
        .into_iter()
        .map(|r| (r.name, r.calls, r.total_ns, r.self_ns))
        .collect();
    Ok((report.spans, report.sessions, report.metas, rows))
}
