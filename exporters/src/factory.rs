//! Builds the exporters named by the configuration.

use crate::chrome::ChromeExporter;
use crate::http::HttpExporter;
use crate::jsonl::JsonlExporter;
use crate::network::NetworkOptions;
use crate::otlp::OtlpExporter;
use crate::perfetto::PerfettoExporter;
use ferrotrace_core::config::Config;
use ferrotrace_core::exporter::Exporter;
use ferrotrace_core::metrics::Counters;
use std::sync::Arc;

/// Creates every exporter in `config.exporters` for process `pid`; the network exporters'
/// counters (delivered, retries, spooled, ...) go to a private set of counters. Prefer
/// [`build_exporters_with_counters`] with the pipeline's counters.
pub fn build_exporters(config: &Config, pid: u32) -> Result<Vec<Box<dyn Exporter>>, String> {
    build_exporters_with_counters(config, pid, Arc::default())
}

/// Creates every exporter in `config.exporters` for process `pid`, the network exporters
/// updating `counters`. The error names the exporter and what failed.
pub fn build_exporters_with_counters(
    config: &Config,
    pid: u32,
    counters: Arc<Counters>,
) -> Result<Vec<Box<dyn Exporter>>, String> {
    let net = NetworkOptions::from_config(config, counters);
    let mut out: Vec<Box<dyn Exporter>> = Vec::new();
    for name in &config.exporters {
        match name.as_str() {
            "jsonl" => {
                let e = JsonlExporter::create(&config.output, pid).map_err(|e| {
                    format!("jsonl exporter: cannot create {:?}: {e}", config.output)
                })?;
                out.push(Box::new(e));
            }
            "chrome" => {
                let e = ChromeExporter::create(&config.chrome_output, pid, &config.service_name)
                    .map_err(|e| {
                        format!(
                            "chrome exporter: cannot create {:?}: {e}",
                            config.chrome_output
                        )
                    })?;
                out.push(Box::new(e));
            }
            "perfetto" => {
                let e =
                    PerfettoExporter::create(&config.perfetto_output, pid, &config.service_name)
                        .map_err(|e| {
                            format!(
                                "perfetto exporter: cannot create {:?}: {e}",
                                config.perfetto_output
                            )
                        })?;
                out.push(Box::new(e));
            }
            "otlp" => {
                let e = OtlpExporter::new(config, pid, &net)
                    .map_err(|e| format!("otlp exporter: {e}"))?;
                out.push(Box::new(e));
            }
            "http" => {
                let e = HttpExporter::new(config, pid, &net)
                    .map_err(|e| format!("http exporter: {e}"))?;
                out.push(Box::new(e));
            }
            other => return Err(format!("unknown exporter {other:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_exporter() {
        let dir = std::env::temp_dir().join(format!("ft-factory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config::defaults();
        config.exporters = ["jsonl", "chrome", "perfetto", "otlp", "http"]
            .map(String::from)
            .to_vec();
        config.output = dir.join("t-{pid}.jsonl");
        config.chrome_output = dir.join("t-{pid}.json");
        config.perfetto_output = dir.join("t-{pid}.perfetto-trace");
        config.http_endpoint = "http://127.0.0.1:9/ingest".into();
        config.spool_dir = dir.join("spool");
        let built = build_exporters(&config, 5).unwrap();
        let names: Vec<&str> = built.iter().map(|e| e.name()).collect();
        assert_eq!(names, ["jsonl", "chrome", "perfetto", "otlp", "http"]);
        assert!(dir.join("t-5.jsonl").exists() && dir.join("t-5.json").exists());
        assert!(dir.join("t-5.perfetto-trace").exists());
        drop(built);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
