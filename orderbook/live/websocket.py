"""The WebSocket transport seam: what a :class:`~orderbook.live.connection.StreamConnection` needs
from a WebSocket client library, and the two implementations shipped.

Like httpx's transports, the interface is small, so that a client library is
a class of a few methods and everything above it (reconnects, backoff,
keep-alive, subscriptions) is written once::

    transport = resolve_transport("aiohttp")          # or "websockets", or an instance
    session = await transport.connect(url, open_timeout=10, close_timeout=0.25,
                                      max_message=2**24, max_queue=4096)
    await session.send('{"method":"SUBSCRIBE","params":["depth.SOL_USDC"]}')
    frames = await session.read_batch()                 # every complete message read so far
    pong = await session.ping(); await pong             # our own keep-alive
    await session.close(1001, "going away")

Promises every implementation keeps (``tests/live/test_transport_seam.py``
checks them over real sockets for each):

* :meth:`WebSocketTransport.connect` opens within ``open_timeout`` seconds or
  raises :class:`~orderbook.errors.ConnectFailed` naming the URL and the
  cause (refused, timed out, handshake refused); a URL no WebSocket can have
  is a :class:`~orderbook.errors.UsageError`.
* :meth:`WebSocketSession.read_batch` returns every complete message
  available, in order, at least one (a text message as ``str``, a binary one
  as ``bytes``): the messages of one socket read, or of several when the
  caller came back late.  Server pings are answered; a message over
  ``max_message`` bytes closes the connection with 1009.  When the
  connection is over it raises :class:`~orderbook.errors.WebSocketClosed`
  with the close codes -- after every message received before the close was
  returned.
* Read buffers are bounded: past ``max_queue`` unread messages (plus at most
  one socket read), the session stops reading from the socket until the
  caller catches up (TCP flow control then slows the server).
* :meth:`WebSocketSession.close` sends ``code`` (1000 by default; 1001 when
  shutting down), waits at most ``close_timeout`` seconds for the server's
  close frame and TCP close, then drops the connection; messages not read
  yet are dropped and :meth:`~WebSocketSession.read_batch` raises from then
  on.  Idempotent.
* No keep-alive of the library's own: :meth:`WebSocketSession.ping` sends a
  ping and returns an awaitable done when its pong arrives; the connection
  decides what an unanswered ping means (it closes with 1011).

Which transport :func:`resolve_transport` picks for ``None``: the
``ORDERBOOK_TRANSPORT`` environment variable if set (``websockets`` or
``aiohttp``), else :data:`DEFAULT_TRANSPORT`.  Figures: ``benchmarks/LIVE.md``.
"""

from __future__ import annotations

import asyncio

import os
from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from ..errors import UsageError

__all__ = [
    "settle_pongs",
    "DEFAULT_TRANSPORT",
    "TRANSPORTS",
    "TRANSPORT_ENV",
    "TransportChoice",
    "WebSocketSession",
    "WebSocketTransport",
    "describe_close",
    "resolve_transport",
]

TRANSPORTS = ("websockets", "aiohttp")
"""The names :func:`resolve_transport` accepts."""
DEFAULT_TRANSPORT = "websockets"
"""The transport used when neither the caller nor :data:`TRANSPORT_ENV` names one."""
TRANSPORT_ENV = "ORDERBOOK_TRANSPORT"
"""Environment variable naming the default transport (one of :data:`TRANSPORTS`)."""


class WebSocketSession(Protocol):
    """One open WebSocket connection (see the module docstring for the promises)."""

    @property
    def url(self) -> str:
        """The URL this session was opened to (error messages name it)."""
        ...

    async def send(self, text: str) -> None:
        """Send one text message."""
        ...

    async def read_batch(self) -> list[str | bytes]:
        """Every complete message available (at least one, waiting for it);
        raises :class:`~orderbook.errors.WebSocketClosed` once the
        connection is over and every earlier message was returned."""
        ...

    async def ping(self) -> Awaitable[None]:
        """Send a ping; the result is done when its pong arrives (never done
        if none does: the caller bounds the wait)."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``, bounded by the session's close timeout.  Idempotent."""
        ...


