//! What `ferrotrace report` prints, read from JSONL traces in one streaming pass: spans and
//! sessions counted, per-function calls, total and self time, the `meta` records.
//!
//! Reads the files in large chunks, a line at a time, and parses a span only up to its first
//! optional member (`args`, `return`, `exception`, `unfinished`: previews, most of its bytes),
//! as `python/ferrotrace/_trace_reader.py`'s `heads` does. A line that is not a JSON object
//! (a cut-off last line of a killed process) is skipped. Memory grows with the distinct
//! functions and the calls still open, not with the trace.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

/// How a span line starts when `heads`-style cutting applies.
const SPAN_PREFIX: &[u8] = br#"{"v":1,"type":"span""#;
/// Where a span's optional members start. Such text cannot occur inside a JSON string (a quote
/// in a string is escaped), and every member before them is a scalar.
const TAIL_KEYS: [&[u8]; 4] = [
    br#","args":"#,
    br#","return":"#,
    br#","exception":"#,
    br#","unfinished":"#,
];
/// The cut is looked for from here on (past the span prefix), as the Python reader does.
const TAIL_FROM: usize = 40;
/// Read buffer size: large reads keep the per-line cost to parsing.
const READ_CHUNK: usize = 1 << 20;

/// The members of a record the report needs; the others are skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parent_span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    module: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    qualname: Option<Cow<'a, str>>,
    #[serde(default)]
    duration_ns: Option<i64>,
    #[serde(default)]
    self_ns: Option<i64>,
}

/// One function's line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionRow {
    /// `module.qualname` (the qualname alone without a module).
    pub name: String,
    pub calls: u64,
    /// Time of the outermost calls (a recursive function's inner calls are not added again).
    pub total_ns: i64,
    pub self_ns: i64,
}

/// Everything the text report shows, fed records in the order the trace holds them (a call's
/// children before the call itself).
#[derive(Default, Debug)]
pub struct TraceReport {
    /// Span records read.
    pub spans: u64,
    /// `session_start` records read.
    pub sessions: u64,
    /// The `meta` records' lines, as read.
    pub metas: Vec<String>,
    /// Per function, in the order first seen.
    functions: Vec<FunctionRow>,
    by_name: HashMap<String, usize>,
    /// Per open parent span id: per function, the time of the outermost calls seen below it
    /// (taken back out when the parent turns out to be the same function).
    below: HashMap<String, HashMap<usize, i64>>,
    /// Scratch for a cut line and a function name.
    text: String,
    name: String,
}

impl TraceReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every line of the JSONL file at `path`.
    pub fn read_file(&mut self, path: &Path) -> io::Result<()> {
        let mut reader = BufReader::with_capacity(READ_CHUNK, File::open(path)?);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            self.add_line(&line);
        }
    }

    /// Takes one line of a trace (with or without its newline).
    pub fn add_line(&mut self, line: &[u8]) {
        let head = match line
            .starts_with(SPAN_PREFIX)
            .then(|| tail_start(line))
            .flatten()
        {
            Some(cut) => &line[..cut],
            None => line,
        };
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        text.push_str(&String::from_utf8_lossy(head));
        if head.len() < line.len() {
            text.push('}');
        }
        self.add_text(&text, line);
        self.text = text;
    }

    fn add_text(&mut self, text: &str, line: &[u8]) {
        if !text.trim_start().starts_with('{') {
            return;
        }
        let Ok(record) = serde_json::from_str::<Head>(text) else {
            return;
        };
        match record.kind.as_deref() {
            Some("span") => self.add_span(&record),
            Some("session_start") => self.sessions += 1,
            Some("session_end") => {
                self.below.remove(record.span_id.as_deref().unwrap_or(""));
            }
            Some("meta") => self.metas.push(String::from_utf8_lossy(line).into_owned()),
            _ => {}
        }
    }

    fn add_span(&mut self, span: &Head<'_>) {
        self.spans += 1;
        self.name.clear();
        match span.module.as_deref() {
            Some(module) if !module.is_empty() => {
                self.name.push_str(module);
                self.name.push('.');
            }
            _ => {}
        }
        self.name.push_str(span.qualname.as_deref().unwrap_or(""));
        let index = match self.by_name.get(self.name.as_str()) {
            Some(&i) => i,
            None => {
                let i = self.functions.len();
                self.functions.push(FunctionRow {
                    name: self.name.clone(),
                    calls: 0,
                    total_ns: 0,
                    self_ns: 0,
                });
                self.by_name.insert(self.name.clone(), i);
                i
            }
        };
        let duration = span.duration_ns.unwrap_or(0);
        let row = &mut self.functions[index];
        row.calls += 1;
        row.total_ns += duration;
        row.self_ns += span.self_ns.unwrap_or(0);
        let below = self.below.remove(span.span_id.as_deref().unwrap_or(""));
        let parent = span.parent_span_id.as_deref().unwrap_or("");
        if !self.below.contains_key(parent) {
            self.below.insert(parent.to_owned(), HashMap::new());
        }
        let into = self.below.get_mut(parent).expect("inserted above");
        if let Some(mut below) = below {
            row.total_ns -= below.remove(&index).unwrap_or(0);
            for (other, ns) in below {
                *into.entry(other).or_insert(0) += ns;
            }
        }
        *into.entry(index).or_insert(0) += duration;
    }

    /// The `n` functions with the most total time (ties in the order first seen).
    pub fn top(&self, n: usize) -> Vec<FunctionRow> {
        let mut rows = self.functions.clone();
        rows.sort_by_key(|r| std::cmp::Reverse(r.total_ns));
        rows.truncate(n);
        rows
    }
}

