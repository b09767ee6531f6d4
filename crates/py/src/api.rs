//! The functions `ferrotrace._native` exposes to the Python package.

use crate::backends;
use crate::backends::monitoring;
use crate::capture::exception;
use crate::handoff;
use crate::process::diagnostics;
use crate::process::runtime::{self, Environment, HookState};
use crate::recorder;
use crate::session::{self, Session};
use ferrotrace_core::clock;
use ferrotrace_core::config::{self, Backend, Config, ConfigError};
use ferrotrace_core::config_view;
use ferrotrace_core::event::{ExceptionFate, SessionKind, SessionRecord};
use ferrotrace_core::functions::FunctionTable;
use ferrotrace_core::metrics::Counters;
use ferrotrace_core::redact::Redactor;
use ferrotrace_core::sampling::trace_id_ratio_sampled;
use ferrotrace_core::traceparent::parse_tracestate;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Adds the general functions to the module (`http_client` and `server` add their own).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_environment, m)?)?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(config_report, m)?)?;
    m.add_function(wrap_pyfunction!(add_diagnostics, m)?)?;
    m.add_function(wrap_pyfunction!(session_start, m)?)?;
    m.add_function(wrap_pyfunction!(session_end, m)?)?;
    m.add_function(wrap_pyfunction!(current_session, m)?)?;
    m.add_function(wrap_pyfunction!(session_var_set, m)?)?;
    m.add_function(wrap_pyfunction!(session_var_reset, m)?)?;
    m.add_function(wrap_pyfunction!(thread_bootstrap, m)?)?;
    m.add_class::<handoff::Handoff>()?;
    m.add_class::<handoff::Scope>()?;
    m.add_class::<crate::convert::PerfettoWriter>()?;
    m.add_function(wrap_pyfunction!(handoff_capture, m)?)?;
    m.add_function(wrap_pyfunction!(handoff_enter, m)?)?;
    m.add_function(wrap_pyfunction!(handoff_exit, m)?)?;
    m.add_function(wrap_pyfunction!(disown_inherited_calls, m)?)?;
    m.add_function(wrap_pyfunction!(say_diagnostic, m)?)?;
    m.add_function(wrap_pyfunction!(flush, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(top_functions, m)?)?;
    m.add_function(wrap_pyfunction!(before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(after_fork_parent, m)?)?;
    m.add_function(wrap_pyfunction!(after_fork_child, m)?)?;
    m.add_function(wrap_pyfunction!(sigterm_install, m)?)?;
    m.add_function(wrap_pyfunction!(sigterm_reclaim, m)?)?;
    m.add_function(wrap_pyfunction!(hook_installed, m)?)?;
    m.add_function(wrap_pyfunction!(per_process_output, m)?)?;
    m.add_function(wrap_pyfunction!(is_configured, m)?)?;
    m.add_function(wrap_pyfunction!(on_unwind, m)?)?;
    m.add_function(wrap_pyfunction!(backend_name, m)?)?;
    m.add_function(wrap_pyfunction!(monitoring_install, m)?)?;
    m.add_function(wrap_pyfunction!(monitoring_install_unwind, m)?)?;
    Ok(())
}

pub(crate) fn state() -> PyResult<&'static HookState> {
    runtime::state().ok_or_else(|| {
        PyRuntimeError::new_err("ferrotrace is not configured: call ferrotrace.configure() first")
    })
}

/// Records the interpreter facts the filters need: the standard library and site-packages
/// prefixes, the working directory and the Python version.
#[pyfunction]
fn set_environment(default_prefixes: Vec<String>, cwd: String, python_version: String) {
    // SAFETY: pyfunctions run with the GIL held.
    unsafe {
        runtime::set_environment(Environment {
            default_prefixes,
            cwd,
            python_version,
        })
    }
}

/// One line per invalid setting; in lenient mode each one also says which fallback applies.
fn messages(errors: &[ConfigError], lenient: bool) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            if lenient {
                format!("{e}; {}", e.fallback())
            } else {
                e.to_string()
            }
        })
        .collect()
}

