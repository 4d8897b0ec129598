"""NATS against a real nats-server: subscribe, request, bridge; exact through resyncs and restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import orjson

from brokers import Broker, nats_broker
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


def test_the_publisher_logs_in_with_the_url_credentials(tmp_path: Path) -> None:
    """The publisher speaks NATS itself: it sends the URL's user and password in
    ``CONNECT``; a wrong password is a failed connection, counted and named
    (the server's ``-ERR``), and never holds the replica back."""
    server = nats_broker(tmp_path, "--user", "books", "--pass", "s3cret")
    server.start()
    good = f"nats://books:s3cret@127.0.0.1:{server.port}"
    bad = f"nats://books:wrong@127.0.0.1:{server.port}"

    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=31)
        right, wrong = (NatsSink(url, options=PublishOptions(snapshot_interval=None, linger=0.01))
                        for url in (good, bad))
        async with SimulatedVenue(flow, rate=300.0) as venue, \
                Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url,
                           sinks=[right, wrong]) as rep:
            await rep.wait_synced(timeout=20)
            async with nats_book(good, "SOL_USDC") as follower:
                await wait_for(lambda: wrong.stats().failures >= 2, what="failed logins")
                await asyncio.sleep(0.3)
                await venue.pause()
                await assert_followers_exact({"SOL_USDC": follower}, flow)
            assert right.stats().connected and right.stats().published >= 2
            assert right.stats().snapshot_requests >= 1
            assert not wrong.stats().connected and wrong.stats().published == 0
            assert wrong.last_error is not None and "authorization" in wrong.last_error.lower()
            assert rep.status("SOL_USDC") == "synced"

    try:
        run(main())
    finally:
        server.stop()


def test_a_frozen_nats_server_is_found_and_never_holds_the_replica_back(tmp_path: Path) -> None:
    """nats-server stopped (SIGSTOP: TCP still accepts, nothing is read or
    answered): the publisher's PING goes unanswered, the connection fails
    within its timeout, the replica keeps following the venue; once the server
    runs again the sink reconnects and the subscriber is exact again."""
    from loopback import wait_caught_up

    server = nats_broker(tmp_path)
    server.start()

    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=37)
        sink = NatsSink(server.url, options=PublishOptions(snapshot_interval=None, linger=0.005,
                                                           write_timeout=0.5))
        async with SimulatedVenue(flow, rate=300.0) as venue, \
                Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url, sinks=[sink]) as rep:
            await rep.wait_synced(timeout=20)
            async with nats_book(server.url, "SPCX.US_USDC") as follower:
                await asyncio.sleep(0.3)
                server.pause()
                try:
                    failures = sink.stats().failures
                    await wait_for(lambda: sink.stats().failures > failures, what="the freeze found")
                    assert sink.last_error is not None and "PING" in sink.last_error
                    await venue.pause()
                    await wait_caught_up(rep, flow, timeout=5)  # the replica kept up meanwhile
                    venue.resume()
                finally:
                    server.resume()
                await wait_for(lambda: sink.stats().connected, what="the sink reconnecting")
                await asyncio.sleep(0.5)
                await venue.pause()
                await assert_followers_exact({"SPCX.US_USDC": follower}, flow)

    try:
        run(main())
    finally:
        server.stop()


def test_a_hostile_server_line_fails_the_connection_with_bounded_memory() -> None:
    """A server that sends ``INFO`` and then an endless line: the publisher
    never buffers more than its line limit, fails the connection naming why,
    and keeps retrying with backoff while the replica follows the venue."""
    async def main() -> None:
        async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b'INFO {"max_payload": 1048576}\r\n')
            try:
                for _ in range(200):  # 200 x 4 KiB, no CRLF
                    writer.write(b"x" * 4096)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(hostile, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        flow = OrderFlow(["SOL_USDC"], seed=41)
        sink = NatsSink(f"nats://127.0.0.1:{port}", options=PublishOptions(write_timeout=2.0))
        try:
            async with SimulatedVenue(flow, rate=200.0) as venue, \
                    Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url,
                               sinks=[sink]) as rep:
                await rep.wait_synced(timeout=20)
                await wait_for(lambda: sink.stats().failures >= 2, what="failed connections")
                assert sink.last_error is not None and "longer than" in sink.last_error
                assert not sink.stats().connected and sink.stats().published == 0
                assert rep.status("SOL_USDC") == "synced"
        finally:
            server.close()
            await server.wait_closed()
    run(main())
