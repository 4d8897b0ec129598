"""The venue's true order flow: a seeded random generator or a replayed capture.

An `OrderFlow` owns one `TrueBook` per symbol and advances them one engine update at
a time. Every update carries a contiguous update id range, a timestamp and absolute
level quantities (zero deletes). A bounded history of recent updates per symbol is kept
with the quantities they replaced, so a snapshot "as of N updates ago" is exact.

The model is deliberately naive (plain dicts of `Decimal` price -> `Decimal` quantity):
it is the truth the replica is checked against, so it shares no code with it.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "DEFAULT_SYMBOLS",
    "Change",
    "FlowExhausted",
    "MarketSpec",
    "OrderFlow",
    "Side",
    "TrueBook",
    "Update",
    "format_decimal",
]

DEFAULT_SYMBOLS = ("SOL_USDC", "BTC_USDC_PERP", "ETH_USDC", "SPCX.US_USDC", "TSLA.US_USDC_PERP")
"""The markets of a default `OrderFlow`: spot and perpetual, and tokenized
equities whose symbols contain a dot (as the real venue lists them), so that
every client tested against the venue meets a dotted symbol."""

Side = Literal["bid", "ask"]
Level = tuple[Decimal, Decimal]
ZERO = Decimal(0)


class Change(NamedTuple):
    """One level change: the new ABSOLUTE quantity at `price` on `side` (0 deletes)."""

    side: Side
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Update:
    """One engine update (or, in a replayed capture, one recorded frame).

    `first_id`..`last_id` is the update id range it covers (equal for generated
    flow); `timestamp` is engine time in microseconds.
    """

    symbol: str
    first_id: int
    last_id: int
    timestamp: int
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """Reference data of one market: its symbol and price/quantity increments."""

    symbol: str
    tick_size: Decimal
    step_size: Decimal

    @property
    def base(self) -> str:
        """Base asset: the part of the symbol before the first underscore."""
        return self.symbol.split("_")[0]

    @property
    def quote(self) -> str:
        """Quote asset: the part of the symbol after the first underscore."""
        parts = self.symbol.split("_")
        return parts[1] if len(parts) > 1 else ""

    @property
    def market_type(self) -> str:
        """"PERP" for `_PERP` symbols, "SPOT" otherwise."""
        return "PERP" if self.symbol.endswith("_PERP") else "SPOT"


class FlowExhausted(LookupError):
    """Raised by `OrderFlow.step` when a replayed capture has no update left."""


def format_decimal(value: Decimal) -> str:
    """Plain (never scientific) decimal text keeping the value's scale; zero is "0"."""
    return format(value, "f") if value else "0"


class TrueBook:
    """The exact book of one symbol: price -> quantity per side, plus its update id.

    `set` is O(1) except when it removes the best level (then the next `best_*` call
    is O(n)); `bids`/`asks` sort, O(n log n).
    """

    __slots__ = ("symbol", "last_update_id", "timestamp", "_sides", "_best")

    def __init__(self, symbol: str, last_update_id: int, timestamp: int) -> None:
        self.symbol = symbol
        self.last_update_id = last_update_id
        self.timestamp = timestamp
        self._sides: dict[Side, dict[Decimal, Decimal]] = {"bid": {}, "ask": {}}
        self._best: dict[Side, Decimal | None] = {"bid": None, "ask": None}

    def set(self, side: Side, price: Decimal, quantity: Decimal) -> Decimal:
        """Set the absolute quantity at `price` (0 removes it); return the old one."""
        levels = self._sides[side]
        best = self._best[side]
        if quantity:
            previous = levels.get(price, ZERO)
            levels[price] = quantity
            if best is not None and (price > best if side == "bid" else price < best):
                self._best[side] = price
            elif best is None and len(levels) == 1:
                self._best[side] = price
            return previous
        previous = levels.pop(price, ZERO)
        if price == best:
            self._best[side] = None
        return previous

    def quantity(self, side: Side, price: Decimal) -> Decimal:
        """Quantity resting at `price` on `side` (0 if none). O(1)."""
        return self._sides[side].get(price, ZERO)

    def depth(self, side: Side) -> int:
        """Number of levels on `side`. O(1)."""
        return len(self._sides[side])

    def best_price(self, side: Side) -> Decimal | None:
        """Best price on `side`, or None if the side is empty."""
        best = self._best[side]
        levels = self._sides[side]
        if best is None and levels:
            best = max(levels) if side == "bid" else min(levels)
            self._best[side] = best
        return best

    def best_bid(self) -> Level | None:
        """Highest bid as (price, quantity), or None."""
        price = self.best_price("bid")
        return None if price is None else (price, self._sides["bid"][price])

    def best_ask(self) -> Level | None:
        """Lowest ask as (price, quantity), or None."""
        price = self.best_price("ask")
        return None if price is None else (price, self._sides["ask"][price])

    def bids(self, limit: int | None = None) -> list[Level]:
        """Bid levels, best (highest) first, at most `limit` of them."""
        return sorted(self._sides["bid"].items(), reverse=True)[:limit]

    def asks(self, limit: int | None = None) -> list[Level]:
        """Ask levels, best (lowest) first, at most `limit` of them."""
        return sorted(self._sides["ask"].items())[:limit]

    def is_crossed(self) -> bool:
        """True if the best bid is at or above the best ask."""
        bid, ask = self.best_price("bid"), self.best_price("ask")
        return bid is not None and ask is not None and bid >= ask

    def copy(self) -> TrueBook:
        """An independent copy. O(n)."""
        other = TrueBook(self.symbol, self.last_update_id, self.timestamp)
        for side, levels in self._sides.items():
            other._sides[side] = dict(levels)
            other._best[side] = self._best[side]
        return other


