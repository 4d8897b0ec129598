"""Helpers of the sink tests: waiting on followers, comparing them with the venue's truth."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from orderbook.sinks import BookFollower
from orderbook.testing.venue import OrderFlow, SimulatedVenue


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def assert_followers_exact(followers: Mapping[str, BookFollower], flow: OrderFlow,
                                 timeout: float = 20.0) -> None:
    """Each follower reaches its truth's update id and then holds exactly its book."""
    for symbol, follower in followers.items():
        truth = flow.truth(symbol)
        await follower.wait_synced(truth.last_update_id, timeout=timeout)
        assert follower.book.last_update_id == truth.last_update_id, symbol
        assert follower.book.bids() == truth.bids(), symbol
        assert follower.book.asks() == truth.asks(), symbol
        follower.book.check_integrity()


async def force_resync(venue: SimulatedVenue, resyncs: Callable[[], int], timeout: float = 20.0) -> None:
    """Lose depth frames at the venue until the replica has resynced at least once more."""
    before = resyncs()
    venue.faults.drop_rate = 0.5
    try:
        await wait_for(lambda: resyncs() > before, timeout, "a resync")
    finally:
        venue.faults.drop_rate = 0.0
