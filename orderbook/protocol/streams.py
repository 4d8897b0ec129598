"""Stream names of the venue's WebSocket API, built and split in one place.

Backpack names market-data streams ``<kind>.<symbol>``, and symbols can
contain dots (tokenized equities such as ``SPCX.US_USDC``), so a name is
split by its known *prefix*, never on its last dot::

    depth.<symbol>            realtime depth
    depth.200ms.<symbol>      depth aggregated every 200 ms (also 600, 1000)
    bookTicker.<symbol>       best bid and ask

The aggregated prefixes are tried first: ``depth.200ms.X`` is the 200 ms
stream of ``X``, not the realtime stream of a symbol ``200ms.X``.  Every part
of the package (parser, replicator, mirror, recorder, simulated venue) uses
:func:`parse_stream` and the builders below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEPTH_LIMITS",
    "DEPTH_STREAMS",
    "INTERVALS_MS",
    "StreamKind",
    "StreamName",
    "depth_stream",
    "now_us",
    "parse_stream",
    "ticker_stream",
]

INTERVALS_MS = (200, 600, 1000)
"""Aggregation windows of the ``depth.<N>ms.<symbol>`` streams, in milliseconds."""

DEPTH_STREAMS = ("depth", "depth.200ms", "depth.600ms", "depth.1000ms")
"""Depth stream kinds: realtime, and aggregated every 200/600/1000 ms."""

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
"""The ``limit`` values ``GET /api/v1/depth`` accepts (levels per side)."""


class StreamKind(StrEnum):
    """The market-data streams this package reads or serves."""

    DEPTH = "depth"
    BOOK_TICKER = "bookTicker"


@dataclass(frozen=True, slots=True)
class StreamName:
    """A parsed stream name: its kind, symbol and aggregation window
    (``interval_ms`` 0 for realtime depth and for bookTicker)."""

    kind: StreamKind
    symbol: str
    interval_ms: int = 0

    @property
    def prefix(self) -> str:
        """The name without its symbol: ``depth``, ``depth.200ms`` or ``bookTicker``."""
        if self.kind is StreamKind.BOOK_TICKER:
            return "bookTicker"
        return "depth" if not self.interval_ms else f"depth.{self.interval_ms}ms"

    def __str__(self) -> str:
        return f"{self.prefix}.{self.symbol}"


# Longest first: "depth.200ms." must win over "depth.".
_PREFIXES: tuple[tuple[str, StreamKind, int], ...] = (
    *((f"depth.{ms}ms.", StreamKind.DEPTH, ms) for ms in INTERVALS_MS),
    ("depth.", StreamKind.DEPTH, 0),
    ("bookTicker.", StreamKind.BOOK_TICKER, 0),
)


def parse_stream(name: object) -> StreamName | None:
    """Split a stream name into kind, window and symbol; ``None`` when it is
    not one of the streams above or names no symbol.  O(len(name))."""
    if type(name) is not str:
        return None
    for prefix, kind, interval in _PREFIXES:
        if name.startswith(prefix):
            symbol = name[len(prefix):]
            return StreamName(kind, symbol, interval) if symbol else None
    return None


def depth_stream(symbol: str, kind: str = "depth") -> str:
    """The depth stream name of ``symbol`` for ``kind``, one of :data:`DEPTH_STREAMS`."""
    return f"{kind}.{symbol}"


def ticker_stream(symbol: str) -> str:
    """The bookTicker stream name of ``symbol``."""
    return f"bookTicker.{symbol}"


def now_us() -> int:
    """The local wall clock in integer microseconds since the epoch (the
    venue's unit).  Only the asyncio layers and servers call it: the sans-I/O
    layers are given times, never read a clock."""
    return time.time_ns() // 1000
