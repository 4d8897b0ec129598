"""The publisher core: replica updates in, broker messages out.  No I/O, no asyncio.

:class:`PublisherCore` turns the :class:`~orderbook.live.replicator.BookUpdate`
stream of a conflating consumer into :class:`~orderbook.sinks.messages.Message`
values waiting in one bounded queue, for an asyncio pump to send.  Every
rule of the published sequence lives here:

1. **Shape.**  Per symbol the published sequence is a snapshot, then deltas
   each with ``U == previous u + 1``, until the next snapshot.
2. **When a snapshot is owed.**  When the core starts and while the broker
   connection is down (:meth:`pause`), after every resync of the replica (a
   ``"snapshot"`` update), every ``snapshot_interval`` deltas, after a delta
   was dropped (queue full), and after a gap in the updates (impossible with a
   conflating consumer; handled anyway).  While a snapshot is owed, the
   symbol's deltas are dropped and counted: the snapshot will cover them.
3. **How a snapshot is made.**  From the live book, at the moment it is
   queued, and only while the replica is synced.  Its id ``L`` is the live
   book's id, which may be *past* the update being processed (the consumer
   runs behind the engine).
4. **Deltas after a snapshot at L.**  A delta ``U..u`` with ``u <= L`` is
   skipped (the snapshot holds it).  One with ``U <= L < u`` is published as
   ``L+1..u`` with all its levels.  This is exact: a delta carries the
   absolute quantity at ``u`` of every level changed in ``U..u``; a level
   changed in ``L+1..u`` gets its quantity at ``u``, and a level changed only
   in ``U..L`` has the same quantity at ``L`` and at ``u``, so re-setting it
   changes nothing.  Any other level did not change in ``L+1..u``.
5. **Conflated while waiting.**  A delta whose symbol already has a delta
   waiting in the queue (its last message, not yet taken) is merged into it:
   ``u`` advances, each level takes its newest quantity.  Exact for the same
   reason as rule 4.  So the queue holds at most one delta per symbol
   between two :meth:`take` calls plus the snapshots, and the slower the
   broker, the fewer and larger its messages; encoding happens in
   :meth:`take`, once per message.
6. **Bounded.**  At most ``max_queue`` messages wait.  A delta that would
   need a new message in a full queue is dropped and counted, and its symbol
   owes a snapshot.  Owed snapshots are queued by :meth:`take` while the
   queue is at most half full (hysteresis: under a slow broker each symbol
   costs at most one snapshot per drain), and by :meth:`offer` when there is
   room.
7. **Connection loss.**  What was in flight may or may not have reached the
   broker, so :meth:`pause` discards the queue (counted as dropped) and every
   symbol owes a snapshot; nothing is queued until :meth:`resume`.

Costs: :meth:`offer` is O(1) for a delta that starts a message (it holds
the update's own maps of raw strings), O(changed levels) for one merged into
a waiting message (a dict merge: no ``Decimal`` is built for a quantity),
O(book) when it makes a snapshot; :meth:`take` O(levels of
the messages taken: their encoding, canonical spellings published as they
came), plus O(book) per snapshot it makes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..core.book import OrderBook
from ..errors import UsageError
from ..sync.updates import BookUpdate
from .messages import Message, MessageKind, wire_levels, wire_raw_levels

__all__ = ["BookSource", "CoreCounters", "PublisherCore"]

BookSource = Callable[[str], OrderBook | None]
"""Given a symbol, its live book if the replica is synced now, else ``None``."""


@dataclass(slots=True)
class CoreCounters:
    """What the core did; every count only grows.

    ``dropped``: updates (and discarded queued messages) not published;
    ``skipped``: deltas already held by a later snapshot; ``trimmed``: deltas
    published from ``L+1`` (rule 4); ``merged``: deltas merged into a waiting
    one (rule 5); ``snapshots``: snapshot messages queued; ``deltas``: delta
    messages queued; ``gaps``: updates that did not continue what was
    published (each made a snapshot owed).
    """

    dropped: int = 0
    skipped: int = 0
    trimmed: int = 0
    merged: int = 0
    snapshots: int = 0
    deltas: int = 0
    gaps: int = 0


class _Delta:
    """A delta waiting in the queue, still open to merging (rule 5).

    Its levels are kept as the venue spelled them (the price's exact key ->
    ``(price, quantity)`` strings, :data:`RawChanges`), and no quantity
    becomes a ``Decimal`` on the way to the wire
    (:func:`~orderbook.sinks.messages.wire_raw_levels`).  A new delta holds
    its update's own maps (:meth:`BookUpdate.raw_changes`, read only: every
    sink of a replicator is offered the same update, and none copies them);
    only a second update merged into it (:meth:`merge`) makes it copy them
    first.  So the common case, one update per symbol per ``linger``, costs
    no map work here at all."""

    __slots__ = ("symbol", "first", "last", "ts", "bids", "asks", "_shared")

    def __init__(self, symbol: str, first: int, last: int, ts: int, update: BookUpdate) -> None:
        self.symbol = symbol
        self.first = first
        self.last = last
        self.ts = ts
        self.bids, self.asks = update.raw_changes()
        self._shared = True
        """True while ``bids``/``asks`` are the update's maps (never written)."""

    def merge(self, update: BookUpdate, last: int, ts: int) -> None:
        """Merge a later update of the symbol in (its levels win).  O(levels
        of ``update``), plus a copy of the maps held on the first merge."""
        if self._shared:
            self.bids, self.asks, self._shared = dict(self.bids), dict(self.asks), False
        update.fold_changes_into(self.bids, self.asks)
        self.last, self.ts = last, ts

    def freeze(self) -> Message:
        return Message(self.symbol, MessageKind.DELTA, self.first, self.last, self.ts,
                       wire_raw_levels(self.bids.values()), wire_raw_levels(self.asks.values()))


