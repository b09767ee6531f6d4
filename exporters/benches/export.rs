//! Export-thread micro-benchmark: spans per second (one core) and bytes per span of each
//! file exporter (JSONL, Chrome JSON, Perfetto protobuf, written to a file) and of OTLP
//! protobuf (encoding only, no network).
//!
//! Run: `cargo bench -p ferrotrace-exporters --bench export` (synthetic spans), or with
//! `FERROTRACE_BENCH_TRACE=trace.jsonl` to export the calls of a recorded run instead (their
//! functions, threads, start times and durations; no previews): benches/exporters.py does
//! that for richards and deltablue.

use ferrotrace_core::config::{Compression, Config, OtlpProtocol};
use ferrotrace_core::event::{SpanBatch, SpanRecord};
use ferrotrace_core::exporter::{ExportContext, Exporter, MetaInfo};
use ferrotrace_core::functions::{FunctionInfo, FunctionTable};
use ferrotrace_core::ids::TraceId;
use ferrotrace_core::metrics::{Counters, Snapshot};
use ferrotrace_exporters::network::NetworkOptions;
use ferrotrace_exporters::otlp::encode::{resource, Encoder};
use ferrotrace_exporters::otlp::OtlpExporter;
use ferrotrace_exporters::{ChromeExporter, JsonlExporter, PerfettoExporter};
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

/// The calls of a recorded JSONL trace as batches of `BATCH` records (times relative to
/// the first call).
fn batches_from_trace(path: &str, functions: &FunctionTable) -> Vec<SpanBatch> {
    let text = std::fs::read_to_string(path).expect("FERROTRACE_BENCH_TRACE: a readable file");
    let mut records = Vec::new();
    for line in text.lines() {
        let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if r["type"] != "span" {
            continue;
        }
        let start = match &r["start_unix_ns"] {
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            v => v.as_u64().unwrap_or(0),
        };
        let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let func_id = functions.intern(FunctionInfo {
            module: text("module"),
            qualname: text("qualname"),
            file: text("file"),
            line: r["line"].as_u64().unwrap_or(0) as u32,
        });
        let hex = |k: &str| u64::from_str_radix(r[k].as_str().unwrap_or("0"), 16).unwrap_or(0);
        records.push(SpanRecord {
            trace_id: TraceId(
                u128::from_str_radix(r["trace_id"].as_str().unwrap_or("0"), 16).unwrap_or(0),
            ),
            span_id: hex("span_id"),
            parent_span_id: hex("parent_span_id"),
            start_ns: start,
            duration_ns: r["duration_ns"].as_u64().unwrap_or(0),
            self_ns: r["self_ns"].as_u64().unwrap_or(0),
            thread_id: r["thread_id"].as_u64().unwrap_or(0),
            func_id,
            depth: r["depth"].as_u64().unwrap_or(0) as u32,
            ..Default::default()
        });
    }
    let first = records.iter().map(|s| s.start_ns).min().unwrap_or(0);
    for s in &mut records {
        s.start_ns -= first;
    }
    let mut batches = Vec::new();
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(BATCH));
        batches.push(SpanBatch::from(std::mem::replace(&mut records, rest)));
    }
    batches
}

/// Nanoseconds this thread has run on a CPU (Linux's schedstat): on a shared machine the
/// rate per CPU second is what one core sustains, whatever the other processes do.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Exports `batches` `rounds` times through `exporter` and reports spans/s and bytes/span.
fn run_file_exporter(
    what: &str,
    mut exporter: Box<dyn Exporter>,
    batches: &[SpanBatch],
    rounds: usize,
    ctx: &ExportContext,
) {
    let spans: usize = batches.iter().map(|b| b.len()).sum::<usize>() * rounds;
    let t = Instant::now();
    let cpu = cpu_ns();
    let mut bytes = 0;
    for _ in 0..rounds {
        for b in batches {
            bytes += exporter.export_spans(b, ctx).unwrap();
        }
    }
    bytes += exporter.shutdown(&Snapshot::default(), ctx).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = (cpu_ns() - cpu) as f64 / 1e9;
    println!(
        "{what:<28} {:>10.0} spans/s  {:>6.1} bytes/span  ({spans} spans in {secs:.3} s, {:.0} spans per CPU second)",
        spans as f64 / secs,
        bytes as f64 / spans as f64,
        spans as f64 / cpu_secs
    );
}

fn report(what: &str, spans: usize, secs: f64, bytes: Option<u64>) {
    let rate = spans as f64 / secs;
    match bytes {
        Some(b) => println!(
            "{what:<28} {:>10.0} spans/s  {:>6.1} bytes/span  ({spans} spans in {secs:.3} s)",
            rate,
            b as f64 / spans as f64
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
    let traced = std::env::var("FERROTRACE_BENCH_TRACE").ok();
    let (batches, rounds) = match &traced {
        Some(path) => {
            let b = batches_from_trace(path, &functions);
            let n: usize = b.iter().map(|b| b.len()).sum();
            let rounds = (BATCH * BATCHES / n.max(1)).clamp(1, 1000);
            (b, rounds)
        }
        None => (vec![spans], BATCHES),
    };
    let spans = &batches[0];
    let total = spans.len() * BATCHES;
    let dir = std::env::temp_dir().join(format!("ferrotrace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name);
    let exporters: Vec<(&str, Box<dyn Exporter>)> = vec![
        (
            "jsonl (to a file)",
            Box::new(JsonlExporter::create(file("t.jsonl"), 1).unwrap()),
        ),
        (
            "chrome (to a file)",
            Box::new(ChromeExporter::create(file("t.json"), 1, "").unwrap()),
        ),
        (
            "perfetto (to a file)",
            Box::new(PerfettoExporter::create(file("t.pftrace"), 1, "").unwrap()),
        ),
    ];
    for (what, exporter) in exporters {
        run_file_exporter(what, exporter, &batches, rounds, &ctx);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let mut encoder = Encoder::new(resource("bench", &[], 1));
    let t = Instant::now();
    let mut bytes = 0u64;
    for _ in 0..BATCHES / 4 {
        let converted = spans
            .iter()
            .map(|s| encoder.span(s, spans, &functions))
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
            .map(|s| encoder.span(s, spans, &functions))
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
