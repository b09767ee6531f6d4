//! Outgoing HTTP requests: the record made for one request an instrumented client library
//! sent (a CLIENT span), and its redaction, applied before the record is queued.

use crate::event::ExceptionInfo;
use crate::ids::TraceId;
use crate::redact::Redactor;
use std::borrow::Cow;

/// One outgoing HTTP request made inside a sampled session: the whole exchange the
/// application saw, from the call to the end of the response body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRecord {
    pub trace_id: TraceId,
    /// The client span (the id sent in the request's `traceparent`).
    pub span_id: u64,
    /// The recorded Python call that made the request, or the session's root span.
    pub parent_span_id: u64,
    pub thread_id: u64,
    /// The asyncio task that made the request (its `id()`), 0 outside a task.
    pub task_id: u64,
    /// The instrumented library: `requests`, `httpx`, `urllib3`, `aiohttp` or `urllib`.
    pub library: String,
    /// The request method, upper-case.
    pub method: String,
    /// The URL, redacted (see [`HttpRecord::redact`]).
    pub url: String,
    /// The host the request went to (`server.address`), empty when unknown.
    pub host: String,
    /// The port the request went to (`server.port`), 0 when unknown.
    pub port: u16,
    /// The final response status, 0 when no response came.
    pub status: u16,
    /// Monotonic start and duration, nanoseconds (see [`crate::clock`]).
    pub start_ns: u64,
    pub duration_ns: u64,
    /// Request body bytes sent (0 when unknown or empty).
    pub request_bytes: u64,
    /// Response body bytes received, as they came over the wire.
    pub response_bytes: u64,
    /// Redirects the library followed within this request (`http.request.resend_count`).
    pub resend_count: u32,
    /// The exception the call raised (type, redacted and bounded message).
    pub exception: Option<ExceptionInfo>,
    /// Headers captured (only names listed in `FERROTRACE_CAPTURE_HEADERS`), redacted.
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// The request body, only with `FERROTRACE_CAPTURE_BODIES=1` and when it was bytes or
    /// text before sending; bounded by `FERROTRACE_MAX_STR`, redacted.
    pub request_body: Option<String>,
    /// The response body the application read (never read for ferrotrace), only with
    /// `FERROTRACE_CAPTURE_BODIES=1`; bounded by `FERROTRACE_MAX_STR`, redacted.
    pub response_body: Option<String>,
}

/// `url` without its userinfo (`user:pass@`).
pub fn strip_userinfo(url: &str) -> String {
    let Some(pos) = url.find("://") else {
        return url.to_string();
    };
    let after = &url[pos + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    match after[..end].rfind('@') {
        Some(at) => format!("{}{}", &url[..pos + 3], &after[at + 1..]),
        None => url.to_string(),
    }
}

/// The host (without brackets) and port a URL names; the port defaults to 80 for `http`
/// and 443 for `https` (0 for other schemes). Empty and 0 when the URL has no host.
pub fn host_port(url: &str) -> (String, u16) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (String::new(), 0);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (v6, None),
        },
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => 0,
    };
    let port = port.and_then(|p| p.parse().ok()).unwrap_or(default);
    (host.to_ascii_lowercase(), port)
}

/// The headers of `headers` whose (case-insensitive) names are in `capture` (lower-case),
/// with names lower-cased and values redacted by name and by value.
pub fn captured_headers(
    headers: &[(String, String)],
    capture: &[String],
    redactor: &Redactor,
) -> Vec<(String, String)> {
    if capture.is_empty() {
        return Vec::new();
    }
    headers
        .iter()
        .filter_map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            capture.contains(&lower).then(|| {
                let value = redactor.redact_header(&lower, value).into_owned();
                (lower, value)
            })
        })
        .collect()
}

impl HttpRecord {
    /// Makes the record fit to leave the process: the URL loses its userinfo and the values
    /// of sensitive query parameters (and any secret in it), the exception message and the
    /// headers and bodies are redacted, and only the headers named in `capture` are kept.
    pub fn redact(&mut self, redactor: &Redactor, capture: &[String]) {
        self.url = redactor.redact_url(&strip_userinfo(&self.url));
        self.host = redactor.redact_value(&self.host).into_owned();
        if let Some(e) = &mut self.exception {
            e.message = redactor.redact_value(&e.message).into_owned();
        }
        self.request_headers = captured_headers(&self.request_headers, capture, redactor);
        self.response_headers = captured_headers(&self.response_headers, capture, redactor);
        for body in [&mut self.request_body, &mut self.response_body]
            .into_iter()
            .flatten()
        {
            if let Cow::Owned(redacted) = redactor.redact_value(body) {
                *body = redacted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed_and_nothing_else() {
        assert_eq!(
            strip_userinfo("http://user:pw@h:8/p?q=1#f"),
            "http://h:8/p?q=1#f"
        );
        assert_eq!(strip_userinfo("https://h/a@b"), "https://h/a@b");
        assert_eq!(strip_userinfo("h/x"), "h/x");
    }

    #[test]
    fn host_and_port_come_from_the_url() {
        assert_eq!(
            host_port("http://u:p@H.example:81/x"),
            ("h.example".into(), 81)
        );
        assert_eq!(host_port("https://[::1]/x"), ("::1".into(), 443));
        assert_eq!(host_port("http://h?x=1:2"), ("h".into(), 80));
        assert_eq!(host_port("nope"), (String::new(), 0));
    }

    #[test]
    fn a_record_keeps_no_secret() {
        let (redactor, _) = Redactor::new(&[], &[]);
        let mut r = HttpRecord {
            url: "http://u:hunter2@127.0.0.1:9/x?token=abc123&page=2".into(),
            request_headers: vec![
                ("Authorization".into(), "Bearer abcdef123456".into()),
                ("X-Note".into(), "see Bearer abcdef123456".into()),
                ("Accept".into(), "*/*".into()),
            ],
            exception: Some(ExceptionInfo {
                type_name: "ConnectionError".into(),
                message: "to http://u:hunter2@h/".into(),
                ..Default::default()
            }),
            request_body: Some(r#"{"user": "bob", "password": "hunter2"}"#.into()),
            response_body: Some("token=abc123def456".into()),
            ..Default::default()
        };
        let capture = vec!["authorization".to_string(), "x-note".to_string()];
        r.redact(&redactor, &capture);
        assert_eq!(r.url, "http://127.0.0.1:9/x?token=[REDACTED]&page=2");
        assert_eq!(
            r.request_headers,
            vec![
                ("authorization".to_string(), "[REDACTED]".to_string()),
                ("x-note".to_string(), "see Bearer [REDACTED]".to_string()),
            ]
        );
        assert!(!r.exception.unwrap().message.contains("hunter2"));
        let body = r.request_body.unwrap();
        assert!(!body.contains("hunter2") && body.contains("bob"), "{body}");
        assert!(!r.response_body.unwrap().contains("abc123def456"));
    }
}
