//! The `chrome` exporter: Trace Event Format JSON that Perfetto UI, chrome://tracing and
//! speedscope open.
//!
//! The file is one JSON array written incrementally: `[`, the process name, then one event
//! per line, each preceded by `,`. The format allows the closing `]` to be missing, and the
//! file never ends in a comma, so a process killed mid-run still leaves a file that is valid
//! JSON once `]` is appended (what Perfetto and chrome://tracing do); every event reaches
//! the file whole: it is rendered first and handed to the buffered writer in one call, and
//! an event that would straddle a 4 KiB boundary of the file is moved past it with
//! whitespace, because a write cut short by SIGKILL stops at such a boundary (the kernel
//! copies page-aligned chunks and checks for a fatal signal between them). A clean shutdown
//! ends the array with a process-scoped `ferrotrace meta` instant event that carries the
//! counters, and `]`.
//!
//! Timestamps are microseconds (with a fractional part) on the process's monotonic clock,
//! so nanosecond durations survive the parsers' doubles. Each call is a complete event
//! (`"ph":"X"`) on its thread's track; a session is an instant event at its start and a
//! complete event on its thread when it ends.

use crate::json::{
    push_exception_info, push_span_details, push_str, push_string_map, write_str, write_u64,
};
use crate::output::{create_private, expand_path, CountingWriter};
use ferrotrace_core::clock::now_ns;
use ferrotrace_core::event::{
    HttpRecord, SessionKind, SessionRecord, SpanBatch, SpanRecord, FLAG_UNFINISHED,
};
use ferrotrace_core::exporter::{ExportContext, ExportError, Exporter};
use ferrotrace_core::ids::span_hex;
use ferrotrace_core::metrics::Snapshot;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Thread ids above this are mapped to compact track ids (Linux thread ids stay below it).
const MAX_NATIVE_TID: u64 = i32::MAX as u64;
/// First compact track id handed to a thread id too large for the viewers' 32-bit tids.
const FIRST_COMPACT_TID: u64 = 1_000_000_000;

/// Writes a Trace Event Format JSON array to a file created with mode 0600.
pub struct ChromeExporter {
    out: CountingWriter,
    path: PathBuf,
    pid: u32,
    /// Pre-rendered `"name":"module.qualname","cat":"python"` per function id.
    names: Vec<Option<String>>,
    /// Pre-rendered `"module":…,"file":…,"line":…` per function id.
    locations: Vec<Option<String>>,
    /// Thread id → track id and the name its last `thread_name` event gave it.
    tracks: HashMap<u64, (u64, String)>,
    next_compact_tid: u64,
    /// One event rendered here, then written in one call.
    scratch: Vec<u8>,
    /// Bytes handed to the file so far (its size once flushed).
    offset: u64,
}

/// The alignment of the points where the kernel may cut a write short (a page).
const CUT_ALIGN: u64 = 4096;

/// Appends `ns` as microseconds with three decimals.
fn push_micros(out: &mut Vec<u8>, ns: u64) {
    let _ = write!(out, "{}.{:03}", ns / 1000, ns % 1000);
}

impl ChromeExporter {
    /// Creates the output file (`{pid}` expanded) and writes the array opening and the
    /// process name.
    pub fn create(
        template: impl AsRef<Path>,
        pid: u32,
        service_name: &str,
    ) -> std::io::Result<ChromeExporter> {
        let path = expand_path(template, pid);
        let file = create_private(&path)?;
        let mut e = ChromeExporter {
            out: CountingWriter::new(file),
            path,
            pid,
            names: Vec::new(),
            locations: Vec::new(),
            tracks: HashMap::new(),
            next_compact_tid: FIRST_COMPACT_TID,
            scratch: Vec::with_capacity(1024),
            offset: 0,
        };
        let label = if service_name.is_empty() {
            format!("python (pid {pid})")
        } else {
            format!("{service_name} (pid {pid})")
        };
        let mut head = format!("[\n{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":0,\"args\":{{\"name\":");
        push_str(&mut head, &label);
        head.push_str("}}");
        e.out.write_all(head.as_bytes())?;
        e.offset = head.len() as u64;
        e.out.flush()?;
        Ok(e)
    }