@dataclass(frozen=True, slots=True)
class _Applied:
    """An applied update plus what it overwrote, so it can be undone."""

    update: Update
    replaced: tuple[Decimal, ...]
    previous_id: int
    previous_timestamp: int


UpdateSource = Callable[[], Update | None]


class OrderFlow:
    """Per-symbol true books advanced by a seeded random flow or a replayed capture.

    `step()` costs O(changes) (plus O(n) when a best level is removed);
    `snapshot()` costs O(n log n + lag).
    """

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        seed: int = 0,
        *,
        levels: int = 50,
        history: int = 1000,
    ) -> None:
        """Random flow over `symbols` (default `DEFAULT_SYMBOLS`), about `levels`
        levels per side, from `seed`.

        `history` bounds how many recent updates per symbol are kept for lagged
        snapshots.
        """
        if not symbols or len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be a non-empty list of distinct names")
        if levels < 10:
            raise ValueError("levels must be at least 10")
        rng = random.Random(seed)
        markets = {symbol: _random_market(symbol, rng) for symbol in symbols}
        books = {s: _random_book(markets[s], rng, levels) for s in symbols}
        generator = _RandomGenerator(rng, books, markets, levels)
        self._setup(books, markets, generator.next_update, history)

    @classmethod
    def from_capture(cls, path: str | Path, *, history: int = 1000) -> OrderFlow:
        """Replay the true flow recorded in a capture file (.jsonl or .jsonl.gz).

        Each symbol's truth starts at its first REST depth snapshot; its depth
        frames are replayed in file order, skipping frames wholly at or before the
        snapshot id and applying the one that straddles it. Raises ValueError if a
        symbol's frames are not contiguous after its snapshot.
        """
        snapshots, frames = _read_capture(Path(path))
        books = {s: _book_from_snapshot(s, body) for s, body in snapshots.items()}
        markets = {s: _infer_market(s, body) for s, body in snapshots.items()}
        updates = list(_replayed_updates(books, frames))
        flow = object.__new__(cls)  # bypass the random constructor
        flow._setup(books, markets, _drain(updates), history)
        return flow

    def _setup(
        self,
        books: dict[str, TrueBook],
        markets: dict[str, MarketSpec],
        source: UpdateSource,
        history: int,
    ) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        self._books = books
        self._markets = markets
        self._source = source
        self._history: dict[str, deque[_Applied]] = {
            symbol: deque(maxlen=history) for symbol in books
        }

    @property
    def symbols(self) -> list[str]:
        """The symbols this flow drives, in a stable order."""
        return list(self._books)

    def market(self, symbol: str) -> MarketSpec:
        """Reference data of `symbol`; KeyError if unknown."""
        return self._markets[symbol]

    def truth(self, symbol: str) -> TrueBook:
        """The live true book of `symbol` (do not mutate); KeyError if unknown."""
        return self._books[symbol]

    def next_update(self) -> Update:
        """Advance one symbol by one update, record it and return it.

        Raises FlowExhausted when a replayed capture is over.
        """
        update = self._source()
        if update is None:
            raise FlowExhausted("the replayed capture has no update left")
        book = self._books[update.symbol]
        replaced = tuple(book.set(*change) for change in update.changes)
        entry = _Applied(update, replaced, book.last_update_id, book.timestamp)
        self._history[update.symbol].append(entry)
        book.last_update_id = update.last_id
        book.timestamp = update.timestamp
        return update

    def step(self) -> tuple[str, int, tuple[Change, ...]]:
        """Advance one update; return (symbol, last update id, changes)."""
        update = self.next_update()
        return update.symbol, update.last_id, update.changes

    def max_lag(self, symbol: str) -> int:
        """How many updates back `snapshot(symbol, lag=...)` can reach."""
        return len(self._history[symbol])

    def snapshot(self, symbol: str, limit: int = 1000, lag: int = 0) -> dict[str, Any]:
        """REST depth body of `symbol` as of `lag` updates ago, `limit` levels a side.

        Shape: {"asks": [[p, q], ...] ascending, "bids": [...] descending,
        "lastUpdateId": "<id>", "timestamp": <µs>}. Raises ValueError if `lag`
        exceeds `max_lag(symbol)`, KeyError if the symbol is unknown.
        """
        book = self._books[symbol]
        if lag:
            book = self._rewound(symbol, lag)
        return {
            "asks": [[format_decimal(p), format_decimal(q)] for p, q in book.asks(limit)],
            "bids": [[format_decimal(p), format_decimal(q)] for p, q in book.bids(limit)],
            "lastUpdateId": str(book.last_update_id),
            "timestamp": book.timestamp,
        }

    def _rewound(self, symbol: str, lag: int) -> TrueBook:
        history = self._history[symbol]
        if not 0 <= lag <= len(history):
            raise ValueError(f"lag {lag} outside the kept history (0..{len(history)})")
        book = self._books[symbol].copy()
        for index in range(len(history) - 1, len(history) - 1 - lag, -1):
            entry = history[index]
            for change, old in zip(reversed(entry.update.changes), reversed(entry.replaced)):
                book.set(change.side, change.price, old)
            book.last_update_id = entry.previous_id
            book.timestamp = entry.previous_timestamp
        return book


