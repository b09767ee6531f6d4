//! Redaction: nothing sensitive leaves the process.
//!
//! A [`Redactor`] hides secrets **by key** (argument names, dict keys, header names, URL query
//! parameter names; see [`Redactor::is_sensitive_key`]) and **by value** (JWTs, bearer and basic
//! credentials, cloud and SaaS tokens, PEM private keys, card numbers, e-mail addresses, US SSNs,
//! `key=value` pairs with a sensitive key, URL userinfo; see [`Redactor::redact_value`]). The
//! matched part becomes [`REDACTED`]. It is built once from the configuration and shared by every
//! thread; a malformed user pattern is dropped with a warning and never weakens the defaults.

use std::borrow::Cow;

use crate::redact_prefilter::may_hold_secret;
use once_cell::sync::Lazy;
use regex::{Captures, Regex, RegexSet};

/// The text that replaces every redacted part.
pub const REDACTED: &str = "[REDACTED]";

/// Sensitive wherever they occur in the normalized key.
const ANYWHERE: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "clientsecret",
    "credential",
    "privatekey",
    "apikey",
    "xapikey",
    "apitoken",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "accesskey",
    "authorization",
    "cookie",
    "setcookie",
    "sessionid",
    "sessid",
    "sessionkey",
    "cardnumber",
    "creditcard",
    "pincode",
    "cvv",
    "cvc",
];

/// Sensitive when the normalized key ends with them.
const SUFFIX: &[&str] = &["token", "auth"];

/// Sensitive when the key's last word is exactly them (short words that are parts of many
/// innocent words: `spin`, `obsession`, `bypass`, `business_name`).
const LAST_WORD: &[&str] = &["session", "pin", "ssn", "pass"];

/// How a value rule turns a match into its replacement.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The whole match.
    Whole,
    /// Group 1 (URL userinfo): `user:pass` becomes `[REDACTED]:[REDACTED]`.
    Userinfo,
    /// Group 1 (the credential after `Bearer`/`Basic`), when it looks like one.
    SchemeToken,
    /// Group 2 (the value), when group 1 (the key) is a sensitive key.
    KeyValue,
    /// The whole match, when it contains a digit.
    NeedsDigit,
    /// The whole match, when it is a valid US SSN.
    Ssn,
    /// Runs of digit groups: the groups that form a 13–19 digit Luhn-valid number.
    Card,
}

#[derive(Clone, Debug)]
struct Rule {
    re: Regex,
    kind: Kind,
}

/// (pattern used in the pre-check set, pattern used to replace, kind). `None` means "same".
const DEFAULT_RULES: &[(&str, Option<&str>, Kind)] = &[
    (
        r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|.*)",
        None,
        Kind::Whole,
    ),
    (
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        None,
        Kind::Whole,
    ),
    (
        r"(?-u:\b)[A-Za-z][A-Za-z0-9+.-]*://([^\s/?#@]+)@",
        None,
        Kind::Userinfo,
    ),
    (
        r"(?i)(?-u:\b)(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/-]+=*)",
        None,
        Kind::SchemeToken,
    ),
    (
        r#"(?i)([A-Za-z0-9_.\[\]-]*(?:pass|pwd|secret|token|key|auth|cookie|sess|credential|ssn|cvv|cvc|pin|card)[A-Za-z0-9_.\[\]-]*)["']?[ \t]*[:=][ \t]*(?:(?:bearer|basic)[ \t]+)?("[^"]*"|'[^']*'|[^\s,;&'"})]+)"#,
        None,
        Kind::KeyValue,
    ),
    (
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
        None,
        Kind::Whole,
    ),
    (r"(?-u:\b)xox[abposre]-[A-Za-z0-9-]{10,}", None, Kind::Whole),
    (
        r"(?-u:\b)sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        None,
        Kind::NeedsDigit,
    ),
    (
        r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}",
        None,
        Kind::Whole,
    ),
    (
        r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
        None,
        Kind::Whole,
    ),
    (
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)",
        None,
        Kind::Whole,
    ),
    (
        r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
        None,
        Kind::Ssn,
    ),
    (
        r"[0-9](?:[ -]?[0-9]){12}",
        Some(r"[0-9]+(?:[ -][0-9]+)*"),
        Kind::Card,
    ),
];

static DEFAULTS: Lazy<(Vec<&'static str>, Vec<Rule>)> = Lazy::new(|| {
    let set = DEFAULT_RULES.iter().map(|(p, _, _)| *p).collect();
    let rules = DEFAULT_RULES
        .iter()
        .map(|(p, r, kind)| Rule {
            re: Regex::new(r.unwrap_or(p)).expect("default redaction pattern"),
            kind: *kind,
        })
        .collect();
    (set, rules)
});