    /// The file being written.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// The track id of `thread_id`, writing a `thread_name` event on first sight (`thread
    /// ID` until a session record tells the Python name) and again when `name` (the Python
    /// thread name, empty when unknown) differs from the one written; viewers keep the last.
    fn track(&mut self, thread_id: u64, name: &str) -> u64 {
        let (tid, written) = match self.tracks.get(&thread_id) {
            Some((tid, written)) if name.is_empty() || name == written => return *tid,
            Some((tid, _)) => (*tid, name.to_string()),
            None if thread_id <= MAX_NATIVE_TID => (thread_id, name.to_string()),
            None => {
                self.next_compact_tid += 1;
                (self.next_compact_tid - 1, name.to_string())
            }
        };
        let label = if written.is_empty() {
            format!("thread {thread_id}")
        } else {
            written.clone()
        };
        let _ = write!(
            self.scratch,
            ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{},\"tid\":{tid},\"args\":{{\"name\":",
            self.pid
        );
        let _ = write_str(&mut self.scratch, &label);
        self.scratch.extend_from_slice(b"}}");
        self.tracks.insert(thread_id, (tid, written));
        tid
    }

    fn cached(
        cache: &mut Vec<Option<String>>,
        func_id: u32,
        render: impl FnOnce() -> String,
    ) -> &str {
        let i = func_id as usize;
        if cache.len() <= i {
            cache.resize(i + 1, None);
        }
        cache[i].get_or_insert_with(render)
    }

    fn render_span(&mut self, s: &SpanRecord, batch: &SpanBatch, ctx: &ExportContext) {
        let tid = self.track(s.thread_id, "");
        let info = ctx.functions.get(s.func_id);
        let name = Self::cached(&mut self.names, s.func_id, || {
            let mut n = String::from("\"name\":");
            match &info {
                Some(f) if f.module.is_empty() => push_str(&mut n, &f.qualname),
                Some(f) => push_str(&mut n, &format!("{}.{}", f.module, f.qualname)),
                None => n.push_str("\"<unknown>\""),
            }
            n.push_str(",\"cat\":\"python\"");
            n
        });
        let w = &mut self.scratch;
        w.extend_from_slice(b",\n{");
        w.extend_from_slice(name.as_bytes());
        w.extend_from_slice(b",\"ph\":\"X\",\"ts\":");
        push_micros(w, s.start_ns);
        w.extend_from_slice(b",\"dur\":");
        push_micros(w, s.duration_ns);
        let _ = write!(w, ",\"pid\":{},\"tid\":{tid},\"args\":{{", self.pid);
        let location = Self::cached(&mut self.locations, s.func_id, || {
            let mut l = String::from("\"module\":");
            match &info {
                Some(f) => {
                    push_str(&mut l, &f.module);
                    l.push_str(",\"file\":");
                    push_str(&mut l, &f.file);
                    l.push_str(&format!(",\"line\":{}", f.line));
                }
                None => l.push_str("\"\",\"file\":\"\",\"line\":0"),
            }
            l
        });
        let w = &mut self.scratch;
        w.extend_from_slice(location.as_bytes());
        let _ = write!(
            w,
            ",\"span_id\":\"{}\",\"trace_id\":\"{:032x}\"",
            span_hex(s.span_id),
            s.trace_id.0
        );
        if s.flags & FLAG_UNFINISHED != 0 {
            w.extend_from_slice(b",\"unfinished\":true");
        }
        push_span_details(w, batch, s);
        w.extend_from_slice(b"}}");
    }

    /// A session: an instant event at its start and a complete event at its end, named
    /// `session TAG`. A served request is only the complete event, named by its tag
    /// (`GET /items/{item_id}`), category `request`, with its status.
    fn render_session(&mut self, s: &SessionRecord) {
        let server = s.kind == SessionKind::Server;
        if server && s.end_ns.is_none() {
            return;
        }
        let tid = self.track(s.thread_id, &s.thread_name);
        let w = &mut self.scratch;
        let tag = if s.tag.is_empty() {
            "session"
        } else {
            s.tag.as_str()
        };
        w.extend_from_slice(b",\n{\"name\":");
        if server {
            let _ = write_str(w, tag);
            w.extend_from_slice(b",\"cat\":\"request\",");
        } else {
            let _ = write_str(w, &format!("session {tag}"));
            w.extend_from_slice(b",\"cat\":\"session\",");
        }
        match s.end_ns {
            Some(end) => {
                w.extend_from_slice(b"\"ph\":\"X\",\"ts\":");
                push_micros(w, s.start_ns);
                w.extend_from_slice(b",\"dur\":");
                push_micros(w, end.saturating_sub(s.start_ns));
            }
            None => {
                w.extend_from_slice(b"\"ph\":\"i\",\"s\":\"t\",\"ts\":");
                push_micros(w, s.start_ns);
            }
        }
        let _ = write!(
            w,
            ",\"pid\":{},\"tid\":{tid},\"args\":{{\"trace_id\":\"{:032x}\",\"span_id\":\"{}\",\"sampled\":{}",
            self.pid,
            s.trace_id.0,
            span_hex(s.span_id),
            s.sampled
        );
        if s.parent_span_id != 0 {
            let _ = write!(w, ",\"parent_span_id\":\"{}\"", span_hex(s.parent_span_id));
        }
        w.extend_from_slice(b",\"attrs\":");
        push_string_map(w, &s.attrs);
        if server {
            let _ = write!(w, ",\"status\":\"{}\"", s.status.as_str());
        }
        if let Some(e) = &s.exception {
            push_exception_info(w, e);
        }
        w.extend_from_slice(b"}}");
    }

