"""What the fidelity suite runs. Each case is one program, run untraced and traced."""

from __future__ import annotations

from dataclasses import dataclass, field

# CPython's own regression suite, `python -m test -v MODULE` (ships with every CPython).
REGRTEST = [
    # named by the issue
    "test_dataclasses",
    "test_enum",
    "test_inspect",
    "test_descr",
    "test_ordered_dict",
    "test_weakref",
    "test_traceback",
    "test_json",
    "test_cmd_line_script",
    "test_warnings",
    # a spread of the language and library
    "test_functools",
    "test_itertools",
    "test_collections",
    "test_re",
    "test_typing",
    "test_contextlib",
    "test_contextlib_async",
    "test_generators",
    "test_coroutines",
    "test_asyncio.test_locks",
    "test_asyncio.test_queues",
    "test_asyncio.test_pep492",
    "test_threading",
    "test_os",
    "test_pickle",
    "test_copy",
    "test_string",
    "test_textwrap",
    "test_argparse",
    "test_logging",
    "test_unittest",
    "test_sys_setprofile",
    "test_sys_settrace",
    "test_exceptions",
    "test_class",
    "test_scope",
    "test_with",
    "test_abc",
    "test_property",
    "test_super",
    "test_statistics",
    "test_fractions",
    "test_decimal",
    "test_heapq",
    "test_bisect",
    "test_difflib",
    "test_csv",
    "test_fork1",
    "test_signal",
    "test_dict",
    "test_set",
    "test_types",
    "test_grammar",
    "test_builtin",
    "test_pprint",
    "test_atexit",
    "test_profile",
    "test_cprofile",
    "test_genexps",
    "test_raise",
    "test_context",
]

# Tests that fail here untraced too (signals and threads in this sandbox): left out by regrtest -i.
REGRTEST_ARGS = {
    "test_threading": ["-i", "test_interrupt_main_*", "-i", "test_import_from_another_thread"],
    "test_generators": ["-i", "test_raise_and_yield_from"],
}

# Differences inherent to a backend, whatever tracer used it the same way (documented in the
# README): (module, backend) -> (the only tests that may change, why). Reported as such in the
# table, not counted as failures; any other change in the module still is one.
_PROFILE_AFTER_A_PROFILER = (
    ("test_calling_conventions",),
    "profile.Profile.runctx calls sys.setprofile while a profile function (ferrotrace's hook) "
    "is installed; CPython then hands the c_return of that very call to the new profiler, "
    "whose own bookkeeping asserts ('Bad return'). Untraced, any profile function set before "
    "does the same (sys.setprofile(f) then profile.run(...)); the evalframe and monitoring "
    "backends leave the slot free",
)
KNOWN = {
    ("test_profile", "setprofile"): _PROFILE_AFTER_A_PROFILER,
    ("test_cprofile", "setprofile"): _PROFILE_AFTER_A_PROFILER,  # it runs test_profile's tests too
    ("test_threading", "setprofile"): (
        ("test_getprofile_all_threads",),
        "sys.getprofile() on a traced thread returns ferrotrace's hook handle, not None: the "
        "setprofile backend occupies the thread's profile slot (so that a program saving and "
        "restoring it keeps tracing); the evalframe and monitoring backends leave it free",
    ),
}

# Lines a module prints in an order of its own (threads writing to one stream): not compared.
REGRTEST_NOISE = {
    "test_threading": r"task|usec|waiting for|done$|^\s*\d*\s*$",
}


@dataclass(frozen=True)
class Library:
    """A pure-Python library whose sdist carries its tests, run by pytest from the sdist root."""

    name: str
    version: str
    args: tuple[str, ...]  # pytest arguments, relative to the unpacked sdist
    deps: tuple[str, ...] = field(default=())

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}"


LIBRARIES = [
    Library("more-itertools", "10.5.0", ("tests",)),
    Library("toolz", "1.0.0", ("toolz/tests",)),
    Library("h11", "0.14.0", ("h11/tests",)),
    Library("pyparsing", "3.2.0", ("tests",)),
    Library("click", "8.1.7", ("tests",)),
]

# Imported each in a fresh interpreter (module names; tests/fidelity/requirements.txt installs them).
IMPORTS = [
    "httpx",
    "httpcore",
    "uvicorn",
    "h11",
    "anyio",
    "sniffio",
    "pydantic",
    "pydantic_core",
    "sqlalchemy",
    "pytest",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset_normalizer",
    "flask",
    "werkzeug",
    "itsdangerous",
    "markupsafe",
    "django",
    "starlette",
    "fastapi",
    "jinja2",
    "click",
    "attrs",
    "rich",
    "pygments",
    "markdown_it",
    "yaml",
    "packaging",
    "pluggy",
    "typing_extensions",
    "dateutil",
    "numpy",
    "more_itertools",
    "toolz",
    "pyparsing",
    "hypothesis",
]

# The CI subset: a few minutes for every version and backend together.
CI_REGRTEST = ["test_contextlib", "test_scope", "test_with", "test_copy", "test_abc", "test_class"]
CI_LIBRARIES = ["toolz"]
# Importable in the project's own test venv (tests/requirements.txt), so CI installs nothing more.
CI_IMPORTS = ["pytest", "requests", "urllib3", "idna", "pygments", "packaging", "opentelemetry.sdk.trace"]
