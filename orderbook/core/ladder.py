"""One side of a book: exact price levels, best first.  No I/O.

:class:`Ladder` here is the pure-Python implementation; when the C module
is built, ``orderbook._speedups.Ladder`` is its native twin with the same
API, behaviour and errors (``tests/test_native.py`` runs both on the same
random inputs).  :data:`Ladder` / :func:`apply_levels` / :func:`crossed`
at the bottom of this module are whichever one is in use.

Keys
----
A level's *key* is its price in fixed point, ``price * 10**scale``, an exact
integer; bid keys are negated so that ascending keys are best first on both
sides.  ``scale`` is the largest number of decimals of the prices held (both
sides of a book share it); a price with more decimals re-keys the ladders
(O(n), rare).  With the value bound of :mod:`orderbook.protocol.decimals`
every key stays below ``10**38``.

Levels are read as ``(Decimal price, Decimal quantity)`` tuples; each side
keeps the tuples of its best :data:`REMEMBERED_DEPTH` levels once read, so a
level near the touch is converted at most once per change, while reading
the whole book does not multiply its memory.

This implementation
-------------------
A ``sortedcontainers.SortedList`` of keys plus a ``dict`` key -> stored
quantity (the venue's validated string, or the level tuple once read).  A
deleted key may stay in the sorted list as a *dead* key until its price
comes back or reaches the front (a set operation instead of a sorted
insert; at most ``len // 2 + DEAD_SLACK`` of them).  Invariants, verified by
:meth:`Ladder.check`: the sorted list holds exactly the live and dead keys,
its first key is live, no quantity is zero, ``best`` is the first level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from enum import IntEnum
from itertools import islice
from typing import Any, Union

from sortedcontainers import SortedList

from .._native import speedups
from ..errors import IntegrityError, MalformedMessage, UsageError, shown
from ..protocol.decimals import MAX_DECIMALS, MAX_INTEGER_DIGITS, is_decimal_string

__all__ = ["Ladder", "Level"]

Level = tuple[Decimal, Decimal]
"""A price level: ``(price, quantity)``, both exact."""

REMEMBERED_DEPTH = 100
"""Converted level tuples are kept for the best this many levels of a side
(both implementations)."""
DEAD_SLACK = 512
"""The pure ladder keeps at most ``len(levels) // 2 + DEAD_SLACK`` dead keys."""
PRICE_CACHE_LIMIT = 65_536
"""Price strings remembered per pure ladder (their keys), before it starts over."""
KEY_LIST_LOAD = 128
"""Sublist size of the pure ladder's sorted key list (see :class:`_KeyList`)."""

_Stored = Union[str, Level]


class LevelError(IntEnum):
    """What is wrong with a level of a frame (the C module raises the same)."""

    SHAPE = 0
    PRICE_TEXT = 1
    PRICE_ZERO = 2
    QUANTITY_TEXT = 3


def level_error(kind: int, value: object, symbol: str | None) -> MalformedMessage:
    """The :class:`MalformedMessage` for a bad level of a frame (both
    implementations raise exactly this)."""
    if kind == LevelError.SHAPE:
        return MalformedMessage(
            f"bad level in frame, expected [price, quantity] strings: {shown(value)}", symbol=symbol
        )
    if kind == LevelError.PRICE_TEXT:
        return MalformedMessage(
            f"price must be a plain decimal string of at most {MAX_INTEGER_DIGITS} digits before "
            f"the point and {MAX_DECIMALS} after, got {shown(value)}",
            field="price",
            symbol=symbol,
        )
    if kind == LevelError.PRICE_ZERO:
        return MalformedMessage(f"price must be > 0, got {shown(value)}", field="price", symbol=symbol)
    return MalformedMessage(
        f"quantity must be a plain decimal string of at most {MAX_INTEGER_DIGITS} digits before "
        f"the point and {MAX_DECIMALS} after, got {shown(value)}",
        field="quantity",
        symbol=symbol,
    )