/// Redacts sensitive keys and values; built once from the configuration, shared by all threads.
#[derive(Clone, Debug)]
pub struct Redactor {
    /// Pre-check: one pass tells which rules can match at all.
    set: RegexSet,
    /// `rules[i]` is applied when pattern `i` of `set` matched.
    rules: Vec<Rule>,
    /// No pattern of `set` matches a string shorter than this many bytes: short strings
    /// (most argument values) skip the scan.
    min_match_len: usize,
    /// Only the default rules are in force, so [`may_hold_secret`] can clear a string.
    defaults_only: bool,
    /// Normalized `FERROTRACE_REDACT_KEYS`; sensitive wherever they occur in a normalized key.
    extra_keys: Vec<String>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(&[], &[]).0
    }
}

impl Redactor {
    /// Builds a redactor from the defaults plus `FERROTRACE_REDACT_KEYS` (`extra_keys`) and
    /// `FERROTRACE_REDACT_VALUES` (`extra_value_patterns`, regular expressions whose whole match
    /// is redacted). A pattern that does not compile, or that matches the empty string, is
    /// skipped with a warning in the returned list; the defaults always stay.
    pub fn new(extra_keys: &[String], extra_value_patterns: &[String]) -> (Redactor, Vec<String>) {
        let mut warnings = Vec::new();
        let (default_set, default_rules) = &*DEFAULTS;
        let mut set_patterns: Vec<String> = default_set.iter().map(|p| p.to_string()).collect();
        let mut rules = default_rules.clone();
        for p in extra_value_patterns {
            match Regex::new(p) {
                Ok(re) if re.is_match("") => warnings.push(format!(
                    "FERROTRACE_REDACT_VALUES: ignoring pattern {p:?}: it matches the empty \
                     string; the default redaction patterns stay in force"
                )),
                Ok(re) => {
                    set_patterns.push(p.clone());
                    rules.push(Rule {
                        re,
                        kind: Kind::Whole,
                    });
                }
                Err(e) => warnings.push(format!(
                    "FERROTRACE_REDACT_VALUES: ignoring malformed pattern {p:?}: {}; the default \
                     redaction patterns stay in force",
                    regex_error_summary(&e)
                )),
            }
        }
        let set = match RegexSet::new(&set_patterns) {
            Ok(set) => set,
            Err(e) => {
                warnings.push(format!(
                    "FERROTRACE_REDACT_VALUES: ignoring every extra pattern: together they are \
                     too large ({}); the default redaction patterns stay in force",
                    regex_error_summary(&e)
                ));
                rules.truncate(default_rules.len());
                RegexSet::new(default_set).expect("default redaction patterns")
            }
        };
        let extra_keys = extra_keys
            .iter()
            .map(|k| normalize_key(k))
            .filter(|k| !k.is_empty())
            .collect();
        let min_match_len = set
            .patterns()
            .iter()
            .map(|p| minimum_match_len(p))
            .min()
            .unwrap_or(0);
        (
            Redactor {
                defaults_only: rules.len() == default_rules.len(),
                set,
                rules,
                min_match_len,
                extra_keys,
            },
            warnings,
        )
    }

