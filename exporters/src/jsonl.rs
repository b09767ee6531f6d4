//! The `jsonl` exporter: one JSON object per line, schema version 1 (see the README).
//!
//! [`JsonlRenderer`] renders the lines; the `http` exporter posts the same lines.

use crate::json::{push_hex, push_json_str, push_span_details, push_str, push_u64, push_uint};
use crate::output::{create_private, expand_path, CountingWriter};
use ferrotrace_core::clock::to_unix_ns;
use ferrotrace_core::event::{SessionRecord, SpanBatch, SpanRecord, FLAG_UNFINISHED};
use ferrotrace_core::exporter::{ExportContext, ExportError, Exporter};
use ferrotrace_core::metrics::Snapshot;
use std::io::Write;
use std::path::PathBuf;

/// Renders schema-v1 JSON lines into a byte buffer.
pub struct JsonlRenderer {
    pid: u32,
    /// Pre-rendered `"module":…,"qualname":…,"file":…,"line":…` per function id.
    names: Vec<Option<Box<str>>>,
    /// Pre-rendered `{"v":1,"type":"span","pid":N,"trace_id":"` prefix.
    span_prefix: Vec<u8>,
    /// The (thread, task) of the last span and its rendered
    /// `,"thread_id":N,"task_id":M,` (a batch comes from one thread, mostly one task).
    last_ids: Option<(u64, u64)>,
    ids_text: Vec<u8>,
}

fn push_span_id_or_null(out: &mut Vec<u8>, id: u64) {
    if id == 0 {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        push_hex(out, u128::from(id), 16);
        out.push(b'"');
    }
}

impl JsonlRenderer {
    /// A renderer for records of process `pid`.
    pub fn new(pid: u32) -> JsonlRenderer {
        JsonlRenderer {
            pid,
            names: Vec::new(),
            span_prefix: format!("{{\"v\":1,\"type\":\"span\",\"pid\":{pid},\"trace_id\":\"")
                .into_bytes(),
            last_ids: None,
            ids_text: Vec::new(),
        }
    }

    /// `,"thread_id":N,"task_id":M,` for a span of `thread_id` and `task_id`.
    fn ids_for(&mut self, thread_id: u64, task_id: u64) -> &[u8] {
        if self.last_ids != Some((thread_id, task_id)) {
            self.last_ids = Some((thread_id, task_id));
            let text = &mut self.ids_text;
            text.clear();
            text.extend_from_slice(b",\"thread_id\":");
            push_u64(text, thread_id);
            text.extend_from_slice(b",\"task_id\":");
            push_u64(text, task_id);
            text.push(b',');
        }
        &self.ids_text
    }

    fn names_for(&mut self, func_id: u32, ctx: &ExportContext) -> &str {
        let i = func_id as usize;
        if self.names.len() <= i {
            self.names.resize(i + 1, None);
        }
        self.names[i].get_or_insert_with(|| {
            let mut s = String::with_capacity(128);
            match ctx.functions.get(func_id) {
                Some(f) => {
                    s.push_str("\"module\":");
                    push_str(&mut s, &f.module);
                    s.push_str(",\"qualname\":");
                    push_str(&mut s, &f.qualname);
                    s.push_str(",\"file\":");
                    push_str(&mut s, &f.file);
                    s.push_str(&format!(",\"line\":{}", f.line));
                }
                None => s.push_str(
                    "\"module\":\"\",\"qualname\":\"<unknown>\",\"file\":\"\",\"line\":0",
                ),
            }
            s.into_boxed_str()
        })
    }