class _KeyList(SortedList):  # type: ignore[misc]
    """A ``SortedList`` with smaller sublists: the touch sits at the front of
    the first sublist, where every insert shifts the rest of it, and books
    hold thousands of levels, not millions (sortedcontainers advises a load
    near the cube root of the size)."""

    DEFAULT_LOAD_FACTOR = KEY_LIST_LOAD


def _digits(text: str, scale: int) -> int:
    """``text * 10**scale`` for a plain decimal with at most ``scale`` decimals."""
    whole, _, fraction = text.partition(".")
    return int((whole + fraction.ljust(scale, "0")) or "0")


class Ladder:
    """One side of a book, best level first (see the module docstring).

    ``sign`` is -1 for bids and +1 for asks.  Costs: ``best`` and ``len``
    O(1); :meth:`view` O(n + dead keys among them); a frame's changes
    through :func:`apply_levels` O(k log n).
    """

    __slots__ = ("sign", "scale", "_keys", "_levels", "_prices", "_dead", "_best", "_best_key")

    def __init__(self, sign: int) -> None:
        if sign not in (-1, 1):
            raise UsageError("sign must be -1 (bids) or +1 (asks)")
        self.sign = sign
        self.scale = 0
        self._keys: SortedList = _KeyList()
        self._levels: dict[int, _Stored] = {}
        self._prices: dict[str, int] = {}
        self._dead: set[int] = set()
        self._best: Level | None = None
        self._best_key: int | None = None

    # ------------------------------------------------------------- reads
    @property
    def best(self) -> Level | None:
        """The best level, or ``None`` when the side is empty.  O(1)."""
        return self._best

    @property
    def best_key(self) -> int | None:
        """The best level's key, or ``None``.  O(1)."""
        return self._best_key

    def __len__(self) -> int:
        return len(self._levels)

    def price_of(self, key: int) -> Decimal:
        """The exact price of a key.  O(1)."""
        return Decimal(f"{key * self.sign}E-{self.scale}")

    def keys(self) -> list[int]:
        """The keys of the levels held, best first.  O(n)."""
        return [key for key in self._keys if key in self._levels]

    def view(self, n: int | None) -> list[Level]:
        """The best ``n`` levels (all when ``None``).  O(n + dead keys among them)."""
        if n is not None and n < 0:
            raise UsageError("n must be >= 0")
        alive = filter(None, map(self._levels.get, self._keys))
        out = list(alive if n is None else islice(alive, n))
        if str in map(type, out):  # some levels not read since they changed
            keys = self._live_keys(len(out))
            for rank, stored in enumerate(out):
                if type(stored) is str:
                    out[rank] = self._convert(keys[rank], stored, rank < REMEMBERED_DEPTH)
        return out  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Level]:
        """Levels best first, converted on the way.  O(1) per level."""
        levels = self._levels
        rank = 0
        for key in self._keys:
            stored = levels.get(key)
            if stored is not None:
                yield self._convert(key, stored, rank < REMEMBERED_DEPTH)
                rank += 1

    def _live_keys(self, n: int) -> list[int]:
        if not self._dead:
            return self._keys[:n]  # type: ignore[no-any-return]
        return list(islice(filter(self._levels.__contains__, self._keys), n))

    def _convert(self, key: int, stored: _Stored, remember: bool) -> Level:
        if type(stored) is tuple:
            return stored
        level = (self.price_of(key), Decimal(stored))  # type: ignore[arg-type]
        if remember:
            self._levels[key] = level
        return level

    # ------------------------------------------------------------ writes
    def clear(self) -> None:
        """Remove every level; the scale goes back to 0.  O(1)."""
        self._load({}, 0)

    def load(self, levels: Sequence[tuple[str, str]], scale: int) -> None:
        """Replace the whole content with ``levels``: validated ``(price,
        quantity)`` strings, best first, at most ``scale`` decimals; zero
        quantities are skipped.  O(n log n)."""
        if not 0 <= scale <= MAX_DECIMALS:
            raise UsageError(f"scale must be in 0..{MAX_DECIMALS}, got {scale}")
        content: dict[int, _Stored] = {}
        previous: int | None = None
        sign = self.sign
        for pair in levels:
            if type(pair) not in (tuple, list) or len(pair) != 2:
                raise UsageError(f"Ladder.load needs validated (price, qty) strings at scale {scale}")
            price, qty = pair
            if (not is_decimal_string(price) or not is_decimal_string(qty)
                    or len(price.partition(".")[2]) > scale or not price.strip("0.")):
                raise UsageError(f"Ladder.load needs validated (price, qty) strings at scale {scale}")
            if not qty.strip("0."):
                continue
            key = sign * _digits(price, scale)
            if previous is not None and key <= previous:
                raise UsageError("Ladder.load needs distinct levels, best first")
            content[key] = qty
            previous = key
        self._load(content, scale)

    def _load(self, content: dict[int, _Stored], scale: int) -> None:
        self.scale = scale
        self._prices = {}
        self._levels = content
        self._keys = _KeyList(content)
        self._dead = set()
        self._refresh_best()

    def set_scale(self, decimals: int) -> None:
        """Re-key for ``decimals`` decimal places (not fewer than now).  O(n log n)."""
        if not self.scale <= decimals <= MAX_DECIMALS:
            raise UsageError(
                f"a scale can only grow, up to {MAX_DECIMALS}; got {decimals} at {self.scale}"
            )
        if decimals == self.scale:
            return
        factor = 10 ** (decimals - self.scale)
        self.scale = decimals
        content: dict[int, _Stored] = {}
        for key, stored in self._levels.items():  # a level already read is re-spelled
            if isinstance(stored, tuple):
                stored = (self.price_of(key * factor), stored[1])
            content[key * factor] = stored
        self._load(content, decimals)

    def cut_beyond(self, price: str) -> int:
        """Remove the levels worse than ``price`` (a plain decimal string);
        return how many.  O(k log n)."""
        if not is_decimal_string(price):
            raise UsageError("cut_beyond needs a plain decimal price string within the bound")
        decimals = len(price.partition(".")[2])
        scale = max(decimals, self.scale)
        bound = self.sign * _digits(price, scale)
        factor = 10 ** (scale - self.scale)
        keys = self._keys
        cut = keys.bisect_right(bound // factor)  # key * factor > bound  <=>  key > bound // factor
        doomed = keys[cut:]
        removed = 0
        for key in doomed:
            if self._levels.pop(key, None) is None:
                self._dead.discard(key)
            else:
                removed += 1
        del keys[cut:]
        if doomed:
            self._refresh_best()
        return removed

    def _refresh_best(self) -> None:
        """Recompute ``best`` from the first live key, dropping dead keys
        from the front.  O(1), plus O(log n) per dead key dropped."""
        keys, levels = self._keys, self._levels
        while keys:
            key = keys[0]
            stored = levels.get(key)
            if stored is None:  # a dead key reached the front: drop it for good
                self._dead.remove(key)
                del keys[0]
                continue
            self._best_key = key
            self._best = self._convert(key, stored, True)
            return
        self._best_key = None
        self._best = None

    # --------------------------------------------------------- integrity
    def check(self, name: str) -> None:
        """Raise :class:`IntegrityError` unless every invariant holds.  O(n)."""
        keys, levels, dead = self._keys, self._levels, self._dead
        keys._check()
        listed = set(keys)
        if len(listed) != len(keys):
            raise IntegrityError(f"{name} keys out of order")
        if not dead.isdisjoint(levels) or listed != set(levels) | dead:
            raise IntegrityError(f"{name} keys and levels disagree")
        if len(dead) > len(levels) // 2 + DEAD_SLACK:
            raise IntegrityError(f"{len(dead)} dead {name} keys were not compacted")
        for key, stored in levels.items():
            if key * self.sign <= 0:
                raise IntegrityError(f"{name} key of a price <= 0")
            price, qty = self._convert(key, stored, remember=False)
            if not qty > 0:
                raise IntegrityError(f"{name} level with quantity <= 0")
            if price != self.price_of(key):
                raise IntegrityError(f"{name} cached level does not match its key")
        first = keys[0] if keys else None
        if first in dead:
            raise IntegrityError(f"the first {name} key is dead")
        if self._best_key != first or (first is not None and self._best != self._convert(first, levels[first], False)):
            raise IntegrityError(f"{name} cached best level is not the best level")


Change = tuple[int, Union[str, None], str]
"""A checked level of a frame: ``(key, quantity or None to delete, price)``;
the key is 0 while it waits for a re-scale."""


def _prepare(raw: Any, ladder: Ladder, symbol: str) -> tuple[list[Change], int]:
    """Check one side of a frame: its changes and the most decimals of a
    price beyond the ladder's scale (0: none).  Raises
    :class:`MalformedMessage` before anything changes."""
    prices = ladder._prices
    scale = ladder.scale
    sign = ladder.sign
    out: list[Change] = []
    most = 0
    try:
        levels = list(raw)
    except TypeError:
        raise level_error(LevelError.SHAPE, raw, symbol) from None
    for level in levels:
        if (type(level) is not list and type(level) is not tuple) or len(level) != 2:
            raise level_error(LevelError.SHAPE, raw, symbol)
        price, qty = level
        if type(price) is not str:
            raise level_error(LevelError.PRICE_TEXT, price, symbol)
        key = prices.get(price)
        if key is None:
            if not is_decimal_string(price):
                raise level_error(LevelError.PRICE_TEXT, price, symbol)
            if not price.strip("0."):
                raise level_error(LevelError.PRICE_ZERO, price, symbol)
            decimals = len(price.partition(".")[2])
            if decimals > scale:
                most = max(most, decimals)
                key = 0  # keyed after the re-scale
            else:
                if len(prices) >= PRICE_CACHE_LIMIT:
                    prices.clear()
                key = prices[price] = sign * _digits(price, scale)
        if not is_decimal_string(qty):
            raise level_error(LevelError.QUANTITY_TEXT, qty, symbol)
        out.append((key, qty if qty.strip("0.") else None, price))
    return out, most


def _store(ladder: Ladder, changes: list[Change]) -> bool:
    """Store checked changes; True when the best level may have changed."""
    levels, keys, dead = ladder._levels, ladder._keys, ladder._dead
    best_key = ladder._best_key
    touched = best_key is None
    for key, qty, _price in changes:
        if qty is None:
            if levels.pop(key, None) is not None:
                dead.add(key)
        else:
            if key not in levels:
                if key in dead:
                    dead.discard(key)
                else:
                    keys.add(key)
            levels[key] = qty
        if not touched and key <= best_key:  # type: ignore[operator]
            touched = True
    if touched:
        ladder._refresh_best()
    if len(dead) > len(levels) // 2 + DEAD_SLACK:
        ladder._keys = _KeyList(levels)
        dead.clear()
    return touched


def py_apply_levels(bids: Ladder, asks: Ladder, event: Any) -> bool:
    """Apply a frame's levels to the two ladders of a book.

    Every level of both sides is checked first (raising
    :class:`MalformedMessage`, the ladders unchanged); then both ladders are
    re-keyed if a price has more decimals than their scale, and every change
    is stored.  Returns True when a best level may have changed.
    Cost: O(k log n) for k levels.
    """
    symbol = event.symbol
    bid_changes, bid_most = _prepare(event.bids, bids, symbol)
    ask_changes, ask_most = _prepare(event.asks, asks, symbol)
    most = max(bid_most, ask_most)
    if most:  # a price with more decimals: re-key both ladders, then every change
        bids.set_scale(most)
        asks.set_scale(most)
        bid_changes = [(bids.sign * _digits(p, most), q, p) for _k, q, p in bid_changes]
        ask_changes = [(asks.sign * _digits(p, most), q, p) for _k, q, p in ask_changes]
    touched = bool(bid_changes) and _store(bids, bid_changes)
    if ask_changes and _store(asks, ask_changes):
        touched = True
    return touched


def py_crossed(bids: Ladder, asks: Ladder) -> bool:
    """True when the best bid is at or above the best ask.  O(1)."""
    bid, ask = bids.best_key, asks.best_key
    if bid is None or ask is None:
        return False
    scale = max(bids.scale, asks.scale)
    return -bid * int(10 ** (scale - bids.scale)) >= ask * int(10 ** (scale - asks.scale))


def _quantity_digits(stored: _Stored) -> tuple[int, int]:
    """A stored quantity as (digits, decimals as spelled)."""
    if type(stored) is str:
        whole, _dot, fraction = stored.partition(".")
        return int(whole + fraction), len(fraction)
    _sign, figures, exponent = stored[1].as_tuple()  # type: ignore[union-attr]  # a level tuple
    digits = int("".join(map(str, figures)))
    if exponent >= 0:  # type: ignore[operator]
        return digits * 10**exponent, 0  # type: ignore[operator]
    return digits, -exponent  # type: ignore[operator]


def py_write_levels(bids: Ladder, asks: Ladder, n: int, out: bytearray | memoryview, offset: int,
                    price_scale: int = MAX_DECIMALS, qty_scale: int = MAX_DECIMALS,
                    ) -> tuple[int, int, int, int]:
    """Write the best ``n`` levels of each side into ``out`` from byte
    ``offset`` as fixed-point integers: each price times ``10**price_scale``
    and quantity times ``10**qty_scale``, 16 bytes little-endian (the storage
    of Arrow ``decimal128`` values); ``n`` bid ``(price, quantity)`` pairs
    then ``n`` ask pairs, ``64 * n`` bytes, zero where a side has fewer
    levels.  Returns ``(bids, asks, price scale needed, quantity scale
    needed)``: the book's price scale and the most decimals a quantity among
    them is spelled with; when a scale given is smaller, nothing is written.
    Raises :class:`UsageError` for a bad size or scale, or when ``out`` is
    too small.  O(n)."""
    if n < 0 or offset < 0 or not (0 <= price_scale <= MAX_DECIMALS and 0 <= qty_scale <= MAX_DECIMALS):
        raise UsageError(f"n and offset must be >= 0 and the scales in 0..{MAX_DECIMALS}")
    sides = []
    decimals = 0
    for ladder in (bids, asks):
        keys = ladder._live_keys(n)
        quantities = [_quantity_digits(ladder._levels[key]) for key in keys]
        decimals = max([decimals, *(places for _digits, places in quantities)])
        sides.append((ladder, keys, quantities))
    scale = max(bids.scale, asks.scale)
    written = (len(sides[0][1]), len(sides[1][1]))
    if scale > price_scale or decimals > qty_scale:
        return written[0], written[1], scale, decimals
    if offset + 64 * n > len(out):
        raise UsageError("out is too small for n levels per side from offset")
    out[offset:offset + 64 * n] = bytes(64 * n)
    for number, (ladder, keys, quantities) in enumerate(sides):
        factor = ladder.sign * 10 ** (price_scale - ladder.scale)
        at = offset + 32 * n * number
        for key, (digits, places) in zip(keys, quantities):
            out[at:at + 16] = (key * factor).to_bytes(16, "little", signed=True)
            out[at + 16:at + 32] = (digits * 10 ** (qty_scale - places)).to_bytes(16, "little", signed=True)
            at += 32
    return written[0], written[1], scale, decimals


PyLadder = Ladder
"""The pure-Python ladder, whichever implementation is in use."""

apply_levels: Callable[[Any, Any, Any], bool]
"""``apply_levels(bids, asks, event)``: the implementation in use (see :func:`py_apply_levels`)."""
crossed: Callable[[Any, Any], bool]
"""``crossed(bids, asks)``: the implementation in use (see :func:`py_crossed`)."""
write_levels: Callable[[Any, Any, int, Any, int, int, int], tuple[int, int, int, int]]
"""``write_levels(bids, asks, n, out, offset, price_scale, qty_scale)``: the
implementation in use (see :func:`py_write_levels`)."""

if speedups is not None:
    speedups.configure(Decimal, level_error, UsageError, IntegrityError, MAX_INTEGER_DIGITS,
                       MAX_DECIMALS, REMEMBERED_DEPTH)
    Ladder = speedups.Ladder  # type: ignore[misc] # noqa: F811
    apply_levels = speedups.apply_levels
    crossed = speedups.crossed
    write_levels = speedups.write_levels
else:
    apply_levels = py_apply_levels
    crossed = py_crossed
    write_levels = py_write_levels
