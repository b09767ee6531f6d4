"""Runs one program untraced and under `ferrotrace run`, and compares the outcomes."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

# The end-of-run summary `ferrotrace run` prints on the top process's stderr (and only there).
_SUMMARY_HEAD = re.compile(r"^ferrotrace: \d+ spans written, \d+ dropped.* -> .*$")
_SUMMARY_REST = re.compile(
    r"^(ferrotrace: top functions by total time|\s+total ms\s+self ms\s+calls\s+function|"
    r"\s+[\d.]+\s+[\d.]+\s+\d+\s+\S.*)$"
)
# The summary's notes: export errors, processes not traced and diagnostics (with their items).
_SUMMARY_NOTE = re.compile(
    r"^(ferrotrace: (export error: .*|\d+ process(es)? not traced:|"
    r"\d+ diagnostics? \(in the meta records\):)|  pid \d+: .*|  \.\.\. and \d+ more)$"
)

# Lines whose text depends on the clock or the machine's load, not on the program.
_NOISE = [
    re.compile(p)
    for p in (
        r"^Total duration: ",
        r"load avg: .* running: ",  # regrtest's progress line for a slow test
        r"^\d+:\d\d:\d\d .*\[\s*\d+/\d+\] \S+ (passed|failed).* \(\d.*\)$",
        r"^test_\w+ (passed|failed)( \(.*\))? in \d",  # regrtest names a slow module's time
        r"^== (CPU count|cwd|Python build|encodings|resources|Linux|CPython|Python|random seed|"
        r"sys\.|platform|hash algorithm|tests? )",
    )
]
_PYTEST_CLOCK = re.compile(r" \(\d+:\d\d:\d\d\)(?= =+$)")  # pytest adds "(0:01:05)" past a minute
_RULE = re.compile(r"([=_-])\1+")
_DIGITS = re.compile(r"\d+(\.\d+)?")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_TMP = re.compile(r"(tmp|test_python_|pymp-|worker_)[A-Za-z0-9_]+")

# unittest -v and pytest -v result lines.
_UNITTEST_LINE = re.compile(
    r"^(?P<test>\w+ \([\w.]+\))(?:.*?) \.\.\. "
    r"(?P<res>ok|FAIL|ERROR|skipped|expected failure|unexpected success)\b"
)
_PYTEST_LINE = re.compile(r"^(?P<test>\S+::\S+) (?P<res>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ")
_UNITTEST_END = re.compile(r"^(OK|FAILED)( \(.*\))?$")
_PYTEST_END = re.compile(
    r"^=+ (.*(passed|failed|skipped|error|xfailed|xpassed|deselected|no tests ran).*) in [\d.]+s"
)


def strip_summary(stderr: str) -> tuple[str, bool, list[str]]:
    """Removes ferrotrace run's own summary from the end of the top process's stderr; returns
    the rest, whether the summary was there, and its notes (processes not traced, diagnostics)."""
    lines = stderr.splitlines(keepends=True)
    for i in range(len(lines) - 1, -1, -1):
        if _SUMMARY_HEAD.match(lines[i].rstrip("\n")):
            rest = [x.rstrip("\n") for x in lines[i + 1 :]]
            if all(_SUMMARY_REST.match(x) or _SUMMARY_NOTE.match(x) for x in rest):
                notes = [x.strip() for x in rest if _SUMMARY_NOTE.match(x)]
                return "".join(lines[:i]), True, notes
            break
    return stderr, False, []


def normalize(line: str) -> str:
    line = _PYTEST_CLOCK.sub("", line.rstrip())
    line = _HEX.sub("0x?", line)
    line = _TMP.sub("TMP", line)
    line = _RULE.sub(r"\1\1", line)  # pytest pads its closing line to the width of its timing
    return _DIGITS.sub("N", line)


def interesting(lines: list[str], noise: str | None = None) -> list[str]:
    extra = re.compile(noise) if noise else None
    return [
        normalize(x)
        for x in lines
        if not any(p.search(x) for p in _NOISE) and not (extra and extra.search(x))
    ]


@dataclass
class Outcome:
    code: int | None  # exit status; None after a timeout; negative for a signal
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    children: int = 0  # traced child processes (their trace files)
    summary: bool = False  # ferrotrace's summary was found and stripped
    notes: list[str] = field(default_factory=list)  # what that summary noted (not traced, diagnostics)

    def tests(self) -> dict[str, str]:
        got: dict[str, str] = {}
        for line in (self.stdout + "\n" + self.stderr).splitlines():
            m = _UNITTEST_LINE.match(line) or _PYTEST_LINE.match(line)
            if m:
                got[m["test"]] = m["res"].lower()
        return got

    def totals(self) -> list[str]:
        """The test runner's closing counts ("Ran N tests", "OK (skipped=3)", pytest's last line)."""
        out = []
        for line in (self.stdout + "\n" + self.stderr).splitlines():
            if _UNITTEST_RAN.match(line):
                out.append(line.split(" in ")[0])
            elif _UNITTEST_END.match(line):
                out.append(line)
            elif m := _PYTEST_END.match(line):
                out.append(m[1])
        return out


@dataclass
class Comparison:
    case: str
    same: bool
    why: list[str] = field(default_factory=list)
    untraced: Outcome | None = None
    traced: Outcome | None = None
    known: str | None = None  # a difference CPython makes under this backend (corpus.KNOWN)

    @property
    def failed(self) -> bool:
        return not self.same and not self.known

    @property
    def ratio(self) -> float:
        if not self.untraced or not self.traced or self.untraced.seconds <= 0:
            return float("nan")
        return self.traced.seconds / self.untraced.seconds


def _sweeper(folder: str, stop: threading.Event, limit: int = 64 << 20) -> None:
    """Keeps child traces (a few GB a minute under full tracing) off the shared disk: truncating
    a file that is still being written frees its blocks (later writes make it sparse)."""
    while not stop.wait(0.5):
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            path = os.path.join(folder, name)
            try:
                if not os.path.islink(path) and os.path.getsize(path) > limit:
                    os.truncate(path, 0)
            except OSError:
                pass


def run(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    timeout: float,
    traced: bool,
    python: str,
    backend: str | None = None,
    output: str | None = None,
) -> Outcome:
    """Runs argv (argv[0] is the python) untraced, or under `ferrotrace run --capture all`.

    Traced runs write the top process's trace to `output` (default: a symlink to /dev/null) and
    each child's to a sibling file that is truncated while it grows and deleted afterwards."""
    env = dict(env)
    # A temp dir of its own: regrtest names its work dir by pid, and one left by a killed run
    # (or a concurrent one) would make it warn "unable to create temporary directory".
    scratch = tempfile.mkdtemp(prefix="tmp")
    env["TMPDIR"] = scratch
    folder = None
    stop = threading.Event()
    sweeper = None
    if traced:
        folder = tempfile.mkdtemp(prefix="ferrotrace-fidelity-")
        top = output
        if top is None:
            top = os.path.join(folder, "null.jsonl")
            os.symlink(os.devnull, top)
        env["FERROTRACE_EXCLUDE_DEFAULTS"] = "0"
        if backend:
            env["FERROTRACE_BACKEND"] = backend
        argv = [python, "-m", "ferrotrace", "run", "--capture", "all", "-o", top, "--", *argv]
        sweeper = threading.Thread(target=_sweeper, args=(folder, stop), daemon=True)
        sweeper.start()
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    seconds = time.monotonic() - start
    # A program may leave daemons behind in its session (its own process group): end them.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    stdout = out.decode("utf-8", "backslashreplace")
    stderr = err.decode("utf-8", "backslashreplace")
    children = 0
    summary = False
    notes: list[str] = []
    if traced:
        stop.set()
        if sweeper:
            sweeper.join()
        with contextlib.suppress(OSError):
            children = sum(1 for n in os.listdir(folder) if n != "null.jsonl")
        shutil.rmtree(folder, ignore_errors=True)
        stderr, summary, notes = strip_summary(stderr)
    shutil.rmtree(scratch, ignore_errors=True)
    return Outcome(
        code=None if timed_out else proc.returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=seconds,
        timed_out=timed_out,
        children=children,
        summary=summary,
        notes=notes,
    )


