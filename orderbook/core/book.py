"""``OrderBook``: the exact replica of one symbol's order book.  No I/O.

The book is two :class:`~orderbook.core.ladder.Ladder` objects (bids and asks:
exact fixed-point levels, best first; native or pure Python, see
:mod:`orderbook.core.ladder`) plus the sequencing state: the update id the book
is current to, whether a frame has been applied on top of the snapshot,
the engine time of the last change and how deep the snapshot reached.

Invariants (verified by :meth:`OrderBook.check_integrity`): each ladder's
own (see :meth:`Ladder.check`), and the book is not crossed.

Sequencing: :meth:`OrderBook.apply_delta` accepts only a frame that continues
the book: the first frame after a snapshot at ``L`` must satisfy
``U <= L+1 <= u`` (the snapshot may fall inside an aggregated frame, and
re-applying absolute quantities is then correct), every later one
``U == last_update_id + 1``.  A frame is checked completely before anything
changes: a malformed frame or one that does not continue raises and leaves
the book untouched.
"""

from __future__ import annotations

import warnings
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy is imported by to_numpy only: the hot path and replay never load it
    import numpy as np
    from numpy.typing import NDArray

from ..errors import CrossedBook, IntegrityError, SequenceGap, UsageError, shown
from .ladder import Ladder, Level, apply_levels, crossed, write_levels
from ..protocol.decimals import decimal_str, is_decimal_string
from ..protocol.wire import DepthEvent, Snapshot, parse_snapshot

__all__ = ["OrderBook", "Side", "SideName"]

_EXACT_DIGITS = 60


class Side(StrEnum):
    """A side of the book, as every :class:`OrderBook` method taking a ``side``
    names it: the side the method *reads* (``"bid"`` or ``"ask"``, or these
    members).  A ``StrEnum``: ``Side.BID == "bid"``."""

    BID = "bid"
    """The bids: :meth:`OrderBook.bids`, what a sell order consumes."""
    ASK = "ask"
    """The asks: :meth:`OrderBook.asks`, what a buy order consumes."""


SideName = Side | Literal["bid", "ask"]
"""What a ``side`` argument accepts: a :class:`Side` or its value."""

_ORDER_SIDES = {"buy": Side.ASK, "sell": Side.BID}
"""The old spelling of :meth:`OrderBook.impact_price` (deprecated): the order's
direction, mapped to the side it consumes."""


