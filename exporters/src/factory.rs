//! Builds the exporters named by the configuration.

use crate::jsonl::JsonlExporter;
use ferrotrace_core::config::Config;
use ferrotrace_core::exporter::Exporter;

/// Creates every exporter in `config.exporters` for process `pid`.
/// The error names the exporter and what failed (e.g. the output file could not be created).
pub fn build_exporters(config: &Config, pid: u32) -> Result<Vec<Box<dyn Exporter>>, String> {
    let mut out: Vec<Box<dyn Exporter>> = Vec::new();
    for name in &config.exporters {
        match name.as_str() {
            "jsonl" => {
                let e = JsonlExporter::create(&config.output, pid)
                    .map_err(|e| format!("jsonl exporter: cannot create {:?}: {e}", config.output))?;
                out.push(Box::new(e));
            }
            other => return Err(format!("unknown exporter {other:?}")),
        }
    }
    Ok(out)
}
