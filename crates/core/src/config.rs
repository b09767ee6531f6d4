//! Every setting of ferrotrace, parsed and validated in one place.
//!
//! Values come from three layers: arguments (`configure()` / CLI flags), `FERROTRACE_*`
//! environment variables (and the `OTEL_*` ones that apply), and defaults. Each value that
//! fails its rule yields a [`ConfigError`] naming the variable, the value and the rule; the
//! Python side turns it into a `ValueError`, a CLI exit status 2, or (under `ferrotrace.auto`)
//! one warning and a safe fallback.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where an effective value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `configure()` keyword argument or a CLI flag.
    Argument,
    /// A `FERROTRACE_*` variable.
    Environment,
    /// An `OTEL_*` variable that applies to the setting.
    OtelEnvironment,
    /// Nothing was set.
    Default,
}

impl Source {
    /// Lower-case name shown by `ferrotrace config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Argument => "argument",
            Source::Environment => "environment",
            Source::OtelEnvironment => "OTEL environment",
            Source::Default => "default",
        }
    }
}

/// A setting whose value breaks its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's upper-case name (`SAMPLE_RATE`); empty for a name that is no setting.
    pub setting: &'static str,
    /// The variable as the user wrote it, e.g. `FERROTRACE_SAMPLE_RATE`.
    pub variable: String,
    /// The value as given; when `value_not_utf8`, its bytes with those that are not UTF-8 (and
    /// any that are not printable ASCII) written as `\xNN`.
    pub value: String,
    pub rule: String,
    /// The value was not valid UTF-8 (shown as a bytes literal).
    pub value_not_utf8: bool,
}

impl ConfigError {
    /// What the lenient parse (`ferrotrace.auto`) does instead of using the bad value.
    pub fn fallback(&self) -> String {
        if FILTER_SETTINGS.contains(&self.setting) {
            "tracing is disabled rather than tracing everything".to_string()
        } else if self.setting == "REDACT_VALUES" {
            "the default redaction stays in force, without the extra patterns".to_string()
        } else if let Some(s) = setting(self.setting) {
            format!("using the default {:?}", s.default)
        } else {
            "ignored".to_string()
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value_not_utf8 {
            write!(
                f,
                "{}=b\"{}\" is invalid: {}",
                self.variable, self.value, self.rule
            )
        } else {
            write!(
                f,
                "{}={:?} is invalid: {}",
                self.variable, self.value, self.rule
            )
        }
    }
}

/// Which hook drives the recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Auto,
    SetProfile,
    Monitoring,
    /// A PEP 523 frame-evaluation function (CPython 3.10 and 3.11).
    EvalFrame,
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
    /// Without running user code: an object whose class keeps `object.__repr__` shows as that
    /// repr would (`<mod.Class object at 0x…>`), any other as its type name plus its instance
    /// attributes one level deep (scalars by value, containers and objects by short forms).
    Safe,
    /// Every such object as its type name plus its instance attributes, read without running
    /// user code and walked to the preview depth.
    Fields,
    /// A guarded `repr()` (exceptions swallowed, calls it makes not traced).
    Repr,
}

/// The OTLP/HTTP body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`: binary protobuf (`application/x-protobuf`).
    Protobuf,
    /// `http/json`: the OTLP JSON encoding (`application/json`).
    Json,
}

/// Body compression of the network exporters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// A secret setting (an API key): its `Debug` form never shows the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"[REDACTED]\""
        })
    }
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
    pub output: PathBuf,
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    pub max_queue: usize,
    pub shutdown_timeout_ms: u64,
    pub follow_threads: bool,
    pub service_name: String,
    /// Output of the `chrome` exporter (may contain `{pid}`).
    pub chrome_output: PathBuf,
    /// Output of the `perfetto` exporter (may contain `{pid}`).
    pub perfetto_output: PathBuf,
    /// The full OTLP traces URL (`.../v1/traces`).
    pub otlp_endpoint: String,
    /// Extra headers sent with every OTLP request.
    pub otlp_headers: Vec<(String, String)>,
    pub otlp_protocol: OtlpProtocol,
    pub otlp_compression: Compression,
    /// Timeout of one OTLP request.
    pub otlp_timeout_ms: u64,
    /// Resource attributes (`OTEL_RESOURCE_ATTRIBUTES`), decoded.
    pub resource_attributes: Vec<(String, String)>,
    /// Ingest URL of the `http` exporter.
    pub http_endpoint: String,
    /// Bearer token of the `http` exporter.
    pub api_key: Secret,
    /// Allows the API key over plain http to a non-loopback host.
    pub allow_insecure: bool,
    /// Spool directory of the network exporters (empty: the per-user cache directory).
    pub spool_dir: PathBuf,
    /// Spool size cap in MiB (0 disables the spool).
    pub spool_max_mb: u64,
    /// Test-only: the export thread sleeps this long per batch, to prove the hook never waits.
    pub debug_export_delay_ms: u64,
    /// HTTP client libraries instrumented under `ferrotrace run` / `ferrotrace.auto`, from
    /// [`INSTRUMENTABLE`].
    pub instrument: Vec<String>,
    /// Outgoing HTTP requests carry the session's `traceparent`.
    pub propagate: bool,
    /// Header names (lower-case) whose values HTTP records and request sessions keep,
    /// redacted.
    pub capture_headers: Vec<String>,
    /// HTTP records keep the request and response bodies (bounded by `max_str`, redacted).
    pub capture_bodies: bool,
    /// Regular expressions over a served request's path: matching requests get no session.
    pub excluded_urls: Vec<String>,
    /// Traced responses carry a W3C `traceresponse` header.
    pub response_traceparent: bool,
}

/// One setting: its name, the environment variable, `OTEL_*` fallbacks, its default and rule.
pub struct Setting {
    /// Name used by `configure(**kwargs)` and in `ferrotrace config`.
    pub name: &'static str,
    pub env: &'static str,
    /// The first `OTEL_*` fallback.
    pub otel_env: Option<&'static str>,
    /// Further `OTEL_*` fallbacks, tried in order after `otel_env`.
    pub otel_env_more: &'static [&'static str],
    pub default: &'static str,
    pub rule: &'static str,
}

impl Setting {
    /// Every `OTEL_*` fallback, in order of precedence.
    pub fn otel_envs(&self) -> impl Iterator<Item = &'static str> {
        self.otel_env
            .into_iter()
            .chain(self.otel_env_more.iter().copied())
    }
}

