"""The venue's true order flow: determinism, invariants, snapshots, capture replay."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import orderbook.testing.venue
from orderbook.testing.venue import Change, FlowExhausted, OrderFlow, TrueBook
from paths import CAPTURES

SYMBOLS = ["SOL_USDC", "BTC_USDC_PERP"]
CAPTURE = CAPTURES / "real-binance-spot-2021-10-12.jsonl"


def book_of(snapshot: dict[str, Any]) -> dict[str, dict[Decimal, Decimal]]:
    return {
        side: {Decimal(p): Decimal(q) for p, q in snapshot[key]}
        for side, key in (("bid", "bids"), ("ask", "asks"))
    }


def apply(book: dict[str, dict[Decimal, Decimal]], changes: tuple[Change, ...]) -> None:
    for side, price, quantity in changes:
        if quantity:
            book[side][price] = quantity
        else:
            book[side].pop(price, None)


def check(book: TrueBook) -> None:
    """O(n) integrity check of a true book."""
    bids, asks = book.bids(), book.asks()
    assert bids and asks
    assert bids[0][0] < asks[0][0], "crossed"
    assert book.best_bid() == bids[0] and book.best_ask() == asks[0]
    assert all(q > 0 for _, q in bids + asks)


def test_public_surface_is_exported() -> None:
    for name in orderbook.testing.venue.__all__:
        assert hasattr(orderbook.testing.venue, name)


def test_same_seed_same_sequence_other_seed_differs() -> None:
    a, b, c = (OrderFlow(SYMBOLS, seed=s) for s in (7, 7, 8))
    run_a = [a.step() for _ in range(500)]
    assert run_a == [b.step() for _ in range(500)]
    assert run_a != [c.step() for _ in range(500)]
    for symbol in SYMBOLS:
        assert a.snapshot(symbol) | {"timestamp": 0} == b.snapshot(symbol) | {"timestamp": 0}


def test_updates_are_contiguous_small_and_keep_the_book_uncrossed() -> None:
    flow = OrderFlow(SYMBOLS, seed=3, levels=20)
    last = {s: flow.truth(s).last_update_id for s in SYMBOLS}
    for _ in range(5000):
        symbol, update_id, changes = flow.step()
        assert update_id == last[symbol] + 1
        last[symbol] = update_id
        assert 1 <= len(changes) <= 4
        assert len({(c.side, c.price) for c in changes}) == len(changes)
        book = flow.truth(symbol)
        assert book.last_update_id == update_id
        assert not book.is_crossed()
    for symbol in SYMBOLS:
        check(flow.truth(symbol))


def test_prices_and_quantities_respect_the_market_increments() -> None:
    flow = OrderFlow(SYMBOLS, seed=5)
    for _ in range(2000):
        flow.step()
    for symbol in SYMBOLS:
        market = flow.market(symbol)
        book = flow.truth(symbol)
        for price, quantity in book.bids() + book.asks():
            assert price % market.tick_size == 0 and price > 0
            assert quantity % market.step_size == 0
    assert flow.market("BTC_USDC_PERP").market_type == "PERP"
    assert flow.market("SOL_USDC").market_type == "SPOT"


def test_snapshot_shape_truncation_and_order() -> None:
    flow = OrderFlow(SYMBOLS, seed=11, levels=30)
    for _ in range(300):
        flow.step()
    book = flow.truth("SOL_USDC")
    body = flow.snapshot("SOL_USDC", limit=5)
    assert list(body) == ["asks", "bids", "lastUpdateId", "timestamp"]
    assert body["lastUpdateId"] == str(book.last_update_id)
    assert body["timestamp"] == book.timestamp
    assert len(body["bids"]) == len(body["asks"]) == 5
    assert all(isinstance(x, str) for level in body["bids"] + body["asks"] for x in level)
    assert [(Decimal(p), Decimal(q)) for p, q in body["bids"]] == book.bids()[:5]
    assert [(Decimal(p), Decimal(q)) for p, q in body["asks"]] == book.asks()[:5]
    full = flow.snapshot("SOL_USDC")
    assert len(full["bids"]) == len(book.bids()) < 1000


def test_lagged_snapshot_plus_recorded_updates_reaches_the_truth() -> None:
    flow = OrderFlow(SYMBOLS, seed=13, history=200)
    recorded: dict[str, list[tuple[int, tuple[Change, ...]]]] = {s: [] for s in SYMBOLS}
    for _ in range(600):
        symbol, update_id, changes = flow.step()
        recorded[symbol].append((update_id, changes))
    for symbol in SYMBOLS:
        truth = flow.truth(symbol)
        assert flow.max_lag(symbol) == 200
        for lag in (0, 1, 17, 200):
            snapshot = flow.snapshot(symbol, lag=lag)
            assert int(snapshot["lastUpdateId"]) == truth.last_update_id - lag
            book = book_of(snapshot)
            for _, changes in recorded[symbol][len(recorded[symbol]) - lag :]:
                apply(book, changes)
            assert book == book_of(flow.snapshot(symbol))
        with pytest.raises(ValueError):
            flow.snapshot(symbol, lag=201)


def test_lagged_snapshot_timestamp_is_the_one_of_that_update() -> None:
    flow = OrderFlow(["SOL_USDC"], seed=1)
    stamps = []
    for _ in range(10):
        flow.step()
        stamps.append(flow.truth("SOL_USDC").timestamp)
    assert flow.snapshot("SOL_USDC", lag=3)["timestamp"] == stamps[-4]


@pytest.mark.skipif(not CAPTURE.exists(), reason="capture file not available")
def test_from_capture_reaches_the_recorded_final_book(tmp_path: Path) -> None:
    zipped = tmp_path / "capture.jsonl.gz"
    zipped.write_bytes(gzip.compress(CAPTURE.read_bytes()))
    for path in (CAPTURE, zipped):
        flow = OrderFlow.from_capture(path)
        assert flow.truth("NKN_USDT").last_update_id == 499869752
        while True:
            try:
                flow.step()
            except FlowExhausted:
                break
        book = flow.truth("NKN_USDT")
        assert book.last_update_id == 499870179
        assert book.best_bid() == (Decimal("0.35270000"), Decimal("9602"))
        assert book.best_ask() == (Decimal("0.35310000"), Decimal("152"))
        assert flow.market("NKN_USDT").tick_size == Decimal("0.00000001")
        assert set(flow.symbols) == {"NKN_USDT", "BLZ_ETH", "LRC_BTC", "RUNE_EUR"}


def write_capture(path: Path, frames: list[tuple[int, int, list[list[str]]]]) -> None:
    """A capture of SYM_USDC: two frames before the snapshot (id 10), then `frames`."""
    snapshot = {
        "kind": "rest",
        "path": "/api/v1/depth",
        "status": 200,
        "query": {"symbol": "SYM_USDC", "limit": "1000"},
        "body": {
            "asks": [["2.0", "5"]],
            "bids": [["1.0", "5"]],
            "lastUpdateId": "10",
            "timestamp": 1000,
        },
    }
    events: list[dict[str, Any]] = []
    for first, last, bids in [(5, 8, [["0.5", "1"]]), *frames]:
        data = {"e": "depth", "E": 2000 + last, "s": "SYM_USDC", "a": [], "b": bids,
                "U": first, "u": last, "T": 1000 + last}
        events.append({"kind": "ws", "frame": {"stream": "depth.SYM_USDC", "data": data}})
        if last == 8:
            events.append(snapshot)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def test_from_capture_skips_old_frames_and_applies_the_straddling_one(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    write_capture(path, [(9, 12, [["1.0", "0"], ["1.5", "3"]]), (13, 13, [["1.1", "2"]])])
    flow = OrderFlow.from_capture(path)
    assert flow.step() == ("SYM_USDC", 12, (
        Change("bid", Decimal("1.0"), Decimal("0")),
        Change("bid", Decimal("1.5"), Decimal("3")),
    ))
    flow.step()
    book = flow.truth("SYM_USDC")
    assert (book.last_update_id, book.timestamp) == (13, 1013)
    assert book.bids() == [(Decimal("1.5"), Decimal("3")), (Decimal("1.1"), Decimal("2"))]
    assert flow.snapshot("SYM_USDC", lag=2)["lastUpdateId"] == "10"
    with pytest.raises(FlowExhausted):
        flow.step()


def test_from_capture_rejects_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "gap.jsonl"
    write_capture(path, [(11, 11, [["1.0", "1"]]), (13, 13, [["1.0", "2"]])])
    with pytest.raises(ValueError, match="gap"):
        OrderFlow.from_capture(path)
