"""NATS: :class:`NatsSink` publishes (the client protocol spoken directly),
:func:`nats_book` reads (nats-py, the ``nats`` extra).

Subjects, per symbol (``TOKEN`` is the symbol escaped by
:func:`~orderbook.sinks.naming.subject_token`: ``SPCX.US_USDC`` ->
``SPCX~2EUS_USDC``):

* ``orderbook.{TOKEN}.delta`` carries every message of
  :mod:`orderbook.sinks.messages` as one JSON object: deltas, and the
  snapshot messages made after a resync, a drop or a reconnect (and every
  ``snapshot_interval`` deltas if set; off by default);
* ``orderbook.{TOKEN}.snapshot`` is request/reply: any request is answered
  with a ``snapshot`` message of the live book at its current update id, or,
  while the replica is not synced, ``{"type": "unavailable", "reason": ...}``.

A subscriber bootstraps exactly as from the venue: subscribe to ``.delta``
(buffering), request ``.snapshot`` (id ``L``), apply it, then the buffered
and later deltas: those with ``u <= L`` are dropped, the first applied has
``U <= L + 1 <= u``, and each later one ``U == previous u + 1``.  This works
although the reply is read from the live book while the published deltas
may lag behind it: every delta published after the request continues the
stream, which reaches ``L`` and goes on.  :class:`NatsBook` does exactly this,
and asks again after a gap or a reconnect.

NATS core delivers at most once: a message published while a subscriber is
disconnected is lost to it, which it sees as a gap (or, on reconnect, asks
for a snapshot at once).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from .._version import __version__
from ..errors import MalformedMessage, UsageError
from ..sync.policy import Backoff
from .extras import require
from .follow import BookFollower
from .messages import Message, MessageKind, decode_json, wire_levels
from .naming import DEFAULT_PREFIX, check_nats_prefix, delta_subject, snapshot_subject
from .publisher import BrokerConnection, BrokerSink, PublishOptions

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["NatsBook", "NatsSink", "nats_book"]

log = logging.getLogger("orderbook.sinks")

NATS_OPTIONS = PublishOptions(snapshot_interval=None)
"""The default options of :class:`NatsSink`: no periodic snapshots (subscribers request one)."""


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise UsageError(f"a NATS URL looks like nats://host:port, got {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, "", "", ""))


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %s", exc)


async def _connect(url: str, timeout: float, **options: Any) -> Client:
    nats = require("nats", "nats")
    client: Client = await nats.connect(
        url, connect_timeout=max(1, round(timeout)), error_cb=_quiet, name="orderbook",
        **options)
    return client


# ------------------------------------------------------------------ publishing
_MAX_LINE = 64 * 1024
"""Bytes a line from the server may hold before its ``CRLF`` (``INFO`` is the
longest: a few KiB); beyond, the connection is failed, so a broken or hostile
server cannot grow the buffer without bound."""

_DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""nats-server's default ``max_payload``, if its ``INFO`` does not say."""


class _NatsConnection(BrokerConnection, asyncio.Protocol):
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
    benchmarks/SINKS.md).  The reader (:class:`NatsBook`) keeps nats-py.  A snapshot request is
    answered at once from ``answer(symbol)`` (:meth:`NatsSink._reply`).

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


class NatsSink(BrokerSink):
    """Publish a replicator's books to NATS at ``url`` (``nats://host:port``) and
    answer snapshot requests (see the module docstring).

    ``options`` default to :data:`NATS_OPTIONS` (no periodic snapshots).
    Raises :class:`UsageError` for a bad URL or prefix.  Needs no client
    library: it speaks the NATS protocol itself (see ``_NatsConnection``).
    """

    def __init__(self, url: str, *, options: PublishOptions = NATS_OPTIONS) -> None:
        name = _check_url(url)
        check_nats_prefix(options.prefix)
        super().__init__(name, options)
        self.url = url
        self._requests = 0
        self._replies: dict[str, tuple[int, bytes]] = {}

    def _snapshot_requests(self) -> int:
        return self._requests

    async def _connect(self) -> BrokerConnection:
        conn = _NatsConnection(self._lost, self._acknowledged, self._reply, self.options.prefix,
                               self.options.write_timeout)
        rep = self._replicator
        try:
            await conn.open(self.url, rep.symbols if rep is not None else ())
        except BaseException:
            await conn.close()
            raise
        return conn

    def _reply(self, symbol: str) -> bytes:
        """The answer to a snapshot request: the live book as a snapshot
        message (cached per update id).  O(book)."""
        self._requests += 1
        book = self._book(symbol)
        if book is None or book.last_update_id is None:
            return orjson.dumps({"type": "unavailable",
                                 "reason": f"{symbol} is not synced on this replica"})
        update_id = book.last_update_id
        cached = self._replies.get(symbol)
        if cached is not None and cached[0] == update_id:
            return cached[1]
        ts = book.timestamp if book.timestamp is not None else time.time_ns() // 1000
        body = Message(symbol, MessageKind.SNAPSHOT, update_id, update_id, ts,
                       wire_levels(book.bids()), wire_levels(book.asks())).json()
        self._replies[symbol] = (update_id, body)
        return body


