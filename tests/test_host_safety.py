"""The traced program never notices (issue 25): what ferrotrace reads from frames is read
with the right layout, and recording keeps no user object alive, on every backend."""

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_BACKEND, read_trace, spans


def ferrotrace_run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`ferrotrace run ARGS` in `cwd`, with no FERROTRACE_* setting of the test run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    return subprocess.run(
        [sys.executable, "-m", "ferrotrace", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


DATACLASSES = r"""
import dataclasses, ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="args", exclude_defaults=False,
                     include=r"__init__$")
with ferrotrace.session("made"):
    for i in range(400):
        n = i % 7
        C = dataclasses.make_dataclass(f"C{i}", [f"f{j}" for j in range(n)])
        C(*range(10, 10 + n))
ferrotrace.shutdown()
"""


def test_generated_functions_sharing_a_name_keep_their_own_parameters(runner):
    """dataclasses makes each `__init__` with `exec`: every one has the same module, name,
    file and line, and different parameters, and they are freed and made in turn. Each call
    must show its own parameters with the values passed (once a crash on 3.11: a layout
    cached for one was used for another)."""
    records = runner.trace(DATACLASSES)
    inits = [s for s in spans(records) if s["file"] == "<string>" and s["qualname"].endswith("__init__")]
    by_width: dict[int, int] = {}
    for s in inits:
        args = dict(s["args"])
        assert re.fullmatch(r"(types|__main__)\.C\d+", args.pop("self")["__type__"])
        n = len(args)
        assert args == {f"f{j}": 10 + j for j in range(n)}, s
        by_width[n] = by_width.get(n, 0) + 1
    assert by_width == {n: len([i for i in range(400) if i % 7 == n]) for n in range(7)}


LIFETIMES = r"""
import gc, os, sys, weakref, dataclasses
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="all", preview=os.environ["MODE"])

class Parent:
    pass

def make_class():
    class Child(Parent):
        def __repr__(self):
            return "child"
    return Child

def make_dataclass():
    @dataclasses.dataclass
    class Point:
        x: int
        y: list
    return Point

def make_function():
    def inner(a, b=2):
        return a
    return inner

def make_code():
    return compile("def g(x):\n    return x\n", "<made>", "exec")

def use(*values, **named):
    return values

refs = {}
with ferrotrace.session("lifetimes"):
    child = make_class()
    use(child, child(), kind=child)
    point_cls = make_dataclass()
    p = point_cls(1, [1, 2])
    use(point_cls, p)
    fn = make_function()
    fn(fn)
    use(fn, fn.__code__)
    code = make_code()
    ns = {}
    exec(code, ns)
    ns["g"](ns["g"])
    refs = {
        "class": weakref.ref(child),
        "dataclass": weakref.ref(point_cls),
        "instance": weakref.ref(p),
        "function": weakref.ref(fn),
        "code": weakref.ref(code),
        "exec_function": weakref.ref(ns["g"]),
        "exec_code": weakref.ref(ns["g"].__code__),
    }
    del child, point_cls, p, fn, code, ns
    gc.collect()
    alive = sorted(k for k, r in refs.items() if r() is not None)
    subclasses = [c.__name__ for c in Parent.__subclasses__()]
print(repr((alive, subclasses)))
ferrotrace.shutdown()
"""


@pytest.mark.parametrize("mode", ["safe", "fields", "repr"])
def test_objects_made_in_traced_calls_die_when_dropped(runner, mode):
    proc = runner.run(LIFETIMES, env={"MODE": mode})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "([], [])"
    names = {s["qualname"] for s in spans(read_trace(runner.tmp / "trace.jsonl"))}
    assert {"use", "make_class", "make_dataclass", "make_function.<locals>.inner", "g"} <= names


CYCLE_CALLBACK = r"""
import gc, weakref
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="all")

alist = []

def scenario():
    class C(object):
        def __init__(self, value):
            self.attribute = value

        def acallback(self, ignore):
            alist.append(self.c)

    c1, c2 = C(1), C(2)
    c1.c = c2
    c2.c = c1
    c1.wr = weakref.ref(c2, c1.acallback)
    c2.wr = weakref.ref(c1, c2.acallback)
    return weakref.ref(C, lambda ignore: alist.append("C went away"))

with ferrotrace.session("cycle"):
    wr = scenario()
    gc.collect()
    print(alist, wr())
ferrotrace.shutdown()
"""


def test_a_class_in_dropped_cyclic_trash_goes_away(runner):
    """CPython's test_weakref.test_callback_in_cycle_resurrection, traced: the class whose
    instances ferrotrace previewed dies with its cycle and its weakref callback runs."""
    proc = runner.run(CYCLE_CALLBACK)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['C went away'] None"


GC_OBJECTS = r"""
import gc
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="all")

class G:
    def __eq__(self, other):
        return False

with ferrotrace.session("objects"):
    g = G()
    before = len(gc.get_objects())
    for i in range(10):
        g == g
    after = len(gc.get_objects())
print(after - before)
ferrotrace.shutdown()
"""


def test_traced_calls_leave_no_new_objects_behind(runner):
    proc = runner.run(GC_OBJECTS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


NAMING_RUNS_NO_USER_CODE = r"""
import os
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="all", sample_rate=os.environ["RATE"])

SIDE = []

class Meta(type):
    def __getattribute__(cls, name):
        SIDE.append(("meta", name))
        return super().__getattribute__(name)

class Spy:
    def __getattr__(self, name):
        SIDE.append(("spy", name))
        raise AttributeError(name)

class Model(metaclass=Meta):
    handle = Spy()
    def method(self, x):
        return x
    @classmethod
    def build(cls, x):
        return x

def outer():
    def closure(y):
        return y
    return closure(2)

with ferrotrace.session("naming"):
    m = object.__new__(Model)
    Model.method(m, 1)
    Model.build(1)
    outer()
print(SIDE)
ferrotrace.shutdown()
"""


def test_naming_a_function_runs_none_of_the_programs_code(runner):
    """Deciding on and naming a function (on 3.10 by searching its class and module) reads
    type objects directly: no metaclass `__getattribute__` or `__getattr__` of the program
    runs."""
    untraced = runner.run(NAMING_RUNS_NO_USER_CODE, env={"RATE": "0"})
    assert untraced.returncode == 0, untraced.stderr
    traced = runner.run(NAMING_RUNS_NO_USER_CODE, env={"RATE": "1"})
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout == untraced.stdout
    records = read_trace(runner.tmp / "trace.jsonl")
    names = {s["qualname"] for s in spans(records)}
    assert {"Model.method", "Model.build", "outer", "outer.<locals>.closure"} <= names


AUDIT_HOOK = r"""
import os, sys
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="all", sample_rate=os.environ["RATE"])
EVENTS = []

def hook(name, args):
    if name.startswith("object."):
        EVENTS.append(name)

sys.addaudithook(hook)

class Box:
    def method(self):
        return 1

def work():
    return Box().method()

with ferrotrace.session("audited"):
    work()
    work()
print(EVENTS)
"""


def test_an_audit_hook_sees_no_event_of_ferrotrace(runner):
    """regrtest installs a Python audit hook first thing. Naming a function must not raise
    audit events (`object.__getattr__` of `__code__`): the hook would run, be traced, be
    named, raise the event again... (a stack overflow on 3.10 with evalframe)."""
    untraced = runner.run(AUDIT_HOOK, env={"RATE": "0"})
    assert untraced.returncode == 0, untraced.stderr
    traced = runner.run(AUDIT_HOOK, env={"RATE": "1"})
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout == untraced.stdout
    names = [s["qualname"] for s in spans(read_trace(runner.tmp / "trace.jsonl"))]
    assert names.count("work") == 2 and names.count("Box.method") == 2


def test_a_subinterpreter_runs_untraced_and_silent(tmp_path):
    """PyO3 modules load only in the main interpreter: a subinterpreter of a program under
    `ferrotrace run` runs untraced, prints nothing of ferrotrace's, and does not make the
    summary call the traced process untraced."""
    script = tmp_path / "sub.py"
    script.write_text("import _testcapi\n_testcapi.run_in_subinterp('x = 1')\nprint('sub ok')\n")
    proc = ferrotrace_run(tmp_path, "-o", str(tmp_path / "t.jsonl"), str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "sub ok\n"
    assert "cannot load" not in proc.stderr and "not traced" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("ferrotrace: 1 spans written, 0 dropped")


def test_output_to_dev_null_makes_no_file_for_children(tmp_path):
    """`ferrotrace run -o /dev/null` (how the fidelity suite discards whole test suites'
    traces): child processes write to /dev/null too, not to a new file `/dev/null.PID`."""
    before = set(glob.glob("/dev/null.*"))
    script = tmp_path / "parent.py"
    script.write_text("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'print(2)'])\n")
    proc = ferrotrace_run(tmp_path, "-o", "/dev/null", str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2\n"
    made = set(glob.glob("/dev/null.*")) - before
    for path in made:
        os.unlink(path)
    assert not made


THREADS_UNDER_AN_AUDIT_HOOK = r"""
import sys, threading

def hook(name, args):
    if name == "sys.setprofile":
        sum(range(20000))  # Python code inside CPython's "being installed" window

sys.addaudithook(hook)
sys.setswitchinterval(1e-6)
done = []

def leaf(i):
    return i

def target(k):
    for i in range(10):
        leaf(i)
    done.append(k)

for _ in range(20):
    threads = [threading.Thread(target=target, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print(len(done))
"""


def test_threads_starting_together_under_an_audit_hook_all_run(runner):
    """regrtest's audit hook runs Python code on every `sys.setprofile`. On 3.10/3.11 that
    call holds a process-wide flag meanwhile, and threads starting together each installing
    a profile function made one fail ("Cannot install a profile function while another ...")
    before its target ran. Every thread runs and is traced; nothing is printed."""
    proc = runner.run(
        THREADS_UNDER_AN_AUDIT_HOOK,
        args=["-m", "ferrotrace", "run"],
        env={"FERROTRACE_OUTPUT": "trace.jsonl"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "160\n"
    assert proc.stderr.startswith("ferrotrace: "), proc.stderr
    assert "Exception ignored" not in proc.stderr and "Cannot install" not in proc.stderr, proc.stderr
    names = [s["qualname"] for s in spans(read_trace(runner.tmp / "trace.jsonl"))]
    assert names.count("target") == 160 and names.count("leaf") == 1600


DESCRIPTORS_PROGRAM = r"""
import json, os, subprocess, sys

def descriptors():
    return sorted(os.listdir("/proc/self/fd"))

def leaf(i):
    return i

seen = {"start": descriptors()}
for i in range(5000):
    leaf(i)
if "ferrotrace" in sys.modules:  # traced: everything recorded so far is written
    sys.modules["ferrotrace"].flush()
seen["after work"] = descriptors()
child = "import os; print(sorted(os.listdir('/proc/self/fd')))"
seen["child"] = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout
print(json.dumps(seen))
"""


def test_the_program_and_its_children_see_only_their_own_descriptors(tmp_path):
    """A program that lists its open descriptors (CPython's test_subprocess checks a child's
    exactly) finds the same ones traced as untraced: the trace files are open only while
    the export thread writes them, and a child inherits none."""
    script = tmp_path / "fds.py"
    script.write_text(DESCRIPTORS_PROGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROTRACE")}
    untraced = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert untraced.returncode == 0, untraced.stderr
    backend = ["--backend", TEST_BACKEND] if TEST_BACKEND else []
    traced = ferrotrace_run(tmp_path, *backend, "--exporter", "jsonl,chrome", "-o", "t.jsonl", str(script))
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout) == json.loads(untraced.stdout)
    records = read_trace(tmp_path / "t.jsonl")
    assert sum(s["qualname"] == "leaf" for s in spans(records)) == 5000, "it was traced"
    assert records[-1]["type"] == "meta" and records[-1]["dropped"] == 0
