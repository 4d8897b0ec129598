"""``orderbook serve``: the local mirror, checked against the simulated venue over loopback.

Every client here is independent of the mirror's code paths: our own
``Replicator`` (pointed at the mirror instead of the venue), ccxt's Backpack
exchange when ccxt is installed, raw WebSocket and HTTP clients.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from loopback import Proxy, mismatches, wait_caught_up
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from orderbook.sync.engine import EngineOptions
from orderbook.serve import MirrorLimits, MirrorServer
from orderbook.live.replicator import Replicator
from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue, TrueBook
from paths import REPO

SYMBOLS = ["SOL_USDC", "BTC_USDC_PERP", "ETH_USDC"]
ROOT = REPO
HAVE_CCXT = importlib.util.find_spec("ccxt") is not None


def run(coro: Any, timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


@asynccontextmanager
async def stack(*, rate: float = 300.0, seed: int = 7, **mirror_options: Any,
                ) -> AsyncIterator[tuple[OrderFlow, SimulatedVenue, Replicator, MirrorServer]]:
    """Venue -> upstream Replicator -> MirrorServer on an ephemeral port."""
    flow = OrderFlow(SYMBOLS, seed=seed)
    async with SimulatedVenue(flow, faults=Faults(aggregate=True), rate=rate) as venue:
        async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as upstream:
            async with MirrorServer(upstream, port=0, **mirror_options) as mirror:
                yield flow, venue, upstream, mirror


async def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` (plain or async) until true; ``timeout`` only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not await _call(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def _call(predicate: Callable[[], Any]) -> Any:
    result = predicate()
    return await result if asyncio.iscoroutine(result) else result


def metric_families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(text)}


def value(families: dict[str, list[tuple[str, dict[str, str], float]]], family: str,
          sample: str | None = None, **labels: str) -> float:
    """The one sample of ``family`` named ``sample`` (default: any) with ``labels``."""
    found = [v for name, lab, v in families[family]
             if (sample is None or name == sample) and all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (family, sample, labels, families[family])
    return found[0]


def float_levels(levels: list[tuple[Decimal, Decimal]]) -> list[list[float]]:
    return [[float(p), float(q)] for p, q in levels]


# ------------------------------------------------------------------ the mirror
def test_downstream_replica_stays_exact_through_an_upstream_resync() -> None:
    """The acceptance path in process: a Replicator fed by the mirror (depth and
    bookTicker) equals the venue's truth; an upstream disconnect turns /health
    503 then 200, and reaches the downstream as one synthetic frame, not a gap."""
    async def main() -> None:
        async with stack() as (flow, venue, upstream, mirror), httpx.AsyncClient() as http:
            async with Replicator(SYMBOLS, rest_url=mirror.url, ws_url=mirror.ws_url,
                                  sync=EngineOptions(book_ticker=True)) as down:
                await down.wait_synced(timeout=10)
                await wait_for(lambda: _status(http, mirror.url + "/health", 200), what="healthy")
                await asyncio.sleep(0.3)

                venue.faults.rest_delay = 0.5  # keep the upstream resync visible
                await venue.disconnect_all()
                unavailable: list[httpx.Response] = []  # the 503 itself: a second GET may be late
                await wait_for(lambda: _status(http, mirror.url + "/health", 503, unavailable),
                               what="503")
                health = orjson.loads(unavailable[-1].content)
                assert health["status"] == "unavailable"
                assert {s["status"] for s in health["symbols"].values()} <= {"resyncing", "synced"}
                assert not all(s["ready"] for s in health["symbols"].values())
                depth = await http.get(mirror.url + "/api/v1/depth", params={"symbol": "SOL_USDC"})
                assert depth.status_code in (200, 503)
                venue.faults.rest_delay = 0.0
                await wait_for(lambda: _status(http, mirror.url + "/health", 200), what="200 again")
                await asyncio.sleep(0.3)

                await venue.pause()
                await wait_caught_up(upstream, flow)
                await wait_caught_up(down, flow)
                assert mismatches(down, flow) == []
                for symbol, stats in down.stats().symbols.items():
                    assert (stats.gaps, stats.resyncs, stats.snapshots_applied) == (0, 0, 1), symbol
                    assert stats.ticker_mismatches == 0
                    published = mirror.published_book(symbol)
                    assert published is not None
                    assert published.last_update_id == flow.truth(symbol).last_update_id

                families = metric_families((await http.get(mirror.url + "/metrics")).text)
                for symbol in SYMBOLS:
                    assert value(families, "orderbook_resyncs", symbol=symbol) >= 1
                    assert value(families, "orderbook_frames", symbol=symbol) > 10
                    assert value(families, "orderbook_synced", symbol=symbol) == 1
                    assert value(families, "orderbook_mirror_ready", symbol=symbol) == 1
                    assert value(families, "orderbook_mirror_resync_frames", symbol=symbol) >= 1
                    assert value(families, "orderbook_mirror_frames_published", symbol=symbol) > 10
                    assert value(families, "orderbook_snapshot_requests", symbol=symbol) >= 2
                assert value(families, "orderbook_ws_reconnects") >= 1
                assert value(families, "orderbook_rest_429") == 0
                assert value(families, "orderbook_mirror_clients") == 1
                assert value(families, "orderbook_mirror_subscriptions", stream="depth") == 3
                assert value(families, "orderbook_mirror_subscriptions", stream="bookTicker") == 3
                assert value(families, "orderbook_mirror_slow_consumers") == 0
                assert value(families, "orderbook_mirror_messages_sent") > 30
                assert value(families, "orderbook_mirror_http_requests", endpoint="health",
                             code="503") >= 1
                count = value(families, "orderbook_mirror_resync_seconds",
                              "orderbook_mirror_resync_seconds_count")
                assert count >= 3
                buckets = [v for name, labels, v in families["orderbook_mirror_engine_to_publish_seconds"]
                           if name.endswith("_bucket")]
                assert buckets == sorted(buckets) and buckets[-1] > 10
    run(main())


async def _status(http: httpx.AsyncClient, url: str, expected: int,
                  keep: list[httpx.Response] | None = None) -> bool:
    response = await http.get(url)
    if keep is not None:
        keep.append(response)
    return response.status_code == expected


def test_rest_endpoints_forwarding_and_websocket_errors() -> None:
    async def main() -> None:
        async with stack() as (flow, venue, upstream, mirror), httpx.AsyncClient() as http:
            await upstream.wait_synced(timeout=10)
            await wait_for(lambda: mirror.ready("SOL_USDC") and mirror.ready("ETH_USDC"))
            await venue.pause()
            await wait_caught_up(upstream, flow)
            await wait_for(lambda: all(mirror.published_book(s).last_update_id  # type: ignore[union-attr]
                                       == flow.truth(s).last_update_id for s in SYMBOLS))
            api = mirror.url + "/api/v1"

            depth = await http.get(api + "/depth", params={"symbol": "SOL_USDC", "limit": "5"})
            assert depth.status_code == 200
            assert depth.headers.get("connection", "keep-alive").lower() == "keep-alive"
            body = depth.json()
            truth = flow.truth("SOL_USDC")
            assert body["lastUpdateId"] == str(truth.last_update_id)
            assert isinstance(body["timestamp"], int)
            assert [[Decimal(p), Decimal(q)] for p, q in body["bids"]] == [list(x) for x in truth.bids(5)]
            assert [[Decimal(p), Decimal(q)] for p, q in body["asks"]] == [list(x) for x in truth.asks(5)]
            full = (await http.get(api + "/depth", params={"symbol": "ETH_USDC"})).json()
            assert len(full["bids"]) == len(flow.truth("ETH_USDC").bids())

            for params, code in (({"symbol": "SOL_USDC", "limit": "7"}, "INVALID_CLIENT_REQUEST"),
                                 ({"symbol": "DOGE_USDC"}, "INVALID_SYMBOL"),
                                 ({}, "INVALID_CLIENT_REQUEST")):
                refused = await http.get(api + "/depth", params=params)
                assert (refused.status_code, refused.json()["code"]) == (400, code)

            before = venue.stats.markets_requests
            markets = await http.get(api + "/markets")
            assert markets.status_code == 200
            assert venue.stats.markets_requests == before, "served from the cache"
            assert markets.json() == (await http.get(venue.rest_url + "/api/v1/markets")).json()

            one = await http.get(api + "/market", params={"symbol": "BTC_USDC_PERP"})
            assert one.status_code == 200 and one.json()["marketType"] == "PERP"
            assert venue.stats.markets_requests == before + 2, "forwarded upstream"
            missing = await http.get(api + "/nothing")
            assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
            assert (await http.get(mirror.url + "/elsewhere")).status_code == 404

            async with connect(mirror.ws_url) as ws:
                await ws.send('{"method":"SUBSCRIBE","params":["depth.200ms.SOL_USDC","depth.NOPE"]}')
                replies = [orjson.loads(await ws.recv()) for _ in range(2)]
                assert [r["error"]["code"] for r in replies] == ["INVALID_STREAM"] * 2
                assert [r["stream"] for r in replies] == ["depth.200ms.SOL_USDC", "depth.NOPE"]
                await ws.send("not json")
                assert orjson.loads(await ws.recv())["error"]["code"] == "INVALID_CLIENT_REQUEST"
                await ws.send('{"method":"SUBSCRIBE","params":["bookTicker.SOL_USDC"]}')
                ticker = orjson.loads(await ws.recv())
                assert ticker["stream"] == "bookTicker.SOL_USDC"
                bid, ask = truth.best_bid(), truth.best_ask()
                assert ticker["data"]["u"] == str(truth.last_update_id)
                assert (Decimal(ticker["data"]["b"]), Decimal(ticker["data"]["B"])) == bid
                assert (Decimal(ticker["data"]["a"]), Decimal(ticker["data"]["A"])) == ask
    run(main())


def test_slow_consumer_is_closed_with_1008_and_counted() -> None:
    """A client that stops reading is closed once its queue is full; others go on."""
    async def main() -> None:
        async with stack(rate=2000.0, limits=MirrorLimits(queue_size=20, so_sndbuf=4096)) as (flow, venue, upstream, mirror):
            await upstream.wait_synced(timeout=10)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", mirror.port))
            async with connect(mirror.ws_url, sock=sock, max_queue=1) as slow:
                streams = [f"depth.{s}" for s in SYMBOLS]
                await slow.send(orjson.dumps({"method": "SUBSCRIBE", "params": streams}).decode())
                await wait_for(lambda: mirror.stats.slow_consumers == 1, what="slow consumer closed")
                with pytest.raises(ConnectionClosed):
                    while True:
                        await slow.recv()
                assert slow.close_code == 1008 and slow.close_reason == "slow consumer"
            assert mirror.stats.messages_dropped >= 21
            async with Replicator(["SOL_USDC"], rest_url=mirror.url, ws_url=mirror.ws_url) as down:
                await down.wait_synced(timeout=10)
                await venue.pause()
                await wait_caught_up(down, flow)
                assert mismatches(down, flow) == []
    run(main())


class RestSwitch:
    """A loopback HTTP forwarder whose upstream can be switched at runtime."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._http = httpx.AsyncClient()

    async def __aenter__(self) -> RestSwitch:
        self._server = await serve(self._never, "127.0.0.1", 0, process_request=self._forward)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()
        await self._http.aclose()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _never(self, conn: ServerConnection) -> None:
        await conn.close()

    async def _forward(self, conn: ServerConnection, request: Request) -> Response:
        answer = await self._http.get(self.upstream + request.path)
        headers = Headers({"Content-Type": answer.headers["content-type"],
                           "Content-Length": str(len(answer.content)), "Connection": "close"})
        return Response(answer.status_code, answer.reason_phrase, headers, answer.content)


