"""What following work into threads, executors and processes costs (issue 19).

1. ns per `Thread.start()` + `join()` and per `ThreadPoolExecutor.submit()` (+ its result),
   inside a sampled session: untraced, ferrotrace with FERROTRACE_FOLLOW_THREADS=0, and with
   following on (the default). The task is an empty function, so the figure is the handoff's
   own cost plus recording the task's one call.
2. `multiprocessing.Pool(4).map` over 10,000 tiny tasks (fork): wall time untraced, under
   ferrotrace (inside a session: every task recorded into the submitting trace) and under
   VizTracer (`viztracer`, whose multiprocessing support follows the pool), and the spans
   ferrotrace lost (want 0: the meta records of every process's file add up).

Usage: python benches/handoff.py [--rounds K] [--threads N] [--tasks N]
Needs ferrotrace in this interpreter; VizTracer (`pip install viztracer`) for its row. Each
configuration runs in a fresh process, K times, interleaved in rotated order; the figure is
the best round.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

MICRO = """
import json, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
mode, n_threads, n_tasks, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def noop():
    return None
if mode != "untraced":
    import ferrotrace
    ferrotrace.configure(output=out, follow_threads=mode == "follow-on")
    session = ferrotrace.session("bench")
else:
    import contextlib
    session = contextlib.nullcontext()
with session:
    t0 = time.perf_counter_ns()
    for _ in range(n_threads):
        t = threading.Thread(target=noop)
        t.start()
        t.join()
    t1 = time.perf_counter_ns()
    with ThreadPoolExecutor(4) as ex:
        ex.submit(noop).result()  # workers started outside the timing
        t2 = time.perf_counter_ns()
        futures = [ex.submit(noop) for _ in range(n_tasks)]
        for f in futures:
            f.result()
        t3 = time.perf_counter_ns()
print(json.dumps({"thread": (t1 - t0) / n_threads, "submit": (t3 - t2) / n_tasks}))
"""

POOL = """
import json, multiprocessing as mp, sys, time
mode, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def tiny(x):
    return x + 1
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    if mode == "ferrotrace":
        import ferrotrace
        ferrotrace.configure(output=out)
        session = ferrotrace.session("pool")
    else:
        import contextlib
        session = contextlib.nullcontext()
    t0 = time.perf_counter()
    with session:
        with ctx.Pool(4) as pool:
            assert pool.map(tiny, range(n)) == list(range(1, n + 1))
    if mode == "ferrotrace":
        ferrotrace.shutdown()
    print(json.dumps({"wall": time.perf_counter() - t0}))
"""


def run(args: list[str], env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{args}: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pool_spans(out_dir: str) -> tuple[int, int, int]:
    """(tiny spans, sum of meta `recorded`, sum of meta `dropped`) over every file."""
    spans = recorded = dropped = 0
    for path in glob.glob(os.path.join(out_dir, "*.jsonl")):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r["type"] == "span" and r["qualname"] == "tiny":
                    spans += 1
                elif r["type"] == "meta":
                    recorded += r["recorded"]
                    dropped += r["dropped"]
    return spans, recorded, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2000)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--pool-tasks", type=int, default=10000)
    opts = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    tmp = tempfile.mkdtemp(prefix="ferrotrace-handoff-")
    micro, pool = os.path.join(tmp, "micro.py"), os.path.join(tmp, "pool.py")
    with open(micro, "w") as f:
        f.write(textwrap.dedent(MICRO))
    with open(pool, "w") as f:
        f.write(textwrap.dedent(POOL))
    has_viztracer = shutil.which("viztracer", path=os.path.dirname(sys.executable)) is not None

    modes = ["untraced", "follow-off", "follow-on"]
    best: dict[str, dict[str, float]] = {}
    pool_modes = ["untraced", "ferrotrace"] + (["viztracer"] if has_viztracer else [])
    walls: dict[str, float] = {}
    lost: list[tuple[int, int, int]] = []
    for k in range(opts.rounds):
        for mode in modes[k % 3 :] + modes[: k % 3]:
            out = os.path.join(tmp, f"micro-{mode}.jsonl")
            got = run([sys.executable, micro, mode, str(opts.threads), str(opts.tasks), out], env)
            for key, value in got.items():
                best.setdefault(mode, {})[key] = min(best.get(mode, {}).get(key, value), value)
        for mode in pool_modes[k % len(pool_modes) :] + pool_modes[: k % len(pool_modes)]:
            out_dir = os.path.join(tmp, f"pool-{mode}-{k}")
            os.makedirs(out_dir)
            out = os.path.join(out_dir, "trace.jsonl")
            args = [sys.executable, pool, mode, str(opts.pool_tasks), out]
            if mode == "viztracer":
                viz = os.path.join(os.path.dirname(sys.executable), "viztracer")
                args = [
                    viz,
                    "--quiet",
                    "-o",
                    os.path.join(out_dir, "viz.json"),
                    "--",
                    pool,
                    mode,
                    str(opts.pool_tasks),
                    out,
                ]
            wall = run(args, env)["wall"]
            walls[mode] = min(walls.get(mode, wall), wall)
            if mode == "ferrotrace":
                lost.append(pool_spans(out_dir))
            shutil.rmtree(out_dir)
    shutil.rmtree(tmp)

    print(f"# Handoff cost (CPython {sys.version.split()[0]}, best of {opts.rounds} interleaved rounds)\n")
    print("| inside a sampled session | untraced ns | follow off ns | follow on ns | on - untraced ns |")
    print("|---|---:|---:|---:|---:|")
    for key, label in (
        ("thread", "Thread.start()+join()"),
        ("submit", "ThreadPoolExecutor.submit()+result()"),
    ):
        u, off, on = (best[m][key] for m in modes)
        print(f"| {label} | {u:,.0f} | {off:,.0f} | {on:,.0f} | {on - u:+,.0f} |")
    print(f"\n`Pool(4).map` over {opts.pool_tasks:,} tiny tasks (fork):\n")
    print("| | wall s | × untraced |")
    print("|---|---:|---:|")
    for mode in pool_modes:
        print(f"| {mode} | {walls[mode]:.3f} | {walls[mode] / walls['untraced']:.2f} |")
    spans = {s for s, _, _ in lost}
    recorded_ok = all(s == r for s, r, _ in lost)
    dropped = sum(d for _, _, d in lost)
    print(
        f"\nferrotrace: `tiny` spans per run {sorted(spans)} (want {opts.pool_tasks}), "
        f"meta `recorded` adds up to the spans in every run: {recorded_ok}, dropped: {dropped}"
    )


if __name__ == "__main__":
    main()
