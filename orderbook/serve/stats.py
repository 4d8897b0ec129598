"""The mirror's counters and their Prometheus families.  No I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client.metrics_core import Metric

from .histogram import Histogram
from .metrics import family, histogram_family, replicator_families
from ..live.stats import ReplicatorStats
from .publisher import Publisher, PublishTimes

__all__ = ["CloseReason", "Endpoint", "MirrorStats", "mirror_families"]


class Endpoint(StrEnum):
    """The ``endpoint`` label of ``orderbook_mirror_http_requests_total``."""

    DEPTH = "depth"
    MARKETS = "markets"
    FORWARD = "forward"
    HEALTH = "health"
    METRICS = "metrics"
    WEBSOCKET = "websocket"
    UI = "ui"
    OTHER = "other"


class CloseReason(StrEnum):
    """Why the mirror closed a WebSocket client (the close reason it sends)."""

    SLOW_CONSUMER = "slow consumer"
    """1008: its send buffer (queued frames, pongs, anything) was full."""
    CONTROL_FLOOD = "too many control frames"
    """1008: pings/pongs beyond the per-connection rate."""
    SHUTDOWN = "server shutting down"
    """1001: the mirror is stopping."""
    KEEPALIVE_TIMEOUT = "no answer to a ping"
    """1011: nothing arrived from the client for two ping intervals."""


@dataclass(slots=True)
class MirrorStats:
    """The mirror's own counters (the replicator's are in its ``stats()``).

    ``connections`` WebSocket clients accepted; ``messages_sent`` messages
    written to them; ``slow_consumers`` clients closed because their send
    buffer was full and ``messages_dropped`` the messages discarded with
    them; ``control_floods`` clients closed for too many control frames;
    ``keepalive_timeouts`` clients dropped for not answering a ping;
    ``subscribe_errors`` refused requests and ``error_replies_dropped`` the
    error replies not sent (beyond the per-client reply rate, or no room);
    ``http`` requests answered by ``(endpoint, status)``;
    ``bad_http`` requests aiohttp could not parse; ``refused_connections``
    TCP connections refused beyond ``max_connections``; ``stalled_aborts``
    connections aborted because their socket took nothing for
    ``stall_timeout``; ``internal_errors`` bugs caught and logged.
    Histograms (seconds) in :attr:`times` (see :class:`PublishTimes`).
    """

    connections: int = 0
    messages_sent: int = 0
    slow_consumers: int = 0
    messages_dropped: int = 0
    control_floods: int = 0
    keepalive_timeouts: int = 0
    subscribe_errors: int = 0
    error_replies_dropped: int = 0
    bad_http: int = 0
    refused_connections: int = 0
    stalled_aborts: int = 0
    internal_errors: int = 0
    http: Counter[tuple[str, int]] = field(default_factory=Counter)
    times: PublishTimes = field(default_factory=PublishTimes)

    @property
    def engine_to_publish(self) -> Histogram:
        """Frame ``T`` -> frame emitted to clients."""
        return self.times.engine_to_publish

    @property
    def receive_to_publish(self) -> Histogram:
        """Frame read upstream -> frame emitted to clients."""
        return self.times.receive_to_publish

    @property
    def resync(self) -> Histogram:
        """Replica invalidated -> published book current again."""
        return self.times.resync


_COUNTERS = (
    ("connections", "orderbook_mirror_connections_total", "WebSocket clients accepted."),
    ("messages_sent", "orderbook_mirror_messages_sent_total", "WebSocket messages sent to clients."),
    ("slow_consumers", "orderbook_mirror_slow_consumers_total",
     "Clients closed (1008) because their send buffer was full."),
    ("messages_dropped", "orderbook_mirror_messages_dropped_total",
     "Messages discarded with the slow consumers that could not take them."),
    ("control_floods", "orderbook_mirror_control_floods_total",
     "Clients closed (1008) for sending control frames beyond the rate."),
    ("keepalive_timeouts", "orderbook_mirror_keepalive_timeouts_total",
     "Clients dropped (1011) for answering nothing to a ping."),
    ("subscribe_errors", "orderbook_mirror_subscribe_errors_total", "Refused WebSocket requests."),
    ("error_replies_dropped", "orderbook_mirror_error_replies_dropped_total",
     "Error replies not sent (beyond the per-client rate or no room)."),
    ("bad_http", "orderbook_mirror_bad_http_total", "HTTP requests that could not be parsed."),
    ("refused_connections", "orderbook_mirror_refused_connections_total",
     "TCP connections refused beyond the connection limit."),
    ("stalled_aborts", "orderbook_mirror_stalled_aborts_total",
     "Connections aborted because their socket accepted nothing for too long."),
    ("internal_errors", "orderbook_mirror_internal_errors_total",
     "Internal errors (bugs) caught and logged."),
)

_PUBLISHED = (
    (0, "orderbook_mirror_frames_published_total",
     "Depth frames published (each sent once to every subscriber)."),
    (1, "orderbook_mirror_resync_frames_total",
     "Synthetic frames bridging a replica resync (whole-book differences)."),
    (2, "orderbook_mirror_stream_restarts_total",
     "Times the upstream update ids went backwards and depth clients were closed."),
)


def mirror_families(replicator: ReplicatorStats, stats: MirrorStats, publisher: Publisher,
                    ready: Callable[[str], bool], clients: int,
                    subscriptions: dict[str, int]) -> Iterator[Metric]:
    """The replicator's families (:func:`~orderbook.serve.metrics.replicator_families`),
    then the mirror's.  ``subscriptions`` counts subscriptions by stream kind
    (``depth``, ``bookTicker``); ``ready`` tells whether a symbol is served.
    O(symbols + samples)."""
    yield from replicator_families(replicator)
    symbols = publisher.symbols
    published = {sym: publisher.counters(sym) for sym in symbols}
    yield family("gauge", "orderbook_mirror_clients", "WebSocket clients connected to the mirror.",
                 samples=[((), clients)])
    yield family("counter", *_COUNTERS[0][1:], samples=[((), stats.connections)])
    yield family("gauge", "orderbook_mirror_subscriptions", "Subscriptions of connected clients.",
                 ("stream",), [((kind,), n) for kind, n in subscriptions.items()])
    yield family("gauge", "orderbook_mirror_ready",
                 "1 while the symbol is synced and its published book current.",
                 ("symbol",), [((sym,), int(ready(sym))) for sym in symbols])
    yield family("gauge", "orderbook_mirror_published_update_id",
                 "Update id of the last depth frame published.",
                 ("symbol",), [((sym,), _last_id(publisher, sym)) for sym in symbols])
    for index, name, help_text in _PUBLISHED:
        yield family("counter", name, help_text, ("symbol",),
                     [((sym,), counts[index]) for sym, counts in published.items()])
    for field_name, name, help_text in _COUNTERS[1:]:
        yield family("counter", name, help_text, samples=[((), getattr(stats, field_name))])
    yield family("counter", "orderbook_mirror_http_requests_total",
                 "HTTP requests answered, by endpoint and status.", ("endpoint", "code"),
                 [((e, str(c)), n) for (e, c), n in sorted(stats.http.items())])
    yield histogram_family("orderbook_mirror_engine_to_publish_seconds",
                           "Frame engine time T to frame queued to clients (includes clock offset).",
                           stats.engine_to_publish)
    yield histogram_family("orderbook_mirror_receive_to_publish_seconds",
                           "Frame read from the venue to frame queued to clients.",
                           stats.receive_to_publish)
    yield histogram_family("orderbook_mirror_resync_seconds",
                           "Replica invalidated to published book current again.", stats.resync)


def _last_id(publisher: Publisher, symbol: str) -> int | None:
    book = publisher.book(symbol)
    return book.last_update_id if book is not None else None