    /// An outgoing HTTP request: a complete event named `METHOD host` on the caller's thread.
    fn render_http(&mut self, h: &HttpRecord) {
        let tid = self.track(h.thread_id, "");
        let w = &mut self.scratch;
        w.extend_from_slice(b",\n{\"name\":");
        let _ = write_str(w, &format!("{} {}", h.method, h.host));
        w.extend_from_slice(b",\"cat\":\"http\",\"ph\":\"X\",\"ts\":");
        push_micros(w, h.start_ns);
        w.extend_from_slice(b",\"dur\":");
        push_micros(w, h.duration_ns);
        let _ = write!(
            w,
            ",\"pid\":{},\"tid\":{tid},\"args\":{{\"trace_id\":\"{:032x}\",\"span_id\":\"{}\",\"parent_span_id\":\"{}\",\"library\":",
            self.pid,
            h.trace_id.0,
            span_hex(h.span_id),
            span_hex(h.parent_span_id),
        );
        let _ = write_str(w, &h.library);
        w.extend_from_slice(b",\"url\":");
        let _ = write_str(w, &h.url);
        let _ = write!(
            w,
            ",\"status\":{},\"request_bytes\":{},\"response_bytes\":{}",
            h.status, h.request_bytes, h.response_bytes
        );
        if let Some(e) = &h.exception {
            push_exception_info(w, e);
        }
        for (name, headers) in [
            ("request_headers", &h.request_headers),
            ("response_headers", &h.response_headers),
        ] {
            if !headers.is_empty() {
                let _ = write!(w, ",\"{name}\":");
                push_string_map(w, headers);
            }
        }
        w.extend_from_slice(b"}}");
    }

    /// Hands the rendered events to the writer in one call and clears the scratch buffer,
    /// first padding the file with spaces to the next 4 KiB boundary when the events would
    /// straddle it (and fit after it).
    fn emit(&mut self) -> std::io::Result<()> {
        let len = self.scratch.len() as u64;
        let room = CUT_ALIGN - self.offset % CUT_ALIGN;
        let mut r = Ok(());
        if len > room && len <= CUT_ALIGN {
            const SPACES: [u8; CUT_ALIGN as usize] = [b' '; CUT_ALIGN as usize];
            r = self.out.write_all(&SPACES[..room as usize]);
            self.offset += room;
        }
        let r = r.and_then(|()| self.out.write_all(&self.scratch));
        self.offset += len;
        self.scratch.clear();
        r
    }
}

