//! Every setting of ferrotrace, parsed and validated in one place.
//!
//! Values come from three layers: arguments (`configure()` / CLI flags), `FERROTRACE_*`
//! environment variables (and the `OTEL_*` ones that apply), and defaults. Each value that
//! fails its rule yields a [`ConfigError`] naming the variable, the value and the rule; the
//! Python side turns it into a `ValueError`, a CLI exit status 2, or (under `ferrotrace.auto`)
//! one warning and a safe fallback.

use std::collections::BTreeMap;
use std::fmt;

/// Where an effective value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Argument,
    Environment,
    Default,
}

impl Source {
    /// Lower-case name shown by `ferrotrace config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Argument => "argument",
            Source::Environment => "environment",
            Source::Default => "default",
        }
    }
}

/// A setting whose value breaks its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable as the user wrote it, e.g. `FERROTRACE_SAMPLE_RATE`.
    pub variable: String,
    pub value: String,
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?} is invalid: {}", self.variable, self.value, self.rule)
    }
}

/// Which hook drives the recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Auto,
    SetProfile,
    Monitoring,
}

/// What previews are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    None,
    Args,
    Return,
    All,
}

impl Capture {
    /// Argument previews are on.
    pub fn args(self) -> bool {
        matches!(self, Capture::Args | Capture::All)
    }
    /// Return-value previews are on.
    pub fn returns(self) -> bool {
        matches!(self, Capture::Return | Capture::All)
    }
}

/// How objects without a native preview are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewMode {
    /// Type name plus instance attributes read without running user code.
    Safe,
    /// A guarded `repr()` (exceptions swallowed, calls it makes not traced).
    Repr,
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub enabled: bool,
    pub backend: Backend,
    pub sample_rate: f64,
    pub function_sample_rate: f64,
    pub honor_parent_sampled: bool,
    pub max_depth: u32,
    pub min_duration_us: u64,
    pub include: Option<String>,
    pub exclude: Option<String>,
    pub exclude_files: Option<String>,
    pub capture_only_cwd: bool,
    pub exclude_defaults: bool,
    pub capture: Capture,
    pub preview: PreviewMode,
    pub max_str: usize,
    pub max_items: usize,
    pub max_preview_depth: usize,
    pub redact_keys: Vec<String>,
    pub redact_values: Vec<String>,
    pub exporters: Vec<String>,
    pub output: String,
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    pub max_queue: usize,
    pub shutdown_timeout_ms: u64,
    pub follow_threads: bool,
    pub service_name: String,
    /// Test-only: the export thread sleeps this long per batch, to prove the hook never waits.
    pub debug_export_delay_ms: u64,
}

/// One setting: its name, the environment variable, an `OTEL_*` fallback, its default and rule.
pub struct Setting {
    /// Name used by `configure(**kwargs)` and in `ferrotrace config`.
    pub name: &'static str,
    pub env: &'static str,
    pub otel_env: Option<&'static str>,
    pub default: &'static str,
    pub rule: &'static str,
}

macro_rules! setting {
    ($name:literal, $default:literal, $rule:literal) => {
        Setting { name: $name, env: concat!("FERROTRACE_", $name), otel_env: None, default: $default, rule: $rule }
    };
    ($name:literal, $otel:literal, $default:literal, $rule:literal) => {
        Setting { name: $name, env: concat!("FERROTRACE_", $name), otel_env: Some($otel), default: $default, rule: $rule }
    };
}

