//! The `otlp` exporter: OTLP/HTTP to `{endpoint}/v1/traces`, protobuf (default) or JSON,
//! optionally gzip-compressed, delivered by its own sender thread (see [`crate::delivery`]).

pub mod encode;

use crate::delivery::{gzip, Delivery, Endpoint};
use crate::network::NetworkOptions;
use crate::spool::Payload;
use encode::Encoder;
use ferrotrace_core::config::{Compression, Config, OtlpProtocol};
use ferrotrace_core::event::{HttpRecord, SessionRecord, SpanBatch};
use ferrotrace_core::exporter::{ExportContext, ExportError, Exporter};
use ferrotrace_core::metrics::Snapshot;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::time::{Duration, Instant};

/// Spans per OTLP request at most.
pub const MAX_SPANS_PER_REQUEST: usize = 2048;

/// Converts records to OTLP spans and hands full requests to its sender thread.
pub struct OtlpExporter {
    encoder: Encoder,
    pending: Vec<Span>,
    pending_since: Option<Instant>,
    protocol: OtlpProtocol,
    compression: Compression,
    max_age: Duration,
    delivery: Delivery,
}

/// Reads `partial_success.rejected_spans` from an OTLP response body (0 when absent).
pub fn rejected_spans(body: &[u8], content_type: &str) -> u64 {
    if body.is_empty() {
        return 0;
    }
    if content_type.contains("json") {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let n = &v["partialSuccess"]["rejectedSpans"];
        n.as_u64()
            .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    } else {
        ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans.max(0) as u64)
    }
}

/// Fields holding a value of an `AnyValue`: kept even when empty, zero or false.
const VALUE_FIELDS: &[&str] = &[
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "bytesValue",
];