def _side(side: object, method: str) -> Side:
    """``side`` as a :class:`Side`; ``"buy"``/``"sell"`` only for ``impact_price``
    (with a :class:`DeprecationWarning`); anything else a :class:`UsageError`."""
    if isinstance(side, str):
        if side in ("bid", "ask"):
            return Side(side)
        if method == "impact_price" and side in _ORDER_SIDES:
            mapped = _ORDER_SIDES[side]
            warnings.warn(
                f"impact_price(qty, {side!r}) is deprecated: name the side consumed, "
                f"impact_price(qty, {mapped.value!r})", DeprecationWarning, stacklevel=3)
            return mapped
    raise UsageError(f"{method}: side must be 'bid' or 'ask' (or a Side), got {shown(side)}")


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
        """Empty the book (``last_update_id`` becomes ``None``).  O(n)."""
        self._bids.clear()
        self._asks.clear()
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

        ``body`` is a :class:`~orderbook.protocol.wire.Snapshot` or a raw depth body
        (bytes, str or dict).  ``limit`` is the ``limit`` the snapshot was
        requested with; a side that came back with that many levels is
        truncated, and :meth:`complete_to` reports how deep it is known.
        Raises :class:`MalformedMessage` or :class:`CrossedBook` and leaves the
        book unchanged.  Cost: O(n log n) for n levels.
        """
        snap = body if isinstance(body, Snapshot) else parse_snapshot(body, self.symbol)
        # the scale follows the snapshot (it never only grows): one unusual
        # price does not change how the next snapshot's book is keyed
        scale = max(
            (len(price.partition(".")[2]) for price, _ in (*snap.bids, *snap.asks)), default=0
        )
        best_bid = next((price for price, qty in snap.bids if qty.strip("0.")), None)
        best_ask = next((price for price, qty in snap.asks if qty.strip("0.")), None)
        if best_bid is not None and best_ask is not None and Decimal(best_bid) >= Decimal(best_ask):
            raise CrossedBook(self.symbol, best_bid, best_ask, snap.last_update_id)
        self._bids.load(snap.bids, scale)
        self._asks.load(snap.asks, scale)
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
        Cost: O(k log n) for k levels in the frame and n in the book.
        """
        if not self._bridged or event.first_id != self._last_update_id + 1:  # type: ignore[operator]
            self._check_first_frame(event)
        if event.symbol != self.symbol:
            raise UsageError(f"frame for {shown(event.symbol)} applied to the {self.symbol} book")
        # checks every level of both sides before it changes anything
        touched: bool = apply_levels(self._bids, self._asks, event)
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
        return crossed(self._bids, self._asks)

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
        return len(self._bids), len(self._asks)

    # -------------------------------------------------------------- analytics
    def to_numpy(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(bids, asks)`` as float64 arrays of shape ``(n, 2)`` (price, qty), best
        first, padded with NaN below the last level.  For analytics only: floats
        are rounded.  Cost: O(log n + n)."""
        return _side_array(self.bids(n), n), _side_array(self.asks(n), n)

    def write_levels(self, n: int, out: bytearray | memoryview, offset: int = 0,
                     price_scale: int = 18, quantity_scale: int = 18) -> tuple[int, int, int, int]:
        """Write the best ``n`` bids and ``n`` asks into ``out`` from byte
        ``offset`` as exact fixed-point integers, for columnar exports: each
        price times ``10**price_scale``, each quantity times
        ``10**quantity_scale``, 16 bytes little-endian -- the storage of Arrow
        ``decimal128`` values of those scales.  Layout: ``n`` bid ``(price,
        quantity)`` pairs, best first, then ``n`` ask pairs; ``64 * n`` bytes,
        zero where a side has fewer levels.

        Returns ``(bids, asks, price scale needed, quantity scale needed)``:
        the levels of each side (at most ``n``), the book's number of price
        decimals and the most decimals one of those quantities is spelled
        with.  When a scale given is smaller than needed, nothing is written
        (ask again with larger ones); the default 18, the value bound's most
        decimals, always fits.  Raises :class:`UsageError` for a negative
        size, a scale outside 0..18 or an ``out`` too small.  Cost: O(n),
        ~0.15 µs for n = 10 with the C module."""
        return write_levels(self._bids, self._asks, n, out, offset, price_scale, quantity_scale)

    def cumulative_quantity(self, side: SideName, price: Decimal | str) -> Decimal:
        """Total quantity on ``side`` (``"bid"`` or ``"ask"``) at prices as good
        as ``price`` or better (bids >= price, asks <= price), exact.
        Cost: O(k) for k levels summed."""
        which = _side(side, "cumulative_quantity")
        limit = _caller_decimal(price, "price")
        if which is Side.BID:
            ladder, inside = self._bids, limit.__le__
        else:
            ladder, inside = self._asks, limit.__ge__
        total = Decimal(0)
        with localcontext(prec=_EXACT_DIGITS):
            for level_price, qty in ladder:
                if not inside(level_price):
                    break
                total += qty
        return total

    def impact_price(self, qty: Decimal | str,
                     side: SideName | Literal["buy", "sell"]) -> Decimal | None:
        """Average price to fill ``qty`` against ``side``, the side consumed:
        ``"ask"`` for a buy, ``"bid"`` for a sell (the same names as every
        ``side`` argument; the old ``"buy"`` / ``"sell"`` still work with a
        :class:`DeprecationWarning`).  The notional is summed exactly; the
        average is exact whenever it has at most 60 significant digits.
        Returns ``None`` when the book cannot fill ``qty``.
        Cost: O(k) for the k levels consumed."""
        which = _side(side, "impact_price")
        wanted = _caller_decimal(qty, "qty")
        if not wanted:
            raise UsageError("qty must be > 0")
        ladder = self._asks if which is Side.ASK else self._bids
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
        if self._bids.scale != self._asks.scale:
            raise IntegrityError(f"{self.symbol}: the ladders are keyed at different scales")
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

    def is_complete(self, price: Decimal | str, side: SideName) -> bool:
        """True when the book is guaranteed to hold every level of ``side``
        (``"bid"`` or ``"ask"``) at ``price`` (that is, ``price`` lies within
        the snapshot's window).  O(1)."""
        which = _side(side, "is_complete")
        value = _caller_decimal(price, "price")
        if which is Side.BID:
            bound = self._complete_to[0]
            return bound is None or value >= bound
        bound = self._complete_to[1]
        return bound is None or value <= bound

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
            removed += self._bids.cut_beyond(decimal_str(bid_bound))
        if ask_bound is not None:
            removed += self._asks.cut_beyond(decimal_str(ask_bound))
        return removed

    def copy(self, depth: int | None = None) -> OrderBook:
        """An independent book equal to this one: its levels (the best ``depth``
        per side when given, ``depth`` >= 1), update id, timestamp and what is
        known complete (a side cut to ``depth`` levels is complete only down to
        its last level, see :meth:`complete_to`).  Changing either book later
        never changes the other.  Cost: O(k) for the k levels copied.
        """
        if depth is not None and (type(depth) is not int or depth < 1):
            raise UsageError(f"depth must be an int >= 1 or None, got {shown(depth)}")
        other = OrderBook(self.symbol)
        bounds: list[Decimal | None] = list(self._complete_to)
        for index, (source, target, better) in enumerate(
                ((self._bids, other._bids, max), (self._asks, other._asks, min))):
            levels = source.view(depth)
            target.load([(decimal_str(p), decimal_str(q)) for p, q in levels], source.scale)
            if depth is not None and len(source) > depth:
                cut = levels[-1][0]
                bound = bounds[index]
                bounds[index] = cut if bound is None else better(bound, cut)
        other._last_update_id = self._last_update_id
        other._bridged = self._bridged
        other._timestamp = self._timestamp
        other._complete_to = (bounds[0], bounds[1])
        return other

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, last_update_id={self._last_update_id}, "
            f"bid={self.best_bid()}, ask={self.best_ask()}, depth={self.depth()})"
        )


def _side_array(levels: list[Level], n: int) -> NDArray[np.float64]:
    import numpy as np

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
