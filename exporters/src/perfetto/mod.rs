//! The `perfetto` exporter: Perfetto's protobuf trace format (a compact binary trace that
//! Perfetto UI and trace_processor open), streamed from the export thread.
//!
//! The packets come from [`encode::TraceEncoder`]; this module maps ferrotrace's records
//! onto it and writes each batch's packets to the file in one call. Calls are slices on
//! their thread's track, named `module.qualname`, with their argument and return previews
//! and exception as debug annotations when recorded; a session is a slice `session TAG` on
//! its thread's track, a served request a slice on a track of its own, an outgoing HTTP
//! request a slice `METHOD host` on the caller's track. Timestamps are the process's
//! monotonic nanoseconds (small numbers: short varints); an instant `ferrotrace clock` at 0
//! on the process track tells the Unix time of 0 (`unix_ns_at_zero`), so that
//! `start_unix_ns` of the JSONL is the timestamp plus it. A clean shutdown ends the file with
//! an instant `ferrotrace meta` on the process track that carries the counters.

pub mod encode;
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod protos;

use crate::output::{create_private, expand_path, CountingWriter};
use encode::{Annotations, TraceEncoder, Value};
use ferrotrace_core::clock::{now_ns, to_unix_ns};
use ferrotrace_core::event::{
    ExceptionFate, ExceptionInfo, HttpRecord, SessionKind, SessionRecord, SpanBatch, SpanRecord,
    FLAG_EXCEPTION, FLAG_UNFINISHED,
};
use ferrotrace_core::exporter::{ExportContext, ExportError, Exporter};
use ferrotrace_core::ids::span_hex;
use ferrotrace_core::metrics::Snapshot;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a Perfetto protobuf trace to a file created with mode 0600.
pub struct PerfettoExporter {
    out: CountingWriter,
    path: PathBuf,
    pid: u32,
    encoder: TraceEncoder,
    /// `module.qualname` per function id, made once.
    names: Vec<Option<String>>,
}

/// The annotations of a call: its previews, exception and whether it was unfinished.
pub fn call_annotations<'a>(
    args: Option<&'a str>,
    ret: Option<&'a str>,
    exception: Option<&'a ExceptionInfo>,
    raised: bool,
    unfinished: bool,
) -> Annotations<'a> {
    let mut a = Annotations::new();
    if let Some(args) = args {
        a.push(("args", Value::Json(args)));
    }
    if let Some(ret) = ret {
        a.push(("return", Value::Json(ret)));
    }
    if let Some(e) = exception {
        a.push(("exception", exception_value(e)));
    } else if raised {
        a.push(("exception", Value::Dict(vec![("type", Value::Str(""))])));
    }
    if unfinished {
        a.push(("unfinished", Value::Bool(true)));
    }
    a
}

/// The exception as the JSONL writes it: type, message and where it went.
fn exception_value(e: &ExceptionInfo) -> Value<'_> {
    let mut fields = vec![
        ("type", Value::Str(&e.type_name)),
        ("message", Value::Str(&e.message)),
    ];
    match e.fate {
        ExceptionFate::CaughtBy(id) => fields.push(("caught_by", Value::Owned(span_hex(id)))),
        ExceptionFate::Escaped => fields.push(("escaped", Value::Bool(true))),
        ExceptionFate::Unknown => {}
    }
    Value::Dict(fields)
}

/// `module.qualname` of a function (`qualname` alone without a module).
pub fn function_name(module: &str, qualname: &str) -> String {
    if module.is_empty() {
        qualname.to_string()
    } else {
        format!("{module}.{qualname}")
    }
}

impl PerfettoExporter {
    /// Creates the output file (`{pid}` expanded) and writes the process track.
    pub fn create(
        template: impl AsRef<Path>,
        pid: u32,
        service_name: &str,
    ) -> std::io::Result<PerfettoExporter> {
        let path = expand_path(template, pid);
        let file = create_private(&path)?;
        let mut e = PerfettoExporter {
            out: CountingWriter::new(file),
            path,
            pid,
            encoder: TraceEncoder::new(),
            names: Vec::new(),
        };
        let label = if service_name.is_empty() {
            format!("python (pid {pid})")
        } else {
            format!("{service_name} (pid {pid})")
        };
        e.encoder.process(pid, &label);
        let zero = to_unix_ns(0).min(i64::MAX as u64) as i64;
        e.encoder.process_instant(
            pid,
            "ferrotrace clock",
            0,
            vec![("unix_ns_at_zero", Value::Int(zero))],
        );
        e.emit()?;
        e.out.flush()?;
        Ok(e)
    }

