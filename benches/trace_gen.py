"""Writes a synthetic JSONL trace of a given number of spans, in ferrotrace's schema and in
the order the exporter writes them (a call's children before the call), for the report and
convert benchmarks: `python benches/trace_gen.py OUT --spans 1000000 [--threads 4]`.

Each thread runs sessions of call trees (fan-out up to 4, depth up to 6; three possible
functions at each depth, so about a thousand distinct stacks),
with argument and return previews of about the size `ferrotrace run` writes by default.
"""

from __future__ import annotations

import argparse
import json
import random

NAMES = [(f"app.mod{i % 7}", f"Class{i % 5}.method_{i}") for i in range(60)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--spans", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--arg-bytes", type=int, default=400, help="size of the argument previews")
    a = p.parse_args()
    rng = random.Random(7)
    pad = "x" * a.arg_bytes
    ids = iter(range(1, 1 << 62))
    t0 = 1_700_000_000_000_000_000
    written = 0
    with open(a.out, "w") as f:

        def call(trace: str, parent: str, tid: int, depth: int, start: int, budget: list[int]) -> int:
            span_id = f"{next(ids):016x}"
            t = start + rng.randint(100, 2000)
            kids = rng.randint(0, 4) if depth < 6 else 0
            child_ns = 0
            for _ in range(kids):
                if budget[0] <= 1:
                    break
                end = call(trace, span_id, tid, depth + 1, t, budget)
                child_ns += end - t
                t = end + rng.randint(50, 500)
            end = t + rng.randint(200, 5000)
            module, qualname = NAMES[(depth * 13 + rng.randint(0, 2)) % len(NAMES)]
            rec = {
                "v": 1,
                "type": "span",
                "pid": 4242,
                "trace_id": trace,
                "span_id": span_id,
                "parent_span_id": parent,
                "thread_id": tid,
                "task_id": 0,
                "module": module,
                "qualname": qualname,
                "file": f"/src/{module.replace('.', '/')}.py",
                "line": depth + 1,
                "start_unix_ns": str(start),
                "duration_ns": end - start,
                "self_ns": end - start - child_ns,
                "depth": depth,
                "args": {"self": f"<{qualname} object>", "data": pad},
                "return": "42",
            }
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            budget[0] -= 1
            return end

        per_thread = a.spans // a.threads
        for tid in range(1, a.threads + 1):
            budget = [per_thread]
            start = t0
            n = 0
            while budget[0] > 0:
                trace = f"{rng.getrandbits(128):032x}"
                sid = f"{next(ids):016x}"
                session = {
                    "v": 1,
                    "type": "session_start",
                    "pid": 4242,
                    "trace_id": trace,
                    "span_id": sid,
                    "parent_span_id": None,
                    "remote_parent": False,
                    "tag": f"request-{n % 20}",
                    "attrs": {},
                    "sampled": True,
                    "thread_id": tid,
                    "start_unix_ns": str(start),
                }
                f.write(json.dumps(session, separators=(",", ":")) + "\n")
                end = start
                for _ in range(rng.randint(1, 30)):
                    if budget[0] <= 0:
                        break
                    end = call(trace, sid, tid, 0, end, budget) + 1000
                f.write(
                    json.dumps(
                        {
                            **session,
                            "type": "session_end",
                            "end_unix_ns": str(end),
                            "duration_ns": end - start,
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
                start = end + 10_000
                n += 1
            written += per_thread
        meta = {
            "v": 1,
            "type": "meta",
            "pid": 4242,
            "agent_version": "0.1.0",
            "python_version": "3.12",
            "config_digest": "0",
            "service_name": "bench",
            "diagnostics": [],
            "recorded": written,
            "exported": written,
            "dropped": 0,
            "dropped_queue_full": 0,
            "export_errors": 0,
        }
        f.write(json.dumps(meta, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
