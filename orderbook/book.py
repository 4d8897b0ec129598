"""``OrderBook``: an exact price ladder per side for one symbol. No I/O.

Representation (the invariants :meth:`OrderBook.check_integrity` verifies)
-------------------------------------------------------------------------
Each side is a *ladder*: a ``sortedcontainers.SortedList`` of integer keys
plus a ``dict`` from key to the level tuple ``(Decimal price, Decimal qty)``.

* A key is the price in fixed point: ``price * 10**scale`` as an exact
  ``int``.  Bid keys are negated so that both ladders sort best-first.
  ``scale`` starts at the snapshot's largest number of decimals and grows
  (re-keying the book, O(n)) when a price with more decimals arrives, so no
  price is ever rounded.  Floats are never keys.
* The key list and the dict hold exactly the same keys; every quantity is
  strictly positive (a zero quantity deletes the level).
* ``_best_bid`` / ``_best_ask`` cache the best level tuple (or ``None``), so
  reading the touch is a plain attribute load.
* Level tuples are built once, when the level changes, so views hand out the
  stored tuples without converting anything.

Price strings are mapped to keys through a per-book cache (a dict), so a
price seen before costs one dict lookup; the cache is bounded and cleared
when full or when the scale changes.

Sequencing: :meth:`apply_delta` accepts only a frame that continues the book:
the first frame after a snapshot at ``L`` must satisfy ``U <= L+1 <= u``
(the snapshot may fall inside an aggregated frame; re-applying absolute
quantities is then correct), every later one ``U == last_update_id + 1``.
A frame is checked completely before anything changes: a malformed frame or
one that does not continue raises and leaves the book untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, localcontext
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sortedcontainers import SortedList

from .errors import CrossedBook, IntegrityError, MalformedMessage, SequenceGap, UsageError
from .wire import RawLevels, Snapshot, DepthEvent, is_decimal_string, parse_snapshot

__all__ = ["Level", "OrderBook"]

Level = tuple[Decimal, Decimal]
"""A price level: ``(price, quantity)``, both exact."""

_PRICE_CACHE_LIMIT = 65_536


class _Rescale(Exception):
    """Internal: a price needs more decimals than the book's current scale."""

    def __init__(self, decimals: int) -> None:
        self.decimals = decimals


