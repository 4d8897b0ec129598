"""One WebSocket connection for every stream, kept open forever, on any transport.

:class:`StreamConnection` opens a session with its
:class:`~orderbook.live.websocket.WebSocketTransport` (``websockets`` by
default, ``aiohttp`` on request, see :func:`~orderbook.live.websocket.resolve_transport`),
subscribes every stream in batches, pings the server itself (our keep-alive:
a pong missing ``ping_timeout`` seconds after a ping closes the connection
with 1011), and reconnects with exponential backoff and jitter after any
close or error.  It hands what happens to a :class:`StreamHandler`:
``on_connected``, ``on_subscribed(batch)``, ``on_frames(frames,
received_us)`` for each batch of messages (every message of one socket read,
in receive order, with one wall-clock timestamp), ``on_disconnected(reason)``.

Failures speak: a URL that cannot be a WebSocket URL is a
:class:`~orderbook.errors.UsageError` at once; a connection that has never
opened gives up after ``give_up_after`` seconds with a
:class:`~orderbook.errors.VenueUnavailable` naming the URL and the last
cause; once it has opened, it is retried forever, each failure logged with
the URL and kept in ``last_error`` (``connect failed: ...`` or ``connection
closed: ...`` with the close codes).  Cancelling :meth:`StreamConnection.run`
closes with 1001 (going away), bounded by ``close_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import orjson

from ..errors import ConnectFailed, UsageError, VenueUnavailable, WebSocketClosed
from ..sync.policy import Backoff
from .urls import check_ws_url
from .websocket import TransportChoice, WebSocketSession, resolve_transport

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_WS_URL",
    "StreamConnection",
    "StreamHandler",
]

DEFAULT_WS_URL = "wss://ws.backpack.exchange"
DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds a WebSocket that has never connected keeps trying before giving up."""
DEFAULT_MAX_MESSAGE = 2**24
"""Largest message accepted (bytes); a bigger one closes the connection with 1009."""

log = logging.getLogger("orderbook.transport")


class StreamHandler(Protocol):
    """What a :class:`StreamConnection` reports to.  Called from the event loop;
    every method must return quickly (it runs on the receive path)."""

    def on_connected(self) -> None:
        """A connection is open; subscriptions follow."""

    def on_subscribed(self, streams: Sequence[str]) -> None:
        """A SUBSCRIBE for ``streams`` was sent on the current connection."""

    def on_frames(self, frames: Sequence[str | bytes], received_us: int) -> None:
        """Messages in receive order (at least one): every message of one
        socket read, with the local wall clock (µs) at which they were read."""

    def on_disconnected(self, reason: str) -> None:
        """The connection closed or failed; a reconnect follows after a backoff."""


