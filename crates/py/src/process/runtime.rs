//! The process-wide state the hook reads: configuration, filters, the function table,
//! counters and the pipeline.
//!
//! A `HookState` is immutable once published. Reconfiguring or forking publishes a new one
//! and leaks the old, so a hook that is mid-event on another thread never sees it freed.

use crate::process::gil_cell::GilCell;
use ferrotrace_core::clock;
use ferrotrace_core::config::Config;
use ferrotrace_core::exporter::{Diagnostics, ExportContext, MetaInfo};
use ferrotrace_core::filter::{Filter, FilterSpec};
use ferrotrace_core::functions::FunctionTable;
use ferrotrace_core::metrics::Counters;
use ferrotrace_core::pipeline::{Pipeline, PipelineOptions};
use ferrotrace_core::preview::Limits;
use ferrotrace_core::redact::Redactor;
use ferrotrace_core::server::ExcludedUrls;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Everything the hook needs, resolved once.
pub struct HookState {
    pub config: Config,
    pub filter: Filter,
    pub functions: Arc<FunctionTable>,
    pub counters: Arc<Counters>,
    pub pipeline: Arc<Pipeline>,
    /// Cached decisions made under another generation are recomputed.
    pub generation: u32,
    /// `FERROTRACE_MIN_DURATION_US` in clock ticks (spans are timed in ticks).
    pub min_duration_ticks: u64,
    /// `FERROTRACE_FLUSH_INTERVAL_MS` in clock ticks.
    pub flush_interval_ticks: u64,
    /// Cleared by shutdown: the hook stops recording.
    pub recording: AtomicBool,
    /// Where this process writes (for the summary).
    pub output: String,
    /// Applied to previews and exception messages before they are queued.
    pub redactor: Redactor,
    /// Preview bounds from the configuration.
    pub limits: Limits,
    /// This process's diagnostics, written in its `meta` record (shared with the pipeline).
    pub diagnostics: Arc<Diagnostics>,
    /// Served request paths that get no session (`FERROTRACE_EXCLUDED_URLS`).
    pub excluded_urls: ExcludedUrls,
}

static STATE: AtomicPtr<HookState> = AtomicPtr::new(std::ptr::null_mut());

/// Inputs the Python side resolves (paths it knows from `sysconfig`, the interpreter version).
#[derive(Clone, Default)]
pub struct Environment {
    pub default_prefixes: Vec<String>,
    pub cwd: String,
    pub python_version: String,
}

static ENVIRONMENT: GilCell<Option<Environment>> = GilCell::new(None);

/// The published state, if tracing has been configured.
#[inline(always)]
pub fn state() -> Option<&'static HookState> {
    // SAFETY: published states are leaked, never freed, so the reference is 'static.
    unsafe { STATE.load(Ordering::Acquire).as_ref() }
}

/// Remembers the interpreter facts used when building states.
///
/// # Safety
/// The GIL is held.
pub unsafe fn set_environment(env: Environment) {
    *ENVIRONMENT.get() = Some(env);
}

/// Output path for a process that is not the one the user named: `{pid}` is expanded by the
/// exporter; a template without it gets `.PID` before its extension. A device (`-o
/// /dev/null`) is every process's output as it is: `/dev/null.PID` would be a new file in
/// `/dev`.
pub fn per_process_output(template: &Path, pid: u32) -> PathBuf {
    use std::os::unix::fs::FileTypeExt;
    let bytes = template.as_os_str().as_encoded_bytes();
    let device = std::fs::metadata(template).is_ok_and(|m| m.file_type().is_char_device());
    if device || bytes.windows(5).any(|w| w == b"{pid}") {
        return template.to_path_buf();
    }
    match (template.file_stem(), template.extension()) {
        (Some(stem), Some(ext)) => {
            let mut name = stem.to_os_string();
            name.push(format!(".{pid}."));
            name.push(ext);
            template.with_file_name(name)
        }
        _ => {
            let mut name = template.as_os_str().to_os_string();
            name.push(format!(".{pid}"));
            PathBuf::from(name)
        }
    }
}

