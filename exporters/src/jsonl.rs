//! The `jsonl` exporter: one JSON object per line, schema version 1 (see the README).
//!
//! [`JsonlRenderer`] renders the lines; the `http` exporter posts the same lines.

use crate::json::{
    has_exception, push_exception, push_exception_info, push_hex, push_json_str, push_str,
    push_string_map, push_u64, push_uint, Reserved, Timestamps,
};
use crate::output::{create_private, expand_path, OutputFile, WholeWriter};
use ferrotrace_core::clock::to_unix_ns;
use ferrotrace_core::event::{HttpRecord, SessionRecord, SpanBatch, SpanRecord, FLAG_UNFINISHED};
use ferrotrace_core::exporter::{ExportContext, ExportError, Exporter};
use ferrotrace_core::ids::TraceId;
use ferrotrace_core::metrics::Snapshot;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Renders schema-v1 JSON lines into a byte buffer.
pub struct JsonlRenderer {
    pid: u32,
    /// Pre-rendered `"module":…,"qualname":…,"file":…,"line":…` per function id.
    names: Vec<Option<Box<str>>>,
    /// The trace of the last span and its rendered
    /// `{"v":1,"type":"span","pid":N,"trace_id":"…","span_id":"` (spans of a trace come in runs).
    last_trace: Option<TraceId>,
    span_head: Vec<u8>,
    /// The (thread, task) of the last span and its rendered
    /// `,"thread_id":N,"task_id":M,` (a batch comes from one thread, mostly one task).
    last_ids: Option<(u64, u64)>,
    ids_text: Vec<u8>,
    /// Renders `start_unix_ns`, reusing the leading digits of the last one.
    start_times: Timestamps,
}

// The fixed pieces of a span line after its head.

const PARENT: &[u8] = b"\",\"parent_span_id\":";
const START: &[u8] = b",\"start_unix_ns\":";
const DURATION: &[u8] = b",\"duration_ns\":";
const SELF_NS: &[u8] = b",\"self_ns\":";
const DEPTH: &[u8] = b",\"depth\":";
const UNFINISHED: &[u8] = b",\"unfinished\":true";
const ARGS: &[u8] = b",\"args\":";
const RETURN: &[u8] = b",\"return\":";
const END: &[u8] = b"}\n";

/// The most bytes of a span line besides its head, ids, names and previews, and its
/// exception (appended separately): each piece below at its longest.
const SPAN_REST_MAX: usize = 16 // span_id
    + PARENT.len() + 18 // "parent" or null
    + START.len() + 22 // "u64"
    + DURATION.len() + 20
    + SELF_NS.len() + 20
    + DEPTH.len() + 10 // u32
    + UNFINISHED.len()
    + ARGS.len()
    + RETURN.len()
    + END.len();

/// Appends span id `id` as a quoted hex string, or `null` for 0.
fn push_span_id_or_null(out: &mut Vec<u8>, id: u64) {
    let mut w = Reserved::new(out, 18);
    // SAFETY: `span_id_or_null` writes at most 18 bytes.
    unsafe { w.span_id_or_null(id) };
    w.finish();
}

/// The pre-rendered `"module":…,"qualname":…,"file":…,"line":…` of function `func_id`,
/// rendered into `names` on first use.
fn names_for<'n>(
    names: &'n mut Vec<Option<Box<str>>>,
    func_id: u32,
    ctx: &ExportContext,
) -> &'n str {
    let i = func_id as usize;
    if names.len() <= i {
        names.resize(i + 1, None);
    }
    names[i].get_or_insert_with(|| {
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
            None => {
                s.push_str("\"module\":\"\",\"qualname\":\"<unknown>\",\"file\":\"\",\"line\":0")
            }
        }
        s.into_boxed_str()
    })
}

impl JsonlRenderer {
    /// A renderer for records of process `pid`.
    pub fn new(pid: u32) -> JsonlRenderer {
        JsonlRenderer {
            pid,
            names: Vec::new(),
            last_trace: None,
            span_head: Vec::new(),
            last_ids: None,
            ids_text: Vec::new(),
            start_times: Timestamps::default(),
        }
    }

