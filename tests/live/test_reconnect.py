"""Reconnects over real sockets: books are voided, rebuilt from fresh snapshots only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from loopback import Proxy, mismatches, wait_caught_up

from orderbook.live.config import Connection
from orderbook.sync.policy import Backoff
from orderbook import BookUpdate, Replicator
from orderbook.testing.venue import DEFAULT_SYMBOLS, Faults, OrderFlow, SimulatedVenue

SYMBOLS = list(DEFAULT_SYMBOLS)  # dotted symbols among them
FAST_RECONNECT = Backoff(0.05, 0.2, 2.0, 0.5)


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; ``timeout`` only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        await asyncio.sleep(0.01)


def test_a_reconnect_never_merges_stale_state() -> None:
    """While the connection is down (the proxy refuses reconnects) every book is
    void and no snapshot is fetched; once back, each book is rebuilt from a
    snapshot taken after the new subscription, and consumers see
    invalidated -> snapshot, never a delta bridging the outage."""
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=3)
        async with SimulatedVenue(flow, rate=300.0) as venue, Proxy(venue.ws_url) as proxy:
            rep = Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=proxy.url,
                             connection=Connection(backoff=FAST_RECONNECT))
            seen: list[BookUpdate] = []
            rep.on_update(seen.append, policy="drop_oldest", maxsize=100_000)
            async with rep:
                await rep.wait_synced(timeout=10)
                await asyncio.sleep(0.3)
                before = {s: rep.book(s).last_update_id for s in SYMBOLS}
                proxy.refuse = True
                proxy.drop_all()
                await until(lambda: all(rep.status(s) == "resyncing" for s in SYMBOLS))
                requests = venue.stats.depth_requests
                for _ in range(5):  # the outage lasts: updates happen that we never see
                    assert all(rep.status(s) == "resyncing" for s in SYMBOLS)
                    assert all(rep.book(s).last_update_id is None for s in SYMBOLS)
                    assert all(rep.book(s).depth() == (0, 0) for s in SYMBOLS)
                    await asyncio.sleep(0.1)
                assert venue.stats.depth_requests == requests  # nothing fetched while down
                proxy.refuse = False
                await rep.wait_synced(timeout=10)
                await asyncio.sleep(0.3)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
                stats = rep.stats()
                assert stats.connection.reconnects >= 1
                assert stats.latency.reconnect_to_synced_s.count == len(SYMBOLS)
                await asyncio.sleep(0.1)
            for symbol in SYMBOLS:
                kinds = [u.kind for u in seen if u.symbol == symbol]
                cut = kinds.index("invalidated")
                assert kinds[cut + 1] == "snapshot"
                resumed = next(u for u in seen[::-1] if u.symbol == symbol and u.kind == "snapshot")
                assert resumed.last_id is not None and resumed.last_id > before[symbol]  # type: ignore[operator]
                assert stats.symbols[symbol].resyncs == 1

    asyncio.run(asyncio.wait_for(main(), 60))


def test_snapshots_answered_for_a_dead_connection_are_discarded() -> None:
    """A snapshot requested before a disconnect and answered after it belongs to
    the old connection: it is dropped, and a fresh one is fetched."""
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=4)
        async with SimulatedVenue(flow, faults=Faults(rest_delay=0.4), rate=300.0) as venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  connection=Connection(backoff=FAST_RECONNECT)) as rep:
                # the first snapshots are in flight (answered 0.4 s after they arrive)
                await until(lambda: venue.stats.depth_requests >= len(SYMBOLS))
                await venue.disconnect_all(code=1001)
                await rep.wait_synced(timeout=10)
                assert rep.stats().connection.late_snapshots == len(SYMBOLS)
                venue.faults.rest_delay = 0.0
                await asyncio.sleep(0.3)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []

    asyncio.run(asyncio.wait_for(main(), 60))


def test_repeated_disconnects_back_off_and_recover() -> None:
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=5)
        async with SimulatedVenue(flow, rate=300.0) as venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  connection=Connection(backoff=FAST_RECONNECT)) as rep:
                for round_ in range(4):
                    while rep.stats().connection.connects != round_ + 1:
                        await asyncio.sleep(0.01)
                    await rep.wait_synced(timeout=10)
                    await asyncio.sleep(0.1)
                    assert await venue.disconnect_all(abrupt=round_ % 2 == 0) == 1
                await rep.wait_synced(timeout=10)
                await asyncio.sleep(0.2)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
                assert rep.stats().connection.reconnects == 4
                assert all(s.resyncs == 4 for s in rep.stats().symbols.values())

    asyncio.run(asyncio.wait_for(main(), 60))
