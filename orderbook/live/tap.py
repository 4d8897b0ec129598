"""``Tap``: what a recorder sees of a replicator -- every engine input, in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..sync.actions import FetchSnapshot

__all__ = ["Tap"]


class Tap(Protocol):
    """An observer of every input the replicator gives its engine, in order,
    with the same times (e.g. :class:`orderbook.record.recorder.Recorder`):
    what it records replays through the same engine to the same books,
    statuses and counters.  Its methods run on the receive path and must
    return quickly; an exception propagates to the caller."""

    def connected(self, now: int) -> None:
        """A WebSocket connection opened."""

    def subscribed(self, streams: Sequence[str], now: int) -> None:
        """``streams`` were subscribed on it."""

    def frames(self, frames: Sequence[str | bytes], now: int) -> None:
        """One socket read's messages, exactly as received."""

    def snapshot(self, fetch: FetchSnapshot, body: bytes, now: int) -> None:
        """The 200 answer to ``fetch``."""

    def snapshot_failed(self, fetch: FetchSnapshot, error: str, retry_after: float | None,
                        now: int) -> None:
        """``fetch`` failed (after the REST retries)."""

    def disconnected(self, reason: str, now: int) -> None:
        """The connection dropped: every book is void from here on."""

    def tick(self, now: int) -> None:
        """The engine's timer fired."""

    def failed(self, detail: str, now: int) -> None:
        """The replicator failed for good."""
