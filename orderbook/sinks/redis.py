"""Redis Streams: :class:`RedisSink` publishes, :func:`redis_book` reads.

One stream per symbol, ``orderbook:{SYMBOL}``; each entry has the fields
``type``, ``U``, ``u``, ``ts``, ``bids``, ``asks`` of
:mod:`orderbook.sinks.messages`.  A snapshot entry is written when a symbol
first syncs, after every resync, reconnect or drop, and every
``snapshot_interval`` deltas (default 1,000); the deltas after it continue
with ``U == previous u + 1``.

Each batch of messages is written by one ``EVALSHA`` of a small script that
``XADD``-s every entry to its stream (one round trip, atomic; so a single
Redis, not Cluster).  The publisher speaks RESP itself, through hiredis (the
C library redis-py parses with), writing each batch at once and reading its
answer when it comes (:class:`_RedisConnection`); the reader uses redis-py's
asyncio client.  Trimming always leaves a snapshot.  Each snapshot
entry is added with ``XADD key MINID ~ <id> * ...`` where ``<id>`` is the stream id of the
*oldest snapshot we wrote that has at most* ``maxlen`` *entries from it to the
new one* (the newest earlier snapshot if none has).  ``MINID`` removes only
entries older than ``<id>`` and ``~`` only whole radix-tree nodes of them,
so that snapshot and everything after it stay: the stream always starts at or
before a snapshot from which every later entry continues, and it holds about
``maxlen`` entries, at most ``maxlen + snapshot_interval`` plus one node (100
entries by default) at any time.  ``maxlen`` must be at least
``snapshot_interval``.  One publisher per stream (two would interleave two
histories).

A reader rebuilds the book by finding the newest snapshot entry (``XREVRANGE``),
applying it and every later entry (``XRANGE``), then following with ``XREAD
BLOCK``; see :class:`RedisBook`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import MalformedMessage, UsageError
from ..sync.policy import Backoff
from .extras import require
from .follow import BookFollower
from .messages import Message, MessageKind, decode_fields
from .naming import DEFAULT_PREFIX, check_redis_prefix, redis_key
from .publisher import BrokerConnection, BrokerSink, PublishOptions

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_MAXLEN", "RedisBook", "RedisSink", "StreamTrimmer", "redis_book"]

log = logging.getLogger("orderbook.sinks")

DEFAULT_MAXLEN = 100_000
"""Entries kept per stream, approximately (see the module docstring)."""


def _check_url(url: str) -> str:
    """The URL's name for logs and metrics (no credentials); :class:`UsageError` if not Redis."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise UsageError(f"a Redis URL looks like redis://host:port/db, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"the port of a Redis URL is a number, got {url!r}") from None
    _database(parts.path)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/0", "", ""))


def _client(url: str, timeout: float) -> Redis:
    """A redis-py asyncio client that never retries by itself (we do, with backoff)."""
    aioredis = require("redis", "redis.asyncio")
    retry = require("redis", "redis.asyncio.retry")
    backoff = require("redis", "redis.backoff")
    client: Redis = aioredis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, single_connection_client=True,
        retry=retry.Retry(backoff.NoBackoff(), 0), decode_responses=False, protocol=2)
    return client


# ---------------------------------------------------------------- trimming
@dataclass(slots=True)
class _StreamState:
    entries: int = 0
    snapshots: deque[tuple[int, bytes]] = field(default_factory=deque)


class StreamTrimmer:
    """Chooses the ``MINID`` of each snapshot entry (see the module docstring).  Pure.

    :meth:`entry` is called for every entry about to be written, in order;
    :meth:`written` with the stream id Redis gave a snapshot entry.  O(1)
    amortised per entry.
    """

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise UsageError(f"maxlen must be >= 1, got {maxlen}")
        self.maxlen = maxlen
        self._streams: dict[str, _StreamState] = {}

    def entry(self, key: str, snapshot: bool) -> tuple[int, bytes | None]:
        """The index of the next entry of ``key`` and, for a snapshot, the id to trim to."""
        state = self._streams.get(key)
        if state is None:
            state = self._streams[key] = _StreamState()
        index = state.entries
        state.entries += 1
        if not snapshot or not state.snapshots:
            return index, None
        known = state.snapshots
        # the oldest snapshot with at most maxlen entries from it to this one (inclusive)
        while len(known) > 1 and index + 1 - known[0][0] > self.maxlen:
            known.popleft()
        return index, known[0][1]

    def written(self, key: str, index: int, entry_id: bytes) -> None:
        """The snapshot entry ``index`` of ``key`` got ``entry_id``."""
        self._streams[key].snapshots.append((index, entry_id))


