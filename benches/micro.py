"""A call-heavy micro workload: recursive fib plus many tiny method calls.

Almost all of its time is spent entering and leaving small Python functions, so it shows a
tracer's per-call cost with little else diluting it.
"""


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


class Vec:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def add(self, other):
        return Vec(self.x + other.x, self.y + other.y)

    def scaled(self, k):
        return Vec(self.x * k, self.y * k)

    def dot(self, other):
        return self.x * other.x + self.y * other.y


def walk(steps):
    pos = Vec(0, 0)
    step = Vec(1, 2)
    total = 0
    for i in range(steps):
        pos = pos.add(step.scaled(i & 3))
        total += pos.dot(step)
    return total


def run(iterations):
    for _ in range(iterations):
        fib(18)
        walk(2000)
