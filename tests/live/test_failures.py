"""Failures that speak: wrong URLs, a WebSocket that never connects, one that drops.

Real sockets on loopback only: the simulated venue, a proxy in front of it, a
port that refuses connections and a TCP server that never answers a handshake.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence

import pytest
from loopback import Proxy, mismatches, wait_caught_up

from orderbook.sync.status import Reason, Status
from orderbook.live.config import Connection
from orderbook.errors import UsageError, VenueUnavailable
from orderbook.sync.policy import Backoff
from orderbook import NotSynced, Replicator
from orderbook.live.connection import StreamConnection
from orderbook.live.urls import check_rest_url, check_ws_url
from orderbook.testing.venue import DEFAULT_SYMBOLS, OrderFlow, SimulatedVenue

SYMBOLS = list(DEFAULT_SYMBOLS)
FAST = Backoff(0.02, 0.1, 2.0, 0.0)


def run(coro: object, timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; ``timeout`` only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        await asyncio.sleep(0.01)


def refusing_port() -> socket.socket:
    """A loopback socket bound but not listening: connecting to its port is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class Silent:
    """A TCP server that accepts connections and never says a word (a WebSocket
    handshake to it can only time out)."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()


class Handler:
    """A StreamHandler that only counts."""

    def __init__(self) -> None:
        self.connected = 0

    def on_connected(self) -> None:
        self.connected += 1

    def on_subscribed(self, streams: Sequence[str]) -> None:
        pass

    def on_frames(self, frames: Sequence[str | bytes], received_us: int) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


# ------------------------------------------------------------------ URLs
@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "https://ws.backpack.exchange",
                                 "127.0.0.1:9", "ws://", "wss:///path"])
def test_a_url_that_is_no_websocket_url_is_a_usage_error_naming_it(url: str) -> None:
    with pytest.raises(UsageError, match="invalid WebSocket URL") as info:
        check_ws_url(url)
    assert repr(url) in str(info.value)
    with pytest.raises(UsageError, match="invalid WebSocket URL"):
        StreamConnection(url, ["depth.SOL_USDC"], Handler())


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9", "ftp://x", "127.0.0.1", "http://", "http://x:99999"])
def test_a_url_that_is_no_rest_url_is_a_usage_error_naming_it(url: str) -> None:
    with pytest.raises(UsageError, match="invalid REST URL") as info:
        check_rest_url(url)
    assert repr(url) in str(info.value)


def test_good_urls_pass() -> None:
    for url in ("ws://127.0.0.1:9/", "wss://ws.backpack.exchange"):
        assert check_ws_url(url) == url
    for url in ("http://127.0.0.1:9", "https://api.backpack.exchange"):
        assert check_rest_url(url) == url


@pytest.mark.parametrize(("which", "url"), [("ws_url", "http://127.0.0.1:9"),
                                            ("rest_url", "ws://127.0.0.1:9/")])
def test_start_refuses_a_wrong_url_before_any_request(which: str, url: str) -> None:
    """Regression: a ws_url with an http:// scheme was refused inside a
    background task, whose exception nobody read: everything hung."""
    async def main() -> None:
        async with SimulatedVenue(OrderFlow(seed=1), rate=50.0) as venue:
            urls = {"rest_url": venue.rest_url, "ws_url": venue.ws_url, which: url}
            rep = Replicator(SYMBOLS, **urls)
            started = time.monotonic()
            with pytest.raises(UsageError, match=f"invalid {'WebSocket' if which == 'ws_url' else 'REST'} URL") as info:
                await rep.start()
            assert repr(url) in str(info.value)
            assert time.monotonic() - started < 5  # the bound: refused at once
            assert venue.stats.markets_requests == 0 and venue.stats.connections == 0
            await rep.close()
    run(main())


# ------------------------------------------------------- never connected
def test_a_websocket_that_never_connects_gives_up_naming_the_url_and_the_cause() -> None:
    """Regression: a refused WebSocket was retried forever, silently."""
    async def main() -> None:
        async with SimulatedVenue(OrderFlow(seed=2), rate=50.0) as venue:
            with refusing_port() as sock:
                url = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
                rep = Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=url,
                                 connection=Connection(connect_timeout=1.0, backoff=FAST))
                updates = rep.updates()
                async with rep:
                    # while it tries, every symbol says why it is not synced
                    await until(lambda: rep.stats().connection.last_error is not None)
                    figures = rep.stats().symbols["SPCX.US_USDC"]
                    assert figures.not_synced is NotSynced.CONNECTING
                    assert figures.reason is not None and url in figures.reason
                    assert "ConnectionRefusedError" in figures.reason
                    assert rep.failure is None
                    started = time.monotonic()
                    with pytest.raises(VenueUnavailable) as info:
                        await rep.wait_synced(timeout=30)
                    message = str(info.value)
                    assert f"could not connect to {url} within 1 s" in message
                    assert "ConnectionRefusedError" in message and "\n" not in message
                    assert time.monotonic() - started < 30
                    assert rep.failure is info.value
                    for symbol in SYMBOLS:
                        assert rep.status(symbol) == "error" and rep.status(symbol) is Status.ERROR
                        figures = rep.stats().symbols[symbol]
                        assert figures.not_synced is NotSynced.ERROR
                        assert figures.cause is Reason.FAILED and figures.reason == message
                    with pytest.raises(VenueUnavailable):  # later calls say it again
                        await rep.wait_synced("SOL_USDC")
                    with pytest.raises(VenueUnavailable):  # and consumers are told
                        await anext(updates)
    run(main())


def test_each_attempt_is_cut_short_so_giving_up_takes_the_give_up_time() -> None:
    """A host that accepts TCP and never answers the handshake: the default
    10 s opening timeout would overrun a 1 s give-up time; attempts are cut to
    what is left of it."""
    async def main() -> None:
        async with Silent() as url:
            conn = StreamConnection(url, ["depth.SOL_USDC"], Handler(), backoff=FAST,
                                    give_up_after=1.0)
            started = time.monotonic()
            with pytest.raises(VenueUnavailable, match="TimeoutError") as info:
                await conn.run()
            elapsed = time.monotonic() - started
            assert 1.0 <= elapsed < 5.0, elapsed
            assert url in str(info.value) and conn.connects == 0 and conn.failures >= 1
    run(main())


def test_give_up_after_none_retries_forever() -> None:
    async def main() -> None:
        with refusing_port() as sock:
            conn = StreamConnection(f"ws://127.0.0.1:{sock.getsockname()[1]}/", ["depth.X"],
                                    Handler(), backoff=FAST, give_up_after=None)
            task = asyncio.create_task(conn.run())
            await until(lambda: conn.failures >= 20)
            assert not task.done()
            assert "ConnectionRefusedError" in str(conn.last_error)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(UsageError, match="give_up_after"):
        StreamConnection("ws://x/", [], Handler(), give_up_after=0)
    with pytest.raises(UsageError, match="connect_timeout"):
        Replicator(SYMBOLS, connection=Connection(connect_timeout=-1))
    run(main())


# ------------------------------------------------------ once connected
def test_once_connected_it_reconnects_forever_and_says_why_it_is_not_synced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An outage far longer than connect_timeout, after a first connection: the
    replicator keeps trying (never fails), logs each failure with the URL, each
    symbol's reason names the lost connection, and it all heals afterwards."""
    async def main() -> None:
        flow = OrderFlow(seed=3)
        async with SimulatedVenue(flow, rate=300.0) as venue, Proxy(venue.ws_url) as proxy:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=proxy.url,
                                  connection=Connection(connect_timeout=0.3, backoff=FAST)) as rep:
                await rep.wait_synced(timeout=10)
                proxy.refuse = True
                proxy.drop_all()
                await until(lambda: not rep.stats().connection.connected)
                await asyncio.sleep(1.5)  # five times connect_timeout
                assert rep.failure is None
                stats = rep.stats()
                for symbol in SYMBOLS:
                    assert rep.status(symbol) == "resyncing"
                    figures = stats.symbols[symbol]
                    assert figures.not_synced is NotSynced.DISCONNECTED
                    assert figures.reason is not None
                    assert f"connection to {proxy.url} lost" in figures.reason
                    assert "reconnecting" in figures.reason
                failures = [r.getMessage() for r in caplog.records
                            if r.name == "orderbook.transport" and "reconnecting in" in r.getMessage()]
                assert len(failures) >= 3 and all(proxy.url in line for line in failures)
                proxy.refuse = False
                await rep.wait_synced(timeout=10)
                assert all(s.not_synced is None and s.reason is None
                           for s in rep.stats().symbols.values())
                await asyncio.sleep(0.2)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
    caplog.set_level(logging.WARNING, logger="orderbook.transport")
    run(main())


def test_a_symbol_waiting_for_its_snapshot_says_so() -> None:
    async def main() -> None:
        async with SimulatedVenue(OrderFlow(seed=4), rate=100.0) as venue:
            venue.faults.rest_delay = 1.0
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                await until(lambda: rep.stats().connection.connected)
                figures = rep.stats().symbols["TSLA.US_USDC_PERP"]
                assert figures.not_synced is NotSynced.SNAPSHOT
                assert figures.cause is Reason.STARTING
                assert figures.reason == "awaiting a snapshot (initial snapshot)"
    run(main())


def test_an_unreachable_rest_api_is_reported_by_start_naming_the_url() -> None:
    async def main() -> None:
        with refusing_port() as sock:
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            with pytest.raises(VenueUnavailable) as info:
                async with Replicator(SYMBOLS, rest_url=url, ws_url="ws://127.0.0.1:9/"):
                    pass
            assert f"GET {url}/api/v1/markets" in str(info.value)
    run(main())