# ---------------------------------------------------------------------- reading
class NatsBook(BookFollower):
    """An exact book of ``symbol`` bootstrapped and followed over NATS.

    Subscribes to ``.delta``, requests ``.snapshot`` (``request_timeout``
    seconds per try, ``backoff`` between tries) and bridges; asks again after
    a gap, a bad message or a reconnect, and takes a snapshot message from
    the delta subject as well.  Start with ``async with nats_book(url,
    symbol) as follower``; read it like any :class:`BookFollower`.
    ``max_buffer`` bounds the deltas held while waiting for the reply.
    """

    def __init__(self, url: str, symbol: str, *, prefix: str = DEFAULT_PREFIX,
                 request_timeout: float = 2.0, backoff: Backoff = Backoff(initial=0.1, maximum=5.0),
                 max_buffer: int = 100_000) -> None:
        super().__init__(symbol)
        self.name = _check_url(url)
        require("nats", "nats")
        if not request_timeout > 0 or max_buffer < 1:
            raise UsageError(f"need request_timeout > 0 and max_buffer >= 1, got {request_timeout}, "
                             f"{max_buffer}")
        check_nats_prefix(prefix)
        self.url = url
        self.delta_subject = delta_subject(symbol, prefix)
        self.snapshot_subject = snapshot_subject(symbol, prefix)
        self._request_timeout = request_timeout
        self._backoff = backoff
        self._bridging = True
        self._buffer: deque[Message] = deque(maxlen=max_buffer)
        self._need_snapshot = asyncio.Event()

    async def _follow(self) -> None:
        attempt = 0
        while True:
            try:
                client = await _connect(self.url, self._request_timeout, allow_reconnect=True,
                                        max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                        reconnected_cb=self._reconnected)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s: cannot connect (%s); retrying", self.name, exc)
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1
        try:
            await client.subscribe(self.delta_subject, cb=self._on_message)
            while True:
                if self._bridging:
                    await self._bootstrap(client)
                self._need_snapshot.clear()
                if not self._bridging:
                    await self._need_snapshot.wait()
        finally:
            await asyncio.shield(client.close())

    async def _reconnected(self) -> None:
        self.stats.reconnects += 1
        self._lost_sync()

    def _lost_sync(self) -> None:
        self._bridging = True
        self._buffer.clear()
        self._need_snapshot.set()

    async def _on_message(self, msg: Msg) -> None:
        try:
            message = decode_json(msg.data, self.symbol)
        except MalformedMessage as exc:
            self._bad(exc)
            return
        if not self._bridging:
            self.apply(message)
        elif message.kind is MessageKind.SNAPSHOT:
            self._buffer.clear()  # a snapshot on the stream bridges as well as a reply would
            self._bridging = False
            self.apply(message)
        else:
            self._buffer.append(message)

    async def _bootstrap(self, client: Client) -> None:
        """Request snapshots until one bridges (or a snapshot message did)."""
        attempt = 0
        while self._bridging:
            self.stats.requests += 1
            reply = await self._request(client)
            if reply is not None and self._bridging:
                if self._bridge(reply):
                    return
            elif reply is None:
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1

    def _bridge(self, reply: Message) -> bool:
        """Apply a snapshot reply, then the deltas buffered since subscribing
        (those it already holds are skipped, the first later one must have
        ``U <= L + 1``).  True when bridged (False: a gap, ask again)."""
        self._bridging = False
        buffered = list(self._buffer)
        self._buffer.clear()
        self.apply(reply)
        for message in buffered:
            self.apply(message)
        return not self._bridging

    async def _request(self, client: Client) -> Message | None:
        """One snapshot request: the snapshot, or ``None`` (no answer, unavailable, bad)."""
        nats_errors = require("nats", "nats.errors")
        try:
            answer = await client.request(self.snapshot_subject, b"", timeout=self._request_timeout)
        except (nats_errors.Error, asyncio.TimeoutError) as exc:
            log.debug("%s: snapshot request failed: %r", self.snapshot_subject, exc)
            return None
        try:
            body = orjson.loads(answer.data)
            if isinstance(body, dict) and body.get("type") == "unavailable":
                log.debug("%s: %s", self.snapshot_subject, body.get("reason"))
                return None
            message = decode_json(answer.data, self.symbol)
        except (orjson.JSONDecodeError, MalformedMessage) as exc:
            self.stats.bad += 1
            log.warning("%s: bad snapshot reply: %s", self.snapshot_subject, exc)
            return None
        if message.kind is not MessageKind.SNAPSHOT:
            self.stats.bad += 1
            return None
        return message


def nats_book(url: str, symbol: str, *, prefix: str = DEFAULT_PREFIX, request_timeout: float = 2.0,
              backoff: Backoff = Backoff(initial=0.1, maximum=5.0)) -> NatsBook:
    """A :class:`NatsBook` following ``symbol`` at ``url`` (not started: use
    ``async with``).  Raises :class:`UsageError` for a bad URL and
    :class:`~orderbook.sinks.MissingExtra` without nats-py."""
    return NatsBook(url, symbol, prefix=prefix, request_timeout=request_timeout, backoff=backoff)
