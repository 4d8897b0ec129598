"""``OrderBook``: an exact price ladder per side for one symbol.  No I/O.

Representation
--------------
Each side is a :class:`Ladder`: a ``sortedcontainers.SortedList`` of integer
*keys* plus a ``dict`` from key to the level's quantity.

* A key is the price in fixed point, ``price * 10**scale``, an exact ``int``;
  bid keys are negated so both ladders sort best-first.  ``scale`` starts at
  the snapshot's largest number of decimals and grows (re-keying the book,
  O(n)) when a price with more decimals arrives: no price is ever rounded and
  floats are never keys.
* A quantity is stored as the venue's own validated decimal string (exact,
  and already allocated by the JSON parser), and turned into a
  ``(Decimal price, Decimal qty)`` tuple only when read; for the best 100
  levels of a side the tuple then replaces the string in the dict, so a
  level near the touch is converted at most once per change.  This keeps the hot path free of ``Decimal`` construction and a
  level at about 130 bytes.
* ``best`` caches the best level tuple, so reading the touch is O(1).

* A deleted level's key may stay in the sorted list as a *dead* key (see
  :class:`Ladder`): prices near the touch come and go constantly, and
  reviving a dead key is a set operation instead of a sorted insert.

Invariants (verified by :meth:`OrderBook.check_integrity`): the sorted list
holds exactly the dict's keys plus the dead keys, and its first key is live;
no quantity is zero; ``best`` is the first key's level; dead keys are
bounded; the book is not crossed.

Sequencing: :meth:`OrderBook.apply_delta` accepts only a frame that continues
the book: the first frame after a snapshot at ``L`` must satisfy
``U <= L+1 <= u`` (the snapshot may fall inside an aggregated frame, and
re-applying absolute quantities is then correct), every later one
``U == last_update_id + 1``.  A frame is checked completely before anything
changes: a malformed frame or one that does not continue raises and leaves
the book untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from decimal import MAX_PREC, Decimal, localcontext
from typing import Literal, Union

import numpy as np
from numpy.typing import NDArray
from sortedcontainers import SortedList

from ._native import speedups
from .errors import CrossedBook, IntegrityError, MalformedMessage, SequenceGap, UsageError, shown
from .protocol.decimals import is_decimal_string
from .wire import DepthEvent, RawLevels, Snapshot, parse_snapshot

__all__ = ["Ladder", "Level", "OrderBook"]

Level = tuple[Decimal, Decimal]
"""A price level: ``(price, quantity)``, both exact."""

_Stored = Union[str, Level]
"""What a ladder's dict holds: a validated quantity string, or the level
tuple it was converted to when read."""

_PRICE_CACHE_LIMIT = 65_536
_EXACT_DIGITS = 60
_REMEMBERED_DEPTH = 100
"""Converted level tuples are kept for the best this many levels of a side
only: reading the whole book must not triple its memory."""
_DEAD_SLACK = 512
"""A ladder keeps at most ``len(levels) // 2 + _DEAD_SLACK`` dead keys."""
_KEY_LIST_LOAD = 128
"""Sublist size of the sorted key lists (see :class:`_KeyList`)."""

_native_apply_delta = None
"""``orderbook._speedups.apply_delta`` when the C module is in use."""
_native_view = None
"""``orderbook._speedups.view`` when the C module is in use."""


class _Rescale(Exception):
    """Internal: a price needs more decimals than the book's current scale."""

    def __init__(self, decimals: int) -> None:
        self.decimals = decimals


class _KeyList(SortedList):  # type: ignore[misc]
    """A ``SortedList`` with smaller sublists.

    The touch sits at the front of the first sublist, where every insert or
    delete shifts the rest of that sublist; sortedcontainers' documentation
    advises a load factor near the cube root of the size (its default, 1000,
    suits millions of values), and books hold thousands of levels.
    """

    DEFAULT_LOAD_FACTOR = _KEY_LIST_LOAD