def _drain(updates: list[Update]) -> UpdateSource:
    """A source handing out `updates` in order, then None forever."""
    remaining: Iterator[Update] = iter(updates)

    def source() -> Update | None:
        return next(remaining, None)

    return source


# --- random flow -----------------------------------------------------------------

_PRICE_DECIMALS = (1, 2, 3, 4)
_QUANTITY_DECIMALS = (0, 1, 2, 3)
_MIN_LEVELS = 5
_DIRECTIONS: tuple[tuple[Side, int], ...] = (("bid", -1), ("ask", 1))


def _random_market(symbol: str, rng: random.Random) -> MarketSpec:
    tick = Decimal(1).scaleb(-rng.choice(_PRICE_DECIMALS))
    step = Decimal(1).scaleb(-rng.choice(_QUANTITY_DECIMALS))
    return MarketSpec(symbol, tick, step)


def _random_quantity(market: MarketSpec, rng: random.Random) -> Decimal:
    return rng.randint(1, 50_000) * market.step_size


def _random_book(market: MarketSpec, rng: random.Random, levels: int) -> TrueBook:
    """A fresh book: `levels` levels a side, 1-3 ticks apart, around a random mid."""
    mid = rng.randint(max(10_000, 8 * levels), 1_000_000)
    book = TrueBook(market.symbol, rng.randrange(10**9, 10**12), _now_us())
    for side, direction in _DIRECTIONS:
        ticks = mid
        for _ in range(levels):
            ticks += direction * rng.randint(1, 3)
            book.set(side, ticks * market.tick_size, _random_quantity(market, rng))
    return book


class _RandomGenerator:
    """Draws the next random update: one symbol, 1-4 distinct level changes.

    New bid prices are placed below the (running) best ask and ask prices above the
    best bid, so the book never crosses.
    """

    def __init__(
        self,
        rng: random.Random,
        books: dict[str, TrueBook],
        markets: dict[str, MarketSpec],
        levels: int,
    ) -> None:
        self._rng = rng
        self._books = books
        self._markets = markets
        self._symbols = list(books)
        self._levels = levels
        self._clock = 0

    def next_update(self) -> Update:
        symbol = self._rng.choice(self._symbols)
        book = self._books[symbol]
        changes = self._changes(book, self._markets[symbol])
        self._clock = max(self._clock + 1, _now_us())
        update_id = book.last_update_id + 1
        return Update(symbol, update_id, update_id, self._clock, tuple(changes))

    def _changes(self, book: TrueBook, market: MarketSpec) -> list[Change]:
        rng = self._rng
        wanted = rng.randint(1, 4)
        changes: dict[tuple[Side, Decimal], Change] = {}
        bound: dict[Side, Decimal | None] = {
            "bid": book.best_price("ask"),  # bids must stay below this
            "ask": book.best_price("bid"),  # asks must stay above this
        }
        deletions: dict[Side, int] = {"bid": 0, "ask": 0}
        while len(changes) < wanted:
            side: Side = "bid" if rng.random() < 0.5 else "ask"
            change = self._draw(book, market, side, bound[side], deletions[side])
            if change is None or (side, change.price) in changes:
                continue
            changes[side, change.price] = change
            if not change.quantity:
                deletions[side] += 1
            else:
                _tighten(bound, change)
        return list(changes.values())

    def _draw(
        self,
        book: TrueBook,
        market: MarketSpec,
        side: Side,
        opposite: Decimal | None,
        deleted: int,
    ) -> Change | None:
        """One candidate change on `side`, `opposite` being the far side's bound."""
        rng = self._rng
        offset = (1 + int(rng.expovariate(2.0 / self._levels))) * market.tick_size
        if opposite is None:
            own = book.best_price(side)
            if own is None:
                return None
            opposite = own + offset if side == "bid" else own - offset
        price = opposite - offset if side == "bid" else opposite + offset
        if price <= 0:
            return None
        current = book.quantity(side, price)
        if not current:
            return Change(side, price, _random_quantity(market, rng))
        depth = book.depth(side) - deleted
        if depth > _MIN_LEVELS and rng.random() < min(0.9, 0.5 * depth / self._levels):
            return Change(side, price, ZERO)
        quantity = _random_quantity(market, rng)
        if quantity == current:
            quantity += market.step_size
        return Change(side, price, quantity)