    /// The file being written.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    fn encode_span(&mut self, s: &SpanRecord, batch: &SpanBatch, ctx: &ExportContext) {
        let i = s.func_id as usize;
        if self.names.len() <= i {
            self.names.resize(i + 1, None);
        }
        let name = self.names[i].get_or_insert_with(|| match ctx.functions.get(s.func_id) {
            Some(f) => function_name(&f.module, &f.qualname),
            None => "<unknown>".to_string(),
        });
        let annotations = if s.args.is_empty()
            && s.ret.is_empty()
            && s.flags & (FLAG_EXCEPTION | FLAG_UNFINISHED) == 0
            && s.exception.is_none()
        {
            Annotations::new()
        } else {
            call_annotations(
                batch.args(s),
                batch.return_value(s),
                s.exception.as_deref(),
                s.flags & FLAG_EXCEPTION != 0,
                s.flags & FLAG_UNFINISHED != 0,
            )
        };
        self.encoder.call(
            self.pid,
            s.thread_id,
            (s.func_id, || name.clone()),
            s.start_ns,
            s.duration_ns,
            annotations,
        );
    }

    /// A session: a slice `session TAG` on its thread's track when it ends (a served
    /// request: a slice named by its tag on a track of its own). Its start only names the
    /// thread.
    fn encode_session(&mut self, s: &SessionRecord) {
        self.encoder
            .thread_name(self.pid, s.thread_id, &s.thread_name);
        let Some(end) = s.end_ns else {
            return;
        };
        let trace_id = format!("{:032x}", s.trace_id.0);
        let span_id = span_hex(s.span_id);
        let parent = span_hex(s.parent_span_id);
        let mut a: Annotations<'_> = vec![
            ("trace_id", Value::Str(&trace_id)),
            ("span_id", Value::Str(&span_id)),
            ("sampled", Value::Bool(s.sampled)),
        ];
        if s.parent_span_id != 0 {
            a.push(("parent_span_id", Value::Str(&parent)));
        }
        if !s.attrs.is_empty() {
            a.push((
                "attrs",
                Value::Dict(
                    s.attrs
                        .iter()
                        .map(|(k, v)| (k.as_str(), Value::Str(v)))
                        .collect(),
                ),
            ));
        }
        if let Some(e) = &s.exception {
            a.push(("exception", exception_value(e)));
        }
        let tag = if s.tag.is_empty() { "session" } else { &s.tag };
        if s.kind == SessionKind::Server {
            a.push(("status", Value::Str(s.status.as_str())));
            self.encoder
                .own_track_slice(self.pid, s.span_id, tag, s.start_ns, end, a);
        } else {
            let name = format!("session {tag}");
            self.encoder
                .thread_slice(self.pid, s.thread_id, &name, s.start_ns, end, a);
        }
    }

    /// An outgoing HTTP request: a slice `METHOD host` on the caller's track.
    fn encode_http(&mut self, h: &HttpRecord) {
        let span_id = span_hex(h.span_id);
        let mut a: Annotations<'_> = vec![
            ("library", Value::Str(&h.library)),
            ("url", Value::Str(&h.url)),
            ("status", Value::Int(i64::from(h.status))),
            ("span_id", Value::Str(&span_id)),
            ("request_bytes", Value::Int(h.request_bytes as i64)),
            ("response_bytes", Value::Int(h.response_bytes as i64)),
        ];
        if let Some(e) = &h.exception {
            a.push(("exception", exception_value(e)));
        }
        for (name, headers) in [
            ("request_headers", &h.request_headers),
            ("response_headers", &h.response_headers),
        ] {
            if !headers.is_empty() {
                let entries = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), Value::Str(v)))
                    .collect();
                a.push((name, Value::Dict(entries)));
            }
        }
        let name = format!("{} {}", h.method, h.host);
        self.encoder.thread_slice(
            self.pid,
            h.thread_id,
            &name,
            h.start_ns,
            h.start_ns.saturating_add(h.duration_ns),
            a,
        );
    }

    /// Hands the encoded packets to the writer in one call.
    fn emit(&mut self) -> std::io::Result<()> {
        let buf = self.encoder.buffer();
        let r = self.out.write_all(buf);
        buf.clear();
        r
    }
}

