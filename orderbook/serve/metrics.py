"""The Prometheus exposition, through the official client (``prometheus_client``).

The replicator and the mirror keep plain counters (no lock, no registry on
the hot path); at each scrape a *custom collector* reads them and yields
metric families, and ``prometheus_client`` renders them (text format 0.0.4,
or OpenMetrics when the scraper asks for it)::

    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(ReplicatorCollector(replicator))
    body = generate_latest(registry)

Conventions: counters end in ``_total`` and only ever increase; per-symbol
figures carry a ``symbol`` label; times are in seconds.  The replicator keeps
latency *percentiles* over its recent samples (not buckets), so those are
exported as gauges with a ``quantile`` label; histograms with buckets come
from the code that observes the values itself (the mirror, see
:class:`~orderbook.serve.histogram.Histogram`).  A statistic that has no value
yet (no frame, no latency sample) is left out of its family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ..live.replicator import Replicator
from ..live.sink import SinkStats
from ..live.stats import ReplicatorStats
from ..sync.samples import Percentiles
from ..sync.status import Status
from .health import status_of
from .histogram import Histogram

__all__ = [
    "FamiliesCollector",
    "ReplicatorCollector",
    "exposition",
    "family",
    "histogram_family",
    "replicator_families",
    "sink_families",
]

Sample = tuple[Sequence[str], float | int | None]
"""One sample of a family: its label values (in the family's label order) and
its value (``None``: left out)."""


def family(kind: Literal["counter", "gauge"], name: str, help_text: str,
           labels: Sequence[str] = (), samples: Iterable[Sample] = ()) -> Metric:
    """A counter or gauge family named ``name`` (a counter's ends in ``_total``)
    with label names ``labels``; samples whose value is ``None`` are left out.
    O(samples)."""
    metric: Metric
    if kind == "counter":
        metric = CounterMetricFamily(name, help_text, labels=labels)
    else:
        metric = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        if value is not None:
            metric.add_metric(list(values), value)
    return metric


def histogram_family(name: str, help_text: str, histogram: Histogram) -> Metric:
    """An unlabelled histogram family from ``histogram``'s counts.  O(buckets)."""
    metric = HistogramMetricFamily(name, help_text, labels=())
    metric.add_metric([], histogram.cumulative(), histogram.sum)
    return metric


_SYMBOL_COUNTERS = (
    ("frames", "orderbook_frames_total", "Depth frames received."),
    ("frames_applied", "orderbook_frames_applied_total", "Depth frames applied to the book."),
    ("frames_dropped", "orderbook_frames_discarded_total",
     "Depth frames discarded as old or duplicate, or lost to the pre-snapshot buffer bound."),
    ("gaps", "orderbook_gaps_total", "Sequence gaps detected (U != previous u + 1)."),
    ("resyncs", "orderbook_resyncs_total",
     "Invalidations of a synced book (gap, bad frame, crossed book, reconnect, audit)."),
    ("bad_frames", "orderbook_bad_frames_total", "Malformed depth frames."),
    ("crossed", "orderbook_crossed_total", "Books found crossed after a frame."),
    ("stale_snapshots", "orderbook_stale_snapshots_total", "Snapshots too old to bridge the buffered frames."),
    ("bad_snapshots", "orderbook_bad_snapshots_total", "Malformed or crossed snapshots."),
    ("snapshots_applied", "orderbook_snapshots_applied_total", "Snapshots applied."),
    ("snapshot_requests", "orderbook_snapshot_requests_total", "Depth snapshot requests made."),
    ("staleness_alerts", "orderbook_staleness_alerts_total",
     "Times a synced symbol went without a frame for longer than the staleness limit."),
    ("ticker_mismatches", "orderbook_ticker_mismatches_total", "bookTicker cross-checks that disagreed."),
    ("audit_divergences", "orderbook_audit_divergences_total", "Audits that found the book divergent."),
    ("apply_errors", "orderbook_apply_errors_total",
     "Unexpected exceptions while applying a frame or snapshot (each cleared the book and resynced)."),
    ("history_restarts", "orderbook_history_restarts_total",
     "Times the venue's update ids went back for good and the book followed."),
)

_CONNECTION_COUNTERS = (
    ("connects", "orderbook_ws_connects_total", "WebSocket connections opened upstream."),
    ("reconnects", "orderbook_ws_reconnects_total", "WebSocket reconnections upstream."),
    ("frames", "orderbook_ws_messages_total", "WebSocket messages received upstream."),
    ("unattributed_bad_frames", "orderbook_unattributed_bad_frames_total",
     "Malformed messages that named no known symbol."),
    ("stream_errors", "orderbook_stream_errors_total", "Error replies from the venue's WebSocket."),
    ("rest_requests", "orderbook_rest_requests_total", "REST requests sent upstream (retries included)."),
    ("snapshot_requests", "orderbook_rest_depth_requests_total", "REST depth requests sent upstream."),
    ("responses_429", "orderbook_rest_429_total", "HTTP 429 responses from the venue."),
    ("rest_retries", "orderbook_rest_retries_total", "REST requests retried."),
    ("rest_failures", "orderbook_rest_failures_total", "REST calls that gave up after their retries."),
    ("late_snapshots", "orderbook_late_snapshots_total", "Snapshots discarded as answered for an old connection."),
    ("markets_refreshes", "orderbook_markets_refreshes_total", "Market list refreshes."),
    ("internal_errors", "orderbook_internal_errors_total", "Internal errors (bugs) caught and logged."),
)

_CONSUMER_COUNTERS = (
    ("delivered", "orderbook_updates_delivered_total", "Book updates handed to consumers."),
    ("conflated", "orderbook_updates_conflated_total", "Book updates merged into a pending one (conflating consumers)."),
    ("dropped", "orderbook_updates_dropped_total", "Book updates dropped from full drop_oldest queues."),
    ("callback_errors", "orderbook_callback_errors_total", "Update callbacks that raised."),
)

_LATENCIES = (
    ("engine_to_receive_ms", "orderbook_engine_to_receive_seconds", 1e-3,
     "Frame engine time T to read from the socket, recent samples (includes clock offset)."),
    ("engine_to_notify_ms", "orderbook_engine_to_notify_seconds", 1e-3,
     "Frame engine time T to handed to a consumer, recent samples (includes clock offset)."),
    ("send_to_notify_ms", "orderbook_send_to_notify_seconds", 1e-3,
     "Frame send time E to handed to a consumer, recent samples (includes clock offset)."),
    ("gap_to_synced_s", "orderbook_gap_to_synced_seconds", 1.0,
     "Invalidation (gap, bad frame, audit) to synced again, recent samples."),
    ("reconnect_to_synced_s", "orderbook_reconnect_to_synced_seconds", 1.0,
     "Connection lost to synced again, recent samples."),
)


def _quantiles(summary: Percentiles, scale: float) -> list[Sample]:
    return [
        (("0.5",), None if summary.p50 is None else summary.p50 * scale),
        (("0.99",), None if summary.p99 is None else summary.p99 * scale),
    ]


def replicator_families(stats: ReplicatorStats) -> Iterator[Metric]:
    """Every figure of ``stats`` as ``orderbook_*`` families.  O(symbols)."""
    symbols = stats.symbols
    per_symbol = ("symbol",)
    for field, name, help_text in _SYMBOL_COUNTERS:
        yield family("counter", name, help_text, per_symbol,
                     [((s,), getattr(v, field)) for s, v in symbols.items()])
    statuses = {s: status_of(v.status) for s, v in symbols.items()}
    yield family("gauge", "orderbook_synced", "1 while the symbol's book is synced, else 0.",
                 per_symbol, [((s,), int(status is Status.SYNCED)) for s, status in statuses.items()])
    yield family("gauge", "orderbook_symbol_status",
                 "1 for the symbol's current status (waiting, synced, resyncing or error).",
                 ("symbol", "status"), [((s, status.value), 1) for s, status in statuses.items()])
    yield family("gauge", "orderbook_last_update_id", "Update id the book is current to.",
                 per_symbol, [((s,), v.last_update_id) for s, v in symbols.items()])
    yield family("gauge", "orderbook_last_frame_age_seconds", "Seconds since the last depth frame.",
                 per_symbol, [((s,), v.last_frame_age) for s, v in symbols.items()])
    yield family("gauge", "orderbook_stale",
                 "1 while a synced symbol on a live connection has had no frame for too long.",
                 per_symbol, [((s,), int(v.stale)) for s, v in symbols.items()])

    conn = stats.connection
    yield family("gauge", "orderbook_ws_connected", "1 while the upstream WebSocket is open.",
                 samples=[((), int(conn.connected))])
    for field, name, help_text in _CONNECTION_COUNTERS:
        yield family("counter", name, help_text, samples=[((), getattr(conn, field))])
    yield family("gauge", "orderbook_rest_budget_per_minute", "The REST request budget per minute.",
                 samples=[((), conn.budget_per_minute)])

    consumers = stats.consumers
    yield family("gauge", "orderbook_consumers", "Update consumers attached to the replicator.",
                 samples=[((), consumers.consumers)])
    for field, name, help_text in _CONSUMER_COUNTERS:
        yield family("counter", name, help_text, samples=[((), getattr(consumers, field))])

    audits = stats.audits
    yield family("counter", "orderbook_audits_started_total", "Audits started.",
                 samples=[((), audits.started)])
    yield family("counter", "orderbook_audits_total", "Audits finished, by result.", ("result",), [
        (("passed",), audits.passed),
        (("divergent",), audits.divergences),
        (("skipped",), audits.skipped),
    ])

    for field, name, scale, help_text in _LATENCIES:
        summary: Percentiles = getattr(stats.latency, field)
        yield family("gauge", name, help_text, ("quantile",), _quantiles(summary, scale))


class FamiliesCollector(Collector):
    """A ``prometheus_client`` collector yielding what ``families()`` returns at
    each scrape (so the figures are read when scraped, never copied before)."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        """The families now (called by the registry at each scrape)."""
        return list(self._families())


class ReplicatorCollector(FamiliesCollector):
    """A ``prometheus_client`` collector of a :class:`Replicator`'s figures
    (:func:`replicator_families` of its :meth:`~Replicator.stats` at each
    scrape); register it with any registry.  A scrape costs O(symbols +
    latency samples) on the calling thread: scrape from the replicator's
    event loop (as the mirror does) or accept a figure read mid-update."""

    def __init__(self, replicator: Replicator) -> None:
        super().__init__(lambda: replicator_families(replicator.stats()))


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """``(body, content type)`` of ``registry`` in the format the ``Accept``
    header asks for: OpenMetrics when requested, else the Prometheus text
    format.  O(samples)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# ------------------------------------------------------------ sinks (issue 14)
_SINK_FAMILIES: tuple[tuple[str, str, Literal["counter", "gauge"], str], ...] = (
    ("published", "orderbook_sink_published_total", "counter",
     "Messages the broker accepted (Redis: acknowledged; NATS: written to its connection)."),
    ("snapshots", "orderbook_sink_snapshots_total", "counter", "Snapshot messages published."),
    ("dropped", "orderbook_sink_dropped_total", "counter",
     "Book updates not published (queue full, broker unreachable); each is covered by a later snapshot."),
    ("reconnects", "orderbook_sink_reconnects_total", "counter",
     "Broker connections opened again after a failure."),
    ("failures", "orderbook_sink_failures_total", "counter", "Failed broker connection attempts and writes."),
    ("snapshot_requests", "orderbook_sink_snapshot_requests_total", "counter",
     "Snapshot requests answered (NATS request/reply)."),
    ("internal_errors", "orderbook_sink_internal_errors_total", "counter",
     "Internal errors (bugs) caught and logged by a sink."),
    ("queued", "orderbook_sink_queue_messages", "gauge", "Messages waiting to be written."),
    ("connected", "orderbook_sink_connected", "gauge", "1 while the sink's broker connection is up."),
)


def sink_families(sinks: Sequence[SinkStats]) -> Iterator[Metric]:
    """The publishing sinks' figures as ``orderbook_sink_*`` families, labelled
    ``sink`` (the broker URL without credentials); nothing without sinks.
    O(sinks)."""
    if not sinks:
        return
    for field_name, name, kind, help_text in _SINK_FAMILIES:
        yield family(kind, name, help_text, ("sink",),
                     [((s.name,), int(getattr(s, field_name))) for s in sinks])
