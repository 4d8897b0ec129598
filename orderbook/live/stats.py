"""What :meth:`Replicator.stats` reports: plain dataclasses, built from the
engine's state, the connection and the REST client.  O(symbols + samples)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from ..sync.engine import Engine
from ..sync.samples import Percentiles, Samples
from ..sync.status import Reason, Status
from ..sync.track import Track
from .consumers import ConsumerStats, DeliveryLatency

__all__ = [
    "AuditStats",
    "ConnectionStats",
    "LatencyStats",
    "NotSynced",
    "ReplicatorStats",
    "SymbolStats",
]


class NotSynced(StrEnum):
    """Why a symbol is not synced, as the operator sees it (``SymbolStats.not_synced``)."""

    CONNECTING = "connecting"
    """No connection to the venue's WebSocket has opened yet."""
    DISCONNECTED = "disconnected"
    """The connection was lost; it is being reopened with backoff."""
    SNAPSHOT = "snapshot"
    """Connected and subscribed: waiting for a snapshot that bridges the stream
    (the first one, or after a gap, a bad frame, a stale snapshot, ...)."""
    REFUSED = "refused"
    """The venue refused the subscription (until the next connection)."""
    ERROR = "error"
    """Gave up for now (status ``error``), or the replicator failed."""


@dataclass(slots=True)
class SymbolStats:
    """Per-symbol figures.

    ``status`` is a :class:`~orderbook.sync.status.Status`; while not synced
    ``cause`` (a :class:`~orderbook.sync.status.Reason`) and ``not_synced``
    (a :class:`NotSynced`) say why, and ``reason`` in words for people (never
    parse it).  ``last_frame_age`` is seconds since the last depth frame
    (``None`` before any); ``stale`` is True while a synced symbol on a live
    connection has had no frame for ``stale_after`` seconds.
    """

    status: Status
    last_update_id: int | None
    frames: int
    frames_applied: int
    frames_dropped: int
    gaps: int
    resyncs: int
    bad_frames: int
    crossed: int
    stale_snapshots: int
    bad_snapshots: int
    snapshots_applied: int
    snapshot_requests: int
    last_frame_age: float | None
    stale: bool
    staleness_alerts: int
    ticker_mismatches: int
    audit_divergences: int
    apply_errors: int = 0
    history_restarts: int = 0
    not_synced: NotSynced | None = None
    cause: Reason | None = None
    reason: str | None = None


@dataclass(slots=True)
class ConnectionStats:
    """The connection and REST side: reconnects, requests, 429s and the budget."""

    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    frames: int = 0
    unattributed_bad_frames: int = 0
    stream_errors: int = 0
    snapshot_requests: int = 0
    rest_requests: int = 0
    responses_429: int = 0
    rest_retries: int = 0
    rest_failures: int = 0
    late_snapshots: int = 0
    markets_refreshes: int = 0
    budget_per_minute: float = 0.0
    internal_errors: int = 0
    last_error: str | None = None
    """Why the last WebSocket connection attempt failed or the last connection
    ended (with the URL in the log), ``None`` before any failure."""


@dataclass(slots=True)
class AuditStats:
    """Periodic audits: run, passed, divergent (then repaired), skipped (could not align)."""

    started: int = 0
    passed: int = 0
    divergences: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency percentiles over recent samples.

    ``engine_to_receive_ms``: frame ``T`` -> read from the socket;
    ``engine_to_notify_ms``: ``T`` -> taken by a consumer;
    ``send_to_notify_ms``: ``E`` (venue send time) -> taken by a consumer;
    ``gap_to_synced_s``: a detected gap (or other invalidation) -> synced again;
    ``reconnect_to_synced_s``: connection lost -> synced again.
    Venue clocks are compared with the local wall clock, so the first three
    include any clock offset between the venue and this host.
    """

    engine_to_receive_ms: Percentiles
    engine_to_notify_ms: Percentiles
    send_to_notify_ms: Percentiles
    gap_to_synced_s: Percentiles
    reconnect_to_synced_s: Percentiles


@dataclass(slots=True)
class ReplicatorStats:
    """Everything :meth:`Replicator.stats` reports; :meth:`to_dict` for JSON."""

    symbols: dict[str, SymbolStats]
    connection: ConnectionStats
    consumers: ConsumerStats
    audits: AuditStats
    latency: LatencyStats

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict of the same figures."""
        return asdict(self)


def symbol_stats(track: Track, now: int, not_synced: tuple[NotSynced, str] | None) -> SymbolStats:
    """One symbol's figures at ``now`` (µs); ``not_synced`` as the driver sees it."""
    c = track.sync.counters
    stats = SymbolStats(
        status=track.status(), last_update_id=track.sync.book.last_update_id,
        frames=track.frames, frames_applied=c.frames_applied, frames_dropped=c.frames_dropped,
        gaps=c.gaps, resyncs=c.resyncs, bad_frames=c.bad_frames, crossed=c.crossed,
        stale_snapshots=c.stale_snapshots, bad_snapshots=c.bad_snapshots,
        snapshots_applied=c.snapshots_applied, snapshot_requests=track.snapshot_requests,
        last_frame_age=None if track.last_frame_us is None else (now - track.last_frame_us) / 1e6,
        stale=track.stale, staleness_alerts=track.staleness_alerts,
        ticker_mismatches=track.ticker_mismatches, audit_divergences=track.audit_divergences,
        apply_errors=c.apply_errors, history_restarts=c.history_restarts,
    )
    if not_synced is not None:
        stats.not_synced, stats.reason = not_synced
        stats.cause = track.why()[0]
    return stats


def audit_stats(engine: Engine | None) -> AuditStats:
    """The engine's audit counters (zeros before there is an engine)."""
    if engine is None:
        return AuditStats()
    c = engine.counters
    return AuditStats(c.audits_started, c.audits_passed, c.audit_divergences, c.audits_skipped)


def latency_stats(engine: Engine | None, delivery: DeliveryLatency) -> LatencyStats:
    """The latency percentiles of the engine and of delivery."""
    none = Samples()
    receive = engine.latency.engine_to_receive if engine is not None else none
    gap = engine.latency.gap_to_synced if engine is not None else none
    reconnect = engine.latency.reconnect_to_synced if engine is not None else none
    return LatencyStats(
        receive.summary(1e-3), delivery.engine_to_notify.summary(1e-3),
        delivery.send_to_notify.summary(1e-3), gap.summary(), reconnect.summary(),
    )