def test_upstream_switched_to_another_book() -> None:
    """The upstream lands on a different venue: SOL_USDC's ids go backwards (its
    depth clients are closed with 1012, then re-bootstrap), ETH_USDC's jump
    forward to an unrelated book (one synthetic whole-book frame)."""
    symbols = ["SOL_USDC", "ETH_USDC"]

    async def main() -> None:
        first, second = OrderFlow(symbols, seed=2), OrderFlow(symbols, seed=1)
        async with SimulatedVenue(first, rate=200.0) as venue1, \
                SimulatedVenue(second, rate=200.0) as venue2, \
                Proxy(venue1.ws_url) as ws_switch, RestSwitch(venue1.rest_url) as rest_switch:
            await venue2.pause()
            async with Replicator(symbols, rest_url=rest_switch.url, ws_url=ws_switch.url) as upstream, \
                    MirrorServer(upstream, port=0) as mirror, \
                    Replicator(symbols, rest_url=mirror.url, ws_url=mirror.ws_url) as down:
                await down.wait_synced(timeout=10)
                await asyncio.sleep(0.2)
                await venue1.pause()
                assert second.truth("SOL_USDC").last_update_id < first.truth("SOL_USDC").last_update_id
                assert second.truth("ETH_USDC").last_update_id > first.truth("ETH_USDC").last_update_id
                ws_switch.upstream, rest_switch.upstream = venue2.ws_url, venue2.rest_url
                ws_switch.drop_all()
                venue2.resume()
                await wait_for(lambda: down.stats().connection.reconnects >= 1, what="1012 close")
                await asyncio.sleep(0.5)
                await venue2.pause()
                await wait_caught_up(upstream, second)
                await wait_caught_up(down, second)
                assert mismatches(down, second) == []
                async with httpx.AsyncClient() as http:
                    families = metric_families((await http.get(mirror.url + "/metrics")).text)
                restarts = "orderbook_mirror_stream_restarts"
                assert value(families, restarts, symbol="SOL_USDC") == 1
                assert value(families, restarts, symbol="ETH_USDC") == 0
                assert value(families, "orderbook_mirror_resync_frames", symbol="ETH_USDC") >= 1
    run(main())


