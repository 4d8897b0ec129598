"""NATS against a real nats-server: subscribe, request, bridge; exact through resyncs and restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import orjson

from brokers import Broker
from orderbook.live.replicator import Replicator
from orderbook.sinks import NatsSink, PublishOptions, decode_json, nats_book, snapshot_subject
from orderbook.testing.venue import OrderFlow, SimulatedVenue
from sinkhelpers import assert_followers_exact, force_resync, wait_for

SYMBOLS = ["SOL_USDC", "SPCX.US_USDC"]


def run(coro: Any, timeout: float = 120) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def test_subscribers_are_exact_through_a_resync_and_a_nats_restart(nats_server: Broker) -> None:
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=23)
        sink = NatsSink(nats_server.url, options=PublishOptions(snapshot_interval=None, linger=0.005))
        async with SimulatedVenue(flow, rate=400.0) as venue, \
                Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url, sinks=[sink]) as rep:
            await rep.wait_synced(timeout=20)
            await wait_for(lambda: sink.stats().connected, what="the sink connecting")
            followers = {s: nats_book(nats_server.url, s) for s in SYMBOLS}
            for follower in followers.values():
                await follower.start()
            try:
                await asyncio.sleep(0.5)
                await force_resync(venue, lambda: rep.stats().symbols["SPCX.US_USDC"].resyncs)
                await asyncio.sleep(0.5)
                await venue.pause()
                await assert_followers_exact(followers, flow)
                assert all(f.stats.requests >= 1 for f in followers.values())
                assert sink.stats().snapshot_requests >= len(SYMBOLS)
                venue.resume()
                await asyncio.sleep(0.3)

                nats_server.restart()
                await wait_for(lambda: sink.stats().reconnects >= 1 and sink.stats().connected,
                               what="the sink reconnecting")
                await wait_for(lambda: all(f.stats.reconnects >= 1 for f in followers.values()),
                               what="the subscribers reconnecting")
                await asyncio.sleep(0.5)
                await venue.pause()
                await assert_followers_exact(followers, flow)
                assert sink.stats().failures >= 1
                # a subscriber arriving now bootstraps by request/reply alone
                async with nats_book(nats_server.url, "SPCX.US_USDC") as late:
                    await assert_followers_exact({"SPCX.US_USDC": late}, flow)
                    assert late.stats.requests >= 1
            finally:
                for follower in followers.values():
                    await follower.close()
    run(main())


def test_the_snapshot_reply_is_the_live_book_or_unavailable(nats_server: Broker) -> None:
    """The request/reply subject answers with the replica's book at its id, in the
    message format; for a symbol that is not synced, an explicit 'unavailable'."""
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=2)
        sink = NatsSink(nats_server.url)
        async with SimulatedVenue(flow, rate=200.0) as venue, \
                Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url, sinks=[sink]) as rep:
            await rep.wait_synced(timeout=20)
            await wait_for(lambda: sink.stats().connected, what="the sink connecting")
            client = await nats.connect(nats_server.url)
            try:
                await venue.pause()
                truth = flow.truth("SPCX.US_USDC")
                await wait_for(lambda: rep.book("SPCX.US_USDC").last_update_id == truth.last_update_id,
                               what="the replica at the truth")
                reply = await client.request("orderbook.SPCX~2EUS_USDC.snapshot", b"", timeout=5)
                message = decode_json(reply.data, "SPCX.US_USDC")
                assert message.last_id == truth.last_update_id
                assert [(p, q) for p, q in message.bids] == [(str(p), str(q)) for p, q in truth.bids()]
                # a resync in progress: stop answering snapshots, the replica cannot sync
                venue.faults.rest_5xx_rate = 1.0
                venue.faults.drop_rate = 0.5
                venue.resume()
                await wait_for(lambda: rep.status("SOL_USDC") != "synced", what="SOL_USDC resyncing")
                answer = await client.request(snapshot_subject("SOL_USDC"), b"", timeout=5)
                assert orjson.loads(answer.data)["type"] == "unavailable"
            finally:
                await client.close()
    run(main())
