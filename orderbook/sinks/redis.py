"""Redis Streams: :class:`RedisSink` publishes, :func:`redis_book` reads (redis-py's asyncio client).

One stream per symbol, ``orderbook:{SYMBOL}``; each entry has the fields
``type``, ``U``, ``u``, ``ts``, ``bids``, ``asks`` of
:mod:`orderbook.sinks.messages`.  A snapshot entry is written when a symbol
first syncs, after every resync, reconnect or drop, and every
``snapshot_interval`` deltas (default 1,000); the deltas after it continue
with ``U == previous u + 1``.

Each batch of messages is written by one ``EVALSHA`` of a small script that
``XADD``-s every entry to its stream (one round trip, atomic; so a single
Redis, not Cluster).  Trimming always leaves a snapshot.  Each snapshot
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

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
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if parts.port is None else f"{host}:{parts.port}"
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


def _packer(client: Redis) -> Callable[..., Any]:
    """How a command becomes RESP bytes: hiredis' C packer when hiredis is
    installed (the ``redis`` extra brings it), else redis-py's own."""
    try:
        import hiredis
    except ImportError:
        connection = cast(Any, client).connection
        return cast(Callable[..., Any], connection.pack_command)
    pack = hiredis.pack_command
    return lambda *args: pack(args)


class _RedisConnection(BrokerConnection):
    """The sink's one connection (redis-py's, opened by ``SCRIPT LOAD``).

    A batch is written on it directly (packed command, one send, one read of
    the answer) rather than through ``Redis.execute_command``: its lock,
    retry and pool layers cost more CPU than the batch itself, and the
    writer is the connection's only user.  Redis-py still opens, authenticates,
    selects the database and parses (with hiredis when installed)."""

    def __init__(self, client: Redis, script: bytes, trimmer: StreamTrimmer, keys: dict[str, str],
                 prefix: str) -> None:
        self._client = client
        self._connection = cast(Any, client).connection
        self._pack = _packer(client)
        self._script = script
        self._trimmer = trimmer
        self._keys = keys
        self._prefix = prefix

    def _key(self, symbol: str) -> str:
        key = self._keys.get(symbol)
        if key is None:
            key = self._keys[symbol] = redis_key(symbol, self._prefix)
        return key

    async def write(self, batch: list[Message]) -> None:
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
        connection = self._connection
        await connection.send_packed_command(
            self._pack("EVALSHA", self._script, len(keys), *keys, *argv), check_health=False)
        ids = await connection.read_response()  # raises redis-py's ResponseError for an error
        if not isinstance(ids, list) or len(ids) != len(batch):
            raise MalformedMessage(f"unexpected answer to the append script: {ids!r:.200}")
        for position, key, index in snapshots:
            trimmer.written(key, index, ids[position])

    async def close(self) -> None:
        await self._client.aclose()


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
        client = _client(self.url, self.options.write_timeout)
        try:
            script = await _command(client, "SCRIPT", "LOAD", _APPEND)
        except BaseException:
            await client.aclose()
            raise
        sha = script if isinstance(script, bytes) else str(script).encode()
        return _RedisConnection(client, sha, self._trimmer, self._keys, self.options.prefix)


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
