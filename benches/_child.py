"""One measurement in a fresh process: start a tracer, time the workload, print JSON.

Run by overhead.py with a benchmark venv's interpreter:
    python _child.py --tracer viztracer --workload richards --iters 10 \
        --workloads DIR --hooks DIR
ferrotrace is configured only by FERROTRACE_* environment variables set by the parent.
Exit status 3 means the tracer is not available in this interpreter (reason on stderr).
"""

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

UNAVAILABLE = 3
RAYTRACE_SIZE = 50  # pixels per side of each rendered image (pyperformance's default is 100)


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_workload(name, iters, workloads):
    """Import the workload (untimed) and return a zero-argument callable running it."""
    if name == "micro":
        module = load_module("micro", Path(__file__).with_name("micro.py"))
        return lambda: module.run(iters)
    module = load_module(f"bm_{name}", Path(workloads) / f"bm_{name}.py")
    if name == "richards":
        return lambda: module.Richards().run(iters)
    if name == "deltablue":
        return lambda: [module.delta_blue(100) for _ in range(iters)]
    if name == "raytrace":
        return lambda: module.bench_raytrace(iters, RAYTRACE_SIZE, RAYTRACE_SIZE, None)
    raise SystemExit(f"unknown workload {name!r}")


def start_untraced(hooks):
    return lambda: None


def start_c_setprofile(hooks):
    native = import_hooks(hooks)
    native.enable()
    return native.disable


def start_c_monitoring(hooks):
    native = import_hooks(hooks)
    if not hasattr(sys, "monitoring"):
        unavailable("sys.monitoring needs CPython 3.12+")
    mon = sys.monitoring
    tool = next((i for i in (3, 4) if mon.get_tool(i) is None), None)
    if tool is None:
        unavailable("no free sys.monitoring tool id")
    mon.use_tool_id(tool, "ftbench-empty")
    mon.register_callback(tool, mon.events.PY_START, native.mon_start)
    mon.register_callback(tool, mon.events.PY_RETURN, native.mon_return)
    mon.set_events(tool, mon.events.PY_START | mon.events.PY_RETURN)

    def stop():
        mon.set_events(tool, 0)
        mon.free_tool_id(tool)

    return stop


def start_cprofile(hooks):
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler.disable


def start_yappi(hooks):
    yappi = import_or_unavailable("yappi")
    yappi.set_clock_type("wall")
    yappi.start()
    return yappi.stop


def start_viztracer(hooks, **options):
    viztracer = import_or_unavailable("viztracer")
    tracer = viztracer.VizTracer(verbose=0, **options)
    tracer.start()
    return tracer.stop


def start_viztracer_args(hooks):
    return start_viztracer(hooks, log_func_args=True, log_func_retval=True)


def start_ferrotrace(hooks):
    try:
        import ferrotrace.auto  # starts the env-configured session on import
    except ImportError as exc:
        unavailable(f"ferrotrace not importable: {exc}")
    import ferrotrace

    def stop():
        ferrotrace.shutdown(10.0)
        stats = ferrotrace.stats()
        return {"spans_recorded": stats["recorded"], "spans_dropped": stats["dropped"]}

    return stop


TRACERS = {
    "untraced": start_untraced,
    "c-setprofile": start_c_setprofile,
    "c-monitoring": start_c_monitoring,
    "cprofile": start_cprofile,
    "yappi": start_yappi,
    "viztracer": start_viztracer,
    "viztracer-args": start_viztracer_args,
    "ferrotrace": start_ferrotrace,
}


def import_hooks(hooks):
    sys.path.insert(0, hooks)
    import _ftbench_hooks

    return _ftbench_hooks


def import_or_unavailable(name):
    try:
        return __import__(name)
    except ImportError as exc:
        unavailable(f"{name} not importable: {exc}")


def unavailable(reason):
    print(reason, file=sys.stderr)
    sys.exit(UNAVAILABLE)


def count_calls(run):
    """Python function calls made by run(), as seen by a profile hook's "call" events."""
    calls = 0

    def profiler(frame, event, arg):
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profiler)
    run()
    sys.setprofile(None)
    return calls


def monitoring_tools():
    """Names of the sys.monitoring tools registered while the tracer runs (3.12+)."""
    mon = getattr(sys, "monitoring", None)
    return [mon.get_tool(i) for i in range(6) if mon.get_tool(i)] if mon else []


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracer", choices=sorted(TRACERS), default="untraced")
    parser.add_argument("--workload", required=True)
    parser.add_argument("--iters", type=int, required=True)
    parser.add_argument("--workloads", required=True, help="directory of pyperformance files")
    parser.add_argument("--hooks", required=True, help="directory of the compiled hook extension")
    parser.add_argument("--count", action="store_true", help="count Python calls instead of timing")
    args = parser.parse_args()

    run = load_workload(args.workload, args.iters, args.workloads)
    if args.count:
        print(json.dumps({"calls": count_calls(run)}))
        return
    stop = TRACERS[args.tracer](args.hooks)
    tools = monitoring_tools()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    counts = stop() or {}
    print(json.dumps({"seconds": seconds, "monitoring_tools": tools, **counts}))


if __name__ == "__main__":
    main()