def _tighten(bound: dict[Side, Decimal | None], change: Change) -> None:
    """After adding a level, narrow the bound the other side must respect."""
    other: Side = "ask" if change.side == "bid" else "bid"
    limit = bound[other]
    if limit is None or (change.price > limit if change.side == "bid" else change.price < limit):
        bound[other] = change.price


def _now_us() -> int:
    return time.time_ns() // 1000


# --- capture replay --------------------------------------------------------------

Frame = dict[str, Any]
_SNAPSHOT_KEYS: tuple[tuple[Side, str], ...] = (("bid", "bids"), ("ask", "asks"))


def _read_capture(path: Path) -> tuple[dict[str, dict[str, Any]], list[Frame]]:
    """First successful REST depth body per symbol, and all depth frames in order."""
    opener = gzip.open if path.name.endswith(".gz") else open
    snapshots: dict[str, dict[str, Any]] = {}
    frames: list[Frame] = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            if _is_depth_snapshot(event):
                snapshots.setdefault(event["query"]["symbol"], event["body"])
            elif event.get("kind") == "ws":
                frame = event.get("frame") or {}
                if str(frame.get("stream", "")).startswith("depth."):
                    frames.append(frame["data"])
    return snapshots, frames


def _is_depth_snapshot(event: dict[str, Any]) -> bool:
    return (
        event.get("kind") == "rest"
        and event.get("path") == "/api/v1/depth"
        and event.get("status") == 200
        and "symbol" in (event.get("query") or {})
    )


def _book_from_snapshot(symbol: str, body: dict[str, Any]) -> TrueBook:
    book = TrueBook(symbol, int(body["lastUpdateId"]), int(body.get("timestamp", 0)))
    for side, key in _SNAPSHOT_KEYS:
        for price, quantity in body[key]:
            book.set(side, Decimal(price), Decimal(quantity))
    return book


def _infer_market(symbol: str, body: dict[str, Any]) -> MarketSpec:
    """Tick and step sizes: the finest decimal places seen in the snapshot."""

    def finest(values: Iterable[str]) -> Decimal:
        exponents = [int(Decimal(v).as_tuple().exponent) for v in values]
        return Decimal(1).scaleb(min(exponents, default=0))

    levels = [*body["bids"], *body["asks"]]
    return MarketSpec(symbol, finest(p for p, _ in levels), finest(q for _, q in levels))


def _replayed_updates(books: dict[str, TrueBook], frames: list[Frame]) -> Iterator[Update]:
    """The frames that carry each symbol's truth on from its snapshot, as updates."""
    last = {symbol: book.last_update_id for symbol, book in books.items()}
    for data in frames:
        symbol = str(data.get("s"))
        if symbol not in last:
            continue
        first_id, last_id = int(data["U"]), int(data["u"])
        if last_id <= last[symbol]:
            continue
        if first_id > last[symbol] + 1:
            raise ValueError(
                f"capture gap in {symbol}: frame {first_id}..{last_id} "
                f"after update {last[symbol]}"
            )
        last[symbol] = last_id
        changes = (*_frame_changes("bid", data["b"]), *_frame_changes("ask", data["a"]))
        timestamp = int(data["T"] if "T" in data else data["E"])
        yield Update(symbol, first_id, last_id, timestamp, changes)


def _frame_changes(side: Side, levels: list[list[str]]) -> Iterator[Change]:
    for price, quantity in levels:
        yield Change(side, Decimal(price), Decimal(quantity))
