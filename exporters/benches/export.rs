//! Export-thread micro-benchmark: spans per second serialised to JSONL (written to a file)
//! and encoded as OTLP protobuf (encoding only, no network).
//!
//! Run: `cargo bench -p ferrotrace-exporters --bench export`.

use ferrotrace_core::config::{Compression, Config, OtlpProtocol};
use ferrotrace_core::event::{SpanBatch, SpanRecord};
use ferrotrace_core::exporter::{ExportContext, Exporter, MetaInfo};
use ferrotrace_core::functions::{FunctionInfo, FunctionTable};
use ferrotrace_core::ids::TraceId;
use ferrotrace_core::metrics::{Counters, Snapshot};
use ferrotrace_exporters::network::NetworkOptions;
use ferrotrace_exporters::otlp::encode::{resource, Encoder};
use ferrotrace_exporters::otlp::OtlpExporter;
use ferrotrace_exporters::JsonlExporter;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 512;
const BATCHES: usize = 4_000;

fn batch(functions: &FunctionTable) -> SpanBatch {
    let ids: Vec<u32> = (0..64)
        .map(|i| {
            functions.intern(FunctionInfo {
                module: format!("app.module{}", i % 8),
                qualname: format!("Handler.method_{i}"),
                file: format!("/srv/app/module{}.py", i % 8),
                line: 10 + i,
            })
        })
        .collect();
    (0..BATCH as u64)
        .map(|i| SpanRecord {
            trace_id: TraceId(0x0af7651916cd43dd8448eb211c80319c),
            span_id: 0x1000 + i,
            parent_span_id: 0x1000 + i / 2,
            start_ns: 1_000_000 + i * 1_500,
            duration_ns: 1_234 + i,
            self_ns: 800,
            thread_id: 140_000_000 + i % 4,
            func_id: ids[i as usize % ids.len()],
            depth: (i % 12) as u32,
            ..Default::default()
        })
        .collect::<Vec<_>>()
        .into()
}

fn report(what: &str, spans: usize, secs: f64, bytes: Option<u64>) {
    let rate = spans as f64 / secs;
    match bytes {
        Some(b) => println!(
            "{what:<28} {:>10.0} spans/s  ({spans} spans in {secs:.3} s, {:.1} MB)",
            rate,
            b as f64 / 1e6
        ),
        None => println!(
            "{what:<28} {:>10.0} spans/s  ({spans} spans in {secs:.3} s)",
            rate
        ),
    }
}

fn main() {
    let functions = Arc::new(FunctionTable::default());
    let spans = batch(&functions);
    let ctx = ExportContext {
        functions: Arc::clone(&functions),
        pid: 1,
        meta: MetaInfo::default(),
        shutdown_deadline: None,
    };
    let total = BATCH * BATCHES;

    let path = std::env::temp_dir().join(format!("ferrotrace-bench-{}.jsonl", std::process::id()));
    let mut jsonl = JsonlExporter::create(path.to_str().unwrap(), 1).unwrap();
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..BATCHES {
        bytes += jsonl.export_spans(&spans, &ctx).unwrap();
    }
    bytes += jsonl.shutdown(&Snapshot::default(), &ctx).unwrap();
    report(
        "jsonl (to a file)",
        total,
        t.elapsed().as_secs_f64(),
        Some(bytes),
    );
    let _ = std::fs::remove_file(&path);

    let mut encoder = Encoder::new(resource("bench", &[], 1));
    let t = Instant::now();
    let mut bytes = 0u64;
    for _ in 0..BATCHES / 4 {
        let converted = spans
            .iter()
            .map(|s| encoder.span(s, &spans, &functions))
            .collect();
        bytes += prost::Message::encode_to_vec(&encoder.request(converted)).len() as u64;
    }
    report(
        "otlp protobuf (encode only)",
        total / 4,
        t.elapsed().as_secs_f64(),
        Some(bytes),
    );

    let mut config = Config::defaults();
    config.otlp_protocol = OtlpProtocol::Protobuf;
    config.otlp_compression = Compression::Gzip;
    config.spool_max_mb = 0;
    let exporter = OtlpExporter::new(
        &config,
        1,
        &NetworkOptions::from_config(&config, Arc::new(Counters::default())),
    )
    .unwrap();
    let t = Instant::now();
    for _ in 0..BATCHES / 16 {
        let converted = spans
            .iter()
            .map(|s| encoder.span(s, &spans, &functions))
            .collect();
        black_box(exporter.payload(converted));
    }
    report(
        "otlp protobuf + gzip",
        total / 16,
        t.elapsed().as_secs_f64(),
        None,
    );
}
