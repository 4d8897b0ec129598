"""Prometheus text exposition (format 0.0.4), written by hand.  No I/O.

The runtime needs no ``prometheus_client``: :class:`MetricsWriter` emits
``# HELP`` / ``# TYPE`` lines and samples with escaped label values,
:class:`Histogram` keeps cumulative bucket counts, and
:func:`write_replicator_stats` turns :meth:`Replicator.stats()
<orderbook.live.replicator.Replicator.stats>` into metric families::

    writer = MetricsWriter()
    write_replicator_stats(writer, replicator.stats())
    body = writer.text()          # serve as text/plain; version=0.0.4

Conventions: counters end in ``_total`` and only ever increase; per-symbol
figures carry a ``symbol`` label; times are in seconds.  The replicator keeps
latency *percentiles* over its recent samples (not buckets), so those are
exported as gauges with a ``quantile`` label; histograms with buckets come
from the code that observes the values itself (the mirror).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from ..errors import UsageError
from ..live.sink import SinkStats
from ..live.stats import ReplicatorStats
from ..sync.samples import Percentiles

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "Histogram",
    "MetricsWriter",
    "write_replicator_stats",
    "write_sink_stats",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of the text exposition format."""

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
"""Default histogram bucket bounds in seconds (0.5 ms .. 30 s)."""

MetricType = Literal["counter", "gauge", "histogram"]
Labels = Mapping[str, str]
Sample = tuple[Labels, float | int | None]
"""One sample of a family: its labels and its value (``None``: omitted)."""

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    for name in labels:
        if not _LABEL.match(name) or name.startswith("__"):
            raise UsageError(f"invalid label name {name!r}")
    inner = ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


class Histogram:
    """A cumulative histogram: bucket counts, sum and count of observations.

    ``buckets`` are the upper bounds (sorted, finite; ``+Inf`` is implied).
    :meth:`observe` costs O(log buckets); memory is O(buckets) forever.
    """

    __slots__ = ("bounds", "_counts", "sum", "count")

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or not all(map(math.isfinite, bounds)):
            raise UsageError(f"buckets must be finite, strictly increasing and non-empty: {buckets!r}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation (negative values land in the first bucket)."""
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, observations <= le)]`` for every bound and ``"+Inf"``.  O(buckets)."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(_number, self.bounds), "+Inf"), self._counts):
            running += count
            out.append((bound, running))
        return out