/// Builds and publishes a new state for `config`.
///
/// `functions` carries the table over (ids cached on code objects stay valid). `reuse` keeps
/// the previous state's pipeline (when only hook settings changed); otherwise a new export
/// thread starts.
///
/// # Safety
/// The GIL is held.
pub unsafe fn publish(
    config: Config,
    functions: Arc<FunctionTable>,
    reuse: Option<&HookState>,
) -> Result<&'static HookState, String> {
    let env = ENVIRONMENT.get().clone().unwrap_or_default();
    let filter = Filter::new(FilterSpec {
        include: config.include.clone(),
        exclude: config.exclude.clone(),
        exclude_files: config.exclude_files.clone(),
        default_prefixes: env.default_prefixes.clone(),
        exclude_defaults: config.exclude_defaults,
        only_under: config
            .capture_only_cwd
            .then(|| format!("{}/", env.cwd.trim_end_matches('/'))),
    })
    .map_err(|e| format!("invalid filter: {e}"))?;
    let pid = std::process::id();
    let (pipeline, counters, output, diagnostics) = match reuse {
        Some(prev) => (
            Arc::clone(&prev.pipeline),
            Arc::clone(&prev.counters),
            prev.output.clone(),
            Arc::clone(&prev.diagnostics),
        ),
        None => start_pipeline(&config, &env, Arc::clone(&functions), pid)?,
    };
    let previous = STATE.load(Ordering::Acquire).as_ref();
    let generation = previous.map_or(1, |p| p.generation.wrapping_add(1).max(1));
    // Malformed patterns were already reported and dropped by the configuration parser.
    let (redactor, _) = Redactor::new(&config.redact_keys, &config.redact_values);
    let limits = Limits {
        max_str: config.max_str,
        max_items: config.max_items,
        max_depth: config.max_preview_depth,
    };
    let state = Box::leak(Box::new(HookState {
        excluded_urls: ExcludedUrls::new(&config.excluded_urls),
        redactor,
        limits,
        min_duration_ticks: clock::ns_to_ticks_span(config.min_duration_us.saturating_mul(1000)),
        flush_interval_ticks: clock::ns_to_ticks_span(
            config.flush_interval_ms.saturating_mul(1_000_000),
        ),
        config,
        filter,
        functions,
        counters,
        pipeline,
        generation,
        recording: AtomicBool::new(true),
        output,
        diagnostics,
    }));
    STATE.store(state, Ordering::Release);
    Ok(state)
}

/// What a new pipeline brings to a state: the pipeline, its counters, the output path as
/// text and the diagnostics its `meta` record will hold.
type Started = (Arc<Pipeline>, Arc<Counters>, String, Arc<Diagnostics>);

fn start_pipeline(
    config: &Config,
    env: &Environment,
    functions: Arc<FunctionTable>,
    pid: u32,
) -> Result<Started, String> {
    let counters = Arc::new(Counters::default());
    let diagnostics = Arc::new(Diagnostics::default());
    let exporters =
        ferrotrace_exporters::build_exporters_with_counters(config, pid, Arc::clone(&counters))?;
    let ctx = ExportContext {
        functions,
        pid,
        meta: MetaInfo {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            python_version: env.python_version.clone(),
            config_digest: config.digest(),
            service_name: config.service_name.clone(),
            diagnostics: Arc::clone(&diagnostics),
        },
        shutdown_deadline: None,
    };
    let options = PipelineOptions {
        batch_size: config.batch_size,
        max_queue: config.max_queue,
        flush_interval: Duration::from_millis(config.flush_interval_ms),
        debug_export_delay: Duration::from_millis(config.debug_export_delay_ms),
    };
    let pipeline = Pipeline::start(options, exporters, ctx, Arc::clone(&counters))
        .map_err(|e| format!("cannot start the export thread: {e}"))?;
    let output = ferrotrace_core::config::path_text(&ferrotrace_exporters::output::expand_path(
        &config.output,
        pid,
    ));
    Ok((Arc::new(pipeline), counters, output, diagnostics))
}
