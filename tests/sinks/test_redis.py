"""Redis Streams against a real redis-server: exact readers through resyncs, restarts, trimming."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from brokers import Broker
from orderbook.live.replicator import Replicator
from orderbook.sinks import PublishOptions, RedisSink, redis_book, redis_key
from orderbook.testing.venue import OrderFlow, SimulatedVenue
from sinkhelpers import assert_followers_exact, force_resync, wait_for

SYMBOLS = ["SOL_USDC", "SPCX.US_USDC"]


def run(coro: Any, timeout: float = 120) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def test_readers_are_exact_through_a_resync_and_a_redis_restart(redis_server: Broker) -> None:
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=21)
        sink = RedisSink(redis_server.url, maxlen=2000,
                         options=PublishOptions(snapshot_interval=50, linger=0.005))
        async with SimulatedVenue(flow, rate=400.0) as venue, \
                Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url, sinks=[sink]) as rep:
            await rep.wait_synced(timeout=20)
            followers = {s: redis_book(redis_server.url, s) for s in SYMBOLS}
            for follower in followers.values():
                await follower.start()
            try:
                await asyncio.sleep(0.5)
                await force_resync(venue, lambda: rep.stats().symbols["SOL_USDC"].resyncs)
                await asyncio.sleep(0.5)
                await venue.pause()
                await assert_followers_exact(followers, flow)
                venue.resume()
                await asyncio.sleep(0.3)

                redis_server.restart()  # connections reset; without persistence, the streams are gone
                await wait_for(lambda: sink.stats().reconnects >= 1 and sink.stats().connected,
                               what="the sink reconnecting")
                await wait_for(lambda: all(f.stats.reconnects >= 1 for f in followers.values()),
                               what="the readers reconnecting")
                client = aioredis.Redis.from_url(redis_server.url)
                try:  # the wiped streams start again with a snapshot of each symbol
                    for symbol in SYMBOLS:
                        await wait_for_entries(client, redis_key(symbol))
                        (_, first), = await client.xrange(redis_key(symbol), "-", "+", count=1)
                        assert first[b"type"] == b"snapshot", symbol
                finally:
                    await client.aclose()
                await asyncio.sleep(0.5)
                await venue.pause()
                await assert_followers_exact(followers, flow)
                assert all(f.stats.gaps == 0 for f in followers.values())  # a snapshot came first
                stats = sink.stats()
                assert stats.failures >= 1 and stats.snapshots >= 2 * len(SYMBOLS)
                assert rep.stats().symbols["SOL_USDC"].resyncs >= 1
                # a reader started now bootstraps from the stream as rebuilt after the restart
                async with redis_book(redis_server.url, "SPCX.US_USDC") as late:
                    await assert_followers_exact({"SPCX.US_USDC": late}, flow)
                    assert late.stats.snapshots == 1
            finally:
                for follower in followers.values():
                    await follower.close()
    run(main())


async def wait_for_entries(client: aioredis.Redis, key: str) -> None:
    for _ in range(500):
        if await client.xlen(key):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{key} stays empty")


def test_trimming_keeps_the_stream_near_maxlen_and_always_a_snapshot(small_node_redis: Broker) -> None:
    """Small nodes (10 entries) make MINID ~ act at small sizes: the stream stays
    within maxlen + snapshot_interval + a node, always starts at or before a
    snapshot, and a reader bootstrapping at any moment is exact."""
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=4)
        maxlen, interval = 120, 15
        sink = RedisSink(small_node_redis.url, maxlen=maxlen,
                         options=PublishOptions(snapshot_interval=interval))
        client = aioredis.Redis.from_url(small_node_redis.url)
        key = redis_key("SOL_USDC")
        async with SimulatedVenue(flow, rate=600.0) as venue, \
                Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url,
                           sinks=[sink]) as rep:
            await rep.wait_synced(timeout=20)
            lengths = []
            try:
                while sink.stats().published < 8 * maxlen:
                    await asyncio.sleep(0.05)
                    length = await client.xlen(key)
                    lengths.append(length)
                    assert length <= maxlen + interval + 10 + 1, lengths
                    first = await client.xrange(key, "-", "+", count=1)
                    entries = await client.xrange(key, "-", "+", count=interval + 10 + 1)
                    assert any(fields[b"type"] == b"snapshot" for _, fields in entries), first
                assert max(lengths) > maxlen // 2  # it did grow, and was trimmed
                await venue.pause()
                async with redis_book(small_node_redis.url, "SOL_USDC") as reader:
                    await assert_followers_exact({"SOL_USDC": reader}, flow)
            finally:
                await client.aclose()
    run(main())


def test_a_broker_down_at_start_or_frozen_never_holds_the_replica_back(tmp_path: Any) -> None:
    """No broker at the URL: the replica syncs and follows the venue while the sink
    counts failures and drops; once redis-server starts, readers get exact books.
    Then the broker is frozen (SIGSTOP: it accepts TCP but answers nothing): writes
    time out, the replica still follows, and after SIGCONT the readers are exact."""
    from brokers import redis_broker
    from loopback import wait_caught_up

    async def main() -> None:
        broker = redis_broker(tmp_path)
        flow = OrderFlow(SYMBOLS, seed=8)
        sink = RedisSink(broker.url, options=PublishOptions(write_timeout=0.5, linger=0.005))
        try:
            async with SimulatedVenue(flow, rate=400.0) as venue, \
                    Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                               sinks=[sink]) as rep:
                await rep.wait_synced(timeout=20)
                await asyncio.sleep(1.0)
                await venue.pause()
                await wait_caught_up(rep, flow, timeout=5)
                stats = sink.stats()
                assert not stats.connected and stats.failures >= 1 and stats.published == 0
                assert stats.queued == 0  # nothing piles up while the broker is away
                venue.resume()
                await asyncio.sleep(0.5)
                assert sink.stats().dropped > stats.dropped

                broker.start()
                await wait_for(lambda: sink.stats().connected, what="the sink connecting")
                followers = {s: redis_book(broker.url, s) for s in SYMBOLS}
                for follower in followers.values():
                    await follower.start()
                try:
                    await asyncio.sleep(0.5)
                    await venue.pause()
                    await assert_followers_exact(followers, flow)
                    venue.resume()

                    broker.pause()
                    failures = sink.stats().failures
                    await wait_for(lambda: sink.stats().failures > failures, what="a write timing out")
                    await asyncio.sleep(0.5)
                    await venue.pause()
                    await wait_caught_up(rep, flow, timeout=5)  # the replica kept up meanwhile
                    venue.resume()
                    broker.resume()
                    await wait_for(lambda: sink.stats().connected, what="the sink reconnecting")
                    await asyncio.sleep(0.5)
                    await venue.pause()
                    await assert_followers_exact(followers, flow)
                finally:
                    for follower in followers.values():
                        await follower.close()
        finally:
            broker.stop()
    run(main())


def test_a_sink_run_by_hand_on_a_started_replicator(redis_server: Broker) -> None:
    """The library's other entry: ``await sink.run(replicator)`` consumes its updates()
    and ends when the replicator closes; on a replicator not started it refuses."""
    import pytest

    from orderbook.errors import UsageError

    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=12)
        sink = RedisSink(redis_server.url, options=PublishOptions(linger=0.01))
        idle = Replicator(["SOL_USDC"])
        with pytest.raises(UsageError, match="start the replicator"):
            await sink.run(idle)
        async with SimulatedVenue(flow, rate=300.0) as venue:
            rep = Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url)
            await rep.start()
            await rep.wait_synced(timeout=20)
            task = asyncio.create_task(sink.run(rep))
            async with redis_book(redis_server.url, "SOL_USDC") as reader:
                await asyncio.sleep(0.5)
                await venue.pause()
                await assert_followers_exact({"SOL_USDC": reader}, flow)
            with pytest.raises(UsageError, match="already runs"):
                await sink.run(rep)
            await rep.close()
            await asyncio.wait_for(task, 10)  # ends with the replicator's updates()
            assert sink.stats().published >= 2 and not sink.stats().connected
    run(main())


def test_the_batch_is_packed_alike_with_and_without_hiredis() -> None:
    """The sink packs its one command with hiredis when installed, else with
    redis-py: the bytes on the wire must not depend on which."""
    import hiredis
    from redis.asyncio.connection import Connection

    args = ("EVALSHA", b"abc", 2, "orderbook:SPCX.US_USDC", "orderbook:SOL_USDC", b"", b"delta",
            b"7", b"[[\"1.5\",\"0\"]]")
    assert hiredis.pack_command(args) == b"".join(Connection().pack_command(*args))
