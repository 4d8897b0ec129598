"""Consumers of a replicator's updates: bounded queues, woken once per batch.

Each consumer (an :class:`UpdateStream` iterator or an ``on_update``
callback) has its own :class:`ConsumerQueue` with one of two policies:

* ``"conflate"`` (default): a dirty set -- at most one pending update per
  symbol; a newer change of a pending symbol is folded into it in O(1)
  (:class:`~orderbook.sync.updates.BookUpdate`).  The queue is bounded by
  the number of symbols and no level is lost (see
  :mod:`orderbook.sync.updates` for exactly what a consumer sees).
* ``"drop_oldest"``: a FIFO of at most ``maxsize`` updates, one per symbol per
  batch; when full the oldest is dropped and counted.

The driver pushes every change of one socket read, then calls
:meth:`ConsumerQueue.wake` once: a consumer is woken once per batch, not once
per frame, and a slow consumer never blocks the feed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..errors import OrderBookError, UsageError
from ..protocol.streams import now_us
from ..sync.samples import Samples
from ..sync.updates import BookUpdate, UpdateKind

if TYPE_CHECKING:
    from ..core.ladder import Level
    from ..protocol.wire import DepthEvent
    from .replicator import Replicator

__all__ = ["ConsumerQueue", "ConsumerStats", "QueuePolicy", "UpdateStream"]

QueuePolicy = Literal["conflate", "drop_oldest"]
"""How a consumer's queue bounds itself (see the module docstring)."""


@dataclass(slots=True)
class ConsumerStats:
    """Consumers attached, updates delivered, folded (conflate), dropped
    (drop_oldest) and callbacks that raised."""

    consumers: int = 0
    delivered: int = 0
    conflated: int = 0
    dropped: int = 0
    callback_errors: int = 0


@dataclass(slots=True)
class DeliveryLatency:
    """Venue clocks to the moment a consumer took an update (µs samples)."""

    engine_to_notify: Samples = field(default_factory=Samples)
    send_to_notify: Samples = field(default_factory=Samples)