class Ladder:
    """One side of a book, best level first.  See the module docstring.

    ``sign`` is -1 for bids (keys are negated prices) and +1 for asks.

    Deleted keys stay in the sorted list as *dead* keys (listed in ``dead``,
    absent from ``levels``) until the price comes back, reaches the front, or
    there are too many of them: prices near the touch are deleted and re-added
    all the time, and a set operation costs a fraction of a ``SortedList``
    insert or remove.  Invariants: ``keys`` holds exactly ``levels`` plus
    ``dead`` (disjoint); the first key is never dead; ``dead`` holds at most
    ``len(levels) // 2 + _DEAD_SLACK`` keys after each change.
    """

    __slots__ = ("sign", "scale", "keys", "levels", "prices", "dead", "best", "best_key", "touch_prices")

    def __init__(self, sign: int, scale: int = 0) -> None:
        self.sign = sign
        self.scale = scale
        self.keys: SortedList = _KeyList()
        self.levels: dict[int, _Stored] = {}
        self.prices: dict[str, int] = {}
        """Price string -> key, for prices seen in deltas (bounded)."""
        self.dead: set[int] = set()
        self.best: Level | None = None
        self.best_key: int | None = None
        self.touch_prices: dict[int, Decimal] = {}
        """Key -> exact price, for keys that have been the best (bounded)."""

    def set_scale(self, decimals: int) -> None:
        """Change the fixed-point scale; the key caches become void.  O(1)."""
        if decimals != self.scale:
            self.scale = decimals
            self.prices.clear()
            self.touch_prices.clear()

    def load(self, levels: dict[int, _Stored]) -> None:
        """Replace the whole content.  O(n log n)."""
        self.levels = levels
        self.keys = _KeyList(levels)
        self.dead = set()
        self.refresh_best()

    def apply(self, changes: list[tuple[int, str | None]]) -> bool:
        """Store validated ``(key, quantity or None=delete)`` changes.

        Returns True when the best level may have changed.  O(k log n).
        (``orderbook._speedups.apply_delta`` does the same in C.)
        """
        levels = self.levels
        keys = self.keys
        dead = self.dead
        best_key = self.best_key
        touched = best_key is None
        for key, qty in changes:
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
            self.refresh_best()
        if len(dead) > len(levels) // 2 + _DEAD_SLACK:
            self.compact()
        return touched

    def compact(self) -> None:
        """Drop every dead key from the sorted list.  O(n log n)."""
        self.keys = _KeyList(self.levels)
        self.dead = set()

    def refresh_best(self) -> None:
        """Recompute ``best`` from the first live key, dropping dead keys
        from the front.  O(1), plus O(log n) per dead key dropped."""
        keys, levels = self.keys, self.levels
        while keys:
            key = keys[0]
            stored = levels.get(key)
            if stored is None:  # a dead key reached the front: drop it for good
                self.dead.remove(key)
                del keys[0]
                continue
            if type(stored) is not tuple:
                price = self.touch_prices.get(key)
                if price is None:
                    if len(self.touch_prices) >= _PRICE_CACHE_LIMIT:
                        self.touch_prices.clear()
                    price = self.touch_prices[key] = self.price_of(key)
                stored = levels[key] = (price, Decimal(stored))  # type: ignore[arg-type]
            self.best_key = key
            self.best = stored
            return
        self.best_key = None
        self.best = None

    def convert(self, key: int, qty: _Stored, remember: bool = True) -> Level:
        """The level tuple of ``key``; with ``remember`` it replaces the
        quantity string in the dict until the level changes.  O(1)."""
        if type(qty) is tuple:
            return qty
        level = (self.price_of(key), Decimal(qty))  # type: ignore[arg-type]
        if remember:
            self.levels[key] = level
        return level

    def price_of(self, key: int) -> Decimal:
        """The exact price of a key."""
        return Decimal(f"{key * self.sign}E-{self.scale}")

    def live_keys(self, n: int | None) -> list[int]:
        """The best ``n`` live keys (all when ``None``).  O(n + dead keys among them)."""
        if not self.dead:
            return self.keys[:n]  # type: ignore[no-any-return]
        alive = filter(self.levels.__contains__, self.keys)
        return list(alive if n is None else islice(alive, n))

    def view(self, n: int | None) -> list[Level]:
        """The best ``n`` levels (all when ``None``).  O(n + dead keys among them)."""
        if _native_view is not None:  # the same in C (None: an unusual ladder)
            levels = _native_view(self, n)
            if levels is not None:
                return levels  # type: ignore[no-any-return]
        # one pass over the stored values, skipping dead keys (levels.get -> None)
        alive = filter(None, map(self.levels.get, self.keys))
        out = list(alive if n is None else islice(alive, n))
        if str in map(type, out):  # some levels not read since they changed
            keys = self.live_keys(n)
            convert = self.convert
            for rank, stored in enumerate(out):
                if type(stored) is str:
                    out[rank] = convert(keys[rank], stored, rank < _REMEMBERED_DEPTH)
        return out  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Level]:
        """Levels best first, converted on the way.  O(1) per level."""
        levels = self.levels
        convert = self.convert
        rank = 0
        for key in self.keys:
            stored = levels.get(key)
            if stored is not None:
                yield convert(key, stored, rank < _REMEMBERED_DEPTH)
                rank += 1

    def rescale(self, decimals: int) -> None:
        """Re-key for ``decimals`` decimal places (more than now).  O(n log n)."""
        factor = 10 ** (decimals - self.scale)
        self.set_scale(decimals)
        # a level already read holds its price spelled at the old scale: re-spell it
        self.load({
            key * factor: qty if isinstance(qty, str) else (self.price_of(key * factor), qty[1])
            for key, qty in self.levels.items()
        })

    def cut_beyond(self, price: Decimal) -> int:
        """Remove the levels worse than ``price``; return how many.  O(k log n)."""
        with localcontext(prec=MAX_PREC):
            key = self.sign * int(price.scaleb(self.scale))
        cut = self.keys.bisect_right(key)
        doomed = self.keys[cut:]
        removed = 0
        for k in doomed:
            if self.levels.pop(k, None) is None:
                self.dead.discard(k)
            else:
                removed += 1
        del self.keys[cut:]
        if doomed:
            self.refresh_best()
        return removed

    def check(self, name: str) -> None:
        """Raise :class:`IntegrityError` unless every ladder invariant holds.  O(n)."""
        keys, levels, dead = self.keys, self.levels, self.dead
        keys._check()
        listed = set(keys)
        if len(listed) != len(keys):
            raise IntegrityError(f"duplicate {name} keys")
        if not dead.isdisjoint(levels):
            raise IntegrityError(f"{name} keys both dead and live")
        if listed != set(levels) | dead:
            raise IntegrityError(f"{name} keys and levels disagree")
        if len(dead) > len(levels) // 2 + _DEAD_SLACK:
            raise IntegrityError(f"{len(dead)} dead {name} keys were not compacted")
        for key, stored in levels.items():
            price, qty = self.convert(key, stored, remember=False)
            if not qty > 0:
                raise IntegrityError(f"{name} level {price} has quantity {qty}")
            if price != self.price_of(key):
                raise IntegrityError(f"{name} key {key} does not match price {price}")
        first = keys[0] if keys else None
        if first in dead:
            raise IntegrityError(f"the first {name} key is dead")
        if self.best_key != first or (first is not None and self.best != self.convert(first, levels[first])):
            raise IntegrityError(f"cached best {name} {self.best} is not the best level")


