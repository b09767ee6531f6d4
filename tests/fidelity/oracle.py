"""The span-count oracle: per-function call counts of fidelity_workload from a plain
sys.setprofile counter (untraced run) against the spans of a real JSONL trace of the same
program under `ferrotrace run` (include = that module only). They must agree exactly."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = "fidelity_workload"

DRIVER = r"""
import json, sys, threading
counts = {}
def prof(frame, event, arg):
    if event == "call" and frame.f_globals.get("__name__") == "fidelity_workload":
        c = frame.f_code
        key = "%s:%d:%s" % (c.co_filename, c.co_firstlineno, c.co_name)
        counts[key] = counts.get(key, 0) + 1
count = sys.argv[1] == "count"
if count:
    threading.setprofile(prof)
    sys.setprofile(prof)
import fidelity_workload
result = fidelity_workload.main()
if count:
    sys.setprofile(None)
    threading.setprofile(None)
    with open(sys.argv[2], "w") as f:
        json.dump(counts, f)
print(result)
"""


def check(python: str, backend: str) -> tuple[bool, str, float]:
    tmp = tempfile.mkdtemp(prefix="ferrotrace-oracle-")
    try:
        shutil.copy(os.path.join(HERE, MODULE + ".py"), tmp)
        driver = os.path.join(tmp, "driver.py")
        with open(driver, "w") as f:
            f.write(DRIVER)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE") and k != "PYTHONPATH"}
        counts_file = os.path.join(tmp, "counts.json")
        t0 = time.monotonic()
        plain = subprocess.run(
            [python, driver, "count", counts_file], cwd=tmp, env=env, capture_output=True, text=True
        )
        t1 = time.monotonic()
        env.update(FERROTRACE_BACKEND=backend, FERROTRACE_EXCLUDE_DEFAULTS="0")
        trace = os.path.join(tmp, "trace.jsonl")
        traced = subprocess.run(
            [
                python,
                "-m",
                "ferrotrace",
                "run",
                "--capture",
                "all",
                "--include",
                f"^{MODULE}::",
                "-o",
                trace,
                "--",
                python,
                driver,
                "plain",
                "",
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        t2 = time.monotonic()
        ratio = (t2 - t1) / max(t1 - t0, 1e-9)
        if plain.returncode or traced.returncode:
            return False, f"exit {plain.returncode} / {traced.returncode}: {traced.stderr[-500:]}", ratio
        if plain.stdout != traced.stdout:
            return False, f"stdout {plain.stdout!r} -> {traced.stdout!r}", ratio
        with open(counts_file) as f:
            want = collections.Counter(json.load(f))
        got: collections.Counter = collections.Counter()
        with open(trace) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("type") == "span" and rec.get("module") == MODULE:
                    got[f"{rec['file']}:{rec['line']}:{rec['qualname'].rsplit('.', 1)[-1]}"] += 1
        if want == got:
            return True, f"{sum(want.values())} calls in {len(want)} functions", ratio
        keys = sorted(set(want) | set(got))
        bad = [
            f"{os.path.basename(k)} setprofile={want[k]} spans={got[k]}" for k in keys if want[k] != got[k]
        ]
        return False, f"{len(bad)} function(s) differ: " + "; ".join(bad[:8]), ratio
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(
        check(
            sys.argv[1] if len(sys.argv) > 1 else sys.executable,
            sys.argv[2] if len(sys.argv) > 2 else "setprofile",
        )
    )