class ConsumerQueue:
    """One consumer's bounded queue.  :meth:`push` is O(1) and never blocks."""

    __slots__ = ("policy", "_conflate", "_maxsize", "_counts", "_latency", "_pending", "_fifo",
                 "_waiter", "_dirty", "_nudged", "closed")

    def __init__(self, policy: QueuePolicy, maxsize: int, counts: ConsumerStats,
                 latency: DeliveryLatency) -> None:
        if policy not in ("conflate", "drop_oldest"):
            raise UsageError(f"policy must be 'conflate' or 'drop_oldest', got {policy!r}")
        if maxsize < 1:
            raise UsageError(f"maxsize must be >= 1, got {maxsize}")
        self.policy = policy
        self._conflate = policy == "conflate"
        self._maxsize = maxsize
        self._counts = counts
        self._latency = latency
        self._pending: dict[str, BookUpdate] = {}
        self._fifo: deque[BookUpdate] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._dirty = False
        self._nudged = False
        self.closed = False

    def push(self, update: BookUpdate) -> None:
        """Queue ``update`` (owned by this queue from now on); the consumer is
        woken by the next :meth:`wake`."""
        if self._conflate:
            pending = self._pending.get(update.symbol)
            if pending is None:
                self._pending[update.symbol] = update
            else:
                pending.fold(update)
                self._counts.conflated += 1
        else:
            if len(self._fifo) >= self._maxsize:
                self._fifo.popleft()
                self._counts.dropped += 1
            self._fifo.append(update)
        self._dirty = True

    def extend(self, symbol: str, frames: list[DepthEvent], best_bid: Level | None,
               best_ask: Level | None, received_us: int) -> bool:
        """Fold the new frames of ``symbol`` into its pending delta, if this
        queue conflates and one is pending (:meth:`BookUpdate.extend`), and
        return True; else False and nothing changes (then :meth:`push` a new
        update).  O(1): a lingering consumer costs the feed no allocation per
        frame."""
        if not self._conflate:
            return False
        pending = self._pending.get(symbol)
        if pending is None or pending.kind is not UpdateKind.DELTA:
            return False
        pending.extend(frames, best_bid, best_ask, received_us)
        self._counts.conflated += 1
        self._dirty = True
        return True

    def wake(self) -> None:
        """Wake the consumer if anything was pushed since it last looked.  O(1)."""
        if self._dirty:
            self._dirty = False
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """End the consumer: :meth:`get` returns ``None`` from now on."""
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def nudge(self) -> None:
        """Wake a :meth:`wait` now, with nothing pending (it returns True): for
        a consumer that has work of its own to do.  O(1)."""
        self._nudged = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> BookUpdate | None:
        """The next update, oldest symbol first; ``None`` once closed."""
        while await self.wait():
            if self._pending:
                symbol = next(iter(self._pending))
                return self._delivered(self._pending.pop(symbol))
            if self._fifo:
                return self._delivered(self._fifo.popleft())
        return None

    async def wait(self) -> bool:
        """Until an update is pending or :meth:`nudge` was called (True), or
        the queue is closed (False); takes nothing.  Suspends only while
        nothing is pending."""
        while not self.closed:
            if self._pending or self._fifo or self._nudged:
                self._nudged = False
                return True
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        return False

    def drain(self) -> list[BookUpdate]:
        """Every pending update, in the order :meth:`get` would return them,
        without awaiting (empty once closed).  O(pending)."""
        if self.closed:
            return []
        out = [self._delivered(update) for update in self._pending.values()]
        self._pending.clear()
        if self._fifo:
            out += [self._delivered(update) for update in self._fifo]
            self._fifo.clear()
        return out

    def _delivered(self, update: BookUpdate) -> BookUpdate:
        self._counts.delivered += 1
        if update.kind is UpdateKind.DELTA and update.engine_time is not None:
            now = now_us()
            self._latency.engine_to_notify.add(now - update.engine_time)
            if update.event_time is not None:
                self._latency.send_to_notify.add(now - update.event_time)
        return update


class UpdateStream:
    """The async iterator returned by :meth:`Replicator.updates`; also an async
    context manager that detaches it on exit.  It ends when the replicator
    closes, raising :attr:`Replicator.failure` if the replicator failed."""

    def __init__(self, replicator: Replicator, queue: ConsumerQueue,
                 detach: Callable[[ConsumerQueue], None]) -> None:
        self._replicator = replicator
        self._queue = queue
        self._detach = detach

    def __aiter__(self) -> UpdateStream:
        return self

    async def __anext__(self) -> BookUpdate:
        update = await self._queue.get()
        if update is None:
            self._detach(self._queue)
            failure: OrderBookError | None = self._replicator.failure
            if failure is not None:
                raise failure
            raise StopAsyncIteration
        return update

    async def wait(self) -> bool:
        """Wait until updates are pending, without taking any (then
        :meth:`drain` takes them all at once): True, or False once the
        iterator has ended (it is then detached); raises
        :attr:`Replicator.failure` if the replicator failed.  For a consumer
        that works in batches (a sink lingering before it publishes): one
        suspension per batch instead of one ``await`` per update."""
        if await self._queue.wait():
            return True
        self._detach(self._queue)
        failure: OrderBookError | None = self._replicator.failure
        if failure is not None:
            raise failure
        return False

    def drain(self) -> list[BookUpdate]:
        """Every update pending now, oldest symbol first, without awaiting
        (empty once ended).  O(pending)."""
        return self._queue.drain()

    def nudge(self) -> None:
        """Wake a pending :meth:`wait` now, although nothing is pending (it
        returns True and :meth:`drain` may be empty): for a batching consumer
        that has other work to start (a sink whose broker just connected).
        O(1)."""
        self._queue.nudge()

    async def aclose(self) -> None:
        """Detach from the replicator; the iterator ends."""
        self._detach(self._queue)

    async def __aenter__(self) -> UpdateStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