/// Resolves `configure()`-style arguments (any case) over the environment and defaults.
/// Values are bytes as the OS gives them (arguments encoded with `surrogateescape`); one that
/// is not valid UTF-8 is an invalid value of its setting, reported like any other.
fn resolve(
    args: BTreeMap<String, Vec<u8>>,
    env: &BTreeMap<String, Vec<u8>>,
) -> PyResult<BTreeMap<&'static str, config::RawValue>> {
    let args: BTreeMap<String, Vec<u8>> = args
        .into_iter()
        .map(|(k, v)| (k.to_uppercase(), v))
        .collect();
    config::resolve_bytes(&args, env).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn unknown_warnings(env: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    config::unknown_env_vars(env)
        .into_iter()
        .map(|(name, close)| match close {
            Some(c) => format!("{name} is not a ferrotrace setting; did you mean {c}?"),
            None => format!("{name} is not a ferrotrace setting"),
        })
        .collect()
}

/// The error for a backend this interpreter cannot run, named as the user gave it. Its
/// lenient fallback is the default, `auto`.
fn backend_error(raw: &BTreeMap<&'static str, config::RawValue>, rule: &str) -> ConfigError {
    let r = &raw["BACKEND"];
    ConfigError {
        setting: "BACKEND",
        variable: match r.source {
            config::Source::Default => "FERROTRACE_BACKEND".to_string(),
            _ => r.origin.clone(),
        },
        value: r.value.clone(),
        rule: rule.to_string(),
        value_not_utf8: r.not_utf8.is_some(),
    }
}

/// Validates and applies a configuration. Strict mode raises ValueError listing every
/// invalid setting; lenient mode (`ferrotrace.auto`) applies the safe fallbacks and returns
/// the problems as warnings. Unknown `FERROTRACE_*` variables are always warnings.
/// `env` holds the variables that can matter (`FERROTRACE_*`, `OTEL_*`) as bytes. With
/// `output_pid`, the process is not the one the user launched: its output file gets the pid.
#[pyfunction]
#[pyo3(signature = (args, env, lenient, output_pid=None))]
fn configure(
    py: Python<'_>,
    args: BTreeMap<String, Vec<u8>>,
    env: BTreeMap<String, Vec<u8>>,
    lenient: bool,
    output_pid: Option<u32>,
) -> PyResult<Vec<String>> {
    let raw = resolve(args, &env)?;
    let (mut cfg, mut errors) = Config::parse_lenient(&raw);
    if let Some(pid) = output_pid {
        cfg.output = runtime::per_process_output(&cfg.output, pid);
    }
    match backends::resolve(cfg.backend) {
        Ok(b) => cfg.backend = b,
        Err(rule) => {
            errors.push(backend_error(&raw, rule));
            cfg.backend = Backend::SetProfile;
        }
    }
    let mut problems = messages(&errors, lenient);
    // Patterns that compile but match the empty string are dropped by the redactor.
    problems.extend(Redactor::new(&cfg.redact_keys, &cfg.redact_values).1);
    if !problems.is_empty() && !lenient {
        return Err(PyValueError::new_err(problems.join("\n")));
    }
    let mut warnings = problems;
    warnings.extend(unknown_warnings(&env));
    // SAFETY: pyfunctions run with the GIL held.
    unsafe {
        if let Some(w) = backends::choose(cfg.backend) {
            warnings.push(w);
            cfg.backend = backends::current();
        }
        apply(py, cfg)?;
        backends::reconfigured();
    }
    Ok(warnings)
}

/// Publishes `cfg`, keeping the running pipeline when it would export the same way.
unsafe fn apply(py: Python<'_>, cfg: Config) -> PyResult<()> {
    let previous = runtime::state();
    let reuse = previous
        .filter(|p| p.recording.load(Ordering::Relaxed) && p.config.export_equivalent(&cfg));
    if let (Some(prev), None) = (previous, reuse) {
        if prev.recording.swap(false, Ordering::Relaxed) {
            recorder::for_each(prev, |rec| rec.submit(prev));
            let timeout = Duration::from_millis(prev.config.shutdown_timeout_ms);
            let pipeline = Arc::clone(&prev.pipeline);
            py.allow_threads(move || pipeline.shutdown(timeout));
        }
    }
    let functions = previous.map_or_else(
        || Arc::new(FunctionTable::default()),
        |p| Arc::clone(&p.functions),
    );
    runtime::publish(cfg, functions, reuse).map_err(PyValueError::new_err)?;
    Ok(())
}

