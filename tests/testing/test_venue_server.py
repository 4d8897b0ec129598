"""The simulated venue over real loopback sockets: REST, WebSocket streams, faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue, SnapshotOrder
from paths import CAPTURES

SYMBOL = "SOL_USDC"
DOTTED = "SPCX.US_USDC"
SYMBOLS = [SYMBOL, "BTC_USDC_PERP", DOTTED, "TSLA.US_USDC_PERP"]
CAPTURE = CAPTURES / "real-binance-spot-2021-10-12.jsonl"
Book = dict[str, dict[Decimal, Decimal]]


def run(test: Callable[[], Coroutine[Any, Any, None]], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


def venue(faults: Faults | None = None, *, rate: float = 1000.0, **kwargs: Any) -> SimulatedVenue:
    return SimulatedVenue(OrderFlow(SYMBOLS, seed=7), faults, rate=rate, **kwargs)


def connect(v: SimulatedVenue) -> websockets.connect:
    """A client that reads eagerly, so a flooded connection still closes at once."""
    return websockets.connect(v.ws_url, max_queue=None, ping_interval=None)


async def subscribe(ws: ClientConnection, *streams: str, method: str = "SUBSCRIBE") -> None:
    await ws.send(json.dumps({"method": method, "params": list(streams)}))


async def receive(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def frames(ws: ClientConnection, count: int, stream: str | None = None) -> list[Any]:
    """The next `count` data payloads (of `stream`, if given)."""
    found: list[Any] = []
    while len(found) < count:
        message = await receive(ws)
        if stream is None or message.get("stream") == stream:
            found.append(message["data"])
    return found


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; ``timeout`` only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        await asyncio.sleep(0.01)


def empty_book() -> Book:
    return {"bid": {}, "ask": {}}


def apply(book: Book, data: dict[str, Any]) -> None:
    for side, key in (("bid", "b"), ("ask", "a")):
        for price, quantity in data[key]:
            if Decimal(quantity):
                book[side][Decimal(price)] = Decimal(quantity)
            else:
                book[side].pop(Decimal(price), None)


def truth_book(v: SimulatedVenue, symbol: str = SYMBOL) -> Book:
    truth = v.flow.truth(symbol)
    return {"bid": dict(truth.bids()), "ask": dict(truth.asks())}


class Replica:
    """A tiny bootstrap: buffer frames, fetch a snapshot, apply in strict sequence."""

    def __init__(self) -> None:
        self.book = empty_book()
        self.last: int | None = None
        self.started = False
        self.frames = 0

    def load(self, snapshot: dict[str, Any]) -> None:
        self.book = empty_book()
        apply(self.book, {"b": snapshot["bids"], "a": snapshot["asks"]})
        self.last = int(snapshot["lastUpdateId"])

    def feed(self, data: dict[str, Any]) -> None:
        assert self.last is not None
        first, last = data["U"], data["u"]
        if last <= self.last:
            return
        if self.started:
            assert first == self.last + 1, "gap"
        else:
            assert first <= self.last + 1 <= last, "snapshot too old"
            self.started = True
        apply(self.book, data)
        self.last = last
        self.frames += 1


async def drain(ws: ClientConnection) -> None:
    """Read until the connection is quiet, so that closing it is quick."""
    while True:
        try:
            await receive(ws, timeout=0.2)
        except TimeoutError:
            return


async def rebuild(
    v: SimulatedVenue, stream: str, symbol: str = SYMBOL, applied: int = 20
) -> Replica:
    """Rebuild `symbol` from `stream` while the venue runs, then pause and catch up."""
    replica = Replica()
    async with connect(v) as ws, httpx.AsyncClient() as http:
        await subscribe(ws, stream)
        buffered = await frames(ws, 1, stream)
        response = await http.get(f"{v.rest_url}/api/v1/depth", params={"symbol": symbol})
        replica.load(response.json())
        for data in buffered:
            replica.feed(data)
        while replica.frames < applied:
            replica.feed((await frames(ws, 1, stream))[0])
        await v.pause()
        while replica.last != v.flow.truth(symbol).last_update_id:
            replica.feed((await frames(ws, 1, stream))[0])
    return replica


# --- REST -------------------------------------------------------------------------


def test_rest_depth_markets_and_errors() -> None:
    async def scenario() -> None:
        async with venue() as v, httpx.AsyncClient(base_url=v.rest_url) as http:
            depth = await http.get("/api/v1/depth", params={"symbol": SYMBOL, "limit": 5})
            assert depth.status_code == 200
            assert depth.headers["connection"] == "close"
            body = depth.json()
            assert len(body["bids"]) == len(body["asks"]) == 5
            assert isinstance(body["lastUpdateId"], str) and isinstance(body["timestamp"], int)
            bids = [Decimal(p) for p, _ in body["bids"]]
            asks = [Decimal(p) for p, _ in body["asks"]]
            assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
            assert bids[0] < asks[0]

            markets = (await http.get("/api/v1/markets")).json()
            assert [m["symbol"] for m in markets] == SYMBOLS
            by_symbol = {m["symbol"]: m for m in markets}
            assert by_symbol["BTC_USDC_PERP"]["marketType"] == "PERP"
            assert by_symbol[SYMBOL]["marketType"] == "SPOT"
            sol = by_symbol[SYMBOL]
            assert (sol["baseSymbol"], sol["quoteSymbol"]) == ("SOL", "USDC")
            assert sol["orderBookState"] == "Open" and sol["visible"] is True
            tick = Decimal(sol["filters"]["price"]["tickSize"])
            step = Decimal(sol["filters"]["quantity"]["stepSize"])
            for price, quantity in body["bids"] + body["asks"]:
                assert Decimal(price) % tick == 0 and Decimal(quantity) % step == 0
            one = await http.get("/api/v1/market", params={"symbol": SYMBOL})
            assert one.json() == sol

            unknown = await http.get("/api/v1/depth", params={"symbol": "NOPE_USDC"})
            assert (unknown.status_code, unknown.json()["code"]) == (400, "INVALID_SYMBOL")
            bad_limit = await http.get("/api/v1/depth", params={"symbol": SYMBOL, "limit": 7})
            assert bad_limit.status_code == 400
            missing = await http.get("/api/v1/nothing")
            assert missing.status_code == 404
            assert v.stats.depth_requests == 3 and v.stats.markets_requests == 2

    run(scenario)


def test_httpx_many_sequential_and_concurrent_requests() -> None:
    async def scenario() -> None:
        async with venue() as v, httpx.AsyncClient(base_url=v.rest_url) as http:
            params: dict[str, str | int] = {"symbol": SYMBOL, "limit": 100}
            for _ in range(60):
                assert (await http.get("/api/v1/depth", params=params)).status_code == 200
            answers = await asyncio.gather(
                *(http.get("/api/v1/depth", params=params) for _ in range(60)),
                *(http.get("/api/v1/markets") for _ in range(20)),
            )
            assert {a.status_code for a in answers} == {200}

    run(scenario)


def test_snapshot_lag_fault() -> None:
    async def scenario() -> None:
        async with venue() as v, httpx.AsyncClient(base_url=v.rest_url) as http:
            await asyncio.sleep(0.2)
            await v.pause()
            v.faults.snapshot_lag = 5
            body = (await http.get("/api/v1/depth", params={"symbol": SYMBOL})).json()
            assert int(body["lastUpdateId"]) == v.flow.truth(SYMBOL).last_update_id - 5
            assert body == v.flow.snapshot(SYMBOL, lag=5)

    run(scenario)


def test_429_burst_sets_retry_after_then_recovers() -> None:
    async def scenario() -> None:
        async with venue(Faults(rest_429_burst=2)) as v, httpx.AsyncClient() as http:
            url, params = f"{v.rest_url}/api/v1/depth", {"symbol": SYMBOL}
            statuses = []
            for _ in range(3):
                response = await http.get(url, params=params)
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert int(response.headers["retry-after"]) >= 1
                    assert response.json()["code"] == "TOO_MANY_REQUESTS"
            assert statuses == [429, 429, 200]
            assert v.faults.rest_429_burst == 0 and v.stats.responses_429 == 2

    run(scenario)


def test_sliding_window_limit() -> None:
    async def scenario() -> None:
        async with venue(Faults(rest_limit_per_minute=3)) as v, httpx.AsyncClient() as http:
            url = f"{v.rest_url}/api/v1/markets"
            statuses = [(await http.get(url)).status_code for _ in range(5)]
            assert statuses == [200, 200, 200, 429, 429]
            limited = await http.get(url)
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            v.faults.rest_limit_per_minute = 0
            assert (await http.get(url)).status_code == 200

    run(scenario)


def test_5xx_and_delay_faults() -> None:
    async def scenario() -> None:
        async with venue(Faults(rest_5xx_rate=1.0)) as v, httpx.AsyncClient() as http:
            url, params = f"{v.rest_url}/api/v1/depth", {"symbol": SYMBOL}
            failed = await http.get(url, params=params)
            assert failed.status_code in (500, 502, 503)
            assert failed.json()["code"] == "SERVER_ERROR"
            assert v.stats.responses_5xx == 1
            v.faults.rest_5xx_rate = 0.0
            v.faults.rest_delay = 0.3
            started = time.monotonic()
            assert (await http.get(url, params=params)).status_code == 200
            assert time.monotonic() - started >= 0.3

    run(scenario)


def test_faults_reject_invalid_values() -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.drop_rate = 1.5
    with pytest.raises(ValueError):
        faults.snapshot_lag = -1
    with pytest.raises(ValueError):
        Faults(rest_delay=100.0)
    with pytest.raises(ValueError, match="snapshot_order must be one of 'descending', 'docs'"):
        Faults(snapshot_order="ascending")
    assert Faults(snapshot_order="docs").snapshot_order is SnapshotOrder.DOCS


def test_snapshot_order_option() -> None:
    """Best first by default; bids ascending as in the venue docs' example; each
    side shuffled (seeded): the same levels every time, only their order differs."""
    async def scenario() -> None:
        async with venue() as v, httpx.AsyncClient(base_url=v.rest_url) as http:
            await asyncio.sleep(0.1)
            await v.pause()

            async def prices(order: str | SnapshotOrder) -> tuple[list[Decimal], list[Decimal]]:
                v.faults.snapshot_order = order  # type: ignore[assignment]
                body = (await http.get("/api/v1/depth", params={"symbol": DOTTED})).json()
                expected = v.flow.snapshot(DOTTED)
                assert sorted(body["bids"]) == sorted(expected["bids"])
                assert sorted(body["asks"]) == sorted(expected["asks"])
                assert body["lastUpdateId"] == expected["lastUpdateId"]
                return ([Decimal(p) for p, _ in body["bids"]], [Decimal(p) for p, _ in body["asks"]])

            bids, asks = await prices(SnapshotOrder.DESCENDING)
            assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
            bids, asks = await prices("docs")
            assert bids == sorted(bids) and asks == sorted(asks) and len(bids) >= 10
            shuffled = [await prices(SnapshotOrder.SHUFFLED) for _ in range(3)]
            for bids, asks in shuffled:
                assert bids != sorted(bids) and bids != sorted(bids, reverse=True)
                assert asks != sorted(asks) and asks != sorted(asks, reverse=True)
            assert shuffled[0] != shuffled[1] or shuffled[1] != shuffled[2]

    run(scenario)


# --- WebSocket: exact rebuilds ------------------------------------------------------


def test_rebuild_from_realtime_depth_equals_truth_and_ticker_is_the_touch() -> None:
    async def scenario() -> None:
        async with venue() as v:
            async with connect(v) as ticker_ws:
                await subscribe(ticker_ws, f"bookTicker.{SYMBOL}")
                replica = await rebuild(v, f"depth.{SYMBOL}")
                assert replica.book == truth_book(v)
                tickers = []
                while True:
                    try:
                        tickers.append(await receive(ticker_ws, timeout=0.5))
                    except TimeoutError:
                        break
            last = tickers[-1]["data"]
            truth = v.flow.truth(SYMBOL)
            assert last["e"] == "bookTicker" and last["s"] == SYMBOL
            assert int(last["u"]) <= truth.last_update_id
            best_bid, best_ask = truth.best_bid(), truth.best_ask()
            assert best_bid is not None and best_ask is not None
            assert (Decimal(last["b"]), Decimal(last["B"])) == best_bid
            assert (Decimal(last["a"]), Decimal(last["A"])) == best_ask

    run(scenario)


@pytest.mark.parametrize("prefix", ["depth", "depth.200ms", "depth.600ms", "depth.1000ms"])
@pytest.mark.parametrize("symbol", [DOTTED, "TSLA.US_USDC_PERP"])
def test_dotted_symbols_are_served_on_every_depth_stream(prefix: str, symbol: str) -> None:
    """``depth[.<N>ms].SPCX.US_USDC`` is split by its prefix, not on its last dot:
    the venue accepts the subscription and the stream rebuilds the true book."""
    async def scenario() -> None:
        async with venue(rate=2000.0) as v:
            replica = await rebuild(v, f"{prefix}.{symbol}", symbol, applied=3)
            assert replica.book == truth_book(v, symbol)
            assert v.stats.subscribe_errors == 0

    run(scenario)


def test_dotted_symbols_get_book_tickers_and_market_data() -> None:
    async def scenario() -> None:
        async with venue() as v, connect(v) as ws, httpx.AsyncClient(base_url=v.rest_url) as http:
            await subscribe(ws, f"bookTicker.{DOTTED}", f"depth.{DOTTED}")
            seen = {m["stream"] for m in [await receive(ws) for _ in range(40)]}
            assert seen == {f"bookTicker.{DOTTED}", f"depth.{DOTTED}"}
            market = (await http.get("/api/v1/market", params={"symbol": DOTTED})).json()
            assert (market["symbol"], market["baseSymbol"], market["quoteSymbol"]) == (
                DOTTED, "SPCX.US", "USDC")
            perp = (await http.get("/api/v1/market", params={"symbol": "TSLA.US_USDC_PERP"})).json()
            assert (perp["baseSymbol"], perp["marketType"]) == ("TSLA.US", "PERP")
            assert v.stats.subscribe_errors == 0

    run(scenario)


@pytest.mark.parametrize("interval", [200, 600])
def test_rebuild_from_aggregated_stream(interval: int) -> None:
    async def scenario() -> None:
        async with venue(rate=2000.0) as v:
            replica = await rebuild(v, f"depth.{interval}ms.{SYMBOL}", applied=3)
            assert replica.book == truth_book(v)

    run(scenario)


def test_aggregate_fault_merges_realtime_updates_and_stays_exact() -> None:
    async def scenario() -> None:
        async with venue(Faults(aggregate=True)) as v:
            async with connect(v) as ws:
                await subscribe(ws, f"depth.{SYMBOL}")
                sample = await frames(ws, 10)
            assert all(2 <= d["u"] - d["U"] + 1 <= 5 for d in sample)
            replica = await rebuild(v, f"depth.{SYMBOL}")
            assert replica.book == truth_book(v)

    run(scenario)


@pytest.mark.skipif(not CAPTURE.exists(), reason="capture file not available")
def test_serving_a_replayed_capture() -> None:
    async def scenario() -> None:
        flow = OrderFlow.from_capture(CAPTURE)
        async with SimulatedVenue(flow, rate=500.0) as v:
            await v.pause()  # before the first tick: nothing replayed yet
            replica = Replica()
            async with connect(v) as ws, httpx.AsyncClient() as http:
                await subscribe(ws, "depth.NKN_USDT")
                url = f"{v.rest_url}/api/v1/depth"
                replica.load((await http.get(url, params={"symbol": "NKN_USDT"})).json())
                assert replica.last == 499869752
                await ws.send("not json")  # answered once the subscription has landed
                assert "error" in await receive(ws)  # (requests are handled in order)
                v.resume()
                while replica.last != 499870179:
                    replica.feed((await frames(ws, 1))[0])
            assert replica.book == truth_book(v, "NKN_USDT")
            assert max(replica.book["bid"]) == Decimal("0.35270000")
            while not v.exhausted:
                await asyncio.sleep(0.05)

    run(scenario)


# --- WebSocket: faults --------------------------------------------------------------


def test_drop_fault_makes_a_gap() -> None:
    async def scenario() -> None:
        async with venue(Faults(drop_rate=0.3)) as v, connect(v) as ws:
            await subscribe(ws, f"depth.{SYMBOL}")
            sample = await frames(ws, 30)
            gaps = [b["U"] - a["u"] for a, b in zip(sample, sample[1:]) if b["U"] != a["u"] + 1]
            assert gaps and all(gap > 1 for gap in gaps)
            assert v.stats.frames_dropped > 0

    run(scenario)


def test_duplicate_fault_repeats_frames() -> None:
    async def scenario() -> None:
        async with venue(Faults(duplicate_rate=0.3)) as v, connect(v) as ws:
            await subscribe(ws, f"depth.{SYMBOL}")
            sample = await frames(ws, 30)
            repeats = [a for a, b in zip(sample, sample[1:]) if a == b]
            assert repeats and v.stats.frames_duplicated >= len(repeats)

    run(scenario)


def parses(text: str) -> bool:
    """Whether a depth message is well formed, as a strict client would check."""
    try:
        data = json.loads(text)["data"]
        levels = data["a"] + data["b"]
        ok = isinstance(data["U"], int) and isinstance(data["u"], int)
        for price, quantity in levels:
            ok = ok and Decimal(price) > 0 and Decimal(quantity).is_finite()
            ok = ok and Decimal(quantity) >= 0
        return ok
    except (ValueError, TypeError, KeyError, ArithmeticError):
        return False


def test_malformed_fault_sends_broken_frames() -> None:
    async def scenario() -> None:
        async with venue(Faults(malformed_rate=0.5), rate=2000.0) as v:
            async with connect(v) as ws:
                await subscribe(ws, f"depth.{SYMBOL}")
                texts = [str(await asyncio.wait_for(ws.recv(), 5)) for _ in range(60)]
            broken = [t for t in texts if not parses(t)]
            assert len(broken) >= 10 and v.stats.frames_malformed >= len(broken)

    run(scenario)


def test_string_times_and_zero_spelling() -> None:
    async def scenario() -> None:
        faults = Faults(string_times=True, zero_spelling=True)
        async with venue(faults) as v, connect(v) as ws:
            await subscribe(ws, f"depth.{SYMBOL}", f"bookTicker.{SYMBOL}")
            sample = await frames(ws, 40)
            assert all(isinstance(d["E"], str) and isinstance(d["T"], str) for d in sample)
            zeros = {q for d in sample if d["e"] == "depth" for _, q in d["a"] + d["b"]
                     if Decimal(q) == 0}
            assert zeros and zeros <= {"0.000", "0.00000"}
            await v.pause()
            v.faults.string_times = v.faults.zero_spelling = False
            # Read the depth frames encoded before the switch: paused, they end at the
            # truth's update id (waiting for 0.2 s of quiet could stop short under load).
            last = max(d["u"] for d in sample if d["e"] == "depth")
            while last < v.flow.truth(SYMBOL).last_update_id:
                last = (await frames(ws, 1, f"depth.{SYMBOL}"))[0]["u"]
            v.resume()
            later = await frames(ws, 40, f"depth.{SYMBOL}")
            assert all(isinstance(d["E"], int) for d in later)
            assert {q for d in later for _, q in d["a"] + d["b"] if Decimal(q) == 0} <= {"0"}

    run(scenario)


# --- WebSocket: subscriptions and connections ---------------------------------------


def test_subscribe_errors_and_unsubscribe() -> None:
    async def scenario() -> None:
        async with venue() as v, connect(v) as ws:
            await subscribe(ws, "depth.NOPE_USDC", "trades.SOL_USDC")
            errors = [await receive(ws), await receive(ws)]
            assert [e["error"]["code"] for e in errors] == ["INVALID_SYMBOL", "INVALID_STREAM"]
            await ws.send("not json")
            assert "error" in await receive(ws)
            assert v.stats.subscribe_errors == 3

            await subscribe(ws, f"depth.{SYMBOL}", "depth.BTC_USDC_PERP")
            assert {m["stream"] for m in [await receive(ws) for _ in range(30)]} == {
                f"depth.{SYMBOL}", "depth.BTC_USDC_PERP"}
            await subscribe(ws, f"depth.{SYMBOL}", method="UNSUBSCRIBE")
            # Requests are handled in order: the error reply to this one means the
            # unsubscribe has landed (no timing guess).  SOL frames queued before
            # it may still arrive, but none beyond the truth's update id by then.
            await ws.send("not json")
            while "error" not in await receive(ws):
                pass
            landed = v.flow.truth(SYMBOL).last_update_id
            late = set()  # streams of frames produced once the unsubscribe has landed
            for _ in range(100):
                message = await receive(ws)
                if message["stream"] != f"depth.{SYMBOL}" or message["data"]["u"] > landed:
                    late.add(message["stream"])
            assert late == {"depth.BTC_USDC_PERP"}

    run(scenario)


def test_disconnect_all_with_close_code_and_abruptly() -> None:
    async def scenario() -> None:
        async with venue() as v:
            clients = [await connect(v) for _ in range(3)]
            await until(lambda: v.stats.connections == 3)  # the venue's handlers have run
            assert await v.disconnect_all(code=1001) == 3
            for ws in clients:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1001
            abrupt = await connect(v)
            await until(lambda: v.stats.connections == 4)
            await v.disconnect_all(abrupt=True)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(abrupt.recv(), 5)
            assert closed.value.rcvd is None  # no close frame
            assert v.stats.connections == 4 and v.stats.disconnects == 4

    run(scenario)


def test_slow_client_is_closed_with_1008() -> None:
    async def scenario() -> None:
        async with venue(rate=20_000.0, queue_size=50) as v:
            ws = await websockets.connect(v.ws_url, max_queue=4)
            await subscribe(ws, *(f"depth.{s}" for s in SYMBOLS))
            while v.stats.queue_overflows == 0:  # the client does not read
                await asyncio.sleep(0.05)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1008

    run(scenario)


def test_100_symbols_at_a_high_rate_stay_contiguous() -> None:
    """6,000 updates/s over 100 symbols on one connection: every symbol is served
    and each of its frames continues the previous one.  Speed is not asserted
    (that is `orderbook bench`'s job): a loaded machine only gets fewer frames."""

    async def scenario() -> None:
        symbols = [f"S{i}_USDC" for i in range(100)]
        flow = OrderFlow(symbols, seed=1)
        async with SimulatedVenue(flow, rate=6000.0) as v, connect(v) as ws:
            await subscribe(ws, *(f"depth.{s}" for s in symbols))
            last: dict[str, int] = {}
            for data in await frames(ws, 4000):  # a symbol missing: 100 * 0.99**4000 ~ 4e-16
                if data["s"] in last:
                    assert data["U"] == last[data["s"]] + 1, data["s"]
                last[data["s"]] = data["u"]
            assert sorted(last) == sorted(symbols)
            await v.pause()
            await drain(ws)

    run(scenario)
