"""Argument and return-value previews (issue 3, test 4): hostile objects run none of their
code under the default (safe) preview, the program is unaffected, every line is valid JSON,
and the previews show what a user expects."""

import json

import pytest
from conftest import read_trace, spans

HOSTILE = r"""
import json, os, sys, time
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="all", preview=os.environ["PREVIEW_MODE"])

SIDE = []

def traced_helper():
    SIDE.append("helper")
    return 1

class ReprRaises:
    def __repr__(self):
        SIDE.append("repr_raises")
        raise RuntimeError("repr")

class ReprSleeps:
    def __repr__(self):
        SIDE.append("repr_sleeps")
        time.sleep(30)
        return "slept"

class ReprRecurses:
    def __repr__(self):
        SIDE.append("repr_recurses")
        return repr(self)

class ReprCallsTraced:
    def __repr__(self):
        SIDE.append("repr_calls")
        traced_helper()
        return "calls"

class GetattrRaises:
    def __getattr__(self, name):
        SIDE.append("getattr")
        raise RuntimeError(name)

class GetattributeRaises:
    def __init__(self):
        object.__setattr__(self, "field", 7)
    def __getattribute__(self, name):
        SIDE.append("getattribute")
        raise RuntimeError(name)

class PropertySideEffect:
    def __init__(self):
        self.hidden = 1
    @property
    def value(self):
        SIDE.append("property")
        return 2

class EvilDict(dict):
    def __eq__(self, other):
        SIDE.append("eq")
        raise RuntimeError("eq")
    def __hash__(self):
        SIDE.append("hash")
        raise RuntimeError("hash")
    def __iter__(self):
        SIDE.append("iter")
        raise RuntimeError("iter")
    def __len__(self):
        SIDE.append("len")
        raise RuntimeError("len")
    def __repr__(self):
        SIDE.append("dict_repr")
        raise RuntimeError("repr")

class EvilList(list):
    def __iter__(self):
        SIDE.append("list_iter")
        raise RuntimeError("iter")
    def __len__(self):
        SIDE.append("list_len")
        raise RuntimeError("len")
    def __getitem__(self, i):
        SIDE.append("list_getitem")
        raise RuntimeError("getitem")

class EvilStr(str):
    def __str__(self):
        SIDE.append("str_str")
        return "evil"
    def __repr__(self):
        SIDE.append("str_repr")
        return "evil"

class Meta(type):
    def __getattribute__(cls, name):
        SIDE.append("meta")
        return super().__getattribute__(name)

class WithMeta(metaclass=Meta):
    def __init__(self):
        self.ok = True

class Slotted:
    __slots__ = ("a", "b")
    def __init__(self):
        self.a = 1
        self.b = "two"

class Point:
    def __init__(self, x, label):
        self.x = x
        self.label = label

self_list = []
self_list.append(self_list)
self_dict = {}
self_dict["me"] = self_dict
evil_dict = EvilDict()
dict.__setitem__(evil_dict, "k", 1)
evil_list = EvilList([1, 2])

objects = {
    "repr_raises": ReprRaises(),
    "repr_sleeps": ReprSleeps(),
    "repr_recurses": ReprRecurses(),
    "repr_calls": ReprCallsTraced(),
    "getattr_raises": GetattrRaises(),
    "getattribute_raises": GetattributeRaises(),
    "property": PropertySideEffect(),
    "self_list": self_list,
    "self_dict": self_dict,
    "big_str": "y" * (100 * 1024 * 1024),
    "evil_dict": evil_dict,
    "evil_list": evil_list,
    "evil_str": EvilStr("plain"),
    "with_meta": WithMeta(),
    "non_utf8": b"\xff\xfe\x00abc",
    "bytearray": bytearray(b"\x80ok"),
    "surrogates": "a\ud800b\udfffc",
    "nul": "a\x00b",
    "huge_int": 10 ** 100000,
    "neg_huge_int": -(10 ** 100000),
    "slotted": Slotted(),
    "point": Point(3, "p"),
    "float": 2.5,
    "nan": float("nan"),
    "big_int": 2 ** 64,
    "class_with_meta": WithMeta,
    "builtin_class": int,
}

def take(name, obj):
    return obj

# What repr() shows of the objects whose class keeps object.__repr__ (it runs no user code).
default_reprs = {k: object.__repr__(v) for k, v in objects.items()}
results = {}
SIDE.clear()
with ferrotrace.session("hostile"):
    for name, obj in objects.items():
        results[name] = take(name, obj)
ferrotrace.shutdown()
print(json.dumps({
    "side_effects": SIDE,
    "same": all(results[k] is objects[k] for k in objects),
    "big_len": len(results["big_str"]),
    "default_reprs": default_reprs,
}))
"""


