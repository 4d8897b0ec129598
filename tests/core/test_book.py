"""orderbook.core.book: the exact price ladders, one method at a time."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import orjson
import pytest

from orderbook import CrossedBook, MalformedMessage, OrderBook, SequenceGap, UsageError
from orderbook.protocol.wire import DepthEvent, parse_snapshot

D = Decimal
SYMBOL = "SOL_USDC"


def snapshot_body(
    bids: list[list[str]], asks: list[list[str]], last_update_id: int | str = 100, timestamp: int | None = 5000
) -> dict[str, Any]:
    body: dict[str, Any] = {"lastUpdateId": last_update_id, "bids": bids, "asks": asks}
    if timestamp is not None:
        body["timestamp"] = timestamp
    return body


def delta(
    first: int,
    last: int | None = None,
    bids: list[list[str]] | None = None,
    asks: list[list[str]] | None = None,
    engine_time: int = 0,
    symbol: str = SYMBOL,
) -> DepthEvent:
    return DepthEvent(symbol, first, first if last is None else last, engine_time + 1, engine_time, bids or [], asks or [])


def make_book() -> OrderBook:
    """bids 10.00x1, 9.50x2, 9.00x3 ; asks 10.50x1.5, 11.00x2, 12.00x4 at update 100."""
    book = OrderBook(SYMBOL)
    book.apply_snapshot(
        snapshot_body(
            [["10.00", "1"], ["9.50", "2"], ["9.00", "3"]],
            [["10.50", "1.5"], ["11.00", "2"], ["12.00", "4"]],
        )
    )
    return book


def state(book: OrderBook) -> tuple[Any, ...]:
    """Everything a reader can observe, for before/after comparisons."""
    return (
        book.bids(),
        book.asks(),
        book.best_bid(),
        book.best_ask(),
        book.last_update_id,
        book.timestamp,
        book.bridged,
        book.complete_to(),
        book.depth(),
    )


# --------------------------------------------------------------------- snapshot
def test_empty_book() -> None:
    book = OrderBook(SYMBOL)
    assert book.last_update_id is None and book.timestamp is None
    assert book.best_bid() is None and book.best_ask() is None
    assert book.spread() is None and book.mid() is None
    assert book.bids() == [] and book.asks() == [] and book.depth() == (0, 0)
    assert not book.is_crossed()
    book.check_integrity()
    with pytest.raises(UsageError):
        book.apply_delta(delta(1))


def test_snapshot() -> None:
    book = make_book()
    assert book.last_update_id == 100
    assert book.timestamp == 5000
    assert not book.bridged
    assert book.bids() == [(D("10.00"), D(1)), (D("9.50"), D(2)), (D("9.00"), D(3))]
    assert book.asks() == [(D("10.50"), D("1.5")), (D("11.00"), D(2)), (D("12.00"), D(4))]
    assert book.depth() == (3, 3)
    book.check_integrity()


def test_snapshot_accepts_parsed_snapshot_bytes_and_str() -> None:
    body = snapshot_body([["2", "1"]], [["3", "1"]], last_update_id="7")
    for payload in (body, parse_snapshot(body), orjson.dumps(body), orjson.dumps(body).decode()):
        book = OrderBook(SYMBOL)
        book.apply_snapshot(payload)
        assert book.last_update_id == 7
        assert book.bids() == [(D(2), D(1))]


def test_snapshot_replaces_everything() -> None:
    book = make_book()
    book.apply_delta(delta(101, bids=[["9.99", "1"]]))
    book.apply_snapshot(snapshot_body([["5", "1"]], [["6", "1"]], last_update_id=50, timestamp=None))
    assert book.bids() == [(D(5), D(1))] and book.asks() == [(D(6), D(1))]
    assert book.last_update_id == 50 and book.timestamp is None and not book.bridged
    book.check_integrity()


def test_snapshot_skips_zero_quantity_levels() -> None:
    book = OrderBook(SYMBOL)
    book.apply_snapshot(snapshot_body([["10", "0.000"], ["9", "1"]], [["11", "0"]]))
    assert book.bids() == [(D(9), D(1))] and book.asks() == []
    book.check_integrity()


def test_crossed_snapshot_is_refused_and_book_unchanged() -> None:
    book = make_book()
    before = state(book)
    with pytest.raises(CrossedBook) as info:
        book.apply_snapshot(snapshot_body([["11", "1"]], [["10", "1"]], last_update_id=200))
    assert info.value.update_id == 200
    assert state(book) == before
    book.check_integrity()


def test_crossed_snapshot_with_more_decimals_leaves_book_consistent() -> None:
    """Regression: the scale grew before the crossed check and the old keys were not re-keyed."""
    book = make_book()
    before = state(book)
    with pytest.raises(CrossedBook):
        book.apply_snapshot(snapshot_body([["11.0001", "1"]], [["10.0001", "1"]], last_update_id=200))
    assert state(book) == before
    book.check_integrity()
    # and the book keeps working: a new level sorts among the old ones
    book.apply_delta(delta(101, bids=[["9.7500", "5"]], asks=[["10.75", "1"]]))
    assert book.bids() == [(D("10.00"), D(1)), (D("9.75"), D(5)), (D("9.50"), D(2)), (D("9.00"), D(3))]
    assert [p for p, _ in book.asks()] == [D("10.50"), D("10.75"), D("11.00"), D("12.00")]
    book.check_integrity()


def test_malformed_snapshot_leaves_book_unchanged() -> None:
    book = make_book()
    before = state(book)
    for body in (
        {"code": "INVALID_MARKET", "message": "x"},
        snapshot_body([["9", "1"], ["10", "1"], ["9.0", "2"]], [["11", "1"]]),  # 9 twice
        snapshot_body([["9", "1"]], [["11", "abc"]]),
        b"not json",
    ):
        with pytest.raises(MalformedMessage):
            book.apply_snapshot(body)
        assert state(book) == before


# ------------------------------------------------------------------------ delta
def test_delta_update_new_delete() -> None:
    book = make_book()
    book.apply_delta(
        delta(
            101,
            bids=[["10.00", "4"], ["9.75", "2.5"], ["9.00", "0"]],
            asks=[["10.50", "0.000"], ["10.25", "7"], ["13", "1"]],
            engine_time=6000,
        )
    )
    assert book.bids() == [(D("10.00"), D(4)), (D("9.75"), D("2.5")), (D("9.50"), D(2))]
    assert book.asks() == [(D("10.25"), D(7)), (D("11.00"), D(2)), (D("12.00"), D(4)), (D(13), D(1))]
    assert book.best_bid() == (D("10.00"), D(4))
    assert book.best_ask() == (D("10.25"), D(7))
    assert book.last_update_id == 101 and book.bridged
    assert book.timestamp == 6000
    book.check_integrity()


@pytest.mark.parametrize("zero", ["0", "0.000", "0.00000"])
def test_delete_best_levels_in_any_zero_spelling(zero: str) -> None:
    book = make_book()
    book.apply_delta(delta(101, bids=[["10.00", zero]], asks=[["10.50", zero]]))
    assert book.best_bid() == (D("9.50"), D(2))
    assert book.best_ask() == (D("11.00"), D(2))
    book.check_integrity()


def test_deleting_an_absent_level_is_a_no_op() -> None:
    book = make_book()
    before = state(book)[:4]
    book.apply_delta(delta(101, bids=[["1.23", "0"]], asks=[["99", "0.0"]]))
    assert state(book)[:4] == before
    book.check_integrity()


def test_empty_a_side_then_refill() -> None:
    book = make_book()
    book.apply_delta(delta(101, asks=[["10.50", "0"], ["11.00", "0"], ["12.00", "0"]]))
    assert book.best_ask() is None and book.spread() is None and book.mid() is None
    book.apply_delta(delta(102, asks=[["15", "1"]]))
    assert book.best_ask() == (D(15), D(1))
    book.check_integrity()


def test_same_price_twice_in_one_frame_last_wins() -> None:
    book = make_book()
    book.apply_delta(delta(101, bids=[["9.80", "1"], ["9.8", "0"], ["9.50", "0"], ["9.5", "6"]]))
    assert book.bids() == [(D("10.00"), D(1)), (D("9.5"), D(6)), (D("9.00"), D(3))]
    book.check_integrity()


def test_first_frame_may_straddle_the_snapshot() -> None:
    """Snapshot at 100 inside the aggregated frame 98..103: re-applying absolute
    quantities is correct, and the next frame must then start at 104."""
    book = make_book()
    book.apply_delta(delta(98, 103, bids=[["10.00", "2"]]))
    assert book.last_update_id == 103 and book.bridged
    assert book.best_bid() == (D("10.00"), D(2))
    with pytest.raises(SequenceGap):
        book.apply_delta(delta(103, 105))
    book.apply_delta(delta(104, 104))
    assert book.last_update_id == 104


@pytest.mark.parametrize(("first", "last"), [(102, 102), (95, 100), (90, 99), (103, 110)])
def test_first_frame_that_does_not_bridge_is_refused(first: int, last: int) -> None:
    book = make_book()
    before = state(book)
    with pytest.raises(SequenceGap) as info:
        book.apply_delta(delta(first, last, bids=[["10.00", "9"]]))
    assert (info.value.first_id, info.value.last_id, info.value.expected) == (first, last, 101)
    assert state(book) == before


@pytest.mark.parametrize(("first", "last"), [(103, 103), (101, 101), (100, 102), (90, 95)])
def test_later_frames_must_continue_exactly(first: int, last: int) -> None:
    book = make_book()
    book.apply_delta(delta(101, 101))
    before = state(book)
    with pytest.raises(SequenceGap) as info:
        book.apply_delta(delta(first, last, asks=[["10.50", "0"]]))
    assert info.value.expected == 102 and info.value.symbol == SYMBOL
    assert state(book) == before


def test_frame_for_another_symbol_is_a_usage_error() -> None:
    book = make_book()
    before = state(book)
    with pytest.raises(UsageError):
        book.apply_delta(delta(101, bids=[["10.00", "9"]], symbol="BTC_USDC"))
    assert state(book) == before


@pytest.mark.parametrize(
    "bad",
    [["9.80"], ["9.80", "1", "2"], "12", ["-9.80", "1"], ["0.00", "1"], ["9.80", "-1"], ["9.80", "NaN"],
     [9.8, "1"], ["9.80", 1], ["9.80", "1e2"], [["9.80"], "1"], None],
)
def test_bad_level_anywhere_leaves_book_unchanged(bad: Any) -> None:
    book = make_book()
    before = state(book)
    # good changes on both sides, one of them needing a rescale, then the bad level
    event = delta(
        101,
        bids=[["10.00", "0"], ["9.7512", "3"], bad],
        asks=[["10.50", "0"], ["10.25", "1"]],
    )
    with pytest.raises(MalformedMessage):
        book.apply_delta(event)
    assert state(book) == before
    book.check_integrity()
    book.apply_delta(delta(101, bids=[["9.7512", "3"]]))  # still usable, still at 100
    assert book.bids()[1] == (D("9.7512"), D(3))
    book.check_integrity()


def test_bad_ask_after_good_bids_leaves_book_unchanged() -> None:
    book = make_book()
    before = state(book)
    with pytest.raises(MalformedMessage):
        book.apply_delta(delta(101, bids=[["10.00", "0"], ["9.99", "5"]], asks=[["10.40", "1"], ["x", "1"]]))
    assert state(book) == before


# ---------------------------------------------------------------------- rescale
def test_price_with_more_decimals_than_the_snapshot_stays_exact() -> None:
    book = make_book()  # scale 2
    book.apply_delta(delta(101, bids=[["9.995", "1"], ["9.9951", "2"]], asks=[["10.4999999", "3"]]))
    assert book.bids()[:3] == [(D("10.00"), D(1)), (D("9.9951"), D(2)), (D("9.995"), D(1))]
    assert book.best_ask() == (D("10.4999999"), D(3))
    assert book.spread() == D("0.4999999")
    assert book.mid() == D("10.24999995")
    book.check_integrity()
    # old levels are still addressable after the re-key, in any spelling
    book.apply_delta(delta(102, bids=[["10", "0"], ["9.5000000", "7"]], asks=[["11.0", "0"]]))
    assert book.bids() == [(D("9.9951"), D(2)), (D("9.995"), D(1)), (D("9.5"), D(7)), (D("9.00"), D(3))]
    assert [p for p, _ in book.asks()] == [D("10.4999999"), D("10.50"), D("12.00")]
    book.check_integrity()


def test_snapshot_with_fewer_decimals_after_a_rescale() -> None:
    book = make_book()
    book.apply_delta(delta(101, bids=[["9.99999", "1"]]))
    book.apply_snapshot(snapshot_body([["3", "1"], ["2.5", "1"]], [["4", "1"]], last_update_id=300))
    book.apply_delta(delta(301, bids=[["2.75", "2"], ["3.000", "0"]]))
    assert book.bids() == [(D("2.75"), D(2)), (D("2.5"), D(1))]
    book.check_integrity()


def test_thirty_significant_digits_stay_exact() -> None:
    """Regression: check_integrity compared price * 10**scale in the default
    28-digit context and reported a valid book as broken.  (29 and 30
    significant digits, within the value bound of 20 + 18 digits.)"""
    bid = "12345678901.00000000000000001"
    ask = "12345678901.00000000000000003"
    book = OrderBook(SYMBOL)
    book.apply_snapshot(snapshot_body([[bid, "1"]], [[ask, "1"]]))
    book.check_integrity()
    assert book.spread() == D("0.00000000000000002")
    assert book.mid() == D("12345678901.00000000000000002")
    book.apply_delta(delta(101, bids=[["12345678901.000000000000000015", "2"]]))
    assert book.best_bid() == (D("12345678901.000000000000000015"), D(2))
    book.check_integrity()


# ------------------------------------------------------------------------ views
def test_bids_and_asks_n_best_first() -> None:
    book = make_book()
    assert book.bids(1) == [(D("10.00"), D(1))]
    assert book.bids(2) == [(D("10.00"), D(1)), (D("9.50"), D(2))]
    assert book.asks(2) == [(D("10.50"), D("1.5")), (D("11.00"), D(2))]
    assert book.bids(0) == [] and book.asks(0) == []
    assert book.bids(10) == book.bids() and len(book.asks(10)) == 3
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(UsageError):
            book.bids(bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            book.asks(bad)  # type: ignore[arg-type]


def test_best_spread_mid_exact() -> None:
    book = make_book()
    assert book.best_bid() == (D("10.00"), D(1))
    assert book.best_ask() == (D("10.50"), D("1.5"))
    assert book.spread() == D("0.50")
    assert book.mid() == D("10.25")
    book.apply_delta(delta(101, bids=[["10.01", "1"]], asks=[["10.02", "1"]]))
    assert book.spread() == D("0.01")
    assert book.mid() == D("10.015")  # one more digit than either price, exactly
    assert not book.is_crossed()


def test_to_numpy_shape_dtype_padding() -> None:
    book = make_book()
    bids, asks = book.to_numpy(5)
    for arr in (bids, asks):
        assert arr.shape == (5, 2) and arr.dtype == np.float64
        assert np.isnan(arr[3:]).all()
    np.testing.assert_array_equal(bids[:3], [[10.0, 1.0], [9.5, 2.0], [9.0, 3.0]])
    np.testing.assert_array_equal(asks[:3], [[10.5, 1.5], [11.0, 2.0], [12.0, 4.0]])
    bids, asks = book.to_numpy(2)
    assert bids.shape == (2, 2) and not np.isnan(bids).any()
    np.testing.assert_array_equal(asks, [[10.5, 1.5], [11.0, 2.0]])
    bids, asks = book.to_numpy(0)
    assert bids.shape == (0, 2) and asks.shape == (0, 2)
    empty_bids, _ = OrderBook(SYMBOL).to_numpy(3)
    assert empty_bids.shape == (3, 2) and np.isnan(empty_bids).all()
    with pytest.raises(UsageError):
        book.to_numpy(-1)


def test_cumulative_quantity() -> None:
    book = make_book()
    assert book.cumulative_quantity("bid", "10.00") == D(1)
    assert book.cumulative_quantity("bid", D("9.5")) == D(3)
    assert book.cumulative_quantity("bid", "9.4") == D(3)
    assert book.cumulative_quantity("bid", "0.01") == D(6)
    assert book.cumulative_quantity("bid", "10.01") == D(0)
    assert book.cumulative_quantity("ask", "10.50") == D("1.5")
    assert book.cumulative_quantity("ask", "11.99") == D("3.5")
    assert book.cumulative_quantity("ask", "100") == D("7.5")
    assert book.cumulative_quantity("ask", "10.49") == D(0)
    with pytest.raises(UsageError):
        book.cumulative_quantity("buy", "10")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        book.cumulative_quantity("bid", "-1")
    with pytest.raises(UsageError):
        book.cumulative_quantity("bid", 10.0)  # type: ignore[arg-type]


def test_cumulative_quantity_sums_beyond_28_digits() -> None:
    book = OrderBook(SYMBOL)
    book.apply_snapshot(
        snapshot_body([["1", "12345678901234567890.891"], ["0.5", "0.000000000000000001"]], [])
    )
    assert book.cumulative_quantity("bid", "0.5") == D("12345678901234567890.891000000000000001")


def test_impact_price_exact_average_across_levels() -> None:
    book = OrderBook(SYMBOL)
    book.apply_snapshot(
        snapshot_body([["0.9", "1"], ["0.8", "5"]], [["1.0", "1"], ["1.3", "2"], ["2.0", "10"]])
    )
    # buy 3: 1 @ 1.0 + 2 @ 1.3 = 3.6 -> 1.2 exactly
    assert book.impact_price("3", "buy") == D("1.2")
    assert book.impact_price(D("0.5"), "buy") == D("1.0")
    assert book.impact_price("1", "buy") == D("1.0")
    # 1 @ 1.0 + 2 @ 1.3 + 1 @ 2.0 = 5.6 / 4 = 1.4
    assert book.impact_price("4", "buy") == D("1.4")
    # sell 2: 1 @ 0.9 + 1 @ 0.8 = 0.85
    assert book.impact_price("2", "sell") == D("0.85")
    # sell 6: (0.9 + 5 * 0.8) / 6 = 49/60, not a finite decimal: correctly rounded to 60 digits
    assert_close_to(book.impact_price("6", "sell"), Fraction(49, 60))


def assert_close_to(value: Decimal | None, exact: Fraction) -> None:
    assert value is not None
    assert abs(Fraction(value) - exact) <= exact / 10**59


def test_impact_price_none_when_depth_insufficient() -> None:
    book = make_book()
    # the whole visible ask side: 1.5 @ 10.50 + 2 @ 11 + 4 @ 12 = 85.75
    assert_close_to(book.impact_price("7.5", "buy"), Fraction(8575, 750))
    assert book.impact_price("7.5000001", "buy") is None
    # the whole bid side: 10 + 19 + 27 = 56 for 6
    assert_close_to(book.impact_price("6", "sell"), Fraction(56, 6))
    assert book.impact_price("6.01", "sell") is None
    assert OrderBook(SYMBOL).impact_price("1", "buy") is None


def test_impact_price_exact_beyond_28_digits() -> None:
    p1 = "12345678901234.123456789012345"  # 29 significant digits
    p2 = "12345678901235.123456789012346"
    book = OrderBook(SYMBOL)
    book.apply_snapshot(snapshot_body([], [[p1, "1"], [p2, "1"]]))
    assert book.impact_price("2", "buy") == D("12345678901234.6234567890123455")


def test_impact_price_rejects_bad_arguments() -> None:
    book = make_book()
    for qty in ("0", D(0), "-1", D(-1), D("NaN"), D("Infinity"), 1, "1e3"):
        with pytest.raises(UsageError):
            book.impact_price(qty, "buy")  # type: ignore[arg-type]
    with pytest.raises(UsageError):  # the side consumed is "bid" or "ask" (see test_book_sides.py)
        book.impact_price("1", "bids")  # type: ignore[arg-type]


# ---------------------------------------------------------------- integrity etc
def test_check_integrity_detects_a_crossed_book() -> None:
    book = make_book()
    book.check_integrity()
    book.apply_delta(delta(101, bids=[["10.50", "1"]]))  # apply_delta does not refuse it
    assert book.is_crossed()
    with pytest.raises(CrossedBook) as info:
        book.check_integrity()
    assert (info.value.bid, info.value.ask, info.value.update_id) == (D("10.50"), D("10.50"), 101)


def test_complete_to_with_truncated_snapshot() -> None:
    book = OrderBook(SYMBOL)
    book.apply_snapshot(
        snapshot_body([["10", "1"], ["9", "1"], ["8", "1"]], [["11", "1"], ["12", "1"]]), limit=3
    )
    # bids came back full (3 == limit): deeper bids may exist; asks did not: complete
    assert book.complete_to() == (D(8), None)
    assert book.is_complete("8", "bid") and book.is_complete(D("9.5"), "bid")
    assert not book.is_complete("7.99", "bid")
    assert book.is_complete("1000", "ask") and book.is_complete("0.01", "ask")
    # a delta outside the window is applied but the window does not move
    book.apply_delta(delta(101, bids=[["7", "4"]], asks=[["13", "1"]]))
    assert book.bids()[-1] == (D(7), D(4))
    assert book.complete_to() == (D(8), None)
    assert not book.is_complete("7", "bid")
    with pytest.raises(UsageError):
        book.is_complete("1", "buy")  # type: ignore[arg-type]


def test_complete_to_both_sides_truncated_and_reset() -> None:
    book = OrderBook(SYMBOL)
    book.apply_snapshot(snapshot_body([["10", "1"], ["9", "1"]], [["11", "1"], ["12", "1"]]), limit=2)
    assert book.complete_to() == (D(9), D(12))
    assert book.is_complete("12", "ask") and not book.is_complete("12.01", "ask")
    book.apply_snapshot(snapshot_body([["10", "1"]], [["11", "1"]]))  # no limit: complete
    assert book.complete_to() == (None, None)
    book.apply_snapshot(snapshot_body([["10", "1"]], [["11", "1"]]), limit=1000)
    assert book.complete_to() == (None, None)


def test_timestamp_follows_snapshot_then_engine_time() -> None:
    book = make_book()
    assert book.timestamp == 5000
    book.apply_delta(delta(101, engine_time=7000))
    assert book.timestamp == 7000
    book.apply_delta(delta(102, 104, engine_time=7100))
    assert book.timestamp == 7100


def test_clear() -> None:
    book = make_book()
    book.apply_delta(delta(101, bids=[["9.999", "1"]]))
    book.clear()
    assert state(book) == ([], [], None, None, None, None, False, (None, None), (0, 0))
    book.check_integrity()
    with pytest.raises(UsageError):
        book.apply_delta(delta(102))
    book.apply_snapshot(snapshot_body([["1.5", "1"]], [["1.6", "1"]], last_update_id=1))
    assert book.bids() == [(D("1.5"), D(1))]
    book.check_integrity()


def test_repr_names_the_symbol_and_update() -> None:
    text = repr(make_book())
    assert "SOL_USDC" in text and "100" in text


def test_views_do_not_depend_on_when_the_book_was_read() -> None:
    """Regression: levels read before a rescale kept their price spelled at the
    old scale ("21.80") while unread ones took the new one ("21.750"), so the
    replay document depended on the read history, not on the book."""
    read, unread = make_book(), make_book()
    read.bids(), read.asks()  # memoise every level before the rescale
    for book in (read, unread):
        book.apply_delta(delta(101, bids=[["9.755", "1"]]))
    spelled = [[(str(p), str(q)) for p, q in book.bids() + book.asks()] for book in (read, unread)]
    assert spelled[0] == spelled[1]
    read.check_integrity()


def test_reading_the_whole_book_keeps_only_the_top_levels_converted() -> None:
    """A full read converts every level but keeps the tuples only near the
    touch (the same objects come back), so memory stays small for deep books."""
    bids = [[f"{1000 - i}.5", f"{i + 1}.25"] for i in range(300)]
    asks = [[f"{1001 + i}.5", "2"] for i in range(300)]
    book = OrderBook("DEEP_USDC")
    book.apply_snapshot({"lastUpdateId": 1, "bids": bids, "asks": asks})
    full = book.bids()
    assert full[0] == (Decimal("1000.5"), Decimal("1.25"))
    assert full[-1] == (Decimal("701.5"), Decimal("300.25"))
    again = book.bids()
    assert again == full  # the same values
    assert all(a is b for a, b in zip(again[:100], full[:100]))  # kept
    assert not any(a is b for a, b in zip(again[100:], full[100:]))  # converted again
    book.check_integrity()
