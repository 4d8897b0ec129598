"""An experimental hot path: how fast can an *exact* replica go in Python?

Not project code and not imported by the package: a measured argument for
the changes proposed in ``RESULTS.md``.  Same contract as ``orderbook``
on the synced path (exact ``Decimal`` levels, a frame applied whole or not at
all, ``U == u + 1`` enforced, prices and quantities validated as plain
decimal strings, ``E``/``T`` accepted as ints or digit strings), with a
different layout:

* each ladder is a plain ``list`` of int keys sorted so the BEST IS LAST
  (bids ``+price``, asks ``-price`` in fixed point), next to a ``dict``.
  ``bisect.insort`` / ``del`` are C; an insert or delete near the touch (most
  of them) moves only the tail of the list;
* the best level of a side is refreshed once per touched side, not tested
  per level;
* the event and the action are plain ``__slots__`` classes (a frozen
  dataclass ``__init__`` costs ~2x: it goes through ``object.__setattr__``);
* ``LazyBook`` keeps, per level, only the quantity *string* as received and
  builds the ``(Decimal, Decimal)`` tuple when a level is read (cached until
  it changes): fewer ``Decimal`` constructions on the hot path and about a
  third of the memory.  Prices map to keys through a small bounded cache.

The module is fully annotated so that ``mypyc`` can compile it
(``benchmarks/mypyc_compare.py`` does, in a temporary directory).
Snapshot rescaling (a price with more decimals than the snapshot) and the
WAITING/buffering states are left out: they are off the hot path.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from decimal import Decimal, InvalidOperation
from typing import Any, Optional, Union

import orjson

Level = tuple[Decimal, Decimal]
RawLevels = list[Any]

_loads = orjson.loads
_DIGITS = "0123456789."
_CACHE_LIMIT = 65_536
_SMALL_CACHE_LIMIT = 4_096


class Malformed(ValueError):
    pass


class Gap(Exception):
    pass


class Event:
    __slots__ = ("symbol", "first_id", "last_id", "event_time", "engine_time", "bids", "asks")

    def __init__(
        self,
        symbol: str,
        first_id: int,
        last_id: int,
        event_time: int,
        engine_time: int,
        bids: RawLevels,
        asks: RawLevels,
    ) -> None:
        self.symbol = symbol
        self.first_id = first_id
        self.last_id = last_id
        self.event_time = event_time
        self.engine_time = engine_time
        self.bids = bids
        self.asks = asks


def _as_int(value: object, field: str) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdecimal():
        return int(value)
    raise Malformed(f"{field} must be an integer or a digit string, got {value!r}")


def parse_frame(raw: Union[bytes, str]) -> Event:
    """Depth frames only (the prototype has no slow path for other streams)."""
    try:
        message = _loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Malformed("invalid JSON") from exc
    if not isinstance(message, dict):
        raise Malformed("frame must be an object")
    stream = message.get("stream")
    data = message.get("data")
    if not isinstance(stream, str) or not isinstance(data, dict) or not stream.startswith("depth."):
        raise Malformed("not a depth frame")
    symbol = stream.rpartition(".")[2]
    try:
        first: object = data["U"]
        last: object = data["u"]
        bids: object = data["b"]
        asks: object = data["a"]
        event_time: object = data["E"]
        engine_time: object = data["T"]
    except KeyError as exc:
        raise Malformed(f"depth frame lacks {exc.args[0]!r}") from None
    first_id = _as_int(first, "U")
    last_id = _as_int(last, "u")
    if first_id > last_id:
        raise Malformed("U > u")
    if data.get("s", symbol) != symbol:
        raise Malformed("s does not match the stream")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise Malformed("a and b must be lists")
    return Event(symbol, first_id, last_id, _as_int(event_time, "E"), _as_int(engine_time, "T"), bids, asks)


def _scale_of(pairs: RawLevels) -> int:
    return max((len(str(p).partition(".")[2]) for p, _ in pairs), default=0)


class EagerBook:
    """Levels stored as ``(Decimal, Decimal)`` tuples, built when they change."""

    __slots__ = ("symbol", "_bk", "_ak", "_bl", "_al", "_bp", "_ap", "_best_bid", "_best_ask",
                 "_last", "_bridged", "_ts", "_scale")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._scale = 0
        self._bp: dict[str, tuple[int, Decimal]] = {}
        self._ap: dict[str, tuple[int, Decimal]] = {}
        self._bk: list[int] = []
        self._ak: list[int] = []
        self._bl: dict[int, Level] = {}
        self._al: dict[int, Level] = {}
        self._best_bid: Optional[Level] = None
        self._best_ask: Optional[Level] = None
        self._last = 0
        self._bridged = False
        self._ts = 0

    def apply_snapshot(self, raw: bytes) -> None:
        body = _loads(raw)
        bids: RawLevels = body["bids"]
        asks: RawLevels = body["asks"]
        self._scale = max(_scale_of(bids), _scale_of(asks))
        self._bp.clear()
        self._ap.clear()
        bl: dict[int, Level] = {}
        al: dict[int, Level] = {}
        for p, q in bids:
            key, price = self._entry(p, self._bp, 1)
            qty = Decimal(q)
            if qty:
                bl[key] = (price, qty)
        for p, q in asks:
            key, price = self._entry(p, self._ap, -1)
            qty = Decimal(q)
            if qty:
                al[key] = (price, qty)
        self._bl, self._al = bl, al
        self._bk, self._ak = sorted(bl), sorted(al)
        self._best_bid = bl[self._bk[-1]] if self._bk else None
        self._best_ask = al[self._ak[-1]] if self._ak else None
        self._last = int(body["lastUpdateId"])
        self._bridged = False

    def _entry(self, price: object, prices: dict[str, tuple[int, Decimal]], sign: int) -> tuple[int, Decimal]:
        if not isinstance(price, str) or not price.isascii() or not price.replace(".", "", 1).isdecimal():
            raise Malformed(f"bad price {price!r}")
        whole, _, fraction = price.partition(".")
        if len(fraction) > self._scale:
            raise NotImplementedError("rescaling is not prototyped")
        key = int((whole + fraction.ljust(self._scale, "0")) or "0")
        if not key:
            raise Malformed("price must be > 0")
        entry = (sign * key, Decimal(price))
        if len(prices) >= _CACHE_LIMIT:
            prices.clear()
        prices[price] = entry
        return entry

    def _prepare(self, raw: RawLevels, prices: dict[str, tuple[int, Decimal]], sign: int) -> list[tuple[int, Optional[Level]]]:
        out: list[tuple[int, Optional[Level]]] = []
        try:
            for price, qty in raw:
                entry = prices.get(price)
                if entry is None:
                    entry = self._entry(price, prices, sign)
                if qty.strip(_DIGITS):
                    raise InvalidOperation
                quantity = Decimal(qty)
                out.append((entry[0], (entry[1], quantity) if quantity else None))
        except (TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            if isinstance(exc, Malformed):
                raise
            raise Malformed(f"bad level in {raw!r}") from exc
        return out

    def apply_delta(self, event: Event) -> None:
        if not self._bridged or event.first_id != self._last + 1:
            if self._bridged or not event.first_id <= self._last + 1 <= event.last_id:
                raise Gap(event.first_id, self._last)
        if event.symbol != self.symbol:
            raise ValueError("wrong symbol")
        bids = self._prepare(event.bids, self._bp, 1) if event.bids else None
        asks = self._prepare(event.asks, self._ap, -1) if event.asks else None
        if bids:
            keys = self._bk
            levels = self._bl
            for key, level in bids:
                if level is None:
                    if levels.pop(key, None) is not None:
                        del keys[bisect_left(keys, key)]
                else:
                    if key not in levels:
                        insort(keys, key)
                    levels[key] = level
            self._best_bid = levels[keys[-1]] if keys else None
        if asks:
            keys = self._ak
            levels = self._al
            for key, level in asks:
                if level is None:
                    if levels.pop(key, None) is not None:
                        del keys[bisect_left(keys, key)]
                else:
                    if key not in levels:
                        insort(keys, key)
                    levels[key] = level
            self._best_ask = levels[keys[-1]] if keys else None
        self._last = event.last_id
        self._ts = event.engine_time
        self._bridged = True

    def best_bid(self) -> Optional[Level]:
        return self._best_bid

    def best_ask(self) -> Optional[Level]:
        return self._best_ask

    def is_crossed(self) -> bool:
        return bool(self._bk) and bool(self._ak) and self._bk[-1] >= -self._ak[-1]

    def bids(self, n: int) -> list[Level]:
        levels = self._bl
        return [levels[k] for k in self._bk[: -n - 1 : -1]] if n > 0 else []

    def asks(self, n: int) -> list[Level]:
        levels = self._al
        return [levels[k] for k in self._ak[: -n - 1 : -1]] if n > 0 else []

    def all_bids(self) -> list[Level]:
        return [self._bl[k] for k in reversed(self._bk)]

    def all_asks(self) -> list[Level]:
        return [self._al[k] for k in reversed(self._ak)]


class _LazySide:
    """One ladder of :class:`LazyBook`."""

    __slots__ = ("sign", "keys", "qty", "view", "prices", "best")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []  # signed fixed-point keys, best last
        self.qty: dict[int, str] = {}  # key -> quantity string as received
        self.view: dict[int, Level] = {}  # levels already built for a reader
        self.prices: dict[str, int] = {}  # bounded price-string -> key cache
        self.best: Optional[Level] = None


class LazyBook:
    """Levels stored as quantity strings; ``(Decimal, Decimal)`` built on read."""

    __slots__ = ("symbol", "_b", "_a", "_last", "_bridged", "_ts", "_scale", "_unit")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._b = _LazySide(1)
        self._a = _LazySide(-1)
        self._scale = 0
        self._unit = Decimal(1)
        self._last = 0
        self._bridged = False
        self._ts = 0

    def apply_snapshot(self, raw: bytes) -> None:
        body = _loads(raw)
        bids: RawLevels = body["bids"]
        asks: RawLevels = body["asks"]
        self._scale = max(_scale_of(bids), _scale_of(asks))
        for side, pairs in ((self._b, bids), (self._a, asks)):
            side.prices.clear()
            side.view.clear()
            qty: dict[int, str] = {}
            for p, q in pairs:
                key = self._key(p, side)
                if q.strip(_DIGITS) or not Decimal(q).is_finite():
                    raise Malformed(f"bad quantity {q!r}")
                if q.strip("0."):
                    qty[key] = q
            side.qty = qty
            side.keys = sorted(qty)
            self._refresh(side)
        self._last = int(body["lastUpdateId"])
        self._bridged = False

    def _key(self, price: object, side: _LazySide) -> int:
        if not isinstance(price, str) or not price.isascii() or not price.replace(".", "", 1).isdecimal():
            raise Malformed(f"bad price {price!r}")
        whole, _, fraction = price.partition(".")
        if len(fraction) > self._scale:
            raise NotImplementedError("rescaling is not prototyped")
        key = int((whole + fraction.ljust(self._scale, "0")) or "0")
        if not key:
            raise Malformed("price must be > 0")
        prices = side.prices
        if len(prices) >= _SMALL_CACHE_LIMIT:
            prices.clear()
        prices[price] = side.sign * key
        return side.sign * key

    def _level(self, side: _LazySide, key: int) -> Level:
        """Build (and remember) the exact level at ``key``."""
        level = (Decimal(side.sign * key).scaleb(-self._scale), Decimal(side.qty[key]))
        side.view[key] = level
        return level

    def _refresh(self, side: _LazySide) -> None:
        keys = side.keys
        if keys:
            key = keys[-1]
            level = side.view.get(key)
            side.best = level if level is not None else self._level(side, key)
        else:
            side.best = None

    def _prepare(self, raw: RawLevels, side: _LazySide) -> list[tuple[int, str]]:
        prices = side.prices
        out: list[tuple[int, str]] = []
        try:
            for price, qty in raw:
                key = prices.get(price)
                if key is None:
                    key = self._key(price, side)
                # a plain decimal string: digits and at most one dot, at least one digit
                if qty.strip(_DIGITS) or qty.count(".") > 1 or qty == "." or not qty:
                    raise InvalidOperation
                out.append((key, qty))
        except (TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            if isinstance(exc, Malformed):
                raise
            raise Malformed(f"bad level in {raw!r}") from exc
        return out

    def _apply_side(self, changes: list[tuple[int, str]], side: _LazySide) -> None:
        keys = side.keys
        qtys = side.qty
        view = side.view
        for key, qty in changes:
            if view:
                view.pop(key, None)
            if qty.strip("0."):
                if key not in qtys:
                    insort(keys, key)
                qtys[key] = qty
            elif qtys.pop(key, None) is not None:
                del keys[bisect_left(keys, key)]
        self._refresh(side)

    def apply_delta(self, event: Event) -> None:
        if not self._bridged or event.first_id != self._last + 1:
            if self._bridged or not event.first_id <= self._last + 1 <= event.last_id:
                raise Gap(event.first_id, self._last)
        if event.symbol != self.symbol:
            raise ValueError("wrong symbol")
        bids = self._prepare(event.bids, self._b) if event.bids else None
        asks = self._prepare(event.asks, self._a) if event.asks else None
        if bids:
            self._apply_side(bids, self._b)
        if asks:
            self._apply_side(asks, self._a)
        self._last = event.last_id
        self._ts = event.engine_time
        self._bridged = True

    def best_bid(self) -> Optional[Level]:
        return self._b.best

    def best_ask(self) -> Optional[Level]:
        return self._a.best

    def is_crossed(self) -> bool:
        bk, ak = self._b.keys, self._a.keys
        return bool(bk) and bool(ak) and bk[-1] >= -ak[-1]

    def _view(self, side: _LazySide, n: int) -> list[Level]:
        view = side.view
        out: list[Level] = []
        for key in side.keys[: -n - 1 : -1] if n > 0 else ():
            level = view.get(key)
            out.append(level if level is not None else self._level(side, key))
        return out

    def bids(self, n: int) -> list[Level]:
        return self._view(self._b, n)

    def asks(self, n: int) -> list[Level]:
        return self._view(self._a, n)

    def all_bids(self) -> list[Level]:
        return self._view(self._b, len(self._b.keys))

    def all_asks(self) -> list[Level]:
        return self._view(self._a, len(self._a.keys))


Book = Union[EagerBook, LazyBook]


class Changed:
    __slots__ = ("symbol", "event")

    def __init__(self, symbol: str, event: Event) -> None:
        self.symbol = symbol
        self.event = event


class Sync:
    """The synced path of ``SymbolSync``: apply, count, check crossing, report."""

    __slots__ = ("symbol", "book", "synced", "frames_applied", "gaps", "crossed")

    def __init__(self, book: Book) -> None:
        self.symbol = book.symbol
        self.book = book
        self.synced = True
        self.frames_applied = 0
        self.gaps = 0
        self.crossed = 0

    def receive_frame(self, event: Event) -> list[object]:
        if not self.synced:
            raise NotImplementedError("WAITING is not prototyped")
        book = self.book
        try:
            book.apply_delta(event)
        except Gap:
            self.gaps += 1
            self.synced = False
            return ["invalidated"]
        self.frames_applied += 1
        if book.is_crossed():
            self.crossed += 1
            self.synced = False
            return ["crossed"]
        return [Changed(self.symbol, event)]


def run_frames(sync: Sync, frames: list[bytes]) -> None:
    """The benchmark loop (compiled along with the module under mypyc)."""
    book = sync.book
    for raw in frames:
        sync.receive_frame(parse_frame(raw))
        book.best_bid()
        book.best_ask()
