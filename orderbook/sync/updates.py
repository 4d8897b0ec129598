"""What consumers are told: :class:`BookUpdate`, with lazy levels, and conflation.

Pure data, no I/O.  The engine reports, per input batch and per symbol, one
change; a consumer's queue (``live/consumers.py``) keeps at most one
:class:`BookUpdate` per symbol -- a dirty set -- and folds newer changes
into it.  An update holds its own frames as they came; the frames folded in
later are merged into its two maps of changed levels at once, in C when
built, while they are still in the CPU's caches (a consumer that lingers
would otherwise walk every frame again, cold, when it reads the update).
Levels become :class:`~decimal.Decimal` only when a consumer reads
:attr:`BookUpdate.bids` / :attr:`BookUpdate.asks`.

Delivery semantics (what a consumer sees after a burst): for each symbol, one
update covering every frame applied since the consumer last took one
(``first_id`` of the oldest, ``last_id`` of the newest, ``merged`` frames and
notifications folded in).  Its ``bids`` / ``asks`` hold every level that
changed in that range at its latest quantity (zero: removed), so applying
them to the book as of ``first_id - 1`` gives the book at ``last_id``.
Conflation drops only intermediate quantities of a level that changed
several times, never a level.  A snapshot or an invalidation replaces what is
pending for the symbol (re-read the book; its levels are not listed).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum

from .._native import speedups
from ..core.ladder import Level
from ..protocol.wire import DepthEvent, RawLevels

__all__ = ["BookUpdate", "RawChanges", "UpdateKind", "merge_levels"]



class UpdateKind(StrEnum):
    """What happened to the book (``== "delta"`` works: it is a ``StrEnum``)."""

    DELTA = "delta"
    """Frames were applied: ``bids`` / ``asks`` list the changed levels."""
    SNAPSHOT = "snapshot"
    """The book was rebuilt from a snapshot: re-read it."""
    INVALIDATED = "invalidated"
    """The book was cleared (``reason`` says why) and is being rebuilt."""


RawChanges = dict[str, tuple[str, str]]
"""Changed levels of one side: :func:`~orderbook.protocol.decimals.value_key`
of the price -> ``(price, quantity)`` as received, the newest winning."""


class BookUpdate:
    """One symbol's update as a consumer receives it.  Treat as immutable.

    ``first_id`` / ``last_id``: the update ids covered (``last_id`` is the
    book's id after the change); ``best_bid`` / ``best_ask``: the touch then;
    ``engine_time`` (``T``) / ``event_time`` (``E``): the venue's microsecond
    clocks of the newest frame; ``received_us``: our clock when it was read;
    ``merged``: notifications folded into this one; ``reason``: why the book
    was invalidated (``kind == "invalidated"``).

    ``bids`` / ``asks`` (exact ``(price, quantity)`` Decimals) and
    ``raw_bids`` / ``raw_asks`` (the strings as received) are computed on
    first read: O(changed levels), then cached.

    While it waits in a consumer's queue, newer changes of the same symbol are
    folded into it (:meth:`fold`, O(1)); once the consumer has taken it, it
    never changes again.
    """

    __slots__ = ("symbol", "kind", "first_id", "last_id", "best_bid", "best_ask", "engine_time",
                 "event_time", "received_us", "merged", "reason", "_frames", "_raw", "_levels")

    def __init__(
        self, symbol: str, kind: UpdateKind, first_id: int | None, last_id: int | None,
        best_bid: Level | None, best_ask: Level | None, engine_time: int | None,
        event_time: int | None, received_us: int, merged: int = 1, reason: str | None = None,
        frames: list[DepthEvent] | None = None,
    ) -> None:
        self.symbol = symbol
        self.kind = kind
        self.first_id = first_id
        self.last_id = last_id
        self.best_bid = best_bid
        self.best_ask = best_ask
        self.engine_time = engine_time
        self.event_time = event_time
        self.received_us = received_us
        self.merged = merged
        self.reason = reason
        self._frames: list[DepthEvent] = frames if frames is not None else []
        self._raw: tuple[RawChanges, RawChanges] | None = None
        self._levels: tuple[tuple[Level, ...], tuple[Level, ...]] | None = None

    def fold(self, newer: BookUpdate) -> None:
        """Fold ``newer`` (the same symbol, later; not yet delivered) in: a
        delta extends a pending delta (or leaves a pending snapshot a
        snapshot); a snapshot or an invalidation replaces what is pending.
        O(levels of ``newer``): they are merged into this update's maps."""
        self.merged += newer.merged
        if newer.kind is UpdateKind.DELTA and self.kind is not UpdateKind.INVALIDATED:
            if self.kind is UpdateKind.DELTA:
                self._add_frames(newer._frames)
        else:
            self.kind, self.first_id, self.reason = newer.kind, newer.first_id, newer.reason
            self._frames, self._raw = newer._frames, newer._raw
        self.last_id = newer.last_id
        self.best_bid, self.best_ask = newer.best_bid, newer.best_ask
        self.engine_time, self.event_time = newer.engine_time, newer.event_time
        self.received_us = newer.received_us

    def extend(self, frames: list[DepthEvent], best_bid: Level | None, best_ask: Level | None,
               received_us: int) -> None:
        """Fold the newer frames of this symbol (the book's touch after them,
        read at ``received_us``) into this pending delta, as :meth:`fold` of
        one delta would, without a :class:`BookUpdate` built for them.  Only
        for a delta not yet delivered.  O(levels of ``frames``), merged into
        this update's maps at once (about 0.1 µs a level in C)."""
        self.merged += 1
        self._add_frames(frames)
        last = frames[-1]
        self.last_id = last.last_id
        self.best_bid, self.best_ask = best_bid, best_ask
        self.engine_time, self.event_time = last.engine_time, last.event_time
        self.received_us = received_us

    def _add_frames(self, frames: list[DepthEvent]) -> None:
        """Merge this update's own frames, then ``frames``, into its maps
        (bounds a slow consumer's memory to one map per symbol, and reads the
        frames while they are hot)."""
        raw = self._raw
        if raw is None or self._frames:
            raw = self._raw = merge_levels(self._frames, raw)
            self._frames = []
        _fold_frames(raw[0], raw[1], frames)

    def raw_changes(self) -> tuple[RawChanges, RawChanges]:
        """The changed levels of a delta as two maps (:data:`RawChanges`), bids
        then asks: the price's exact key -> ``(price, quantity)`` strings as
        received, the newest winning, in the order each price first changed
        (both empty for a snapshot or an invalidation).  The maps belong to
        this update: read them, never change them.  O(changed levels) on
        first call, merged once and cached, then O(1).  The cheapest view for
        a consumer that republishes strings (:mod:`orderbook.sinks`): no
        quantity becomes a ``Decimal``."""
        if self.kind is not UpdateKind.DELTA:
            return {}, {}
        if self._frames or self._raw is None:
            self._raw = merge_levels(self._frames, self._raw)
            self._frames = []
        return self._raw

    def fold_changes_into(self, bids: RawChanges, asks: RawChanges) -> None:
        """Fold the changed levels of a delta into ``bids`` and ``asks`` (the
        newest winning, as :meth:`raw_changes` lists them), for a consumer that
        merges updates into maps of its own: no map is built for this update
        and it does not change.  Nothing for a snapshot or an invalidation.
        O(changed levels)."""
        if self.kind is not UpdateKind.DELTA:
            return
        if self._raw is not None:
            bids.update(self._raw[0])
            asks.update(self._raw[1])
        _fold_frames(bids, asks, self._frames)

    @property
    def raw_bids(self) -> tuple[tuple[str, str], ...]:
        """Changed bid levels as received, ``(price, quantity)`` strings, last one winning."""
        return tuple(self.raw_changes()[0].values())

    @property
    def raw_asks(self) -> tuple[tuple[str, str], ...]:
        """Changed ask levels as received, ``(price, quantity)`` strings, last one winning."""
        return tuple(self.raw_changes()[1].values())

    def _decimal_levels(self) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        if self._levels is None:
            bids, asks = self.raw_changes()
            self._levels = (tuple((Decimal(p), Decimal(q)) for p, q in bids.values()),
                            tuple((Decimal(p), Decimal(q)) for p, q in asks.values()))
        return self._levels

    @property
    def bids(self) -> tuple[Level, ...]:
        """Changed bid levels, exact, at their latest quantity (zero: removed)."""
        return self._decimal_levels()[0]

    @property
    def asks(self) -> tuple[Level, ...]:
        """Changed ask levels, exact, at their latest quantity (zero: removed)."""
        return self._decimal_levels()[1]

    def __repr__(self) -> str:
        return (f"BookUpdate({self.symbol!r}, {self.kind.value}, ids {self.first_id}..{self.last_id}, "
                f"merged={self.merged})")


def merge_levels(frames: list[DepthEvent],
                 into: tuple[RawChanges, RawChanges] | None = None) -> tuple[RawChanges, RawChanges]:
    """The levels of ``frames``, in order, last one winning per price (prices
    compared exactly, so ``"1.50"`` and ``"1.5"`` are one level: keyed by
    :func:`~orderbook.protocol.decimals.value_key`), folded onto ``into`` if
    given.  O(levels), about 0.2 µs a level."""
    bids, asks = into if into is not None else ({}, {})
    _fold_frames(bids, asks, frames)
    return bids, asks


def _py_fold(into: RawChanges, levels: RawLevels) -> None:
    """``into[value_key(price)] = (price, qty)`` for each level, in order
    (the pure-Python twin of ``_speedups.fold_levels``)."""
    for price, qty in levels:
        # value_key(price), inlined: this runs for every level of every frame
        key = price.rstrip("0").rstrip(".") if "." in price else price
        into[key.lstrip("0")] = (price, qty)


def _py_fold_frames(bids: RawChanges, asks: RawChanges, frames: list[DepthEvent]) -> None:
    """:func:`_py_fold` of each frame's bids into ``bids`` and asks into
    ``asks``, in order (the pure-Python twin of ``_speedups.fold_frames``)."""
    for frame in frames:
        _py_fold(bids, frame.bids)
        _py_fold(asks, frame.asks)


_fold_frames: Callable[[RawChanges, RawChanges, list[DepthEvent]], None] = (
    _py_fold_frames if speedups is None else speedups.fold_frames)
"""Folds frames into the two maps: the C twin when built (one call per
update instead of two per frame; about 4x faster per level)."""