# ------------------------------------------------------------ the real process
async def _start_serve(venue: SimulatedVenue, symbols: list[str], log_path: Path,
                       ) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``orderbook serve`` on port 0; return the process and its base URL."""
    log_file = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orderbook.cli", "serve", *symbols, "--rest-url", venue.rest_url,
        "--ws-url", venue.ws_url, "--port", "0", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=log_file, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log_file.close()
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert line.startswith("listening on http://127.0.0.1:"), (line, log_path.read_text())
    return proc, line.split()[2]


async def _stop(proc: asyncio.subprocess.Process, signum: int) -> None:
    """Signal the process; it must exit with status 130 after SIGINT (Ctrl-C), 0
    after SIGTERM (the timeout only bounds a hang)."""
    proc.send_signal(signum)
    assert await asyncio.wait_for(proc.wait(), 30) == (130 if signum == signal.SIGINT else 0)


def test_serve_process_feeds_independent_clients_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`orderbook serve` as a real process: our Replicator and (when installed)
    ccxt's backpack exchange, pointed at it, hold the venue's true books."""
    symbols = ["SOL_USDC", "BTC_USDC_PERP"]

    async def main() -> None:
        flow = OrderFlow(symbols, seed=11)
        async with SimulatedVenue(flow, faults=Faults(aggregate=True), rate=300.0) as venue:
            proc, url = await _start_serve(venue, symbols, tmp_path / "serve.log")
            try:
                ws_url = "ws" + url[4:] + "/"
                async with Replicator(symbols, rest_url=url, ws_url=ws_url) as down:
                    await down.wait_synced(timeout=30)
                    exchange = _ccxt(url, ws_url) if HAVE_CCXT else None
                    watcher: asyncio.Task[None] | None = None
                    try:
                        if exchange is not None:
                            await exchange.load_markets(False, {"marketType": ["SPOT", "PERP"]})
                            watcher = asyncio.create_task(_watch(exchange, "SOL/USDC"))
                        await asyncio.sleep(0.5)
                        await venue.pause()
                        await wait_caught_up(down, flow)
                        assert mismatches(down, flow) == []
                        if exchange is not None:
                            await _check_ccxt(exchange, flow.truth("SOL_USDC"))
                    finally:
                        if watcher is not None:
                            watcher.cancel()
                            await asyncio.gather(watcher, return_exceptions=True)
                        if exchange is not None:
                            await exchange.close()
                await _stop(proc, signal.SIGTERM)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        log = (tmp_path / "serve.log").read_text()
        assert "mirror listening on" in log and "shutting down" in log
        assert "Traceback" not in log
    run(main())


