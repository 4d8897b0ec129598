"""Latency samples: a bounded ring of recent observations and its percentiles."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Percentiles", "Samples"]


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Median and 99th percentile of the recent samples (``count`` of them)."""

    p50: float | None
    p99: float | None
    count: int


class Samples:
    """The last ``size`` observations (a ring): O(1) to add, O(size log size) to summarise."""

    __slots__ = ("_ring", "total")

    def __init__(self, size: int = 8192) -> None:
        self._ring: deque[float] = deque(maxlen=size)
        self.total = 0
        """Observations ever added (the ring keeps only the last ``size``)."""

    def add(self, value: float) -> None:
        """Record one observation.  O(1)."""
        self._ring.append(value)
        self.total += 1

    def summary(self, scale: float = 1.0) -> Percentiles:
        """p50 and p99 of the observations kept, each multiplied by ``scale``."""
        values = sorted(self._ring)
        if not values:
            return Percentiles(None, None, 0)
        last = len(values) - 1
        return Percentiles(
            values[round(0.50 * last)] * scale, values[round(0.99 * last)] * scale, len(values)
        )
