"""A small deterministic program for the span-count oracle (tests/fidelity/oracle.py): plain
functions, methods, class bodies, closures, generators, exceptions, exec'd code, coroutines,
an async generator and a thread. Every Python call into it is counted by a sys.setprofile
counter in one run and recorded as a span by ferrotrace in another; the counts must agree."""

import asyncio
import functools
import threading


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def decorator(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@decorator
def decorated(x, *, y=2):
    return x * y


class Base:
    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.registered = True


class Vec(Base):
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __add__(self, other):
        return Vec(self.x + other.x, self.y + other.y)

    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))

    def __repr__(self):
        return f"Vec({self.x}, {self.y})"

    @property
    def norm1(self):
        return abs(self.x) + abs(self.y)

    @staticmethod
    def zero():
        return Vec(0, 0)

    @classmethod
    def unit(cls):
        return cls(1, 1)


def counter(n):
    for i in range(n):
        got = yield i
        if got == "stop":
            return i


def delegate(n):
    total = yield from counter(n)
    yield total


def failing(depth):
    if depth == 0:
        raise ValueError("bottom")
    return failing(depth - 1)


def catcher():
    caught = 0
    for d in range(4):
        try:
            failing(d)
        except ValueError:
            caught += 1
    return caught


def gen_with_throw():
    g = counter(10)
    next(g)
    try:  # noqa: SIM105 - the throw into a generator is what is measured
        g.throw(KeyError("x"))
    except KeyError:
        pass
    g2 = counter(10)
    next(g2)
    g2.close()


exec("def dynamic(v):\n    return v + 1\n", globals())


async def leaf(i):
    await asyncio.sleep(0)
    return i * 2


async def agen(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def amain():
    got = await asyncio.gather(*(leaf(i) for i in range(5)))
    got += [x async for x in agen(3)]
    return sum(got)


def in_thread(out):
    out.append(fib(10))


def main():
    out = [fib(12), decorated(3), decorated(4, y=5)]
    v = Vec(1, 2) + Vec.unit() + Vec.zero()
    out += [v.norm1, repr(v), v == Vec(2, 3), len({v, Vec(2, 3)})]
    out.append(sum(counter(6)))
    g = delegate(5)
    out += [next(g), next(g), g.send("stop")]
    out.append(catcher())
    gen_with_throw()
    out.append(sorted([3, 1, 2], key=lambda k: -k))
    out.append(list(map(dynamic, range(3))))  # noqa: F821 - defined by exec above
    out.append([fib(i) for i in range(5)])
    out.append(sum(fib(i) for i in range(5)))
    out.append(asyncio.run(amain()))
    t = threading.Thread(target=in_thread, args=(out,))
    t.start()
    t.join()
    return out