    /// Whether values under this key (argument name, dict key, header name, query parameter)
    /// are hidden entirely.
    ///
    /// The key is *normalized*: ASCII letters lower-cased and every character that is not a
    /// letter or digit removed (so `X-Api-Key`, `api_key` and `user[apiKey]` all contain
    /// `apikey`). It is sensitive when
    /// 1. the normalized key **contains** one of `password passwd passphrase pwd secret
    ///    clientsecret credential privatekey apikey xapikey apitoken accesstoken refreshtoken
    ///    authtoken accesskey authorization cookie setcookie sessionid sessid sessionkey
    ///    cardnumber creditcard pincode cvv cvc`, or one of `FERROTRACE_REDACT_KEYS`
    ///    (normalized the same way); or
    /// 2. the normalized key **ends with** `token` or `auth` (`user_token`, `csrftoken`,
    ///    `oauth`; but not `token_count`, `tokenizer`, `max_tokens` (a count, plural), `author`,
    ///    `authority`); or
    /// 3. the key's **last word** is exactly `session`, `pin`, `ssn` or `pass`, words being
    ///    split at non-alphanumerics and camelCase humps (`db_session`, `cardPIN`, `SSN`,
    ///    `db-pass`; but not `session_count`, `sessions`, `obsession`, `spinner`, `pinned`,
    ///    `business_name`, `bypass`).
    ///
    /// Accepted over-redaction: `secretary`, `is_secret`, `access_token_expiry`.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        let norm = normalize_key(key);
        if ANYWHERE.iter().any(|w| norm.contains(w))
            || self.extra_keys.iter().any(|w| norm.contains(w.as_str()))
            || SUFFIX.iter().any(|w| norm.ends_with(w))
        {
            return true;
        }
        let last = last_word(key);
        LAST_WORD.iter().any(|w| last.eq_ignore_ascii_case(w))
    }

    /// Replaces every secret found in `s` with [`REDACTED`]: JWTs; the credential after
    /// `Bearer`/`Basic` (the scheme word is kept); AWS access key ids; GitHub, Slack, OpenAI
    /// and Stripe secret keys; PEM private key blocks (to the end of the text when the `END`
    /// line is missing, e.g. cut by a preview bound); 13–19 digit card numbers, optionally
    /// grouped by single spaces or dashes, that pass the Luhn check; e-mail addresses; US SSNs
    /// (`ddd-dd-dddd`, area not 000, 666 or 9xx); the value in `key=value` / `key: value`
    /// when the key is sensitive; URL userinfo; and the `FERROTRACE_REDACT_VALUES` patterns.
    ///
    /// A byte check ([`may_hold_secret`], with the default rules only) and then one
    /// [`RegexSet`] pass decide whether any rule can match, so a string without secrets costs
    /// one or two scans and is returned borrowed (as is a string where every candidate match
    /// turned out not to be a secret).
    pub fn redact_value<'a>(&self, s: &'a str) -> Cow<'a, str> {
        // `is_match` may stop early and skips the bookkeeping of which patterns matched: the
        // common no-secret case costs about 2 ns per byte (release build); the byte check
        // before it a fraction of that.
        if s.len() < self.min_match_len
            || (self.defaults_only && !may_hold_secret(s.as_bytes()))
            || !self.set.is_match(s)
        {
            return Cow::Borrowed(s);
        }
        let hits = self.set.matches(s);
        let mut cur: Cow<'a, str> = Cow::Borrowed(s);
        for i in hits.iter() {
            let replaced = match self.apply(&self.rules[i], &cur) {
                Cow::Owned(n) => Some(n),
                Cow::Borrowed(_) => None,
            };
            if let Some(n) = replaced {
                cur = Cow::Owned(n);
            }
        }
        if cur == s {
            Cow::Borrowed(s)
        } else {
            cur
        }
    }

    /// A `key: value` attribute as it may leave the process: the whole value is
    /// [`REDACTED`] under a sensitive key, else its secrets are (see
    /// [`Self::redact_value`]); secrets in the key itself are redacted too.
    pub fn redact_attribute(&self, key: &str, value: &str) -> (String, String) {
        let value = if self.is_sensitive_key(key) {
            REDACTED.to_string()
        } else {
            self.redact_value(value).into_owned()
        };
        (self.redact_value(key).into_owned(), value)
    }

    /// Redacts a URL: userinfo becomes `[REDACTED]` (`[REDACTED]:[REDACTED]` when it has a
    /// password), query (and `key=value` fragment) parameters with a sensitive name get the
    /// value `[REDACTED]`, and the path and other values go through [`Self::redact_value`]
    /// (a percent-encoded value that hides a secret is redacted entirely).
    pub fn redact_url(&self, url: &str) -> String {
        let (before_frag, frag) = match url.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (url, None),
        };
        let (before_query, query) = match before_frag.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (before_frag, None),
        };
        let mut out = String::with_capacity(url.len() + 16);
        let rest = match before_query.find("://") {
            Some(pos) => {
                let (scheme, after) = before_query.split_at(pos + 3);
                out.push_str(scheme);
                let auth_end = after.find('/').unwrap_or(after.len());
                let authority = &after[..auth_end];
                match authority.rfind('@') {
                    Some(at) => {
                        out.push_str(redacted_userinfo(&authority[..at]));
                        out.push_str(&authority[at..]);
                    }
                    None => out.push_str(authority),
                }
                &after[auth_end..]
            }
            None => before_query,
        };
        out.push_str(&self.redact_value(rest));
        if let Some(q) = query {
            out.push('?');
            self.redact_params(q, &mut out);
        }
        if let Some(f) = frag {
            out.push('#');
            if f.contains('=') {
                self.redact_params(f, &mut out);
            } else {
                out.push_str(&self.redact_value(f));
            }
        }
        out
    }

    /// Redacts an HTTP header: the whole value when the name is a sensitive key
    /// (`Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, `X-Auth-Token`, ...), otherwise
    /// the value goes through [`Self::redact_value`].
    pub fn redact_header<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if self.is_sensitive_key(name) {
            Cow::Borrowed(REDACTED)
        } else {
            self.redact_value(value)
        }
    }

    fn redact_params(&self, params: &str, out: &mut String) {
        for (i, param) in params.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let Some((name, value)) = param.split_once('=') else {
                out.push_str(&self.redact_value(param));
                continue;
            };
            out.push_str(name);
            out.push('=');
            if value.is_empty() {
                continue;
            }
            if self.is_sensitive_key(&percent_decode(name)) {
                out.push_str(REDACTED);
                continue;
            }
            match self.redact_value(value) {
                Cow::Owned(r) => out.push_str(&r),
                Cow::Borrowed(_) => {
                    let decoded = percent_decode(value);
                    if decoded != value && matches!(self.redact_value(&decoded), Cow::Owned(_)) {
                        out.push_str(REDACTED);
                    } else {
                        out.push_str(value);
                    }
                }
            }
        }
    }

    fn apply<'t>(&self, rule: &Rule, text: &'t str) -> Cow<'t, str> {
        match rule.kind {
            Kind::Whole => rule.re.replace_all(text, REDACTED),
            Kind::Userinfo => rule.re.replace_all(text, |c: &Captures| {
                replace_group(c, 1, redacted_userinfo(&c[1]))
            }),
            Kind::SchemeToken => rule.re.replace_all(text, |c: &Captures| {
                if looks_like_credential(&c[1]) {
                    replace_group(c, 1, REDACTED)
                } else {
                    c[0].to_string()
                }
            }),
            Kind::KeyValue => rule.re.replace_all(text, |c: &Captures| {
                let value = &c[2];
                let quoted = value.starts_with(['"', '\'']);
                let inner = if quoted {
                    &value[1..value.len() - 1]
                } else {
                    value
                };
                if inner.is_empty() || inner.starts_with(REDACTED) || !self.is_sensitive_key(&c[1])
                {
                    c[0].to_string()
                } else if quoted {
                    let q = &value[..1];
                    replace_group(c, 2, &format!("{q}{REDACTED}{q}"))
                } else {
                    replace_group(c, 2, REDACTED)
                }
            }),
            Kind::NeedsDigit => rule.re.replace_all(text, |c: &Captures| {
                if c[0].bytes().any(|b| b.is_ascii_digit()) {
                    REDACTED.to_string()
                } else {
                    c[0].to_string()
                }
            }),
            Kind::Ssn => rule.re.replace_all(text, |c: &Captures| {
                if is_valid_ssn(&c[0]) {
                    REDACTED.to_string()
                } else {
                    c[0].to_string()
                }
            }),
            Kind::Card => rule.re.replace_all(text, |c: &Captures| {
                let m = c.get(0).expect("group 0");
                redact_cards(text, m.start(), m.end())
            }),
        }
    }
}

