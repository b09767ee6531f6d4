//! Served HTTP requests (the WSGI and ASGI integrations, `ferrotrace.integrations`): one
//! session of kind `server` per sampled request. The request is read here from the WSGI
//! environ or the ASGI scope, in one call: an excluded path or an unsampled request costs
//! that call and nothing else. Attributes are redacted before the start record is queued.

use crate::api::{self, begin, decide};
use crate::capture::exception;
use crate::process::runtime;
use crate::recorder;
use crate::session::{self, Request, Session};
use ferrotrace_core::event::{SessionKind, SessionStatus};
use ferrotrace_core::metrics::Counters;
use ferrotrace_core::server::{tag, ServerRequest};
use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyModule, PyString};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// An object as text: a `str` (lone surrogates replaced), `bytes` decoded as UTF-8
/// (invalid bytes replaced), anything else empty.
fn text(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(s) = obj.downcast::<PyString>() {
        s.to_string_lossy().into_owned()
    } else if let Ok(b) = obj.downcast::<PyBytes>() {
        String::from_utf8_lossy(b.as_bytes()).into_owned()
    } else {
        String::new()
    }
}

/// A WSGI "native string" (bytes carried as Latin-1 code points) as the UTF-8 text it
/// encodes; a string with other characters is kept as it is.
fn wsgi_text(s: String) -> String {
    if s.is_ascii() {
        return s;
    }
    let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
    match bytes {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => s,
    }
}

