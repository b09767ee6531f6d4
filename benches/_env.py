"""Set up what the benchmarks need under benches/.work/ (git-ignored).

Per CPython version: a venv with pyperformance, pyperf, yappi and viztracer from PyPI,
ferrotrace built from this repository, the empty-hook C extension compiled from _hooks.c,
and pyperformance's workload files copied out of the installed package into a plain
directory (not site-packages, so tracers with default excludes still trace them).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
REPO = BENCHES.parent
WORK = BENCHES / ".work"
PEERS = ["pyperformance", "pyperf", "yappi", "viztracer"]
PYPERF_BENCHMARKS = ["richards", "deltablue", "raytrace"]
FERROTRACE_SOURCES = [
    "Cargo.toml",
    "Cargo.lock",
    "pyproject.toml",
    "crates",
    "exporters",
    "python",
]


@dataclass
class Env:
    version: str  # "3.12"
    python: Path  # the venv's interpreter
    full_version: str  # "3.12.1"
    workloads: Path  # directory holding the copied pyperformance files
    hooks: Path  # directory holding the compiled _ftbench_hooks extension
    ferrotrace_note: str  # "" when ferrotrace is installed, else why not
    packages: dict[str, str]  # installed versions of the peers and ferrotrace


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def find_base_python(version: str) -> Path:
    """The newest ~/.pyenv/versions/<version>.* interpreter, else python<version> on PATH."""
    pattern = os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")
    found = sorted(glob.glob(pattern), key=lambda p: [int(x) for x in _patch_key(p)])
    if found:
        return Path(found[-1])
    on_path = shutil.which(f"python{version}")
    if on_path:
        return Path(on_path)
    raise SystemExit(f"no CPython {version}: looked for {pattern} and python{version} on PATH")


def _patch_key(path: str) -> list[str]:
    name = Path(path).parent.parent.name  # "3.12.1"
    return [part for part in name.split(".") if part.isdigit()]


def run(cmd: list, logfile: Path, **kwargs) -> bool:
    """Run a setup command, appending its output to logfile; True on success."""
    with logfile.open("a") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        result = subprocess.run(cmd, check=False, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    return result.returncode == 0


def query(python: Path, code: str) -> str:
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def ensure_venv(version: str) -> Path:
    venv = WORK / f"venv-{version}"
    python = venv / "bin" / "python"
    logfile = WORK / f"setup-{version}.log"
    if not python.exists():
        log(f"[{version}] creating {venv}")
        base = find_base_python(version)
        if not run([base, "-m", "venv", venv], logfile):
            raise SystemExit(f"venv creation failed, see {logfile}")
    marker = venv / ".peers-installed"
    if not marker.exists():
        log(f"[{version}] installing {', '.join(PEERS)} from PyPI")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if not run([*pip, "--upgrade", "pip"], logfile) or not run([*pip, *PEERS], logfile):
            raise SystemExit(f"pip install failed, see {logfile}")
        marker.touch()
    return python


def source_fingerprint() -> str:
    """A hash over ferrotrace's sources, so the venv is rebuilt only when they change."""
    digest = hashlib.sha256()
    for name in FERROTRACE_SOURCES:
        root = REPO / name
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" in path.parts or path.suffix in (".so", ".pyc"):
                continue
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_ferrotrace(version: str, python: Path) -> str:
    """Install ferrotrace from the repo; returns "" on success, else the reason it is missing."""
    if not (REPO / "pyproject.toml").exists():
        return f"ferrotrace not importable: no {REPO / 'pyproject.toml'} to build from"
    stamp = python.parent.parent / ".ferrotrace-stamp"
    fingerprint = source_fingerprint()
    logfile = WORK / f"setup-{version}.log"
    if not stamp.exists() or stamp.read_text() != fingerprint:
        log(f"[{version}] building and installing ferrotrace from {REPO} (log: {logfile})")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        # A shared cargo target dir lets rebuilds (and other versions) reuse compiled crates.
        cargo_env = {**os.environ, "CARGO_TARGET_DIR": str(WORK / "cargo-target")}
        cmd = [*pip, "--force-reinstall", "--no-deps", REPO]
        if not run(cmd, logfile, env=cargo_env):
            stamp.unlink(missing_ok=True)
            return f"ferrotrace not importable: pip install {REPO} failed, see {logfile}"
        stamp.write_text(fingerprint)
    check = subprocess.run([python, "-c", "import ferrotrace"], check=False, capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"ferrotrace not importable: {last}"
    return ""


def copy_workloads(version: str, python: Path) -> Path:
    """Copy pyperformance's benchmark files from the installed package to a plain directory."""
    data = Path(
        query(
            python,
            "import pyperformance, os; print(os.path.dirname(pyperformance.__file__))",
        )
    )
    dest = WORK / "workloads" / version
    dest.mkdir(parents=True, exist_ok=True)
    for name in PYPERF_BENCHMARKS:
        source = data / "data-files" / "benchmarks" / f"bm_{name}" / "run_benchmark.py"
        shutil.copyfile(source, dest / f"bm_{name}.py")
    return dest


def build_hooks(version: str, python: Path) -> Path:
    """Compile _hooks.c against the venv's Python headers with cc."""
    paths = json.loads(
        query(
            python,
            (
                "import json, sysconfig; print(json.dumps([sysconfig.get_paths()['include'],"
                " sysconfig.get_config_var('EXT_SUFFIX')]))"
            ),
        )
    )
    include, suffix = paths
    dest = WORK / "hooks" / version
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"_ftbench_hooks{suffix}"
    source = BENCHES / "_hooks.c"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        cmd = ["cc", "-O2", "-shared", "-fPIC", f"-I{include}", source, "-o", target]
        if not run(cmd, WORK / f"setup-{version}.log"):
            raise SystemExit(f"compiling {source} failed, see {WORK / f'setup-{version}.log'}")
    return dest


def installed_versions(python: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m\n"
        f"names = {[*PEERS, 'ferrotrace']!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try:\n"
        "        out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))"
    )
    return json.loads(query(python, code))


def prepare(version: str, with_ferrotrace: bool = True) -> Env:
    WORK.mkdir(parents=True, exist_ok=True)
    python = ensure_venv(version)
    note = ensure_ferrotrace(version, python) if with_ferrotrace else "ferrotrace not requested"
    return Env(
        version=version,
        python=python,
        full_version=query(python, "import platform; print(platform.python_version())"),
        workloads=copy_workloads(version, python),
        hooks=build_hooks(version, python),
        ferrotrace_note=note,
        packages=installed_versions(python),
    )