/// True once `configure` has succeeded in this process.
#[pyfunction]
fn is_configured() -> bool {
    runtime::state().is_some()
}

/// The effective value of every setting (secrets hidden; the given text when it is invalid)
/// and where it came from, for `ferrotrace config`: a list of (name, variable, value,
/// source, rule, error-or-None), plus warnings. The source of `backend=auto` also names the
/// backend it picks on this interpreter.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn config_report(
    args: BTreeMap<String, Vec<u8>>,
    env: BTreeMap<String, Vec<u8>>,
) -> PyResult<(
    Vec<(String, String, String, String, String, Option<String>)>,
    Vec<String>,
)> {
    let raw = resolve(args, &env)?;
    let (cfg, mut errors) = Config::parse_lenient(&raw);
    let resolved = match backends::resolve(cfg.backend) {
        Ok(b) => Some(b),
        Err(rule) => {
            errors.push(backend_error(&raw, rule));
            None
        }
    };
    let rows = config::SETTINGS
        .iter()
        .map(|s| {
            let r = &raw[s.name];
            let error = errors
                .iter()
                .find(|e| e.setting == s.name)
                .map(ToString::to_string);
            let mut origin = match r.source {
                config::Source::Default => "default".to_string(),
                _ => format!("{} ({})", r.source.as_str(), r.origin),
            };
            if let (Some(b), "BACKEND") = (resolved, s.name) {
                origin.push_str(&backend_note(cfg.backend, b));
            }
            let value = match &error {
                Some(_) => r.value.clone(),
                None => config_view::effective_value(&cfg, s.name).unwrap_or_default(),
            };
            (
                s.name.to_lowercase(),
                s.env.to_string(),
                value,
                origin,
                s.rule.to_string(),
                error,
            )
        })
        .collect();
    Ok((rows, unknown_warnings(&env)))
}

/// Adds messages to this process's diagnostics, written in its `meta` record. False when
/// tracing is not configured (there is no record to write them in).
#[pyfunction]
fn add_diagnostics(messages: Vec<String>) -> bool {
    let Some(state) = runtime::state() else {
        return false;
    };
    for m in &messages {
        state.diagnostics.push(m);
    }
    true
}

/// What `ferrotrace config` adds to the source of the backend setting: the backend `auto`
/// picks here, and how the backend gets along with other profilers.
fn backend_note(requested: Backend, resolved: Backend) -> String {
    let picked = match requested {
        Backend::Auto => format!(", picks {} here", backends::name(resolved)),
        _ => String::new(),
    };
    match resolved {
        Backend::SetProfile => {
            let sharers = if cfg!(Py_3_12) {
                "sys.setprofile (cProfile uses sys.monitoring here)"
            } else {
                "cProfile and sys.setprofile"
            };
            let exceptions = if cfg!(Py_3_12) {
                ""
            } else {
                "; CPython hides exceptions from profile functions before 3.12, so an \
                 exception that C code catches before Python code sees it (hasattr, \
                 next(it, default)), or any exception while a debugger or coverage tool \
                 traces the thread, is flagged without its type unless an except block \
                 shows it (auto never picks setprofile)"
            };
            format!(
                "{picked}; shares the thread's profile function with {sharers}: one set \
                 before is chained, one set after stops ferrotrace (with a warning){exceptions}"
            )
        }
        _ => format!("{picked}; coexists with cProfile and sys.setprofile"),
    }
}

/// Starts a session nested in the current one (or continuing `traceparent`, keeping its
/// `tracestate` when valid), samples it, records its start and installs the hook on this
/// thread when it is sampled. A `tracestate` without a valid `traceparent` is ignored.
#[pyfunction]
#[pyo3(signature = (tag, attrs, traceparent=None, process_wide=false, tracestate=None))]
fn session_start(
    py: Python<'_>,
    tag: String,
    attrs: Vec<(String, String)>,
    traceparent: Option<String>,
    process_wide: bool,
    tracestate: Option<String>,
) -> PyResult<Py<Session>> {
    let state = state()?;
    // SAFETY: pyfunctions run with the GIL held.
    unsafe {
        let rec = recorder::current(state)
            .ok_or_else(|| PyRuntimeError::new_err("no recorder for this thread"))?;
        let parent = if process_wide {
            None
        } else {
            session::current(py)
        };
        let decision = decide(
            state,
            rec,
            parent.as_ref(),
            traceparent.as_deref(),
            tracestate,
        );
        // Tags, attributes and thread names are the program's text: redacted here, before
        // anything is queued or handed back.
        let redactor = &state.redactor;
        let tag = redactor.redact_value(&tag).into_owned();
        let attrs = attrs
            .iter()
            .map(|(k, v)| redactor.redact_attribute(k, v))
            .collect();
        let s = begin(
            py,
            state,
            rec,
            decision,
            tag,
            attrs,
            process_wide,
            SessionKind::Internal,
        );
        let s = Bound::new(py, s)?;
        if process_wide {
            session::set_process_session(Some(&s));
        } else if s.get().info.sampled {
            session::track(&s);
        }
        Ok(s.unbind())
    }
}