macro_rules! setting {
    ($name:literal, $default:literal, $rule:literal) => {
        Setting { name: $name, env: concat!("FERROTRACE_", $name), otel_env: None, otel_env_more: &[], default: $default, rule: $rule }
    };
    ($name:literal, $otel:literal, $default:literal, $rule:literal) => {
        Setting { name: $name, env: concat!("FERROTRACE_", $name), otel_env: Some($otel), otel_env_more: &[], default: $default, rule: $rule }
    };
    ($name:literal, [$otel:literal, $($more:literal),+], $default:literal, $rule:literal) => {
        Setting { name: $name, env: concat!("FERROTRACE_", $name), otel_env: Some($otel), otel_env_more: &[$($more),+], default: $default, rule: $rule }
    };
}

/// The OTel variable whose value is the full traces URL (no `/v1/traces` appended).
pub const OTEL_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// Every setting, in the order `ferrotrace config` prints them. Names are upper-case here;
/// `configure()` accepts them in lower case.
pub const SETTINGS: &[Setting] = &[
    setting!("ENABLED", "1", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("BACKEND", "auto", "one of auto, setprofile, monitoring, evalframe"),
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
    setting!("PREVIEW", "safe", "one of safe, fields, repr"),
    setting!("MAX_STR", "256", "a whole number from 8 to 1048576"),
    setting!("MAX_ITEMS", "16", "a whole number from 1 to 10000"),
    setting!("MAX_PREVIEW_DEPTH", "2", "a whole number from 0 to 32"),
    setting!("REDACT_KEYS", "", "comma-separated key names"),
    setting!("REDACT_VALUES", "", "regular expressions separated by ';;'"),
    setting!("EXPORTER", "jsonl", "comma-separated exporters from: jsonl, chrome, perfetto, otlp, http"),
    setting!("OUTPUT", "ferrotrace.jsonl", "a file path (may contain {pid}) in an existing directory, not a directory itself"),
    setting!("BATCH_SIZE", "512", "a whole number from 1 to 1000000"),
    setting!("FLUSH_INTERVAL_MS", "1000", "a whole number of milliseconds from 1 to 3600000"),
    setting!("MAX_QUEUE", "262144", "a whole number of spans from 1 to 100000000"),
    setting!("SHUTDOWN_TIMEOUT_MS", "5000", "a whole number of milliseconds from 0 to 600000"),
    setting!("FOLLOW_THREADS", "1", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("SERVICE_NAME", "OTEL_SERVICE_NAME", "", "any text"),
    setting!("CHROME_OUTPUT", "ferrotrace.chrome.json", "a file path (may contain {pid}) in an existing directory, not a directory itself"),
    setting!("PERFETTO_OUTPUT", "ferrotrace.perfetto-trace", "a file path (may contain {pid}) in an existing directory, not a directory itself"),
    setting!("OTLP_ENDPOINT", ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"], "http://localhost:4318", "an http:// or https:// URL with a host (/v1/traces is appended unless it ends with it or comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)"),
    setting!("OTLP_HEADERS", ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"], "", "comma-separated name=value pairs, percent-encoded, with valid header names"),
    setting!("OTLP_PROTOCOL", ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf", "one of http/protobuf, http/json (grpc is not supported)"),
    setting!("OTLP_COMPRESSION", ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"], "gzip", "one of none, gzip"),
    setting!("OTLP_TIMEOUT_MS", ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"], "10000", "a whole number of milliseconds from 1 to 600000"),
    setting!("RESOURCE_ATTRIBUTES", "OTEL_RESOURCE_ATTRIBUTES", "", "comma-separated key=value pairs, percent-encoded"),
    setting!("HTTP_ENDPOINT", "", "an http:// or https:// URL with a host, required by the http exporter; plain http to a non-loopback host only with FERROTRACE_ALLOW_INSECURE=1 when FERROTRACE_API_KEY is set"),
    setting!("API_KEY", "", "any text (sent as a bearer token by the http exporter)"),
    setting!("ALLOW_INSECURE", "0", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("SPOOL_DIR", "", "a directory path, not an existing file (empty: $XDG_CACHE_HOME/ferrotrace/spool or ~/.cache/ferrotrace/spool)"),
    setting!("SPOOL_MAX_MB", "64", "a whole number of MiB from 0 to 1048576 (0 disables the spool)"),
    setting!("INSTRUMENT", "all", "all, none, or a comma-separated list of: requests, httpx, urllib3, aiohttp, urllib, flask, django, starlette"),
    setting!("PROPAGATE", "1", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("CAPTURE_HEADERS", "", "comma-separated HTTP header names"),
    setting!("CAPTURE_BODIES", "0", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS", "", "comma-separated regular expressions over the request path"),
    setting!("RESPONSE_TRACEPARENT", "0", "a boolean: 1/0, true/false, yes/no, on/off"),
    setting!("DEBUG_EXPORT_DELAY_MS", "0", "a whole number of milliseconds from 0 to 60000 (test-only)"),
];

/// Settings whose invalid value disables tracing under the lenient (auto) parse.
const FILTER_SETTINGS: &[&str] = &["INCLUDE", "EXCLUDE", "EXCLUDE_FILES"];

/// HTTP client libraries and web frameworks ferrotrace can instrument
/// (`FERROTRACE_INSTRUMENT`).
pub const INSTRUMENTABLE: &[&str] = &[
    "requests",
    "httpx",
    "urllib3",
    "aiohttp",
    "urllib",
    "flask",
    "django",
    "starlette",
];

/// Comma-separated regular expressions (`FERROTRACE_EXCLUDED_URLS`), each one valid.
fn parse_regex_list(raw: &RawValue, s: &Setting) -> Result<Vec<String>, ConfigError> {
    let list = split_list(&raw.value, ",");
    for p in &list {
        if let Err(e) = regex::Regex::new(p) {
            return Err(ConfigError {
                rule: format!(
                    "{} ({:?}: {})",
                    s.rule,
                    p,
                    e.to_string().lines().last().unwrap_or("").trim()
                ),
                ..err(raw, s)
            });
        }
    }
    Ok(list)
}

/// `all`, `none` or a comma list of [`INSTRUMENTABLE`] names (any case).
fn parse_instrument(raw: &RawValue, s: &Setting) -> Result<Vec<String>, ConfigError> {
    let list = split_list(&raw.value.to_ascii_lowercase(), ",");
    match list.as_slice() {
        [one] if one == "all" => Ok(INSTRUMENTABLE.iter().map(|l| l.to_string()).collect()),
        [one] if one == "none" => Ok(Vec::new()),
        [] => Err(err(raw, s)),
        _ if list.iter().all(|l| INSTRUMENTABLE.contains(&l.as_str())) => Ok(INSTRUMENTABLE
            .iter()
            .filter(|l| list.iter().any(|x| x == *l))
            .map(|l| l.to_string())
            .collect()),
        _ => Err(err(raw, s)),
    }
}

/// Comma-separated header names, lower-cased.
fn parse_header_names(raw: &RawValue, s: &Setting) -> Result<Vec<String>, ConfigError> {
    let list = split_list(&raw.value.to_ascii_lowercase(), ",");
    if list.iter().all(|n| is_header_name(n)) {
        Ok(list)
    } else {
        Err(err(raw, s))
    }
}

/// Exporters this build knows.
pub const KNOWN_EXPORTERS: &[&str] = &["jsonl", "chrome", "perfetto", "otlp", "http"];

/// A setting's raw value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawValue {
    pub value: String,
    pub source: Source,
    /// The variable or argument name it came from (for messages).
    pub origin: String,
    /// The bytes given, when they are not valid UTF-8: `value` then holds them escaped (see
    /// [`decode_text`]). A path setting takes them as the OS path they are; any other setting
    /// reports them as invalid and takes its safe fallback.
    pub not_utf8: Option<Vec<u8>>,
}

/// Settings that are paths: their value may be any bytes the OS accepts in a path.
const PATH_SETTINGS: &[&str] = &["OUTPUT", "CHROME_OUTPUT", "PERFETTO_OUTPUT", "SPOOL_DIR"];

/// `bytes.decode("utf-8", "backslashreplace")`: valid UTF-8 kept, other bytes as `\xNN`.
pub fn escape_invalid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A path as text for messages, summaries and `ferrotrace config` (bytes that are not UTF-8
/// as `\xNN`, as ferrotrace's Python side writes them).
pub fn path_text(path: &Path) -> String {
    escape_invalid_utf8(path.as_os_str().as_encoded_bytes())
}

/// The path a raw value names: its bytes as given.
fn raw_path(raw: &RawValue) -> PathBuf {
    match &raw.not_utf8 {
        #[cfg(unix)]
        Some(bytes) => {
            use std::os::unix::ffi::OsStringExt;
            PathBuf::from(std::ffi::OsString::from_vec(bytes.clone()))
        }
        _ => PathBuf::from(&raw.value),
    }
}

/// Text given as the OS gives it (environment values, arguments): the string when the bytes
/// are valid UTF-8, else the bytes escaped (`\xNN` for each byte that is not printable ASCII,
/// `\\` and `\"` escaped), as the error says them.
pub fn decode_text(bytes: &[u8]) -> Result<String, String> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| bytes.escape_ascii().to_string())
}

/// [`resolve`] for values given as bytes (the environment as the OS gives it, arguments
/// encoded with `surrogateescape`). A value that is not valid UTF-8 is kept escaped and
/// marked; the parse reports it like any other invalid value and uses the fallback.
pub fn resolve_bytes(
    args: &BTreeMap<String, Vec<u8>>,
    env: &BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<&'static str, RawValue>, ConfigError> {
    let decode = |m: &BTreeMap<String, Vec<u8>>| {
        let mut bad = Vec::new();
        let text = m
            .iter()
            .map(|(k, v)| {
                let v = decode_text(v).unwrap_or_else(|escaped| {
                    bad.push(k.clone());
                    escaped
                });
                (k.clone(), v)
            })
            .collect::<BTreeMap<String, String>>();
        (text, bad)
    };
    let (args_text, bad_args) = decode(args);
    let (env_text, bad_env) = decode(env);
    let mut raw = resolve(&args_text, &env_text).map_err(|e| ConfigError {
        value_not_utf8: bad_args.iter().any(|k| k.to_lowercase() == e.variable),
        ..e
    })?;
    for (name, r) in raw.iter_mut() {
        let given = match r.source {
            Source::Argument => args
                .get(*name)
                .filter(|_| bad_args.iter().any(|k| k == name)),
            Source::Environment | Source::OtelEnvironment => {
                env.get(&r.origin).filter(|_| bad_env.contains(&r.origin))
            }
            Source::Default => None,
        };
        r.not_utf8 = given.cloned();
    }
    Ok(raw)
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
            let hint = closest_setting(key)
                .map(|s| format!("; did you mean {:?}?", s.to_lowercase()))
                .unwrap_or_default();
            return Err(ConfigError {
                setting: "",
                variable: key.to_lowercase(),
                value: args[key].clone(),
                rule: format!("not a ferrotrace setting{hint}"),
                value_not_utf8: false,
            });
        }
    }
    let mut out = BTreeMap::new();
    for s in SETTINGS {
        let raw = if let Some(v) = args.get(s.name) {
            RawValue {
                value: v.clone(),
                source: Source::Argument,
                origin: s.name.to_lowercase(),
                not_utf8: None,
            }
        } else if let Some(v) = env.get(s.env) {
            RawValue {
                value: v.clone(),
                source: Source::Environment,
                origin: s.env.to_string(),
                not_utf8: None,
            }
        } else if let Some(v) = s.otel_envs().find_map(|o| env.get(o).map(|v| (o, v))) {
            RawValue {
                value: v.1.clone(),
                source: Source::OtelEnvironment,
                origin: v.0.to_string(),
                not_utf8: None,
            }
        } else {
            RawValue {
                value: s.default.to_string(),
                source: Source::Default,
                origin: "default".to_string(),
                not_utf8: None,
            }
        };
        out.insert(s.name, raw);
    }
    Ok(out)
}

/// `FERROTRACE_*` variables that are not settings, each with the closest known name.
pub fn unknown_env_vars<V>(env: &BTreeMap<String, V>) -> Vec<(String, Option<&'static str>)> {
    env.keys()
        .filter(|k| k.starts_with("FERROTRACE_") && !k.starts_with("FERROTRACE__"))
        .filter(|k| !SETTINGS.iter().any(|s| s.env == k.as_str()))
        .map(|k| {
            (
                k.clone(),
                closest_setting(&k["FERROTRACE_".len()..])
                    .map(|n| setting(n).map(|s| s.env).unwrap_or(n)),
            )
        })
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
    ConfigError {
        setting: s.name,
        variable,
        value: raw.value.clone(),
        rule: s.rule.to_string(),
        value_not_utf8: raw.not_utf8.is_some(),
    }
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
    regex::Regex::new(&raw.value)
        .map(|_| Some(raw.value.clone()))
        .map_err(|e| ConfigError {
            rule: format!(
                "{} ({})",
                s.rule,
                e.to_string()
                    .lines()
                    .last()
                    .unwrap_or("syntax error")
                    .trim()
            ),
            ..err(raw, s)
        })
}

fn parse_choice<T: Copy>(
    raw: &RawValue,
    s: &Setting,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let v = raw.value.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| err(raw, s))
}

/// The parts of an `http://` or `https://` URL that the network settings check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlParts {
    /// `http` or `https`, lower-case.
    pub scheme: String,
    /// The host without brackets (`::1` for `[::1]`), lower-case.
    pub host: String,
    /// The path, empty or starting with `/` (query and fragment removed).
    pub path: String,
}

/// Splits an `http://` or `https://` URL; None when it is not one or has no host.
pub fn parse_http_url(url: &str) -> Option<UrlParts> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let path = rest[end..]
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .to_string();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some(UrlParts {
        scheme,
        host: host.to_ascii_lowercase(),
        path,
    })
}

/// The host is this machine: `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// Decodes `%XX` escapes (the W3C Baggage / `OTEL_RESOURCE_ATTRIBUTES` encoding).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `k=v,k2=v2` with percent-decoded keys and values; None when a pair is malformed.
pub fn parse_key_values(value: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        let k = percent_decode(k.trim())?;
        if k.is_empty() {
            return None;
        }
        out.push((k, percent_decode(v.trim())?));
    }
    Some(out)
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_url_setting(raw: &RawValue, s: &Setting) -> Result<UrlParts, ConfigError> {
    parse_http_url(&raw.value).ok_or_else(|| err(raw, s))
}

/// The full OTLP traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, any other
/// source as a base URL to which `/v1/traces` is appended (unless it already ends with it).
fn otlp_traces_url(raw: &RawValue, s: &Setting) -> Result<String, ConfigError> {
    let parts = parse_url_setting(raw, s)?;
    let url = raw.value.trim();
    if raw.origin == OTEL_TRACES_ENDPOINT
        || parts.path.trim_end_matches('/').ends_with("/v1/traces")
    {
        Ok(url.to_string())
    } else {
        Ok(format!("{}/v1/traces", url.trim_end_matches('/')))
    }
}

/// An output file: not empty, not a directory, and (unless `{pid}` is in the directory part)
/// in a directory that exists.
fn parse_output_path(raw: &RawValue, s: &Setting) -> Result<PathBuf, ConfigError> {
    let path = raw_path(raw);
    let dir_ok = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() && !d.to_string_lossy().contains("{pid}") => {
            d.is_dir()
        }
        _ => true,
    };
    if raw.value.trim().is_empty() || path.is_dir() || !dir_ok {
        Err(err(raw, s))
    } else {
        Ok(path)
    }
}

/// The spool directory: empty (the per-user default) or a path that is not an existing
/// non-directory.
fn parse_spool_dir(raw: &RawValue, s: &Setting) -> Result<PathBuf, ConfigError> {
    let path = match raw.not_utf8 {
        Some(_) => raw_path(raw),
        None => PathBuf::from(raw.value.trim()),
    };
    if !path.as_os_str().is_empty() && path.exists() && !path.is_dir() {
        Err(err(raw, s))
    } else {
        Ok(path)
    }
}

fn split_list(value: &str, sep: &str) -> Vec<String> {
    value
        .split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    /// Parses every raw value; returns the configuration or every error found.
    pub fn from_raw(raw: &BTreeMap<&'static str, RawValue>) -> Result<Config, Vec<ConfigError>> {
        let (cfg, errors) = Config::parse_lenient(raw);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// Parses every raw value, replacing each invalid one by its safe fallback: the default,
    /// except that a bad include/exclude/exclude-files pattern disables tracing (rather than
    /// tracing everything) and a bad redaction pattern is dropped, keeping the default
    /// redaction and the user's other patterns.
    ///
    /// A value that was not valid UTF-8 is reported and replaced by the setting's default
    /// before parsing (so a filter setting given such a value disables tracing too).
    pub fn parse_lenient(raw: &BTreeMap<&'static str, RawValue>) -> (Config, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let replaced;
        let not_text =
            |name: &str, r: &RawValue| r.not_utf8.is_some() && !PATH_SETTINGS.contains(&name);
        let raw = if raw.iter().any(|(n, r)| not_text(n, r)) {
            let mut fixed = raw.clone();
            for (name, r) in fixed.iter_mut().filter(|(n, r)| not_text(n, r)) {
                let s = setting(name).expect("known setting");
                errors.push(ConfigError {
                    rule: format!(
                        "valid UTF-8 text (this value is not; its bytes are shown escaped), and {}",
                        s.rule
                    ),
                    ..err(r, s)
                });
                *r = RawValue {
                    value: s.default.to_string(),
                    source: Source::Default,
                    origin: "default".to_string(),
                    not_utf8: None,
                };
            }
            replaced = fixed;
            &replaced
        } else {
            raw
        };
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
        let exporters = field!(
            "EXPORTER",
            |r: &RawValue, s: &Setting| {
                let list = split_list(&r.value.to_ascii_lowercase(), ",");
                if list.is_empty() || list.iter().any(|e| !KNOWN_EXPORTERS.contains(&e.as_str())) {
                    Err(err(r, s))
                } else {
                    Ok(list)
                }
            },
            vec!["jsonl".to_string()]
        );
        let redact_values = field!(
            "REDACT_VALUES",
            |r: &RawValue, s: &Setting| {
                let list = split_list(&r.value, ";;");
                for p in &list {
                    if let Err(e) = regex::Regex::new(p) {
                        return Err(ConfigError {
                            rule: format!(
                                "{} ({:?}: {})",
                                s.rule,
                                p,
                                e.to_string().lines().last().unwrap_or("").trim()
                            ),
                            ..err(r, s)
                        });
                    }
                }
                Ok(list)
            },
            split_list(&get("REDACT_VALUES").0.value, ";;")
                .into_iter()
                .filter(|p| regex::Regex::new(p).is_ok())
                .collect()
        );
        let pairs = |r: &RawValue, s: &Setting| parse_key_values(&r.value).ok_or_else(|| err(r, s));
        let otlp_headers = field!(
            "OTLP_HEADERS",
            |r: &RawValue, s: &Setting| match parse_key_values(&r.value) {
                Some(h)
                    if h.iter()
                        .all(|(k, v)| is_header_name(k) && !v.contains(['\r', '\n'])) =>
                    Ok(h),
                _ => Err(err(r, s)),
            },
            Vec::new()
        );
        let http_endpoint = {
            let (r, s) = get("HTTP_ENDPOINT");
            let wanted = exporters.iter().any(|e| e == "http");
            if r.value.trim().is_empty() && !wanted {
                String::new()
            } else if r.value.trim().is_empty() {
                errors.push(ConfigError {
                    rule: format!("{} (FERROTRACE_EXPORTER includes http)", s.rule),
                    ..err(r, s)
                });
                String::new()
            } else {
                match parse_url_setting(r, s) {
                    Ok(_) => r.value.trim().to_string(),
                    Err(e) => {
                        errors.push(e);
                        String::new()
                    }
                }
            }
        };
        let api_key = Secret(get("API_KEY").0.value.clone());
        let allow_insecure = field!("ALLOW_INSECURE", parse_bool, false);
        if exporters.iter().any(|e| e == "http") && !api_key.0.is_empty() && !allow_insecure {
            if let Some(u) = parse_http_url(&http_endpoint)
                .filter(|u| u.scheme == "http" && !is_loopback_host(&u.host))
            {
                let (r, _) = get("HTTP_ENDPOINT");
                errors.push(ConfigError {
                    setting: "HTTP_ENDPOINT",
                    variable: r.origin.clone(),
                    value: r.value.clone(),
                    value_not_utf8: r.not_utf8.is_some(),
                    rule: format!(
                        "FERROTRACE_API_KEY would be sent in clear over plain http to the non-loopback host {:?}; use https, or set FERROTRACE_ALLOW_INSECURE=1",
                        u.host
                    ),
                });
            }
        }
        let cfg = Config {
            enabled: field!("ENABLED", parse_bool, true),
            backend: field!(
                "BACKEND",
                |r, s| parse_choice(
                    r,
                    s,
                    &[
                        ("auto", Backend::Auto),
                        ("setprofile", Backend::SetProfile),
                        ("monitoring", Backend::Monitoring),
                        ("evalframe", Backend::EvalFrame)
                    ]
                ),
                Backend::Auto
            ),
            sample_rate: field!("SAMPLE_RATE", parse_rate, 1.0),
            function_sample_rate: field!("FUNCTION_SAMPLE_RATE", parse_rate, 1.0),
            honor_parent_sampled: field!("HONOR_PARENT_SAMPLED", parse_bool, true),
            max_depth: field!(
                "MAX_DEPTH",
                |r, s| parse_uint(r, s, 0, u64::from(u32::MAX)),
                0
            ) as u32,
            min_duration_us: field!(
                "MIN_DURATION_US",
                |r, s| parse_uint(r, s, 0, u64::MAX / 1000),
                0
            ),
            include: field!("INCLUDE", parse_regex, None),
            exclude: field!("EXCLUDE", parse_regex, None),
            exclude_files: field!("EXCLUDE_FILES", parse_regex, None),
            capture_only_cwd: field!("CAPTURE_ONLY_CWD", parse_bool, false),
            exclude_defaults: field!("EXCLUDE_DEFAULTS", parse_bool, true),
            capture: field!(
                "CAPTURE",
                |r, s| parse_choice(
                    r,
                    s,
                    &[
                        ("none", Capture::None),
                        ("args", Capture::Args),
                        ("return", Capture::Return),
                        ("all", Capture::All)
                    ]
                ),
                Capture::None
            ),
            preview: field!(
                "PREVIEW",
                |r, s| parse_choice(
                    r,
                    s,
                    &[
                        ("safe", PreviewMode::Safe),
                        ("fields", PreviewMode::Fields),
                        ("repr", PreviewMode::Repr)
                    ]
                ),
                PreviewMode::Safe
            ),
            max_str: field!("MAX_STR", |r, s| parse_uint(r, s, 8, 1 << 20), 256) as usize,
            max_items: field!("MAX_ITEMS", |r, s| parse_uint(r, s, 1, 10_000), 16) as usize,
            max_preview_depth: field!("MAX_PREVIEW_DEPTH", |r, s| parse_uint(r, s, 0, 32), 2)
                as usize,
            redact_keys: split_list(&get("REDACT_KEYS").0.value, ","),
            redact_values,
            exporters,
            output: field!("OUTPUT", parse_output_path, "ferrotrace.jsonl".into()),
            batch_size: field!("BATCH_SIZE", |r, s| parse_uint(r, s, 1, 1_000_000), 512) as usize,
            flush_interval_ms: field!(
                "FLUSH_INTERVAL_MS",
                |r, s| parse_uint(r, s, 1, 3_600_000),
                1000
            ),
            max_queue: field!(
                "MAX_QUEUE",
                |r, s| parse_uint(r, s, 1, 100_000_000),
                262_144
            ) as usize,
            shutdown_timeout_ms: field!(
                "SHUTDOWN_TIMEOUT_MS",
                |r, s| parse_uint(r, s, 0, 600_000),
                5000
            ),
            follow_threads: field!("FOLLOW_THREADS", parse_bool, true),
            service_name: get("SERVICE_NAME").0.value.clone(),
            chrome_output: field!(
                "CHROME_OUTPUT",
                parse_output_path,
                "ferrotrace.chrome.json".into()
            ),
            perfetto_output: field!(
                "PERFETTO_OUTPUT",
                parse_output_path,
                "ferrotrace.perfetto-trace".into()
            ),
            otlp_endpoint: field!(
                "OTLP_ENDPOINT",
                otlp_traces_url,
                "http://localhost:4318/v1/traces".to_string()
            ),
            otlp_headers,
            otlp_protocol: field!(
                "OTLP_PROTOCOL",
                |r, s| parse_choice(
                    r,
                    s,
                    &[
                        ("http/protobuf", OtlpProtocol::Protobuf),
                        ("http/json", OtlpProtocol::Json)
                    ]
                ),
                OtlpProtocol::Protobuf
            ),
            otlp_compression: field!(
                "OTLP_COMPRESSION",
                |r, s| parse_choice(
                    r,
                    s,
                    &[("none", Compression::None), ("gzip", Compression::Gzip)]
                ),
                Compression::Gzip
            ),
            otlp_timeout_ms: field!(
                "OTLP_TIMEOUT_MS",
                |r, s| parse_uint(r, s, 1, 600_000),
                10_000
            ),
            resource_attributes: field!("RESOURCE_ATTRIBUTES", pairs, Vec::new()),
            http_endpoint,
            api_key,
            allow_insecure,
            spool_dir: field!("SPOOL_DIR", parse_spool_dir, PathBuf::new()),
            spool_max_mb: field!("SPOOL_MAX_MB", |r, s| parse_uint(r, s, 0, 1 << 20), 64),
            debug_export_delay_ms: field!(
                "DEBUG_EXPORT_DELAY_MS",
                |r, s| parse_uint(r, s, 0, 60_000),
                0
            ),
            instrument: field!(
                "INSTRUMENT",
                parse_instrument,
                INSTRUMENTABLE.iter().map(|l| l.to_string()).collect()
            ),
            propagate: field!("PROPAGATE", parse_bool, true),
            capture_headers: field!("CAPTURE_HEADERS", parse_header_names, Vec::new()),
            capture_bodies: field!("CAPTURE_BODIES", parse_bool, false),
            excluded_urls: field!("EXCLUDED_URLS", parse_regex_list, Vec::new()),
            response_traceparent: field!("RESPONSE_TRACEPARENT", parse_bool, false),
        };
        let mut cfg = cfg;
        if errors.iter().any(|e| FILTER_SETTINGS.contains(&e.setting)) {
            cfg.enabled = false;
        }
        (cfg, errors)
    }

    /// True when `other` would export to the same places in the same way, so a running
    /// pipeline can be kept when only hook settings change.
    pub fn export_equivalent(&self, other: &Config) -> bool {
        let mut b = other.clone();
        b.enabled = self.enabled;
        b.backend = self.backend;
        b.sample_rate = self.sample_rate;
        b.function_sample_rate = self.function_sample_rate;
        b.honor_parent_sampled = self.honor_parent_sampled;
        b.max_depth = self.max_depth;
        b.min_duration_us = self.min_duration_us;
        b.include = self.include.clone();
        b.exclude = self.exclude.clone();
        b.exclude_files = self.exclude_files.clone();
        b.capture_only_cwd = self.capture_only_cwd;
        b.exclude_defaults = self.exclude_defaults;
        b.capture = self.capture;
        b.preview = self.preview;
        b.max_str = self.max_str;
        b.max_items = self.max_items;
        b.max_preview_depth = self.max_preview_depth;
        b.redact_keys = self.redact_keys.clone();
        b.redact_values = self.redact_values.clone();
        b.follow_threads = self.follow_threads;
        b.shutdown_timeout_ms = self.shutdown_timeout_ms;
        b.instrument = self.instrument.clone();
        b.propagate = self.propagate;
        b.capture_headers = self.capture_headers.clone();
        b.capture_bodies = self.capture_bodies;
        b.excluded_urls = self.excluded_urls.clone();
        b.response_traceparent = self.response_traceparent;
        b == *self
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
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn env_bytes(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn excluded_urls_are_regexes_also_read_from_otel() {
        let parse = |pairs: &[(&str, &str)]| {
            let raw = resolve(&BTreeMap::new(), &env(pairs)).unwrap();
            Config::parse_lenient(&raw)
        };
        let (cfg, errors) = parse(&[("OTEL_PYTHON_EXCLUDED_URLS", "^/health$, metrics")]);
        assert!(errors.is_empty());
        assert_eq!(cfg.excluded_urls, ["^/health$", "metrics"]);
        let (cfg, errors) = parse(&[
            ("OTEL_PYTHON_EXCLUDED_URLS", "x"),
            ("FERROTRACE_EXCLUDED_URLS", "^/ok,(unclosed"),
        ]);
        assert!(cfg.excluded_urls.is_empty());
        assert_eq!(errors.len(), 1);
        let msg = errors[0].to_string();
        assert!(
            msg.starts_with("FERROTRACE_EXCLUDED_URLS=\"^/ok,(unclosed\" is invalid")
                && msg.contains("(unclosed"),
            "{msg}"
        );
        let (cfg, errors) = parse(&[("FERROTRACE_RESPONSE_TRACEPARENT", "maybe")]);
        assert!(!cfg.response_traceparent);
        assert_eq!(errors[0].variable, "FERROTRACE_RESPONSE_TRACEPARENT");
    }

    #[test]
    fn instrument_takes_all_none_or_known_libraries() {
        let parse = |v: &str| {
            let raw = resolve(&BTreeMap::new(), &env(&[("FERROTRACE_INSTRUMENT", v)])).unwrap();
            Config::parse_lenient(&raw)
        };
        assert_eq!(parse("all").0.instrument.len(), INSTRUMENTABLE.len());
        assert!(parse("none").0.instrument.is_empty());
        assert_eq!(
            parse(" HTTPX, requests").0.instrument,
            ["requests", "httpx"]
        );
        let (cfg, errors) = parse("requests,curl");
        assert_eq!(
            cfg.instrument.len(),
            INSTRUMENTABLE.len(),
            "falls back to all"
        );
        assert_eq!(
            errors[0].to_string(),
            "FERROTRACE_INSTRUMENT=\"requests,curl\" is invalid: all, none, or a \
             comma-separated list of: requests, httpx, urllib3, aiohttp, urllib, flask, \
             django, starlette"
        );
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[("FERROTRACE_CAPTURE_HEADERS", "X-Request-Id, content-type")]),
        )
        .unwrap();
        let cfg = Config::from_raw(&raw).unwrap();
        assert_eq!(cfg.capture_headers, ["x-request-id", "content-type"]);
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[("FERROTRACE_CAPTURE_HEADERS", "a b")]),
        )
        .unwrap();
        assert_eq!(
            Config::from_raw(&raw).unwrap_err()[0].setting,
            "CAPTURE_HEADERS"
        );
        assert!(!Config::defaults().capture_bodies);
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[("FERROTRACE_CAPTURE_BODIES", "1")]),
        )
        .unwrap();
        assert!(Config::from_raw(&raw).unwrap().capture_bodies);
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[("FERROTRACE_CAPTURE_BODIES", "maybe")]),
        )
        .unwrap();
        assert_eq!(
            Config::from_raw(&raw).unwrap_err()[0].to_string(),
            "FERROTRACE_CAPTURE_BODIES=\"maybe\" is invalid: a boolean: 1/0, true/false, yes/no, on/off"
        );
    }

    #[test]
    fn a_value_that_is_not_utf8_is_rejected_and_falls_back_alone() {
        let raw = resolve_bytes(
            &BTreeMap::new(),
            &env_bytes(&[
                ("FERROTRACE_INCLUDE", b"^app\xe7"),
                ("FERROTRACE_MAX_DEPTH", b"7"),
                ("OTEL_SERVICE_NAME", b"svc\xff"),
            ]),
        )
        .unwrap();
        assert!(raw["INCLUDE"].not_utf8.is_some() && raw["SERVICE_NAME"].not_utf8.is_some());
        let (cfg, errors) = Config::parse_lenient(&raw);
        assert_eq!(errors.len(), 2, "{errors:?}");
        let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            msgs.iter().any(|m| m
                .starts_with(r#"FERROTRACE_INCLUDE=b"^app\xe7" is invalid: valid UTF-8"#)
                && m.contains("module::qualname")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with(r#"OTEL_SERVICE_NAME=b"svc\xff""#)),
            "{msgs:?}"
        );
        // The filter's fallback disables tracing; every other setting still applies.
        assert!(!cfg.enabled);
        assert_eq!(cfg.max_depth, 7);
        assert_eq!(cfg.service_name, "");
        assert!(
            errors[0].fallback().contains("disabled") || errors[1].fallback().contains("disabled")
        );
        // Arguments are checked the same way.
        let args = env_bytes(&[("MAX_DEPTH", b"\xe7")]);
        let raw = resolve_bytes(&args, &BTreeMap::new()).unwrap();
        let errs = Config::from_raw(&raw).unwrap_err();
        assert_eq!(errs[0].variable, "max_depth");
        assert_eq!(decode_text(b"ok").unwrap(), "ok");
        // A path is any bytes the OS allows: taken as given, shown escaped.
        let raw = resolve_bytes(
            &BTreeMap::new(),
            &env_bytes(&[("FERROTRACE_OUTPUT", b"t\xe7-{pid}.jsonl")]),
        )
        .unwrap();
        let cfg = Config::from_raw(&raw).unwrap();
        assert_eq!(
            cfg.output.as_os_str().as_encoded_bytes(),
            b"t\xe7-{pid}.jsonl"
        );
        assert_eq!(path_text(&cfg.output), r"t\xe7-{pid}.jsonl");
        assert_eq!(decode_text(b"a\"\xe7").unwrap_err(), r#"a\"\xe7"#);
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
        let e = env(&[
            ("FERROTRACE_SAMPLE_RATE", "0.5"),
            ("OTEL_SERVICE_NAME", "svc"),
            ("FERROTRACE_MAX_DEPTH", "7"),
        ]);
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
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[
                ("FERROTRACE_SAMPLE_RATE", "1.5"),
                ("FERROTRACE_INCLUDE", "("),
            ]),
        )
        .unwrap();
        let errs = Config::from_raw(&raw).unwrap_err();
        assert_eq!(errs.len(), 2);
        let msg = errs[0].to_string();
        assert!(
            msg.contains("FERROTRACE_SAMPLE_RATE")
                && msg.contains("1.5")
                && msg.contains("from 0 to 1"),
            "{msg}"
        );
        assert!(errs[1].to_string().contains("FERROTRACE_INCLUDE"));
    }

    #[test]
    fn otlp_endpoint_from_each_source() {
        let url = |pairs: &[(&str, &str)]| {
            Config::from_raw(&resolve(&BTreeMap::new(), &env(pairs)).unwrap())
                .unwrap()
                .otlp_endpoint
        };
        assert_eq!(url(&[]), "http://localhost:4318/v1/traces");
        assert_eq!(
            url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/base/")]),
            "http://c:4318/base/v1/traces"
        );
        assert_eq!(
            url(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x")
            ]),
            "https://c/custom"
        );
        assert_eq!(
            url(&[
                ("FERROTRACE_OTLP_ENDPOINT", "http://f:1/v1/traces"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://o")
            ]),
            "http://f:1/v1/traces"
        );
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://x"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        )
        .unwrap();
        let errs = Config::from_raw(&raw).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(
            errs.iter()
                .any(|e| e.variable == "OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.variable == "OTEL_EXPORTER_OTLP_PROTOCOL" && e.rule.contains("grpc")),
            "{errs:?}"
        );
    }

    #[test]
    fn headers_and_resource_attributes_are_percent_decoded() {
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x-tenant=t1"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,team=a%2Cb",
                ),
            ]),
        )
        .unwrap();
        let c = Config::from_raw(&raw).unwrap();
        assert_eq!(
            c.otlp_headers,
            vec![
                ("api-key".into(), "a b".into()),
                ("x-tenant".into(), "t1".into())
            ]
        );
        assert_eq!(c.resource_attributes[1], ("team".into(), "a,b".into()));
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[
                ("FERROTRACE_OTLP_HEADERS", "bad header=1"),
                ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
            ]),
        )
        .unwrap();
        assert_eq!(Config::from_raw(&raw).unwrap_err().len(), 2);
    }

    #[test]
    fn api_key_never_goes_in_clear_to_a_remote_host() {
        let check = |pairs: &[(&str, &str)]| {
            Config::from_raw(&resolve(&BTreeMap::new(), &env(pairs)).unwrap())
        };
        let remote = [
            ("FERROTRACE_EXPORTER", "http"),
            ("FERROTRACE_HTTP_ENDPOINT", "http://ingest.example/v1"),
            ("FERROTRACE_API_KEY", "k"),
        ];
        let errs = check(&remote).unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.contains("FERROTRACE_HTTP_ENDPOINT")
                && msg.contains("FERROTRACE_API_KEY")
                && msg.contains("FERROTRACE_ALLOW_INSECURE"),
            "{msg}"
        );
        let mut allowed = remote.to_vec();
        allowed.push(("FERROTRACE_ALLOW_INSECURE", "1"));
        assert!(check(&allowed).is_ok());
        assert!(check(&[
            remote[0],
            ("FERROTRACE_HTTP_ENDPOINT", "http://127.0.0.1:9/x"),
            remote[2]
        ])
        .is_ok());
        assert!(check(&[
            remote[0],
            ("FERROTRACE_HTTP_ENDPOINT", "https://ingest.example/v1"),
            remote[2]
        ])
        .is_ok());
        let missing = check(&[remote[0]]).unwrap_err();
        assert_eq!(missing[0].variable, "FERROTRACE_HTTP_ENDPOINT");
        assert!(
            !format!("{:?}", check(&allowed).unwrap()).contains("\"k\""),
            "the key never shows in Debug output"
        );
    }

    #[test]
    fn urls_and_loopback() {
        let u = parse_http_url("HTTP://user@[::1]:4318/v1/traces?x#y").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.path.as_str()),
            ("http", "::1", "/v1/traces")
        );
        assert!(
            is_loopback_host(&u.host)
                && is_loopback_host("127.0.0.2")
                && is_loopback_host("localhost")
        );
        assert!(!is_loopback_host("10.0.0.1") && !is_loopback_host("example.com"));
        assert!(parse_http_url("ftp://x").is_none() && parse_http_url("http://").is_none());
    }

    #[test]
    fn lenient_parse_falls_back_safely() {
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[
                ("FERROTRACE_SAMPLE_RATE", "x"),
                ("FERROTRACE_REDACT_VALUES", "("),
            ]),
        )
        .unwrap();
        let (c, errs) = Config::parse_lenient(&raw);
        assert_eq!(errs.len(), 2);
        assert!(c.enabled);
        assert_eq!(c.sample_rate, 1.0);
        assert!(c.redact_values.is_empty());
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[("FERROTRACE_REDACT_VALUES", "(;;ACME-[0-9]+")]),
        )
        .unwrap();
        let (c, errs) = Config::parse_lenient(&raw);
        assert_eq!(errs.len(), 1);
        assert_eq!(c.redact_values, ["ACME-[0-9]+"]);
        let raw = resolve(&BTreeMap::new(), &env(&[("FERROTRACE_EXCLUDE", "[")])).unwrap();
        let (c, errs) = Config::parse_lenient(&raw);
        assert_eq!(errs.len(), 1);
        assert!(
            !c.enabled,
            "a bad exclude must disable tracing, not trace everything"
        );
    }

    #[test]
    fn a_bad_redaction_pattern_keeps_the_default_redaction() {
        let raw = resolve(
            &BTreeMap::new(),
            &env(&[("FERROTRACE_REDACT_VALUES", "order-[0-9]+;;(")]),
        )
        .unwrap();
        let (c, errs) = Config::parse_lenient(&raw);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].fallback().contains("default redaction"),
            "{}",
            errs[0].fallback()
        );
        let (redactor, _) = crate::redact::Redactor::new(&c.redact_keys, &c.redact_values);
        let out = redactor.redact_value("mail alice@example.com about order-42");
        assert!(!out.contains("alice@example.com"), "{out}");
        assert!(
            !out.contains("order-42"),
            "only the broken pattern is dropped: {out}"
        );
    }

    #[test]
    fn sources_and_fallbacks_are_named() {
        let raw = resolve(
            &env(&[("CAPTURE", "args")]),
            &env(&[
                ("OTEL_SERVICE_NAME", "svc"),
                ("FERROTRACE_MAX_DEPTH", "x"),
                ("FERROTRACE_INCLUDE", "("),
            ]),
        )
        .unwrap();
        assert_eq!(raw["CAPTURE"].source, Source::Argument);
        assert_eq!(raw["SERVICE_NAME"].source, Source::OtelEnvironment);
        assert_eq!(raw["MAX_DEPTH"].source, Source::Environment);
        assert_eq!(raw["BATCH_SIZE"].source, Source::Default);
        let (c, errs) = Config::parse_lenient(&raw);
        assert!(!c.enabled);
        let notes: Vec<String> = errs.iter().map(ConfigError::fallback).collect();
        assert_eq!(
            notes,
            vec![
                "using the default \"0\"".to_string(),
                "tracing is disabled rather than tracing everything".to_string()
            ]
        );
    }

    #[test]
    fn output_paths_and_spool_dir_are_checked_on_disk() {
        let dir = std::env::temp_dir();
        let file = dir.join(format!("ferrotrace-config-test-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let check = |name: &str, value: &str| {
            let raw = resolve(&BTreeMap::new(), &env(&[(name, value)])).unwrap();
            Config::from_raw(&raw).is_ok()
        };
        let (d, f) = (dir.to_string_lossy(), file.to_string_lossy());
        assert!(check("FERROTRACE_OUTPUT", &format!("{d}/t.jsonl")));
        assert!(check("FERROTRACE_OUTPUT", "{pid}/t.jsonl"));
        assert!(!check("FERROTRACE_OUTPUT", &d));
        assert!(!check("FERROTRACE_OUTPUT", &format!("{f}/t.jsonl")));
        assert!(!check(
            "FERROTRACE_CHROME_OUTPUT",
            &format!("{d}/missing-dir-ft/x.json")
        ));
        assert!(check("FERROTRACE_SPOOL_DIR", &format!("{d}/not-yet-there")));
        assert!(!check("FERROTRACE_SPOOL_DIR", &f));
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn export_equivalence_ignores_hook_settings() {
        let a = Config::defaults();
        let mut b = a.clone();
        b.include = Some("x".into());
        b.capture = Capture::All;
        assert!(a.export_equivalent(&b));
        b.output = "other.jsonl".into();
        assert!(!a.export_equivalent(&b));
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let unknown = unknown_env_vars(&env(&[
            ("FERROTRACE_SAMPLERATE", "1"),
            ("FERROTRACE_OUTPUT", "x"),
        ]));
        assert_eq!(
            unknown,
            vec![(
                "FERROTRACE_SAMPLERATE".to_string(),
                Some("FERROTRACE_SAMPLE_RATE")
            )]
        );
        let e = resolve(&env(&[("OUTPT", "x")]), &BTreeMap::new()).unwrap_err();
        assert!(e.rule.contains("\"output\""), "{e}");
    }
}
