//! The `jsonl` exporter: one JSON object per line, schema version 1 (see the README).

use crate::json::{push_str, write_str, write_u64};
use crate::output::{create_private, expand_path, CountingWriter};
use ferrotrace_core::clock::to_unix_ns;
use ferrotrace_core::event::{SessionRecord, SpanRecord, FLAG_EXCEPTION, FLAG_UNFINISHED};
use ferrotrace_core::exporter::{ExportContext, ExportError, Exporter};
use ferrotrace_core::ids::span_hex;
use ferrotrace_core::metrics::Snapshot;
use std::io::Write;
use std::path::PathBuf;

/// Writes schema-v1 JSON lines to a file created with mode 0600.
pub struct JsonlExporter {
    out: CountingWriter,
    path: PathBuf,
    /// Pre-rendered `"module":…,"qualname":…,"file":…,"line":…` per function id.
    names: Vec<Option<String>>,
    /// Pre-rendered `{"v":1,"type":"span","pid":N` prefix.
    span_prefix: String,
}

impl JsonlExporter {
    /// Creates the output file (`{pid}` expanded).
    pub fn create(template: &str, pid: u32) -> std::io::Result<JsonlExporter> {
        let path = expand_path(template, pid);
        let file = create_private(&path)?;
        Ok(JsonlExporter {
            out: CountingWriter::new(file),
            path,
            names: Vec::new(),
            span_prefix: format!("{{\"v\":1,\"type\":\"span\",\"pid\":{pid}"),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &PathBuf {
        &self.path
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
                None => s.push_str("\"module\":\"\",\"qualname\":\"<unknown>\",\"file\":\"\",\"line\":0"),
            }
            s
        })
    }

    fn write_span(&mut self, s: &SpanRecord, ctx: &ExportContext) -> std::io::Result<()> {
        let names = self.names_for(s.func_id, ctx).to_string();
        let w = &mut self.out;
        w.write_all(self.span_prefix.as_bytes())?;
        write!(w, ",\"trace_id\":\"{:032x}\",\"span_id\":\"{:016x}\",\"parent_span_id\":", s.trace_id.0, s.span_id)?;
        write_span_id_or_null(w, s.parent_span_id)?;
        w.write_all(b",\"thread_id\":")?;
        write_u64(w, s.thread_id)?;
        w.write_all(b",\"task_id\":")?;
        write_u64(w, s.task_id)?;
        w.write_all(b",")?;
        w.write_all(names.as_bytes())?;
        w.write_all(b",\"start_unix_ns\":")?;
        write_u64(w, to_unix_ns(s.start_ns))?;
        write!(w, ",\"duration_ns\":{},\"self_ns\":{},\"depth\":{}", s.duration_ns, s.self_ns, s.depth)?;
        if s.flags & FLAG_UNFINISHED != 0 {
            w.write_all(b",\"unfinished\":true")?;
        }
        if let Some(d) = &s.detail {
            if let Some(args) = &d.args_json {
                write!(w, ",\"args\":{args}")?;
            }
            if let Some(ret) = &d.return_json {
                write!(w, ",\"return\":{ret}")?;
            }
            if let Some(e) = &d.exception {
                w.write_all(b",\"exception\":{\"type\":")?;
                write_str(w, &e.type_name)?;
                w.write_all(b",\"message\":")?;
                write_str(w, &e.message)?;
                w.write_all(b"}")?;
            }
        } else if s.flags & FLAG_EXCEPTION != 0 {
            w.write_all(b",\"exception\":{\"type\":\"\",\"message\":\"\"}")?;
        }
        w.write_all(b"}\n")
    }
}

fn write_span_id_or_null(w: &mut impl Write, id: u64) -> std::io::Result<()> {
    if id == 0 {
        w.write_all(b"null")
    } else {
        write!(w, "\"{}\"", span_hex(id))
    }
}

impl Exporter for JsonlExporter {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn export_spans(&mut self, spans: &[SpanRecord], ctx: &ExportContext) -> Result<u64, ExportError> {
        for s in spans {
            self.write_span(s, ctx)?;
        }
        Ok(self.out.take_written())
    }

