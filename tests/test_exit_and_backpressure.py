"""Nothing is lost at exit; a full queue drops and counts instead of blocking."""

import time

from conftest import read_trace, spans


def test_spans_are_written_at_exit_without_flush(runner):
    proc = runner.run("""
import ferrotrace
ferrotrace.configure(output="trace.jsonl", batch_size=64)
def f(i):
    return i + 1
with ferrotrace.session("exit"):
    for i in range(1000):
        f(i)
print("done")
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    records = read_trace(runner.tmp / "trace.jsonl")
    assert sum(1 for s in spans(records) if s["qualname"] == "f") == 1000
    meta = [r for r in records if r["type"] == "meta"]
    assert len(meta) == 1 and records[-1] is meta[0]
    assert meta[0]["recorded"] == meta[0]["exported"] == 1000
    assert meta[0]["dropped"] == 0
    assert (runner.tmp / "trace.jsonl").stat().st_mode & 0o777 == 0o600


def test_slow_exporter_never_blocks_and_every_span_is_counted(runner):
    start = time.monotonic()
    proc = runner.run(
        """
import json, time, ferrotrace
ferrotrace.configure(output="trace.jsonl", batch_size=10, max_queue=20, debug_export_delay_ms=100)
def f(i):
    return i
t0 = time.monotonic()
with ferrotrace.session("slow"):
    for i in range(5000):
        f(i)
elapsed = time.monotonic() - t0
ferrotrace.flush(30)
st = ferrotrace.stats()
json.dump({"elapsed": elapsed, "stats": st}, open("result.json", "w"))
""",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads((runner.tmp / "result.json").read_text())
    st = result["stats"]
    # 500 batches at 100 ms each would take 50 s if the application waited for the exporter.
    assert result["elapsed"] < 5.0, result
    assert st["recorded"] == 5000
    assert st["dropped_queue_full"] > 0
    assert st["recorded"] == st["exported"] + st["dropped"]
    records = read_trace(runner.tmp / "trace.jsonl")
    meta = records[-1]
    assert meta["type"] == "meta"
    assert meta["recorded"] == meta["exported"] + meta["dropped"] == 5000
    assert meta["exported"] == sum(1 for s in spans(records) if s["qualname"] == "f")
    assert time.monotonic() - start < 100
