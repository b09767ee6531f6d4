//! How `ferrotrace config` shows the effective value of each setting: the parsed value in
//! the form the setting accepts, with secrets (the API key, OTLP header values) hidden.

use crate::config::{Backend, Capture, Compression, Config, OtlpProtocol, PreviewMode};

/// Shown instead of a secret that is set.
const HIDDEN: &str = "[REDACTED]";

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

fn pairs(items: &[(String, String)], hide_values: bool) -> String {
    items
        .iter()
        .map(|(k, v)| format!("{k}={}", if hide_values { HIDDEN } else { v }))
        .collect::<Vec<_>>()
        .join(",")
}

/// The effective value of the setting `name` (upper case) in `cfg`, as text a user could set
/// it to; None for a name that is no setting.
pub fn effective_value(cfg: &Config, name: &str) -> Option<String> {
    let text = match name {
        "ENABLED" => flag(cfg.enabled),
        "BACKEND" => match cfg.backend {
            Backend::Auto => "auto",
            Backend::SetProfile => "setprofile",
            Backend::Monitoring => "monitoring",
            Backend::EvalFrame => "evalframe",
        }
        .to_string(),
        "SAMPLE_RATE" => cfg.sample_rate.to_string(),
        "FUNCTION_SAMPLE_RATE" => cfg.function_sample_rate.to_string(),
        "HONOR_PARENT_SAMPLED" => flag(cfg.honor_parent_sampled),
        "MAX_DEPTH" => cfg.max_depth.to_string(),
        "MIN_DURATION_US" => cfg.min_duration_us.to_string(),
        "INCLUDE" => cfg.include.clone().unwrap_or_default(),
        "EXCLUDE" => cfg.exclude.clone().unwrap_or_default(),
        "EXCLUDE_FILES" => cfg.exclude_files.clone().unwrap_or_default(),
        "CAPTURE_ONLY_CWD" => flag(cfg.capture_only_cwd),
        "EXCLUDE_DEFAULTS" => flag(cfg.exclude_defaults),
        "CAPTURE" => match cfg.capture {
            Capture::None => "none",
            Capture::Args => "args",
            Capture::Return => "return",
            Capture::All => "all",
        }
        .to_string(),
        "PREVIEW" => match cfg.preview {
            PreviewMode::Safe => "safe",
            PreviewMode::Fields => "fields",
            PreviewMode::Repr => "repr",
        }
        .to_string(),
        "MAX_STR" => cfg.max_str.to_string(),
        "MAX_ITEMS" => cfg.max_items.to_string(),
        "MAX_PREVIEW_DEPTH" => cfg.max_preview_depth.to_string(),
        "REDACT_KEYS" => cfg.redact_keys.join(","),
        "REDACT_VALUES" => cfg.redact_values.join(";;"),
        "EXPORTER" => cfg.exporters.join(","),
        "OUTPUT" => crate::config::path_text(&cfg.output),
        "BATCH_SIZE" => cfg.batch_size.to_string(),
        "FLUSH_INTERVAL_MS" => cfg.flush_interval_ms.to_string(),
        "MAX_QUEUE" => cfg.max_queue.to_string(),
        "SHUTDOWN_TIMEOUT_MS" => cfg.shutdown_timeout_ms.to_string(),
        "FOLLOW_THREADS" => flag(cfg.follow_threads),
        "SERVICE_NAME" => cfg.service_name.clone(),
        "CHROME_OUTPUT" => crate::config::path_text(&cfg.chrome_output),
        "PERFETTO_OUTPUT" => crate::config::path_text(&cfg.perfetto_output),
        "OTLP_ENDPOINT" => cfg.otlp_endpoint.clone(),
        "OTLP_HEADERS" => pairs(&cfg.otlp_headers, true),
        "OTLP_PROTOCOL" => match cfg.otlp_protocol {
            OtlpProtocol::Protobuf => "http/protobuf",
            OtlpProtocol::Json => "http/json",
        }
        .to_string(),
        "OTLP_COMPRESSION" => match cfg.otlp_compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
        .to_string(),
        "OTLP_TIMEOUT_MS" => cfg.otlp_timeout_ms.to_string(),
        "RESOURCE_ATTRIBUTES" => pairs(&cfg.resource_attributes, false),
        "HTTP_ENDPOINT" => cfg.http_endpoint.clone(),
        "API_KEY" if cfg.api_key.0.is_empty() => String::new(),
        "API_KEY" => HIDDEN.to_string(),
        "ALLOW_INSECURE" => flag(cfg.allow_insecure),
        "SPOOL_DIR" => crate::config::path_text(&cfg.spool_dir),
        "SPOOL_MAX_MB" => cfg.spool_max_mb.to_string(),
        "DEBUG_EXPORT_DELAY_MS" => cfg.debug_export_delay_ms.to_string(),
        "INSTRUMENT" if cfg.instrument.is_empty() => "none".to_string(),
        "INSTRUMENT" if cfg.instrument.len() == crate::config::INSTRUMENTABLE.len() => {
            "all".to_string()
        }
        "INSTRUMENT" => cfg.instrument.join(","),
        "PROPAGATE" => flag(cfg.propagate),
        "CAPTURE_HEADERS" => cfg.capture_headers.join(","),
        "CAPTURE_BODIES" => flag(cfg.capture_bodies),
        "EXCLUDED_URLS" => cfg.excluded_urls.join(","),
        "RESPONSE_TRACEPARENT" => flag(cfg.response_traceparent),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SETTINGS};

    #[test]
    fn every_setting_has_a_view_and_defaults_read_back() {
        let cfg = Config::defaults();
        for s in SETTINGS {
            let v = effective_value(&cfg, s.name).expect(s.name);
            if s.name != "OTLP_ENDPOINT" {
                let default = match s.default {
                    "1.0" => "1",
                    d => d,
                };
                assert_eq!(v, default, "{}", s.name);
            }
        }
        assert_eq!(effective_value(&cfg, "NOPE"), None);
    }

    #[test]
    fn secrets_are_hidden() {
        let mut cfg = Config::defaults();
        cfg.api_key = Secret("k-123".into());
        cfg.otlp_headers = vec![("x-api-key".into(), "v-456".into())];
        assert_eq!(effective_value(&cfg, "API_KEY").unwrap(), HIDDEN);
        assert_eq!(
            effective_value(&cfg, "OTLP_HEADERS").unwrap(),
            "x-api-key=[REDACTED]"
        );
    }
}
