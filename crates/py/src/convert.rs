//! `PerfettoWriter`: the Perfetto encoder of the `perfetto` exporter, offered to
//! `ferrotrace convert --to perfetto`, which feeds it the records of a JSONL trace one at a
//! time (so a trace of any size converts in bounded memory).

use ferrotrace_core::event::{ExceptionFate, ExceptionInfo};
use ferrotrace_exporters::perfetto::encode::{Annotations, TraceEncoder, Value};
use ferrotrace_exporters::perfetto::{call_annotations, function_name};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};

/// Encoded packets are handed to the file once they reach this size.
const WRITE_AT: usize = 64 * 1024;

/// Writes a Perfetto protobuf trace, one record at a time.
#[pyclass(module = "ferrotrace._native")]
pub struct PerfettoWriter {
    out: Option<BufWriter<File>>,
    encoder: TraceEncoder,
    /// Name → its key for interning.
    names: HashMap<String, u32>,
    written: u64,
}

impl PerfettoWriter {
    fn drain(&mut self, force: bool) -> PyResult<()> {
        let buf = self.encoder.buffer();
        if buf.len() < WRITE_AT && !force {
            return Ok(());
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| PyOSError::new_err("the writer is closed"))?;
        out.write_all(buf)?;
        self.written += buf.len() as u64;
        buf.clear();
        Ok(())
    }
}

#[pymethods]
impl PerfettoWriter {
    /// Creates (or truncates) the file at `path`.
    #[new]
    fn new(path: std::path::PathBuf) -> PyResult<Self> {
        Ok(PerfettoWriter {
            out: Some(BufWriter::with_capacity(256 * 1024, File::create(path)?)),
            encoder: TraceEncoder::new(),
            names: HashMap::new(),
            written: 0,
        })
    }

    /// One call: a slice on its thread's track, named `module.qualname`, with the
    /// argument and return previews (JSON text) and the exception when given (type, message,
    /// the hex span id that caught it, whether it escaped).
    #[pyo3(signature = (pid, thread_id, module, qualname, start_ns, duration_ns, args=None, ret=None, exception=None, unfinished=false))]
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        pid: u32,
        thread_id: u64,
        module: &str,
        qualname: &str,
        start_ns: u64,
        duration_ns: u64,
        args: Option<&str>,
        ret: Option<&str>,
        exception: Option<(String, String, Option<String>, bool)>,
        unfinished: bool,
    ) -> PyResult<()> {
        let name = function_name(module, qualname);
        let next = self.names.len() as u32 + 1;
        let key = *self.names.entry(name.clone()).or_insert(next);
        let info = exception.map(|(type_name, message, caught_by, escaped)| ExceptionInfo {
            type_name,
            message,
            fate: match caught_by.and_then(|h| u64::from_str_radix(&h, 16).ok()) {
                Some(id) => ExceptionFate::CaughtBy(id),
                None if escaped => ExceptionFate::Escaped,
                None => ExceptionFate::Unknown,
            },
        });
        let annotations = call_annotations(args, ret, info.as_ref(), false, unfinished);
        self.encoder.call(
            pid,
            thread_id,
            (key, || name),
            start_ns,
            duration_ns,
            annotations,
        );
        self.drain(false)
    }

    /// A slice named `name` on a thread's track from `start_ns` to `end_ns` (a session),
    /// with string annotations.
    fn thread_slice(
        &mut self,
        pid: u32,
        thread_id: u64,
        name: &str,
        start_ns: u64,
        end_ns: u64,
        annotations: Vec<(String, String)>,
    ) -> PyResult<()> {
        let a: Annotations<'_> = annotations
            .iter()
            .map(|(k, v)| (k.as_str(), Value::Str(v)))
            .collect();
        self.encoder
            .thread_slice(pid, thread_id, name, start_ns, end_ns, a);
        self.drain(false)
    }

    /// Writes what is left and closes the file; returns the bytes written.
    fn close(&mut self) -> PyResult<u64> {
        if self.out.is_some() {
            self.drain(true)?;
            if let Some(mut out) = self.out.take() {
                out.flush()?;
            }
        }
        Ok(self.written)
    }
}
