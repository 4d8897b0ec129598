"""The NATS client protocol as the publishing sink speaks it, over an asyncio
protocol: :class:`NatsConnection` (no client library; the reader uses nats-py)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import orjson

from .._version import __version__
from ..errors import MalformedMessage
from .messages import Message, MessageKind
from .naming import delta_subject, snapshot_subject
from .publisher import BrokerConnection

__all__ = ["NatsConnection"]


_MAX_LINE = 64 * 1024
"""Bytes a line from the server may hold before its ``CRLF`` (``INFO`` is the
longest: a few KiB); beyond, the connection is failed, so a broken or hostile
server cannot grow the buffer without bound."""

_DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""nats-server's default ``max_payload``, if its ``INFO`` does not say."""


class NatsConnection(BrokerConnection, asyncio.Protocol):
    """The sink's one connection: the NATS client protocol spoken over an
    asyncio protocol.

    Publishing needs ``CONNECT``, ``PUB`` and a ``PONG`` for the server's
    ``PING``; answering snapshot requests needs ``SUB`` and the server's
    ``MSG``.  A batch goes to the socket as one buffer of ``PUB`` commands
    (:meth:`send` never awaits; NATS core acknowledges nothing, so a batch
    counts as published once the socket has it).  nats-py's ``publish`` costs
    a coroutine, a subject check and a wake of its flusher task per message;
    here a batch is one write, and the sink needs no client library (side by
    side, the replica's CPU per frame moved less than the benchmark's spread:
    benchmarks/SINKS.md).  The reader (:class:`~orderbook.sinks.nats.NatsBook`) keeps nats-py.  A snapshot request is
    answered at once from ``answer(symbol)`` (:meth:`~orderbook.sinks.nats.NatsSink._reply`).

    Backpressure: once the transport holds more than its high-water mark
    unsent (a slow server) :meth:`ready` is False and the messages wait in
    the core; unsent for ``timeout`` seconds fails the connection.  So that a
    server that stopped reading is found before the socket buffers fill,
    :meth:`ready` also sends a ``PING`` every ``timeout / 2`` seconds: one
    unanswered for ``timeout`` seconds fails the connection too.  Memory
    per connection is bounded: a line by :data:`_MAX_LINE`, a request by the
    server's ``max_payload``.  Opened by :meth:`open`: TCP, TLS when the URL
    says ``tls://`` or the server requires it, ``CONNECT`` with the URL's
    credentials (``user:password@`` or ``token@``), ``SUB`` per symbol, then a
    ``PING`` whose ``PONG`` confirms the server took it all.
    """

    def __init__(self, lost: Callable[[BrokerConnection, BaseException], None],
                 acknowledged: Callable[[int, int], None], answer: Callable[[str], bytes],
                 prefix: str, timeout: float) -> None:
        self._lost = lost
        self._acknowledged = acknowledged
        self._answer = answer
        self._prefix = prefix
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._message: tuple[str | None, bytes, int] | None = None
        """The ``MSG`` whose payload is still to come: symbol, reply subject, size."""
        self._subjects: dict[str, bytes] = {}
        self._sids: dict[bytes, str] = {}
        self._max_payload = _DEFAULT_MAX_PAYLOAD
        self._paused_at: float | None = None
        self._ping_at: float | None = None
        """When the unanswered ``PING`` was sent (``None``: none is)."""
        self._pong_at = 0.0
        self._failure: BaseException | None = None
        """Why the connection failed (the first reason)."""
        self._info: asyncio.Future[dict[str, Any]] | None = None
        self._pong: asyncio.Future[None] | None = None

    async def open(self, url: str, symbols: Iterable[str]) -> None:
        """Connect to ``url``, subscribe to the snapshot subjects of
        ``symbols``, and return once the server confirmed (raises on failure,
        an ``-ERR`` such as a refused login included)."""
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        host = parts.hostname or "localhost"  # _check_url refused a URL without one
        self._info = loop.create_future()
        await loop.create_connection(lambda: self, host, parts.port or 4222)
        info = await self._info
        max_payload = info.get("max_payload")
        if isinstance(max_payload, int) and max_payload > 0:
            self._max_payload = max_payload
        tls = parts.scheme == "tls" or bool(info.get("tls_required"))
        if tls:
            assert self._transport is not None
            upgraded = await loop.start_tls(self._transport, self, ssl.create_default_context(),
                                            server_hostname=host)
            if upgraded is None:
                raise ConnectionError("the NATS connection closed during the TLS handshake")
            self._transport = upgraded
        hello: dict[str, Any] = {"verbose": False, "pedantic": False, "tls_required": tls,
                                 "name": "orderbook", "lang": "python", "version": __version__,
                                 "protocol": 1}
        if parts.password is not None:
            hello.update(user=unquote(parts.username or ""), **{"pass": unquote(parts.password)})
        elif parts.username:
            hello["auth_token"] = unquote(parts.username)
        commands = [b"CONNECT " + orjson.dumps(hello) + b"\r\n"]
        for sid, symbol in enumerate(symbols, 1):
            token = str(sid).encode()
            self._sids[token] = symbol
            commands.append(b"SUB %s %s\r\n" % (snapshot_subject(symbol, self._prefix).encode(), token))
        commands.append(b"PING\r\n")
        self._write(b"".join(commands))
        self._pong = loop.create_future()
        await self._pong

    def _write(self, data: bytes) -> None:
        if self._failure is not None:
            raise ConnectionError(f"the NATS connection failed: {self._failure}")
        if self.lost or self._transport is None:
            raise ConnectionError("the NATS connection is closed")
        self._transport.write(data)

    def _subject(self, symbol: str) -> bytes:
        subject = self._subjects.get(symbol)
        if subject is None:
            subject = self._subjects[symbol] = delta_subject(symbol, self._prefix).encode()
        return subject

    # ---------------------------------------------------- BrokerConnection
    def ready(self) -> bool:
        now, timeout = time.monotonic(), self._timeout
        paused_at, ping_at = self._paused_at, self._ping_at
        if paused_at is not None and now - paused_at > timeout:
            self._fail(TimeoutError(f"NATS has taken nothing for {timeout:g} s"))
        elif ping_at is not None:
            if now - ping_at > timeout:
                self._fail(TimeoutError(f"NATS has not answered a PING for {timeout:g} s"))
        elif now - self._pong_at > timeout / 2 and not self.lost:
            self._ping_at = now
            self._write(b"PING\r\n")
        return not self.lost and paused_at is None

    def send(self, batch: list[Message]) -> None:
        parts: list[bytes] = []
        snapshots = 0
        for message in batch:
            payload = message.json()
            if len(payload) > self._max_payload:
                raise ConnectionError(f"a {message.kind} message of {message.symbol} is "
                                      f"{len(payload)} bytes, over the server's max_payload "
                                      f"({self._max_payload})")
            parts += (b"PUB ", self._subject(message.symbol), b" %d\r\n" % len(payload), payload,
                      b"\r\n")
            snapshots += message.kind is MessageKind.SNAPSHOT
        self._write(b"".join(parts))
        self._acknowledged(len(batch), snapshots)

    async def close(self) -> None:
        transport = self._transport
        self.lost = True
        if transport is not None and not transport.is_closing():
            transport.close()  # what is buffered still goes out

    # ------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            while not self.lost:
                if self._message is not None:
                    symbol, reply, size = self._message
                    if len(buffer) < size + 2:
                        return
                    if buffer[size:size + 2] != b"\r\n":
                        raise MalformedMessage("a NATS message not ended by CRLF")
                    del buffer[:size + 2]
                    self._message = None
                    if symbol is not None and reply:
                        self._write(b"PUB %s %d\r\n%s\r\n" % (reply, len(body := self._answer(symbol)),
                                                                body))
                    continue
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > _MAX_LINE:
                        raise MalformedMessage(f"a line from NATS longer than {_MAX_LINE} bytes")
                    return
                line = bytes(buffer[:end])
                del buffer[:end + 2]
                self._line(line)
        except Exception as exc:  # a protocol error or a bad answer: this connection is done
            self._fail(exc)

    def _line(self, line: bytes) -> None:
        """One line of the server's protocol (``MSG``'s payload follows it)."""
        verb, _, rest = line.partition(b" ")
        verb = verb.upper()
        if verb == b"MSG":  # MSG <subject> <sid> [reply] <size>
            fields = rest.split()
            if len(fields) not in (3, 4) or not fields[-1].isdigit():
                raise MalformedMessage(f"a malformed MSG from NATS: {line[:200]!r}")
            size = int(fields[-1])
            if size > self._max_payload:
                raise MalformedMessage(f"a MSG of {size} bytes from NATS, over max_payload")
            self._message = (self._sids.get(fields[1]), fields[2] if len(fields) == 4 else b"", size)
        elif verb == b"PING":
            self._write(b"PONG\r\n")
        elif verb == b"PONG":
            self._ping_at, self._pong_at = None, time.monotonic()
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
        elif verb == b"INFO":
            if self._info is not None and not self._info.done():
                info = orjson.loads(rest)
                if not isinstance(info, dict):
                    raise MalformedMessage(f"a malformed INFO from NATS: {line[:200]!r}")
                self._info.set_result(info)
        elif verb == b"-ERR":
            raise ConnectionError(f"NATS refused: {rest.decode(errors='replace')[:200]}")
        elif verb != b"+OK":
            raise MalformedMessage(f"unexpected from NATS: {line[:200]!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc if exc is not None else ConnectionError("NATS closed the connection"))

    def pause_writing(self) -> None:
        self._paused_at = time.monotonic()

    def resume_writing(self) -> None:
        self._paused_at = None

    def _fail(self, exc: BaseException) -> None:
        """The connection is unusable: fail whoever waits, close, tell the sink (once)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
        if self._failure is None:
            self._failure = exc
        for waiter in (self._info, self._pong):
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError(f"the NATS connection failed: {exc}"))
        if not self.lost:
            self._lost(self, exc)
        self.lost = True
