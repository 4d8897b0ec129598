"""What a *sink* is to the replicator: something run beside it that publishes its books.

The replicator only starts and stops sinks (``Replicator(..., sinks=[...])``:
:meth:`Sink.run` becomes one of its tasks in ``start()`` and is cancelled by
``close()``); the implementations (Redis Streams, NATS) live in
:mod:`orderbook.sinks`.  The mirror's ``/metrics`` reads :meth:`Sink.stats`.
This module holds only the interface, so that the replicator, the mirror and
the sinks can all name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .replicator import Replicator

__all__ = ["Sink", "SinkStats"]


@dataclass(frozen=True, slots=True)
class SinkStats:
    """One sink's figures (see :meth:`Sink.stats`); every count only grows.

    ``name`` identifies the sink (its URL without credentials or options);
    ``connected`` is True while its broker connection is up; ``published``
    counts messages the broker accepted, ``snapshots`` the snapshot messages
    among them; ``dropped`` counts book updates that were not published
    because the queue was full or the broker unreachable (each is covered by
    a fresh snapshot message once there is room again); ``reconnects``
    counts connections opened after a failure, ``failures`` failed connection
    attempts and writes; ``queued`` is the number of messages waiting now;
    ``snapshot_requests`` counts snapshot requests answered (NATS
    request/reply); ``internal_errors`` counts bugs caught and logged.
    """

    name: str
    connected: bool
    published: int
    snapshots: int
    dropped: int
    reconnects: int
    failures: int
    queued: int
    snapshot_requests: int = 0
    internal_errors: int = 0


class Sink(Protocol):
    """A publisher of a replicator's books, run by the replicator as a task."""

    @property
    def name(self) -> str:
        """A short identifier for logs and metrics (no credentials)."""
        ...

    async def run(self, replicator: Replicator) -> None:
        """Publish ``replicator``'s books until cancelled or until the replicator
        closes.  Must never block or slow the replicator (bounded work per update)."""
        ...

    def stats(self) -> SinkStats:
        """The sink's counters now.  O(1)."""
        ...
