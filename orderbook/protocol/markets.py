"""Market reference data (``GET /api/v1/markets``) and symbol validation.  No I/O.

:func:`parse_markets` turns the venue's list into :class:`Market` records,
tolerating what a newer venue may add: unknown ``marketType`` and
``orderBookState`` values are kept verbatim, unknown fields ignored, and an
entry that cannot be understood at all is skipped (and reported) rather than
failing the whole list.  :class:`MarketCatalog` answers "is this symbol
listed?" and refuses unknown symbols with :class:`~orderbook.errors.UnknownSymbol`
naming the closest listed ones.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from ..errors import MalformedMessage, UnknownSymbol, UsageError
from .decimals import is_decimal_string

__all__ = ["Market", "MarketCatalog", "close_matches", "parse_market", "parse_markets"]

log = logging.getLogger("orderbook.markets")

KNOWN_MARKET_TYPES = frozenset({"SPOT", "PERP", "IPERP", "DATED", "PREDICTION", "RFQ"})
"""``marketType`` values documented by the venue; others are kept as they come."""

KNOWN_BOOK_STATES = frozenset({"Open", "Closed", "CancelOnly", "LimitOnly", "PostOnly"})
"""``orderBookState`` values documented by the venue; others are kept as they come."""


@dataclass(frozen=True, slots=True)
class Market:
    """Reference data of one market.

    ``market_type`` and ``order_book_state`` are the venue's strings, possibly
    values this code has never heard of; ``tick_size`` / ``step_size`` are
    exact, or ``None`` when the venue did not send a usable one.
    """

    symbol: str
    base: str
    quote: str
    market_type: str
    order_book_state: str
    visible: bool
    tick_size: Decimal | None
    step_size: Decimal | None

    @property
    def is_spot(self) -> bool:
        """True for a SPOT market."""
        return self.market_type == "SPOT"

    @property
    def is_perp(self) -> bool:
        """True for a perpetual (``PERP``, or a ``_PERP`` symbol of any type)."""
        return self.market_type == "PERP" or self.symbol.endswith("_PERP")

    @property
    def has_book(self) -> bool:
        """True when the book is live (state other than ``Closed``): it can be replicated."""
        return self.order_book_state != "Closed"


def _text(entry: Mapping[str, Any], key: str, default: str = "") -> str:
    value = entry.get(key, default)
    return value if isinstance(value, str) else default


def _increment(entry: Mapping[str, Any], group: str, key: str) -> Decimal | None:
    filters = entry.get("filters")
    section = filters.get(group) if isinstance(filters, dict) else None
    value = section.get(key) if isinstance(section, dict) else None
    if is_decimal_string(value):
        result = Decimal(value)  # type: ignore[arg-type]
        return result if result > 0 else None
    return None


def parse_market(entry: object) -> Market:
    """One entry of ``/api/v1/markets`` (or the body of ``/api/v1/market``).

    Raises :class:`MalformedMessage` only when the entry is not an object or
    has no string ``symbol``; anything else missing gets a neutral default
    (type ``""``, state ``"Open"``, visible, increments ``None``).  O(1).
    """
    if not isinstance(entry, dict):
        raise MalformedMessage(f"market entry must be an object, got {type(entry).__name__}")
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise MalformedMessage(f"market entry has no symbol: {entry!r:.200}", field="symbol")
    base, _, quote = symbol.partition("_")
    market_type = _text(entry, "marketType")
    state = _text(entry, "orderBookState", "Open")
    if market_type and market_type not in KNOWN_MARKET_TYPES:
        log.info("%s: unfamiliar marketType %r kept as is", symbol, market_type)
    if state not in KNOWN_BOOK_STATES:
        log.info("%s: unfamiliar orderBookState %r kept as is", symbol, state)
    visible = entry.get("visible", True)
    return Market(
        symbol=symbol,
        base=_text(entry, "baseSymbol", base),
        quote=_text(entry, "quoteSymbol", quote.partition("_")[0]),
        market_type=market_type,
        order_book_state=state,
        visible=visible if isinstance(visible, bool) else True,
        tick_size=_increment(entry, "price", "tickSize"),
        step_size=_increment(entry, "quantity", "stepSize"),
    )


def parse_markets(body: object) -> tuple[list[Market], int]:
    """Parse a ``/api/v1/markets`` body (bytes, str or decoded list).

    Returns ``(markets, skipped)``: the markets understood, in the venue's
    order, and how many entries were skipped as unusable (each is logged).
    Raises :class:`MalformedMessage` when the body is not a JSON list.  O(n).
    """
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"markets: invalid JSON: {exc}") from exc
    if not isinstance(body, list):
        raise MalformedMessage(f"markets body must be a list, got {type(body).__name__}")
    markets: list[Market] = []
    skipped = 0
    for entry in body:
        try:
            markets.append(parse_market(entry))
        except MalformedMessage as exc:
            skipped += 1
            log.warning("markets: skipping an unusable entry: %s", exc)
    return markets, skipped


def close_matches(symbol: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of the ``known`` symbols closest to ``symbol``
    (case-insensitive), for "did you mean" suggestions.  O(len(known))."""
    by_upper = {name.upper(): name for name in known}
    found = difflib.get_close_matches(symbol.upper(), list(by_upper), n=n, cutoff=0.6)
    return [by_upper[match] for match in found]


class MarketCatalog:
    """The markets the venue lists, by symbol.  Immutable; replace it to refresh.

    Lookups are O(1); :meth:`validate` of an unknown symbol costs one
    :func:`difflib.get_close_matches` over all symbols.
    """

    def __init__(self, markets: Iterable[Market]) -> None:
        self._markets = {market.symbol: market for market in markets}

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._markets

    def __len__(self) -> int:
        return len(self._markets)

    def __iter__(self) -> Iterator[Market]:
        return iter(self._markets.values())

    def get(self, symbol: str) -> Market | None:
        """The market of ``symbol``, or ``None`` if not listed."""
        return self._markets.get(symbol)

    def close_matches(self, symbol: str, n: int = 3) -> list[str]:
        """Up to ``n`` listed symbols closest to ``symbol`` (case-insensitive)."""
        return close_matches(symbol, self._markets, n)

    def validate(self, symbols: Iterable[str]) -> list[str]:
        """Return ``symbols`` (order kept, duplicates removed) if all are listed.

        Raises :class:`UnknownSymbol` for the first one that is not, with the
        closest listed symbols as ``suggestions``; :class:`UsageError` for an
        empty list or a non-string.
        """
        result: list[str] = []
        for symbol in symbols:
            if not isinstance(symbol, str):
                raise UsageError(f"symbols must be strings, got {symbol!r}")
            if symbol not in self._markets:
                raise UnknownSymbol(symbol, self.close_matches(symbol))
            if symbol not in result:
                result.append(symbol)
        if not result:
            raise UsageError("no symbols given")
        return result

    def replicable(self, *, spot: bool = True, perp: bool = True) -> list[str]:
        """Symbols of the "all markets" mode: visible markets with a live book,
        SPOT and/or perpetual, in the venue's order.  O(n)."""
        return [
            market.symbol
            for market in self._markets.values()
            if market.visible
            and market.has_book
            and ((spot and market.is_spot) or (perp and market.is_perp))
        ]
