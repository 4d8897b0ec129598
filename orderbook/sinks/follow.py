"""Readers: an exact :class:`~orderbook.core.book.OrderBook` rebuilt from published messages.

:class:`BookFollower` holds one symbol's book and applies messages with the
venue's own bridging rule, so it is exact whatever a broker delivered twice
or lost:

* a **snapshot** replaces the book (``synced`` becomes True);
* a **delta** ``U..u`` on a book at ``L``: skipped when ``u <= L`` (already
  held), applied when ``U <= L + 1`` (as ``L+1..u``: quantities are absolute),
  and a **gap** when ``U > L + 1``: the book is cleared, ``synced`` becomes
  False and the follower waits for the next snapshot (Redis) or asks for one
  (NATS);
* a message that does not decode, or whose levels are invalid or cross the
  book, is counted as bad and treated like a gap.

So the book is, like the replicator's, *always exact or empty*: while
``synced`` it equals the publisher's book at ``book.last_update_id``; while
not, it is empty.  Read it from the event loop (between messages).

A follower is an async context manager (``start``/``close``) and an async
iterator: ``async for book in follower`` yields the (same) book object each
time it changed, skipping intermediate states if the loop body is slow.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..core.book import OrderBook
from ..errors import OrderBookError, UsageError, VenueDataError
from ..protocol.wire import DepthEvent, parse_snapshot
from .messages import Message, MessageKind

__all__ = ["BookFollower", "FollowerStats"]

log = logging.getLogger("orderbook.sinks")


@dataclass(slots=True)
class FollowerStats:
    """What a follower saw; every count only grows.

    ``messages`` read, ``snapshots`` and ``deltas`` applied, ``skipped``
    (already held, or before the first snapshot), ``gaps``, ``bad`` messages,
    ``reconnects`` to the broker, ``requests`` for a snapshot (NATS).
    """

    messages: int = 0
    snapshots: int = 0
    deltas: int = 0
    skipped: int = 0
    gaps: int = 0
    bad: int = 0
    reconnects: int = 0
    requests: int = 0


class BookFollower(ABC):
    """One symbol's book, followed from a broker (see the module docstring)."""

    def __init__(self, symbol: str) -> None:
        if not symbol:
            raise UsageError("a symbol cannot be empty")
        self.symbol = symbol
        self.book = OrderBook(symbol)
        """The book: exact at ``book.last_update_id`` while :attr:`synced`, else empty."""
        self.stats = FollowerStats()
        self._synced = False
        self._version = 0
        self._changed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> BookFollower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start following in a task of its own (returns at once)."""
        if self._task is not None or self._closed:
            raise UsageError("the follower is already started")
        self._task = asyncio.create_task(self._follow(), name=f"orderbook-follow-{self.symbol}")

    async def close(self) -> None:
        """Stop following and close the broker connection.  Idempotent."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._notify()

    # ------------------------------------------------------------- reading
    @property
    def synced(self) -> bool:
        """True while the book is exact (after a snapshot, before any gap)."""
        return self._synced

    async def wait_synced(self, update_id: int | None = None, timeout: float | None = None) -> None:
        """Wait until synced (and, with ``update_id``, at that id or later).

        Raises :class:`TimeoutError` saying where the book is after ``timeout`` seconds.
        """
        async def wait() -> None:
            while not (self._synced and (update_id is None or
                                         (self.book.last_update_id or 0) >= update_id)):
                await self._next_change()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.symbol}: not synced at {update_id} after {timeout} s "
                               f"(synced={self._synced}, at {self.book.last_update_id})") from None

    def __aiter__(self) -> AsyncIterator[OrderBook]:
        """An iterator yielding :attr:`book` each time it changed (ends when closed)."""
        return self._changes()

    async def _changes(self) -> AsyncIterator[OrderBook]:
        seen = -1
        while True:
            while self._version == seen:
                if self._closed:
                    return
                await self._next_change()
            seen = self._version
            yield self.book

    # ------------------------------------------------------------ applying
    def apply(self, message: Message) -> None:
        """Apply one message with the bridging rule of the module docstring.  O(levels)."""
        stats = self.stats
        stats.messages += 1
        book = self.book
        if message.kind is MessageKind.SNAPSHOT:
            try:
                snapshot = parse_snapshot({"lastUpdateId": message.last_id, "timestamp": message.ts,
                                           "bids": [list(level) for level in message.bids],
                                           "asks": [list(level) for level in message.asks]},
                                          self.symbol)
                book.apply_snapshot(snapshot)
            except VenueDataError as exc:
                self._bad(exc)
                return
            stats.snapshots += 1
            self._synced = True
            self._notify()
            return
        last = book.last_update_id
        if not self._synced or last is None or message.last_id <= last:
            stats.skipped += 1
            return
        if message.first_id > last + 1:
            stats.gaps += 1
            log.info("%s: gap (U=%d after u=%d); waiting for a snapshot", self.symbol,
                     message.first_id, last)
            self._invalidate()
            return
        event = DepthEvent(self.symbol, last + 1, message.last_id, message.ts, message.ts,
                           [list(level) for level in message.bids],
                           [list(level) for level in message.asks])
        try:
            touched = book.apply_delta(event)
            if touched and book.is_crossed():
                raise VenueDataError(f"{self.symbol}: the book is crossed at {message.last_id}")
        except OrderBookError as exc:
            self._bad(exc)
            return
        stats.deltas += 1
        self._notify()

    def _bad(self, exc: OrderBookError) -> None:
        self.stats.bad += 1
        log.warning("%s: bad message (%s); waiting for a snapshot", self.symbol, exc)
        self._invalidate()

    def _invalidate(self) -> None:
        self.book.clear()
        self._synced = False
        self._notify()
        self._lost_sync()

    def _lost_sync(self) -> None:
        """Called after a gap or a bad message (NATS asks for a snapshot)."""

    # ------------------------------------------------------------ internals
    def _notify(self) -> None:
        self._version += 1
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    async def _next_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)

    @abstractmethod
    async def _follow(self) -> None:
        """Read the broker forever (reconnecting), calling :meth:`apply`."""
