//! Which functions are recorded. Decided once per code object by the hook, never per call.

use regex::Regex;
use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

/// Built-in and user filters over `module::qualname` and file paths.
#[derive(Debug, Default)]
pub struct Filter {
    include: Option<Regex>,
    exclude: Option<Regex>,
    exclude_files: Option<Regex>,
    /// File path prefixes excluded by default (standard library, site-packages, ...).
    default_prefixes: Vec<String>,
    exclude_defaults: bool,
    /// When set, only files under this directory are recorded.
    only_under: Option<String>,
}

/// Inputs to [`Filter::new`].
#[derive(Debug, Default, Clone)]
pub struct FilterSpec {
    pub include: Option<String>,
    pub exclude: Option<String>,
    pub exclude_files: Option<String>,
    pub default_prefixes: Vec<String>,
    pub exclude_defaults: bool,
    pub only_under: Option<String>,
}

impl Filter {
    /// Compiles the filters. Patterns must already be validated by [`crate::config`].
    pub fn new(spec: FilterSpec) -> Result<Filter, regex::Error> {
        let compile = |p: &Option<String>| p.as_deref().map(Regex::new).transpose();
        Ok(Filter {
            include: compile(&spec.include)?,
            exclude: compile(&spec.exclude)?,
            exclude_files: compile(&spec.exclude_files)?,
            default_prefixes: spec
                .default_prefixes
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect(),
            exclude_defaults: spec.exclude_defaults,
            only_under: spec.only_under,
        })
    }

    /// True when the built-in excludes reject this function.
    fn excluded_by_default(&self, module: &str, file: &str) -> bool {
        module.starts_with("importlib._bootstrap")
            || file.starts_with("<frozen")
            || (file == "<string>" && module.starts_with("namedtuple_"))
            || file.contains("/site-packages/")
            || file.contains("/dist-packages/")
            || self
                .default_prefixes
                .iter()
                .any(|p| file.starts_with(p.as_str()))
    }

    /// True when the user's include pattern matches `module::qualname`.
    fn explicitly_included(&self, module: &str, qualname: &str) -> bool {
        self.include
            .as_ref()
            .is_some_and(|re| re.is_match(&format!("{module}::{qualname}")))
    }

    /// Whether calls to this function are recorded. Path rules see the file with `.` and
    /// `..` resolved, so `proj/../elsewhere/x.py` is not under `proj/`. An explicit include
    /// match wins over the built-in excludes (standard library, site-packages), never over
    /// the user's exclude or ferrotrace's own code.
    pub fn decide(&self, module: &str, qualname: &str, file: &str) -> bool {
        let file = &*lexically_normalized(file);
        if is_ferrotrace(module, file) {
            return false;
        }
        if self.exclude_defaults
            && self.excluded_by_default(module, file)
            && !self.explicitly_included(module, qualname)
        {
            return false;
        }
        if let Some(dir) = &self.only_under {
            if !file.starts_with(dir.as_str()) {
                return false;
            }
        }
        if let Some(re) = &self.exclude_files {
            if re.is_match(file) {
                return false;
            }
        }
        if self.include.is_none() && self.exclude.is_none() {
            return true;
        }
        let key = format!("{module}::{qualname}");
        if let Some(re) = &self.include {
            if !re.is_match(&key) {
                return false;
            }
        }
        !self.exclude.as_ref().is_some_and(|re| re.is_match(&key))
    }
}

/// True for ferrotrace's own code, which is never recorded, whatever the settings: its
/// package, and the `sitecustomize` that `ferrotrace run` puts first on the path (its file
/// lies in the package's `_bootstrap` folder).
fn is_ferrotrace(module: &str, file: &str) -> bool {
    module == "ferrotrace"
        || module.starts_with("ferrotrace.")
        || file.contains("/ferrotrace/_bootstrap/")
}