/// Removes fields with default values (empty, zero, false), as proto3 JSON does, so that
/// receivers built on older protos do not meet fields they do not know (`entityRefs`).
fn strip_defaults(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|k, v| {
                VALUE_FIELDS.contains(&k.as_str())
                    || !(v.as_array().is_some_and(Vec::is_empty)
                        || v.as_str() == Some("")
                        || v.as_u64() == Some(0)
                        || v.as_bool() == Some(false)
                        || v.is_null())
            });
            map.values_mut().for_each(strip_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

/// The OTLP JSON encoding of `request`: hex ids, camelCase names, enums as integers.
pub fn json_body(request: &ExportTraceServiceRequest) -> Vec<u8> {
    let mut v = serde_json::to_value(request).unwrap_or_default();
    strip_defaults(&mut v);
    serde_json::to_vec(&v).unwrap_or_default()
}

impl OtlpExporter {
    /// Starts the exporter for process `pid` and its sender thread.
    pub fn new(config: &Config, pid: u32, net: &NetworkOptions) -> std::io::Result<OtlpExporter> {
        let endpoint = Endpoint {
            url: config.otlp_endpoint.clone(),
            headers: config.otlp_headers.clone(),
            timeout: Duration::from_millis(config.otlp_timeout_ms),
        };
        let delivery = net.start_delivery("otlp", endpoint, rejected_spans)?;
        Ok(OtlpExporter {
            encoder: Encoder::new(encode::resource(
                &config.service_name,
                &config.resource_attributes,
                pid,
            )),
            pending: Vec::new(),
            pending_since: None,
            protocol: config.otlp_protocol,
            compression: config.otlp_compression,
            max_age: net.max_age,
            delivery,
        })
    }

    /// Encodes spans as one request body in the configured protocol and compression.
    pub fn payload(&self, spans: Vec<Span>) -> Payload {
        let n = spans.len() as u64;
        let request = self.encoder.request(spans);
        let (body, content_type) = match self.protocol {
            OtlpProtocol::Protobuf => (request.encode_to_vec(), "application/x-protobuf"),
            OtlpProtocol::Json => (json_body(&request), "application/json"),
        };
        let gzipped = self.compression == Compression::Gzip;
        Payload {
            body: if gzipped { gzip(&body) } else { body },
            content_type: content_type.into(),
            gzip: gzipped,
            spans: n,
        }
    }

    fn push(&mut self, span: Span) {
        self.pending_since.get_or_insert_with(Instant::now);
        self.pending.push(span);
        if self.pending.len() >= MAX_SPANS_PER_REQUEST {
            self.send_pending();
        }
    }

    fn send_pending(&mut self) {
        self.pending_since = None;
        if !self.pending.is_empty() {
            let spans = std::mem::take(&mut self.pending);
            let p = self.payload(spans);
            self.delivery.enqueue(p);
        }
    }

    fn send_if_old(&mut self) {
        if self
            .pending_since
            .is_some_and(|t| t.elapsed() >= self.max_age)
        {
            self.send_pending();
        }
    }
}

impl Exporter for OtlpExporter {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn delivers_remotely(&self) -> bool {
        true
    }

    fn park(&mut self, deadline: std::time::Instant) {
        self.delivery.park(deadline);
    }

    fn resume(&mut self) {
        self.delivery.resume();
    }

    fn export_spans(&mut self, spans: &SpanBatch, ctx: &ExportContext) -> Result<u64, ExportError> {
        for s in spans.iter() {
            let span = self.encoder.span(s, spans, &ctx.functions);
            self.push(span);
        }
        self.send_if_old();
        Ok(0)
    }

    fn export_session(
        &mut self,
        session: &SessionRecord,
        _ctx: &ExportContext,
    ) -> Result<u64, ExportError> {
        if session.end_ns.is_some() {
            let span = self.encoder.session(session);
            self.push(span);
        }
        self.send_if_old();
        Ok(0)
    }

    fn export_http(&mut self, h: &HttpRecord, _ctx: &ExportContext) -> Result<u64, ExportError> {
        let span = self.encoder.http(h);
        self.push(span);
        self.send_if_old();
        Ok(0)
    }

    fn flush(&mut self) -> Result<u64, ExportError> {
        self.send_pending();
        Ok(0)
    }

    fn shutdown(&mut self, _counters: &Snapshot, ctx: &ExportContext) -> Result<u64, ExportError> {
        self.send_pending();
        self.delivery.shutdown(ctx.shutdown_deadline);
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{Reply, TestServer};
    use ferrotrace_core::event::{ExceptionInfo, SpanRecord, FLAG_EXCEPTION};

    use ferrotrace_core::functions::FunctionInfo;
    use ferrotrace_core::ids::TraceId;
    use ferrotrace_core::metrics::Counters;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use std::io::Read;
    use std::sync::Arc;

    const TRACE: TraceId = TraceId(0x0af7651916cd43dd8448eb211c80319c);

    fn run(protocol: OtlpProtocol, compression: Compression, server: &TestServer) -> Arc<Counters> {
        let mut config = Config::defaults();
        config.otlp_endpoint = server.url("/v1/traces");
        config.otlp_protocol = protocol;
        config.otlp_compression = compression;
        config.service_name = "checkout".into();
        config.resource_attributes = vec![("deployment.environment".into(), "test".into())];
        config.spool_max_mb = 0;
        let counters = Arc::new(Counters::default());
        let net = NetworkOptions::from_config(&config, Arc::clone(&counters));
        let mut e = OtlpExporter::new(&config, 7, &net).unwrap();
        let (ctx, f) = crate::testsupport::context_with(
            7,
            FunctionInfo {
                module: "shop.cart".into(),
                qualname: "Cart.total".into(),
                file: "/app/shop/cart.py".into(),
                line: 12,
            },
        );
        let session = SessionRecord {
            trace_id: TRACE,
            span_id: 0x10,
            parent_span_id: 0xb7ad6b7169203331,
            remote_parent: true,
            tag: "checkout".into(),
            attrs: vec![("tier".into(), "gold".into())],
            sampled: true,
            thread_id: 1,
            start_ns: 1_000,
            ..Default::default()
        };
        e.export_session(&session, &ctx).unwrap();
        let mut spans = SpanBatch::default();
        let args = spans.add_text("{\"n\":3}");
        spans.spans = vec![
            SpanRecord {
                trace_id: TRACE,
                span_id: 0x20,
                parent_span_id: 0x10,
                start_ns: 2_000,
                duration_ns: 500,
                thread_id: 1,
                func_id: f,
                ..Default::default()
            },
            SpanRecord {
                trace_id: TRACE,
                span_id: 0x21,
                parent_span_id: 0x20,
                start_ns: 2_100,
                duration_ns: 100,
                thread_id: 1,
                func_id: f,
                flags: FLAG_EXCEPTION,
                args,
                exception: Some(Box::new(ExceptionInfo {
                    type_name: "ValueError".into(),
                    message: "empty cart".into(),
                    ..Default::default()
                })),
                ..Default::default()
            },
        ];
        e.export_spans(&spans, &ctx).unwrap();
        e.export_session(
            &SessionRecord {
                end_ns: Some(5_000),
                ..session
            },
            &ctx,
        )
        .unwrap();
        e.shutdown(&Snapshot::default(), &ctx).unwrap();
        counters
    }

    fn attr<'a>(span: &'a Span, key: &str) -> &'a Value {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn protobuf_payload_decodes_into_the_expected_spans() {
        let server = TestServer::start(vec![]);
        let counters = run(OtlpProtocol::Protobuf, Compression::Gzip, &server);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/v1/traces");
        assert_eq!(
            reqs[0].header("content-type"),
            Some("application/x-protobuf")
        );
        assert_eq!(reqs[0].header("content-encoding"), Some("gzip"));
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(&reqs[0].body[..])
            .read_to_end(&mut body)
            .unwrap();
        let req = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        let rs = &req.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        let res = |k: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone()?.value)
        };
        assert_eq!(
            res("service.name"),
            Some(Value::StringValue("checkout".into()))
        );
        assert_eq!(
            res("deployment.environment"),
            Some(Value::StringValue("test".into()))
        );
        assert_eq!(
            res("telemetry.sdk.name"),
            Some(Value::StringValue("ferrotrace".into()))
        );
        let spans = &rs.scope_spans[0].spans;
        assert_eq!(spans.len(), 3);
        let (call, failed, session) = (&spans[0], &spans[1], &spans[2]);
        for s in spans {
            assert_eq!(s.trace_id, TRACE.to_bytes().to_vec());
            assert_eq!(s.kind, SpanKind::Internal as i32);
        }
        assert_eq!(session.name, "checkout");
        assert_eq!(session.span_id, 0x10u64.to_be_bytes().to_vec());
        assert_eq!(
            session.parent_span_id,
            0xb7ad6b7169203331u64.to_be_bytes().to_vec()
        );
        assert_eq!(session.flags & 0x300, 0x300, "remote parent flagged");
        assert_eq!(attr(session, "tier"), &Value::StringValue("gold".into()));
        assert_eq!(
            session.end_time_unix_nano - session.start_time_unix_nano,
            4_000
        );
        assert_eq!(call.name, "shop.cart.Cart.total");
        assert_eq!(call.parent_span_id, session.span_id);
        assert_eq!(
            attr(call, "code.function.name"),
            &Value::StringValue("Cart.total".into())
        );
        assert_eq!(
            attr(call, "code.namespace"),
            &Value::StringValue("shop.cart".into())
        );
        assert_eq!(
            attr(call, "code.file.path"),
            &Value::StringValue("/app/shop/cart.py".into())
        );
        assert_eq!(attr(call, "code.line.number"), &Value::IntValue(12));
        assert_eq!(attr(call, "thread.id"), &Value::IntValue(1));
        assert_eq!(call.end_time_unix_nano - call.start_time_unix_nano, 500);
        assert!(call.status.is_none());
        assert_eq!(failed.parent_span_id, call.span_id);
        assert_eq!(
            attr(failed, "ferrotrace.args"),
            &Value::StringValue("{\"n\":3}".into())
        );
        assert_eq!(
            failed.status.as_ref().unwrap().code,
            StatusCode::Error as i32
        );
        let ev = &failed.events[0];
        assert_eq!(ev.name, "exception");
        let ev_attr = |k: &str| {
            ev.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone()?.value)
        };
        assert_eq!(
            ev_attr("exception.type"),
            Some(Value::StringValue("ValueError".into()))
        );
        assert_eq!(
            ev_attr("exception.message"),
            Some(Value::StringValue("empty cart".into()))
        );
        assert_eq!(counters.snapshot().network_delivered, 3);
    }

    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

    #[test]
    fn json_payload_uses_hex_ids_camel_case_and_integer_enums() {
        let server = TestServer::start(vec![]);
        run(OtlpProtocol::Json, Compression::None, &server);
        let reqs = server.requests();
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        assert!(reqs[0].header("content-encoding").is_none());
        let v: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
        let spans = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans[0]["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(spans[0]["parentSpanId"], "0000000000000010");
        assert_eq!(spans[0]["kind"], 1);
        assert_eq!(spans[0]["startTimeUnixNano"].as_str().unwrap().len(), 19);
        assert_eq!(spans[1]["status"]["code"], 2);
        assert_eq!(spans[1]["events"][0]["name"], "exception");
        assert!(spans[2].get("parentSpanId").is_some());
        assert!(
            v["resourceSpans"][0]["resource"]
                .get("entityRefs")
                .is_none(),
            "empty fields are left out"
        );
        let line = spans[0]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "code.line.number")
            .unwrap();
        assert_eq!(line["value"]["intValue"], "12");
    }

    #[test]
    fn partial_success_is_counted() {
        let response = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "too old".into(),
            }),
        };
        let server = TestServer::start(vec![Reply::Status(
            200,
            vec![("Content-Type", "application/x-protobuf".into())],
            response.encode_to_vec(),
        )]);
        let counters = run(OtlpProtocol::Protobuf, Compression::None, &server);
        assert_eq!(counters.snapshot().partial_success_rejected, 2);
        assert_eq!(
            rejected_spans(
                br#"{"partialSuccess":{"rejectedSpans":"5"}}"#,
                "application/json"
            ),
            5
        );
        assert_eq!(rejected_spans(b"{}", "application/json"), 0);
    }
}
