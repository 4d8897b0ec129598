"""The transport against real loopback servers: the simulated venue and a tiny one of our own."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

import pytest
from websockets.asyncio.server import ServerConnection, serve

from orderbook.errors import RateLimited, UnknownSymbol, UsageError, VenueUnavailable
from orderbook.sync.policy import Backoff, RetryPolicy, TokenBucket
from orderbook.live.connection import StreamConnection
from orderbook.live.rest import RestClient
from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue

SYMBOLS = ["SOL_USDC", "BTC_USDC_PERP", "SPCX.US_USDC"]
FAST = RetryPolicy(Backoff(0.01, 0.05, 2.0, 0.0), max_attempts=4)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def venue(**faults: object) -> SimulatedVenue:
    return SimulatedVenue(OrderFlow(SYMBOLS, seed=7), faults=Faults(**faults), rate=200.0)  # type: ignore[arg-type]


def test_snapshot_and_markets_round_trip() -> None:
    async def main() -> None:
        async with venue() as v, RestClient(v.rest_url, retry=FAST) as rest:
            snap = await rest.fetch_snapshot("SOL_USDC", 50)
            assert snap.last_update_id > 0 and 0 < len(snap.bids) <= 50
            dotted = await rest.fetch_snapshot("SPCX.US_USDC", 50)
            assert dotted.last_update_id > 0 and 0 < len(dotted.asks) <= 50
            markets, skipped = await rest.fetch_markets()
            assert [m.symbol for m in markets] == SYMBOLS and skipped == 0
            assert markets[1].is_perp and markets[0].tick_size is not None
            with pytest.raises(UnknownSymbol):
                await rest.fetch_snapshot("NOPE_USDC")
            with pytest.raises(UsageError):
                await rest.fetch_snapshot("SOL_USDC", limit=7)
    run(main())


def test_429_honours_retry_after_and_pauses_the_bucket() -> None:
    async def main() -> None:
        async with venue(rest_429_burst=1) as v, RestClient(v.rest_url, retry=FAST) as rest:
            started = time.monotonic()
            snap = await rest.fetch_snapshot("SOL_USDC")
            assert time.monotonic() - started >= 0.95  # the venue says Retry-After: 1
            assert snap.last_update_id > 0
            assert rest.stats.responses_429 == 1 and rest.stats.retries == 1
            assert v.stats.responses_429 == 1
    run(main())


def test_429_storm_gives_up_with_rate_limited() -> None:
    policy = RetryPolicy(Backoff(0.01, 0.05, 2.0, 0.0), max_rate_limited=2, max_retry_after=0.01)
    async def main() -> None:
        async with venue(rest_429_burst=5) as v, RestClient(v.rest_url, retry=policy) as rest:
            with pytest.raises(RateLimited) as info:
                await rest.fetch_snapshot("SOL_USDC")
            assert info.value.retry_after == 1
    run(main())


def test_5xx_are_retried_then_surface_as_venue_unavailable() -> None:
    async def main() -> None:
        async with venue(rest_5xx_rate=1.0) as v, RestClient(v.rest_url, retry=FAST) as rest:
            with pytest.raises(VenueUnavailable, match="HTTP 5"):
                await rest.fetch_snapshot("SOL_USDC")
            assert rest.stats.server_errors == 4 and rest.stats.retries == 3
            v.faults.rest_5xx_rate = 0.5
            for _ in range(5):
                assert (await rest.fetch_snapshot("SOL_USDC")).last_update_id
    run(main())


def test_timeouts_are_retried_and_wrapped() -> None:
    async def main() -> None:
        async with venue(rest_delay=0.5) as v, RestClient(v.rest_url, retry=FAST, timeout=0.1) as rest:
            with pytest.raises(VenueUnavailable, match="timed out") as info:
                await rest.fetch_snapshot("SOL_USDC")
            assert info.value.__cause__ is not None
            assert rest.stats.timeouts == 4
    run(main())


def refusing_port() -> socket.socket:
    """A loopback socket bound to an ephemeral port but not listening: connecting
    to its port is refused, and no other process can listen there meanwhile
    (unlike a fixed port number, or the port of a server just closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_refused_connection_is_venue_unavailable() -> None:
    async def main() -> None:
        with refusing_port() as sock:
            port = sock.getsockname()[1]
            async with RestClient(f"http://127.0.0.1:{port}", retry=FAST) as rest:
                with pytest.raises(VenueUnavailable):
                    await rest.fetch_markets()
                assert rest.stats.connect_errors == 4
    run(main())


def test_bucket_paces_requests() -> None:
    async def main() -> None:
        bucket = TokenBucket(rate=20.0, capacity=2)
        async with venue() as v, RestClient(v.rest_url, bucket=bucket) as rest:
            started = time.monotonic()
            await asyncio.gather(*(rest.fetch_snapshot("SOL_USDC", 5) for _ in range(8)))
            assert time.monotonic() - started >= 6 / 20 - 0.02
            assert v.stats.depth_requests == 8
    run(main())


class Recorder:
    """A StreamHandler that records what happened."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.frames: list[str | bytes] = []
        self.changed = asyncio.Event()

    def on_connected(self) -> None:
        self.events.append(("connected", None))
        self.changed.set()

    def on_subscribed(self, streams: Sequence[str]) -> None:
        self.events.append(("subscribed", list(streams)))

    def on_frames(self, frames: Sequence[str | bytes], received_us: int) -> None:
        assert frames and abs(received_us - time.time_ns() // 1000) < 1_000_000
        self.frames.extend(frames)
        self.changed.set()

    def on_disconnected(self, reason: str) -> None:
        self.events.append(("disconnected", reason))
        self.changed.set()

    async def until(self, predicate: object, timeout: float = 30.0) -> None:
        """Wait until ``predicate()`` is true; ``timeout`` only bounds a hang."""
        async def wait() -> None:
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


def test_subscribes_in_batches_and_reconnects_after_close_and_abort() -> None:
    async def main() -> None:
        async with venue() as v:
            rec = Recorder()
            streams = [f"depth.{s}" for s in SYMBOLS] + [f"bookTicker.{s}" for s in SYMBOLS]
            conn = StreamConnection(v.ws_url, streams, rec, batch_size=3,
                                    backoff=Backoff(0.01, 0.05, 2.0, 0.5))
            task = asyncio.create_task(conn.run())
            await rec.until(lambda: len(rec.frames) > 20)
            assert rec.events[:3] == [("connected", None), ("subscribed", streams[:3]),
                                      ("subscribed", streams[3:])]
            await v.disconnect_all(code=1001)
            await rec.until(lambda: sum(e[0] == "connected" for e in rec.events) == 2)
            disconnected = [e for e in rec.events if e[0] == "disconnected"]
            assert "1001" in str(disconnected[0][1])
            await v.disconnect_all(abrupt=True)
            await rec.until(lambda: sum(e[0] == "connected" for e in rec.events) == 3)
            count = len(rec.frames)
            await rec.until(lambda: len(rec.frames) > count + 10)
            assert conn.connects == 3 and conn.connected
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(main())


def test_answers_server_pings_and_survives_refused_connects() -> None:
    """A server pinging every 50 ms with a 300 ms pong timeout keeps us connected;
    while nothing listens the connection keeps retrying with backoff."""
    async def main() -> None:
        async def handler(conn: ServerConnection) -> None:
            async for _ in conn:
                await conn.send('{"stream": "depth.X", "data": {}}')

        # A pong timeout well above a loaded machine's scheduling hiccups, and a
        # watch longer than interval + timeout: a client that did not answer
        # pings would still be closed within it.
        async with serve(handler, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.3) as server:
            port = server.sockets[0].getsockname()[1]
            rec = Recorder()
            conn = StreamConnection(f"ws://127.0.0.1:{port}/", ["depth.X"], rec,
                                    ping_interval=None, backoff=Backoff(0.01, 0.05, 2.0, 0.5))
            task = asyncio.create_task(conn.run())
            await rec.until(lambda: rec.frames)
            await asyncio.sleep(1.0)  # twenty server pings
            assert [e[0] for e in rec.events] == ["connected", "subscribed"]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with refusing_port() as sock:
            port = sock.getsockname()[1]
            rec = Recorder()
            conn = StreamConnection(f"ws://127.0.0.1:{port}/", ["depth.X"], rec,
                                    backoff=Backoff(0.01, 0.02, 2.0, 0.0))
            task = asyncio.create_task(conn.run())
            deadline = time.monotonic() + 30  # only bounds a hang
            while conn.failures < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert not conn.connected and rec.events == []
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(main())