/// `path` with `.` components dropped and each `..` removing the component before it (no
/// file system access); unchanged when it has neither.
fn lexically_normalized(path: &str) -> Cow<'_, str> {
    let p = Path::new(path);
    if !p
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Cow::Borrowed(path);
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Cow::Owned(out.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: Option<&str>, exclude: Option<&str>, defaults: bool) -> Filter {
        Filter::new(FilterSpec {
            include: include.map(str::to_string),
            exclude: exclude.map(str::to_string),
            default_prefixes: vec!["/usr/lib/python3.11/".into()],
            exclude_defaults: defaults,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn ferrotrace_itself_is_never_recorded() {
        for f in [
            filter(Some(".*"), None, false),
            filter(Some("^ferrotrace"), None, true),
            filter(None, None, false),
        ] {
            assert!(!f.decide(
                "ferrotrace._lifecycle",
                "_at_exit",
                "/x/ferrotrace/_lifecycle.py"
            ));
            assert!(!f.decide("ferrotrace", "configure", "/x/ferrotrace/__init__.py"));
            assert!(!f.decide(
                "sitecustomize",
                "_chain_next_sitecustomize",
                "/x/ferrotrace/_bootstrap/sitecustomize.py"
            ));
            assert!(f.decide("ferrotrace_demo", "main", "/src/ferrotrace_demo.py"));
        }
    }

    #[test]
    fn defaults_exclude_stdlib_and_site_packages() {
        let f = filter(None, None, true);
        assert!(f.decide("app", "main", "/src/app.py"));
        assert!(!f.decide("json", "dumps", "/usr/lib/python3.11/json/__init__.py"));
        assert!(!f.decide(
            "requests",
            "get",
            "/venv/lib/python3.11/site-packages/requests/api.py"
        ));
        assert!(!f.decide("ferrotrace.cli", "main", "/src/ferrotrace/cli.py"));
        assert!(!f.decide(
            "importlib._bootstrap",
            "_load",
            "<frozen importlib._bootstrap>"
        ));
        assert!(!f.decide("namedtuple_Point", "<lambda>", "<string>"));
        assert!(f.decide("namedtuple_Point", "<lambda>", "/src/namedtuple_Point.py"));
        let all = filter(None, None, false);
        assert!(all.decide("json", "dumps", "/usr/lib/python3.11/json/__init__.py"));
    }

    #[test]
    fn path_rules_see_normalized_paths() {
        let f = Filter::new(FilterSpec {
            only_under: Some("/work/proj/".into()),
            default_prefixes: vec!["/usr/lib/python3.11/".into()],
            exclude_defaults: true,
            ..Default::default()
        })
        .unwrap();
        assert!(f.decide("m", "f", "/work/proj/./pkg/m.py"));
        assert!(!f.decide("m", "f", "/work/proj/../other/m.py"));
        assert!(!f.decide("json", "f", "/work/proj/../../usr/lib/python3.11/json/x.py"));
        assert_eq!(lexically_normalized("rel/../x.py"), "x.py");
        assert_eq!(lexically_normalized("../x.py"), "../x.py");
        assert_eq!(lexically_normalized("<frozen os>"), "<frozen os>");
    }

    #[test]
    fn user_filters_keep_defaults() {
        let f = filter(Some(r"^app\."), Some("secret"), true);
        assert!(f.decide("app.core", "run", "/src/app/core.py"));
        assert!(!f.decide("other", "run", "/src/other.py"));
        assert!(!f.decide("app.core", "secret_stuff", "/src/app/core.py"));
        assert!(f.decide("app.json", "x", "/usr/lib/python3.11/app/json.py"));
    }

    #[test]
    fn explicit_include_beats_builtin_excludes_not_user_exclude_or_ferrotrace() {
        let site = "/venv/lib/python3.11/site-packages/pygments/lexer.py";
        let f = filter(Some(r"^pygments|^json|^ferrotrace"), Some("::secret"), true);
        assert!(f.decide("pygments.lexer", "Lexer.get_tokens", site));
        assert!(f.decide("json", "dumps", "/usr/lib/python3.11/json/__init__.py"));
        assert!(!f.decide("pygments.lexer", "secret", site));
        assert!(!f.decide("requests", "get", "/venv/lib/python3.11/site-packages/r.py"));
        assert!(!f.decide("ferrotrace.cli", "main", "/src/ferrotrace/cli.py"));
        let everything = filter(Some(".*"), None, false);
        assert!(!everything.decide("ferrotrace._lifecycle", "shutdown", "/x/ferrotrace/l.py"));
    }
}
