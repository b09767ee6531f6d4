//! The OTLP mapping: ferrotrace records to `opentelemetry-proto` messages.
//!
//! A session is a span named after its tag (INTERNAL, or SERVER for a served request; parent
//! = the enclosing session or the remote caller); a call is an INTERNAL span named `module.qualname` with OpenTelemetry's
//! `code.*` attributes; an exception is an `exception` span event and an ERROR status.

use ferrotrace_core::clock::to_unix_ns;
use ferrotrace_core::event::{
    ExceptionFate, ExceptionInfo, HttpRecord, SessionKind, SessionRecord, SessionStatus, SpanBatch,
    SpanRecord, FLAG_EXCEPTION, FLAG_UNFINISHED,
};
use ferrotrace_core::functions::FunctionTable;
use ferrotrace_core::server::INT_ATTRIBUTES;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// W3C "sampled" trace flag.
const FLAG_SAMPLED: u32 = 0x01;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`: whether the parent is remote is known.
const HAS_IS_REMOTE: u32 = 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`: the parent is remote.
const IS_REMOTE: u32 = 0x200;

/// A string attribute.
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        key_strindex: 0,
    }
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        key_strindex: 0,
    }
}

fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(value)),
        }),
        key_strindex: 0,
    }
}

/// The OTLP resource: `service.name` (the configured name, else a `service.name` resource
/// attribute, else `unknown_service:python`), the resource attributes, and the SDK facts.
pub fn resource(service_name: &str, attributes: &[(String, String)], pid: u32) -> Resource {
    let from_attrs = attributes
        .iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v.as_str());
    let service = Some(service_name)
        .filter(|s| !s.is_empty())
        .or(from_attrs)
        .unwrap_or("unknown_service:python");
    let mut attrs = vec![kv_str("service.name", service)];
    let fixed = [
        "service.name",
        "telemetry.sdk.name",
        "telemetry.sdk.language",
        "telemetry.sdk.version",
        "process.pid",
    ];
    attrs.extend(
        attributes
            .iter()
            .filter(|(k, _)| !fixed.contains(&k.as_str()))
            .map(|(k, v)| kv_str(k, v)),
    );
    attrs.push(kv_str("telemetry.sdk.name", "ferrotrace"));
    attrs.push(kv_str("telemetry.sdk.language", "python"));
    attrs.push(kv_str("telemetry.sdk.version", env!("CARGO_PKG_VERSION")));
    attrs.push(kv_int("process.pid", i64::from(pid)));
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

/// Converts records to OTLP spans, caching each function's name and code attributes.
pub struct Encoder {
    resource: Resource,
    scope: InstrumentationScope,
    /// Per function id: span name and `code.*` attributes.
    functions: Vec<Option<(String, Vec<KeyValue>)>>,
}

