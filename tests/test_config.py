"""Every setting with a rule, given a bad value: a ValueError in the API, one warning and a
safe fallback under `ferrotrace.auto`, exit status 2 from `ferrotrace config`. Unknown
variables get the closest name; `ferrotrace config` shows each value and its source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_BACKEND, read_trace, spans

# (setting, bad value, a fragment of the rule the message must state). `{file}` is an
# existing regular file. Settings without a rule (any text) are not listed: SERVICE_NAME,
# API_KEY, REDACT_KEYS.
BAD = [
    ("ENABLED", "maybe", "a boolean"),
    ("BACKEND", "fast", "one of auto, setprofile, monitoring, evalframe"),
    ("SAMPLE_RATE", "1.5", "a number from 0 to 1"),
    ("FUNCTION_SAMPLE_RATE", "-0.1", "a number from 0 to 1"),
    ("HONOR_PARENT_SAMPLED", "2", "a boolean"),
    ("MAX_DEPTH", "-1", "a whole number >= 0"),
    ("MIN_DURATION_US", "1.5", "a whole number of microseconds"),
    ("INCLUDE", "(", "a regular expression over module::qualname"),
    ("EXCLUDE", "[a-", "a regular expression over module::qualname"),
    ("EXCLUDE_FILES", "*.py", "a regular expression over the file path"),
    ("CAPTURE_ONLY_CWD", "sometimes", "a boolean"),
    ("EXCLUDE_DEFAULTS", "nope", "a boolean"),
    ("CAPTURE", "everything", "one of none, args, return, all"),
    ("PREVIEW", "pretty", "one of safe, fields, repr"),
    ("MAX_STR", "4", "from 8 to 1048576"),
    ("MAX_ITEMS", "0", "from 1 to 10000"),
    ("MAX_PREVIEW_DEPTH", "33", "from 0 to 32"),
    ("REDACT_VALUES", "token-[0-9]+;;(", "regular expressions separated by ';;'"),
    ("EXPORTER", "jsonl,kafka", "jsonl, chrome, perfetto, otlp, http"),
    ("OUTPUT", "", "a file path"),
    ("BATCH_SIZE", "0", "from 1 to 1000000"),
    ("FLUSH_INTERVAL_MS", "0", "from 1 to 3600000"),
    ("MAX_QUEUE", "lots", "from 1 to 100000000"),
    ("SHUTDOWN_TIMEOUT_MS", "600001", "from 0 to 600000"),
    ("FOLLOW_THREADS", "always", "a boolean"),
    ("CHROME_OUTPUT", "{file}/x.json", "a file path"),
    ("PERFETTO_OUTPUT", "{file}/x.perfetto-trace", "a file path"),
    ("OTLP_ENDPOINT", "localhost:4318", "an http:// or https:// URL"),
    ("OTLP_HEADERS", "bad header=1", "name=value pairs"),
    ("OTLP_PROTOCOL", "grpc", "one of http/protobuf, http/json"),
    ("OTLP_COMPRESSION", "brotli", "one of none, gzip"),
    ("OTLP_TIMEOUT_MS", "0", "from 1 to 600000"),
    ("RESOURCE_ATTRIBUTES", "novalue", "key=value pairs"),
    ("HTTP_ENDPOINT", "ftp://ingest", "an http:// or https:// URL"),
    ("ALLOW_INSECURE", "perhaps", "a boolean"),
    ("SPOOL_DIR", "{file}", "a directory"),
    ("SPOOL_MAX_MB", "-1", "from 0 to 1048576"),
    ("DEBUG_EXPORT_DELAY_MS", "60001", "from 0 to 60000"),
    ("INSTRUMENT", "requests,curl", "all, none, or a comma-separated list of: requests, httpx"),
    ("PROPAGATE", "sometimes", "a boolean"),
    ("CAPTURE_HEADERS", "x-id,bad header", "comma-separated HTTP header names"),
    ("CAPTURE_BODIES", "maybe", "a boolean"),
    ("EXCLUDED_URLS", "^/ok,(", "comma-separated regular expressions over the request path"),
    ("RESPONSE_TRACEPARENT", "sure", "a boolean"),
]
# The same rules reached through the OpenTelemetry variables.
BAD_OTEL = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector", "an http:// or https:// URL"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "novalue", "name=value pairs"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "grpc is not supported"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "one of none, gzip"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "from 1 to 600000"),
    ("OTEL_RESOURCE_ATTRIBUTES", "a=%zz", "key=value pairs"),
    ("OTEL_PYTHON_EXCLUDED_URLS", "(", "regular expressions over the request path"),
]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERROTRACE", "OTEL_"))}
    if TEST_BACKEND:
        env["FERROTRACE_BACKEND"] = TEST_BACKEND
    env.update(extra)
    return env


def value_of(bad: str, tmp: Path) -> str:
    regular = tmp / "regular-file"
    regular.write_text("")
    return bad.replace("{file}", str(regular))


def python(tmp: Path, code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def states(message: str, variable: str, value: str, rule: str) -> bool:
    """The message names the variable, shows the value quoted, and states the rule."""
    return variable in message and f'"{value}"' in message and rule in message


API_TABLE = """
import json, sys
import ferrotrace
from ferrotrace import _native
rows, _ = _native.config_report({}, {})
rules = {name: rule for name, _env, _value, _source, rule, _error in rows}
out = {}
for name, bad in json.loads(sys.argv[1]):
    try:
        ferrotrace.configure(**{name: bad})
        out[name] = [None, rules[name], bad]
    except ValueError as e:
        out[name] = [str(e), rules[name], bad]