# ------------------------------------------------------------------ publishing
_APPEND = """
local ids = {}
for k = 1, #KEYS do
  local i = (k - 1) * 7
  local fields = {'type', ARGV[i + 2], 'U', ARGV[i + 3], 'u', ARGV[i + 4], 'ts', ARGV[i + 5],
                  'bids', ARGV[i + 6], 'asks', ARGV[i + 7]}
  if ARGV[i + 1] == '' then
    ids[k] = redis.call('XADD', KEYS[k], '*', unpack(fields))
  else
    ids[k] = redis.call('XADD', KEYS[k], 'MINID', '~', ARGV[i + 1], '*', unpack(fields))
  end
end
return ids
"""
"""One write: ``XADD`` of every entry of a batch, each to its stream (``KEYS[k]``),
with seven arguments per entry (the ``MINID`` to trim to, ``''`` for none,
then the six fields).  One command per batch instead of one per entry (a
round trip costs the replica far more than the entries), and atomic."""


_IN_FLIGHT = 2
"""Batches sent and not yet answered, at most (then the messages wait in the
core, merging, until Redis answers)."""


@dataclass(slots=True)
class _Sent:
    """A command sent and not yet answered, oldest first: a batch (its sizes,
    and the snapshot entries whose ids the trimmer wants) or, while
    connecting, a command whose answer someone awaits (``answer``)."""

    at: float
    messages: int = 0
    snapshots: list[tuple[int, str, int]] = field(default_factory=list)
    answer: asyncio.Future[Any] | None = None