class _Feed:
    """What was queued for one symbol."""

    __slots__ = ("symbol", "last", "deltas", "tail")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.last: int | None = None
        """``u`` of the last message queued; ``None`` while a snapshot is owed."""
        self.deltas = 0
        """Delta messages queued since the last snapshot."""
        self.tail: _Delta | None = None
        """The symbol's last message if it is a delta still in the queue."""


class PublisherCore:
    """The published sequences of every symbol and the bounded queue of messages.

    ``books`` gives the live book of a synced symbol (read only when a
    snapshot is made); ``snapshot_interval`` is the number of deltas between
    periodic snapshots (``None``: snapshots only when owed otherwise);
    ``max_queue`` bounds the queue; ``now_us`` is the clock used as ``ts``
    of a snapshot whose book has no timestamp.  The core starts paused:
    call :meth:`resume` once the broker is connected.  Not thread-safe.
    """

    def __init__(self, books: BookSource, *, snapshot_interval: int | None = 1000,
                 max_queue: int = 10_000, now_us: Callable[[], int]) -> None:
        if snapshot_interval is not None and snapshot_interval < 1:
            raise UsageError(f"snapshot_interval must be >= 1 or None, got {snapshot_interval}")
        if max_queue < 2:
            raise UsageError(f"the queue must hold at least 2 messages, got {max_queue}")
        self._books = books
        self._interval = snapshot_interval
        self._max = max_queue
        self._low = max_queue // 2
        self._now_us = now_us
        self._queue: deque[Message | _Delta] = deque()
        self._feeds: dict[str, _Feed] = {}
        self._owed: dict[str, None] = {}
        self._paused = True
        self.counters = CoreCounters()

    # ------------------------------------------------------------- reading
    def __len__(self) -> int:
        """Messages waiting.  O(1)."""
        return len(self._queue)

    @property
    def paused(self) -> bool:
        """True while nothing is queued (before :meth:`resume`, after :meth:`pause`)."""
        return self._paused

    def owed(self) -> list[str]:
        """The symbols that owe a snapshot, oldest first.  O(symbols)."""
        return list(self._owed)

    def published_id(self, symbol: str) -> int | None:
        """``u`` of the last message queued for ``symbol`` (``None`` while a snapshot is owed)."""
        feed = self._feeds.get(symbol)
        return None if feed is None else feed.last

    # ------------------------------------------------------------- writing
    def owe(self, symbols: Iterable[str]) -> None:
        """Make each of ``symbols`` owe a snapshot (e.g. every symbol, at start)."""
        for symbol in symbols:
            self._owe(self._feed(symbol))
        self._settle()

    def offer(self, update: BookUpdate) -> None:
        """Take one replica update (in the order the consumer delivers them)."""
        feed = self._feed(update.symbol)
        kind = update.kind
        if kind == "delta":
            self._delta(feed, update)
        elif kind == "snapshot":
            self._owe(feed)
            if not self._paused and len(self._queue) < self._max:
                self._snapshot(feed)
        else:  # invalidated: nothing can be published until the replica syncs again
            self._owe(feed)

    def take(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages, oldest first, to send.

        Queues owed snapshots first while the queue is at most half full.
        Returns nothing while paused.  O(messages) + O(book) per snapshot made.
        """
        if self._paused:
            return []
        self._settle()
        queue, feeds = self._queue, self._feeds
        out: list[Message] = []
        for _ in range(min(limit, len(queue))):
            entry = queue.popleft()
            if isinstance(entry, _Delta):
                feed = feeds[entry.symbol]
                if feed.tail is entry:
                    feed.tail = None
                out.append(entry.freeze())
            else:
                out.append(entry)
        return out

    def pause(self) -> int:
        """The broker connection is lost: discard the queue (counted as
        dropped), owe a snapshot of every symbol and queue nothing until
        :meth:`resume`.  Returns how many messages were discarded."""
        discarded = len(self._queue)
        self.counters.dropped += discarded
        self._queue.clear()
        self._paused = True
        for feed in self._feeds.values():
            feed.tail = None
            self._owe(feed)
        return discarded

    def resume(self) -> None:
        """The broker is connected: queue again (owed snapshots first)."""
        self._paused = False
        self._settle()

    # ----------------------------------------------------------- internals
    def _feed(self, symbol: str) -> _Feed:
        feed = self._feeds.get(symbol)
        if feed is None:
            feed = self._feeds[symbol] = _Feed(symbol)
            self._owed[symbol] = None
        return feed

    def _owe(self, feed: _Feed) -> None:
        feed.last = None
        feed.tail = None  # what waits stays valid; nothing more is merged into it
        self._owed[feed.symbol] = None

    def _delta(self, feed: _Feed, update: BookUpdate) -> None:
        counters = self.counters
        last = feed.last
        first_id, last_id = update.first_id, update.last_id
        if last is None or first_id is None or last_id is None:
            # a snapshot is owed: this change is covered by it, if there is room now
            if self._paused or len(self._queue) >= self._low or not self._snapshot(feed):
                counters.dropped += 1
            return
        if last_id <= last:
            counters.skipped += 1
            return
        if first_id > last + 1:
            counters.gaps += 1
            self._owe(feed)
            if len(self._queue) >= self._max or not self._snapshot(feed):
                counters.dropped += 1
            return
        ts = update.engine_time if update.engine_time is not None else update.received_us
        tail = feed.tail
        if tail is not None:  # rule 5: merge into the delta waiting for this symbol
            tail.merge(update, last_id, ts)
            feed.last = last_id
            counters.merged += 1
            return
        if len(self._queue) >= self._max:
            counters.dropped += 1
            self._owe(feed)
            return
        if first_id <= last:
            counters.trimmed += 1
        tail = feed.tail = _Delta(feed.symbol, last + 1, last_id, ts, update)
        self._queue.append(tail)
        counters.deltas += 1
        feed.last = last_id
        feed.deltas += 1
        if self._interval is not None and feed.deltas >= self._interval:
            self._owe(feed)
            if len(self._queue) < self._max:
                self._snapshot(feed)

    def _snapshot(self, feed: _Feed) -> bool:
        """Queue a snapshot of the live book if the replica is synced; True if queued."""
        book = self._books(feed.symbol)
        if book is None or book.last_update_id is None:
            return False
        update_id = book.last_update_id
        ts = book.timestamp if book.timestamp is not None else self._now_us()
        self._queue.append(Message(feed.symbol, MessageKind.SNAPSHOT, update_id, update_id, ts,
                                   wire_levels(book.bids()), wire_levels(book.asks())))
        self.counters.snapshots += 1
        feed.last = update_id
        feed.deltas = 0
        feed.tail = None
        self._owed.pop(feed.symbol, None)
        return True

    def _settle(self) -> None:
        """Queue the owed snapshots that can be made, while the queue is at most half full."""
        if self._paused or not self._owed:
            return
        for symbol in list(self._owed):
            if len(self._queue) > self._low:
                return
            self._snapshot(self._feeds[symbol])
