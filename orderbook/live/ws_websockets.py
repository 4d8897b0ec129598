"""The default WebSocket transport: ``websockets``' sans-I/O ``ClientProtocol`` on an ``asyncio.Protocol``.

Each socket read (``data_received``, up to 256 KiB) goes through
``ClientProtocol.receive_data``; the frames it yields become messages at once
and the whole lot is one batch for :meth:`WebsocketsSession.read_batch`.  There is no
task per connection, no per-message queue hand-off and no per-message
wake-up: one future per batch.  Whatever the protocol wants written (pongs to
server pings, close replies, our frames) is written right away with
``transport.write(b"".join(data_to_send()))``.

Why not the ``websockets`` asyncio client (``connect``/``recv``)?  It hands
every message through an assembler queue and one ``await recv()`` each, and
costs more CPU per frame on the same socket (``benchmarks/LIVE.md``: read
only, 100 x 2,000 frames).  What this transport does not do, unlike that
client: follow HTTP redirects, go through an HTTP/SOCKS proxy, offer
compression (Backpack needs none of them); a redirect is reported as the
refused handshake it is.

Costs: O(bytes) per read plus one ``Frame`` per message; read buffers hold at
most ``max_queue`` unread messages plus one socket read (reading from the
socket is paused beyond, resumed when the caller takes the batch).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Sequence
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from ..errors import ConnectFailed, WebSocketClosed
from .urls import parse_ws_url
from .websocket import describe_close, settle_pongs

__all__ = ["WebsocketsSession", "WebsocketsTransport"]

_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
_OPEN = State.OPEN


class WebsocketsTransport:
    """Opens :class:`WebsocketsSession` objects (``transport="websockets"``)."""

    name = "websockets"

    async def connect(self, url: str, *, open_timeout: float, close_timeout: float,
                      max_message: int, max_queue: int) -> WebsocketsSession:
        """TCP (TLS for ``wss://``) connection and opening handshake within
        ``open_timeout`` seconds, else :class:`ConnectFailed` naming ``url``."""
        uri = parse_ws_url(url)
        loop = asyncio.get_running_loop()
        session = WebsocketsSession(url, ClientProtocol(uri, max_size=max_message),
                                    max_queue, close_timeout, loop)
        context = ssl.create_default_context() if uri.secure else None
        try:
            async with asyncio.timeout(open_timeout):
                await loop.create_connection(lambda: session, uri.host, uri.port, ssl=context,
                                             server_hostname=uri.host if context else None)
                await session.opened
        except TimeoutError as exc:
            session.abort()
            raise ConnectFailed(url, f"TimeoutError: no opening handshake within "
                                     f"{open_timeout:g} s") from exc
        except (OSError, InvalidHandshake, EOFError) as exc:
            session.abort()
            raise ConnectFailed(url, f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            session.abort()
            raise
        return session


class WebsocketsSession(asyncio.Protocol):
    """One connection: the asyncio protocol and the :class:`~orderbook.live.websocket.WebSocketSession`
    at once.  Everything runs on the event loop thread."""

    def __init__(self, url: str, protocol: ClientProtocol, max_queue: int, close_timeout: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._url = url
        self._proto = protocol
        self._max_queue = max(1, max_queue)
        self._close_timeout = close_timeout
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._messages: list[str | bytes] = []
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._waiter: asyncio.Future[None] | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        """Done when the opening handshake succeeded (or failed, with its error)."""
        self._lost: asyncio.Future[None] = loop.create_future()
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._ping_count = 0
        self._reading_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._closing_by_us = False

    @property
    def url(self) -> str:
        """The URL this session was opened to."""
        return self._url

    # ------------------------------------------------ asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the opening handshake request."""
        self._transport = cast(asyncio.Transport, transport)
        proto = self._proto
        proto.send_request(proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        """One socket read: parse it, answer what must be, collect the messages."""
        proto = self._proto
        proto.receive_data(data)
        if proto.writes:
            self._flush()
        events = proto.events_received()
        frames = cast(list[Frame], events) if self.opened.done() else self._handshake(events)
        messages = self._messages
        count = len(messages)
        for frame in frames:
            opcode = frame.opcode
            if opcode is _TEXT and frame.fin:
                try:
                    messages.append(str(frame.data, "utf-8"))
                except UnicodeDecodeError as exc:
                    self._fail(1007, f"invalid UTF-8 at position {exc.start}")
                    break
            elif opcode is _BINARY and frame.fin:
                messages.append(bytes(frame.data))
            elif opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                if not self._fragment(frame):
                    break
            elif opcode is _PONG:
                self._pong(bytes(frame.data))
            # pings are answered and close frames handled by the protocol itself
        if proto.close_expected():
            self._expect_close()
        if len(messages) > count:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if len(messages) >= self._max_queue and not self._reading_paused:
                self._reading_paused = True
                assert self._transport is not None
                self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        """The server half-closed: let the protocol know (the transport then closes)."""
        self._proto.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone: the session is over."""
        self._proto.receive_eof()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during the "
                                                             "opening handshake"))
        if not self._lost.done():
            self._lost.set_result(None)
        for future in (self._waiter, self._drained):
            if future is not None and not future.done():
                future.set_result(None)

    def pause_writing(self) -> None:
        """The write buffer is over its high-water mark: :meth:`send` waits."""
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        """The write buffer drained."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --------------------------------------------------- WebSocketSession API
    async def read_batch(self) -> list[str | bytes]:
        """Every complete message received and not yet returned (at least one)."""
        while True:
            messages = self._messages
            if messages and not self._closing_by_us:
                self._messages = []
                if self._reading_paused and self._transport is not None:
                    self._reading_paused = False
                    self._transport.resume_reading()
                return messages
            if self._lost.done() or self._closing_by_us:
                raise self._closed()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def send(self, text: str) -> None:
        """Send one text message (waits while the write buffer is full)."""
        if self._proto.state is not _OPEN:
            raise self._closed()
        self._proto.send_text(text.encode())
        self._flush()
        if self._drained is not None and not self._drained.done():
            await self._drained

    async def ping(self) -> Awaitable[None]:
        """Send a ping with a fresh payload; the future is done at its pong
        (or at the pong of a later ping: pongs answer in order)."""
        if self._proto.state is not _OPEN:
            raise self._closed()
        self._ping_count += 1
        payload = self._ping_count.to_bytes(8, "big")
        future = self._loop.create_future()
        self._pongs[payload] = future
        self._proto.send_ping(payload)
        self._flush()
        return future

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (if none was exchanged yet), wait at most the
        close timeout for the server to finish the closing, then drop the
        TCP connection.  Messages not read yet are dropped.  Idempotent."""
        self._messages = []
        self._closing_by_us = True
        if self._proto.state is _OPEN and self._transport is not None:
            self._proto.send_close(code, reason)
            self._flush()
            self._expect_close()
        if self._transport is None or self._lost.done():
            return
        try:
            async with asyncio.timeout(self._close_timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self.abort()
            await asyncio.shield(self._lost)

    def abort(self) -> None:
        """Drop the TCP connection now (no closing handshake)."""
        if self._transport is not None:
            self._transport.abort()

    # --------------------------------------------------------------- internals
    def _handshake(self, events: Sequence[Request | Response | Frame]) -> list[Frame]:
        """Settle :attr:`opened` from the handshake response; the frames that
        followed it in the same read are returned."""
        frames: list[Frame] = []
        for event in events:
            if isinstance(event, (Request, Response)):
                error = self._proto.handshake_exc
                if error is not None:
                    self.opened.set_exception(error)
                else:
                    self.opened.set_result(None)
            elif isinstance(event, Frame):
                frames.append(event)
        return frames

    def _fragment(self, frame: Frame) -> bool:
        """One frame of a fragmented message (the protocol checked the order
        and the total size); False if the assembled text is not UTF-8."""
        if frame.opcode is not _CONT:
            self._fragments = []
            self._fragment_text = frame.opcode is _TEXT
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return True
        data = b"".join(self._fragments)
        self._fragments = []
        if not self._fragment_text:
            self._messages.append(data)
            return True
        try:
            self._messages.append(data.decode())
        except UnicodeDecodeError as exc:
            self._fail(1007, f"invalid UTF-8 at position {exc.start}")
            return False
        return True

    def _pong(self, payload: bytes) -> None:
        settle_pongs(self._pongs, payload)

    def _fail(self, code: int, reason: str) -> None:
        self._proto.fail(code, reason)
        self._flush()
        self._expect_close()

    def _expect_close(self) -> None:
        """The server should close the TCP connection now: give it the close timeout."""
        if self._close_timer is None and not self._lost.done():
            self._close_timer = self._loop.call_later(self._close_timeout, self.abort)

    def _flush(self) -> None:
        transport = self._transport
        writes = self._proto.data_to_send()
        if transport is None or transport.is_closing():
            return
        data = [chunk for chunk in writes if chunk]  # an empty chunk means: send EOF
        if data:
            transport.write(b"".join(data) if len(data) > 1 else data[0])
        if len(data) < len(writes) and transport.can_write_eof():
            transport.write_eof()

    def _closed(self) -> WebSocketClosed:
        """The error :meth:`read_batch` and :meth:`send` raise once the session is over."""
        proto = self._proto
        received = None if proto.close_rcvd is None else (proto.close_rcvd.code,
                                                         proto.close_rcvd.reason)
        sent = None if proto.close_sent is None else (proto.close_sent.code,
                                                     proto.close_sent.reason)
        detail = describe_close(received, sent, proto.close_rcvd_then_sent)
        return WebSocketClosed(self._url, received[0] if received else 1006,
                               received[1] if received else "", sent[0] if sent else None, detail)
