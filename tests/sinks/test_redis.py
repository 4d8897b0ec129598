"""Redis Streams against a real redis-server: exact readers through resyncs, restarts, trimming."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from brokers import Broker, redis_argv
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


def test_the_publisher_authenticates_and_writes_to_the_url_database(tmp_path: Any) -> None:
    """The publisher opens its own connection: it sends the URL's password
    (``AUTH``) and selects its database (``SELECT 3``), so the stream is in
    db 3 and nowhere else; a wrong password is a failed connection, counted
    and named, and never holds the replica back."""
    server = Broker("redis", lambda port: redis_argv(port, "--requirepass", "s3cret"), b"-NOAUTH",
                    b"PING\r\n", tmp_path)
    server.start()
    good = f"redis://:s3cret@127.0.0.1:{server.port}/3"
    bad = f"redis://:wrong@127.0.0.1:{server.port}/3"

    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=21)
        right, wrong = (RedisSink(url, options=PublishOptions(linger=0.01)) for url in (good, bad))
        async with SimulatedVenue(flow, rate=300.0) as venue:
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sinks=[right, wrong]) as rep:
                await rep.wait_synced(timeout=20)
                async with redis_book(good, "SOL_USDC") as reader:
                    await wait_for(lambda: wrong.stats().failures >= 2, what="failed logins")
                    await venue.pause()
                    await assert_followers_exact({"SOL_USDC": reader}, flow)
                assert right.stats().connected and right.stats().published >= 2
                assert not wrong.stats().connected and wrong.stats().published == 0
                assert wrong.last_error is not None and "password" in wrong.last_error.lower()
                assert rep.status("SOL_USDC") == "synced"
        db0 = aioredis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        db3 = aioredis.Redis.from_url(good)
        try:
            key = redis_key("SOL_USDC")
            assert await db0.exists(key) == 0 and await db3.exists(key) == 1
        finally:
            await db0.aclose()
            await db3.aclose()

    try:
        run(main())
    finally:
        server.stop()


def test_an_error_answer_breaks_the_connection_and_the_reader_stays_exact(redis_server: Broker) -> None:
    """Redis answering a batch with an error (here ``NOSCRIPT``: the script was
    flushed behind the publisher's back) fails that connection: the sink
    reconnects, loads the script again, publishes a snapshot, and a reader
    following the stream throughout is exact at the end."""
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=23)
        sink = RedisSink(redis_server.url, options=PublishOptions(linger=0.01))
        admin = aioredis.Redis.from_url(redis_server.url)
        async with SimulatedVenue(flow, rate=300.0) as venue:
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sinks=[sink]) as rep:
                await rep.wait_synced(timeout=20)
                async with redis_book(redis_server.url, "SOL_USDC") as reader:
                    await wait_for(lambda: sink.stats().published >= 5, what="publishing")
                    await admin.script_flush()
                    await wait_for(lambda: sink.stats().reconnects >= 1, what="a reconnect")
                    assert sink.last_error is not None and "NOSCRIPT" in sink.last_error
                    snapshots = sink.stats().snapshots
                    await wait_for(lambda: sink.stats().snapshots > snapshots or
                                   sink.stats().published > 10, what="publishing again")
                    await venue.pause()
                    await assert_followers_exact({"SOL_USDC": reader}, flow)
        await admin.aclose()
    run(main())


def test_sinks_of_one_replicator_share_one_consumer_and_each_stays_exact(redis_server: Broker) -> None:
    """Two sinks on one replicator (two prefixes, different lingers) take the
    replica's updates through one consumer, not one each; each one's readers
    are exact, also after the other sink stopped, and the consumer is
    detached when the last one stops."""
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=29)
        fast = RedisSink(redis_server.url, options=PublishOptions(linger=0.005, prefix="fast"))
        slow = RedisSink(redis_server.url, options=PublishOptions(linger=0.08, prefix="slow"))
        async with SimulatedVenue(flow, rate=300.0) as venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                await rep.wait_synced(timeout=20)
                tasks = [asyncio.create_task(sink.run(rep)) for sink in (fast, slow)]
                await wait_for(lambda: fast.stats().published >= 4 and slow.stats().published >= 4,
                               what="both publishing")
                assert rep.stats().consumers.consumers == 1
                readers = {f"{prefix}:{symbol}": redis_book(redis_server.url, symbol, prefix=prefix)
                           for prefix in ("fast", "slow") for symbol in SYMBOLS}
                for reader in readers.values():
                    await reader.start()
                def following(prefix: str) -> dict[str, Any]:
                    return {symbol: readers[f"{prefix}:{symbol}"] for symbol in SYMBOLS}

                try:
                    await asyncio.sleep(0.5)
                    await venue.pause()
                    await assert_followers_exact(following("fast"), flow)
                    await assert_followers_exact(following("slow"), flow)
                    venue.resume()
                    tasks[0].cancel()  # the fast sink stops; the slow one goes on alone
                    await asyncio.gather(tasks[0], return_exceptions=True)
                    assert rep.stats().consumers.consumers == 1
                    published = slow.stats().published
                    await wait_for(lambda: slow.stats().published > published + 2, what="the slow sink alone")
                    await venue.pause()
                    await assert_followers_exact(following("slow"), flow)
                finally:
                    for reader in readers.values():
                        await reader.close()
                tasks[1].cancel()
                await asyncio.gather(tasks[1], return_exceptions=True)
                assert rep.stats().consumers.consumers == 0
    run(main())


def test_sinks_at_one_linger_share_one_pump(redis_server: Broker) -> None:
    """Two sinks at the same ``linger`` are woken by one pump task between them
    (one timer per linger, not one per sink); it keeps sending for the one left
    when the other stops, and stops with the last."""
    def pumps() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("orderbook-sink-pump")]

    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=43)
        first, second = (RedisSink(redis_server.url, options=PublishOptions(linger=0.02, prefix=prefix))
                         for prefix in ("one", "two"))
        async with SimulatedVenue(flow, rate=300.0) as venue:
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                await rep.wait_synced(timeout=20)
                tasks = [asyncio.create_task(sink.run(rep)) for sink in (first, second)]
                await wait_for(lambda: first.stats().published >= 4 and second.stats().published >= 4,
                               what="both publishing")
                assert pumps() == ["orderbook-sink-pump-0.02s"]
                tasks[0].cancel()
                await asyncio.gather(tasks[0], return_exceptions=True)
                assert len(pumps()) == 1
                published = second.stats().published
                await wait_for(lambda: second.stats().published > published + 2, what="the second alone")
                async with redis_book(redis_server.url, "SOL_USDC", prefix="two") as reader:
                    await asyncio.sleep(0.3)
                    await venue.pause()
                    await assert_followers_exact({"SOL_USDC": reader}, flow)
                tasks[1].cancel()
                await asyncio.gather(tasks[1], return_exceptions=True)
                assert pumps() == []
    run(main())
