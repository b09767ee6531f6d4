"""Helpers: run a program in a fresh interpreter and read the trace it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The backend every traced program runs on (FERROTRACE_TEST_BACKEND=setprofile|monitoring|
# evalframe); unset means the default (`auto`). CI runs the suite once per backend a version has.
# Programs started by tests inherit it as FERROTRACE_BACKEND.
TEST_BACKEND = os.environ.pop("FERROTRACE_TEST_BACKEND", "")
if TEST_BACKEND:
    os.environ["FERROTRACE_BACKEND"] = TEST_BACKEND


def read_trace(path: Path) -> list[dict]:
    """Every record of a JSONL trace; each line must parse."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def spans(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "span"]


class Runner:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    def run(
        self,
        code: str,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        script = self.tmp / "prog.py"
        script.write_text(textwrap.dedent(code))
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
        if TEST_BACKEND:
            full_env["FERROTRACE_BACKEND"] = TEST_BACKEND
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, *(args or []), str(script)],
            cwd=self.tmp,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def trace(self, code: str, **kw) -> list[dict]:
        """Runs `code` (which writes trace.jsonl in the temp dir) and returns the records."""
        proc = self.run(code, **kw)
        assert proc.returncode == 0, proc.stderr
        return read_trace(self.tmp / "trace.jsonl")


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)