    /// Renders `span_head` for `trace_id` unless it is the last span's trace.
    fn set_trace(&mut self, trace_id: TraceId) {
        if self.last_trace != Some(trace_id) {
            self.last_trace = Some(trace_id);
            let text = &mut self.span_head;
            text.clear();
            let _ = write!(
                text,
                "{{\"v\":1,\"type\":\"span\",\"pid\":{},\"trace_id\":\"",
                self.pid
            );
            push_hex(text, trace_id.0, 32);
            text.extend_from_slice(b"\",\"span_id\":\"");
        }
    }

    /// Renders `ids_text` for `thread_id` and `task_id` unless they are the last span's.
    fn set_ids(&mut self, thread_id: u64, task_id: u64) {
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
    }

    /// Appends one `span` line: one capacity check for all but a (rare) exception.
    pub fn span(
        &mut self,
        s: &SpanRecord,
        batch: &SpanBatch,
        ctx: &ExportContext,
        out: &mut Vec<u8>,
    ) {
        self.set_trace(s.trace_id);
        self.set_ids(s.thread_id, s.task_id);
        let names = names_for(&mut self.names, s.func_id, ctx).as_bytes();
        let args = batch.args(s).map_or(&[][..], str::as_bytes);
        let ret = batch.return_value(s).map_or(&[][..], str::as_bytes);
        let exception = has_exception(s);
        let max_len = self.span_head.len()
            + self.ids_text.len()
            + names.len()
            + args.len()
            + ret.len()
            + SPAN_REST_MAX;
        let mut w = Reserved::new(out, max_len);
        // SAFETY: `max_len` counts each piece written here at its longest: the head, ids,
        // names and previews by their lengths, the rest as `SPAN_REST_MAX` lists them.
        unsafe {
            w.bytes(&self.span_head);
            w.hex16(s.span_id);
            w.bytes(PARENT);
            w.span_id_or_null(s.parent_span_id);
            w.bytes(&self.ids_text);
            w.bytes(names);
            w.bytes(START);
            self.start_times.write(&mut w, to_unix_ns(s.start_ns));
            w.bytes(DURATION);
            w.uint(s.duration_ns);
            w.bytes(SELF_NS);
            w.uint(s.self_ns);
            w.bytes(DEPTH);
            w.uint(u64::from(s.depth));
            if s.flags & FLAG_UNFINISHED != 0 {
                w.bytes(UNFINISHED);
            }
            if !args.is_empty() {
                w.bytes(ARGS);
                w.bytes(args);
            }
            if !ret.is_empty() {
                w.bytes(RETURN);
                w.bytes(ret);
            }
            if !exception {
                w.bytes(END);
            }
        }
        w.finish();
        if exception {
            push_exception(out, s);
            out.extend_from_slice(END);
        }
    }

    /// Appends one `session_start` or `session_end` line.
    pub fn session(&self, s: &SessionRecord, out: &mut Vec<u8>) {
        let kind = if s.end_ns.is_some() {
            "session_end"
        } else {
            "session_start"
        };
        self.push_head(out, kind, s.trace_id, s.span_id, s.parent_span_id);
        let _ = write!(out, ",\"remote_parent\":{},\"tag\":", s.remote_parent);
        push_json_str(out, &s.tag);
        out.extend_from_slice(b",\"attrs\":");
        push_string_map(out, &s.attrs);
        let _ = write!(
            out,
            ",\"kind\":\"{}\",\"status\":\"{}\",\"sampled\":{},\"thread_id\":",
            s.kind.as_str(),
            s.status.as_str(),
            s.sampled
        );
        push_u64(out, s.thread_id);
        out.extend_from_slice(b",\"start_unix_ns\":");
        push_u64(out, to_unix_ns(s.start_ns));
        if let Some(end) = s.end_ns {
            out.extend_from_slice(b",\"end_unix_ns\":");
            push_u64(out, to_unix_ns(end));
            out.extend_from_slice(b",\"duration_ns\":");
            push_uint(out, end.saturating_sub(s.start_ns));
        }
        if let Some(e) = &s.exception {
            push_exception_info(out, e);
        }
        out.extend_from_slice(b"}\n");
    }

    /// Opens a session or `http` line: version, type, pid and its trace, span and parent
    /// ids (`parent_span_id` null when 0), up to the parent id.
    fn push_head(&self, out: &mut Vec<u8>, kind: &str, trace: TraceId, span: u64, parent: u64) {
        let _ = write!(
            out,
            "{{\"v\":1,\"type\":\"{kind}\",\"pid\":{},\"trace_id\":\"",
            self.pid
        );
        push_hex(out, trace.0, 32);
        out.extend_from_slice(b"\",\"span_id\":\"");
        push_hex(out, u128::from(span), 16);
        out.extend_from_slice(b"\",\"parent_span_id\":");
        push_span_id_or_null(out, parent);
    }

