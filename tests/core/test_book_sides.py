"""Every ``side`` argument of ``OrderBook`` names the side read, the same way."""

from __future__ import annotations

import warnings
from decimal import Decimal as D

import pytest

from orderbook import OrderBook, Side, UsageError

BOOK = {"lastUpdateId": "7", "timestamp": 1,
        "bids": [["10", "1"], ["9", "2"], ["8", "4"]], "asks": [["11", "1"], ["12", "3"]]}


def book() -> OrderBook:
    b = OrderBook("SOL_USDC")
    b.apply_snapshot(BOOK, limit=3)
    return b


def test_one_spelling_for_every_side_argument() -> None:
    b = book()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns nothing
        assert b.impact_price("2", "ask") == D("11.5") == b.impact_price("2", Side.ASK)
        assert b.impact_price("4", "bid") == D(9) == b.impact_price("4", Side.BID)
        assert b.cumulative_quantity("bid", "9") == D(3) == b.cumulative_quantity(Side.BID, "9")
        assert b.cumulative_quantity("ask", "12") == D(4)
        assert b.is_complete("8", "bid") and not b.is_complete("7.9", Side.BID)
        assert b.is_complete("100", "ask")
    assert Side.BID == "bid" and Side("ask") is Side.ASK


def test_the_old_impact_price_spelling_still_works_with_a_deprecation_warning() -> None:
    b = book()
    with pytest.warns(DeprecationWarning, match=r"impact_price\(qty, 'ask'\)"):
        assert b.impact_price("2", "buy") == b.impact_price("2", "ask")  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match=r"impact_price\(qty, 'bid'\)"):
        assert b.impact_price("2", "sell") == b.impact_price("2", "bid")  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["bids", "BID", "", None, 1, "buy"])
def test_any_other_side_is_a_clear_error(side: object) -> None:
    b = book()
    for call in (lambda: b.cumulative_quantity(side, "1"),  # type: ignore[arg-type]
                 lambda: b.is_complete("1", side)):  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="side must be 'bid' or 'ask'"):
            call()
    if side != "buy":
        with pytest.raises(UsageError, match="impact_price: side must be 'bid' or 'ask'"):
            b.impact_price("1", side)  # type: ignore[arg-type]


def test_copy_is_independent_and_keeps_what_is_known_complete() -> None:
    b = book()  # bids truncated at 8 (3 levels, limit 3); asks complete
    whole = b.copy()
    assert (whole.bids(), whole.asks(), whole.last_update_id, whole.timestamp, whole.complete_to()) == (
        b.bids(), b.asks(), 7, 1, (D(8), None))
    whole.check_integrity()
    top = b.copy(1)
    assert top.bids() == [(D(10), D(1))] and top.asks() == [(D(11), D(1))]
    assert top.complete_to() == (D(10), D(11))
    assert top.is_complete("10", "bid") and not top.is_complete("9", "bid")
    assert b.copy(5).complete_to() == (D(8), None)  # nothing cut: the source's bounds
    empty = OrderBook("SOL_USDC").copy()
    assert empty.last_update_id is None and empty.depth() == (0, 0)
    for depth in (0, -1, 1.5, "2"):
        with pytest.raises(UsageError, match="depth must be"):
            b.copy(depth)  # type: ignore[arg-type]


def test_a_copy_does_not_move_with_its_source() -> None:
    from orderbook import parse_frame

    b = book()
    frozen = b.copy()
    b.apply_delta(parse_frame(
        '{"stream":"depth.SOL_USDC","data":{"e":"depth","E":2,"s":"SOL_USDC","U":8,"u":8,'
        '"b":[["10","0"],["9.5","5"]],"a":[],"T":2}}'))
    assert b.best_bid() == (D("9.5"), D(5)) and b.last_update_id == 8
    assert frozen.best_bid() == (D(10), D(1)) and frozen.last_update_id == 7
    assert frozen.bridged is False