/// How a new session continues what came before it, and whether it is recorded.
pub(crate) struct Decision {
    pub lineage: session::Lineage,
    /// Tracing is configured on and recording.
    pub enabled: bool,
    pub sampled: bool,
    pub tracestate: Option<String>,
}

/// Decides a new session's lineage (the valid `traceparent`, else `parent`'s span or the
/// call of it running here, else a new trace), its sampling (an honoured parent's flag,
/// else the trace-id ratio rule) and its `tracestate`; counts an invalid header.
///
/// # Safety
/// The GIL is held.
pub(crate) unsafe fn decide(
    state: &HookState,
    rec: &recorder::ThreadRecorder,
    parent: Option<&Bound<'_, Session>>,
    traceparent: Option<&str>,
    tracestate: Option<String>,
) -> Decision {
    let parent_span = parent.map(|p| {
        let p = p.get();
        rec.parent_for(p.info.key, p.info.span_id)
    });
    let parent_ref = parent.map(|p| p.get()).zip(parent_span);
    let (lineage, invalid) =
        session::lineage(traceparent, parent_ref, state.config.honor_parent_sampled);
    if invalid {
        Counters::add(&state.counters.invalid_traceparent, 1);
    }
    let tracestate = if lineage.remote_parent {
        tracestate.and_then(|t| {
            let parsed = parse_tracestate(&t);
            if parsed.is_none() {
                Counters::add(&state.counters.invalid_tracestate, 1);
            }
            parsed
        })
    } else if traceparent.is_some() {
        None
    } else {
        parent.and_then(|p| p.get().tracestate.clone())
    };
    let enabled = state.config.enabled && state.recording.load(Ordering::Relaxed);
    let sampled = enabled
        && lineage
            .inherited_sampled
            .unwrap_or_else(|| trace_id_ratio_sampled(lineage.trace_id, state.config.sample_rate));
    Decision {
        lineage,
        enabled,
        sampled,
        tracestate,
    }
}

/// Makes the session `decision` describes, with its (already redacted) tag and attributes;
/// a sampled one has its start queued and the hook installed on this thread.
///
/// # Safety
/// The GIL is held.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn begin(
    py: Python<'_>,
    state: &HookState,
    rec: &mut recorder::ThreadRecorder,
    decision: Decision,
    tag: String,
    attrs: Vec<(String, String)>,
    process_wide: bool,
    kind: SessionKind,
) -> Session {
    let sampled = decision.sampled;
    let mut s = session::new_session(
        decision.lineage,
        sampled,
        tag,
        attrs,
        rec.thread_id,
        process_wide,
    );
    s.tracestate = decision.tracestate;
    s.record.kind = kind;
    if sampled {
        let name = session::thread_name(py, rec.thread_id);
        s.record.thread_name = state.redactor.redact_value(&name).into_owned();
        Counters::add(&state.counters.sessions_started, 1);
        state.pipeline.submit_session(s.record.clone());
        backends::retain_on_current_thread(rec);
        s.hooked_thread.store(rec.thread_id, Ordering::Relaxed);
    } else if decision.enabled {
        Counters::add(&state.counters.sessions_unsampled, 1);
    }
    s
}

/// Ends a session: its calls still open on this thread are written as unfinished, its end
/// is recorded (with `exception`, the exception the session's block exited by, if any:
/// the raising spans it left carry `escaped`) and, if it was the last session on this
/// thread, the previous profiler is put back. In a forked child, a session the parent
/// started is only marked ended: its end is the parent's to record.
#[pyfunction]
#[pyo3(signature = (session, exception=None))]
fn session_end(
    py: Python<'_>,
    session: &Bound<'_, Session>,
    exception: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    end_session(py, session, exception, |_, _| {})
}

