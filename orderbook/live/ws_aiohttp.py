"""The ``aiohttp`` WebSocket transport (``transport="aiohttp"``): ``ClientSession.ws_connect``.

aiohttp parses frames in C (its Cython ``WebSocketReader``) straight into
its message queue from ``data_received``; :meth:`AiohttpSession.read_batch`
takes the first message with ``receive()`` and then every message already
queued, without waiting again.  aiohttp's own keep-alive (``heartbeat``) and
automatic pings are off: server pings are answered here, pongs resolve our
own pings, and the connection decides what a missing pong means, as with the
other transport.

Bounded buffers: aiohttp stops reading from the socket when its queue holds
more than 128 KiB of unread messages (its fixed high-water mark; ``max_queue``
is not used), and resumes when drained.  A message over ``max_message``
bytes closes the connection with 1009.

Costs: O(bytes) per read; one ``receive()`` call (no suspension after the
first) and one ``WSMessage`` per message.  One ``aiohttp.ClientSession`` per
connection, closed with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import aiohttp
from aiohttp import WSMsgType

from ..errors import ConnectFailed, WebSocketClosed
from .urls import parse_ws_url
from .websocket import describe_close, settle_pongs

__all__ = ["AiohttpSession", "AiohttpTransport"]

_TEXT, _BINARY, _PING, _PONG = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG
_CLOSE, _CLOSING, _ERROR = WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR


class AiohttpTransport:
    """Opens :class:`AiohttpSession` objects (``transport="aiohttp"``)."""

    name = "aiohttp"

    async def connect(self, url: str, *, open_timeout: float, close_timeout: float,
                      max_message: int, max_queue: int) -> AiohttpSession:
        """Opening handshake within ``open_timeout`` seconds, else
        :class:`ConnectFailed` naming ``url`` and the cause."""
        parse_ws_url(url)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        try:
            async with asyncio.timeout(open_timeout):
                ws = await http.ws_connect(
                    url, autoclose=True, autoping=False, heartbeat=None, compress=0,
                    max_msg_size=max_message,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout),
                )
        except BaseException as exc:
            await http.close()
            if isinstance(exc, TimeoutError):
                raise ConnectFailed(url, f"TimeoutError: no opening handshake within "
                                         f"{open_timeout:g} s") from exc
            if isinstance(exc, aiohttp.ClientConnectorError):
                cause = exc.os_error
                raise ConnectFailed(url, f"{type(cause).__name__}: {cause}") from exc
            if isinstance(exc, aiohttp.WSServerHandshakeError):
                raise ConnectFailed(url, f"handshake refused: HTTP {exc.status} "
                                         f"{exc.message}") from exc
            if isinstance(exc, (aiohttp.ClientError, OSError)):
                raise ConnectFailed(url, f"{type(exc).__name__}: {exc}") from exc
            raise
        return AiohttpSession(url, http, ws)


class AiohttpSession:
    """One connection (a :class:`~orderbook.live.websocket.WebSocketSession`)."""

    def __init__(self, url: str, http: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self._url = url
        self._http = http
        self._ws = ws
        self._queued = getattr(getattr(ws, "_reader", None), "_buffer", ())
        """aiohttp's queue of parsed messages (read only to know whether
        ``receive()`` would return at once; an empty tuple: batches of one)."""
        self._loop = asyncio.get_running_loop()
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._ping_count = 0
        self._received: tuple[int, str] | None = None
        self._sent: tuple[int, str] | None = None
        self._received_first: bool | None = None
        self._error = ""
        self._closing: asyncio.Future[None] | None = None
        self._over = False

    @property
    def url(self) -> str:
        """The URL this session was opened to."""
        return self._url

    async def read_batch(self) -> list[str | bytes]:
        """Every complete message queued (at least one, waiting for the first)."""
        ws, queued = self._ws, self._queued
        out: list[str | bytes] = []
        while True:
            if self._over:
                if out:
                    return out
                raise self._closed()
            msg = await ws.receive()
            kind = msg.type
            if kind is _TEXT or kind is _BINARY:
                out.append(msg.data)
            elif kind is _PING:
                await self._send_control(ws.pong(msg.data))
            elif kind is _PONG:
                self._pong(msg.data)
            else:
                await self._ended(kind, msg.data, msg.extra)
            if out and not queued:
                return out

    async def send(self, text: str) -> None:
        """Send one text message (not if the server's close frame is already
        in: :class:`WebSocketClosed` then, as the other transport does)."""
        self._check_open()
        await self._send_control(self._ws.send_str(text))

    async def ping(self) -> Awaitable[None]:
        """Send a ping; the future is done at its pong (or a later one's)."""
        self._check_open()
        self._ping_count += 1
        payload = self._ping_count.to_bytes(8, "big")
        future = self._loop.create_future()
        self._pongs[payload] = future
        await self._send_control(self._ws.ping(payload))
        return future

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` (aiohttp waits at most the close timeout for
        the server's close frame), then release the HTTP session.  Idempotent."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = self._loop.create_future()
        try:
            if not self._ws.closed:
                if self._sent is None:
                    self._sent = (code, reason)
                    self._received_first = False if self._received is None else True
                await self._ws.close(code=code, message=reason.encode())
                if self._received is None and self._ws.close_code not in (None, 1006, code):
                    self._received = (self._ws.close_code, "")
        finally:
            self._over = True
            await self._http.close()
            self._closing.set_result(None)

    # --------------------------------------------------------------- internals
    def _check_open(self) -> None:
        """Raise :class:`WebSocketClosed` if the session is over or the
        server's close frame waits in the queue (read or not).  O(queued)."""
        if not self._over and not self._ws.closed:
            for msg, _size in self._queued:
                if msg.type is _CLOSE:
                    received = (msg.data, msg.extra or "")
                    raise WebSocketClosed(self._url, msg.data, msg.extra or "", None,
                                          describe_close(received, None))
            return
        raise self._closed()

    async def _send_control(self, sending: Awaitable[None]) -> None:
        try:
            await sending
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            self._error = self._error or f"{type(exc).__name__}: {exc}"
            self._over = True
            await self.close()
            raise self._closed() from exc

    async def _ended(self, kind: WSMsgType, data: object, extra: object) -> None:
        """A message saying the connection is over (or closing): record why, finish closing."""
        if kind is _CLOSE:
            code = data if isinstance(data, int) else 1005
            self._received = (code, extra if isinstance(extra, str) else "")
            if self._sent is None:  # aiohttp answered it (autoclose) with 1000
                self._sent, self._received_first = (1000, ""), True
        elif kind is _ERROR:
            if self._ws.close_code is not None and self._sent is None:
                self._sent = (self._ws.close_code, "")  # aiohttp failed the connection
            self._error = f"{type(data).__name__}: {data}"
        if kind is not _CLOSING:
            self._over = True
        await self.close()  # our close() in progress (CLOSING) or releasing what is left

    def _pong(self, payload: bytes) -> None:
        settle_pongs(self._pongs, payload)

    def _closed(self) -> WebSocketClosed:
        received, sent = self._received, self._sent
        detail = describe_close(received, sent, self._received_first)
        if self._error:
            detail = f"{detail}: {self._error}"
        return WebSocketClosed(self._url, received[0] if received else 1006,
                               received[1] if received else "", sent[0] if sent else None, detail)