print(json.dumps({"errors": out, "configured": _native.is_configured()}))
"""


@pytest.fixture(scope="module")
def api_errors(tmp_path_factory) -> dict[str, list]:
    tmp = tmp_path_factory.mktemp("api")
    table = [(name.lower(), value_of(bad, tmp)) for name, bad, _ in BAD]
    proc = python(tmp, API_TABLE, clean_env(), json.dumps(table))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["configured"] is False, "no bad value may be applied"
    return got["errors"]


@pytest.mark.parametrize("name,bad,rule", BAD, ids=[b[0] for b in BAD])
def test_api_raises_a_value_error_naming_setting_value_and_rule(api_errors, name, bad, rule):
    message, documented, value = api_errors[name.lower()]
    assert message is not None, f"configure({name.lower()}={value!r}) was accepted"
    assert states(message, name.lower(), value, rule), message
    assert documented in message, message
    assert len(message.splitlines()) == 1, message


AUTO_PROGRAM = """
import ferrotrace.auto
def work(contact):
    return len(contact)
work("alice@example.com")
print("ran")
"""


def auto_run(tmp: Path, variable: str, value: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    env = clean_env(FERROTRACE_OUTPUT="trace.jsonl", FERROTRACE_CAPTURE="args")
    env[variable] = value
    proc = python(tmp, AUTO_PROGRAM, env)
    out = tmp / ("ferrotrace.jsonl" if variable == "FERROTRACE_OUTPUT" else "trace.jsonl")
    return proc, spans(read_trace(out)) if out.exists() else []


@pytest.mark.parametrize(
    "variable,bad,rule",
    [(f"FERROTRACE_{n}", b, r) for n, b, r in BAD] + BAD_OTEL,
    ids=[b[0] for b in BAD] + [b[0] for b in BAD_OTEL],
)
def test_auto_warns_once_and_falls_back(tmp_path, variable, bad, rule):
    value = value_of(bad, tmp_path)
    proc, recorded = auto_run(tmp_path, variable, value)
    assert proc.returncode == 0 and proc.stdout == "ran\n", proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert states(lines[0], variable, value, rule), lines[0]
    work = [s for s in recorded if s["qualname"] == "work"]
    if variable in ("FERROTRACE_INCLUDE", "FERROTRACE_EXCLUDE", "FERROTRACE_EXCLUDE_FILES"):
        assert "disabled" in lines[0] and recorded == [], "a bad filter traces nothing"
        return
    # Every other bad value takes its default, and the default traces `work`.
    assert len(work) == 1, recorded
    if variable == "FERROTRACE_REDACT_VALUES":
        assert "default redaction stays in force" in lines[0]
        assert "alice@example.com" not in str(work[0]), work[0]
        assert "[REDACTED]" in work[0]["args"]["contact"], work[0]
    else:
        assert 'using the default "' in lines[0], lines[0]


def test_unknown_variable_gets_the_closest_name(tmp_path):
    proc, recorded = auto_run(tmp_path, "FERROTRACE_SAMPL_RATE", "0.5")
    assert proc.returncode == 0 and proc.stdout == "ran\n", proc.stderr
    assert proc.stderr.splitlines() == [
        "ferrotrace: FERROTRACE_SAMPL_RATE is not a ferrotrace setting; did you mean FERROTRACE_SAMPLE_RATE?"
    ]
    assert [s["qualname"] for s in recorded] == ["work"]
    cli = python(tmp_path, "", clean_env(FERROTRACE_SAMPL_RATE="0.5"), "-m", "ferrotrace", "config")
    assert cli.returncode == 0, cli.stderr
    assert "did you mean FERROTRACE_SAMPLE_RATE?" in cli.stdout


def config_cli(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return python(tmp, "", env, "-m", "ferrotrace", "config", *args)


@pytest.mark.parametrize("table", [BAD, BAD_OTEL], ids=["ferrotrace", "otel"])
def test_config_command_exits_2_and_reports_every_invalid_setting(tmp_path, table):
    env = clean_env()
    expected = []
    for name, bad, rule in table:
        variable = name if name.startswith("OTEL_") else f"FERROTRACE_{name}"
        env[variable] = value_of(bad, tmp_path)
        expected.append((variable, env[variable], rule))
    proc = config_cli(tmp_path, env)
    assert proc.returncode == 2, proc.stdout
    errors = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("ERROR:")]
    assert len(errors) == len(table), proc.stdout
    for variable, value, rule in expected:
        assert any(states(e, variable, value, rule) for e in errors), (variable, proc.stdout)
    assert f"{len(table)} invalid setting(s)" in proc.stderr


def test_config_command_shows_each_value_and_its_source(tmp_path):
    env = clean_env(
        FERROTRACE_SAMPLE_RATE="0.25",
        FERROTRACE_MAX_DEPTH="9",
        OTEL_SERVICE_NAME="checkout",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318",
        FERROTRACE_API_KEY="s3cr3t-key",
    )
    env.pop("FERROTRACE_BACKEND", None)
    proc = config_cli(tmp_path, env, "--set", "max_depth=3", "--set", "capture=args")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    settings = proc.stdout.split("\nintegrations")[0]
    lines = settings.splitlines()
    rows = {line.split()[0]: line for line in lines if line and not line.startswith((" ", "recorded: "))}
    assert lines[-1] == (
        "recorded: every function outside the standard library and site-packages; never ferrotrace's own code"
    )
    assert rows["sample_rate"].split()[1:] == ["'0.25'", "environment", "(FERROTRACE_SAMPLE_RATE)"]
    assert rows["max_depth"].split()[1:] == ["'3'", "argument", "(max_depth)"]
    assert rows["capture"].split()[1:] == ["'args'", "argument", "(capture)"]
    assert rows["service_name"].split()[1:] == ["'checkout'", "OTEL", "environment", "(OTEL_SERVICE_NAME)"]
    assert rows["otlp_endpoint"].split()[1:] == [
        "'http://collector:4318/v1/traces'",
        "OTEL",
        "environment",
        "(OTEL_EXPORTER_OTLP_ENDPOINT)",
    ]
    assert rows["batch_size"].split()[1:] == ["'512'", "default"]
    picked = "monitoring" if sys.version_info >= (3, 12) else "evalframe"
    assert rows["backend"].split()[1:6] == ["'auto'", "default,", "picks", picked, "here;"]
    assert rows["backend"].endswith("coexists with cProfile and sys.setprofile")
    assert "s3cr3t-key" not in proc.stdout, "secrets are never printed"
    assert rows["api_key"].split()[2:] == ["environment", "(FERROTRACE_API_KEY)"]
    assert len(rows) == len(BAD) + 3, "every setting is listed"
    bad_argument = config_cli(tmp_path, env, "--set", "max_depth=deep")
    assert bad_argument.returncode == 2
    assert 'max_depth="deep" is invalid' in bad_argument.stdout


def test_a_backend_this_interpreter_lacks_is_invalid_here(tmp_path):
    new = sys.version_info >= (3, 12)
    cli = config_cli(tmp_path, clean_env(FERROTRACE_BACKEND="monitoring"))
    assert cli.returncode == (0 if new else 2), cli.stdout
    proc, recorded = auto_run(tmp_path, "FERROTRACE_BACKEND", "monitoring")
    assert proc.returncode == 0 and [s["qualname"] for s in recorded] == ["work"], proc.stderr
    if new:
        assert proc.stderr == ""
    else:
        assert 'FERROTRACE_BACKEND="monitoring" is invalid' in cli.stdout and "3.12" in cli.stdout
        assert proc.stderr.splitlines() == [
            'ferrotrace: FERROTRACE_BACKEND="monitoring" is invalid: monitoring needs '
            'sys.monitoring, which CPython has from 3.12 on; using the default "auto"'
        ]


def test_an_unknown_keyword_is_a_value_error_with_the_closest_name(tmp_path):
    proc = python(
        tmp_path,
        "import ferrotrace\ntry:\n    ferrotrace.configure(sampl_rate=0.5)\n"
        "except ValueError as e:\n    print(e)",
        clean_env(),
    )
    assert (
        proc.stdout.strip()
        == 'sampl_rate="0.5" is invalid: not a ferrotrace setting; did you mean "sample_rate"?'
    )


def test_the_auto_warning_is_a_record_on_the_ferrotrace_logger(tmp_path):
    code = 'import logging\nlogging.basicConfig(format="%(name)s|%(levelname)s|%(message)s")\n' + AUTO_PROGRAM
    env = clean_env(FERROTRACE_OUTPUT="trace.jsonl", FERROTRACE_MAX_DEPTH="deep")
    proc = python(tmp_path, code, env)
    assert proc.returncode == 0 and proc.stdout == "ran\n", proc.stderr
    assert proc.stderr.splitlines() == [
        'ferrotrace|WARNING|ferrotrace: FERROTRACE_MAX_DEPTH="deep" is invalid: '
        'a whole number >= 0 (0 means unlimited); using the default "0"'
    ]
