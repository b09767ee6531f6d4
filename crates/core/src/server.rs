//! Served HTTP requests: the attributes of a request session (OpenTelemetry's HTTP server
//! semantic conventions), redacted before the session record is queued, and the excluded
//! paths (`FERROTRACE_EXCLUDED_URLS`).

use crate::http::captured_headers;
use crate::redact::Redactor;

/// What the WSGI or ASGI integration knows about a request when it arrives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerRequest {
    /// The request method as sent (upper-cased for the attributes).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The query string, without `?` (empty when none).
    pub query: String,
    /// The host the client addressed (`Host` header, else the server's name), without port.
    pub host: String,
    /// The port the request came in on (0 when unknown).
    pub port: u16,
    /// The client's address (empty when unknown).
    pub client: String,
    /// The `User-Agent` header (empty when none).
    pub user_agent: String,
    /// Every request header; only those named in `FERROTRACE_CAPTURE_HEADERS` are kept.
    pub headers: Vec<(String, String)>,
}

impl ServerRequest {
    /// The session attributes of the request, redacted: `http.request.method`, `url.path`,
    /// `url.scheme`, `url.query` (sensitive parameters' values replaced), `server.address`,
    /// `server.port`, `client.address`, `user_agent.original`, and
    /// `http.request.header.<name>` for the captured headers.
    pub fn attributes(&self, redactor: &Redactor, capture: &[String]) -> Vec<(String, String)> {
        let mut attrs = vec![
            (
                "http.request.method".to_string(),
                self.method.to_ascii_uppercase(),
            ),
            (
                "url.path".to_string(),
                redactor.redact_value(&self.path).into_owned(),
            ),
            ("url.scheme".to_string(), self.scheme.clone()),
        ];
        if !self.query.is_empty() {
            // The query redacted as a URL's would be: `?` is where its parameters start.
            let url = redactor.redact_url(&format!("?{}", self.query));
            attrs.push(("url.query".to_string(), url[1..].to_string()));
        }
        if !self.host.is_empty() {
            attrs.push((
                "server.address".to_string(),
                redactor.redact_value(&self.host).into_owned(),
            ));
        }
        if self.port != 0 {
            attrs.push(("server.port".to_string(), self.port.to_string()));
        }
        if !self.client.is_empty() {
            attrs.push(("client.address".to_string(), self.client.clone()));
        }
        if !self.user_agent.is_empty() {
            attrs.push((
                "user_agent.original".to_string(),
                redactor.redact_value(&self.user_agent).into_owned(),
            ));
        }
        attrs.extend(
            captured_headers(&self.headers, capture, redactor)
                .into_iter()
                .map(|(k, v)| (format!("http.request.header.{k}"), v)),
        );
        attrs
    }
}

/// The session tag of a request: `"{METHOD} {route}"`, or the method alone when the route
/// template is not known.
pub fn tag(method: &str, route: Option<&str>) -> String {
    match route {
        Some(r) if !r.is_empty() => format!("{} {r}", method.to_ascii_uppercase()),
        _ => method.to_ascii_uppercase(),
    }
}

/// Attributes whose values OTLP writes as integers (OpenTelemetry types them so).
pub const INT_ATTRIBUTES: &[&str] = &["server.port", "http.response.status_code"];

/// The paths that get no session (`FERROTRACE_EXCLUDED_URLS`): any regular expression of
/// the list found anywhere in the path.
#[derive(Debug, Clone, Default)]
pub struct ExcludedUrls {
    set: Option<regex::RegexSet>,
}

impl ExcludedUrls {
    /// Compiles the patterns (already validated by the configuration; an invalid one here
    /// excludes nothing).
    pub fn new(patterns: &[String]) -> Self {
        ExcludedUrls {
            set: (!patterns.is_empty())
                .then(|| regex::RegexSet::new(patterns).ok())
                .flatten(),
        }
    }

    /// Whether requests to `path` get no session.
    #[inline]
    pub fn excludes(&self, path: &str) -> bool {
        self.set.as_ref().is_some_and(|s| s.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(attrs: &[(String, String)], key: &str) -> Option<String> {
        attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn attributes_follow_the_semantic_conventions_and_keep_no_secret() {
        let (redactor, _) = Redactor::new(&[], &[]);
        let req = ServerRequest {
            method: "get".into(),
            path: "/items/7".into(),
            scheme: "http".into(),
            query: "token=abc123&page=2".into(),
            host: "example.test".into(),
            port: 8000,
            client: "127.0.0.1".into(),
            user_agent: "curl/8".into(),
            headers: vec![
                ("Authorization".into(), "Bearer abcdef123456".into()),
                ("X-Request-Id".into(), "r-1".into()),
                ("Accept".into(), "*/*".into()),
            ],
        };
        let capture = vec!["authorization".to_string(), "x-request-id".to_string()];
        let a = req.attributes(&redactor, &capture);
        assert_eq!(get(&a, "http.request.method").unwrap(), "GET");
        assert_eq!(get(&a, "url.path").unwrap(), "/items/7");
        assert_eq!(get(&a, "url.query").unwrap(), "token=[REDACTED]&page=2");
        assert_eq!(get(&a, "server.port").unwrap(), "8000");
        assert_eq!(get(&a, "client.address").unwrap(), "127.0.0.1");
        assert_eq!(get(&a, "user_agent.original").unwrap(), "curl/8");
        assert_eq!(
            get(&a, "http.request.header.authorization").unwrap(),
            "[REDACTED]"
        );
        assert_eq!(get(&a, "http.request.header.x-request-id").unwrap(), "r-1");
        assert_eq!(get(&a, "http.request.header.accept"), None);
    }

    #[test]
    fn tags_name_the_route_when_known() {
        assert_eq!(tag("get", Some("/items/{id}")), "GET /items/{id}");
        assert_eq!(tag("POST", None), "POST");
        assert_eq!(tag("POST", Some("")), "POST");
    }

    #[test]
    fn excluded_urls_match_anywhere_in_the_path() {
        let ex = ExcludedUrls::new(&["^/health$".into(), "metrics".into()]);
        assert!(ex.excludes("/health"));
        assert!(!ex.excludes("/healthz"));
        assert!(ex.excludes("/internal/metrics/x"));
        assert!(!ExcludedUrls::new(&[]).excludes("/health"));
    }
}