def _ccxt(url: str, ws_url: str) -> Any:
    import ccxt.pro  # type: ignore[import-untyped]

    exchange = ccxt.pro.backpack({"urls": {"api": {
        "public": url, "private": url, "ws": {"public": ws_url, "private": ws_url}}}})
    exchange.has["fetchCurrencies"] = False  # /api/v1/assets: not served by the simulated venue
    return exchange


async def _watch(exchange: Any, symbol: str) -> None:
    """Keep ccxt's WebSocket order book of ``symbol`` up to date (until cancelled)."""
    while True:
        await exchange.watch_order_book(symbol)


async def _check_ccxt(exchange: Any, truth: TrueBook) -> None:
    """ccxt's REST snapshot and its WebSocket-maintained book both equal the truth."""
    rest = await exchange.fetch_order_book("SOL/USDC")
    assert rest["nonce"] == truth.last_update_id
    assert rest["bids"] == float_levels(truth.bids()) and rest["asks"] == float_levels(truth.asks())
    await wait_for(lambda: exchange.orderbooks.get("SOL/USDC", {}).get("nonce") == truth.last_update_id,
                   what="ccxt's book at the truth's update id")
    book = exchange.orderbooks["SOL/USDC"]
    assert [lv[:2] for lv in book["bids"]] == float_levels(truth.bids())
    assert [lv[:2] for lv in book["asks"]] == float_levels(truth.asks())


def test_serve_stops_on_sigint_and_refuses_bad_arguments(tmp_path: Path) -> None:
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=3)
        async with SimulatedVenue(flow, rate=100.0) as venue:
            proc, url = await _start_serve(venue, ["SOL_USDC"], tmp_path / "serve.log")
            try:
                async with httpx.AsyncClient() as http:
                    await wait_for(lambda: _status(http, url + "/health", 200))
                await _stop(proc, signal.SIGINT)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    run(main())
    for argv, code, message in ((["--help"], 0, "SIGINT (exit 130)"),
                                ([], 2, "either SYMBOL... or --all"),
                                (["SOL_USDC", "--all"], 2, "either SYMBOL... or --all")):
        import subprocess

        done = subprocess.run([sys.executable, "-m", "orderbook.cli", "serve", *argv], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == code, done
        assert message in done.stdout + done.stderr
