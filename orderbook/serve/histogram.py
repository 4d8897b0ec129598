"""``Histogram``: cumulative bucket counts the mirror observes on its hot path.  No I/O.

A plain counter array (no lock, no registry): the publisher observes every
frame, and :mod:`orderbook.serve.metrics` turns the counts into a
``prometheus_client`` histogram family when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from ..errors import UsageError

__all__ = ["LATENCY_BUCKETS", "Histogram"]

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
"""Default histogram bucket bounds in seconds (0.5 ms .. 30 s)."""


def _bound(value: float) -> str:
    """A bucket bound as Prometheus spells it (``0.5``, ``1.0``, ``+Inf``)."""
    return "+Inf" if math.isinf(value) else repr(value)


class Histogram:
    """A cumulative histogram: bucket counts, sum and count of observations.

    ``buckets`` are the upper bounds (sorted, finite; ``+Inf`` is implied).
    :meth:`observe` costs O(log buckets); memory is O(buckets) forever.
    """

    __slots__ = ("bounds", "_counts", "sum", "count")

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or not all(map(math.isfinite, bounds)):
            raise UsageError(f"buckets must be finite, strictly increasing and non-empty: {buckets!r}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation (negative values land in the first bucket).  O(log buckets)."""
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, observations <= le)]`` for every bound and ``"+Inf"``.  O(buckets)."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(_bound, self.bounds), "+Inf"), self._counts):
            running += count
            out.append((bound, running))
        return out