def _line_diff(name: str, plain: str, traced: str, noise: str | None) -> list[str]:
    a = collections.Counter(interesting(plain.splitlines(), noise))
    b = collections.Counter(interesting(traced.splitlines(), noise))
    why = []
    new = list((b - a).elements())
    gone = list((a - b).elements())
    if new:
        why.append(f"{len(new)} new {name} line(s), e.g. {new[:3]!r}")
    if gone:
        why.append(f"{len(gone)} {name} line(s) missing, e.g. {gone[:3]!r}")
    return why


def compare(
    case: str, plain: Outcome, traced: Outcome, *, summary: bool = True, noise: str | None = None
) -> Comparison:
    why: list[str] = []
    if traced.timed_out and not plain.timed_out:
        why.append(f"traced run timed out after {traced.seconds:.0f}s")
    if plain.code != traced.code:
        why.append(f"exit code {plain.code} -> {traced.code}")
        if traced.code is not None and traced.code < 0:
            last = [x for x in traced.stderr.splitlines() if x.strip()][-1:] or [""]
            why.insert(0, f"CRASH ({signal.Signals(-traced.code).name}), stderr ends {last[0][:200]!r}")
    if summary and not traced.summary:
        why.append("ferrotrace summary missing from stderr")
    t_plain, t_traced = plain.totals(), traced.totals()
    if t_plain != t_traced:
        why.append(f"totals {t_plain} -> {t_traced}")
    r_plain, r_traced = plain.tests(), traced.tests()
    changed = [
        f"{t}: {r_plain.get(t, 'not run')} -> {r_traced.get(t, 'not run')}"
        for t in sorted(set(r_plain) | set(r_traced))
        if r_plain.get(t) != r_traced.get(t)
    ]
    if changed:
        why.append(f"{len(changed)} test(s) changed outcome: {changed[:5]}")
    why += _line_diff("stdout", plain.stdout, traced.stdout, noise)
    why += _line_diff("stderr", plain.stderr, traced.stderr, noise)
    return Comparison(case, not why, why, plain, traced)
