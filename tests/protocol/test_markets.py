"""Market reference data: tolerant parsing and symbol validation with close matches."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from orderbook.errors import MalformedMessage, UnknownSymbol, UsageError
from orderbook.protocol.markets import MarketCatalog, parse_market, parse_markets

BODY = [
    {"symbol": "SOL_USDC", "baseSymbol": "SOL", "quoteSymbol": "USDC", "marketType": "SPOT",
     "orderBookState": "Open", "visible": True,
     "filters": {"price": {"tickSize": "0.01"}, "quantity": {"stepSize": "0.001"}}},
    {"symbol": "BTC_USDC_PERP", "baseSymbol": "BTC", "quoteSymbol": "USDC", "marketType": "PERP",
     "orderBookState": "PostOnly", "visible": True,
     "filters": {"price": {"tickSize": "0.1"}, "quantity": {"stepSize": "0.00001"}}},
    {"symbol": "ETH_USDC", "marketType": "SPOT", "orderBookState": "Closed",
     "filters": {"price": {"tickSize": "0.01"}}},
    {"symbol": "NEW_USDC", "marketType": "HYPERSPOT", "orderBookState": "Sleeping",
     "visible": True, "extra": {"whatever": 1}},
    {"symbol": "HIDDEN_USDC", "marketType": "SPOT", "visible": False},
    {"no": "symbol"},
    "garbage",
]


def test_parse_markets_keeps_unknown_enums_and_skips_unusable_entries() -> None:
    markets, skipped = parse_markets(orjson.dumps(BODY))
    assert skipped == 2
    by_symbol = {m.symbol: m for m in markets}
    sol = by_symbol["SOL_USDC"]
    assert (sol.tick_size, sol.step_size) == (Decimal("0.01"), Decimal("0.001"))
    assert sol.is_spot and not sol.is_perp and sol.has_book
    perp = by_symbol["BTC_USDC_PERP"]
    assert perp.is_perp and perp.order_book_state == "PostOnly" and perp.quote == "USDC"
    new = by_symbol["NEW_USDC"]
    assert new.market_type == "HYPERSPOT" and new.order_book_state == "Sleeping"
    assert new.tick_size is None and new.base == "NEW"
    assert not by_symbol["ETH_USDC"].has_book


@pytest.mark.parametrize("body", [b"{", b'{"a": 1}', "3"])
def test_parse_markets_refuses_a_body_that_is_not_a_list(body: object) -> None:
    with pytest.raises(MalformedMessage):
        parse_markets(body)


def test_parse_market_rejects_bad_increments_quietly() -> None:
    market = parse_market({"symbol": "X_Y", "filters": {"price": {"tickSize": "0"},
                                                       "quantity": {"stepSize": 1e-3}}})
    assert market.tick_size is None and market.step_size is None


def test_validate_names_close_matches() -> None:
    catalog = MarketCatalog(parse_markets(BODY)[0])
    assert catalog.validate(["SOL_USDC", "BTC_USDC_PERP", "SOL_USDC"]) == ["SOL_USDC", "BTC_USDC_PERP"]
    with pytest.raises(UnknownSymbol) as info:
        catalog.validate(["SOL_USDC", "sol_usdt"])
    assert info.value.symbol == "sol_usdt"
    assert "SOL_USDC" in info.value.suggestions
    assert "did you mean SOL_USDC" in str(info.value)
    with pytest.raises(UnknownSymbol) as info:
        catalog.validate(["BTC_USDC_PREP"])
    assert info.value.suggestions[0] == "BTC_USDC_PERP"
    with pytest.raises(UnknownSymbol) as info:
        catalog.validate(["ZZZZZZZZ"])
    assert info.value.suggestions == []
    with pytest.raises(UsageError):
        catalog.validate([])


def test_all_markets_mode_lists_visible_live_books() -> None:
    catalog = MarketCatalog(parse_markets(BODY)[0])
    assert catalog.replicable() == ["SOL_USDC", "BTC_USDC_PERP"]
    assert catalog.replicable(spot=False) == ["BTC_USDC_PERP"]
    assert catalog.replicable(perp=False) == ["SOL_USDC"]
    assert len(catalog) == 5 and "NEW_USDC" in catalog and catalog.get("NOPE") is None
