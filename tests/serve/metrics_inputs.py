"""Fixed inputs of the ``/metrics`` exposition: every family has samples.

``metrics_golden.json`` beside this file is what the hand-written writer this
package used before ``prometheus_client`` produced from exactly these inputs
(family, type, sample name, labels, value); ``test_metrics.py`` checks that
the exposition still says the same.
"""

from __future__ import annotations

from orderbook.core.book import OrderBook
from orderbook import (
    AuditStats,
    ConnectionStats,
    ConsumerStats,
    LatencyStats,
    Percentiles,
    ReplicatorStats,
    SymbolStats,
)
from orderbook.serve.publisher import Publisher
from orderbook.serve.stats import MirrorStats

SYMBOLS = ["SOL_USDC", "ETH_USDC", "BTC_USDC_PERP"]
SUBSCRIPTIONS = {"depth": 3, "bookTicker": 1}
CLIENTS = 2


def symbol_stats(status: str, frames: int) -> SymbolStats:
    return SymbolStats(
        status=status, last_update_id=1234567890123 if status == "synced" else None,
        frames=frames, frames_applied=frames - 1 if frames else 0, frames_dropped=1, gaps=2,
        resyncs=3, bad_frames=0, crossed=0, stale_snapshots=1, bad_snapshots=0,
        snapshots_applied=4, snapshot_requests=5, last_frame_age=0.25 if frames else None,
        stale=False, staleness_alerts=0, ticker_mismatches=0, audit_divergences=0,
        apply_errors=1 if status != "synced" else 0,
    )


def replicator_stats() -> ReplicatorStats:
    latency = Percentiles(2.0, 9.0, 100)
    return ReplicatorStats(
        symbols={"SOL_USDC": symbol_stats("synced", 10),
                 "ETH_USDC": symbol_stats("error(snapshots failing: HTTP 503 \"x\")", 0),
                 "BTC_USDC_PERP": symbol_stats("resyncing", 4)},
        connection=ConnectionStats(connected=True, connects=3, reconnects=2, frames=42,
                                   snapshot_requests=7, rest_requests=9, responses_429=1,
                                   budget_per_minute=1000.0),
        consumers=ConsumerStats(consumers=1, delivered=8, dropped=2),
        audits=AuditStats(started=2, passed=1, skipped=1),
        latency=LatencyStats(latency, latency, Percentiles(1.0, 1.5, 3), latency,
                             Percentiles(0.5, 0.5, 1)),
    )


def mirror_stats() -> MirrorStats:
    stats = MirrorStats(connections=5, messages_sent=100, slow_consumers=1, messages_dropped=7,
                        control_floods=1, keepalive_timeouts=1, subscribe_errors=2,
                        error_replies_dropped=1, bad_http=3, refused_connections=1,
                        stalled_aborts=1, internal_errors=0)
    stats.http["depth", 200] += 4
    stats.http["depth", 503] += 1
    stats.http["health", 200] += 2
    for value in (0.0004, 0.003, 0.2, 40.0):
        stats.engine_to_publish.observe(value)
        stats.receive_to_publish.observe(value / 2)
    stats.resync.observe(1.5)
    return stats


def publisher(stats: MirrorStats) -> Publisher:
    """SOL_USDC published at update id 100; the others never synced."""
    pub = Publisher(SYMBOLS, stats.times)
    book = OrderBook("SOL_USDC")
    book.apply_snapshot({"lastUpdateId": "100", "timestamp": 1, "bids": [["9.5", "1"]],
                         "asks": [["10.5", "2"]]})
    pub.start("SOL_USDC", book)
    return pub


def ready(symbol: str) -> bool:
    return symbol == "SOL_USDC"