/// Every setting, in the order `ferrotrace config` prints them. Names are upper-case here;
/// `configure()` accepts them in lower case.
pub const SETTINGS: &[Setting] = &[
    setting!("ENABLED", "1", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("BACKEND", "auto", "one of auto, setprofile, monitoring"),
    setting!("SAMPLE_RATE", "1.0", "a number from 0 to 1"),
    setting!("FUNCTION_SAMPLE_RATE", "1.0", "a number from 0 to 1"),
    setting!("HONOR_PARENT_SAMPLED", "1", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("MAX_DEPTH", "0", "a whole number >= 0 (0 means unlimited)"),
    setting!("MIN_DURATION_US", "0", "a whole number of microseconds >= 0"),
    setting!("INCLUDE", "", "a regular expression over module::qualname"),
    setting!("EXCLUDE", "", "a regular expression over module::qualname"),
    setting!("EXCLUDE_FILES", "", "a regular expression over the file path"),
    setting!("CAPTURE_ONLY_CWD", "0", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("EXCLUDE_DEFAULTS", "1", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("CAPTURE", "none", "one of none, args, return, all"),
    setting!("PREVIEW", "safe", "one of safe, repr"),
    setting!("MAX_STR", "256", "a whole number from 8 to 1048576"),
    setting!("MAX_ITEMS", "16", "a whole number from 1 to 10000"),
    setting!("MAX_PREVIEW_DEPTH", "2", "a whole number from 0 to 32"),
    setting!("REDACT_KEYS", "", "comma-separated key names"),
    setting!("REDACT_VALUES", "", "regular expressions separated by ';;'"),
    setting!("EXPORTER", "jsonl", "comma-separated exporters from: jsonl"),
    setting!("OUTPUT", "ferrotrace.jsonl", "a file path (may contain {pid})"),
    setting!("BATCH_SIZE", "512", "a whole number from 1 to 1000000"),
    setting!("FLUSH_INTERVAL_MS", "1000", "a whole number of milliseconds from 1 to 3600000"),
    setting!("MAX_QUEUE", "262144", "a whole number of spans from 1 to 100000000"),
    setting!("SHUTDOWN_TIMEOUT_MS", "5000", "a whole number of milliseconds from 0 to 600000"),
    setting!("FOLLOW_THREADS", "0", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("SERVICE_NAME", "OTEL_SERVICE_NAME", "", "any text"),
    setting!("DEBUG_EXPORT_DELAY_MS", "0", "a whole number of milliseconds from 0 to 60000 (test-only)"),
];

/// Exporters this build knows.
pub const KNOWN_EXPORTERS: &[&str] = &["jsonl"];

/// A setting's raw value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawValue {
    pub value: String,
    pub source: Source,
    /// The variable or argument name it came from (for messages).
    pub origin: String,
}

/// Looks up a setting by its upper-case name.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Resolves the raw value of every setting with the documented precedence.
///
/// `args` are `configure()` keyword arguments keyed by upper-case setting name; `env` is the
/// process environment. Unknown argument names are errors; unknown `FERROTRACE_*` variables
/// are reported by [`unknown_env_vars`].
pub fn resolve(
    args: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<&'static str, RawValue>, ConfigError> {
    for key in args.keys() {
        if setting(key).is_none() {
            let hint = closest_setting(key).map(|s| format!("; did you mean {:?}?", s.to_lowercase())).unwrap_or_default();
            return Err(ConfigError {
                variable: key.to_lowercase(),
                value: args[key].clone(),
                rule: format!("not a ferrotrace setting{hint}"),
            });
        }
    }
    let mut out = BTreeMap::new();
    for s in SETTINGS {
        let raw = if let Some(v) = args.get(s.name) {
            RawValue { value: v.clone(), source: Source::Argument, origin: s.name.to_lowercase() }
        } else if let Some(v) = env.get(s.env) {
            RawValue { value: v.clone(), source: Source::Environment, origin: s.env.to_string() }
        } else if let Some(v) = s.otel_env.and_then(|o| env.get(o).map(|v| (o, v))) {
            RawValue { value: v.1.clone(), source: Source::Environment, origin: v.0.to_string() }
        } else {
            RawValue { value: s.default.to_string(), source: Source::Default, origin: "default".to_string() }
        };
        out.insert(s.name, raw);
    }
    Ok(out)
}

/// `FERROTRACE_*` variables that are not settings, each with the closest known name.
pub fn unknown_env_vars(env: &BTreeMap<String, String>) -> Vec<(String, Option<&'static str>)> {
    env.keys()
        .filter(|k| k.starts_with("FERROTRACE_") && !k.starts_with("FERROTRACE__"))
        .filter(|k| !SETTINGS.iter().any(|s| s.env == k.as_str()))
        .map(|k| (k.clone(), closest_setting(&k["FERROTRACE_".len()..]).map(|n| setting(n).map(|s| s.env).unwrap_or(n))))
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known setting name closest to `name` (upper-cased), if any is reasonably close.
pub fn closest_setting(name: &str) -> Option<&'static str> {
    let name = name.to_uppercase();
    SETTINGS
        .iter()
        .map(|s| (edit_distance(&name, s.name), s.name))
        .filter(|(d, n)| *d <= (n.len() / 3).max(2))
        .min()
        .map(|(_, n)| n)
}

fn err(raw: &RawValue, s: &Setting) -> ConfigError {
    let variable = match raw.source {
        Source::Default => s.env.to_string(),
        _ => raw.origin.clone(),
    };
    ConfigError { variable, value: raw.value.clone(), rule: s.rule.to_string() }
}

fn parse_bool(raw: &RawValue, s: &Setting) -> Result<bool, ConfigError> {
    match raw.value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(err(raw, s)),
    }
}

fn parse_rate(raw: &RawValue, s: &Setting) -> Result<f64, ConfigError> {
    match raw.value.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(err(raw, s)),
    }
}

fn parse_uint(raw: &RawValue, s: &Setting, min: u64, max: u64) -> Result<u64, ConfigError> {
    match raw.value.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(err(raw, s)),
    }
}

fn parse_regex(raw: &RawValue, s: &Setting) -> Result<Option<String>, ConfigError> {
    if raw.value.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(&raw.value).map(|_| Some(raw.value.clone())).map_err(|e| ConfigError {
        rule: format!("{} ({})", s.rule, e.to_string().lines().last().unwrap_or("syntax error").trim()),
        ..err(raw, s)
    })
}

fn parse_choice<T: Copy>(raw: &RawValue, s: &Setting, choices: &[(&str, T)]) -> Result<T, ConfigError> {
    let v = raw.value.trim().to_ascii_lowercase();
    choices.iter().find(|(n, _)| *n == v).map(|(_, t)| *t).ok_or_else(|| err(raw, s))
}

fn split_list(value: &str, sep: &str) -> Vec<String> {
    value.split(sep).map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

impl Config {
    /// Parses every raw value; returns the configuration or every error found.
    pub fn from_raw(raw: &BTreeMap<&'static str, RawValue>) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let get = |name: &str| -> (&RawValue, &'static Setting) {
            let s = setting(name).expect("known setting");
            (&raw[s.name], s)
        };
        macro_rules! field {
            ($name:literal, $parse:expr, $fallback:expr) => {{
                let (r, s) = get($name);
                match $parse(r, s) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(e);
                        $fallback
                    }
                }
            }};
        }
        let exporters = field!("EXPORTER", |r: &RawValue, s: &Setting| {
            let list = split_list(&r.value.to_ascii_lowercase(), ",");
            if list.is_empty() || list.iter().any(|e| !KNOWN_EXPORTERS.contains(&e.as_str())) {
                Err(err(r, s))
            } else {
                Ok(list)
            }
        }, vec!["jsonl".to_string()]);
        let redact_values = field!("REDACT_VALUES", |r: &RawValue, s: &Setting| {
            let list = split_list(&r.value, ";;");
            for p in &list {
                if let Err(e) = regex::Regex::new(p) {
                    return Err(ConfigError {
                        rule: format!("{} ({:?}: {})", s.rule, p, e.to_string().lines().last().unwrap_or("").trim()),
                        ..err(r, s)
                    });
                }
            }
            Ok(list)
        }, Vec::new());
        let cfg = Config {
            enabled: field!("ENABLED", parse_bool, true),
            backend: field!("BACKEND", |r, s| parse_choice(r, s, &[("auto", Backend::Auto), ("setprofile", Backend::SetProfile), ("monitoring", Backend::Monitoring)]), Backend::Auto),
            sample_rate: field!("SAMPLE_RATE", parse_rate, 1.0),
            function_sample_rate: field!("FUNCTION_SAMPLE_RATE", parse_rate, 1.0),
            honor_parent_sampled: field!("HONOR_PARENT_SAMPLED", parse_bool, true),
            max_depth: field!("MAX_DEPTH", |r, s| parse_uint(r, s, 0, u64::from(u32::MAX)), 0) as u32,
            min_duration_us: field!("MIN_DURATION_US", |r, s| parse_uint(r, s, 0, u64::MAX / 1000), 0),
            include: field!("INCLUDE", parse_regex, None),
            exclude: field!("EXCLUDE", parse_regex, None),
            exclude_files: field!("EXCLUDE_FILES", parse_regex, None),
            capture_only_cwd: field!("CAPTURE_ONLY_CWD", parse_bool, false),
            exclude_defaults: field!("EXCLUDE_DEFAULTS", parse_bool, true),
            capture: field!("CAPTURE", |r, s| parse_choice(r, s, &[("none", Capture::None), ("args", Capture::Args), ("return", Capture::Return), ("all", Capture::All)]), Capture::None),
            preview: field!("PREVIEW", |r, s| parse_choice(r, s, &[("safe", PreviewMode::Safe), ("repr", PreviewMode::Repr)]), PreviewMode::Safe),
            max_str: field!("MAX_STR", |r, s| parse_uint(r, s, 8, 1 << 20), 256) as usize,
            max_items: field!("MAX_ITEMS", |r, s| parse_uint(r, s, 1, 10_000), 16) as usize,
            max_preview_depth: field!("MAX_PREVIEW_DEPTH", |r, s| parse_uint(r, s, 0, 32), 2) as usize,
            redact_keys: split_list(&get("REDACT_KEYS").0.value, ","),
            redact_values,
            exporters,
            output: field!("OUTPUT", |r: &RawValue, s: &Setting| if r.value.trim().is_empty() { Err(err(r, s)) } else { Ok(r.value.clone()) }, "ferrotrace.jsonl".to_string()),
            batch_size: field!("BATCH_SIZE", |r, s| parse_uint(r, s, 1, 1_000_000), 512) as usize,
            flush_interval_ms: field!("FLUSH_INTERVAL_MS", |r, s| parse_uint(r, s, 1, 3_600_000), 1000),
            max_queue: field!("MAX_QUEUE", |r, s| parse_uint(r, s, 1, 100_000_000), 262_144) as usize,
            shutdown_timeout_ms: field!("SHUTDOWN_TIMEOUT_MS", |r, s| parse_uint(r, s, 0, 600_000), 5000),
            follow_threads: field!("FOLLOW_THREADS", parse_bool, false),
            service_name: get("SERVICE_NAME").0.value.clone(),
            debug_export_delay_ms: field!("DEBUG_EXPORT_DELAY_MS", |r, s| parse_uint(r, s, 0, 60_000), 0),
        };
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The defaults, as if no argument or variable were set.
    pub fn defaults() -> Config {
        let raw = resolve(&BTreeMap::new(), &BTreeMap::new()).expect("no arguments");
        Config::from_raw(&raw).expect("defaults are valid")
    }

    /// A short stable digest of the configuration, written in the `meta` record.
    pub fn digest(&self) -> String {
        format!("{:016x}", seahash::hash(format!("{self:?}").as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults();
        assert_eq!(c.capture, Capture::None);
        assert_eq!(c.exporters, vec!["jsonl"]);
        assert_eq!(c.max_str, 256);
    }

    #[test]
    fn precedence_argument_env_otel_default() {
        let args = env(&[("SAMPLE_RATE", "0.25")]);
        let e = env(&[("FERROTRACE_SAMPLE_RATE", "0.5"), ("OTEL_SERVICE_NAME", "svc"), ("FERROTRACE_MAX_DEPTH", "7")]);
        let raw = resolve(&args, &e).unwrap();
        assert_eq!(raw["SAMPLE_RATE"].source, Source::Argument);
        assert_eq!(raw["SERVICE_NAME"].origin, "OTEL_SERVICE_NAME");
        let c = Config::from_raw(&raw).unwrap();
        assert_eq!(c.sample_rate, 0.25);
        assert_eq!(c.max_depth, 7);
        assert_eq!(c.service_name, "svc");
    }

    #[test]
    fn errors_name_variable_value_and_rule() {
        let raw = resolve(&BTreeMap::new(), &env(&[("FERROTRACE_SAMPLE_RATE", "1.5"), ("FERROTRACE_INCLUDE", "(")])).unwrap();
        let errs = Config::from_raw(&raw).unwrap_err();
        assert_eq!(errs.len(), 2);
        let msg = errs[0].to_string();
        assert!(msg.contains("FERROTRACE_SAMPLE_RATE") && msg.contains("1.5") && msg.contains("from 0 to 1"), "{msg}");
        assert!(errs[1].to_string().contains("FERROTRACE_INCLUDE"));
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let unknown = unknown_env_vars(&env(&[("FERROTRACE_SAMPLERATE", "1"), ("FERROTRACE_OUTPUT", "x")]));
        assert_eq!(unknown, vec![("FERROTRACE_SAMPLERATE".to_string(), Some("FERROTRACE_SAMPLE_RATE"))]);
        let e = resolve(&env(&[("OUTPT", "x")]), &BTreeMap::new()).unwrap_err();
        assert!(e.rule.contains("\"output\""), "{e}");
    }
}