    /// Appends one `http` line: an outgoing request (`status` null when no response came).
    pub fn http(&self, h: &HttpRecord, out: &mut Vec<u8>) {
        self.push_head(out, "http", h.trace_id, h.span_id, h.parent_span_id);
        out.extend_from_slice(b",\"thread_id\":");
        push_u64(out, h.thread_id);
        out.extend_from_slice(b",\"task_id\":");
        push_u64(out, h.task_id);
        out.extend_from_slice(b",\"library\":");
        push_json_str(out, &h.library);
        out.extend_from_slice(b",\"method\":");
        push_json_str(out, &h.method);
        out.extend_from_slice(b",\"url\":");
        push_json_str(out, &h.url);
        out.extend_from_slice(b",\"status\":");
        match h.status {
            0 => out.extend_from_slice(b"null"),
            s => push_uint(out, u64::from(s)),
        }
        out.extend_from_slice(b",\"start_unix_ns\":");
        push_u64(out, to_unix_ns(h.start_ns));
        out.extend_from_slice(b",\"duration_ns\":");
        push_u64(out, h.duration_ns);
        out.extend_from_slice(b",\"request_bytes\":");
        push_u64(out, h.request_bytes);
        out.extend_from_slice(b",\"response_bytes\":");
        push_u64(out, h.response_bytes);
        if h.resend_count > 0 {
            out.extend_from_slice(b",\"resend_count\":");
            push_uint(out, u64::from(h.resend_count));
        }
        if let Some(e) = &h.exception {
            push_exception_info(out, e);
        }
        for (key, headers) in [
            (&b",\"request_headers\":"[..], &h.request_headers),
            (&b",\"response_headers\":"[..], &h.response_headers),
        ] {
            if !headers.is_empty() {
                out.extend_from_slice(key);
                push_string_map(out, headers);
            }
        }
        for (key, body) in [
            (&b",\"request_body\":"[..], &h.request_body),
            (&b",\"response_body\":"[..], &h.response_body),
        ] {
            if let Some(body) = body {
                out.extend_from_slice(key);
                push_json_str(out, body);
            }
        }
        out.extend_from_slice(END);
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
        out.extend_from_slice(b",\"diagnostics\":[");
        for (i, d) in ctx.meta.diagnostics.messages().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(out, d);
        }
        out.push(b']');
        for (name, value) in counters.fields() {
            let _ = write!(out, ",\"{name}\":");
            push_u64(out, value);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Writes schema-v1 JSON lines to a file created with mode 0600. Each batch is rendered
/// whole and written in one go, unbuffered; a write that fails (a full disk) is cut back, so
/// the file only ever holds whole lines, exactly the bytes counted as written.
pub struct JsonlExporter {
    out: WholeWriter<OutputFile>,
    path: PathBuf,
    renderer: JsonlRenderer,
    scratch: Vec<u8>,
}

impl JsonlExporter {
    /// Creates the output file (`{pid}` expanded).
    pub fn create(template: impl AsRef<Path>, pid: u32) -> std::io::Result<JsonlExporter> {
        let path = expand_path(template, pid);
        let file = create_private(&path)?;
        Ok(JsonlExporter {
            out: WholeWriter::new(file, &path),
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
        let r = self.out.write_whole(&self.scratch);
        self.scratch.clear();
        r
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

    /// Held back (rendered) until the next batch or flush: a session start alone does not
    /// open the file while the program starts.
    fn export_session(
        &mut self,
        s: &SessionRecord,
        _ctx: &ExportContext,
    ) -> Result<u64, ExportError> {
        self.renderer.session(s, &mut self.scratch);
        Ok(0)
    }

    /// Held back like a session record.
    fn export_http(&mut self, h: &HttpRecord, _ctx: &ExportContext) -> Result<u64, ExportError> {
        self.renderer.http(h, &mut self.scratch);
        Ok(0)
    }

    fn flush(&mut self) -> Result<u64, ExportError> {
        let n = if self.scratch.is_empty() {
            0
        } else {
            self.emit()?
        };
        self.out.flush()?;
        Ok(n)
    }

    /// Before a fork: the file is closed, so the child does not inherit its descriptor (it
    /// writes a file of its own); held-back records wait for the next write.
    fn park(&mut self, _deadline: std::time::Instant) {
        let _ = self.out.flush();
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
    use crate::json::MAX_SAFE_INTEGER;
    use ferrotrace_core::event::{
        ExceptionFate, ExceptionInfo, SessionKind, SessionStatus, FLAG_EXCEPTION,
    };

    use ferrotrace_core::functions::FunctionInfo;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn renders_an_http_record() {
        let renderer = JsonlRenderer::new(3);
        let mut h = HttpRecord {
            trace_id: TraceId(7),
            span_id: 2,
            parent_span_id: 1,
            thread_id: 4,
            library: "requests".into(),
            method: "GET".into(),
            url: "http://h/\"x\"".into(),
            status: 200,
            start_ns: 5,
            duration_ns: 9,
            request_bytes: 1,
            response_bytes: 2,
            response_headers: vec![("content-type".into(), "text/plain".into())],
            ..Default::default()
        };
        let mut out = Vec::new();
        renderer.http(&h, &mut out);
        (h.status, h.resend_count) = (0, 2);
        h.request_body = Some("{\"a\": 1}".into());
        h.exception = Some(ExceptionInfo {
            type_name: "ConnectionError".into(),
            message: "refused".into(),
            ..Default::default()
        });
        renderer.http(&h, &mut out);
        let lines: Vec<serde_json::Value> = out
            .split_inclusive(|&b| b == b'\n')
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({
                "v": 1, "type": "http", "pid": 3, "trace_id": "00000000000000000000000000000007",
                "span_id": "0000000000000002", "parent_span_id": "0000000000000001",
                "thread_id": 4, "task_id": 0, "library": "requests", "method": "GET",
                "url": "http://h/\"x\"", "status": 200,
                "start_unix_ns": to_unix_ns(5).to_string(), "duration_ns": 9,
                "request_bytes": 1, "response_bytes": 2,
                "response_headers": {"content-type": "text/plain"},
            })
        );
        assert_eq!(lines[1]["status"], serde_json::Value::Null);
        assert_eq!(lines[1]["resend_count"], 2);
        assert_eq!(lines[1]["request_body"], "{\"a\": 1}");
        assert!(lines[1].get("response_body").is_none());
        assert_eq!(lines[1]["exception"]["type"], "ConnectionError");
    }

    #[test]
    fn renders_every_kind_of_span() {
        let (ctx, f) = crate::testsupport::context_with(
            42,
            FunctionInfo {
                module: "m".into(),
                qualname: "f".into(),
                file: "/m.py".into(),
                line: 9,
            },
        );
        let span = |trace: u128, span_id: u64, parent_span_id: u64| SpanRecord {
            trace_id: TraceId(trace),
            span_id,
            parent_span_id,
            start_ns: 5,
            duration_ns: 10,
            self_ns: 4,
            thread_id: 3,
            func_id: f,
            depth: 2,
            ..Default::default()
        };
        let big = MAX_SAFE_INTEGER + 1;
        let mut batch = SpanBatch::default();
        let args = batch.add_text("{\"x\":\"<a>\",\"n\":1}");
        let ret = batch.add_text("[1,2]");
        let mut spans = vec![
            span(7, 1, 0),
            span(7, 2, 1),
            span(u128::MAX, u64::MAX, u64::MAX),
            span(0xabc << 64, 0xdef, 2),
            span(7, 3, 0),
        ];
        spans[1].args = args;
        spans[1].ret = ret;
        let s = &mut spans[2];
        (s.start_ns, s.duration_ns, s.self_ns, s.depth) = (u64::MAX, u64::MAX, big, u32::MAX);
        (s.thread_id, s.task_id) = (big, u64::MAX);
        s.flags = FLAG_UNFINISHED | FLAG_EXCEPTION;
        let s = &mut spans[3];
        (s.func_id, s.args, s.flags) = (f + 1, args, FLAG_EXCEPTION);
        s.exception = Some(Box::new(ExceptionInfo {
            type_name: "KeyError".into(),
            message: "'k'\n".into(),
            ..Default::default()
        }));
        batch.spans = spans;
        let mut renderer = JsonlRenderer::new(42);
        let mut out = Vec::new();
        for s in batch.iter() {
            renderer.span(s, &batch, &ctx, &mut out);
        }
        let lines: Vec<serde_json::Value> = out
            .split_inclusive(|&b| b == b'\n')
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let common = |trace: &str, span: &str, parent: serde_json::Value| {
            serde_json::json!({
                "v": 1, "type": "span", "pid": 42, "trace_id": trace, "span_id": span,
                "parent_span_id": parent, "thread_id": 3, "task_id": 0, "module": "m",
                "qualname": "f", "file": "/m.py", "line": 9,
                "start_unix_ns": to_unix_ns(5).to_string(), "duration_ns": 10, "self_ns": 4,
                "depth": 2,
            })
        };
        let trace7 = "00000000000000000000000000000007";
        let null = serde_json::Value::Null;
        let mut expected = vec![
            common(trace7, "0000000000000001", null.clone()),
            common(trace7, "0000000000000002", "0000000000000001".into()),
            serde_json::json!({
                "v": 1, "type": "span", "pid": 42, "trace_id": "f".repeat(32),
                "span_id": "f".repeat(16), "parent_span_id": "f".repeat(16),
                "thread_id": big.to_string(), "task_id": u64::MAX.to_string(), "module": "m",
                "qualname": "f", "file": "/m.py", "line": 9,
                "start_unix_ns": u64::MAX.to_string(), "duration_ns": u64::MAX,
                "self_ns": big, "depth": u32::MAX, "unfinished": true,
                "exception": {"type": "", "message": ""},
            }),
            common(
                "0000000000000abc0000000000000000",
                "0000000000000def",
                "0000000000000002".into(),
            ),
            common(trace7, "0000000000000003", null),
        ];
        expected[1]["args"] = serde_json::json!({"x": "<a>", "n": 1});
        expected[1]["return"] = serde_json::json!([1, 2]);
        let e = expected[3].as_object_mut().unwrap();
        e["module"] = "".into();
        e["qualname"] = "<unknown>".into();
        e["file"] = "".into();
        e["line"] = 0.into();
        e.insert("args".into(), serde_json::json!({"x": "<a>", "n": 1}));
        e.insert(
            "exception".into(),
            serde_json::json!({"type": "KeyError", "message": "'k'\n"}),
        );
        assert_eq!(lines, expected);
        // u64::MAX keeps its precision (serde_json reads it as a u64, not a double).
        assert_eq!(lines[2]["duration_ns"].as_u64(), Some(u64::MAX));
    }

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
                fate: ExceptionFate::CaughtBy(0xab),
            })),
            ..Default::default()
        };
        let session = SessionRecord {
            trace_id: TraceId(7),
            span_id: 3,
            tag: "t".into(),
            attrs: vec![("k".into(), "v".into())],
            end_ns: Some(9),
            kind: SessionKind::Server,
            status: SessionStatus::Error,
            exception: Some(ExceptionInfo {
                type_name: "KeyError".into(),
                message: "'x'".into(),
                fate: ExceptionFate::Escaped,
            }),
            ..Default::default()
        };
        e.export_spans(&SpanBatch::from(vec![span]), &ctx).unwrap();
        e.export_session(&session, &ctx).unwrap();
        ctx.meta
            .diagnostics
            .push("FERROTRACE_X is not a \"setting\"");
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
        assert_eq!(lines[0]["exception"]["caught_by"], "00000000000000ab");
        assert!(lines[0]["exception"].get("escaped").is_none());
        assert!(
            lines[0]["start_unix_ns"].is_string(),
            "unix ns exceed 2^53 and must be strings"
        );
        assert_eq!(lines[1]["type"], "session_end");
        assert_eq!(lines[1]["attrs"]["k"], "v");
        assert_eq!(lines[1]["kind"], "server");
        assert_eq!(lines[1]["status"], "error");
        assert_eq!(lines[1]["exception"]["type"], "KeyError");
        assert_eq!(lines[1]["exception"]["escaped"], true);
        assert!(lines[1]["exception"].get("caught_by").is_none());
        assert_eq!(lines[1]["duration_ns"], 9);
        assert_eq!(lines[2]["type"], "meta");
        assert_eq!(lines[2]["recorded"], 1);
        assert_eq!(
            lines[2]["diagnostics"],
            serde_json::json!(["FERROTRACE_X is not a \"setting\""])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