/// The last line of a regex error (the line that says what is wrong), trimmed.
fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid pattern")
        .to_string()
}

/// Lower-cases ASCII letters and drops every character that is not a letter or digit.
fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The key's last word: its last run of letters and digits, split at camelCase humps
/// (`userSession` -> `Session`, `cardPIN` -> `PIN`, `APIKey` -> `Key`).
fn last_word(key: &str) -> &str {
    let trimmed = key.trim_end_matches(|c: char| !c.is_alphanumeric());
    let start = trimmed
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_alphanumeric())
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    let run = &trimmed[start..];
    let chars: Vec<(usize, char)> = run.char_indices().collect();
    let mut word_start = 0;
    for j in 1..chars.len() {
        let (i, c) = chars[j];
        let prev = chars[j - 1].1;
        let next_lower = chars.get(j + 1).is_some_and(|(_, n)| n.is_lowercase());
        if c.is_uppercase()
            && (prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower))
        {
            word_start = i;
        }
    }
    &run[word_start..]
}

/// `[REDACTED]`, or `[REDACTED]:[REDACTED]` when the userinfo carries a password.
fn redacted_userinfo(userinfo: &str) -> &'static str {
    if userinfo.contains(':') {
        "[REDACTED]:[REDACTED]"
    } else {
        REDACTED
    }
}

/// The whole match with capture group `g` replaced by `with`.
fn replace_group(c: &Captures, g: usize, with: &str) -> String {
    let whole = c.get(0).expect("group 0");
    let part = c.get(g).expect("capture group");
    let s = whole.as_str();
    let (a, b) = (part.start() - whole.start(), part.end() - whole.start());
    format!("{}{}{}", &s[..a], with, &s[b..])
}

/// Whether the word after `Bearer`/`Basic` is a credential rather than prose: at least 8
/// characters with a digit, a symbol, or an upper-case letter after the first character
/// (`Bearer authentication` and `basic understanding` are kept).
fn looks_like_credential(t: &str) -> bool {
    t.len() >= 8
        && (t.bytes().any(|b| !b.is_ascii_alphabetic())
            || t.bytes().skip(1).any(|b| b.is_ascii_uppercase()))
}

/// A US SSN `ddd-dd-dddd` the SSA could issue: area not 000, 666 or 9xx, group not 00,
/// serial not 0000.
fn is_valid_ssn(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// The Luhn checksum over ASCII digits.
fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    // Not `is_multiple_of`: that needs Rust 1.87 and the workspace declares 1.75.
    let rem = sum % 10;
    rem == 0
}