def previews(records, name):
    """Args and return preview of the `take` call for object `name`."""
    for s in spans(records):
        if s["qualname"] == "take" and s["args"]["name"] == name:
            return s["args"]["obj"], s["return"]
    raise AssertionError(f"no take span for {name}")


@pytest.mark.parametrize("mode", ["safe", "fields"])
def test_hostile_objects_run_no_user_code(runner, mode):
    proc = runner.run(HOSTILE, env={"PREVIEW_MODE": mode})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    default_reprs = out.pop("default_reprs")
    assert out == {"side_effects": [], "same": True, "big_len": 100 * 1024 * 1024}
    records = [json.loads(line) for line in (runner.tmp / "trace.jsonl").read_text().splitlines()]
    takes = [s for s in spans(records) if s["qualname"] == "take"]
    assert len(takes) == 27
    assert not [s for s in spans(records) if s["qualname"] == "traced_helper"]

    def obj(name):
        args, ret = previews(records, name)
        assert args == ret, name
        return args

    # Classes with their own __repr__ are shown by their fields (the repr is never called).
    assert obj("repr_raises") == {"__type__": "__main__.ReprRaises"}
    assert obj("repr_sleeps") == {"__type__": "__main__.ReprSleeps"}
    # Classes that keep object.__repr__: safe mode writes that repr, fields mode the fields.
    fields = {
        "getattr_raises": {"__type__": "__main__.GetattrRaises"},
        "getattribute_raises": {"__type__": "__main__.GetattributeRaises", "field": 7},
        "property": {"__type__": "__main__.PropertySideEffect", "hidden": 1},
        "with_meta": {"__type__": "__main__.WithMeta", "ok": True},
        "slotted": {"__type__": "__main__.Slotted", "a": 1, "b": "two"},
        "point": {"__type__": "__main__.Point", "x": 3, "label": "p"},
    }
    for name, shown in fields.items():
        expected = shown if mode == "fields" else default_reprs[name]
        assert obj(name) == expected, name
    if mode == "safe":
        assert default_reprs["point"].startswith("<__main__.Point object at 0x")
    assert obj("self_list") == ["<cycle list>"]
    assert obj("self_dict") == {"me": "<cycle dict>"}
    assert obj("big_str") == "y" * 256 + f"…[+{100 * 1024 * 1024 - 256} chars]"
    assert obj("evil_dict") == {"k": 1}
    assert obj("evil_list") == [1, 2]
    assert obj("evil_str") == "plain"
    assert obj("non_utf8") == "b'\\xff\\xfe\\x00abc'"
    assert obj("bytearray") == "bytearray(b'\\x80ok')"
    assert obj("surrogates") == "a\ufffdb\ufffdc"
    assert obj("nul") == "a\x00b"
    assert obj("huge_int") == "<int 332193 bits>"
    assert obj("neg_huge_int") == "<int -332193 bits>"
    assert obj("float") == 2.5
    assert obj("nan") == "nan"
    # A class is named, even one whose metaclass hooks attribute access (never called).
    assert obj("class_with_meta") == "<class __main__.WithMeta>"
    assert obj("builtin_class") == "<class int>"
    assert obj("big_int") == str(2**64)


NORMAL = """
import ferrotrace
ferrotrace.configure(output="trace.jsonl")

def add(a, b=2, *rest, scale=1, **extra):
    return (a + b) * scale

def echo(value):
    return value

def five(a, b, c, d, e):
    return None

with ferrotrace.session("normal"):
    add(1, 5, 7, 8, scale=3, note="n")
    echo("é" * 300)
    echo(list(range(10)))
    echo({i: str(i) for i in range(5)})
    echo([[[1]], (2,), {"k": {"deep": 1}}])
    echo({1, 2} if False else frozenset())
    echo(five)
    echo(ferrotrace)
    echo(ValueError("out of stock", 3))
    for scalar in (True, False, None, 0, -7, 2**30 - 1, 2**30, -(2**30), 4111111111111111):
        echo(scalar)
    five(1, 2, 3, 4, 5)
"""


def test_previews_of_normal_calls(runner):
    env = {"FERROTRACE_CAPTURE": "all", "FERROTRACE_MAX_ITEMS": "3", "FERROTRACE_MAX_STR": "10"}
    got = spans(runner.trace(NORMAL, env=env))
    add = next(s for s in got if s["qualname"] == "add")
    assert add["args"] == {"a": 1, "b": 5, "*rest": [7, 8], "…": "[+2 items]"}
    assert add["return"] == 18
    echoes = [(s["args"]["value"], s["return"]) for s in got if s["qualname"] == "echo"]
    assert [ret for _, ret in echoes] == [args for args, _ in echoes]
    assert [args for args, _ in echoes] == [
        "é" * 10 + "…[+290 chars]",
        [0, 1, 2, "…[+7 items]"],
        {"0": "0", "1": "1", "2": "2", "…": "[+2 items]"},
        [["<list len=1>"], [2], {"k": "<dict len=1>"}],
        [],
        "<function five>",
        "<module ferrotrace>",
        {"__type__": "ValueError", "args": ["out of sto…[+2 chars]", 3]},
        # Scalars, the commonest return values, are written without a walker; a card
        # number is still redacted.
        True,
        False,
        None,
        0,
        -7,
        2**30 - 1,
        2**30,
        -(2**30),
        "[REDACTED]",
    ]
    five = next(s for s in got if s["qualname"] == "five")
    assert five["args"] == {"a": 1, "b": 2, "c": 3, "…": "[+2 items]"}
    assert five["return"] is None


