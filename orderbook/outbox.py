"""A bounded outgoing queue and its writer task, for one WebSocket connection.

A server that fans one stream out to many clients must never wait for the
slowest of them.  Each client gets an :class:`Outbox`: :meth:`Outbox.push`
appends the message to a deque and wakes the writer -- O(1), it never blocks
and never awaits -- and :meth:`Outbox.run`, one task per client, sends the
queued messages in order.

Overflow policy: at most ``limit`` messages wait in an outbox.  The push that
finds it full drops the whole queue (the refused message too), reports the
number dropped to ``on_overflow``, and closes the connection with code 1008
(:data:`OVERFLOW_CLOSE_CODE`, policy violation) and the outbox's ``reason``;
later pushes are ignored.  So memory per client is bounded by ``limit``
messages (plus what the socket buffers), and a client is never sent a message
that follows one it missed: it sees the close, reconnects and starts over.

Counting is left to the owner through two hooks, ``on_overflow(dropped)`` and
``on_sent()``, so each server keeps its own counters and close reason.

Only ``asyncio`` and ``websockets`` are imported: the simulated venue, which
must stay independent of the replica's logic, uses this module as well as the
mirror.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

__all__ = ["OVERFLOW_CLOSE_CODE", "Outbox"]

OVERFLOW_CLOSE_CODE = 1008
"""WebSocket close code (policy violation) for a connection whose outbox overflowed."""


class Outbox:
    """The outgoing side of one WebSocket connection: a bounded queue and its writer.

    ``conn`` the connection; ``limit`` the most messages that may wait;
    ``reason`` the close reason sent with 1008 on overflow; ``on_overflow``
    called with the number of messages dropped (queued + refused) just before
    that close; ``on_sent`` called after each message the socket accepted
    (one call per message: keep it to a counter increment).

    Costs: :meth:`push` O(1); :meth:`close` and :meth:`stop` O(queued), to
    drop the queue; :meth:`run` O(1) per message on top of ``conn.send``.
    Memory: at most ``limit`` messages.  Not thread-safe: push from the event
    loop's thread.
    """

    __slots__ = ("conn", "_limit", "_reason", "_on_overflow", "_on_sent", "_queue", "_wake",
                 "_open", "_closing")

    def __init__(self, conn: Connection, limit: int, reason: str, *,
                 on_overflow: Callable[[int], None] | None = None,
                 on_sent: Callable[[], None] | None = None) -> None:
        self.conn = conn
        self._limit = limit
        self._reason = reason
        self._on_overflow = on_overflow
        self._on_sent = on_sent
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._open = True
        self._closing: asyncio.Task[None] | None = None
        """The task closing the connection; held so it is not garbage-collected."""

    @property
    def open(self) -> bool:
        """False once the outbox overflowed, was closed or stopped, or its connection closed."""
        return self._open

    def push(self, text: str) -> None:
        """Queue one message for the writer.  O(1); never blocks.

        Ignored once the outbox is no longer :attr:`open`.  When ``limit``
        messages already wait, the queue and ``text`` are dropped,
        ``on_overflow`` is told how many, and the connection is closed with
        1008 and the outbox's reason.
        """
        if not self._open:
            return
        queue = self._queue
        if len(queue) >= self._limit:
            if self._on_overflow is not None:
                self._on_overflow(len(queue) + 1)
            self.close(OVERFLOW_CLOSE_CODE, self._reason)
            return
        queue.append(text)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """Stop sending, drop the queue and close the connection with ``code`` and ``reason``.

        O(queued).  The close runs in a task of its own, so this never blocks;
        a no-op once the outbox is no longer :attr:`open`.
        """
        if not self._open:
            return
        self.stop()
        self._closing = asyncio.get_running_loop().create_task(self.conn.close(code, reason))

    def stop(self) -> None:
        """Stop sending and drop the queue, leaving the connection as it is.  O(queued).

        For a connection that is closed already (or being closed by its owner);
        the writer task returns.
        """
        self._open = False
        self._queue.clear()
        self._wake.set()

    async def run(self) -> None:
        """The writer task: send queued messages in order until the outbox stops.

        Returns once the outbox is no longer :attr:`open`; a closed connection
        stops the outbox instead of raising.  Cancelling it is safe.
        """
        queue, send, wake, on_sent = self._queue, self.conn.send, self._wake, self._on_sent
        try:
            while self._open:
                await wake.wait()
                wake.clear()
                while queue:
                    await send(queue.popleft())
                    if on_sent is not None:
                        on_sent()
        except ConnectionClosed:
            self.stop()
