"""Fixtures of the sink tests: real brokers (see ``brokers.py``), stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers import Broker, nats_broker, redis_broker


def _running(broker: Broker) -> Iterator[Broker]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Broker]:
    yield from _running(redis_broker(tmp_path))


@pytest.fixture
def small_node_redis(tmp_path: Path) -> Iterator[Broker]:
    """Redis with 10-entry stream nodes, so that approximate trimming acts at small sizes."""
    yield from _running(redis_broker(tmp_path, "--stream-node-max-entries", "10"))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Broker]:
    yield from _running(nats_broker(tmp_path))