/// Where a span line's optional members start (past [`TAIL_FROM`]), if it has any.
fn tail_start(line: &[u8]) -> Option<usize> {
    let mut at = TAIL_FROM;
    while at < line.len() {
        let comma = at + line[at..].iter().position(|&b| b == b',')?;
        if TAIL_KEYS.iter().any(|k| line[comma..].starts_with(k)) {
            return Some(comma);
        }
        at = comma + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: &str, name: &str, duration: i64, self_ns: i64) -> String {
        format!(
            r#"{{"v":1,"type":"span","pid":1,"trace_id":"t","span_id":"{id}","parent_span_id":"{parent}","module":"m","qualname":"{name}","duration_ns":{duration},"self_ns":{self_ns},"args":{{"x":"1"}},"return":"2"}}"#
        )
    }

    fn report(lines: &[String]) -> TraceReport {
        let mut r = TraceReport::new();
        for l in lines {
            r.add_line(l.as_bytes());
        }
        r
    }

    #[test]
    fn a_recursive_function_counts_its_outermost_calls() {
        let r = report(&[
            span("3", "2", "f", 10, 10),
            span("2", "1", "f", 30, 20),
            span("1", "s", "g", 50, 20),
            span("4", "s", "f", 5, 5),
        ]);
        let top = r.top(10);
        assert_eq!(r.spans, 4);
        assert_eq!(
            top[0],
            FunctionRow {
                name: "m.g".into(),
                calls: 1,
                total_ns: 50,
                self_ns: 20
            }
        );
        assert_eq!(
            top[1],
            FunctionRow {
                name: "m.f".into(),
                calls: 3,
                total_ns: 35,
                self_ns: 35
            }
        );
    }

    #[test]
    fn a_line_cut_in_its_previews_still_counts_and_garbage_does_not() {
        let whole = span("1", "s", "f", 7, 7);
        let cut = &whole[..whole.find(r#""x":"#).unwrap() + 3];
        let r = report(&[
            cut.to_owned(),
            "{\"v\":1,\"type\":\"sp".into(),
            "[1,2]".into(),
            "".into(),
        ]);
        assert_eq!(r.spans, 1);
        assert_eq!(r.top(1)[0].total_ns, 7);
    }

    #[test]
    fn sessions_and_metas_are_kept() {
        let r = report(&[
            r#"{"v":1,"type":"session_start","span_id":"s","tag":"x"}"#.into(),
            r#"{"v":1,"type":"session_end","span_id":"s"}"#.into(),
            r#"{"v":1,"type":"meta","pid":3,"dropped":0}"#.into(),
        ]);
        assert_eq!((r.sessions, r.metas.len()), (1, 1));
        assert!(r.metas[0].contains("\"pid\":3"));
    }

    #[test]
    fn a_function_without_a_module_is_its_qualname() {
        let r = report(&[
            r#"{"v":1,"type":"span","span_id":"1","module":"","qualname":"<module>","duration_ns":3,"self_ns":3}"#.into(),
        ]);
        assert_eq!(r.top(1)[0].name, "<module>");
    }
}