    /// Appends one `span` line.
    pub fn span(
        &mut self,
        s: &SpanRecord,
        batch: &SpanBatch,
        ctx: &ExportContext,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&self.span_prefix);
        push_hex(out, s.trace_id.0, 32);
        out.extend_from_slice(b"\",\"span_id\":\"");
        push_hex(out, u128::from(s.span_id), 16);
        out.extend_from_slice(b"\",\"parent_span_id\":");
        push_span_id_or_null(out, s.parent_span_id);
        out.extend_from_slice(self.ids_for(s.thread_id, s.task_id));
        out.extend_from_slice(self.names_for(s.func_id, ctx).as_bytes());
        out.extend_from_slice(b",\"start_unix_ns\":");
        push_u64(out, to_unix_ns(s.start_ns));
        out.extend_from_slice(b",\"duration_ns\":");
        push_uint(out, s.duration_ns);
        out.extend_from_slice(b",\"self_ns\":");
        push_uint(out, s.self_ns);
        out.extend_from_slice(b",\"depth\":");
        push_uint(out, u64::from(s.depth));
        if s.flags & FLAG_UNFINISHED != 0 {
            out.extend_from_slice(b",\"unfinished\":true");
        }
        push_span_details(out, batch, s);
        out.extend_from_slice(b"}\n");
    }

    /// Appends one `session_start` or `session_end` line.
    pub fn session(&self, s: &SessionRecord, out: &mut Vec<u8>) {
        let kind = if s.end_ns.is_some() {
            "session_end"
        } else {
            "session_start"
        };
        let _ = write!(
            out,
            "{{\"v\":1,\"type\":\"{kind}\",\"pid\":{},\"trace_id\":\"",
            self.pid
        );
        push_hex(out, s.trace_id.0, 32);
        out.extend_from_slice(b"\",\"span_id\":\"");
        push_hex(out, u128::from(s.span_id), 16);
        out.extend_from_slice(b"\",\"parent_span_id\":");
        push_span_id_or_null(out, s.parent_span_id);
        let _ = write!(out, ",\"remote_parent\":{},\"tag\":", s.remote_parent);
        push_json_str(out, &s.tag);
        out.extend_from_slice(b",\"attrs\":{");
        for (i, (k, v)) in s.attrs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(out, k);
            out.push(b':');
            push_json_str(out, v);
        }
        let _ = write!(out, "}},\"sampled\":{},\"thread_id\":", s.sampled);
        push_u64(out, s.thread_id);
        out.extend_from_slice(b",\"start_unix_ns\":");
        push_u64(out, to_unix_ns(s.start_ns));
        if let Some(end) = s.end_ns {
            out.extend_from_slice(b",\"end_unix_ns\":");
            push_u64(out, to_unix_ns(end));
            out.extend_from_slice(b",\"duration_ns\":");
            push_uint(out, end.saturating_sub(s.start_ns));
        }
        out.extend_from_slice(b"}\n");
    }

    /// Appends the final `meta` line with the counters.
    pub fn meta(&self, counters: &Snapshot, ctx: &ExportContext, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "{{\"v\":1,\"type\":\"meta\",\"pid\":{},\"agent_version\":",
            self.pid
        );
        push_json_str(out, &ctx.meta.agent_version);
        out.extend_from_slice(b",\"python_version\":");
        push_json_str(out, &ctx.meta.python_version);
        out.extend_from_slice(b",\"config_digest\":");
        push_json_str(out, &ctx.meta.config_digest);
        out.extend_from_slice(b",\"service_name\":");
        push_json_str(out, &ctx.meta.service_name);
        for (name, value) in counters.fields() {
            let _ = write!(out, ",\"{name}\":");
            push_u64(out, value);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Writes schema-v1 JSON lines to a file created with mode 0600.
pub struct JsonlExporter {
    out: CountingWriter,
    path: PathBuf,
    renderer: JsonlRenderer,
    scratch: Vec<u8>,
}

impl JsonlExporter {
    /// Creates the output file (`{pid}` expanded).
    pub fn create(template: &str, pid: u32) -> std::io::Result<JsonlExporter> {
        let path = expand_path(template, pid);
        let file = create_private(&path)?;
        Ok(JsonlExporter {
            out: CountingWriter::new(file),
            path,
            renderer: JsonlRenderer::new(pid),
            scratch: Vec::with_capacity(64 * 1024),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    fn emit(&mut self) -> std::io::Result<u64> {
        let r = self.out.write_all(&self.scratch);
        self.scratch.clear();
        r.map(|()| self.out.take_written())
    }
}

impl Exporter for JsonlExporter {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn export_spans(&mut self, spans: &SpanBatch, ctx: &ExportContext) -> Result<u64, ExportError> {
        for s in spans.iter() {
            self.renderer.span(s, spans, ctx, &mut self.scratch);
        }
        Ok(self.emit()?)
    }

    fn export_session(
        &mut self,
        s: &SessionRecord,
        _ctx: &ExportContext,
    ) -> Result<u64, ExportError> {
        self.renderer.session(s, &mut self.scratch);
        Ok(self.emit()?)
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }

    fn shutdown(&mut self, counters: &Snapshot, ctx: &ExportContext) -> Result<u64, ExportError> {
        self.renderer.meta(counters, ctx, &mut self.scratch);
        let n = self.emit()?;
        self.out.flush()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrotrace_core::event::{ExceptionInfo, FLAG_EXCEPTION};

    use ferrotrace_core::functions::FunctionInfo;
    use ferrotrace_core::ids::TraceId;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_valid_schema_v1_lines() {
        let dir = std::env::temp_dir().join(format!("ft-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let template = dir.join("t-{pid}.jsonl");
        let (ctx, f) = crate::testsupport::context_with(
            42,
            FunctionInfo {
                module: "m".into(),
                qualname: "C.f\"q".into(),
                file: "/m.py".into(),
                line: 9,
            },
        );
        let mut e = JsonlExporter::create(template.to_str().unwrap(), 42).unwrap();
        let span = SpanRecord {
            trace_id: TraceId(7),
            span_id: 1,
            parent_span_id: 0,
            start_ns: 5,
            duration_ns: 10,
            func_id: f,
            flags: FLAG_EXCEPTION,
            exception: Some(Box::new(ExceptionInfo {
                type_name: "ValueError".into(),
                message: "bad\n".into(),
            })),
            ..Default::default()
        };
        let session = SessionRecord {
            trace_id: TraceId(7),
            span_id: 3,
            tag: "t".into(),
            attrs: vec![("k".into(), "v".into())],
            end_ns: Some(9),
            ..Default::default()
        };
        e.export_spans(&SpanBatch::from(vec![span]), &ctx).unwrap();
        e.export_session(&session, &ctx).unwrap();
        e.shutdown(
            &Snapshot {
                recorded: 1,
                exported: 1,
                ..Default::default()
            },
            &ctx,
        )
        .unwrap();
        let path = dir.join("t-42.jsonl");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["qualname"], "C.f\"q");
        assert_eq!(lines[0]["trace_id"], "00000000000000000000000000000007");
        assert_eq!(lines[0]["span_id"], "0000000000000001");
        assert_eq!(lines[0]["parent_span_id"], serde_json::Value::Null);
        assert_eq!(lines[0]["exception"]["type"], "ValueError");
        assert_eq!(lines[0]["exception"]["message"], "bad\n");
        assert!(
            lines[0]["start_unix_ns"].is_string(),
            "unix ns exceed 2^53 and must be strings"
        );
        assert_eq!(lines[1]["type"], "session_end");
        assert_eq!(lines[1]["attrs"]["k"], "v");
        assert_eq!(lines[1]["duration_ns"], 9);
        assert_eq!(lines[2]["type"], "meta");
        assert_eq!(lines[2]["recorded"], 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