@runtime_checkable
class WebSocketTransport(Protocol):
    """A way to open :class:`WebSocketSession` objects (one per connection).

    ``name`` identifies it in logs and stats (``"websockets"``, ``"aiohttp"``).
    """

    name: str

    async def connect(self, url: str, *, open_timeout: float, close_timeout: float,
                      max_message: int, max_queue: int) -> WebSocketSession:
        """Open a session to ``url`` (see the module docstring for the promises)."""
        ...


TransportChoice = str | WebSocketTransport | None
"""What callers may pass as ``transport=``: a name of :data:`TRANSPORTS`, an
instance, or ``None`` for the default."""


def settle_pongs(pending: dict[bytes, asyncio.Future[None]], payload: bytes) -> None:
    """A pong for ``payload`` arrived: it answers that ping and every earlier
    one still waiting (the peer answered in order, so those were answered
    too); an unsolicited or unknown payload is ignored.  ``pending`` is in sending order.
    O(pings answered)."""
    if payload not in pending:
        return
    for key in list(pending):
        future = pending.pop(key)
        if not future.done():
            future.set_result(None)
        if key == payload:
            break


def resolve_transport(choice: TransportChoice) -> WebSocketTransport:
    """The transport ``choice`` names (see :data:`TransportChoice`).

    ``None`` reads :data:`TRANSPORT_ENV`, then falls back to
    :data:`DEFAULT_TRANSPORT`.  Raises :class:`~orderbook.errors.UsageError`
    naming the value (and the variable, when it came from there) for anything
    else.  The implementation module is imported on first use only.
    """
    source = ""
    if choice is None:
        env = os.environ.get(TRANSPORT_ENV, "").strip()
        choice, source = (env, f" (from ${TRANSPORT_ENV})") if env else (DEFAULT_TRANSPORT, "")
    if isinstance(choice, str):
        if choice == "websockets":
            from .ws_websockets import WebsocketsTransport
            return WebsocketsTransport()
        if choice == "aiohttp":
            from .ws_aiohttp import AiohttpTransport
            return AiohttpTransport()
        raise UsageError(f"unknown transport {choice!r}{source}: expected one of "
                         f"{', '.join(map(repr, TRANSPORTS))} or a WebSocketTransport")
    if isinstance(choice, WebSocketTransport) and callable(getattr(choice, "connect", None)):
        return choice
    raise UsageError(f"transport must be one of {', '.join(map(repr, TRANSPORTS))} or a "
                     f"WebSocketTransport (with name and connect()), got {choice!r}")


_CLOSE_MEANINGS = {
    1000: "OK", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
    1005: "no status code", 1006: "connection closed abnormally", 1007: "invalid data",
    1008: "policy violation", 1009: "message too big", 1010: "mandatory extension",
    1011: "internal error", 1012: "service restart", 1013: "try again later",
    1014: "bad gateway", 1015: "TLS failure",
}


def _close_text(code: int, reason: str) -> str:
    meaning = _CLOSE_MEANINGS.get(code)
    if meaning is None:
        meaning = ("registered" if 3000 <= code < 4000 else
                   "private use" if 4000 <= code < 5000 else "unknown")
    return f"{code} ({meaning}) {reason}".rstrip()


def describe_close(received: tuple[int, str] | None, sent: tuple[int, str] | None,
                   received_first: bool | None = None) -> str:
    """The closing of a connection in words, the same for every transport:
    ``received 1001 (going away) bye; then sent 1001 (going away) bye``,
    ``sent 1009 (message too big); no close frame received``, ``no close
    frame received or sent``...  ``received`` / ``sent`` are (code, reason)
    of the close frames, ``received_first`` their order when both exist."""
    if received is None:
        if sent is None:
            return "no close frame received or sent"
        return f"sent {_close_text(*sent)}; no close frame received"
    if sent is None:
        return f"received {_close_text(*received)}; no close frame sent"
    if received_first is False:
        return f"sent {_close_text(*sent)}; then received {_close_text(*received)}"
    return f"received {_close_text(*received)}; then sent {_close_text(*sent)}"