    fn export_session(&mut self, s: &SessionRecord, ctx: &ExportContext) -> Result<u64, ExportError> {
        let w = &mut self.out;
        let kind = if s.end_ns.is_some() { "session_end" } else { "session_start" };
        write!(w, "{{\"v\":1,\"type\":\"{kind}\",\"pid\":{},\"trace_id\":\"{:032x}\",\"span_id\":\"{:016x}\",\"parent_span_id\":", ctx.pid, s.trace_id.0, s.span_id)?;
        write_span_id_or_null(w, s.parent_span_id)?;
        write!(w, ",\"remote_parent\":{},\"tag\":", s.remote_parent)?;
        write_str(w, &s.tag)?;
        w.write_all(b",\"attrs\":{")?;
        for (i, (k, v)) in s.attrs.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            write_str(w, k)?;
            w.write_all(b":")?;
            write_str(w, v)?;
        }
        write!(w, "}},\"sampled\":{},\"thread_id\":", s.sampled)?;
        write_u64(w, s.thread_id)?;
        w.write_all(b",\"start_unix_ns\":")?;
        write_u64(w, to_unix_ns(s.start_ns))?;
        if let Some(end) = s.end_ns {
            w.write_all(b",\"end_unix_ns\":")?;
            write_u64(w, to_unix_ns(end))?;
            write!(w, ",\"duration_ns\":{}", end.saturating_sub(s.start_ns))?;
        }
        w.write_all(b"}\n")?;
        Ok(self.out.take_written())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }

    fn shutdown(&mut self, counters: &Snapshot, ctx: &ExportContext) -> Result<u64, ExportError> {
        let w = &mut self.out;
        write!(w, "{{\"v\":1,\"type\":\"meta\",\"pid\":{},\"agent_version\":", ctx.pid)?;
        write_str(w, &ctx.meta.agent_version)?;
        w.write_all(b",\"python_version\":")?;
        write_str(w, &ctx.meta.python_version)?;
        w.write_all(b",\"config_digest\":")?;
        write_str(w, &ctx.meta.config_digest)?;
        w.write_all(b",\"service_name\":")?;
        write_str(w, &ctx.meta.service_name)?;
        for (name, value) in counters.fields() {
            write!(w, ",\"{name}\":")?;
            write_u64(w, value)?;
        }
        w.write_all(b"}\n")?;
        self.out.flush()?;
        Ok(self.out.take_written())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrotrace_core::event::{ExceptionInfo, SpanDetail};
    use ferrotrace_core::exporter::MetaInfo;
    use ferrotrace_core::functions::{FunctionInfo, FunctionTable};
    use ferrotrace_core::ids::TraceId;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    #[test]
    fn writes_valid_schema_v1_lines() {
        let dir = std::env::temp_dir().join(format!("ft-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let template = dir.join("t-{pid}.jsonl");
        let functions = Arc::new(FunctionTable::default());
        let f = functions.intern(FunctionInfo { module: "m".into(), qualname: "C.f\"q".into(), file: "/m.py".into(), line: 9 });
        let ctx = ExportContext { functions, pid: 42, meta: MetaInfo { agent_version: "0.1".into(), ..Default::default() } };
        let mut e = JsonlExporter::create(template.to_str().unwrap(), 42).unwrap();
        let span = SpanRecord {
            trace_id: TraceId(7),
            span_id: 1,
            parent_span_id: 0,
            start_ns: 5,
            duration_ns: 10,
            func_id: f,
            flags: FLAG_EXCEPTION,
            detail: Some(Box::new(SpanDetail {
                exception: Some(ExceptionInfo { type_name: "ValueError".into(), message: "bad\n".into() }),
                ..Default::default()
            })),
            ..Default::default()
        };
        e.export_spans(&[span], &ctx).unwrap();
        e.shutdown(&Snapshot { recorded: 1, exported: 1, ..Default::default() }, &ctx).unwrap();
        let path = dir.join("t-42.jsonl");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["qualname"], "C.f\"q");
        assert_eq!(lines[0]["parent_span_id"], serde_json::Value::Null);
        assert_eq!(lines[0]["exception"]["type"], "ValueError");
        assert!(lines[0]["start_unix_ns"].is_string(), "unix ns exceed 2^53 and must be strings");
        assert_eq!(lines[1]["type"], "meta");
        assert_eq!(lines[1]["recorded"], 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
