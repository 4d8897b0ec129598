"""One WebSocket client of the mirror: its outbox, its limits, its receive loop.

Outgoing: every message (frames, replies) goes through the client's
:class:`~orderbook.live.outbox.Outbox`, bounded by ``queue_size`` messages and
``buffer_limit`` bytes counted over the queue AND the transport's write
buffer; a pong is written only if it fits the same bound.  A client that
does not fit is closed with 1008 ``"slow consumer"`` and counted.

Incoming, in one loop (:meth:`WsClient.receive_loop`):

* control frames (ping, pong) take a token of a per-client bucket; a client
  beyond the rate is closed with 1008 ``"too many control frames"``;
* requests are read at most ``request_rate`` per second: a burst waits in
  the socket (TCP backpressure) and is never refused, so a client that
  reads what it is sent is never closed for what it asks;
* error replies take a token of their own bucket and are *optional* pushes:
  beyond the rate, or without room, they are dropped and counted, and never
  make a client a "slow consumer".

Keep-alive: the server calls :meth:`WsClient.keepalive` every
``ping_interval``; it queues a ping (:data:`PING`, through the same bounded
outbox) and drops a client from which nothing at all arrived since the
previous ping.

Closing is bounded: :class:`AiohttpSocket` waits at most ``close_timeout``
for the close handshake (the close frame itself may be stuck behind unread
data), then aborts the TCP connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import WSMsgType, web

from ..live.outbox import OVERFLOW_CLOSE_CODE, Outbox
from ..sync.policy import TokenBucket
from ..protocol.subscribe import ErrorReply
from .limits import MirrorLimits
from .stats import CloseReason, MirrorStats

__all__ = ["PING", "AiohttpSocket", "WsClient"]

PING = b""
"""The outbox message that :class:`AiohttpSocket` sends as a ping control
frame (no text frame is ever empty)."""

log = logging.getLogger("orderbook.serve")


class AiohttpSocket:
    """An aiohttp WebSocket as an outbox :class:`~orderbook.live.outbox.Connection`
    of encoded text frames, with a bounded close."""

    __slots__ = ("ws", "transport", "close_timeout")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport,
                 close_timeout: float) -> None:
        self.ws = ws
        self.transport = transport
        self.close_timeout = close_timeout

    async def send(self, message: bytes, /) -> None:
        """Send ``message`` (UTF-8 JSON) as one text frame, or a ping for
        :data:`PING`; may wait for the socket."""
        await self.ws.send_frame(message, WSMsgType.TEXT if message else WSMsgType.PING)

    async def close(self, code: int, reason: str, /) -> None:
        """The close handshake within ``close_timeout``; past it (the close frame
        stuck behind unread data, or no answer) the connection is aborted."""
        try:
            async with asyncio.timeout(self.close_timeout):
                await self.ws.close(code=code, message=reason.encode()[:123])
        except TimeoutError:
            self.transport.abort()
        except ConnectionError:
            pass


class WsClient:
    """One connected client: outbox, subscribed streams, per-client buckets.

    ``send`` and ``reply`` are O(1) and never block; :meth:`receive_loop`
    runs until the connection ends.  Memory: the outbox bound plus one
    incoming message (``max_message``).
    """

    __slots__ = ("ws", "outbox", "streams", "peer", "last_heard", "_stats", "_limits", "_control",
                 "_requests", "_errors")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport,
                 limits: MirrorLimits, stats: MirrorStats, peer: str) -> None:
        self.ws = ws
        self.peer = peer
        self._stats = stats
        self._limits = limits

        def overflowed(dropped: int) -> None:
            stats.slow_consumers += 1
            stats.messages_dropped += dropped
            log.warning("closing slow consumer %s: send buffer full (%d messages dropped)",
                        peer, dropped)

        def sent() -> None:
            stats.messages_sent += 1

        self.outbox: Outbox[bytes] = Outbox(
            AiohttpSocket(ws, transport, limits.close_timeout), limits.queue_size,
            CloseReason.SLOW_CONSUMER.value, max_bytes=limits.buffer_limit,
            buffered=transport.get_write_buffer_size, on_overflow=overflowed, on_sent=sent)
        self.streams: set[str] = set()
        self.last_heard = asyncio.get_running_loop().time()
        """Loop time of the last frame received from the client (any kind)."""
        self._control = TokenBucket(limits.control_rate, limits.control_burst)
        self._requests = TokenBucket(limits.request_rate, limits.request_burst)
        self._errors = TokenBucket(limits.error_rate, limits.error_burst)

    def send(self, text: bytes) -> None:
        """Queue one stream message (overflow closes the client as slow)."""
        self.outbox.push(text)

    def reply(self, error: ErrorReply) -> None:
        """Queue one error reply if the reply rate and the buffer allow; else drop it."""
        self._stats.subscribe_errors += 1
        if not (self._errors.try_take(time.monotonic()) and self.outbox.push(error.encode(),
                                                                             optional=True)):
            self._stats.error_replies_dropped += 1

    def keepalive(self, now: float, interval: float) -> bool:
        """Queue a ping, unless nothing was heard from the client for two
        ``interval``s (no answer to the previous ping): then close it and
        return False.  O(1)."""
        if now - self.last_heard > 2 * interval:
            log.info("closing %s: no answer to a ping for %.0f s", self.peer, now - self.last_heard)
            self.close(1011, CloseReason.KEEPALIVE_TIMEOUT.value, abort=True)
            return False
        self.outbox.push(PING, optional=True)
        return True

    def close(self, code: int, reason: str, *, abort: bool = False) -> None:
        """Close the client (in the background, bounded by ``close_timeout``);
        with ``abort``, write the close frame and drop the connection at once
        (for a flooding peer: nothing it sends is worth reading any more)."""
        if abort and self.outbox.open:
            socket = self.outbox.conn
            assert isinstance(socket, AiohttpSocket)
            socket.close_timeout = 0.0
        self.outbox.close(code, reason)

    async def run(self, on_message: Callable[[WsClient, str | bytes], None]) -> None:
        """Write the outbox and read the client until the connection ends, then
        finish the close (bounded).  ``on_message`` handles one request."""
        writer = asyncio.create_task(self.outbox.run(), name="orderbook-mirror-writer")
        try:
            await self.receive_loop(on_message)
        except ConnectionError:
            pass
        finally:
            self.outbox.stop()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await self.outbox.wait_closed()

    async def receive_loop(self, on_message: Callable[[WsClient, str | bytes], None]) -> None:
        """Read messages and control frames (see the module docstring) until
        the client closes, fails, or is closed by the mirror."""
        ws, outbox = self.ws, self.outbox
        while outbox.open:
            msg = await ws.receive()
            self.last_heard = asyncio.get_running_loop().time()
            kind = msg.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                wait = self._requests.reserve(time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
                if not outbox.open:
                    return
                on_message(self, msg.data)
            elif kind is WSMsgType.PING or kind is WSMsgType.PONG:
                if not self._control.try_take(time.monotonic()):
                    self._stats.control_floods += 1
                    log.warning("closing %s: control frames beyond %.0f/s", self.peer,
                                self._limits.control_rate)
                    self.close(OVERFLOW_CLOSE_CODE, CloseReason.CONTROL_FLOOD.value, abort=True)
                    return
                if kind is WSMsgType.PING:
                    payload: bytes = msg.data
                    if not outbox.fits(len(payload) + 2):
                        outbox.overflow()
                        return
                    await ws.pong(payload)
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the connection is ending
                return