impl Exporter for PerfettoExporter {
    fn name(&self) -> &'static str {
        "perfetto"
    }

    fn export_spans(&mut self, spans: &SpanBatch, ctx: &ExportContext) -> Result<u64, ExportError> {
        for s in spans.iter() {
            self.encode_span(s, spans, ctx);
        }
        self.emit()?;
        Ok(self.out.take_written())
    }

    /// Held back (encoded) until the next batch or flush: a session start alone does not
    /// open the file while the program starts.
    fn export_session(
        &mut self,
        session: &SessionRecord,
        _ctx: &ExportContext,
    ) -> Result<u64, ExportError> {
        self.encode_session(session);
        Ok(0)
    }

    /// Held back like a session record.
    fn export_http(&mut self, h: &HttpRecord, _ctx: &ExportContext) -> Result<u64, ExportError> {
        self.encode_http(h);
        Ok(0)
    }

    fn flush(&mut self) -> Result<u64, ExportError> {
        self.emit()?;
        self.out.flush()?;
        Ok(self.out.take_written())
    }

    /// Before a fork: what is buffered is written and the file closed, so the child does not
    /// inherit its descriptor (it writes a file of its own).
    fn park(&mut self, _deadline: std::time::Instant) {
        let _ = self.out.flush();
    }

    fn shutdown(&mut self, counters: &Snapshot, ctx: &ExportContext) -> Result<u64, ExportError> {
        let diagnostics = ctx.meta.diagnostics.messages().join("\n");
        let mut a: Annotations<'_> = vec![
            ("agent_version", Value::Str(&ctx.meta.agent_version)),
            ("python_version", Value::Str(&ctx.meta.python_version)),
            ("config_digest", Value::Str(&ctx.meta.config_digest)),
            ("service_name", Value::Str(&ctx.meta.service_name)),
            ("diagnostics", Value::Str(&diagnostics)),
        ];
        for (name, value) in counters.fields() {
            a.push((name, Value::Int(value.min(i64::MAX as u64) as i64)));
        }
        self.encoder
            .process_instant(self.pid, "ferrotrace meta", now_ns(), a);
        self.emit()?;
        self.out.flush()?;
        Ok(self.out.take_written())
    }
}

#[cfg(test)]
mod tests {
    use super::protos::{trace_packet, track_event, Trace, TrackDescriptor};
    use super::*;
    use ferrotrace_core::functions::FunctionInfo;
    use ferrotrace_core::ids::TraceId;
    use prost::Message;

    fn spans(f: u32, n: u64) -> SpanBatch {
        let mut batch = SpanBatch::default();
        let args = batch.add_text("{\"x\":1}");
        batch.spans = (0..n)
            .map(|i| SpanRecord {
                trace_id: TraceId(9),
                span_id: 200 + i,
                start_ns: 1_000 + i * 100,
                duration_ns: 50,
                thread_id: 7 + i % 2,
                func_id: f,
                args: if i == 0 { args } else { Default::default() },
                ..Default::default()
            })
            .collect();
        batch
    }

    #[test]
    fn writes_tracks_interned_names_and_begin_end_pairs() {
        let dir = std::env::temp_dir().join(format!("ft-perfetto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ctx, f) = crate::testsupport::context_with(
            42,
            FunctionInfo {
                module: "app".into(),
                qualname: "run".into(),
                file: "/app.py".into(),
                line: 3,
            },
        );
        let mut e = PerfettoExporter::create(dir.join("t-{pid}.pftrace"), 42, "svc").unwrap();
        e.export_spans(&spans(f, 4), &ctx).unwrap();
        e.export_session(
            &SessionRecord {
                thread_id: 7,
                thread_name: "MainThread".into(),
                tag: "job".into(),
                start_ns: 900,
                end_ns: Some(2_000),
                ..Default::default()
            },
            &ctx,
        )
        .unwrap();
        e.shutdown(&Snapshot::default(), &ctx).unwrap();
        let bytes = std::fs::read(dir.join("t-42.pftrace")).unwrap();
        let trace = Trace::decode(bytes.as_slice()).unwrap();
        let tracks: Vec<&TrackDescriptor> = trace
            .packet
            .iter()
            .filter_map(|p| match &p.data {
                Some(trace_packet::Data::TrackDescriptor(d)) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(
            tracks[0].process.as_ref().unwrap().process_name(),
            "svc (pid 42)"
        );
        let names: Vec<&str> = tracks
            .iter()
            .filter_map(|d| d.thread.as_ref().map(|t| t.thread_name()))
            .collect();
        assert_eq!(names, ["thread 7", "thread 8", "MainThread"]);
        let events: Vec<(u64, i32, Option<u64>)> = trace
            .packet
            .iter()
            .filter_map(|p| match &p.data {
                Some(trace_packet::Data::TrackEvent(t)) if p.timestamp() > 0 => {
                    let iid = match t.name_field {
                        Some(track_event::NameField::NameIid(iid)) => Some(iid),
                        _ => None,
                    };
                    Some((p.timestamp(), t.r#type.unwrap_or(0), iid))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            events.len(),
            8 + 2 + 1,
            "4 calls, the session, the meta record"
        );
        assert_eq!(events[0], (1_000, 1, Some(1)));
        assert_eq!(events[1], (1_050, 2, None));
        let interned: Vec<&str> = trace
            .packet
            .iter()
            .filter_map(|p| p.interned_data.as_ref())
            .flat_map(|i| i.event_names.iter().map(|n| n.name()))
            .collect();
        assert_eq!(interned, ["app.run", "app.run"], "once per thread sequence");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