impl Encoder {
    /// An encoder for spans of this resource.
    pub fn new(resource: Resource) -> Encoder {
        let scope = InstrumentationScope {
            name: "ferrotrace".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        Encoder {
            resource,
            scope,
            functions: Vec::new(),
        }
    }

    fn function(&mut self, func_id: u32, table: &FunctionTable) -> &(String, Vec<KeyValue>) {
        let i = func_id as usize;
        if self.functions.len() <= i {
            self.functions.resize(i + 1, None);
        }
        self.functions[i].get_or_insert_with(|| match table.get(func_id) {
            Some(f) => {
                let name = if f.module.is_empty() {
                    f.qualname.clone()
                } else {
                    format!("{}.{}", f.module, f.qualname)
                };
                let attrs = vec![
                    kv_str("code.function.name", &f.qualname),
                    kv_str("code.namespace", &f.module),
                    kv_str("code.file.path", &f.file),
                    kv_int("code.line.number", i64::from(f.line)),
                ];
                (name, attrs)
            }
            None => ("<unknown>".to_string(), Vec::new()),
        })
    }

    /// Converts one call record.
    pub fn span(&mut self, s: &SpanRecord, batch: &SpanBatch, table: &FunctionTable) -> Span {
        let (name, code) = self.function(s.func_id, table);
        let mut attributes = Vec::with_capacity(code.len() + 4);
        attributes.extend_from_slice(code);
        let name = name.clone();
        attributes.push(kv_int("thread.id", s.thread_id as i64));
        if s.task_id != 0 {
            attributes.push(kv_int("ferrotrace.task_id", s.task_id as i64));
        }
        if s.flags & FLAG_UNFINISHED != 0 {
            attributes.push(kv_bool("ferrotrace.unfinished", true));
        }
        let start = to_unix_ns(s.start_ns);
        let end = start.saturating_add(s.duration_ns);
        let mut events = Vec::new();
        let mut status = None;
        if let Some(a) = batch.args(s) {
            attributes.push(kv_str("ferrotrace.args", a));
        }
        if let Some(r) = batch.return_value(s) {
            attributes.push(kv_str("ferrotrace.return", r));
        }
        if let Some(e) = &s.exception {
            events.push(exception_event(end, e));
            let message = if e.message.is_empty() {
                e.type_name.clone()
            } else {
                format!("{}: {}", e.type_name, e.message)
            };
            status = Some(Status {
                message,
                code: StatusCode::Error as i32,
            });
        }
        if status.is_none() && s.flags & FLAG_EXCEPTION != 0 {
            status = Some(Status {
                message: String::new(),
                code: StatusCode::Error as i32,
            });
        }
        Span {
            trace_id: s.trace_id.to_bytes().to_vec(),
            span_id: s.span_id.to_be_bytes().to_vec(),
            parent_span_id: parent(s.parent_span_id),
            flags: FLAG_SAMPLED | HAS_IS_REMOTE,
            name,
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            events,
            status,
            ..Default::default()
        }
    }

    /// Converts an ended session (its root span). A served request is a SERVER span whose
    /// `server.port` and `http.response.status_code` are integers; a request that failed
    /// (a 5xx status or an escaping exception) has `error.type`, an ERROR status and, for
    /// an exception, an `exception` event.
    pub fn session(&self, s: &SessionRecord) -> Span {
        let server = s.kind == SessionKind::Server;
        let mut attributes: Vec<KeyValue> = s
            .attrs
            .iter()
            .map(|(k, v)| match v.parse::<i64>() {
                Ok(n) if server && INT_ATTRIBUTES.contains(&k.as_str()) => kv_int(k, n),
                _ => kv_str(k, v),
            })
            .collect();
        attributes.push(kv_int("thread.id", s.thread_id as i64));
        attributes.push(kv_str("ferrotrace.session", &s.tag));
        let start = to_unix_ns(s.start_ns);
        let end = to_unix_ns(s.end_ns.unwrap_or(s.start_ns));
        let remote = if s.remote_parent { IS_REMOTE } else { 0 };
        let mut events = Vec::new();
        let mut status = None;
        if s.status == SessionStatus::Error {
            let error_type = match &s.exception {
                Some(e) => {
                    events.push(exception_event(end, e));
                    e.type_name.clone()
                }
                None => s
                    .attrs
                    .iter()
                    .find(|(k, _)| k == "http.response.status_code")
                    .map_or_else(|| "_OTHER".to_string(), |(_, v)| v.clone()),
            };
            attributes.push(kv_str("error.type", &error_type));
            status = Some(Status {
                message: String::new(),
                code: StatusCode::Error as i32,
            });
        } else if let Some(e) = &s.exception {
            events.push(exception_event(end, e));
        }
        Span {
            trace_id: s.trace_id.to_bytes().to_vec(),
            span_id: s.span_id.to_be_bytes().to_vec(),
            parent_span_id: parent(s.parent_span_id),
            flags: (u32::from(s.sampled) * FLAG_SAMPLED) | HAS_IS_REMOTE | remote,
            name: if s.tag.is_empty() {
                "session".into()
            } else {
                s.tag.clone()
            },
            kind: if server {
                SpanKind::Server as i32
            } else {
                SpanKind::Internal as i32
            },
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            events,
            status,
            ..Default::default()
        }
    }

    /// Converts an outgoing HTTP request: a CLIENT span named after its method, with
    /// OpenTelemetry's HTTP client attributes; a failed request (an exception, or a status
    /// of 400 or more) has `error.type` and an ERROR status.
    pub fn http(&self, h: &HttpRecord) -> Span {
        let mut attributes = vec![
            kv_str("http.request.method", &h.method),
            kv_str("url.full", &h.url),
        ];
        if !h.host.is_empty() {
            attributes.push(kv_str("server.address", &h.host));
        }
        if h.port != 0 {
            attributes.push(kv_int("server.port", i64::from(h.port)));
        }
        if h.status != 0 {
            attributes.push(kv_int("http.response.status_code", i64::from(h.status)));
        }
        if h.resend_count > 0 {
            attributes.push(kv_int(
                "http.request.resend_count",
                i64::from(h.resend_count),
            ));
        }
        attributes.push(kv_str("ferrotrace.library", &h.library));
        attributes.push(kv_int("thread.id", h.thread_id as i64));
        if h.task_id != 0 {
            attributes.push(kv_int("ferrotrace.task_id", h.task_id as i64));
        }
        if h.request_bytes > 0 {
            attributes.push(kv_int("http.request.body.size", h.request_bytes as i64));
        }
        attributes.push(kv_int("http.response.body.size", h.response_bytes as i64));
        for (prefix, headers) in [
            ("http.request.header.", &h.request_headers),
            ("http.response.header.", &h.response_headers),
        ] {
            attributes.extend(
                headers
                    .iter()
                    .map(|(k, v)| kv_str(&format!("{prefix}{k}"), v)),
            );
        }
        for (key, body) in [
            ("ferrotrace.http.request.body", &h.request_body),
            ("ferrotrace.http.response.body", &h.response_body),
        ] {
            if let Some(body) = body {
                attributes.push(kv_str(key, body));
            }
        }
        let start = to_unix_ns(h.start_ns);
        let end = start.saturating_add(h.duration_ns);
        let mut events = Vec::new();
        let error_type = match &h.exception {
            Some(e) => {
                events.push(exception_event(end, e));
                Some(e.type_name.clone())
            }
            None if h.status >= 400 => Some(h.status.to_string()),
            None => None,
        };
        let status = error_type.map(|t| {
            attributes.push(kv_str("error.type", &t));
            Status {
                message: String::new(),
                code: StatusCode::Error as i32,
            }
        });
        Span {
            trace_id: h.trace_id.to_bytes().to_vec(),
            span_id: h.span_id.to_be_bytes().to_vec(),
            parent_span_id: parent(h.parent_span_id),
            flags: FLAG_SAMPLED | HAS_IS_REMOTE,
            name: h.method.clone(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            events,
            status,
            ..Default::default()
        }
    }

    /// Wraps spans in a request with this encoder's resource and scope.
    pub fn request(&self, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// The `exception` span event of an exception seen at `time`.
/// The `exception` span event of OpenTelemetry's semantic conventions: `exception.type`,
/// `exception.message` and, when known, `exception.escaped` (with
/// `ferrotrace.exception.caught_by`, the catching span's id in hex, when it was caught).
fn exception_event(time: u64, e: &ExceptionInfo) -> Event {
    let mut attributes = vec![
        kv_str("exception.type", &e.type_name),
        kv_str("exception.message", &e.message),
    ];
    match e.fate {
        ExceptionFate::Unknown => {}
        ExceptionFate::CaughtBy(id) => {
            attributes.push(kv_bool("exception.escaped", false));
            attributes.push(kv_str(
                "ferrotrace.exception.caught_by",
                &format!("{id:016x}"),
            ));
        }
        ExceptionFate::Escaped => attributes.push(kv_bool("exception.escaped", true)),
    }
    Event {
        time_unix_nano: time,
        name: "exception".into(),
        attributes,
        dropped_attributes_count: 0,
    }
}

fn parent(id: u64) -> Vec<u8> {
    if id == 0 {
        Vec::new()
    } else {
        id.to_be_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_is_a_client_span_with_the_semantic_attributes() {
        let encoder = Encoder::new(resource("svc", &[], 1));
        let mut h = HttpRecord {
            span_id: 2,
            parent_span_id: 1,
            method: "GET".into(),
            url: "http://h:8/x".into(),
            host: "h".into(),
            port: 8,
            status: 503,
            ..Default::default()
        };
        let span = encoder.http(&h);
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.name, "GET");
        let attr = |span: &Span, k: &str| {
            span.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(
            attr(&span, "server.port"),
            Some(any_value::Value::IntValue(8))
        );
        assert_eq!(
            attr(&span, "error.type"),
            Some(any_value::Value::StringValue("503".into()))
        );
        assert_eq!(attr(&span, "ferrotrace.http.request.body"), None);
        h.status = 0;
        h.response_body = Some("ok".into());
        h.exception = Some(ExceptionInfo {
            type_name: "ConnectionError".into(),
            message: "refused".into(),
            ..Default::default()
        });
        let span = encoder.http(&h);
        assert_eq!(attr(&span, "http.response.status_code"), None);
        assert_eq!(
            attr(&span, "ferrotrace.http.response.body"),
            Some(any_value::Value::StringValue("ok".into()))
        );
        assert_eq!(
            attr(&span, "error.type"),
            Some(any_value::Value::StringValue("ConnectionError".into()))
        );
        assert_eq!(span.status.unwrap().code, StatusCode::Error as i32);
    }

    #[test]
    fn a_served_request_is_a_server_span_with_typed_attributes() {
        let encoder = Encoder::new(resource("svc", &[], 1));
        let mut s = SessionRecord {
            tag: "GET /items/{id}".into(),
            kind: SessionKind::Server,
            status: SessionStatus::Error,
            attrs: vec![
                ("http.route".into(), "/items/{id}".into()),
                ("http.response.status_code".into(), "503".into()),
                ("server.port".into(), "8000".into()),
            ],
            end_ns: Some(5),
            ..Default::default()
        };
        let value = |span: &Span, k: &str| {
            span.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        let span = encoder.session(&s);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.name, "GET /items/{id}");
        assert_eq!(
            value(&span, "http.response.status_code"),
            Some(any_value::Value::IntValue(503))
        );
        assert_eq!(
            value(&span, "server.port"),
            Some(any_value::Value::IntValue(8000))
        );
        assert_eq!(
            value(&span, "error.type"),
            Some(any_value::Value::StringValue("503".into()))
        );
        assert!(span.events.is_empty());
        s.exception = Some(ExceptionInfo {
            type_name: "KeyError".into(),
            message: "'x'".into(),
            ..Default::default()
        });
        let span = encoder.session(&s);
        assert_eq!(
            value(&span, "error.type"),
            Some(any_value::Value::StringValue("KeyError".into()))
        );
        assert_eq!(span.events[0].name, "exception");
        assert_eq!(span.status.unwrap().code, StatusCode::Error as i32);
        s.kind = SessionKind::Internal;
        s.status = SessionStatus::Unset;
        let span = encoder.session(&s);
        assert_eq!(span.kind, SpanKind::Internal as i32);
        assert!(span.status.is_none());
    }

    #[test]
    fn an_exception_of_unknown_type_is_an_error_without_an_empty_event() {
        let mut encoder = Encoder::new(resource("svc", &[], 1));
        let record = SpanRecord {
            flags: FLAG_EXCEPTION,
            ..Default::default()
        };
        let span = encoder.span(&record, &SpanBatch::default(), &FunctionTable::default());
        assert!(span.events.is_empty());
        assert_eq!(span.status.unwrap().code, StatusCode::Error as i32);
    }
}