class _RedisConnection(BrokerConnection, asyncio.Protocol):
    """The sink's one connection: RESP over an asyncio protocol, packed and
    parsed by hiredis (Redis' own C library, which redis-py uses as well).

    A batch is written to the socket at once (:meth:`send` never awaits) and
    its answer is read when it arrives, in :meth:`data_received`; at most
    :data:`_IN_FLIGHT` batches are unanswered at a time, and one unanswered
    for ``timeout`` seconds fails the connection.  This costs the replica a
    fraction of what redis-py's ``execute_command`` (lock, retry, pool, a
    task suspended on every answer) costs per batch; the reader
    (:class:`RedisBook`) keeps redis-py's client.  Opened by :meth:`open`:
    TCP (TLS for ``rediss://``), ``AUTH`` with the URL's credentials,
    ``SELECT`` of its database, ``SCRIPT LOAD`` of :data:`_APPEND`."""

    def __init__(self, lost: Callable[[BrokerConnection, BaseException], None],
                 acknowledged: Callable[[int, int], None], trimmer: StreamTrimmer,
                 keys: dict[str, str], prefix: str, timeout: float) -> None:
        hiredis = require("redis", "hiredis")
        self._pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command
        self._reader = hiredis.Reader()
        self._reply_error: type[Exception] = hiredis.ReplyError
        self._lost = lost
        self._acknowledged = acknowledged
        self._trimmer = trimmer
        self._keys = keys
        self._prefix = prefix
        self._timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._sent: deque[_Sent] = deque()
        self._paused = False
        self._script = b""

    async def open(self, url: str) -> None:
        """Connect to ``url`` and prepare the connection (raises on failure)."""
        parts = urlsplit(url)
        context = ssl.create_default_context() if parts.scheme == "rediss" else None
        loop = asyncio.get_running_loop()
        host = parts.hostname or "localhost"  # _check_url refused a URL without one
        await loop.create_connection(lambda: self, host, parts.port or 6379, ssl=context)
        if parts.password is not None:
            user = () if not parts.username else (unquote(parts.username),)
            await self._command("AUTH", *user, unquote(parts.password))
        db = _database(parts.path)
        if db:
            await self._command("SELECT", db)
        script = await self._command("SCRIPT", "LOAD", _APPEND)
        if not isinstance(script, bytes):
            raise MalformedMessage(f"unexpected answer to SCRIPT LOAD: {script!r:.200}")
        self._script = script

    async def _command(self, *args: Any) -> Any:
        """One command while connecting, and its answer."""
        if self.lost or self._transport is None:
            raise ConnectionError("the Redis connection is closed")
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._sent.append(_Sent(time.monotonic(), answer=answer))
        self._transport.write(self._pack(args))
        return await answer

    def _key(self, symbol: str) -> str:
        key = self._keys.get(symbol)
        if key is None:
            key = self._keys[symbol] = redis_key(symbol, self._prefix)
        return key

    # ---------------------------------------------------- BrokerConnection
    def ready(self) -> bool:
        sent = self._sent
        if sent and time.monotonic() - sent[0].at > self._timeout:
            self._fail(TimeoutError(f"Redis has not answered for {self._timeout:g} s"))
        return not self.lost and not self._paused and len(sent) < _IN_FLIGHT

    def send(self, batch: list[Message]) -> None:
        if self.lost or self._transport is None:
            raise ConnectionError("the Redis connection is closed")
        trimmer = self._trimmer
        keys: list[str] = []
        argv: list[bytes | str] = []
        snapshots: list[tuple[int, str, int]] = []
        for position, message in enumerate(batch):
            key = self._key(message.symbol)
            keys.append(key)
            if message.kind is MessageKind.SNAPSHOT:
                index, minid = trimmer.entry(key, True)
                snapshots.append((position, key, index))
                argv.append(minid or b"")
            else:
                trimmer.entry(key, False)
                argv.append(b"")
            argv += message.fields().values()
        self._sent.append(_Sent(time.monotonic(), len(batch), snapshots))
        self._transport.write(self._pack(("EVALSHA", self._script, len(keys), *keys, *argv)))

    async def close(self) -> None:
        transport = self._transport
        self.lost = True
        if transport is not None and not transport.is_closing():
            transport.close()

    # ------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not self._sent:
                    raise MalformedMessage(f"an answer from Redis that nobody asked for: {reply!r:.200}")
                self._answered(self._sent.popleft(), reply)
        except Exception as exc:  # a protocol error or a bad answer: this connection is done
            self._fail(exc)

    def _answered(self, sent: _Sent, reply: Any) -> None:
        if sent.answer is not None:
            if not sent.answer.done():
                if isinstance(reply, self._reply_error):
                    sent.answer.set_exception(reply)
                else:
                    sent.answer.set_result(reply)
            return
        if isinstance(reply, self._reply_error):
            raise reply
        if not isinstance(reply, list) or len(reply) != sent.messages:
            raise MalformedMessage(f"unexpected answer to the append script: {reply!r:.200}")
        for position, key, index in sent.snapshots:
            self._trimmer.written(key, index, reply[position])
        self._acknowledged(sent.messages, len(sent.snapshots))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc if exc is not None else ConnectionError("Redis closed the connection"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def _fail(self, exc: BaseException) -> None:
        """The connection is unusable: fail whoever waits, close, tell the sink (once)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
        while self._sent:
            answer = self._sent.popleft().answer
            if answer is not None and not answer.done():
                answer.set_exception(ConnectionError(f"the Redis connection failed: {exc}"))
        if not self.lost:
            self._lost(self, exc)
        self.lost = True


def _database(path: str) -> int:
    """The database number of a Redis URL's path (``/3`` -> 3; none -> 0)."""
    text = path.strip("/")
    if not text:
        return 0
    if not text.isdigit():
        raise UsageError(f"the database of a Redis URL is a number (redis://host:port/3), got {text!r}")
    return int(text)


class RedisSink(BrokerSink):
    """Publish a replicator's books to Redis Streams at ``url`` (``redis://host:port/db``).

    ``maxlen`` is the approximate number of entries kept per stream (default
    100,000; at least ``options.snapshot_interval``, which must be set);
    ``options`` the shared :class:`PublishOptions`.  Raises
    :class:`UsageError` for a bad URL or option and
    :class:`~orderbook.sinks.MissingExtra` without redis-py
    (``pip install 'orderbook[redis]'``).
    """

    def __init__(self, url: str, *, maxlen: int = DEFAULT_MAXLEN,
                 options: PublishOptions = PublishOptions()) -> None:
        name = _check_url(url)
        require("redis", "redis.asyncio")
        if options.snapshot_interval is None:
            raise UsageError("a Redis sink needs a snapshot_interval, so that trimming leaves a snapshot")
        if maxlen < options.snapshot_interval:
            raise UsageError(f"maxlen ({maxlen}) must be at least snapshot_interval "
                             f"({options.snapshot_interval}) so that a snapshot always remains")
        check_redis_prefix(options.prefix)
        super().__init__(name, options)
        self.url = url
        self.maxlen = maxlen
        self._trimmer = StreamTrimmer(maxlen)
        self._keys: dict[str, str] = {}

    async def _connect(self) -> BrokerConnection:
        conn = _RedisConnection(self._lost, self._acknowledged, self._trimmer, self._keys,
                                self.options.prefix, self.options.write_timeout)
        try:
            await conn.open(self.url)
        except BaseException:
            await conn.close()
            raise
        return conn


# ---------------------------------------------------------------------- reading
class RedisBook(BookFollower):
    """An exact book of ``symbol`` rebuilt from its Redis stream and followed.

    Start with ``async with redis_book(url, symbol) as follower`` (or
    :meth:`start`); then read ``follower.book``, ``await
    follower.wait_synced()``, or ``async for book in follower``.  On a
    connection error it reconnects with ``backoff`` and goes on reading where
    it was; after a gap it waits for the next snapshot entry.  ``block``:
    seconds of each ``XREAD BLOCK``; ``page``: entries per read.
    """

    def __init__(self, url: str, symbol: str, *, prefix: str = DEFAULT_PREFIX, block: float = 1.0,
                 page: int = 1000, backoff: Backoff = Backoff(initial=0.1, maximum=5.0)) -> None:
        super().__init__(symbol)
        self.name = _check_url(url)
        require("redis", "redis.asyncio")
        if not block > 0 or page < 1:
            raise UsageError(f"need block > 0 and page >= 1, got {block}, {page}")
        self.url = url
        self.key = redis_key(symbol, check_redis_prefix(prefix))
        self._block_ms = max(1, int(block * 1000))
        self._page = page
        self._backoff = backoff
        self._cursor: bytes | None = None
        """Stream id of the last entry read (``None``: bootstrap from the newest snapshot)."""

    async def _follow(self) -> None:
        attempt = 0
        connected_once = False
        while True:
            client = _client(self.url, self._block_ms / 1000 + 5.0)
            try:
                await client.ping()
                if connected_once:
                    self.stats.reconnects += 1
                connected_once, attempt = True, 0
                if self._cursor is None:
                    await self._bootstrap(client)
                while True:
                    await self._read(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis errors, OSError, timeouts: reconnect
                log.info("%s %s: %s; reconnecting", self.name, self.key, exc)
            finally:
                await asyncio.shield(client.aclose())
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _bootstrap(self, client: Redis) -> None:
        """Find the newest snapshot entry and apply it and everything after it;
        without one, go on after the newest entry (deltas are skipped until a
        snapshot comes)."""
        upper, newest = b"+", None
        while True:
            entries = _entries(await _command(client, 
                "XREVRANGE", self.key, upper, b"-", "COUNT", self._page))
            if not entries:
                self._cursor = newest if newest is not None else b"0-0"
                return
            newest = newest if newest is not None else entries[0][0]
            for entry_id, fields in entries:
                if fields.get(b"type") == b"snapshot":
                    await self._replay(client, entry_id)
                    return
            upper = b"(" + entries[-1][0]

    async def _replay(self, client: Redis, start: bytes) -> None:
        """Apply the entries from ``start`` (inclusive) to the end of the stream."""
        self._cursor, lower = start, start
        while True:
            entries = _entries(await _command(client, 
                "XRANGE", self.key, lower, b"+", "COUNT", self._page))
            for entry_id, fields in entries:
                self._entry(entry_id, fields)
            if len(entries) < self._page:
                return
            lower = b"(" + entries[-1][0]

    async def _read(self, client: Redis) -> None:
        assert self._cursor is not None
        answer = await _command(client, "XREAD", "COUNT", self._page, "BLOCK", self._block_ms,
                                              "STREAMS", self.key, self._cursor)
        for entry_id, fields in _read_entries(answer):
            self._entry(entry_id, fields)

    def _entry(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        self._cursor = entry_id
        try:
            message = decode_fields(fields, self.symbol)
        except MalformedMessage as exc:
            self._bad(exc)
            return
        self.apply(message)


Entry = tuple[bytes, dict[bytes, bytes]]


def _entries(raw: Any) -> list[Entry]:
    """XRANGE/XREVRANGE entries as redis-py parses them (``[(id, {field: value})]``), checked."""
    out: list[Entry] = []
    for item in raw or ():
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], bytes)):
            raise MalformedMessage(f"unexpected stream entry from Redis: {item!r:.200}")
        fields = item[1]
        out.append((item[0], fields if isinstance(fields, dict) else {}))
    return out


def _read_entries(raw: Any) -> list[Entry]:
    """The entries of the streams an XREAD answered (``[[key, entries]]``, or nothing)."""
    out: list[Entry] = []
    for stream in raw or ():
        if not (isinstance(stream, (tuple, list)) and len(stream) == 2):
            raise MalformedMessage(f"unexpected XREAD answer from Redis: {stream!r:.200}")
        out += _entries(stream[1])
    return out


async def _command(client: Redis, *args: Any) -> Any:
    """One command, its answer as redis-py parses it (typed ``Any``: checked by the caller)."""
    return await cast(Any, client).execute_command(*args)


def redis_book(url: str, symbol: str, *, prefix: str = DEFAULT_PREFIX, block: float = 1.0,
               backoff: Backoff = Backoff(initial=0.1, maximum=5.0)) -> RedisBook:
    """A :class:`RedisBook` following ``symbol``'s stream at ``url`` (not started:
    use ``async with``).  Raises :class:`UsageError` for a bad URL and
    :class:`~orderbook.sinks.MissingExtra` without redis-py."""
    return RedisBook(url, symbol, prefix=prefix, block=block, backoff=backoff)
