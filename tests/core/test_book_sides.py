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