impl Exporter for ChromeExporter {
    fn name(&self) -> &'static str {
        "chrome"
    }

    fn export_spans(&mut self, spans: &SpanBatch, ctx: &ExportContext) -> Result<u64, ExportError> {
        for s in spans.iter() {
            self.render_span(s, spans, ctx);
            self.emit()?;
        }
        Ok(self.out.take_written())
    }

    /// Held back (rendered) until the next batch or flush: a session start alone does not
    /// open the file while the program starts.
    fn export_session(
        &mut self,
        session: &SessionRecord,
        _ctx: &ExportContext,
    ) -> Result<u64, ExportError> {
        self.render_session(session);
        Ok(0)
    }

    /// Held back like a session record.
    fn export_http(&mut self, h: &HttpRecord, _ctx: &ExportContext) -> Result<u64, ExportError> {
        self.render_http(h);
        Ok(0)
    }

    fn flush(&mut self) -> Result<u64, ExportError> {
        if !self.scratch.is_empty() {
            self.emit()?;
        }
        self.out.flush()?;
        Ok(self.out.take_written())
    }

    /// Before a fork: what is buffered is written and the file closed, so the child does not
    /// inherit its descriptor (it writes a file of its own).
    fn park(&mut self, _deadline: std::time::Instant) {
        let _ = self.out.flush();
    }

    fn shutdown(&mut self, counters: &Snapshot, ctx: &ExportContext) -> Result<u64, ExportError> {
        let w = &mut self.scratch;
        w.extend_from_slice(b",\n{\"name\":\"ferrotrace meta\",\"cat\":\"ferrotrace\",\"ph\":\"i\",\"s\":\"p\",\"ts\":");
        push_micros(w, now_ns());
        let _ = write!(
            w,
            ",\"pid\":{},\"tid\":0,\"args\":{{\"agent_version\":",
            self.pid
        );
        let _ = write_str(w, &ctx.meta.agent_version);
        w.extend_from_slice(b",\"python_version\":");
        let _ = write_str(w, &ctx.meta.python_version);
        w.extend_from_slice(b",\"config_digest\":");
        let _ = write_str(w, &ctx.meta.config_digest);
        w.extend_from_slice(b",\"service_name\":");
        let _ = write_str(w, &ctx.meta.service_name);
        w.extend_from_slice(b",\"diagnostics\":[");
        for (i, d) in ctx.meta.diagnostics.messages().iter().enumerate() {
            if i > 0 {
                w.push(b',');
            }
            let _ = write_str(w, d);
        }
        w.push(b']');
        for (name, value) in counters.fields() {
            let _ = write!(w, ",\"{name}\":");
            let _ = write_u64(w, value);
        }
        w.extend_from_slice(b"}}\n]\n");
        self.emit()?;
        self.out.flush()?;
        Ok(self.out.take_written())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrotrace_core::event::{ExceptionFate, ExceptionInfo, FLAG_EXCEPTION};

    use ferrotrace_core::functions::FunctionInfo;
    use ferrotrace_core::ids::TraceId;
    use serde_json::Value;
    use std::os::unix::fs::PermissionsExt;

    fn setup(name: &str) -> (PathBuf, ExportContext, u32) {
        let dir = std::env::temp_dir().join(format!("ft-chrome-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ctx, f) = crate::testsupport::context_with(
            42,
            FunctionInfo {
                module: "app".into(),
                qualname: "C.run".into(),
                file: "/app.py".into(),
                line: 3,
            },
        );
        (dir, ctx, f)
    }

    fn write_trace(e: &mut ChromeExporter, ctx: &ExportContext, f: u32) {
        let session = SessionRecord {
            trace_id: TraceId(9),
            span_id: 100,
            tag: "job".into(),
            thread_id: 7,
            thread_name: "MainThread".into(),
            start_ns: 1_000,
            ..Default::default()
        };
        e.export_session(&session, ctx).unwrap();
        let mut spans = SpanBatch::default();
        let args = spans.add_text("{\"x\":1}");
        spans.spans = [(7u64, 0u32), (8, 0), (u64::MAX - 1, FLAG_EXCEPTION)]
            .iter()
            .enumerate()
            .map(|(i, &(thread_id, flags))| SpanRecord {
                trace_id: TraceId(9),
                span_id: 200 + i as u64,
                parent_span_id: 100,
                start_ns: 1_500,
                duration_ns: 2_250,
                thread_id,
                func_id: f,
                flags,
                args: if flags != 0 { args } else { Default::default() },
                exception: (flags != 0).then(|| {
                    Box::new(ExceptionInfo {
                        type_name: "ValueError".into(),
                        message: "bad \"x\"".into(),
                        fate: ExceptionFate::CaughtBy(100),
                    })
                }),
                ..Default::default()
            })
            .collect();
        e.export_spans(&spans, ctx).unwrap();
        e.export_session(
            &SessionRecord {
                end_ns: Some(9_000),
                ..session
            },
            ctx,
        )
        .unwrap();
    }

    fn events(v: &Value) -> &Vec<Value> {
        v.as_array().unwrap()
    }

    #[test]
    fn clean_shutdown_writes_a_closed_array() {
        let (dir, ctx, f) = setup("clean");
        let mut e =
            ChromeExporter::create(dir.join("t-{pid}.json").to_str().unwrap(), 42, "svc").unwrap();
        write_trace(&mut e, &ctx, f);
        e.shutdown(
            &Snapshot {
                recorded: 3,
                exported: 3,
                ..Default::default()
            },
            &ctx,
        )
        .unwrap();
        let path = dir.join("t-42.json");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let evs = events(&v);
        assert_eq!(evs[0]["name"], "process_name");
        assert_eq!(evs[0]["args"]["name"], "svc (pid 42)");
        let threads: Vec<(u64, &str)> = evs
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| {
                (
                    e["tid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            threads,
            [
                (7, "MainThread"),
                (8, "thread 8"),
                (FIRST_COMPACT_TID, "thread 18446744073709551614")
            ]
        );
        let calls: Vec<&Value> = evs
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == "python")
            .collect();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0]["name"], "app.C.run");
        assert_eq!(calls[0]["ts"].as_f64().unwrap(), 1.5);
        assert_eq!(calls[0]["dur"].as_f64().unwrap(), 2.25);
        assert_eq!(calls[0]["tid"], 7);
        assert_eq!(calls[1]["tid"], 8);
        assert_eq!(calls[2]["tid"].as_u64().unwrap(), FIRST_COMPACT_TID);
        assert_eq!(calls[0]["args"]["line"], 3);
        assert_eq!(calls[2]["args"]["exception"]["message"], "bad \"x\"");
        assert_eq!(
            calls[2]["args"]["exception"]["caught_by"],
            "0000000000000064"
        );
        assert_eq!(calls[2]["args"]["args"]["x"], 1);
        let sessions: Vec<&Value> = evs.iter().filter(|e| e["cat"] == "session").collect();
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[0]["ph"], "i");
        assert_eq!(sessions[1]["ph"], "X");
        assert_eq!(sessions[1]["dur"].as_f64().unwrap(), 8.0);
        let meta = evs.last().unwrap();
        assert_eq!(meta["name"], "ferrotrace meta");
        assert_eq!(meta["args"]["recorded"], 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_served_request_is_one_slice_named_by_its_route() {
        let (dir, ctx, _) = setup("request");
        let mut e = ChromeExporter::create(dir.join("r.json").to_str().unwrap(), 42, "").unwrap();
        let request = SessionRecord {
            trace_id: TraceId(9),
            span_id: 100,
            tag: "GET".into(),
            thread_id: 7,
            start_ns: 1_000,
            kind: SessionKind::Server,
            ..Default::default()
        };
        e.export_session(&request, &ctx).unwrap();
        e.export_session(
            &SessionRecord {
                tag: "GET /items/{id}".into(),
                end_ns: Some(3_000),
                status: ferrotrace_core::event::SessionStatus::Error,
                ..request
            },
            &ctx,
        )
        .unwrap();
        e.shutdown(&Snapshot::default(), &ctx).unwrap();
        let text = std::fs::read_to_string(dir.join("r.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let requests: Vec<&Value> = events(&v)
            .iter()
            .filter(|e| e["cat"] == "request")
            .collect();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0]["name"], "GET /items/{id}");
        assert_eq!(requests[0]["ph"], "X");
        assert_eq!(requests[0]["tid"], 7);
        assert_eq!(requests[0]["args"]["status"], "error");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_event_straddles_a_page_boundary() {
        let (dir, ctx, f) = setup("aligned");
        let mut e = ChromeExporter::create(dir.join("t.json").to_str().unwrap(), 42, "").unwrap();
        for _ in 0..50 {
            write_trace(&mut e, &ctx, f);
        }
        e.flush().unwrap();
        let text = std::fs::read(dir.join("t.json")).unwrap();
        assert!(text.len() > 3 * CUT_ALIGN as usize);
        for cut in (CUT_ALIGN as usize..text.len()).step_by(CUT_ALIGN as usize) {
            let mut prefix = text[..cut].to_vec();
            prefix.push(b']');
            let v: Value = serde_json::from_slice(&prefix).unwrap_or_else(|e| panic!("{cut}: {e}"));
            assert!(events(&v).len() > 1);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn killed_process_leaves_a_loadable_prefix() {
        let (dir, ctx, f) = setup("killed");
        let mut e = ChromeExporter::create(dir.join("t.json").to_str().unwrap(), 42, "").unwrap();
        write_trace(&mut e, &ctx, f);
        e.flush().unwrap();
        std::mem::forget(e);
        let text = std::fs::read_to_string(dir.join("t.json")).unwrap();
        assert!(text.ends_with('}'), "no trailing comma");
        let closed = format!("{text}]");
        let v: Value = serde_json::from_str(&closed).unwrap();
        assert_eq!(events(&v).iter().filter(|e| e["ph"] == "X").count(), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