/// Redacts card numbers inside `text[start..end]`, a run of digit groups joined by single
/// spaces or dashes. Consecutive whole groups totalling 13–19 digits that pass the Luhn check,
/// joined by one kind of separator, each but the last of at least 3 digits, are replaced (the
/// longest such span from each start). A candidate that touches a letter or
/// digit, directly or across a dash, belongs to a larger token (a UUID, a hex hash, a longer
/// dashed number) and is kept.
fn redact_cards(text: &str, start: usize, end: usize) -> String {
    let run = &text[start..end];
    // (offset, length) of each digit group within `run`.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let bytes = run.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let s = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        groups.push((s, i - s));
        i += 1; // the separator
    }
    let tb = text.as_bytes();
    let isolated_before = |pos: usize| -> bool {
        // `pos` is an absolute offset where a candidate starts.
        match pos.checked_sub(1).map(|p| tb[p]) {
            None => true,
            Some(b) if b.is_ascii_alphanumeric() => false,
            Some(b'-') => pos < 2 || !tb[pos - 2].is_ascii_alphanumeric(),
            Some(_) => true,
        }
    };
    let isolated_after = |pos: usize| -> bool {
        match tb.get(pos) {
            None => true,
            Some(b) if b.is_ascii_alphanumeric() => false,
            Some(b'-') => !tb.get(pos + 1).is_some_and(|b| b.is_ascii_alphanumeric()),
            Some(_) => true,
        }
    };
    let mut out = String::with_capacity(run.len());
    let mut copied = 0; // offset in `run` up to which `out` holds the input
    let mut g = 0;
    while g < groups.len() {
        let first = groups[g].0;
        let mut best = None;
        let mut digits = Vec::with_capacity(19);
        if isolated_before(start + first) {
            let mut sep = None;
            for (h, &(off, len)) in groups.iter().enumerate().skip(g) {
                if h > g {
                    // Card groups have one separator throughout and at least 3 digits each
                    // (the last group aside): `000-12-3456 666-12-3456` is not a card.
                    if groups[h - 1].1 < 3 || *sep.get_or_insert(bytes[off - 1]) != bytes[off - 1] {
                        break;
                    }
                }
                digits.extend_from_slice(&bytes[off..off + len]);
                if digits.len() > 19 {
                    break;
                }
                if digits.len() >= 13 && luhn_valid(&digits) && isolated_after(start + off + len) {
                    best = Some((h, off + len));
                }
            }
        }
        match best {
            Some((h, stop)) => {
                out.push_str(&run[copied..first]);
                out.push_str(REDACTED);
                copied = stop;
                g = h + 1;
            }
            None => g += 1,
        }
    }
    out.push_str(&run[copied..]);
    out
}