def test_capture_modes(runner):
    for mode, has_args, has_return in [
        ("none", False, False),
        ("args", True, False),
        ("return", False, True),
    ]:
        got = spans(runner.trace(NORMAL, env={"FERROTRACE_CAPTURE": mode}))
        assert got
        for s in got:
            assert ("args" in s) == has_args, (mode, s)
            assert ("return" in s) == has_return, (mode, s)


def test_unbounded_depth_setting_and_kwargs(runner):
    got = spans(
        runner.trace(
            """
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="args")
def f(**kwargs):
    pass
with ferrotrace.session("d"):
    f(nested=[[[[1]]]])
""",
            env={"FERROTRACE_MAX_PREVIEW_DEPTH": "4"},
        )
    )
    assert got[0]["args"] == {"**kwargs": {"nested": [[["<list len=1>"]]]}}


REPR_MODE = """
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="all")
SIDE = []

def traced_helper():
    SIDE.append("helper")
    return 1

class Nice:
    def __repr__(self):
        return "Nice(1)"

class ReprRaises:
    def __repr__(self):
        SIDE.append("raises")
        raise RuntimeError("repr")

class ReprCallsTraced:
    def __repr__(self):
        SIDE.append("calls")
        traced_helper()
        return "Calls()"

class LeaksSecret:
    def __repr__(self):
        return "LeaksSecret(token=abc123secretvalue)"

def take(obj):
    return obj

with ferrotrace.session("repr"):
    take(Nice())
    take(ReprRaises())
    take(ReprCallsTraced())
    take(LeaksSecret())
    take([Nice(), 1])
    traced_helper()
print(sorted(SIDE))
"""


