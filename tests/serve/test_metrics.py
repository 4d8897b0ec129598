"""The hand-written Prometheus exposition, checked with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orderbook.errors import UsageError
from orderbook.serve.metrics import Histogram, MetricsWriter, write_replicator_stats
from orderbook import (
    AuditStats,
    ConnectionStats,
    ConsumerStats,
    LatencyStats,
    Percentiles,
    ReplicatorStats,
    SymbolStats,
)


def parse(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name -> its samples, as prometheus_client reads them."""
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def symbol_stats(status: str, frames: int) -> SymbolStats:
    return SymbolStats(
        status=status, last_update_id=1234567890123 if status == "synced" else None,
        frames=frames, frames_applied=frames - 1, frames_dropped=1, gaps=2, resyncs=3,
        bad_frames=0, crossed=0, stale_snapshots=1, bad_snapshots=0, snapshots_applied=4,
        snapshot_requests=5, last_frame_age=0.25 if frames else None, stale=False,
        staleness_alerts=0, ticker_mismatches=0, audit_divergences=0,
        apply_errors=1 if status != "synced" else 0,
    )


def test_labels_and_help_are_escaped_and_parse_back() -> None:
    writer = MetricsWriter()
    tricky = 'a"b\\c\nd'
    writer.family("demo_total", "counter", "Help with \\ and\nnewline.", [({"symbol": tricky}, 3)])
    writer.gauge("demo_gauge", "A gauge.", 1.5)
    writer.gauge("demo_absent", "Omitted when None.", None)
    text = writer.text()
    assert 'demo_total{symbol="a\\"b\\\\c\\nd"} 3' in text
    assert "# HELP demo_total Help with \\\\ and\\nnewline." in text
    families = parse(text)
    assert families["demo"] == [("demo_total", {"symbol": tricky}, 3.0)]
    assert families["demo_gauge"] == [("demo_gauge", {}, 1.5)]
    assert families["demo_absent"] == []


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram([0.1, 1.0, 10.0])
    for value in (0.05, 0.1, 0.5, 2.0, 50.0, -1.0):
        hist.observe(value)
    assert hist.cumulative() == [("0.1", 3), ("1.0", 4), ("10.0", 5), ("+Inf", 6)]
    writer = MetricsWriter()
    writer.histogram("lat_seconds", "Latency.", [({"symbol": "SOL_USDC"}, hist)])
    samples = parse(writer.text())["lat_seconds"]
    buckets = [(labels["le"], value) for name, labels, value in samples if name.endswith("_bucket")]
    assert buckets == [("0.1", 3), ("1.0", 4), ("10.0", 5), ("+Inf", 6)]
    assert ("lat_seconds_count", {"symbol": "SOL_USDC"}, 6.0) in samples
    [total] = [v for name, _, v in samples if name == "lat_seconds_sum"]
    assert total == pytest.approx(51.65)


def test_writer_refuses_what_prometheus_would_not_accept() -> None:
    writer = MetricsWriter()
    with pytest.raises(UsageError, match="_total"):
        writer.counter("frames", "Counters end in _total.", 1)
    with pytest.raises(UsageError, match="metric name"):
        writer.gauge("bad-name", "Dash.", 1)
    with pytest.raises(UsageError, match="label name"):
        writer.family("ok_gauge", "gauge", "Bad label.", [({"bad-label": "x"}, 1)])
    writer.gauge("once", "First.", 1)
    with pytest.raises(UsageError, match="twice"):
        writer.gauge("once", "Second.", 2)
    with pytest.raises(UsageError):
        Histogram([1.0, 0.5])


def test_replicator_stats_become_families() -> None:
    latency = Percentiles(2.0, 9.0, 100)
    none = Percentiles(None, None, 0)
    stats = ReplicatorStats(
        symbols={"SOL_USDC": symbol_stats("synced", 10),
                 "ETH_USDC": symbol_stats("error(snapshots failing: HTTP 503 \"x\")", 0)},
        connection=ConnectionStats(connected=True, connects=3, reconnects=2, frames=42,
                                   snapshot_requests=7, rest_requests=9, responses_429=1,
                                   budget_per_minute=1000.0),
        consumers=ConsumerStats(consumers=1, delivered=8, dropped=2),
        audits=AuditStats(started=2, passed=1, skipped=1),
        latency=LatencyStats(latency, latency, none, none, Percentiles(0.5, 0.5, 1)),
    )
    writer = MetricsWriter()
    write_replicator_stats(writer, stats)
    families = parse(writer.text())
    assert ("orderbook_frames_total", {"symbol": "SOL_USDC"}, 10.0) in families["orderbook_frames"]
    assert ("orderbook_gaps_total", {"symbol": "ETH_USDC"}, 2.0) in families["orderbook_gaps"]
    assert ("orderbook_apply_errors_total", {"symbol": "ETH_USDC"}, 1.0) in families["orderbook_apply_errors"]
    assert ("orderbook_history_restarts_total", {"symbol": "SOL_USDC"}, 0.0) in \
        families["orderbook_history_restarts"]
    assert families["orderbook_rest_429"] == [("orderbook_rest_429_total", {}, 1.0)]
    assert families["orderbook_ws_reconnects"] == [("orderbook_ws_reconnects_total", {}, 2.0)]
    assert families["orderbook_consumers"] == [("orderbook_consumers", {}, 1.0)]
    assert ("orderbook_synced", {"symbol": "ETH_USDC"}, 0.0) in families["orderbook_synced"]
    assert ("orderbook_symbol_status", {"symbol": "ETH_USDC", "status": "error"}, 1.0) in \
        families["orderbook_symbol_status"]
    # a symbol without a frame yet has no age sample; absent percentiles are omitted
    assert [s[1] for s in families["orderbook_last_frame_age_seconds"]] == [{"symbol": "SOL_USDC"}]
    assert families["orderbook_engine_to_receive_seconds"] == [
        ("orderbook_engine_to_receive_seconds", {"quantile": "0.5"}, 0.002),
        ("orderbook_engine_to_receive_seconds", {"quantile": "0.99"}, pytest.approx(0.009)),
    ]
    assert families["orderbook_send_to_notify_seconds"] == []
    assert ("orderbook_audits_total", {"result": "skipped"}, 1.0) in families["orderbook_audits"]
    assert families["orderbook_last_update_id"] == [
        ("orderbook_last_update_id", {"symbol": "SOL_USDC"}, 1234567890123.0)]