/// Decodes `%XX` escapes and `+` (as a space), lossily.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The fewest bytes a match of `pattern` can span (0 when unknown).
fn minimum_match_len(pattern: &str) -> usize {
    regex_syntax::parse(pattern)
        .ok()
        .and_then(|hir| hir.properties().minimum_len())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::default()
    }

    fn contains_bytes(hay: &str, needle: &[u8]) -> bool {
        hay.as_bytes().windows(needle.len()).any(|w| w == needle)
    }

    /// The secret must be gone: neither it nor any 8-byte piece of it may survive, except
    /// pieces that also occur in the text around it.
    fn assert_gone(input: &str, output: &str, secret: &str) {
        assert!(
            input.contains(secret),
            "bad corpus entry: {secret:?} not in {input:?}"
        );
        assert!(
            !output.contains(secret),
            "{secret:?} survived in {output:?}"
        );
        let context = input.replace(secret, "\u{0}");
        let n = secret.len().min(8);
        for w in secret.as_bytes().windows(n) {
            if !contains_bytes(&context, w) {
                assert!(
                    !contains_bytes(output, w),
                    "piece {:?} of {secret:?} survived in {output:?}",
                    String::from_utf8_lossy(w)
                );
            }
        }
        assert!(output.contains(REDACTED), "{output:?} has no marker");
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6\
                       IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8\
                       PbnGy0AHB7MhgHcTz6sE2I2yPB\naIL0OYZCg4Qq0Ju2a7dCh9dWjfzJ0k\n-----END RSA PRIVATE KEY-----";

    /// (text, planted secret) pairs for `redact_value`.
    fn value_corpus() -> Vec<(String, &'static str)> {
        let v: Vec<(&str, &'static str)> = vec![
            ("token is {}", JWT),
            ("Authorization: Bearer {} sent", "abc123.def456-ghi789"),
            ("Authorization: Basic {}", "dXNlcjpwYXNzd29yZA=="),
            ("aws key {} in env", "AKIAIOSFODNN7EXAMPLE"),
            ("temp creds {}", "ASIAY34FZKBOKMUTVV7A"),
            ("gh token {}", "ghp_1234567890abcdefghijklmnopqrstuvwxyzAB"),
            (
                "fine-grained {}",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF",
            ),
            (
                "slack {}",
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            ),
            (
                "openai={} ok",
                "sk-proj-abc123DEF456ghi789JKL012mno345PQR678stu901",
            ),
            (
                "legacy {}",
                "sk-1234567890abcdefghijklmnopqrstuvwxyzABCDEFGH",
            ),
            ("stripe {}", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
            ("key:\n{}\nafter", PEM),
            ("paid with {} exp 12/25", "4111 1111 1111 1111"),
            ("card={}", "5500-0000-0000-0004"),
            ("amex {}.", "378282246310005"),
            ("visa13 {}", "4222222222222"),
            ("discover({})", "6011111111111117"),
            ("numbers {} 12", "4012888888881881"),
            ("mail {} now", "alice@example.com"),
            ("cc: <{}>", "bob.smith+tag@mail.example.co.uk"),
            ("ssn {}", "123-45-6789"),
            ("SSN={};", "078-05-1120"),
            ("login failed: password={}", "hunter2!x"),
            ("{{'api_key': '{}'}}", "zz-9f8e7d6c"),
            ("{{\"client_secret\": \"{}\"}}", "cs_abcdef123456"),
            ("db_password: {} retrying", "S3cr3tPass"),
            (
                "connecting to postgres://admin:{}@db.internal:5432/app",
                "pgPa55word",
            ),
            ("GET /cb?code=1&access_token={}&x=1", "at_987654321abc"),
            ("X-Api-Key: {}", "k5f4dcc3b5aa765d61d8327deb882cf99"),
            ("set user[password]={} done", "letmein-123"),
            (
                "truncated -----BEGIN OPENSSH PRIVATE KEY-----\n{}",
                "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9u",
            ),
            ("cookie: sessionid={}", "9f2c7a1e55b04d3c"),
            ("retry with session_token={}", "st-0a1b2c3d4e5f"),
        ];
        v.into_iter()
            .map(|(t, s)| {
                (
                    t.replacen("{}", s, 1).replace("{{", "{").replace("}}", "}"),
                    s,
                )
            })
            .collect()
    }

    /// The byte check never clears a string a default rule matches: the corpus, with and
    /// without its surroundings, and random text of the characters the rules are made of.
    #[test]
    fn the_byte_check_never_clears_a_match() {
        let r = r();
        let mut texts: Vec<String> = value_corpus()
            .into_iter()
            .flat_map(|(t, s)| [t, s.to_string()])
            .collect();
        let alphabet: Vec<char> = "aAbBeErRsSiIcCkK09 \t\n-_.:=@/+ſ\u{212a}".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let len = (seed >> 59) as usize + 8;
            let mut t = String::new();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                t.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            texts.push(t);
        }
        for words in [
            "bearer abcdef123456",
            "BaSiC dXNlcjpwYXNz",
            "baſic abcdef123456",
        ] {
            texts.push(words.to_string());
        }
        texts.push("4111111111111111".to_string());
        texts.push("AKIAIOSFODNN7EXAMPLE".to_string());
        let mut matched = 0;
        for t in &texts {
            if r.set.is_match(t) {
                matched += 1;
                assert!(may_hold_secret(t.as_bytes()), "cleared {t:?}");
            }
        }
        assert!(matched > 100, "{matched}");
    }

    #[test]
    fn short_strings_skip_the_scan_but_not_a_short_pattern() {
        let r = r();
        assert!(r.min_match_len >= 5, "{}", r.min_match_len);
        assert_eq!(r.redact_value("v0"), "v0");
        let (short, warnings) = Redactor::new(&[], &["ab".to_string()]);
        assert!(warnings.is_empty());
        assert_eq!(short.min_match_len, 2);
        assert_eq!(short.redact_value("ab"), REDACTED);
        assert_eq!(short.redact_value("a"), "a");
    }

    #[test]
    fn planted_secrets_are_gone() {
        let r = r();
        let corpus = value_corpus();
        assert!(corpus.len() >= 30);
        for (input, secret) in &corpus {
            let out = r.redact_value(input);
            assert_gone(input, &out, secret);
        }
    }

    #[test]
    fn keeps_the_scheme_word_and_surroundings() {
        let r = r();
        assert_eq!(
            r.redact_value("Authorization: Bearer abc123.def456-ghi789 sent"),
            "Authorization: Bearer [REDACTED] sent"
        );
        assert_eq!(r.redact_value("Basic dXNlcjpwYXNz"), "Basic [REDACTED]");
        assert_eq!(
            r.redact_value("mail alice@example.com now"),
            "mail [REDACTED] now"
        );
        assert_eq!(
            r.redact_value("paid 4111-1111-1111-1111."),
            "paid [REDACTED]."
        );
        assert_eq!(
            r.redact_value("{'password': 'x1', 'user': 'bob'}"),
            "{'password': '[REDACTED]', 'user': 'bob'}"
        );
        assert_eq!(
            r.redact_value("postgres://u:p@h/db"),
            "postgres://[REDACTED]:[REDACTED]@h/db"
        );
        assert_eq!(r.redact_value(PEM), REDACTED);
        assert_eq!(r.redact_value(&format!("a {JWT} b")), "a [REDACTED] b");
        // Two cards separated by a space are both found.
        assert_eq!(
            r.redact_value("4111111111111111 5500000000000004"),
            "[REDACTED] [REDACTED]"
        );
    }

    #[test]
    fn look_alikes_are_kept() {
        let r = r();
        for n in [
            "4111111111111112",
            "1234567812345678",
            "1234 5678 9012 3456",
        ] {
            let d: Vec<u8> = n.bytes().filter(u8::is_ascii_digit).collect();
            assert!(!luhn_valid(&d), "{n} passes Luhn; pick another look-alike");
        }
        let keep = [
            "token_count=42",
            "keyboard layout: us",
            "author: Jane Doe",
            "authority=example.com",
            "max_tokens=256",
            "tokenizer=gpt2",
            "session_count: 3",
            "card 4111111111111112 declined",
            "id 1234567812345678",
            "1234 5678 9012 3456",
            "version 1.2.3 and v10.4.22-rc1",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "uuid 12345678-1234-5678-1234-567812345678",
            "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
            "call +1 (555) 123-4567 or 555-123-4567 or +44 20 7946 0958",
            "at 2024-01-15T10:30:00Z on 2024-01-15",
            "the Bearer scheme is described in RFC 6750",
            "use Basic authentication, or bearer tokens",
            "invalid ssn 000-12-3456 666-12-3456 912-34-5678",
            "host 192.168.1.1 and 10.0.0.1:8080",
            "AKIA1234 is too short",
            "header eyJhbGciOiJIUzI1NiJ9 without dots",
            "ghp_short",
            "scikit-learn and sk-learn-style-names-are-fine",
            "user at example dot com, @property, numpy==1.26.4, user@localhost",
            "spinner pinned description",
            "price: 1,234,567.89",
            "https://example.com/path?page=2&sort=asc",
            "long id 12345678901234567890123",
            "passage bypass compass",
            "",
        ];
        assert!(keep.len() >= 20);
        for s in keep {
            let out = r.redact_value(s);
            assert!(matches!(out, Cow::Borrowed(_)), "{s:?} became {out:?}");
        }
    }

    #[test]
    fn sensitive_keys() {
        let r = r();
        for k in [
            "password",
            "db_password",
            "DB-PASSWORD",
            "passwd",
            "pwd",
            "pass",
            "db_pass",
            "passphrase",
            "secret",
            "client_secret",
            "aws_secret_access_key",
            "token",
            "user_token",
            "access_token",
            "accessToken",
            "refresh_token",
            "csrftoken",
            "X-Auth-Token",
            "auth",
            "oauth",
            "x-auth",
            "api_key",
            "apiKey",
            "X-Api-Key",
            "x_api_key",
            "authorization",
            "Proxy-Authorization",
            "cookie",
            "Set-Cookie",
            "session",
            "db_session",
            "userSession",
            "sessionid",
            "JSESSIONID",
            "PHPSESSID",
            "session_key",
            "credential",
            "credentials",
            "private_key",
            "privateKey",
            "ssn",
            "SSN",
            "user_ssn",
            "card_number",
            "Card Number",
            "creditCard",
            "cvv",
            "cvc",
            "pin",
            "cardPIN",
            "card-pin",
            "pin_code",
            "user[password]",
            "user[token]",
            // Documented over-redaction: `secret` counts wherever it occurs.
            "secretary",
        ] {
            assert!(r.is_sensitive_key(k), "{k} should be sensitive");
        }
    }

    #[test]
    fn innocent_keys() {
        let r = r();
        for k in [
            "token_count",
            "tokens",
            "max_tokens",
            "tokenizer",
            "keyboard",
            "author",
            "authority",
            "authored_by",
            "authenticated",
            "session_count",
            "sessions",
            "obsession",
            "pinned",
            "spinner",
            "spin",
            "description",
            "business_name",
            "bypass",
            "passage",
            "compass",
            "primary_key",
            "sort_key",
            "username",
            "name",
            "count",
            "content_type",
            "",
        ] {
            assert!(!r.is_sensitive_key(k), "{k} should not be sensitive");
        }
    }

    #[test]
    fn last_word_splits_camel_case() {
        assert_eq!(last_word("userSession"), "Session");
        assert_eq!(last_word("cardPIN"), "PIN");
        assert_eq!(last_word("APIKey"), "Key");
        assert_eq!(last_word("user[pin]"), "pin");
        assert_eq!(last_word("SSN"), "SSN");
        assert_eq!(last_word("spinner"), "spinner");
        assert_eq!(last_word("a-b_c"), "c");
        assert_eq!(last_word(""), "");
    }

    #[test]
    fn urls() {
        let r = r();
        let cases = [
            (
                "https://user:hunter2pw@example.com/path?api_key=AK12345SECRET&page=2",
                "https://[REDACTED]:[REDACTED]@example.com/path?api_key=[REDACTED]&page=2",
            ),
            (
                "https://alice@example.com/",
                "https://[REDACTED]@example.com/",
            ),
            (
                "https://example.com/cb?code=abc&Access-Token=xyz987#state=1",
                "https://example.com/cb?code=abc&Access-Token=[REDACTED]#state=1",
            ),
            (
                "https://example.com/cb#access_token=xyz987&token_type=bearer",
                "https://example.com/cb#access_token=[REDACTED]&token_type=bearer",
            ),
            (
                "https://x.com/?q=carol%40example.org&n=1",
                "https://x.com/?q=[REDACTED]&n=1",
            ),
            (
                "https://x.com/?to=carol@example.org",
                "https://x.com/?to=[REDACTED]",
            ),
            (
                "https://x.com/?api%5Fkey=abc123&flag&empty_token=",
                "https://x.com/?api%5Fkey=[REDACTED]&flag&empty_token=",
            ),
            (
                "/relative/path?password=pw1&page=3",
                "/relative/path?password=[REDACTED]&page=3",
            ),
            (
                "https://example.com/path?page=2&sort=asc",
                "https://example.com/path?page=2&sort=asc",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(r.redact_url(input), want, "{input}");
        }
        let out = r.redact_url(&format!("https://example.com/reset/{JWT}?x=1"));
        assert_eq!(out, "https://example.com/reset/[REDACTED]?x=1");
    }

    #[test]
    fn headers() {
        let r = r();
        for name in [
            "Authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "X-Auth-Token",
        ] {
            assert_eq!(r.redact_header(name, "anything at all"), REDACTED, "{name}");
        }
        assert!(matches!(
            r.redact_header("Content-Type", "application/json"),
            Cow::Borrowed("application/json")
        ));
        assert_eq!(
            r.redact_header("X-Forwarded-Email", "alice@example.com"),
            REDACTED
        );
        assert_eq!(
            r.redact_header("Referer", "https://x.com/?token=abc123"),
            "https://x.com/?token=[REDACTED]"
        );
    }

    #[test]
    fn extra_keys_and_patterns() {
        let keys = vec!["Customer-Ref".to_string(), "--".to_string()];
        let pats = vec![
            "ACME-[0-9]{6}".to_string(),
            "([unclosed".to_string(),
            "x*".to_string(),
        ];
        let (r, warnings) = Redactor::new(&keys, &pats);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("FERROTRACE_REDACT_VALUES"));
        assert!(warnings[0].contains("([unclosed"));
        assert!(warnings[0].contains("unclosed"), "{}", warnings[0]);
        assert!(warnings[1].contains("\"x*\""));
        assert!(r.is_sensitive_key("customer_ref"));
        assert!(r.is_sensitive_key("old_customerRef"));
        assert!(!r.is_sensitive_key("customer"));
        assert_eq!(
            r.redact_value("order ACME-123456 ok"),
            "order [REDACTED] ok"
        );
        // The defaults stay.
        assert_eq!(r.redact_value("a@example.com"), REDACTED);
        assert!(r.is_sensitive_key("password"));
        // An empty "--" key matches nothing extra.
        assert!(!r.is_sensitive_key("keyboard"));
    }

    #[test]
    fn helpers() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(is_valid_ssn("123-45-6789"));
        assert!(!is_valid_ssn("000-45-6789"));
        assert!(!is_valid_ssn("666-45-6789"));
        assert!(!is_valid_ssn("950-45-6789"));
        assert!(!is_valid_ssn("123-00-6789"));
        assert!(!is_valid_ssn("123-45-0000"));
        assert_eq!(percent_decode("a%40b+c%2"), "a@b c%2");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(normalize_key("X-Api_Key"), "xapikey");
    }

    #[test]
    fn non_ascii_text() {
        let r = r();
        assert!(matches!(r.redact_value("héllo wörld ✓"), Cow::Borrowed(_)));
        assert_eq!(
            r.redact_value("mél: bob@example.com ✓"),
            "mél: [REDACTED] ✓"
        );
        assert!(!r.is_sensitive_key("ключ"));
        assert!(r.is_sensitive_key("пароль_password"));
    }

    /// Prints the cost of `redact_value` on strings without secrets; run with `--nocapture`
    /// (and `--release` for meaningful numbers).
    #[test]
    fn no_match_cost() {
        let r = r();
        let samples = [
            "hello world",
            "GET /api/v1/users/42 returned 200 in 3.2 ms",
            "a typical short argument preview, 64 characters long, no secrets",
        ];
        for s in samples {
            let n = 100_000u32;
            let t = std::time::Instant::now();
            for _ in 0..n {
                assert!(matches!(
                    r.redact_value(std::hint::black_box(s)),
                    Cow::Borrowed(_)
                ));
            }
            let per = t.elapsed().as_nanos() as f64 / f64::from(n);
            println!("redact_value no-match, {} bytes: {per:.0} ns", s.len());
        }
    }

    #[test]
    fn attributes_are_redacted_by_key_and_by_value() {
        let (r, _) = Redactor::new(&[], &[]);
        assert_eq!(
            r.redact_attribute("password", "hunter2"),
            ("password".to_string(), REDACTED.to_string())
        );
        assert_eq!(
            r.redact_attribute("owner", "mail bob@example.com now"),
            ("owner".to_string(), format!("mail {REDACTED} now"))
        );
        assert_eq!(
            r.redact_attribute("tier", "gold"),
            ("tier".to_string(), "gold".to_string())
        );
    }
}