/// `host[:port]` split; the port is None when absent or not a number.
fn split_host(hostport: &str) -> (String, Option<u16>) {
    if let Some(v6) = hostport.strip_prefix('[') {
        if let Some((h, rest)) = v6.split_once(']') {
            return (
                h.to_string(),
                rest.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (hostport.to_string(), None),
    }
}

/// Starts the session of a request whose first facts are known (method, path, propagation
/// headers): None when tracing is off, the path is excluded, or the request is unsampled
/// while no sampled process-wide session runs. An unsampled request under a sampled
/// process-wide session gets an unsampled session, so that its calls stay out of the
/// process's trace. `rest` fills in the other attributes, only for a session.
fn start(
    py: Python<'_>,
    method: &str,
    path: &str,
    traceparent: Option<&str>,
    tracestate: Option<String>,
    rest: impl FnOnce(&mut ServerRequest),
) -> PyResult<Option<Py<Session>>> {
    let Some(state) = runtime::state() else {
        return Ok(None);
    };
    if !state.config.enabled
        || !state.recording.load(Ordering::Relaxed)
        || state.excluded_urls.excludes(path)
    {
        return Ok(None);
    }
    // SAFETY: pyfunctions run with the GIL held.
    unsafe {
        let Some(rec) = recorder::current(state) else {
            return Ok(None);
        };
        let decision = decide(state, rec, None, traceparent, tracestate);
        if !decision.sampled && !session::process_wide_sampled() {
            Counters::add(&state.counters.sessions_unsampled, 1);
            return Ok(None);
        }
        let mut request = ServerRequest {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            ..Default::default()
        };
        if decision.sampled {
            rest(&mut request);
        }
        let attrs = request.attributes(&state.redactor, &state.config.capture_headers);
        let traceresponse = state.config.response_traceparent && decision.sampled;
        let method = request.method;
        let tag = state.redactor.redact_value(&method).into_owned();
        let mut s = begin(
            py,
            state,
            rec,
            decision,
            tag,
            attrs,
            false,
            SessionKind::Server,
        );
        s.request = Some(Box::new(Request {
            method,
            route: Mutex::new(None),
            traceresponse,
            error: Mutex::new(None),
        }));
        let s = Bound::new(py, s)?;
        if s.get().info.sampled {
            session::track(&s);
        }
        Ok(Some(s.unbind()))
    }
}

/// The environ's value of `key` as text (empty when missing).
fn environ_text(environ: &Bound<'_, PyDict>, key: &str) -> String {
    environ
        .get_item(key)
        .ok()
        .flatten()
        .map(|v| text(&v))
        .unwrap_or_default()
}

/// The environ key of a request header (`x-request-id` → `HTTP_X_REQUEST_ID`; the two
/// headers WSGI keeps without the prefix keep theirs).
fn environ_key(header: &str) -> String {
    let upper = header.to_ascii_uppercase().replace('-', "_");
    match upper.as_str() {
        "CONTENT_TYPE" | "CONTENT_LENGTH" => upper,
        _ => format!("HTTP_{upper}"),
    }
}

/// Starts the session of a WSGI request (see [`start`]); None: serve it untouched.
#[pyfunction]
fn wsgi_start(py: Python<'_>, environ: &Bound<'_, PyAny>) -> PyResult<Option<Py<Session>>> {
    let Ok(environ) = environ.downcast::<PyDict>() else {
        return Ok(None);
    };
    let get = |key: &str| environ_text(environ, key);
    let path = wsgi_text(format!("{}{}", get("SCRIPT_NAME"), get("PATH_INFO")));
    let traceparent = environ.get_item("HTTP_TRACEPARENT").ok().flatten();
    let traceparent = traceparent.map(|t| text(&t));
    let tracestate = environ
        .get_item("HTTP_TRACESTATE")
        .ok()
        .flatten()
        .map(|t| text(&t));
    start(
        py,
        &get("REQUEST_METHOD"),
        &path,
        traceparent.as_deref(),
        tracestate,
        |r| {
            r.scheme = get("wsgi.url_scheme");
            r.query = wsgi_text(get("QUERY_STRING"));
            let (host, port) = match get("HTTP_HOST") {
                h if !h.is_empty() => split_host(&h),
                _ => (get("SERVER_NAME"), None),
            };
            r.host = host;
            r.port = port
                .or_else(|| get("SERVER_PORT").parse().ok())
                .unwrap_or(0);
            r.client = get("REMOTE_ADDR");
            r.user_agent = get("HTTP_USER_AGENT");
            if let Some(state) = runtime::state() {
                r.headers = state
                    .config
                    .capture_headers
                    .iter()
                    .filter_map(|name| {
                        let value = get(&environ_key(name));
                        (!value.is_empty()).then(|| (name.clone(), wsgi_text(value)))
                    })
                    .collect();
            }
        },
    )
}

/// The `(host, port)` of an ASGI scope's `server` or `client` entry.
fn address(scope: &Bound<'_, PyDict>, key: &str) -> (String, u16) {
    let Some(v) = scope.get_item(key).ok().flatten() else {
        return (String::new(), 0);
    };
    let host = v.get_item(0).map(|h| text(&h)).unwrap_or_default();
    let port = v
        .get_item(1)
        .ok()
        .and_then(|p| p.extract::<u16>().ok())
        .unwrap_or(0);
    (host, port)
}

/// Starts the session of an ASGI `http` request (see [`start`]); None: serve it untouched.
#[pyfunction]
fn asgi_start(py: Python<'_>, scope: &Bound<'_, PyAny>) -> PyResult<Option<Py<Session>>> {
    let Ok(scope) = scope.downcast::<PyDict>() else {
        return Ok(None);
    };
    let get = |key: &str| {
        scope
            .get_item(key)
            .ok()
            .flatten()
            .map(|v| text(&v))
            .unwrap_or_default()
    };
    let mut traceparent = None;
    let mut tracestate = None;
    // Names now; values only when the request is recorded.
    let mut headers: Vec<(String, Bound<'_, PyAny>)> = Vec::new();
    if let Some(list) = scope.get_item("headers").ok().flatten() {
        for pair in list.try_iter()?.flatten() {
            let (Ok(name), Ok(value)) = (pair.get_item(0), pair.get_item(1)) else {
                continue;
            };
            let name = text(&name).to_ascii_lowercase();
            match name.as_str() {
                "traceparent" => traceparent = Some(text(&value)),
                "tracestate" => tracestate = Some(text(&value)),
                _ => {}
            }
            headers.push((name, value));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| text(v))
    };
    start(
        py,
        &get("method"),
        &get("path"),
        traceparent.as_deref(),
        tracestate,
        |r| {
            let scheme = get("scheme");
            r.scheme = if scheme.is_empty() {
                "http".to_string()
            } else {
                scheme
            };
            r.query = get("query_string");
            let (server_host, server_port) = address(scope, "server");
            let (host, port) = match header("host") {
                Some(h) => split_host(&h),
                None => (server_host, None),
            };
            r.host = host;
            r.port = port.unwrap_or(server_port);
            r.client = address(scope, "client").0;
            r.user_agent = header("user-agent").unwrap_or_default();
            if let Some(state) = runtime::state() {
                let capture = &state.config.capture_headers;
                r.headers = headers
                    .iter()
                    .filter(|(n, _)| capture.contains(n))
                    .map(|(n, v)| (n.clone(), text(v)))
                    .collect();
            }
        },
    )
}

/// Names the route template of the request being served here (called by the framework
/// integrations once the framework has routed it); nothing outside a request session.
#[pyfunction]
fn server_route(py: Python<'_>, route: &str) {
    // SAFETY: pyfunctions run with the GIL held.
    let Some(s) = (unsafe { session::current(py) }) else {
        return;
    };
    if let Some(request) = &s.get().request {
        *request.route.lock().unwrap_or_else(|e| e.into_inner()) = Some(route.to_string());
    }
}

/// Notes the exception a framework caught and answered with an error response (Flask's
/// `handle_exception`, Django's `response_for_exception`) on the request being served here:
/// when the response is a 5xx, the session ends with it, as with one that escaped. Nothing
/// outside a request session.
#[pyfunction]
fn server_exception(py: Python<'_>, exception: &Bound<'_, PyAny>) {
    let Some(state) = runtime::state() else {
        return;
    };
    if !exception.is_instance_of::<PyBaseException>() {
        return;
    }
    // SAFETY: pyfunctions run with the GIL held.
    let Some(s) = (unsafe { session::current(py) }) else {
        return;
    };
    if let Some(request) = s.get().request.as_ref().filter(|_| s.get().info.sampled) {
        // SAFETY: the GIL is held and `exception` is a live exception instance.
        let info = unsafe { exception::describe(exception.as_ptr(), state) };
        *request.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
    }
}

/// Ends a request's session (once): its tag becomes `"{method} {route}"` (`route` given
/// here, else the one named by `server_route`), it gets `http.route` and
/// `http.response.status_code` (0: no response was started), and its status is `error` for
/// a 5xx status or an exception that escaped the application (kept with its type and
/// redacted message), else `ok` (`unset` without a response).
#[pyfunction]
#[pyo3(signature = (session, status, exception=None, route=None))]
fn server_end(
    py: Python<'_>,
    session: &Bound<'_, Session>,
    status: u16,
    exception: Option<&Bound<'_, PyAny>>,
    route: Option<String>,
) -> PyResult<()> {
    let Some(request) = &session.get().request else {
        return api::end_session(py, session, None, |_, _| {});
    };
    let named = request
        .route
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let route = route.or(named);
    let caught = request
        .error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let exception = exception.filter(|e| e.is_instance_of::<PyBaseException>());
    api::end_session(py, session, exception, |state, record| {
        let redactor = &state.redactor;
        let route = route.map(|r| redactor.redact_value(&r).into_owned());
        record.tag = tag(&request.method, route.as_deref());
        if let Some(r) = route {
            record.attrs.push(("http.route".to_string(), r));
        }
        if status != 0 {
            record
                .attrs
                .push(("http.response.status_code".to_string(), status.to_string()));
        }
        // SAFETY: the GIL is held (a pyfunction) and `e` is a live exception instance.
        record.exception = exception
            .map(|e| unsafe { exception::describe(e.as_ptr(), state) })
            .or(caught.filter(|_| status >= 500));
        record.status = if status >= 500 || record.exception.is_some() {
            SessionStatus::Error
        } else if status != 0 {
            SessionStatus::Ok
        } else {
            SessionStatus::Unset
        };
    })
}

/// Adds the functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(wsgi_start, m)?)?;
    m.add_function(wrap_pyfunction!(asgi_start, m)?)?;
    m.add_function(wrap_pyfunction!(server_route, m)?)?;
    m.add_function(wrap_pyfunction!(server_end, m)?)?;
    m.add_function(wrap_pyfunction!(server_exception, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_from_their_port() {
        assert_eq!(split_host("h:81"), ("h".into(), Some(81)));
        assert_eq!(split_host("h"), ("h".into(), None));
        assert_eq!(split_host("[::1]:8"), ("::1".into(), Some(8)));
        assert_eq!(split_host("::1"), ("::1".into(), None));
    }

    #[test]
    fn wsgi_strings_are_utf8_bytes_in_latin1() {
        assert_eq!(wsgi_text("/caf\u{c3}\u{a9}".into()), "/café");
        assert_eq!(wsgi_text("/plain".into()), "/plain");
        assert_eq!(environ_key("x-request-id"), "HTTP_X_REQUEST_ID");
        assert_eq!(environ_key("content-type"), "CONTENT_TYPE");
    }
}
