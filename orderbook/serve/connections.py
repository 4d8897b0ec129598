"""Every TCP connection of the mirror, counted, watched and abortable.

aiohttp creates one protocol object per connection; :class:`ConnectionTracker`
wraps that factory so that the mirror

* refuses connections beyond ``max_connections`` (a short 503, then close),
  before any per-connection memory is spent;
* aborts a connection whose socket stays unwritable (the peer stopped
  reading) for ``stall_timeout`` seconds: asyncio pauses writing above its
  high-water mark, and a pause that lasts that long ends the connection, so
  a frozen client holds neither memory nor a file descriptor for ever;
* can abort whatever is still open at the end of a shutdown (a plain
  ``close()`` would wait for unread data to drain, which a frozen peer never
  lets happen).

Costs: O(1) per connection event; one extra method call per received chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import orjson

__all__ = ["ConnectionTracker"]

_BUSY = orjson.dumps({"code": "SERVICE_UNAVAILABLE", "message": "too many connections"})
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: " + str(len(_BUSY)).encode()
                  + b"\r\n\r\n" + _BUSY)


class _Refused(asyncio.Protocol):
    """A connection over the limit: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(_BUSY_RESPONSE)
        transport.close()


class _Tracked(asyncio.Protocol):
    """Passes every event to aiohttp's protocol; keeps the transport and a stall timer."""

    __slots__ = ("_inner", "_tracker", "transport", "_stall")

    def __init__(self, inner: asyncio.Protocol, tracker: ConnectionTracker) -> None:
        self._inner = inner
        self._tracker = tracker
        self.transport: asyncio.Transport | None = None
        self._stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._tracker._live[self] = None
        self._tracker.on_open(self.transport)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._tracker._live.pop(self, None)
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._stall is None:
            loop = asyncio.get_running_loop()
            self._stall = loop.call_later(self._tracker.stall_timeout, self._stalled)
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self._inner.resume_writing()

    def _stalled(self) -> None:
        self._stall = None
        self._tracker.on_stalled()
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # a no-op on a connection already lost


class ConnectionTracker:
    """A protocol factory for ``loop.create_server`` around ``factory`` (aiohttp's).

    ``on_open(transport)`` is called for each accepted connection (e.g. to set
    socket options), ``on_stalled()`` and ``on_refused()`` when one is
    aborted for a stall or refused for the limit.
    """

    def __init__(self, factory: Callable[[], asyncio.Protocol], *, max_connections: int,
                 stall_timeout: float, on_open: Callable[[asyncio.Transport], None],
                 on_stalled: Callable[[], None], on_refused: Callable[[], None]) -> None:
        self._factory = factory
        self.max_connections = max_connections
        self.stall_timeout = stall_timeout
        self.on_open = on_open
        self.on_stalled = on_stalled
        self._on_refused = on_refused
        self._live: dict[_Tracked, None] = {}

    def __call__(self) -> asyncio.Protocol:
        if len(self._live) >= self.max_connections:
            self._on_refused()
            return _Refused()
        return _Tracked(self._factory(), self)

    @property
    def count(self) -> int:
        """Open connections.  O(1)."""
        return len(self._live)

    def abort_all(self) -> None:
        """Abort every connection still open.  O(connections)."""
        for conn in list(self._live):
            conn.abort()