class MetricsWriter:
    """Accumulates metric families and renders the text exposition.

    Each family name may be written once (:class:`UsageError` otherwise).
    Every method costs O(samples written).
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: set[str] = set()

    def _header(self, name: str, kind: MetricType, help_text: str) -> None:
        if not _NAME.match(name):
            raise UsageError(f"invalid metric name {name!r}")
        if kind == "counter" and not name.endswith("_total"):
            raise UsageError(f"counter {name!r} must end in _total")
        if name in self._names:
            raise UsageError(f"metric family {name!r} written twice")
        self._names.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def family(self, name: str, kind: Literal["counter", "gauge"], help_text: str,
               samples: Iterable[Sample]) -> None:
        """A counter or gauge family; samples whose value is ``None`` are skipped."""
        self._header(name, kind, help_text)
        for labels, value in samples:
            if value is not None:
                self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def counter(self, name: str, help_text: str, value: int | float) -> None:
        """A counter family with one unlabelled sample (``name`` ends in ``_total``)."""
        self.family(name, "counter", help_text, [({}, value)])

    def gauge(self, name: str, help_text: str, value: int | float | None) -> None:
        """A gauge family with one unlabelled sample (omitted when ``None``)."""
        self.family(name, "gauge", help_text, [({}, value)])

    def histogram(self, name: str, help_text: str,
                  series: Iterable[tuple[Labels, Histogram]]) -> None:
        """A histogram family: ``_bucket`` (with ``le``), ``_sum`` and ``_count``
        samples for each ``(labels, histogram)`` of ``series``."""
        self._header(name, "histogram", help_text)
        lines = self._lines
        for labels, hist in series:
            for le, count in hist.cumulative():
                lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {count}")
            lines.append(f"{name}_sum{_labels(labels)} {_number(hist.sum)}")
            lines.append(f"{name}_count{_labels(labels)} {hist.count}")

    def text(self) -> str:
        """The exposition so far, newline terminated."""
        return "\n".join(self._lines) + "\n"


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


def _status_class(status: str) -> str:
    return "error" if status.startswith("error") else status


def _quantiles(summary: Percentiles, scale: float) -> list[Sample]:
    return [
        ({"quantile": "0.5"}, None if summary.p50 is None else summary.p50 * scale),
        ({"quantile": "0.99"}, None if summary.p99 is None else summary.p99 * scale),
    ]


def write_replicator_stats(writer: MetricsWriter, stats: ReplicatorStats) -> None:
    """Write every figure of ``stats`` as ``orderbook_*`` families.  O(symbols)."""
    symbols = stats.symbols
    for field, name, help_text in _SYMBOL_COUNTERS:
        writer.family(name, "counter", help_text,
                      [({"symbol": s}, getattr(v, field)) for s, v in symbols.items()])
    writer.family("orderbook_synced", "gauge", "1 while the symbol's book is synced, else 0.",
                  [({"symbol": s}, int(v.status == "synced")) for s, v in symbols.items()])
    writer.family("orderbook_symbol_status", "gauge",
                  "1 for the symbol's current status (waiting, synced, resyncing or error).",
                  [({"symbol": s, "status": _status_class(v.status)}, 1) for s, v in symbols.items()])
    writer.family("orderbook_last_update_id", "gauge", "Update id the book is current to.",
                  [({"symbol": s}, v.last_update_id) for s, v in symbols.items()])
    writer.family("orderbook_last_frame_age_seconds", "gauge", "Seconds since the last depth frame.",
                  [({"symbol": s}, v.last_frame_age) for s, v in symbols.items()])
    writer.family("orderbook_stale", "gauge",
                  "1 while a synced symbol on a live connection has had no frame for too long.",
                  [({"symbol": s}, int(v.stale)) for s, v in symbols.items()])

    conn = stats.connection
    writer.gauge("orderbook_ws_connected", "1 while the upstream WebSocket is open.", int(conn.connected))
    for field, name, help_text in _CONNECTION_COUNTERS:
        writer.counter(name, help_text, getattr(conn, field))
    writer.gauge("orderbook_rest_budget_per_minute", "The REST request budget per minute.",
                 conn.budget_per_minute)

    consumers = stats.consumers
    writer.gauge("orderbook_consumers", "Update consumers attached to the replicator.", consumers.consumers)
    for field, name, help_text in _CONSUMER_COUNTERS:
        writer.counter(name, help_text, getattr(consumers, field))

    audits = stats.audits
    writer.counter("orderbook_audits_started_total", "Audits started.", audits.started)
    writer.family("orderbook_audits_total", "counter", "Audits finished, by result.", [
        ({"result": "passed"}, audits.passed),
        ({"result": "divergent"}, audits.divergences),
        ({"result": "skipped"}, audits.skipped),
    ])

    for field, name, scale, help_text in _LATENCIES:
        summary: Percentiles = getattr(stats.latency, field)
        writer.family(name, "gauge", help_text, _quantiles(summary, scale))


# ------------------------------------------------------------ sinks (issue 14)
_SINK_FAMILIES = (
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


def write_sink_stats(writer: MetricsWriter, sinks: Sequence[SinkStats]) -> None:
    """Write the publishing sinks' figures as ``orderbook_sink_*`` families,
    labelled ``sink`` (the broker URL without credentials); nothing without
    sinks.  O(sinks)."""
    if not sinks:
        return
    for field, name, kind, help_text in _SINK_FAMILIES:
        writer.family(name, "counter" if kind == "counter" else "gauge", help_text,
                      [({"sink": s.name}, int(getattr(s, field))) for s in sinks])