/// [`session_end`], with `finish` completing the end record (a served request's route,
/// status and exception) before it is queued.
pub(crate) fn end_session(
    py: Python<'_>,
    session: &Bound<'_, Session>,
    exception: Option<&Bound<'_, PyAny>>,
    finish: impl FnOnce(&HookState, &mut SessionRecord),
) -> PyResult<()> {
    let exception = exception.filter(|e| e.is_instance_of::<pyo3::exceptions::PyBaseException>());
    let s = session.get();
    if s.ended.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    // SAFETY: pyfunctions (and their helpers) run with the GIL held.
    unsafe { session::untrack(s.info.key) };
    let state = state()?;
    // SAFETY: pyfunctions run with the GIL held.
    unsafe {
        let Some(rec) = recorder::current(state) else {
            return Ok(());
        };
        // A session inherited through fork belongs to the parent, which records its end.
        let own = s.pid == std::process::id();
        if own && s.info.sampled && state.recording.load(Ordering::Relaxed) {
            let key = s.info.key;
            let root = s.info.span_id;
            // SAFETY: the GIL is held and `e` is a live exception instance.
            let token = exception.map(|e| exception::token(e.as_ptr()));
            if s.process_wide {
                recorder::for_each(state, |r| {
                    r.close_unfinished(state, |f| f.session_key == key);
                    r.session_ended(key, root, token);
                });
            } else {
                rec.close_unfinished(state, |f| f.session_key == key);
                rec.session_ended(key, root, token);
            }
            let mut record = s.record.clone();
            record.end_ns = Some(clock::now_ns());
            finish(state, &mut record);
            if let Some(e) = exception {
                // SAFETY: the GIL is held and `e` is a live exception instance.
                let info = record
                    .exception
                    .get_or_insert_with(|| exception::describe(e.as_ptr(), state));
                info.fate = ExceptionFate::Escaped;
            }
            state.pipeline.submit_session(record);
            Counters::add(&state.counters.sessions_ended, 1);
        }
        if s.hooked_thread.load(Ordering::Relaxed) == rec.thread_id {
            backends::release_on_current_thread(rec);
        }
        if s.process_wide && session::process_session(py).is_some_and(|p| p.is(session)) {
            session::set_process_session(None);
        }
    }
    Ok(())
}