class OrderBook:
    """Exact replica of one symbol's order book.

    Not thread-safe; designed to be driven by one state machine
    (:class:`orderbook.sync.SymbolSync`) and read between frames.
    """

    __slots__ = ("symbol", "_bids", "_asks", "_last_update_id", "_bridged", "_timestamp", "_complete_to")

    def __init__(self, symbol: str) -> None:
        """An empty book for ``symbol``; it holds nothing until :meth:`apply_snapshot`."""
        self.symbol = symbol
        self._bids = Ladder(-1)
        self._asks = Ladder(1)
        self._last_update_id: int | None = None
        self._bridged = False
        self._timestamp: int | None = None
        self._complete_to: tuple[Decimal | None, Decimal | None] = (None, None)

    def clear(self) -> None:
        """Empty the book (``last_update_id`` becomes ``None``).  O(1)."""
        self._bids.load({})
        self._asks.load({})
        self._last_update_id = None
        self._bridged = False
        self._timestamp = None
        self._complete_to = (None, None)

    @property
    def last_update_id(self) -> int | None:
        """Update id the book is current to, or ``None`` before a snapshot.  O(1)."""
        return self._last_update_id

    @property
    def timestamp(self) -> int | None:
        """Engine time (µs) of the last change: ``T`` of the last frame, or the
        snapshot's ``timestamp``.  O(1)."""
        return self._timestamp

    @property
    def bridged(self) -> bool:
        """True once a frame has been applied on top of the current snapshot.  O(1)."""
        return self._bridged

    # --------------------------------------------------------------- snapshot
    def apply_snapshot(self, body: Snapshot | object, *, limit: int | None = None) -> None:
        """Replace the whole book with a REST snapshot.

        ``body`` is a :class:`~orderbook.wire.Snapshot` or a raw depth body
        (bytes, str or dict).  ``limit`` is the ``limit`` the snapshot was
        requested with; a side that came back with that many levels is
        truncated, and :meth:`complete_to` reports how deep it is known.
        Raises :class:`MalformedMessage` or :class:`CrossedBook` and leaves the
        book unchanged.  Cost: O(n log n) for n levels.
        """
        snap = body if isinstance(body, Snapshot) else parse_snapshot(body, self.symbol)
        decimals = max(
            (len(price.partition(".")[2]) for price, _ in (*snap.bids, *snap.asks)), default=0
        )
        # the scale follows the snapshot (it never only grows): one unusual
        # price does not change how the next snapshot's book is keyed
        scale = decimals
        bids = _snapshot_levels(snap.bids, scale, -1)
        asks = _snapshot_levels(snap.asks, scale, 1)
        if bids and asks and -min(bids) >= min(asks):
            raise CrossedBook(self.symbol, snap.bids[0][0], snap.asks[0][0], snap.last_update_id)
        for ladder, levels in ((self._bids, bids), (self._asks, asks)):
            ladder.set_scale(scale)
            ladder.load(levels)
        self._last_update_id = snap.last_update_id
        self._bridged = False
        self._timestamp = snap.timestamp
        self._complete_to = (None, None)
        if limit is not None:
            self._complete_to = (
                Decimal(snap.bids[-1][0]) if len(snap.bids) >= limit else None,
                Decimal(snap.asks[-1][0]) if len(snap.asks) >= limit else None,
            )

    # ------------------------------------------------------------------ delta
    def apply_delta(self, event: DepthEvent) -> bool:
        """Apply one depth frame and advance :attr:`last_update_id` to its ``u``.

        Returns True when the best bid or ask may have changed (so a caller
        checks :meth:`is_crossed` only then).  Raises :class:`SequenceGap`
        when the frame does not continue the book (see the module docstring),
        :class:`MalformedMessage` when a level is invalid, :class:`UsageError`
        before any snapshot or for another symbol; in every case the book is
        left unchanged.
        Cost: O(k log n) for k levels in the frame and n in the book; a level
        whose price is already present costs a few dict operations.
        """
        if _native_apply_delta is not None:
            # C fast path: a frame continuing a synced book, every level well
            # formed at the current scale; the same result as below, else None
            touched = _native_apply_delta(self, event)
            if touched is not None:
                return touched  # type: ignore[no-any-return]
        if not self._bridged or event.first_id != self._last_update_id + 1:  # type: ignore[operator]
            self._check_first_frame(event)
        if event.symbol != self.symbol:
            raise UsageError(f"frame for {event.symbol} applied to the {self.symbol} book")
        while True:
            try:
                bids = self._prepare(event.bids, self._bids) if event.bids else None
                asks = self._prepare(event.asks, self._asks) if event.asks else None
                break
            except _Rescale as need:
                self._bids.rescale(need.decimals)
                self._asks.rescale(need.decimals)
        # From here on nothing can fail: the frame is applied whole.
        touched = bool(bids and self._bids.apply(bids))
        if asks and self._asks.apply(asks):
            touched = True
        self._last_update_id = event.last_id
        self._timestamp = event.engine_time
        self._bridged = True
        return touched

    def _check_first_frame(self, event: DepthEvent) -> None:
        """The sequence rule for anything but a plainly contiguous frame."""
        last = self._last_update_id
        if last is None:
            raise UsageError(f"{self.symbol}: apply_snapshot must come before apply_delta")
        if self._bridged or not event.first_id <= last + 1 <= event.last_id:
            raise SequenceGap(self.symbol, event.first_id, event.last_id, last + 1)

    def _prepare(self, raw: RawLevels, ladder: Ladder) -> list[tuple[int, str | None]]:
        """Check and convert one side of a frame: ``[(key, quantity or None)]``.

        ``None`` marks a delete.  Raises before the caller changes anything.
        """
        prices = ladder.prices
        out: list[tuple[int, str | None]] = []
        append = out.append
        try:
            for level in raw:
                if type(level) is not list and type(level) is not tuple:
                    raise TypeError(f"level {shown(level)} is not a [price, quantity] pair")
                price, qty = level
                key = prices.get(price)
                if key is None:
                    key = self._price_key(price, ladder)
                if not is_decimal_string(qty):
                    raise MalformedMessage(
                        f"quantity must be a plain decimal string within the bound, got {shown(qty)}",
                        field="quantity",
                        symbol=self.symbol,
                    )
                append((key, qty if qty.strip("0.") else None))
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, MalformedMessage):
                raise
            raise MalformedMessage(
                f"bad level in frame, expected [price, quantity] strings: {shown(raw)}",
                symbol=self.symbol,
            ) from exc
        return out

    def _price_key(self, price: object, ladder: Ladder) -> int:
        """Validate a price string, return its key and remember it (cache miss path)."""
        if not is_decimal_string(price):
            raise MalformedMessage(
                f"price must be a plain decimal string within the bound, got {shown(price)}",
                field="price",
                symbol=self.symbol,
            )
        assert isinstance(price, str)
        if len(price.partition(".")[2]) > ladder.scale:
            raise _Rescale(len(price.partition(".")[2]))
        key = _fixed_point(price, ladder.scale)
        if not key:
            raise MalformedMessage(f"price must be > 0, got {shown(price)}", field="price",
                                   symbol=self.symbol)
        prices = ladder.prices
        if len(prices) >= _PRICE_CACHE_LIMIT:
            prices.clear()
        prices[price] = key = ladder.sign * key
        return key

    # ------------------------------------------------------------------ reads
    def best_bid(self) -> Level | None:
        """Highest bid ``(price, qty)``, or ``None`` when there is no bid.  O(1)."""
        return self._bids.best

    def best_ask(self) -> Level | None:
        """Lowest ask ``(price, qty)``, or ``None`` when there is no ask.  O(1)."""
        return self._asks.best

    def spread(self) -> Decimal | None:
        """Best ask minus best bid, exact; ``None`` if a side is empty.  O(1)."""
        bid, ask = self._bids.best, self._asks.best
        if bid is None or ask is None:
            return None
        with localcontext(prec=_EXACT_DIGITS):
            return ask[0] - bid[0]

    def mid(self) -> Decimal | None:
        """``(best bid + best ask) / 2``, exact; ``None`` if a side is empty.  O(1)."""
        bid, ask = self._bids.best, self._asks.best
        if bid is None or ask is None:
            return None
        with localcontext(prec=_EXACT_DIGITS):
            return (bid[0] + ask[0]) / 2

    def is_crossed(self) -> bool:
        """True when best bid >= best ask (a correct book never is).  O(1)."""
        bid, ask = self._bids.best_key, self._asks.best_key
        return bid is not None and ask is not None and -bid >= ask

    def bids(self, n: int | None = None) -> list[Level]:
        """The best ``n`` bids (all when ``None``), highest first.  O(log n + n)."""
        return self._asks_or_bids(self._bids, n)

    def asks(self, n: int | None = None) -> list[Level]:
        """The best ``n`` asks (all when ``None``), lowest first.  O(log n + n)."""
        return self._asks_or_bids(self._asks, n)

    @staticmethod
    def _asks_or_bids(ladder: Ladder, n: int | None) -> list[Level]:
        if n is not None and (type(n) is not int or n < 0):
            raise UsageError(f"n must be a non-negative int or None, got {n!r}")
        return ladder.view(n)

    def depth(self) -> tuple[int, int]:
        """Number of ``(bid, ask)`` levels held.  O(1)."""
        return len(self._bids.levels), len(self._asks.levels)

    # -------------------------------------------------------------- analytics
    def to_numpy(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(bids, asks)`` as float64 arrays of shape ``(n, 2)`` (price, qty), best
        first, padded with NaN below the last level.  For analytics only: floats
        are rounded.  Cost: O(log n + n)."""
        return _side_array(self.bids(n), n), _side_array(self.asks(n), n)

    def cumulative_quantity(self, side: Literal["bid", "ask"], price: Decimal | str) -> Decimal:
        """Total quantity on ``side`` at prices as good as ``price`` or better
        (bids >= price, asks <= price), exact.  Cost: O(k) for k levels summed."""
        limit = _caller_decimal(price, "price")
        if side == "bid":
            ladder, inside = self._bids, limit.__le__
        elif side == "ask":
            ladder, inside = self._asks, limit.__ge__
        else:
            raise UsageError(f"side must be 'bid' or 'ask', got {side!r}")
        total = Decimal(0)
        with localcontext(prec=_EXACT_DIGITS):
            for level_price, qty in ladder:
                if not inside(level_price):
                    break
                total += qty
        return total

    def impact_price(self, qty: Decimal | str, side: Literal["buy", "sell"]) -> Decimal | None:
        """Average price to fill ``qty`` against the book: a ``"buy"`` consumes
        asks, a ``"sell"`` consumes bids.  The notional is summed exactly; the
        average is exact whenever it has at most 60 significant digits.
        Returns ``None`` when the book cannot fill ``qty``.
        Cost: O(k) for the k levels consumed."""
        wanted = _caller_decimal(qty, "qty")
        if not wanted:
            raise UsageError("qty must be > 0")
        if side == "buy":
            ladder = self._asks
        elif side == "sell":
            ladder = self._bids
        else:
            raise UsageError(f"side must be 'buy' or 'sell', got {side!r}")
        remaining = wanted
        notional = Decimal(0)
        with localcontext(prec=_EXACT_DIGITS):
            for price, available in ladder:
                take = min(available, remaining)
                notional += price * take
                remaining -= take
                if not remaining:
                    return notional / wanted
        return None

    # -------------------------------------------------------------- integrity
    def check_integrity(self) -> None:
        """Verify every invariant; raise :class:`IntegrityError` or :class:`CrossedBook`.

        Checks each ladder's order, its keys against its levels and dead
        keys, strictly positive quantities, keys matching prices, the cached
        best levels, and that the book is not crossed.  Cost: O(n).
        """
        try:
            self._bids.check("bid")
            self._asks.check("ask")
        except IntegrityError as exc:
            raise IntegrityError(f"{self.symbol}: {exc}") from None
        if self.is_crossed():
            assert self._bids.best is not None and self._asks.best is not None
            raise CrossedBook(self.symbol, self._bids.best[0], self._asks.best[0], self._last_update_id)

    # --------------------------------------------------- snapshot coverage
    def complete_to(self) -> tuple[Decimal | None, Decimal | None]:
        """``(bid bound, ask bound)`` of the part of each side known complete.

        A snapshot holds at most ``limit`` levels per side; when a side came
        back full, levels beyond its deepest price may exist on the venue
        without being in this book.  Each side is complete for prices at least
        as good as its bound; ``None`` means the whole side is complete.  O(1).
        """
        return self._complete_to

    def is_complete(self, price: Decimal | str, side: Literal["bid", "ask"]) -> bool:
        """True when the book is guaranteed to hold every level of ``side`` at
        ``price`` (that is, ``price`` lies within the snapshot's window).  O(1)."""
        value = _caller_decimal(price, "price")
        if side == "bid":
            bound = self._complete_to[0]
            return bound is None or value >= bound
        if side == "ask":
            bound = self._complete_to[1]
            return bound is None or value <= bound
        raise UsageError(f"side must be 'bid' or 'ask', got {side!r}")

    def prune(self) -> int:
        """Drop the levels beyond the snapshot window (see :meth:`complete_to`)
        and return how many were removed.

        Deltas keep adding levels far from the touch that the truncated
        snapshot never covered; they are not guaranteed complete anyway, so
        a long-running replica may prune them to bound its memory.  The
        window itself is untouched.  Cost: O(k log n) for k levels removed.
        """
        bid_bound, ask_bound = self._complete_to
        removed = 0
        if bid_bound is not None:
            removed += self._bids.cut_beyond(bid_bound)
        if ask_bound is not None:
            removed += self._asks.cut_beyond(ask_bound)
        return removed

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, last_update_id={self._last_update_id}, "
            f"bid={self.best_bid()}, ask={self.best_ask()}, depth={self.depth()})"
        )


if speedups is not None:
    speedups.configure(Ladder, OrderBook, _KeyList, Decimal, _PRICE_CACHE_LIMIT, _DEAD_SLACK, _REMEMBERED_DEPTH)
    _native_apply_delta = speedups.apply_delta
    _native_view = speedups.view


def _fixed_point(price: str, scale: int) -> int:
    """``price * 10**scale`` for a plain decimal string with at most ``scale`` decimals."""
    whole, _, fraction = price.partition(".")
    return int((whole + fraction.ljust(scale, "0")) or "0")


def _snapshot_levels(pairs: Iterable[tuple[str, str]], scale: int, sign: int) -> dict[int, _Stored]:
    """Validated snapshot pairs -> ``{key: quantity string}``; zero quantities skipped."""
    return {sign * _fixed_point(price, scale): qty for price, qty in pairs if qty.strip("0.")}


def _side_array(levels: list[Level], n: int) -> NDArray[np.float64]:
    out = np.full((n, 2), np.nan, dtype=np.float64)
    if levels:
        out[: len(levels)] = [(float(price), float(qty)) for price, qty in levels]
    return out


def _caller_decimal(value: Decimal | str, name: str) -> Decimal:
    """A caller-supplied number as an exact, finite, non-negative Decimal."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, str) and is_decimal_string(value):
        result = Decimal(value)
    else:
        raise UsageError(f"{name} must be a Decimal or decimal string, got {shown(value)}")
    if not result.is_finite() or result < 0:
        raise UsageError(f"{name} must be a finite non-negative number, got {shown(value)}")
    return result
