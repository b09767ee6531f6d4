"""python -m tests.fidelity [--python PY]... : the fidelity corpus, untraced vs traced.

Every case runs once untraced and once per backend under
`ferrotrace run --capture all -o <devnull> -- PY ...` with FERROTRACE_EXCLUDE_DEFAULTS=0, and must
give the same exit code, the same tests run / passed / failed / skipped, and no new or missing
line on stdout or stderr (after normalising numbers, addresses and temp names, and removing
ferrotrace run's own summary). A difference is confirmed by running both again.
Writes a markdown table (module x version x backend) to --results and prints it as it goes."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from . import corpus, oracle
from .runner import Comparison, Outcome, compare, run

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FERROTRACE_FIDELITY_CACHE", ROOT / ".fidelity-cache"))


def version_of(python: str) -> str:
    return subprocess.check_output(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], text=True
    ).strip()


def backends_of(version: str) -> list[str]:
    return ["evalframe", "setprofile"] if version in ("3.10", "3.11") else ["monitoring", "setprofile"]


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE") and k != "PYTHONPATH"}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PYTHONHASHSEED"] = "0"  # set and dict orders (and what tests print from them) repeat
    return env


def sdist(lib: corpus.Library, python: str) -> Path:
    """The unpacked sdist of lib (downloaded once into the cache)."""
    src = CACHE / "src" / lib.dist
    if src.is_dir():
        return src
    dl = CACHE / "sdists"
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-binary",
            ":all:",
            "--no-deps",
            "-d",
            str(dl),
            f"{lib.name}=={lib.version}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    norm = re.sub(r"[-_.]+", "[-_.]", lib.name)
    (archive,) = [
        p for p in dl.iterdir() if re.match(rf"(?i){norm}-{re.escape(lib.version)}\.tar\.gz$", p.name)
    ]
    (CACHE / "src").mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        tar.extractall(CACHE / "src")
    (CACHE / "src" / top).rename(src) if top != lib.dist else None
    return src


class Case:
    def __init__(self, kind: str, name: str, argv: list[str], cwd: str | None = None, timeout: float = 1800):
        self.kind, self.name, self.argv, self.cwd, self.timeout = kind, name, argv, cwd, timeout
        self.noise = corpus.REGRTEST_NOISE.get(name)


def cases(python: str, args: argparse.Namespace) -> list[Case]:
    ci = args.ci
    out: list[Case] = []
    if "regrtest" in args.kinds:
        for m in corpus.CI_REGRTEST if ci else corpus.REGRTEST:
            out.append(Case("regrtest", m, [python, "-m", "test", "-v", m, *corpus.REGRTEST_ARGS.get(m, [])]))
    if "lib" in args.kinds:
        for lib in corpus.LIBRARIES:
            if ci and lib.name not in corpus.CI_LIBRARIES:
                continue
            if args.only and not re.search(args.only, lib.dist):
                continue
            src = sdist(lib, python)
            argv = [
                python,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-v",
                "--color=no",
                "-o",
                "console_output_style=classic",
                *lib.args,
            ]
            out.append(Case("lib", lib.dist, argv, cwd=str(src)))
    if "import" in args.kinds:
        for name in corpus.CI_IMPORTS if ci else corpus.IMPORTS:
            out.append(Case("import", name, [python, "-W", "default", "-c", f"import {name}"], timeout=300))
    if args.only:
        out = [c for c in out if re.search(args.only, c.name)]
    return out


def run_case(case: Case, python: str, backend: str, plain_cache: dict, confirm: bool) -> Comparison:
    env = base_env()
    with tempfile.TemporaryDirectory(prefix="fidelity-cwd-") as tmp:
        cwd = case.cwd or tmp
        key = (python, case.name)
        if key not in plain_cache:
            plain_cache[key] = run(
                case.argv, cwd=cwd, env=env, timeout=case.timeout, traced=False, python=python
            )
        plain = plain_cache[key]
        limit = min(case.timeout, max(120.0, plain.seconds * 20))
        traced = run(case.argv, cwd=cwd, env=env, timeout=limit, traced=True, python=python, backend=backend)
        result = compare(case.name, plain, traced, noise=case.noise)
        if not result.same and confirm:
            # Both again: a difference that does not come back is the program's own flakiness.
            plain2 = run(case.argv, cwd=cwd, env=env, timeout=case.timeout, traced=False, python=python)
            traced2 = run(
                case.argv, cwd=cwd, env=env, timeout=limit, traced=True, python=python, backend=backend
            )
            again = compare(case.name, plain2, traced2, noise=case.noise)
            if again.same:
                result.why.insert(0, "FLAKY (not reproduced on a second run)")
            elif not compare(case.name, plain, plain2, summary=False, noise=case.noise).same:
                result.why.insert(0, "(untraced runs differ too)")
        tests, why = corpus.KNOWN.get((case.name, backend), ((), None))
        if not result.same and result.traced and set(changed_tests(plain, result.traced)) <= set(tests):
            result.known = why
    return result


def changed_tests(plain: Outcome, traced: Outcome) -> list[str]:
    """The tests whose outcome differs (their method names), or ["?"] when the run's totals or
    exit status differ in a way no single test explains."""
    a, b = plain.tests(), traced.tests()
    names = [t.split(" ")[0] for t in set(a) | set(b) if a.get(t) != b.get(t)]
    return names or ["?"]


def cell(result: Comparison) -> str:
    if result.same:
        text = "identical"
        if result.traced and result.traced.notes:
            text += " (ferrotrace's summary noted: " + "; ".join(result.traced.notes[:3]) + ")"
    else:
        head = f"known difference: {result.known}; " if result.known else "differs: "
        text = head + "; ".join(result.why)
        text = text.replace("|", "\\|").replace("\n", " ")
        if len(text) > 400 and not result.known:
            text = text[:400] + "…"
    return f"{text} | {result.ratio:.1f}x"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--python", action="append", help="interpreter(s) to test (default: this one)")
    p.add_argument("--backend", action="append", help="backend(s) (default: every one the version has)")
    p.add_argument("--kinds", default="regrtest,lib,import,oracle", help="comma-separated subset")
    p.add_argument("--only", help="regex: only cases whose name matches")
    p.add_argument("--ci", action="store_true", help="the CI subset only")
    p.add_argument("--no-confirm", dest="confirm", action="store_false", help="do not rerun a difference")
    p.add_argument("--results", default=str(ROOT / "fidelity-results.md"), help="markdown table written here")
    args = p.parse_args(argv)
    args.kinds = args.kinds.split(",")
    pythons = args.python or [sys.executable]
    rows: list[str] = []
    details: list[str] = []
    failed = known = 0
    header = "| kind | case | version | backend | outcome | traced/untraced time |\n|---|---|---|---|---|---|"

    def tally() -> str:
        return f"{len(rows) - failed - known} identical, {known} known differences, {failed} differ"

    def write_results() -> None:
        Path(args.results).write_text(
            "# ferrotrace fidelity results\n\n"
            + header
            + "\n"
            + "\n".join(rows)
            + "\n"
            + f"\n{tally()}\n"
            + ("\n## Differences\n\n" + "\n".join(details) if details else "")
        )

    print(header, flush=True)
    for python in pythons:
        version = version_of(python)
        plain_cache: dict = {}
        todo = cases(python, args)
        for backend in args.backend or backends_of(version):
            for case in todo:
                result = run_case(case, python, backend, plain_cache, args.confirm)
                row = f"| {case.kind} | {case.name} | {version} | {backend} | {cell(result)} |"
                print(row, flush=True)
                rows.append(row)
                failed += result.failed
                known += bool(result.known)
                if result.failed and result.traced:
                    tail = "\n".join(result.traced.stderr.splitlines()[-25:])
                    details.append(
                        f"### {case.name} on {version} {backend}\n\ncommand: `{' '.join(case.argv)}`"
                        f" (cwd {case.cwd or 'a temp dir'})\n\n"
                        + "\n".join(f"- {w}" for w in result.why)
                        + f"\n\ntraced stderr, last lines:\n\n```\n{tail}\n```\n"
                    )
                write_results()
            if "oracle" in args.kinds:
                ok, why, ratio = oracle.check(python, backend)
                row = (
                    f"| oracle | setprofile call counts | {version} | {backend} | "
                    + ("identical" if ok else "differs: " + why.replace("|", "\\|"))
                    + f" | {ratio:.1f}x |"
                )
                print(row, flush=True)
                rows.append(row)
                failed += not ok
                write_results()
    write_results()
    print(f"\n{tally()}; table in {args.results}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