/// The session in effect in this context (task, thread, or the process-wide one).
#[pyfunction]
fn current_session(py: Python<'_>) -> Option<Bound<'_, Session>> {
    // SAFETY: pyfunctions run with the GIL held.
    unsafe { session::current(py) }
}

/// Makes `value` (a session or None) the session of the current context; returns the token
/// that `session_var_reset` takes. Sessions are entered only through this, so the hook knows
/// when to look the variable up again.
#[pyfunction]
fn session_var_set(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<PyObject> {
    // SAFETY: pyfunctions run with the GIL held.
    unsafe { session::set_var(py, value) }
}

/// Restores the session variable to what it was before the `session_var_set` that gave
/// `token` (ValueError when the token was made in another context).
#[pyfunction]
fn session_var_reset(token: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: pyfunctions run with the GIL held.
    unsafe { session::reset_var(token) }
}

/// Called by the `threading.setprofile` target of a process-wide session (setprofile
/// backend) on a new thread's first event, once it has put back the thread profiler that
/// was set before: installs the native hook there, which chains that profiler.
#[pyfunction]
#[pyo3(signature = (*_args))]
fn thread_bootstrap(py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
    let Some(state) = runtime::state() else {
        return;
    };
    // SAFETY: pyfunctions run with the GIL held.
    unsafe {
        if state.recording.load(Ordering::Relaxed) && session::process_session(py).is_some() {
            backends::ensure_on_current_thread(state);
        }
    }
}

/// The session in effect here and the innermost recorded call, for work handed to another
/// thread or process; None when no sampled session runs or `FERROTRACE_FOLLOW_THREADS` is 0.
#[pyfunction]
fn handoff_capture(py: Python<'_>) -> Option<handoff::Handoff> {
    let state = runtime::state()?;
    if !state.recording.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: pyfunctions run with the GIL held.
    unsafe { handoff::capture(py, state) }
}

/// Runs the rest of this thread's work (until `handoff_exit`) in the handed-over session.
#[pyfunction]
fn handoff_enter(py: Python<'_>, handoff: &handoff::Handoff) -> PyResult<handoff::Scope> {
    let state = state()?;
    // SAFETY: pyfunctions run with the GIL held.
    unsafe { handoff::enter(py, state, handoff) }
}

/// Puts back the session and parent this thread had before `handoff_enter`.
#[pyfunction]
fn handoff_exit(py: Python<'_>, mut scope: PyRefMut<'_, handoff::Scope>) -> PyResult<()> {
    // SAFETY: pyfunctions run with the GIL held.
    unsafe { handoff::exit(py, &mut scope) }
}

/// In a multiprocessing child forked by the parent: the calls open on this thread were the
/// parent's and never return here; they are not recorded (nor parents of the child's).
#[pyfunction]
fn disown_inherited_calls() {
    // SAFETY: pyfunctions run with the GIL held.
    if let Some(rec) = recorder::existing() {
        rec.disown_open_calls();
    }
}

/// Says `note` once on the `ferrotrace` logger (a warning when `conflict`, else info) and
/// keeps it for the `diagnostics` of the `meta` record.
#[pyfunction(name = "diagnostic")]
fn say_diagnostic(py: Python<'_>, note: &str, conflict: bool) {
    if conflict {
        diagnostics::conflict(py, note);
    } else {
        diagnostics::info(py, note);
    }
}

/// Hands every thread's buffered records to the export thread and waits up to `timeout`
/// seconds for all of them to be exported. Returns False if the deadline passed first.
#[pyfunction]
fn flush(py: Python<'_>, timeout: f64) -> bool {
    let Some(state) = runtime::state() else {
        return true;
    };
    // SAFETY: pyfunctions run with the GIL held; the closure runs no Python code.
    unsafe { recorder::for_each(state, |rec| rec.submit(state)) };
    let pipeline = Arc::clone(&state.pipeline);
    py.allow_threads(move || pipeline.flush(Duration::from_secs_f64(timeout.max(0.0))))
}

/// Stops recording, ends the process-wide session, writes open calls as unfinished, exports
/// everything queued and the final `meta` record, waiting at most `timeout` seconds.
#[pyfunction]
fn shutdown(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    shutdown_with(py, Duration::from_secs_f64(timeout.max(0.0)), true)
}

/// The exception the interpreter printed as the one that ended the program
/// (`sys.last_exc`, 3.12+, else `sys.last_value`), if any.
fn uncaught_exception(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    let sys = py.import("sys").ok()?;
    ["last_exc", "last_value"]
        .into_iter()
        .find_map(|name| sys.getattr(name).ok().filter(|v| !v.is_none()))
}

/// [`shutdown`]; with `release_gil` false the other threads stay stopped while the export
/// thread finishes (the SIGTERM path: the program must not run on).
fn shutdown_with(py: Python<'_>, timeout: Duration, release_gil: bool) -> PyResult<bool> {
    let Some(state) = runtime::state() else {
        return Ok(true);
    };
    // SAFETY: pyfunctions run with the GIL held.
    unsafe {
        if let Some(ps) = session::process_session(py) {
            let escaped = uncaught_exception(py);
            end_session(py, &ps, escaped.as_ref(), |_, _| {})?;
        }
        for open in session::take_open() {
            session_end(py, open.bind(py), None)?;
        }
        if !state.recording.swap(false, Ordering::Relaxed) {
            return Ok(true);
        }
        recorder::for_each(state, |rec| {
            rec.close_unfinished(state, |_| true);
            rec.submit(state);
        });
        if let Some(rec) = recorder::existing() {
            backends::remove_from_current_thread(rec);
        }
    }
    let pipeline = Arc::clone(&state.pipeline);
    if !release_gil {
        return Ok(pipeline.shutdown(timeout));
    }
    Ok(py.allow_threads(move || pipeline.shutdown(timeout)))
}

/// The counters: recorded, exported, dropped (total and by reason), export errors, bytes
/// written, sessions, decisions, functions, and the output path.
#[pyfunction]
fn stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    if let Some(state) = runtime::state() {
        for (name, value) in state.counters.snapshot().fields() {
            d.set_item(name, value)?;
        }
        d.set_item("functions", state.functions.len())?;
        d.set_item("output", &state.output)?;
        d.set_item("diagnostics", state.diagnostics.messages())?;
        d.set_item("recording", state.recording.load(Ordering::Relaxed))?;
        d.set_item("shutdown_timeout_ms", state.config.shutdown_timeout_ms)?;
        let errors: Vec<String> = state
            .pipeline
            .errors()
            .into_iter()
            .map(|(exporter, cause)| format!("{exporter}: {cause}"))
            .collect();
        d.set_item("export_error_causes", errors)?;
    }
    Ok(d)
}

/// The `n` functions with the most inclusive time exported so far:
/// (module, qualname, calls, total_ns, self_ns).
#[pyfunction]
fn top_functions(py: Python<'_>, n: usize) -> Vec<(String, String, u64, u64, u64)> {
    let Some(state) = runtime::state() else {
        return Vec::new();
    };
    let pipeline = Arc::clone(&state.pipeline);
    let top = py.allow_threads(move || pipeline.top_functions(n, Duration::from_secs(5)));
    top.into_iter()
        .filter_map(|(id, t)| {
            state.functions.get(id).map(|f| {
                (
                    f.module.clone(),
                    f.qualname.clone(),
                    t.calls,
                    t.total_ns,
                    t.self_ns,
                )
            })
        })
        .collect()
}

/// Pipelines parked by [`before_fork`], resumed by [`after_fork_parent`] (a fork may
/// reconfigure meanwhile; each resume takes back what its park stopped).
static PARKED: std::sync::Mutex<Vec<Arc<ferrotrace_core::pipeline::Pipeline>>> =
    std::sync::Mutex::new(Vec::new());

/// Longest wait for the export thread to stop before a fork.
const FORK_PARK_TIMEOUT: Duration = Duration::from_secs(3);

/// Before `os.fork()`: stops ferrotrace's threads (the export thread, the network senders,
/// the SIGTERM watcher) so that the process forks with the program's threads only; CPython
/// 3.12+ warns about forking a multi-threaded process. Queued records stay queued.
#[pyfunction]
fn before_fork(py: Python<'_>) {
    if let Some(state) = runtime::state() {
        let pipeline = Arc::clone(&state.pipeline);
        let parked = Arc::clone(&pipeline);
        py.allow_threads(move || pipeline.park(FORK_PARK_TIMEOUT));
        PARKED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(parked);
    }
    crate::process::sigterm::park();
}

/// After `os.fork()`, in the parent: ferrotrace's threads run again and export what was
/// queued before and during the fork. CPython 3.13+ counts the threads only after the
/// after-fork callbacks (3.12 before them), so there the threads start from a pending call,
/// which the main thread runs at its next bytecode, once `os.fork()` has returned.
#[pyfunction]
fn after_fork_parent() {
    #[cfg(Py_3_13)]
    {
        extern "C" fn later(_: *mut std::os::raw::c_void) -> std::os::raw::c_int {
            resume_after_fork();
            0
        }
        // SAFETY: a plain C API call; `later` needs no argument.
        if unsafe { pyo3::ffi::Py_AddPendingCall(Some(later), std::ptr::null_mut()) } == 0 {
            return;
        }
    }
    resume_after_fork();
}

fn resume_after_fork() {
    crate::process::sigterm::resume();
    let parked = PARKED.lock().unwrap_or_else(|e| e.into_inner()).pop();
    if let Some(pipeline) = parked {
        pipeline.resume();
    }
}

/// Under `ferrotrace run` and `ferrotrace.auto`: when SIGTERM has the default disposition,
/// a SIGTERM first exports what was recorded and the final record (see `sigterm`). Returns
/// whether it was installed (not when the program handles or ignores SIGTERM).
#[pyfunction]
fn sigterm_install() -> bool {
    crate::process::sigterm::install(shutdown_with)
}

/// After the program set SIGTERM back to its default disposition: the handler installed by
/// `sigterm_install` is put back (see `sigterm::reclaim`). True when it is in place.
#[pyfunction]
fn sigterm_reclaim() -> bool {
    crate::process::sigterm::reclaim()
}

/// In a forked child: a fresh export thread and output (`.PID` added to the file name), no
/// copy of the parent's queued records, new span ids for calls still open, and a child
/// session under the parent's process-wide session.
#[pyfunction]
fn after_fork_child(py: Python<'_>) -> PyResult<()> {
    // The parent's parked pipelines are the parent's: never resumed (nor dropped) here.
    std::mem::forget(std::mem::take(
        &mut *PARKED.lock().unwrap_or_else(|e| e.into_inner()),
    ));
    let done = start_forked_child(py);
    ferrotrace_core::fork::resume();
    crate::process::sigterm::after_fork_child();
    done
}

/// [`after_fork_child`]'s work, while the hook is paused (see `ferrotrace_core::fork`).
fn start_forked_child(py: Python<'_>) -> PyResult<()> {
    let Some(prev) = runtime::state() else {
        return Ok(());
    };
    if !prev.recording.load(Ordering::Relaxed) {
        return Ok(());
    }
    let pid = std::process::id();
    let mut cfg = prev.config.clone();
    cfg.output = runtime::per_process_output(&cfg.output, pid);
    cfg.chrome_output = runtime::per_process_output(&cfg.chrome_output, pid);
    cfg.perfetto_output = runtime::per_process_output(&cfg.perfetto_output, pid);
    // SAFETY: pyfunctions run with the GIL held; right after fork only this thread exists.
    unsafe {
        recorder::forget_other_threads();
        let state = runtime::publish(cfg, Arc::new(prev.functions.copy()), None)
            .map_err(PyRuntimeError::new_err)?;
        if let Some(rec) = recorder::existing() {
            rec.rebirth_after_fork(state);
        }
        if let Some(parent) = session::process_session(py) {
            let p = parent.get();
            let lineage = session::Lineage {
                trace_id: p.info.trace_id,
                parent_span_id: p.info.span_id,
                remote_parent: false,
                inherited_sampled: Some(p.info.sampled),
            };
            let mut child = session::new_session(
                lineage,
                p.info.sampled,
                p.record.tag.clone(),
                p.record.attrs.clone(),
                p.record.thread_id,
                true,
            );
            child.record.thread_name = p.record.thread_name.clone();
            child
                .hooked_thread
                .store(p.hooked_thread.load(Ordering::Relaxed), Ordering::Relaxed);
            p.ended.store(true, Ordering::Relaxed);
            if child.info.sampled {
                Counters::add(&state.counters.sessions_started, 1);
                state.pipeline.submit_session(child.record.clone());
            }
            session::set_process_session(Some(&Bound::new(py, child)?));
        }
    }
    Ok(())
}

/// True when ferrotrace's hook is the calling thread's profile function.
#[pyfunction]
fn hook_installed() -> bool {
    // SAFETY: pyfunctions run with the GIL held.
    unsafe { backends::installed_here() }
}

/// The output path a process other than the first one writes to.
#[pyfunction]
fn per_process_output(template: &str, pid: u32) -> String {
    config::path_text(&runtime::per_process_output(
        std::path::Path::new(template),
        pid,
    ))
}

/// `sys.monitoring` `PY_UNWIND` callback (registered on CPython 3.12+): lets the hook see
/// the exception leaving a recorded frame.
#[pyfunction]
fn on_unwind(_code: &Bound<'_, PyAny>, _offset: &Bound<'_, PyAny>, exc: &Bound<'_, PyAny>) {
    // SAFETY: pyfunctions run with the GIL held; `exc` is alive for the call.
    unsafe { crate::backends::setprofile::on_unwind(exc.as_ptr()) }
}

/// The backend delivering calls: "monitoring" or "setprofile".
#[pyfunction]
fn backend_name() -> &'static str {
    // SAFETY: pyfunctions run with the GIL held.
    backends::name(unsafe { backends::current() })
}

/// Registers the monitoring backend's callbacks on the `sys.monitoring` tool id the caller
/// claimed (CPython 3.12+).
#[pyfunction]
fn monitoring_install(py: Python<'_>, tool: i32) -> PyResult<()> {
    monitoring::install(py, tool)
}

/// Under the setprofile backend on CPython 3.12+: `PY_UNWIND` on `tool` (its callback
/// registered by the caller) is switched on only while a sampled session runs.
#[pyfunction]
fn monitoring_install_unwind(py: Python<'_>, tool: i32) -> PyResult<()> {
    monitoring::install_unwind_only(py, tool)
}
