"""What every test application does, so that the three frameworks answer alike: the work a
handler does (recorded spans), the streamed body, the error."""

from __future__ import annotations

import time
from collections.abc import Iterator

#: Chunks of the streamed body (the same traced and untraced).
STREAM_CHUNKS = 50


def work(n: int) -> int:
    """The handler's own work: one recorded call per request."""
    return sum(range(n))


def nap(seconds: float) -> None:
    """The sleeping endpoint's work."""
    time.sleep(seconds)


def chunks() -> Iterator[bytes]:
    """The streamed body: numbered lines of varying length, produced one at a time."""
    for i in range(STREAM_CHUNKS):
        yield f"{i}:{'x' * (i * 37 % 101)}\n".encode()


def fail() -> None:
    """The failing endpoint's work."""
    raise LookupError("no such item; token=abc123secret")
