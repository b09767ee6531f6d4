"""RSS growth while ferrotrace records many calls of a tiny function to the JSONL exporter.

    python benches/memory.py                          # 50 million calls on CPython 3.12
    python benches/memory.py --calls 2000000 --python 3.11

Sets up the benchmark venv (see _env.py), then runs itself in it with ferrotrace configured by
environment variables (`import ferrotrace.auto`, FERROTRACE_EXPORTER=jsonl, no previews), samples
VmRSS from /proc/self/status every --every calls and reports the growth over the RSS right after
ferrotrace started. The trace goes to a temporary file under benches/.work/traces/, deleted after
(50 million spans are about 17 GB of JSONL).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import _env


def status_kib(field):
    """A "kB" field of /proc/self/status, e.g. VmRSS or VmHWM."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def tiny(x):
    return x


def burst(n):
    for i in range(n):
        tiny(i)


def mib(kib):
    return f"{kib / 1024:8.1f} MiB"


def child(calls, every):
    try:
        import ferrotrace.auto  # starts the env-configured session on import
    except ImportError as exc:
        sys.exit(f"ferrotrace not importable: {exc}")
    import ferrotrace

    base = status_kib("VmRSS")
    print(f"RSS after ferrotrace started: {mib(base)}", flush=True)
    done = 0
    while done < calls:
        n = min(every, calls - done)
        burst(n)
        done += n
        rss = status_kib("VmRSS")
        print(f"{done:>14,} calls  RSS {mib(rss)}  growth {mib(rss - base)}", flush=True)
    peak = status_kib("VmHWM")
    print(f"peak RSS (VmHWM): {mib(peak)}, growth over start: {mib(peak - base)}")
    ferrotrace.shutdown(60.0)
    stats = getattr(ferrotrace, "stats", None)
    if stats:
        print(f"ferrotrace.stats(): {stats()}")


def parent(args):
    env = _env.prepare(args.python)
    if env.ferrotrace_note:
        sys.exit(env.ferrotrace_note)
    traces = _env.WORK / "traces"
    traces.mkdir(exist_ok=True)
    trace_dir = tempfile.mkdtemp(dir=traces)
    output = os.path.join(trace_dir, "trace.jsonl")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE_")}
    child_env.update(FERROTRACE_OUTPUT=output, FERROTRACE_EXPORTER="jsonl", FERROTRACE_CAPTURE="none")
    cmd = [env.python, os.path.abspath(__file__), "--child", "--calls", str(args.calls)]
    print(
        f"CPython {env.full_version}, ferrotrace {env.packages.get('ferrotrace', '?')}, "
        f"{args.calls:,} calls of a tiny function, JSONL exporter"
    )
    try:
        status = subprocess.run([*cmd, "--every", str(args.every)], check=False, env=child_env)
        size = os.path.getsize(output) if os.path.exists(output) else 0
        print(f"trace file: {size / 2**20:,.1f} MiB (deleted)")
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
    sys.exit(status.returncode)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50_000_000, help="calls to trace")
    parser.add_argument("--every", type=int, help="sample RSS every N calls (default calls/25)")
    parser.add_argument("--python", default="3.12", help="CPython version of the venv")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.every = args.every or max(1, args.calls // 25)
    if args.child:
        child(args.calls, args.every)
    else:
        parent(args)


if __name__ == "__main__":
    main()
