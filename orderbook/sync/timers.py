"""Per-symbol deadlines of the engine, as data: a heap with lazy deletion."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from enum import Enum

__all__ = ["Timer", "Timers"]


class Timer(Enum):
    """What a deadline is for."""

    RETRY = "retry"
    """A snapshot retry may fall due."""
    AUDIT = "audit"
    """An audit's shadow must have reached the replica by now."""


class Timers:
    """Deadlines (µs) of symbols, earliest first.

    ``alive(at, symbol, kind)`` says whether an entry still matters (a retry
    that was released early, an audit that ended): dead entries are dropped
    when they reach the front, so nothing is ever searched for or removed in
    the middle.  Push O(log n), peek O(1) amortised.
    """

    __slots__ = ("_heap", "_tie", "_alive")

    def __init__(self, alive: Callable[[int, str, Timer], bool]) -> None:
        self._heap: list[tuple[int, int, str, Timer]] = []
        self._tie = 0
        self._alive = alive

    def push(self, at: int, symbol: str, kind: Timer) -> None:
        """Be told at ``at`` about ``symbol``."""
        self._tie += 1
        heapq.heappush(self._heap, (at, self._tie, symbol, kind))

    def next(self) -> int | None:
        """The earliest live deadline, ``None`` if there is none."""
        heap = self._heap
        while heap and not self._alive(heap[0][0], heap[0][2], heap[0][3]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: int) -> Iterator[tuple[int, str, Timer]]:
        """Pop and yield every live entry due at ``now``, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, symbol, kind = heapq.heappop(heap)
            if self._alive(at, symbol, kind):
                yield at, symbol, kind

    def clear(self) -> None:
        """Forget every deadline."""
        self._heap.clear()
