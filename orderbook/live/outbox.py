"""A bounded outgoing queue and its writer task, for one WebSocket connection.

A server that fans one stream out to many clients must never wait for the
slowest of them.  Each client gets an :class:`Outbox`: :meth:`Outbox.push`
appends the message to a deque and wakes the writer -- O(1), it never blocks
and never awaits -- and :meth:`Outbox.run`, one task per client, sends the
queued messages in order.

The connection is anything with an awaitable ``send(message)`` and an
awaitable ``close(code, reason)`` (:class:`Connection`): a ``websockets``
connection as it is (the simulated venue), or a small adapter over another
library's socket (the mirror's aiohttp WebSockets).  ``send`` raising one of
``closed_errors`` means the connection is gone: the outbox stops.

Overflow policy: at most ``limit`` messages wait in an outbox, and, when
``max_bytes`` is given, at most ``max_bytes`` bytes wait in it and below it
(the queued messages plus what ``buffered()`` reports, e.g. a transport's
write buffer).  The push that finds it full drops the whole queue (the
refused message too), reports the number dropped to ``on_overflow``, and
closes the connection with code 1008 (:data:`OVERFLOW_CLOSE_CODE`, policy
violation) and the outbox's ``reason``; later pushes are ignored.  So memory
per client is bounded, and a client is never sent a message that follows one
it missed: it sees the close, reconnects and starts over.  An *optional*
message (``push(..., optional=True)``, e.g. an error reply) that does not fit
is dropped alone: it never closes the connection.

Counting is left to the owner through two hooks, ``on_overflow(dropped)`` and
``on_sent()``, so each server keeps its own counters and close reason.

Only ``asyncio`` is imported: the simulated venue, which must stay
independent of the replica's logic, uses this module as well as the mirror.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["OVERFLOW_CLOSE_CODE", "Connection", "Outbox"]

OVERFLOW_CLOSE_CODE = 1008
"""WebSocket close code (policy violation) for a connection whose outbox overflowed."""

M = TypeVar("M", str, bytes)
"""The message type an outbox carries: text (``str``) or encoded frames (``bytes``)."""
M_contra = TypeVar("M_contra", str, bytes, contravariant=True)


class Connection(Protocol[M_contra]):
    """What an :class:`Outbox` writes to: one message at a time, and a close."""

    async def send(self, message: M_contra, /) -> None:
        """Send one message; may wait for the socket to drain."""

    async def close(self, code: int, reason: str, /) -> None:
        """Close the connection with ``code`` and ``reason``."""


class Outbox(Generic[M]):
    """The outgoing side of one WebSocket connection: a bounded queue and its writer.

    ``conn`` the connection; ``limit`` the most messages that may wait;
    ``reason`` the close reason sent with 1008 on overflow; ``max_bytes`` the
    most bytes that may wait here and in ``buffered()`` (``None``: no byte
    bound); ``closed_errors`` the exceptions of ``conn.send`` that mean the
    connection is gone; ``on_overflow`` called with the number of messages
    dropped (queued + refused) just before that close; ``on_sent`` called
    after each message the socket accepted (one call per message: keep it to
    a counter increment).  A message's size is its ``len()`` (bytes for
    encoded frames, characters for text).

    Costs: :meth:`push` O(1) plus one ``buffered()`` call when ``max_bytes``
    is set; :meth:`close` and :meth:`stop` O(queued), to drop the queue;
    :meth:`run` O(1) per message on top of ``conn.send``.  Memory: at most
    ``limit`` messages and ``max_bytes`` bytes.  Not thread-safe: push from
    the event loop's thread.
    """

    __slots__ = ("conn", "_limit", "_reason", "_max_bytes", "_buffered", "_closed_errors",
                 "_on_overflow", "_on_sent", "_queue", "_queued_bytes", "_wake", "_open",
                 "_closing")

    def __init__(self, conn: Connection[M], limit: int, reason: str, *,
                 max_bytes: int | None = None,
                 buffered: Callable[[], int] | None = None,
                 closed_errors: tuple[type[BaseException], ...] = (ConnectionError,),
                 on_overflow: Callable[[int], None] | None = None,
                 on_sent: Callable[[], None] | None = None) -> None:
        self.conn: Connection[M] = conn
        self._limit = limit
        self._reason = reason
        self._max_bytes = max_bytes
        self._buffered = buffered
        self._closed_errors = closed_errors
        self._on_overflow = on_overflow
        self._on_sent = on_sent
        self._queue: deque[M] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._open = True
        self._closing: asyncio.Task[None] | None = None
        """The task closing the connection; held so it is not garbage-collected."""

    @property
    def open(self) -> bool:
        """False once the outbox overflowed, was closed or stopped, or its connection closed."""
        return self._open

    @property
    def queued(self) -> int:
        """Messages waiting for the writer.  O(1)."""
        return len(self._queue)

    def pending_bytes(self) -> int:
        """Bytes waiting here and below (``buffered()``).  O(1)."""
        below = self._buffered() if self._buffered is not None else 0
        return self._queued_bytes + below

    def fits(self, size: int) -> bool:
        """Whether one more message of ``size`` would be within both bounds.  O(1)."""
        if len(self._queue) >= self._limit:
            return False
        return self._max_bytes is None or self.pending_bytes() + size <= self._max_bytes

    def push(self, message: M, *, optional: bool = False) -> bool:
        """Queue one message for the writer; True if it was queued.  O(1); never blocks.

        Ignored once the outbox is no longer :attr:`open`.  When the message
        does not fit (``limit`` messages wait, or ``max_bytes`` would be
        exceeded): an ``optional`` one is dropped alone; otherwise the queue
        and ``message`` are dropped, ``on_overflow`` is told how many, and the
        connection is closed with 1008 and the outbox's reason.
        """
        if not self._open:
            return False
        size = len(message)
        if not self.fits(size):
            if optional:
                return False
            self.overflow()
            return False
        self._queue.append(message)
        self._queued_bytes += size
        self._wake.set()
        return True

    def overflow(self) -> None:
        """Treat the connection as overflowed now (e.g. a control frame that
        does not fit): drop, report, close with 1008.  O(queued)."""
        if not self._open:
            return
        if self._on_overflow is not None:
            self._on_overflow(len(self._queue) + 1)
        self.close(OVERFLOW_CLOSE_CODE, self._reason)

    def close(self, code: int, reason: str) -> None:
        """Stop sending, drop the queue and close the connection with ``code`` and ``reason``.

        O(queued).  The close runs in a task of its own, so this never blocks;
        a no-op once the outbox is no longer :attr:`open`.
        """
        if not self._open:
            return
        self.stop()
        self._closing = asyncio.get_running_loop().create_task(self.conn.close(code, reason))

    async def wait_closed(self) -> None:
        """Wait for the close started by :meth:`close` (if any) to finish."""
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)

    def stop(self) -> None:
        """Stop sending and drop the queue, leaving the connection as it is.  O(queued).

        For a connection that is closed already (or being closed by its owner);
        the writer task returns.
        """
        self._open = False
        self._queue.clear()
        self._queued_bytes = 0
        self._wake.set()

    async def run(self) -> None:
        """The writer task: send queued messages in order until the outbox stops.

        Returns once the outbox is no longer :attr:`open`; a closed connection
        (``send`` raising one of ``closed_errors``) stops the outbox instead of
        raising.  Cancelling it is safe.
        """
        queue, send, wake, on_sent = self._queue, self.conn.send, self._wake, self._on_sent
        try:
            while self._open:
                await wake.wait()
                wake.clear()
                while queue:
                    message = queue.popleft()
                    self._queued_bytes -= len(message)
                    await send(message)
                    if on_sent is not None:
                        on_sent()
        except self._closed_errors:
            self.stop()
