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
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from ..errors import MalformedMessage, UsageError
from ..sync.policy import Backoff
from .extras import require
from .follow import BookFollower
from .messages import Message, MessageKind, decode_json, wire_levels
from .naming import DEFAULT_PREFIX, check_nats_prefix, delta_subject, snapshot_subject
from .nats_protocol import NatsConnection
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


class NatsSink(BrokerSink):
    """Publish a replicator's books to NATS at ``url`` (``nats://host:port``) and
    answer snapshot requests (see the module docstring).

    ``options`` default to :data:`NATS_OPTIONS` (no periodic snapshots).
    Raises :class:`UsageError` for a bad URL or prefix.  Needs no client
    library: it speaks the NATS protocol itself (see :mod:`~orderbook.sinks.nats_protocol`).
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
        conn = NatsConnection(self._lost, self._acknowledged, self._reply, self.options.prefix,
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