class StreamConnection:
    """One WebSocket connection carrying every stream, reconnected forever.

    ``streams`` are subscribed in batches of ``batch_size`` names per
    SUBSCRIBE message after every (re)connect.  Reconnects wait
    ``backoff.delay(n)`` for the n-th consecutive failure; a connection that
    stayed up ``stable_after`` seconds resets the count.  ``ping_interval`` /
    ``ping_timeout`` are our own keep-alive pings (``None``: none; the
    server's pings are answered regardless).  ``max_message`` bounds a
    message, ``max_queue`` the messages read ahead of the handler.
    ``transport`` is ``"websockets"``, ``"aiohttp"``, a
    :class:`~orderbook.live.websocket.WebSocketTransport` or ``None`` (the
    default, see :func:`~orderbook.live.websocket.resolve_transport`); an
    unknown one is a :class:`UsageError`.  Run it with :meth:`run` (until
    cancelled): cancelling it closes the connection with 1001 (going away),
    waiting at most ``close_timeout`` seconds for the server's answer.

    Until a first connection opens, attempts stop after ``give_up_after``
    seconds (``None``: never): :meth:`run` then raises
    :class:`~orderbook.errors.VenueUnavailable` naming the URL and the last
    cause, each attempt being cut short so that the whole stays within that
    time.  A URL that is not a WebSocket URL raises
    :class:`~orderbook.errors.UsageError` from :meth:`run` at once (and from
    the constructor).  Once connected, it reconnects forever.
    """

    def __init__(
        self,
        url: str,
        streams: Sequence[str],
        handler: StreamHandler,
        *,
        batch_size: int = 50,
        backoff: Backoff = Backoff(initial=0.1, maximum=10.0),
        stable_after: float = 2.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        open_timeout: float = 10.0,
        close_timeout: float = 0.25,
        max_queue: int = 4096,
        max_message: int = DEFAULT_MAX_MESSAGE,
        rng: Callable[[], float] = random.random,
        give_up_after: float | None = DEFAULT_CONNECT_TIMEOUT,
        transport: TransportChoice = None,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if give_up_after is not None and not give_up_after > 0:
            raise UsageError(f"give_up_after must be > 0 seconds or None, got {give_up_after}")
        if ping_interval is not None and not ping_interval > 0:
            raise UsageError(f"ping_interval must be > 0 seconds or None, got {ping_interval}")
        if max_message < 1 or max_queue < 1:
            raise UsageError(f"max_message and max_queue must be >= 1, got {max_message}, {max_queue}")
        self.url = check_ws_url(url)
        self.streams = list(streams)
        self.transport = resolve_transport(transport)
        """The :class:`~orderbook.live.websocket.WebSocketTransport` in use."""
        self._handler = handler
        self._batch_size = batch_size
        self._backoff = backoff
        self._stable_after = stable_after
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._max_queue = max_queue
        self._max_message = max_message
        self._rng = rng
        self._give_up_after = give_up_after
        self._session: WebSocketSession | None = None
        self.connects = 0
        """Connections opened so far (the first one included)."""
        self.failures = 0
        """Connection attempts that failed or connections that dropped."""
        self.last_error: str | None = None
        """Why the last connection attempt failed or the last connection ended
        (``None`` before any failure)."""

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._session is not None

    async def run(self) -> None:
        """Connect, subscribe, read; after any close or error back off and
        reconnect.  Returns only by cancellation (which closes the socket).

        Raises :class:`VenueUnavailable` when no connection ever opened within
        ``give_up_after`` seconds, :class:`UsageError` for a URL that no
        WebSocket can have.
        """
        check_ws_url(self.url)
        started = time.monotonic()
        deadline = None if self._give_up_after is None else started + self._give_up_after
        attempt = 0
        while True:
            opened = time.monotonic()
            open_timeout = self._open_timeout
            if deadline is not None and not self.connects:
                open_timeout = max(0.05, min(open_timeout, deadline - opened))
            reason = await self._session_life(open_timeout)
            self.failures += 1
            self.last_error = reason
            now = time.monotonic()
            if now - opened >= self._stable_after:
                attempt = 0
            delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            if deadline is not None and not self.connects:
                if now >= deadline:
                    raise VenueUnavailable(
                        f"could not connect to {self.url} within {self._give_up_after:g} s "
                        f"({self.failures} attempts); last: {reason}")
                delay = min(delay, deadline - now)
            log.warning("stream %s: %s; reconnecting in %.2f s", self.url, reason, delay)
            await asyncio.sleep(delay)

    async def _session_life(self, open_timeout: float) -> str:
        """One connection's life (opening within ``open_timeout`` seconds);
        returns why it ended."""
        try:
            session = await self.transport.connect(
                self.url, open_timeout=open_timeout, close_timeout=self._close_timeout,
                max_message=self._max_message, max_queue=self._max_queue)
        except ConnectFailed as exc:
            return f"connect failed: {exc.detail}"
        self._session = session
        self.connects += 1
        log.debug("stream %s: connected with %s", self.url, self.transport.name)
        handler = self._handler
        reason = "connection abandoned while open"
        keepalive: asyncio.Task[None] | None = None
        try:
            handler.on_connected()
            if self._ping_interval is not None:
                keepalive = asyncio.create_task(self._keepalive(session),
                                                name="orderbook-keepalive")
            await self._subscribe_all(session)
            read, on_frames, clock = session.read_batch, handler.on_frames, time.time_ns
            while True:
                frames = await read()
                on_frames(frames, clock() // 1000)
        except WebSocketClosed as exc:
            reason = f"connection closed: {exc.detail}"
            return reason
        except asyncio.CancelledError:
            reason = "connection closed: client shutting down (1001)"
            await session.close(1001, "client shutting down")
            raise
        finally:
            if keepalive is not None:
                keepalive.cancel()
            self._session = None
            await _quietly(session.close())
            handler.on_disconnected(reason)

    async def _keepalive(self, session: WebSocketSession) -> None:
        """Ping every ``ping_interval`` seconds; a pong later than
        ``ping_timeout`` closes the session with 1011 (the reader then sees
        the close and the connection is retried)."""
        assert self._ping_interval is not None
        try:
            while True:
                await asyncio.sleep(self._ping_interval)
                pong = await session.ping()
                if self._ping_timeout is None:
                    continue
                try:
                    async with asyncio.timeout(self._ping_timeout):
                        await pong
                except TimeoutError:
                    log.warning("stream %s: no pong within %g s; closing", self.url,
                                self._ping_timeout)
                    await session.close(1011, "keepalive ping timeout")
                    return
        except WebSocketClosed:
            return  # the reader reports it

    async def _subscribe_all(self, session: WebSocketSession) -> None:
        size = self._batch_size
        for start in range(0, len(self.streams), size):
            batch = self.streams[start : start + size]
            await session.send(orjson.dumps({"method": "SUBSCRIBE", "params": batch}).decode())
            self._handler.on_subscribed(batch)

    async def close(self) -> None:
        """Close the current connection, if any (``run`` will reconnect unless cancelled)."""
        if self._session is not None:
            await self._session.close()


async def _quietly(closing: Awaitable[None]) -> None:
    """Await a session's final (idempotent) close; a close that fails changes nothing."""
    try:
        await closing
    except (WebSocketClosed, OSError):
        pass
