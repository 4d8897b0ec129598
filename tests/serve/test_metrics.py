"""``/metrics`` through ``prometheus_client``: the same families as before, read back
with prometheus_client's own parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

import metrics_inputs as inputs
from orderbook import ReplicatorCollector, Replicator, Status
from orderbook.errors import UsageError
from orderbook.serve.health import status_of
from orderbook.serve.histogram import Histogram
from orderbook.serve.metrics import FamiliesCollector, exposition, replicator_families
from orderbook.serve.stats import mirror_families

GOLDEN = Path(__file__).with_name("metrics_golden.json")


def parsed(text: str) -> list[dict[str, Any]]:
    """Each family as prometheus_client reads it back: name, type, samples."""
    return [{"family": f.name, "type": f.type,
             "samples": [[s.name, s.labels, s.value] for s in f.samples]}
            for f in text_string_to_metric_families(text)]


def mirror_registry() -> CollectorRegistry:
    stats = inputs.mirror_stats()
    publisher = inputs.publisher(stats)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(lambda: mirror_families(
        inputs.replicator_stats(), stats, publisher, inputs.ready, inputs.CLIENTS,
        dict(inputs.SUBSCRIPTIONS))))
    return registry


def test_families_labels_and_values_are_those_of_the_hand_written_writer() -> None:
    golden = json.loads(GOLDEN.read_text())
    now = parsed(generate_latest(mirror_registry()).decode())
    assert [(f["family"], f["type"]) for f in now] == [(f["family"], f["type"]) for f in golden]
    for new, old in zip(now, golden):
        key = lambda sample: json.dumps(sample, sort_keys=True)  # noqa: E731
        assert sorted(new["samples"], key=key) == sorted(old["samples"], key=key), new["family"]
    assert len(now) == 71 and all(f["samples"] for f in now)


def test_the_text_names_every_counter_with_total_and_escapes_labels() -> None:
    text = generate_latest(mirror_registry()).decode()
    assert "# TYPE orderbook_frames_total counter" in text
    assert 'orderbook_frames_total{symbol="SOL_USDC"} 10.0' in text
    assert "# TYPE orderbook_mirror_engine_to_publish_seconds histogram" in text
    assert 'orderbook_mirror_engine_to_publish_seconds_bucket{le="+Inf"} 4.0' in text
    assert 'orderbook_symbol_status{status="error",symbol="ETH_USDC"} 1.0' in text
    # a label value needing escapes parses back as it was
    stats = inputs.replicator_stats()
    stats.symbols['a"b\\c\nd'] = stats.symbols.pop("SOL_USDC")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(lambda: replicator_families(stats)))
    [frames] = [f for f in parsed(generate_latest(registry).decode()) if f["family"] == "orderbook_frames"]
    assert ["orderbook_frames_total", {"symbol": 'a"b\\c\nd'}, 10.0] in frames["samples"]


def test_exposition_negotiates_openmetrics() -> None:
    registry = mirror_registry()
    body, content_type = exposition(registry, None)
    assert content_type.startswith("text/plain") and b"orderbook_gaps_total" in body
    body, content_type = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    names = {f.name for f in openmetrics_families(body.decode())}
    assert {"orderbook_gaps", "orderbook_mirror_resync_seconds"} <= names


def test_status_of_maps_every_spelling_through_the_enum() -> None:
    for status in Status:
        assert status_of(status) is status and status_of(status.value) is status
    assert status_of("error(snapshots failing: HTTP 503 (x))") is Status.ERROR
    for bad in ("", "synced(x)", "errors", "bogus(error)"):
        with pytest.raises(UsageError, match="not a replicator status"):
            status_of(bad)


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram([0.1, 1.0, 10.0])
    for value in (0.05, 0.1, 0.5, 2.0, 50.0, -1.0):
        hist.observe(value)
    assert hist.cumulative() == [("0.1", 3), ("1.0", 4), ("10.0", 5), ("+Inf", 6)]
    assert (hist.count, hist.sum) == (6, pytest.approx(51.65))
    with pytest.raises(UsageError):
        Histogram([1.0, 0.5])
    with pytest.raises(UsageError):
        Histogram([])


def test_replicator_collector_registers_with_any_registry() -> None:
    replicator = Replicator(["SOL_USDC"])  # not started: no symbol yet, connection figures only
    registry = CollectorRegistry()
    registry.register(ReplicatorCollector(replicator))
    families = {f["family"]: f for f in parsed(generate_latest(registry).decode())}
    assert families["orderbook_ws_connected"]["samples"] == [["orderbook_ws_connected", {}, 0.0]]
    assert families["orderbook_frames"]["samples"] == []
    assert families["orderbook_rest_budget_per_minute"]["samples"] == [
        ["orderbook_rest_budget_per_minute", {}, 1000.0]]