class OrderBook:
    """Exact replica of one symbol's order book.

    Not thread-safe; designed to be driven by one state machine
    (:class:`orderbook.sync.SymbolSync`) and read between frames.
    """

    __slots__ = (
        "symbol",
        "_bid_keys",
        "_ask_keys",
        "_bid_levels",
        "_ask_levels",
        "_best_bid",
        "_best_ask",
        "_best_bid_key",
        "_best_ask_key",
        "_last_update_id",
        "_bridged",
        "_timestamp",
        "_scale",
        "_prices",
        "_complete_to",
    )

    def __init__(self, symbol: str) -> None:
        """An empty book for ``symbol``; it holds nothing until :meth:`apply_snapshot`."""
        self.symbol = symbol
        self._scale = 0
        self._prices: dict[str, tuple[int, Decimal]] = {}
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self._bid_keys: SortedList = SortedList()
        self._ask_keys: SortedList = SortedList()
        self._bid_levels: dict[int, Level] = {}
        self._ask_levels: dict[int, Level] = {}
        self._best_bid: Level | None = None
        self._best_ask: Level | None = None
        self._best_bid_key: int | None = None
        self._best_ask_key: int | None = None
        self._last_update_id: int | None = None
        self._bridged = False
        self._timestamp: int | None = None
        self._complete_to: tuple[Decimal | None, Decimal | None] = (None, None)

    def clear(self) -> None:
        """Empty the book (``last_update_id`` becomes ``None``).  O(1)."""
        self._reset()

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
        """True once a frame has been applied on top of the current snapshot."""
        return self._bridged

    # --------------------------------------------------------------- snapshot
    def apply_snapshot(self, body: Snapshot | object, *, limit: int | None = None) -> None:
        """Replace the whole book with a REST snapshot.

        ``body`` is a :class:`~orderbook.wire.Snapshot` or a raw depth body
        (bytes, str or dict).  ``limit`` is the ``limit`` the snapshot was
        requested with; when a side came back with that many levels it is
        truncated, and :meth:`complete_to` reports how deep it is known.
        Raises :class:`MalformedMessage` or :class:`CrossedBook` and leaves the
        book unchanged.  Cost: O(n log n) for n levels.
        """
        snap = body if isinstance(body, Snapshot) else parse_snapshot(body, self.symbol)
        decimals = max(
            (len(price.partition(".")[2]) for price, _ in (*snap.bids, *snap.asks)), default=0
        )
        if decimals > self._scale:
            self._rescale(decimals)  # re-key now: the snapshot may still be refused
        bid_levels = self._levels_from(snap.bids, -1)
        ask_levels = self._levels_from(snap.asks, 1)
        bid_keys = SortedList(bid_levels)
        ask_keys = SortedList(ask_levels)
        if bid_keys and ask_keys and -bid_keys[0] >= ask_keys[0]:
            raise CrossedBook(
                self.symbol,
                bid_levels[bid_keys[0]][0],
                ask_levels[ask_keys[0]][0],
                snap.last_update_id,
            )
        self._reset()
        self._bid_keys, self._ask_keys = bid_keys, ask_keys
        self._bid_levels, self._ask_levels = bid_levels, ask_levels
        self._refresh_best_bid()
        self._refresh_best_ask()
        self._last_update_id = snap.last_update_id
        self._timestamp = snap.timestamp
        if limit is not None:
            self._complete_to = (
                Decimal(snap.bids[-1][0]) if len(snap.bids) >= limit else None,
                Decimal(snap.asks[-1][0]) if len(snap.asks) >= limit else None,
            )

    def _levels_from(self, pairs: Iterable[tuple[str, str]], sign: int) -> dict[int, Level]:
        """Validated snapshot pairs -> ``{signed key: level}``; zero quantities skipped."""
        levels: dict[int, Level] = {}
        for price, qty in pairs:
            key, exact_price = self._price_entry(price)
            quantity = Decimal(qty)
            if quantity:
                levels[sign * key] = (exact_price, quantity)
        return levels

    # ------------------------------------------------------------------ delta
    def apply_delta(self, event: DepthEvent) -> None:
        """Apply one depth frame and advance :attr:`last_update_id` to its ``u``.

        Raises :class:`SequenceGap` when the frame does not continue the book
        (see the module docstring), :class:`MalformedMessage` when a level is
        invalid, :class:`UsageError` before any snapshot or for another
        symbol; in every case the book is left unchanged.  Does not check for
        a crossed book: see :meth:`is_crossed`.
        Cost: O(k log n) for k levels in the frame, n in the book; a level
        whose price is already present costs one dict store.
        """
        last = self._last_update_id
        if last is None:
            raise UsageError(f"{self.symbol}: apply_snapshot must come before apply_delta")
        first_id = event.first_id
        if self._bridged:
            if first_id != last + 1:
                raise SequenceGap(self.symbol, first_id, event.last_id, last + 1)
        elif not first_id <= last + 1 <= event.last_id:
            raise SequenceGap(self.symbol, first_id, event.last_id, last + 1)
        if event.symbol != self.symbol:
            raise UsageError(f"frame for {event.symbol} applied to the {self.symbol} book")
        while True:
            try:
                bids = self._prepare(event.bids, -1)
                asks = self._prepare(event.asks, 1)
                break
            except _Rescale as need:
                self._rescale(need.decimals)
        # From here on nothing can fail: the frame is applied whole.
        if bids:
            if self._apply_side(bids, self._bid_keys, self._bid_levels, self._best_bid_key):
                self._refresh_best_bid()
        if asks:
            if self._apply_side(asks, self._ask_keys, self._ask_levels, self._best_ask_key):
                self._refresh_best_ask()
        self._last_update_id = event.last_id
        self._timestamp = event.engine_time
        self._bridged = True

    def _prepare(self, raw: RawLevels, sign: int) -> list[tuple[int, Level | None]]:
        """Check and convert one side of a frame: ``[(signed key, level or None)]``.

        ``None`` marks a delete.  Raises before the caller changes anything.
        """
        prices = self._prices
        out: list[tuple[int, Level | None]] = []
        append = out.append
        try:
            for level in raw:
                if type(level) is not list and type(level) is not tuple:
                    raise TypeError  # "12" or {"1": .., "2": ..} would unpack into a pair
                price, qty = level
                entry = prices.get(price)
                if entry is None:
                    entry = self._price_entry(price)
                if type(qty) is not str or not qty.isascii() or not qty.replace(".", "", 1).isdecimal():
                    raise MalformedMessage(
                        f"quantity must be a plain decimal string, got {qty!r}",
                        field="quantity",
                        symbol=self.symbol,
                    )
                quantity = Decimal(qty)
                append((sign * entry[0], (entry[1], quantity) if quantity else None))
        except (TypeError, ValueError) as exc:  # a level that is not a [price, qty] pair
            if isinstance(exc, MalformedMessage):
                raise
            raise MalformedMessage(f"bad level in frame: {exc}", symbol=self.symbol) from exc
        return out

    @staticmethod
    def _apply_side(
        changes: list[tuple[int, Level | None]],
        keys: SortedList,
        levels: dict[int, Level],
        best_key: int | None,
    ) -> bool:
        """Store ``changes`` in one ladder; True if the best level may have changed."""
        touched_best = best_key is None
        for key, level in changes:
            if level is None:
                if levels.pop(key, None) is not None:
                    keys.remove(key)
            else:
                if key not in levels:
                    keys.add(key)
                levels[key] = level
            if not touched_best and key <= best_key:  # type: ignore[operator]
                touched_best = True
        return touched_best

    def _price_entry(self, price: object) -> tuple[int, Decimal]:
        """Validate a price string and return ``(unsigned key, Decimal price)``, cached."""
        if not is_decimal_string(price):
            raise MalformedMessage(
                f"price must be a plain decimal string, got {price!r}",
                field="price",
                symbol=self.symbol,
            )
        assert isinstance(price, str)
        whole, _, fraction = price.partition(".")
        if len(fraction) > self._scale:
            raise _Rescale(len(fraction))
        key = int((whole + fraction.ljust(self._scale, "0")) or "0")
        if key == 0:
            raise MalformedMessage(f"price must be > 0, got {price!r}", field="price", symbol=self.symbol)
        entry = (key, Decimal(price))
        prices = self._prices
        if len(prices) >= _PRICE_CACHE_LIMIT:
            prices.clear()
        prices[price] = entry
        return entry

    def _rescale(self, decimals: int) -> None:
        """Re-key both ladders for ``decimals`` decimal places.  O(n)."""
        factor = 10 ** (decimals - self._scale)
        self._scale = decimals
        self._prices.clear()
        for side in ("bid", "ask"):
            levels: dict[int, Level] = getattr(self, f"_{side}_levels")
            rekeyed = {key * factor: level for key, level in levels.items()}
            setattr(self, f"_{side}_levels", rekeyed)
            setattr(self, f"_{side}_keys", SortedList(rekeyed))
        self._refresh_best_bid()
        self._refresh_best_ask()

    def _refresh_best_bid(self) -> None:
        keys = self._bid_keys
        if keys:
            key = keys[0]
            self._best_bid_key = key
            self._best_bid = self._bid_levels[key]
        else:
            self._best_bid_key = None
            self._best_bid = None

    def _refresh_best_ask(self) -> None:
        keys = self._ask_keys
        if keys:
            key = keys[0]
            self._best_ask_key = key
            self._best_ask = self._ask_levels[key]
        else:
            self._best_ask_key = None
            self._best_ask = None

    # ------------------------------------------------------------------ reads
    def best_bid(self) -> Level | None:
        """Highest bid ``(price, qty)``, or ``None`` when there is no bid.  O(1)."""
        return self._best_bid

    def best_ask(self) -> Level | None:
        """Lowest ask ``(price, qty)``, or ``None`` when there is no ask.  O(1)."""
        return self._best_ask

    def spread(self) -> Decimal | None:
        """Best ask minus best bid, exact; ``None`` if a side is empty.  O(1)."""
        bid, ask = self._best_bid, self._best_ask
        if bid is None or ask is None:
            return None
        with localcontext(prec=_EXACT_DIGITS):
            return ask[0] - bid[0]

    def mid(self) -> Decimal | None:
        """``(best bid + best ask) / 2``, exact; ``None`` if a side is empty.  O(1)."""
        bid, ask = self._best_bid, self._best_ask
        if bid is None or ask is None:
            return None
        with localcontext(prec=_EXACT_DIGITS):
            return (bid[0] + ask[0]) / 2

    def is_crossed(self) -> bool:
        """True when best bid >= best ask (a correct book never is).  O(1)."""
        bid, ask = self._best_bid_key, self._best_ask_key
        return bid is not None and ask is not None and -bid >= ask

    def bids(self, n: int | None = None) -> list[Level]:
        """The best ``n`` bids (all when ``None``), highest first.  O(log n + k)."""
        return self._view(self._bid_keys, self._bid_levels, n)

    def asks(self, n: int | None = None) -> list[Level]:
        """The best ``n`` asks (all when ``None``), lowest first.  O(log n + k)."""
        return self._view(self._ask_keys, self._ask_levels, n)

    @staticmethod
    def _view(keys: SortedList, levels: dict[int, Level], n: int | None) -> list[Level]:
        if n is not None and (type(n) is not int or n < 0):
            raise UsageError(f"n must be a non-negative int or None, got {n!r}")
        return [levels[key] for key in keys[:n]]

    def depth(self) -> tuple[int, int]:
        """Number of ``(bid, ask)`` levels held.  O(1)."""
        return len(self._bid_levels), len(self._ask_levels)

    # -------------------------------------------------------------- analytics
    def to_numpy(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(bids, asks)`` as float64 arrays of shape ``(n, 2)`` (price, qty), best
        first, padded with NaN below the last level.  For analytics only: floats
        are rounded.  Cost: O(log n + k)."""
        return self._side_array(self.bids(n), n), self._side_array(self.asks(n), n)

    @staticmethod
    def _side_array(levels: list[Level], n: int) -> NDArray[np.float64]:
        out = np.full((n, 2), np.nan, dtype=np.float64)
        if levels:
            out[: len(levels)] = [(float(price), float(qty)) for price, qty in levels]
        return out

    def cumulative_quantity(self, side: Literal["bid", "ask"], price: Decimal | str) -> Decimal:
        """Total quantity on ``side`` at prices as good as ``price`` or better
        (bids >= price, asks <= price), exact.  Cost: O(log n + k)."""
        limit = _caller_decimal(price, "price")
        with localcontext(prec=_EXACT_DIGITS):
            if side == "bid":
                return sum((q for p, q in self.bids() if p >= limit), Decimal(0))
            if side == "ask":
                return sum((q for p, q in self.asks() if p <= limit), Decimal(0))
        raise UsageError(f"side must be 'bid' or 'ask', got {side!r}")

    def impact_price(self, qty: Decimal | str, side: Literal["buy", "sell"]) -> Decimal | None:
        """Average price to fill ``qty`` against the book: a ``"buy"`` consumes
        asks, a ``"sell"`` consumes bids.  The notional is summed exactly; the
        average is exact whenever it has at most 60 significant digits.
        Returns ``None`` when the visible book cannot fill ``qty``.
        Cost: O(k) for the k levels consumed."""
        wanted = _caller_decimal(qty, "qty")
        if not wanted:
            raise UsageError("qty must be > 0")
        if side == "buy":
            ladder = self._ask_keys, self._ask_levels
        elif side == "sell":
            ladder = self._bid_keys, self._bid_levels
        else:
            raise UsageError(f"side must be 'buy' or 'sell', got {side!r}")
        keys, levels = ladder
        remaining = wanted
        notional = Decimal(0)
        with localcontext(prec=_EXACT_DIGITS):
            for key in keys:
                price, available = levels[key]
                take = available if available < remaining else remaining
                notional += price * take
                remaining -= take
                if not remaining:
                    return notional / wanted
        return None

    # -------------------------------------------------------------- integrity
    def check_integrity(self) -> None:
        """Verify every invariant; raise :class:`IntegrityError` or :class:`CrossedBook`.

        Checks each ladder's order and key/dict agreement, strictly positive
        quantities, key == price * 10**scale, the cached best levels, and
        that the book is not crossed.  Cost: O(n).
        """
        scale = 10**self._scale
        for name, sign, keys, levels, best in (
            ("bid", -1, self._bid_keys, self._bid_levels, self._best_bid),
            ("ask", 1, self._ask_keys, self._ask_levels, self._best_ask),
        ):
            keys._check()
            if len(keys) != len(levels) or any(key not in levels for key in keys):
                raise IntegrityError(f"{self.symbol}: {name} keys and levels disagree")
            for key in keys:
                price, qty = levels[key]
                if not qty > 0:
                    raise IntegrityError(f"{self.symbol}: {name} level {price} has quantity {qty}")
                numerator, denominator = price.as_integer_ratio()  # exact, any length
                if numerator * scale != sign * key * denominator:
                    raise IntegrityError(f"{self.symbol}: {name} key {key} != price {price}")
            expected = levels[keys[0]] if keys else None
            if best != expected:
                raise IntegrityError(f"{self.symbol}: cached best {name} {best} != {expected}")
            if len(set(keys)) != len(keys):
                raise IntegrityError(f"{self.symbol}: duplicate {name} keys")
        if self.is_crossed():
            assert self._best_bid is not None and self._best_ask is not None
            raise CrossedBook(self.symbol, self._best_bid[0], self._best_ask[0], self._last_update_id)

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
        removed = 0
        bid_bound, ask_bound = self._complete_to
        for bound, sign, keys, levels in (
            (bid_bound, -1, self._bid_keys, self._bid_levels),
            (ask_bound, 1, self._ask_keys, self._ask_levels),
        ):
            if bound is None or not keys:
                continue
            # Keys sort best first; everything after the bound's key goes.
            cut = keys.bisect_right(sign * int(bound.scaleb(self._scale)))
            for key in keys[cut:]:
                del levels[key]
            removed += len(keys) - cut
            del keys[cut:]
        if removed:
            self._refresh_best_bid()
            self._refresh_best_ask()
        return removed

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, last_update_id={self._last_update_id}, "
            f"bid={self._best_bid}, ask={self._best_ask}, depth={self.depth()})"
        )


_EXACT_DIGITS = 60


def _caller_decimal(value: Decimal | str, name: str) -> Decimal:
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, str) and is_decimal_string(value):
        result = Decimal(value)
    else:
        raise UsageError(f"{name} must be a Decimal or decimal string, got {value!r}")
    if not result.is_finite() or result < 0:
        raise UsageError(f"{name} must be a finite non-negative number, got {value!r}")
    return result
