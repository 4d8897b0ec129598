"""The mirror's counters and their Prometheus families.  No I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from .metrics import Histogram, MetricsWriter, write_replicator_stats
from ..live.stats import ReplicatorStats
from .publisher import Publisher, PublishTimes

__all__ = ["CloseReason", "Endpoint", "MirrorStats", "write_mirror_metrics"]


class Endpoint(StrEnum):
    """The ``endpoint`` label of ``orderbook_mirror_http_requests_total``."""

    DEPTH = "depth"
    MARKETS = "markets"
    FORWARD = "forward"
    HEALTH = "health"
    METRICS = "metrics"
    WEBSOCKET = "websocket"
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


def write_mirror_metrics(writer: MetricsWriter, replicator: ReplicatorStats, stats: MirrorStats,
                         publisher: Publisher, ready: Callable[[str], bool], clients: int,
                         subscriptions: dict[str, int]) -> None:
    """Add the replicator's families and the mirror's to ``writer``.  O(symbols + samples).

    ``subscriptions`` counts subscriptions by stream kind (``depth``,
    ``bookTicker``); ``ready`` tells whether a symbol is served.
    """
    write_replicator_stats(writer, replicator)
    s, symbols = stats, publisher.symbols
    counters = {sym: publisher.counters(sym) for sym in symbols}
    writer.gauge("orderbook_mirror_clients", "WebSocket clients connected to the mirror.", clients)
    writer.counter("orderbook_mirror_connections_total", "WebSocket clients accepted.", s.connections)
    writer.family("orderbook_mirror_subscriptions", "gauge", "Subscriptions of connected clients.",
                  [({"stream": kind}, n) for kind, n in subscriptions.items()])
    writer.family("orderbook_mirror_ready", "gauge",
                  "1 while the symbol is synced and its published book current.",
                  [({"symbol": sym}, int(ready(sym))) for sym in symbols])
    writer.family("orderbook_mirror_published_update_id", "gauge",
                  "Update id of the last depth frame published.",
                  [({"symbol": sym}, _last_id(publisher, sym)) for sym in symbols])
    writer.family("orderbook_mirror_frames_published_total", "counter",
                  "Depth frames published (each sent once to every subscriber).",
                  [({"symbol": sym}, c[0]) for sym, c in counters.items()])
    writer.family("orderbook_mirror_resync_frames_total", "counter",
                  "Synthetic frames bridging a replica resync (whole-book differences).",
                  [({"symbol": sym}, c[1]) for sym, c in counters.items()])
    writer.family("orderbook_mirror_stream_restarts_total", "counter",
                  "Times the upstream update ids went backwards and depth clients were closed.",
                  [({"symbol": sym}, c[2]) for sym, c in counters.items()])
    writer.counter("orderbook_mirror_messages_sent_total", "WebSocket messages sent to clients.",
                   s.messages_sent)
    writer.counter("orderbook_mirror_slow_consumers_total",
                   "Clients closed (1008) because their send buffer was full.", s.slow_consumers)
    writer.counter("orderbook_mirror_messages_dropped_total",
                   "Messages discarded with the slow consumers that could not take them.",
                   s.messages_dropped)
    writer.counter("orderbook_mirror_control_floods_total",
                   "Clients closed (1008) for sending control frames beyond the rate.",
                   s.control_floods)
    writer.counter("orderbook_mirror_keepalive_timeouts_total",
                   "Clients dropped (1011) for answering nothing to a ping.", s.keepalive_timeouts)
    writer.counter("orderbook_mirror_subscribe_errors_total", "Refused WebSocket requests.",
                   s.subscribe_errors)
    writer.counter("orderbook_mirror_error_replies_dropped_total",
                   "Error replies not sent (beyond the per-client rate or no room).",
                   s.error_replies_dropped)
    writer.counter("orderbook_mirror_bad_http_total", "HTTP requests that could not be parsed.",
                   s.bad_http)
    writer.counter("orderbook_mirror_refused_connections_total",
                   "TCP connections refused beyond the connection limit.", s.refused_connections)
    writer.counter("orderbook_mirror_stalled_aborts_total",
                   "Connections aborted because their socket accepted nothing for too long.",
                   s.stalled_aborts)
    writer.counter("orderbook_mirror_internal_errors_total",
                   "Internal errors (bugs) caught and logged.", s.internal_errors)
    writer.family("orderbook_mirror_http_requests_total", "counter",
                  "HTTP requests answered, by endpoint and status.",
                  [({"endpoint": e, "code": str(c)}, n) for (e, c), n in sorted(s.http.items())])
    writer.histogram("orderbook_mirror_engine_to_publish_seconds",
                     "Frame engine time T to frame queued to clients (includes clock offset).",
                     [({}, s.engine_to_publish)])
    writer.histogram("orderbook_mirror_receive_to_publish_seconds",
                     "Frame read from the venue to frame queued to clients.",
                     [({}, s.receive_to_publish)])
    writer.histogram("orderbook_mirror_resync_seconds",
                     "Replica invalidated to published book current again.", [({}, s.resync)])


def _last_id(publisher: Publisher, symbol: str) -> int | None:
    book = publisher.book(symbol)
    return book.last_update_id if book is not None else None
