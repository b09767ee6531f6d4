//! The `http` exporter: the `jsonl` exporter's lines, batched, gzip-compressed and POSTed
//! to `FERROTRACE_HTTP_ENDPOINT` with `FERROTRACE_API_KEY` as a bearer token, delivered by
//! its own sender thread with the same retries and spool as `otlp`.
//!
//! The configuration refuses a key over plain http to a non-loopback host unless
//! `FERROTRACE_ALLOW_INSECURE=1` (see [`ferrotrace_core::config`]); where that refusal is
//! only a warning (`ferrotrace.auto`), the exporter still never sends the key there.

use crate::delivery::{gzip, Delivery, Endpoint};
use crate::jsonl::JsonlRenderer;
use crate::network::NetworkOptions;
use crate::spool::Payload;
use ferrotrace_core::config::{is_loopback_host, parse_http_url, Config};
use ferrotrace_core::event::{HttpRecord, SessionRecord, SpanBatch};
use ferrotrace_core::exporter::{ExportContext, ExportError, Exporter};
use ferrotrace_core::metrics::Snapshot;
use std::time::{Duration, Instant};

/// Lines per request at most.
pub const MAX_LINES_PER_REQUEST: u64 = 4096;
/// Uncompressed bytes per request at most (one more line may exceed it).
pub const MAX_BYTES_PER_REQUEST: usize = 4 << 20;

/// Batches JSON lines and hands them to its sender thread.
pub struct HttpExporter {
    renderer: JsonlRenderer,
    body: Vec<u8>,
    /// Span lines in `body` (session and meta lines are not counted as spans).
    spans: u64,
    lines: u64,
    since: Option<Instant>,
    max_age: Duration,
    delivery: Delivery,
}

/// The ingest API has no partial success: a 2xx accepts everything.
fn nothing_rejected(_body: &[u8], _content_type: &str) -> u64 {
    0
}

/// The API key may go to the endpoint: over https, to this machine, or explicitly allowed.
pub fn key_allowed(config: &Config) -> bool {
    config.allow_insecure
        || parse_http_url(&config.http_endpoint)
            .is_some_and(|u| u.scheme == "https" || is_loopback_host(&u.host))
}

impl HttpExporter {
    /// Starts the exporter for process `pid` and its sender thread.
    pub fn new(config: &Config, pid: u32, net: &NetworkOptions) -> std::io::Result<HttpExporter> {
        let mut headers = Vec::new();
        if !config.api_key.0.is_empty() && key_allowed(config) {
            headers.push((
                "Authorization".to_string(),
                format!("Bearer {}", config.api_key.0),
            ));
        }
        let endpoint = Endpoint {
            url: config.http_endpoint.clone(),
            headers,
            timeout: Duration::from_millis(config.otlp_timeout_ms),
        };
        let delivery = net.start_delivery("http", endpoint, nothing_rejected)?;
        Ok(HttpExporter {
            renderer: JsonlRenderer::new(pid),
            body: Vec::with_capacity(64 * 1024),
            spans: 0,
            lines: 0,
            since: None,
            max_age: net.max_age,
            delivery,
        })
    }

    fn added(&mut self, lines: u64, spans: u64) {
        self.since.get_or_insert_with(Instant::now);
        self.lines += lines;
        self.spans += spans;
        let old = self.since.is_some_and(|t| t.elapsed() >= self.max_age);
        if old || self.lines >= MAX_LINES_PER_REQUEST || self.body.len() >= MAX_BYTES_PER_REQUEST {
            self.send_pending();
        }
    }

    fn send_pending(&mut self) {
        self.since = None;
        if self.lines > 0 {
            let p = Payload {
                body: gzip(&self.body),
                content_type: "application/x-ndjson".into(),
                gzip: true,
                spans: self.spans,
            };
            self.body.clear();
            self.lines = 0;
            self.spans = 0;
            self.delivery.enqueue(p);
        }
    }
}

impl Exporter for HttpExporter {
    fn name(&self) -> &'static str {
        "http"
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
            self.renderer.span(s, spans, ctx, &mut self.body);
        }
        let n = spans.len() as u64;
        self.added(n, n);
        Ok(0)
    }

    fn export_session(
        &mut self,
        session: &SessionRecord,
        _ctx: &ExportContext,
    ) -> Result<u64, ExportError> {
        self.renderer.session(session, &mut self.body);
        self.added(1, 0);
        Ok(0)
    }

    fn export_http(&mut self, h: &HttpRecord, _ctx: &ExportContext) -> Result<u64, ExportError> {
        self.renderer.http(h, &mut self.body);
        self.added(1, 0);
        Ok(0)
    }

    fn flush(&mut self) -> Result<u64, ExportError> {
        self.send_pending();
        Ok(0)
    }

    fn shutdown(&mut self, counters: &Snapshot, ctx: &ExportContext) -> Result<u64, ExportError> {
        self.renderer.meta(counters, ctx, &mut self.body);
        self.lines += 1;
        self.send_pending();
        self.delivery.shutdown(ctx.shutdown_deadline);
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::TestServer;

    use ferrotrace_core::functions::FunctionInfo;
    use ferrotrace_core::ids::TraceId;
    use ferrotrace_core::metrics::Counters;
    use std::io::Read;
    use std::sync::Arc;

    #[test]
    fn posts_gzipped_jsonl_with_the_bearer_key() {
        let server = TestServer::start(vec![]);
        let mut config = Config::defaults();
        config.exporters = vec!["http".into()];
        config.http_endpoint = server.url("/ingest");
        config.api_key.0 = "sekrit".into();
        config.spool_max_mb = 0;
        let counters = Arc::new(Counters::default());
        let mut e = HttpExporter::new(
            &config,
            9,
            &NetworkOptions::from_config(&config, Arc::clone(&counters)),
        )
        .unwrap();
        let (ctx, f) = crate::testsupport::context_with(
            9,
            FunctionInfo {
                module: "m".into(),
                qualname: "f".into(),
                file: "/m.py".into(),
                line: 1,
            },
        );
        let spans: Vec<ferrotrace_core::event::SpanRecord> = (1..=3)
            .map(|i| ferrotrace_core::event::SpanRecord {
                trace_id: TraceId(5),
                span_id: i,
                func_id: f,
                ..Default::default()
            })
            .collect();
        e.export_spans(&SpanBatch::from(spans), &ctx).unwrap();
        e.shutdown(&Snapshot::default(), &ctx).unwrap();
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/ingest");
        assert_eq!(reqs[0].header("authorization"), Some("Bearer sekrit"));
        assert_eq!(reqs[0].header("content-encoding"), Some("gzip"));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&reqs[0].body[..])
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2]["span_id"], "0000000000000003");
        assert_eq!(lines[3]["type"], "meta");
        assert_eq!(counters.snapshot().network_delivered, 3);
    }

    #[test]
    fn the_key_goes_in_clear_only_to_this_machine_or_when_allowed() {
        let mut config = Config::defaults();
        for (url, allowed) in [
            ("https://ingest.example/v1", true),
            ("http://127.0.0.1:9/v1", true),
            ("http://[::1]:9/v1", true),
            ("http://ingest.example/v1", false),
            ("http://0.0.0.0:9/v1", false),
        ] {
            config.http_endpoint = url.into();
            config.allow_insecure = false;
            assert_eq!(key_allowed(&config), allowed, "{url}");
            config.allow_insecure = true;
            assert!(key_allowed(&config), "{url}");
        }
    }
}
