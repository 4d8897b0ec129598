"""What the :class:`~orderbook.sync.engine.Engine` takes and returns: its
options, the actions it asks of its driver, and its counters.  Plain data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Union

from ..errors import UsageError
from ..protocol.streams import DEPTH_LIMITS, DEPTH_STREAMS
from ..protocol.wire import DepthEvent
from .policy import SnapshotRetryPolicy
from .status import Reason, Status
from .symbol import BookInvalidated

__all__ = [
    "BookUpdated",
    "EngineAction",
    "EngineCounters",
    "EngineOptions",
    "FetchSnapshot",
    "Purpose",
    "StatusChanged",
    "Subscribe",
]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What the engine replicates and how it checks it.

    * ``depth_stream``: one of :data:`~orderbook.protocol.streams.DEPTH_STREAMS`;
    * ``snapshot_limit``: levels per side of each snapshot (a venue limit);
    * ``book_ticker``: also subscribe ``bookTicker.<s>`` and compare the touch
      whenever a ticker carries the book's update id (a mismatch resyncs);
    * ``audit_every``: seconds between audits (``None``: off).  An audit
      fetches one synced symbol's snapshot (round robin), brings a shadow book
      to the replica's update id with the same frames and compares; a
      divergence resyncs.  ``audit_timeout``: seconds the shadow may take to
      reach the replica before the audit is skipped;
    * ``stale_after``: seconds without a frame before a synced symbol on a live
      connection is flagged stale (health only);
    * ``prune_every``: seconds between prunes of levels beyond each
      snapshot's window (``None``: never);
    * ``max_buffer``: frames held per symbol while waiting for a snapshot;
    * ``snapshot_retry``: when to fetch again after stale or failed snapshots;
    * ``seed``: seeds the jitter of retries (``None``: random), recorded so a
      replay takes the same decisions.
    """

    depth_stream: str = "depth"
    snapshot_limit: int = 1000
    book_ticker: bool = False
    audit_every: float | None = None
    audit_timeout: float = 5.0
    stale_after: float = 30.0
    prune_every: float | None = None
    max_buffer: int = 10_000
    snapshot_retry: SnapshotRetryPolicy = SnapshotRetryPolicy()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.depth_stream not in DEPTH_STREAMS:
            raise UsageError(f"depth_stream must be one of {DEPTH_STREAMS}, got {self.depth_stream!r}")
        if self.snapshot_limit not in DEPTH_LIMITS:
            raise UsageError(f"snapshot_limit must be one of {DEPTH_LIMITS}, got {self.snapshot_limit}")
        for name in ("audit_every", "prune_every"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"{name} must be > 0 seconds or None, got {value}")
        if not self.stale_after > 0 or not self.audit_timeout > 0:
            raise UsageError("stale_after and audit_timeout must be > 0 seconds")
        if self.max_buffer < 1:
            raise UsageError(f"max_buffer must be >= 1, got {self.max_buffer}")


class Purpose(StrEnum):
    """Why a snapshot is fetched."""

    SYNC = "sync"
    """To (re)build the book."""
    AUDIT = "audit"
    """To check a synced book against the venue."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe ``streams`` on the connection just opened, then report them
    with :meth:`Engine.subscribed`."""

    streams: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    """Fetch ``GET /api/v1/depth?symbol=&limit=`` now (through the REST
    budget) and answer with :meth:`Engine.snapshot` or
    :meth:`Engine.snapshot_failed`, quoting ``ticket``."""

    symbol: str
    limit: int
    ticket: int
    purpose: Purpose


@dataclass(slots=True)
class BookUpdated:
    """``symbol``'s book changed during one input.  ``frames``: the depth
    frames applied, in order (``None`` when a snapshot rebuilt the book, so
    readers re-read it); ``received_us``: the input's time."""

    symbol: str
    frames: list[DepthEvent] | None
    received_us: int


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """``symbol``'s :class:`~orderbook.sync.status.Status` changed; while not
    synced ``reason`` says why and ``detail`` in words (never parsed)."""

    symbol: str
    status: Status
    reason: Reason | None
    detail: str


EngineAction = Union[Subscribe, FetchSnapshot, BookUpdated, BookInvalidated, StatusChanged]
"""What an :class:`Engine` input returns for the driver to carry out, in order."""


@dataclass(slots=True)
class EngineCounters:
    """Counters of the whole engine, only ever increased.  ``prunes`` counts
    prune rounds (:attr:`EngineOptions.prune_every`), ``levels_pruned`` the
    levels they removed."""

    frames: int = 0
    unattributed_bad_frames: int = 0
    stream_errors: int = 0
    late_snapshots: int = 0
    internal_errors: int = 0
    connects: int = 0
    disconnects: int = 0
    audits_started: int = 0
    audits_passed: int = 0
    audit_divergences: int = 0
    audits_skipped: int = 0
    prunes: int = 0
    levels_pruned: int = 0