def test_repr_mode_guards_user_repr(runner):
    proc = runner.run(REPR_MODE, env={"FERROTRACE_PREVIEW": "repr"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    # Each repr ran twice (argument and return value); the helper ran inside them and once
    # directly.
    assert proc.stdout.split() == [
        "['calls',",
        "'calls',",
        "'helper',",
        "'helper',",
        "'helper',",
        "'raises',",
        "'raises']",
    ]
    records = [json.loads(line) for line in (runner.tmp / "trace.jsonl").read_text().splitlines()]
    got = spans(records)
    takes = [(s["args"]["obj"], s["return"]) for s in got if s["qualname"] == "take"]
    assert takes == [
        ("Nice(1)", "Nice(1)"),
        ("<__main__.ReprRaises (repr failed)>",) * 2,
        ("Calls()", "Calls()"),
        ("LeaksSecret(token=[REDACTED])",) * 2,
        (["Nice(1)", 1], ["Nice(1)", 1]),
    ]
    helpers = [s for s in got if s["qualname"] == "traced_helper"]
    assert len(helpers) == 1, "calls made inside repr() are not traced"
    assert helpers[0]["depth"] == 0


INSTANCE_ATTRIBUTES = """
import gc
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="args")

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y
    def __repr__(self):
        return f"Point({self.x}, {self.y})"

def has_dict(obj):
    # An instance whose attributes live inline has no dict among its referents.
    return any(type(r) is dict for r in gc.get_referents(obj))

def take(p):
    pass

plain = Point(1, 2)
reordered = Point(3, 4)
del reordered.x
reordered.z = "zed"
reordered.x = 5
wide = Point(0, 0)
for i in range(6):
    setattr(wide, f"a{i}", i)
materialised = Point(7, 8)
materialised.__dict__["w"] = 9
before = [has_dict(p) for p in (plain, reordered, wide)]
with ferrotrace.session("attrs"):
    for p in (plain, reordered, wide, materialised):
        take(p)
after = [has_dict(p) for p in (plain, reordered, wide)]
print(before == after, plain.x + reordered.x + wide.a5)
"""


def test_instance_attributes_previewed_in_place(runner):
    env = {"FERROTRACE_MAX_ITEMS": "4"}
    proc = runner.run(INSTANCE_ATTRIBUTES, env=env)
    assert proc.returncode == 0, proc.stderr
    # No preview created an instance dict, and the program saw its own attributes.
    assert proc.stdout == "True 11\n"
    records = read_trace(runner.tmp / "trace.jsonl")
    got = [s["args"]["p"] for s in spans(records) if s["qualname"] == "take"]
    point = "__main__.Point"
    assert got == [
        {"__type__": point, "x": 1, "y": 2},
        {"__type__": point, "y": 4, "z": "zed", "x": 5},
        {"__type__": point, "x": 0, "y": 0, "a0": 0, "a1": 1, "…": "[+4 items]"},
        {"__type__": point, "x": 7, "y": 8, "w": 9},
    ]


SHALLOW = """
import dataclasses, os
import ferrotrace
ferrotrace.configure(output="trace.jsonl", capture="args", preview=os.environ["PREVIEW_MODE"])

@dataclasses.dataclass
class Inner:
    n: int

@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    tags: list
    blob: bytes
    ratio: float
    table: dict
    flag: bool = True
    nothing: None = None

class Slotted:
    __slots__ = ("a", "pair", "child", "password")
    def __init__(self):
        self.a = 1
        self.pair = (1, 2)
        self.child = Inner(2)
        self.password = "hunter2"
    def __repr__(self):
        return "Slotted()"

class OutOfStock(ValueError):
    def __init__(self, item, count):
        super().__init__(item, count, [item])
        self.count = count
        self.where = {"shelf": 3}

class Node:
    def __init__(self):
        self.me = self
        self.peers = [self]
    def __repr__(self):
        return "Node()"

class Plain:
    pass

class Kinds:
    def __init__(self):
        self.kind = Inner
        self.fn = len
        self.plain = Plain()
        self.ids = {1, 2}
        self.raw = bytearray(b"xy")
    def __repr__(self):
        return "Kinds()"

def take(x):
    pass

with ferrotrace.session("shallow"):
    take(Outer("o", Inner(1), [1, 2, 3], b"ab", 1.5, {}))
    take(Slotted())
    take(OutOfStock("tea", 0))
    node = Node()
    take(node)
    take([node])
    take(Kinds())
"""


@pytest.mark.parametrize("mode", ["safe", "fields"])
def test_objects_with_their_own_repr_are_shown_one_level_deep_in_safe_mode(runner, mode):
    got = spans(runner.trace(SHALLOW, env={"PREVIEW_MODE": mode}))
    shown = [s["args"]["x"] for s in got if s["qualname"] == "take"]
    inner, node, kinds = "__main__.Inner", "__main__.Node", "__main__.Kinds"
    if mode == "safe":
        assert shown == [
            {
                "__type__": "__main__.Outer",
                "name": "o",
                "inner": f"<{inner}>",
                "tags": "<list len=3>",
                "blob": "b'ab'",
                "ratio": 1.5,
                "table": "<dict len=0>",
                "flag": True,
                "nothing": None,
            },
            {
                "__type__": "__main__.Slotted",
                "a": 1,
                "pair": "<tuple len=2>",
                "child": f"<{inner}>",
                "password": "[REDACTED]",
            },
            {
                "__type__": "__main__.OutOfStock",
                "args": ["tea", 0, "<list len=1>"],
                "count": 0,
                "where": "<dict len=1>",
            },
            {"__type__": node, "me": f"<{node}>", "peers": "<list len=1>"},
            [{"__type__": node, "me": f"<{node}>", "peers": "<list len=1>"}],
            {
                "__type__": kinds,
                "kind": f"<class {inner}>",
                "fn": "<builtin_function_or_method>",
                "plain": "<__main__.Plain>",
                "ids": "<set len=2>",
                "raw": "<bytearray len=2>",
            },
        ]
    else:
        assert shown == [
            {
                "__type__": "__main__.Outer",
                "name": "o",
                "inner": {"__type__": inner, "n": 1},
                "tags": [1, 2, 3],
                "blob": "b'ab'",
                "ratio": 1.5,
                "table": {},
                "flag": True,
                "nothing": None,
            },
            {
                "__type__": "__main__.Slotted",
                "a": 1,
                "pair": [1, 2],
                "child": {"__type__": inner, "n": 2},
                "password": "[REDACTED]",
            },
            {
                "__type__": "__main__.OutOfStock",
                "args": ["tea", 0, "<list len=1>"],
                "count": 0,
                "where": {"shelf": 3},
            },
            {"__type__": node, "me": "<cycle Node>", "peers": ["<cycle Node>"]},
            [{"__type__": node, "me": "<cycle Node>", "peers": "<list len=1>"}],
            {
                "__type__": kinds,
                "kind": f"<class {inner}>",
                "fn": {"__type__": "builtin_function_or_method"},
                "plain": {"__type__": "__main__.Plain"},
                "ids": [1, 2],
                "raw": "bytearray(b'xy')",
            },
        ]
