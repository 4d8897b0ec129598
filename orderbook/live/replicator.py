"""``Replicator``: exact local replicas of many symbols over one connection.

Data flows one way::

    StreamConnection --raw frame--> parse_frame --event--> SymbolSync (one per symbol)
        --actions--> Replicator carries them out:
            RequestSnapshot -> coalesced per symbol, fetched through the shared
                               token bucket by a few snapshot workers
            BookChanged     -> consumers are notified (queues, callbacks)
            BookInvalidated -> status, log, consumers told

Statuses (:meth:`Replicator.status`), exactly these strings:

* ``"waiting"``    -- never synced yet (since start);
* ``"synced"``     -- the book is exact as of ``book.last_update_id``;
* ``"resyncing"``  -- was synced, lost it (gap, bad frame, crossed book,
  reconnect, audit) and is rebuilding from a fresh snapshot;
* ``"error(<reason>)"`` -- gave up for now: too many stale or failed
  snapshots in a row (the symbol is retried every
  ``SnapshotRetryPolicy.error_interval`` seconds and returns to ``"synced"``
  by itself when the venue recovers), or the venue refused the subscription
  (until the next connection subscribes it again); or for good, when the
  replicator failed (see below).

While a symbol is not synced, :meth:`Replicator.stats` says why:
``SymbolStats.not_synced`` (a :class:`NotSynced`) and ``SymbolStats.reason``
(the same in words, naming the URL and the last cause for a connection).

Failures speak.  A URL that cannot be the venue's (``ws_url`` not ``ws://`` or
``wss://``, ``rest_url`` not ``http://`` or ``https://``) is a
:class:`~orderbook.errors.UsageError` from :meth:`Replicator.start`, before any
request.  A WebSocket that has never connected gives up after
``connect_timeout`` seconds: the replicator has then *failed*
(:attr:`Replicator.failure` holds a
:class:`~orderbook.errors.VenueUnavailable` naming the URL and the last
cause), :meth:`Replicator.wait_synced` and every :meth:`Replicator.updates`
iterator raise it, and every status is ``error(<it>)``.  Once connected, a
lost connection is retried forever with backoff, each failure logged with the
URL.

Reconnects: when the connection drops every symbol is invalidated at once
(its buffered frames and book are void) and nothing is fetched until the
symbol is subscribed again on the new connection; snapshots answered for the
old connection are discarded.  A stale book is never merged.

Slow consumers never block the feed.  Each consumer (an :meth:`updates`
iterator or an :meth:`on_update` callback) has its own queue with one of two
policies, chosen per consumer:

* ``"conflate"`` (default): at most one pending :class:`BookUpdate` per
  symbol; a newer change of the same symbol is merged into it (changed levels
  merged, last one winning; ``merged`` counts how many were folded in).  The
  queue is bounded by the number of symbols and nothing is ever lost: the
  consumer sees every level that changed, at its latest quantity.
* ``"drop_oldest"``: a FIFO of at most ``maxsize`` updates; when full, the
  oldest is dropped and counted (``stats().consumers.dropped``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Protocol

import orjson

from ..core.book import OrderBook
from ..core.ladder import Level
from ..errors import MalformedMessage, OrderBookError, UnknownSymbol, UsageError, VenueUnavailable
from ..protocol.markets import Market, MarketCatalog
from ..protocol.streams import DEPTH_LIMITS, DEPTH_STREAMS, depth_stream, ticker_stream
from ..sync.policy import Backoff, RetryPolicy, SnapshotRetryPolicy, TokenBucket
from ..sync.status import Reason
from ..sync.symbol import Action, BookChanged, BookInvalidated, RequestSnapshot, SymbolSync, SyncState
from .transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REST_URL,
    DEFAULT_WS_URL,
    RestClient,
    StreamConnection,
    check_rest_url,
    check_ws_url,
)
from ..protocol.wire import BookTickerEvent, DepthEvent, RawLevels, StreamReply, parse_frame
from .sink import Sink  # sinks hook (issue 14)

__all__ = [
    "DEPTH_STREAMS",
    "AuditStats",
    "BookUpdate",
    "ConnectionStats",
    "ConsumerStats",
    "LatencyStats",
    "NotSynced",
    "Percentiles",
    "QueuePolicy",
    "Replicator",
    "ReplicatorStats",
    "SymbolStats",
    "Tap",
    "UpdateStream",
    "compare_books",
]

log = logging.getLogger("orderbook.replicator")


QueuePolicy = Literal["conflate", "drop_oldest"]
UpdateKind = Literal["delta", "snapshot", "invalidated"]


# --------------------------------------------------------------- consumer data
@dataclass(frozen=True, slots=True)
class BookUpdate:
    """What a consumer is told about one symbol.

    ``kind`` is ``"delta"`` (frames applied: ``bids`` / ``asks`` hold the
    changed levels with their new absolute quantity, zero meaning removed),
    ``"snapshot"`` (the book was rebuilt: re-read it; no changed levels) or
    ``"invalidated"`` (the book was cleared; ``reason`` says why).
    ``first_id`` / ``last_id`` are the update ids covered (``last_id`` is the
    book's id after the change); ``best_bid`` / ``best_ask`` the touch then.
    ``engine_time`` (``T``) and ``event_time`` (``E``) are the venue's
    microsecond clocks of the newest frame, ``received_us`` our wall clock
    when it was read.  ``merged`` counts the notifications conflated into it.
    """

    symbol: str
    kind: UpdateKind
    first_id: int | None
    last_id: int | None
    best_bid: Level | None
    best_ask: Level | None
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    engine_time: int | None
    event_time: int | None
    received_us: int
    merged: int = 1
    reason: str | None = None


class _Pending:
    """A conflating consumer's not yet delivered update of one symbol (mutable)."""

    __slots__ = ("update", "bids", "asks", "merged")

    def __init__(self, update: BookUpdate) -> None:
        self.update = update
        self.bids: dict[Decimal, Decimal] = dict(update.bids)
        self.asks: dict[Decimal, Decimal] = dict(update.asks)
        self.merged = update.merged

    def merge(self, newer: BookUpdate) -> None:
        """Fold ``newer`` in: deltas merge their levels onto a pending delta (or
        snapshot); a snapshot or an invalidation replaces what is pending."""
        self.merged += newer.merged
        old = self.update
        if newer.kind == "delta" and old.kind != "invalidated":
            if old.kind == "delta":
                self.bids.update(newer.bids)
                self.asks.update(newer.asks)
            first_id = old.first_id
            kind: UpdateKind = old.kind
        else:
            self.bids = dict(newer.bids)
            self.asks = dict(newer.asks)
            first_id, kind = newer.first_id, newer.kind
        self.update = BookUpdate(
            newer.symbol, kind, first_id, newer.last_id, newer.best_bid, newer.best_ask,
            (), (), newer.engine_time, newer.event_time, newer.received_us, 0, newer.reason,
        )

    def freeze(self) -> BookUpdate:
        u = self.update
        return BookUpdate(
            u.symbol, u.kind, u.first_id, u.last_id, u.best_bid, u.best_ask,
            tuple(self.bids.items()), tuple(self.asks.items()), u.engine_time, u.event_time,
            u.received_us, self.merged, u.reason,
        )


class _Consumer:
    """One consumer's bounded queue (see the module docstring for the policies).
    ``push`` is O(changed levels) and never blocks."""

    def __init__(self, policy: QueuePolicy, maxsize: int, counts: ConsumerStats) -> None:
        if policy not in ("conflate", "drop_oldest"):
            raise UsageError(f"policy must be 'conflate' or 'drop_oldest', got {policy!r}")
        if maxsize < 1:
            raise UsageError(f"maxsize must be >= 1, got {maxsize}")
        self.policy = policy
        self._conflate = policy == "conflate"
        self._maxsize = maxsize
        self._counts = counts
        self._pending: dict[str, _Pending] = {}
        self._fifo: deque[BookUpdate] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def push(self, update: BookUpdate) -> None:
        if self._conflate:
            pending = self._pending.get(update.symbol)
            if pending is None:
                self._pending[update.symbol] = _Pending(update)
            else:
                pending.merge(update)
                self._counts.conflated += 1
        else:
            if len(self._fifo) >= self._maxsize:
                self._fifo.popleft()
                self._counts.dropped += 1
            self._fifo.append(update)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> BookUpdate | None:
        """The next update, oldest symbol first; ``None`` once closed."""
        while True:
            if self.closed:
                return None
            if self._pending:
                symbol = next(iter(self._pending))
                return self._pending.pop(symbol).freeze()
            if self._fifo:
                return self._fifo.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None


class UpdateStream:
    """The async iterator returned by :meth:`Replicator.updates`; also an async
    context manager that detaches it on exit.  It ends when the replicator
    closes, raising :attr:`Replicator.failure` if the replicator failed."""

    def __init__(self, replicator: Replicator, consumer: _Consumer) -> None:
        self._replicator = replicator
        self._consumer = consumer

    def __aiter__(self) -> UpdateStream:
        return self

    async def __anext__(self) -> BookUpdate:
        update = await self._consumer.get()
        if update is None:
            self._replicator._detach(self._consumer)
            failure = self._replicator.failure
            if failure is not None:
                raise failure
            raise StopAsyncIteration
        self._replicator._delivered(update)
        return update

    async def aclose(self) -> None:
        """Detach: the iterator ends and its queue is dropped."""
        self._replicator._detach(self._consumer)

    async def __aenter__(self) -> UpdateStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Tap(Protocol):
    """An observer of the replicator's raw input, e.g. :class:`orderbook.record.recorder.Recorder`.

    It sees every WebSocket message, every REST response and every lost
    connection in the order the replicator consumes them, before they are
    parsed, so that what it records replays to the same books.  Its methods
    run on the receive path and must return quickly; an exception propagates
    to the caller.
    """

    def ws(self, raw: str | bytes, received_us: int) -> None:
        """One WebSocket message as read, with its local receive time (µs)."""

    def rest(self, path: str, params: dict[str, str] | None, status: int, body: bytes,
             received_us: int) -> None:
        """One REST response (any status, retries included) as received."""

    def disconnected(self, reason: str, received_us: int) -> None:
        """The connection dropped: every book is void from here on."""


# ----------------------------------------------------------------------- stats
class NotSynced(StrEnum):
    """Why a symbol is not synced (``SymbolStats.not_synced``)."""

    CONNECTING = "connecting"
    """No connection to the venue's WebSocket has opened yet."""
    DISCONNECTED = "disconnected"
    """The connection was lost; it is being reopened with backoff."""
    SNAPSHOT = "snapshot"
    """Connected and subscribed: waiting for a snapshot that bridges the stream
    (the first one, or after a gap, a bad frame, a stale snapshot, ...)."""
    REFUSED = "refused"
    """The venue refused the subscription (until the next connection)."""
    ERROR = "error"
    """Gave up for now (status ``error(...)``), or the replicator failed."""


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Median and 99th percentile of the recent samples (``count`` of them)."""

    p50: float | None
    p99: float | None
    count: int


class _Samples:
    """The last ``size`` observations (a ring): O(1) to add, O(size log size) to summarise."""

    __slots__ = ("_ring", "total")

    def __init__(self, size: int = 8192) -> None:
        self._ring: deque[float] = deque(maxlen=size)
        self.total = 0

    def add(self, value: float) -> None:
        self._ring.append(value)
        self.total += 1

    def summary(self, scale: float = 1.0) -> Percentiles:
        values = sorted(self._ring)
        if not values:
            return Percentiles(None, None, 0)
        last = len(values) - 1
        return Percentiles(
            values[round(0.50 * last)] * scale, values[round(0.99 * last)] * scale, len(values)
        )


@dataclass(slots=True)
class SymbolStats:
    """Per-symbol figures.  ``last_frame_age`` is seconds since the last depth
    frame (``None`` before any); ``stale`` is True while a synced symbol on a
    live connection has had no frame for ``stale_after`` seconds;
    ``not_synced`` and ``reason`` say why the symbol is not synced (both
    ``None`` while it is), ``reason`` in words for people (never parse it)."""

    status: str
    last_update_id: int | None
    frames: int
    frames_applied: int
    frames_dropped: int
    gaps: int
    resyncs: int
    bad_frames: int
    crossed: int
    stale_snapshots: int
    bad_snapshots: int
    snapshots_applied: int
    snapshot_requests: int
    last_frame_age: float | None
    stale: bool
    staleness_alerts: int
    ticker_mismatches: int
    audit_divergences: int
    apply_errors: int = 0
    history_restarts: int = 0
    not_synced: NotSynced | None = None
    reason: str | None = None


@dataclass(slots=True)
class ConnectionStats:
    """The connection and REST side: reconnects, requests, 429s and the budget."""

    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    frames: int = 0
    unattributed_bad_frames: int = 0
    stream_errors: int = 0
    snapshot_requests: int = 0
    rest_requests: int = 0
    responses_429: int = 0
    rest_retries: int = 0
    rest_failures: int = 0
    late_snapshots: int = 0
    markets_refreshes: int = 0
    budget_per_minute: float = 0.0
    internal_errors: int = 0
    last_error: str | None = None
    """Why the last WebSocket connection attempt failed or the last connection
    ended (with the URL in the log), ``None`` before any failure."""


@dataclass(slots=True)
class ConsumerStats:
    """Consumers attached, updates delivered, merged (conflate) and dropped (drop_oldest)."""

    consumers: int = 0
    delivered: int = 0
    conflated: int = 0
    dropped: int = 0
    callback_errors: int = 0


@dataclass(slots=True)
class AuditStats:
    """Periodic audits: run, passed, divergent (then repaired), skipped (could not align)."""

    started: int = 0
    passed: int = 0
    divergences: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency percentiles over recent samples.

    ``engine_to_receive_ms``: frame ``T`` -> read from the socket;
    ``engine_to_notify_ms``: ``T`` -> handed to a consumer;
    ``send_to_notify_ms``: ``E`` (venue send time) -> handed to a consumer;
    ``gap_to_synced_s``: a detected gap (or other invalidation) -> synced again;
    ``reconnect_to_synced_s``: connection lost -> synced again.
    Venue clocks are compared with the local wall clock, so the first three
    include any clock offset between the venue and this host.
    """

    engine_to_receive_ms: Percentiles
    engine_to_notify_ms: Percentiles
    send_to_notify_ms: Percentiles
    gap_to_synced_s: Percentiles
    reconnect_to_synced_s: Percentiles


@dataclass(slots=True)
class ReplicatorStats:
    """Everything :meth:`Replicator.stats` reports; :meth:`to_dict` for JSON."""

    symbols: dict[str, SymbolStats]
    connection: ConnectionStats
    consumers: ConsumerStats
    audits: AuditStats
    latency: LatencyStats

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict of the same figures."""
        return asdict(self)


# -------------------------------------------------------------------- helpers
def compare_books(live: OrderBook, reference: OrderBook) -> str | None:
    """Compare two books of one symbol within the part both know completely.

    Each side is compared down to the shallower of the two books'
    :meth:`~OrderBook.complete_to` bounds (levels beyond a truncated
    snapshot's window may legitimately differ).  Returns ``None`` when they
    agree, else a short description of the first difference.  O(n).
    """
    live_bid, live_ask = live.complete_to()
    ref_bid, ref_ask = reference.complete_to()
    bid_bounds = [b for b in (live_bid, ref_bid) if b is not None]
    ask_bounds = [b for b in (live_ask, ref_ask) if b is not None]
    bid_floor = max(bid_bounds) if bid_bounds else None
    ask_ceiling = min(ask_bounds) if ask_bounds else None
    for side, ours, theirs in (
        ("bid", live.bids(), reference.bids()),
        ("ask", live.asks(), reference.asks()),
    ):
        if side == "bid" and bid_floor is not None:
            ours = [lv for lv in ours if lv[0] >= bid_floor]
            theirs = [lv for lv in theirs if lv[0] >= bid_floor]
        if side == "ask" and ask_ceiling is not None:
            ours = [lv for lv in ours if lv[0] <= ask_ceiling]
            theirs = [lv for lv in theirs if lv[0] <= ask_ceiling]
        if ours != theirs:
            for index, (mine, other) in enumerate(zip(ours, theirs)):
                if mine != other:
                    return f"{side} level {index}: replica {mine} != venue {other}"
            return f"{side} depth: replica {len(ours)} levels != venue {len(theirs)}"
    return None


def _levels(raw: RawLevels) -> tuple[Level, ...]:
    return tuple((Decimal(price), Decimal(qty)) for price, qty in raw)


def _now_us() -> int:
    return time.time_ns() // 1000


class _Symbol:
    """The replicator's per-symbol state around its :class:`SymbolSync`."""

    __slots__ = (
        "name", "sync", "started", "ever_synced", "error", "refused", "subscribed", "queued",
        "failures",
        "last_reason", "frames", "last_frame_us", "stale", "staleness_alerts",
        "retry_handle", "retry_armed", "retry_frames", "invalidated_at", "invalidated_by",
        "ticker", "ticker_mismatches", "audit", "audit_divergences", "snapshot_requests",
    )

    def __init__(self, name: str, max_buffer: int) -> None:
        self.name = name
        self.sync = SymbolSync(name, max_buffer=max_buffer)
        self.started = False
        self.ever_synced = False
        self.error: str | None = None
        self.refused: str | None = None
        self.subscribed = False
        self.queued = False
        self.failures = 0
        self.last_reason = ""
        self.frames = 0
        self.last_frame_us: int | None = None
        self.stale = False
        self.staleness_alerts = 0
        self.retry_handle: asyncio.TimerHandle | None = None
        self.retry_armed = False
        self.retry_frames = 0
        self.invalidated_at: float | None = None
        self.invalidated_by = ""
        self.ticker: BookTickerEvent | None = None
        self.ticker_mismatches = 0
        self.audit: SymbolSync | None = None
        self.audit_divergences = 0
        self.snapshot_requests = 0

    def status(self) -> str:
        if self.refused is not None:
            return f"error(subscription refused: {self.refused})"
        if self.error is not None:
            return f"error({self.error})"
        if self.sync.state is SyncState.SYNCED:
            return "synced"
        return "resyncing" if self.ever_synced else "waiting"

    def cancel_retry(self) -> None:
        if self.retry_handle is not None:
            self.retry_handle.cancel()
            self.retry_handle = None
        self.retry_armed = False


# ------------------------------------------------------------------ replicator
class Replicator:
    """Keep exact replicas of ``symbols`` (or every market, with ``"all"``).

    Use as an async context manager: entering fetches the market list
    (raising :class:`~orderbook.errors.UnknownSymbol`, with close matches,
    for a symbol the venue does not list), connects, subscribes every symbol
    on one WebSocket and requests each first snapshot right after its
    subscription; leaving closes everything.

    Options (keyword only):

    * ``depth_stream``: one of :data:`DEPTH_STREAMS` (default realtime ``"depth"``);
    * ``book_ticker``: also subscribe ``bookTicker.<s>`` and cross-check the
      touch whenever a ticker carries the book's last applied update id; a
      disagreement invalidates and resyncs the book;
    * ``snapshot_limit``: levels per side requested (1000);
    * ``requests_per_minute`` / ``burst``: the shared REST budget (default
      1000/min, half the venue's 2000, of which ``burst`` (100) may go at
      once, e.g. the first snapshots; never exceeded in any 60 s window);
    * ``snapshot_concurrency``: snapshot requests in flight at once;
    * ``markets_refresh``: seconds between reference data refreshes;
    * ``stale_after``: seconds without a frame before a synced symbol is
      flagged stale (health only: a quiet market is not an error);
    * ``audit_interval``: seconds between audits (``None``: off).  An audit
      fetches one symbol's snapshot (round robin), brings a shadow book to the
      replica's update id with the same frames and compares them; a
      divergence is counted and repaired by a resync;
    * ``prune``: drop levels beyond each snapshot's window once a second;
    * ``subscribe_batch``: streams per SUBSCRIBE message;
    * ``all_spot`` / ``all_perp``: which markets ``"all"`` takes;
    * ``ws_backoff``, ``rest_retry``, ``snapshot_retry``: the policies;
    * ``connect_timeout``: seconds the WebSocket may take to connect for the
      first time before the replicator fails (``None``: retry forever);
    * ``rest_timeout``, ``ws_ping_interval``; ``rng`` for jitter;
    * ``tap``: a :class:`Tap` shown every raw frame and REST response (recording);
    * ``sinks``: publishers (:mod:`orderbook.sinks`) whose ``run(self)`` is a task from
      :meth:`start` until :meth:`close`.
    """

    def __init__(
        self,
        symbols: Sequence[str] | str,
        *,
        rest_url: str = DEFAULT_REST_URL,
        ws_url: str = DEFAULT_WS_URL,
        depth_stream: str = "depth",
        book_ticker: bool = False,
        snapshot_limit: int = 1000,
        requests_per_minute: float = 1000.0,
        burst: float = 100.0,
        snapshot_concurrency: int = 8,
        markets_refresh: float = 300.0,
        stale_after: float = 30.0,
        audit_interval: float | None = None,
        prune: bool = False,
        subscribe_batch: int = 50,
        all_spot: bool = True,
        all_perp: bool = True,
        max_buffer: int = 10_000,
        ws_backoff: Backoff = Backoff(initial=0.1, maximum=10.0),
        rest_retry: RetryPolicy = RetryPolicy(),
        snapshot_retry: SnapshotRetryPolicy = SnapshotRetryPolicy(),
        rest_timeout: float = 10.0,
        ws_ping_interval: float | None = 20.0,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        rng: Callable[[], float] = random.random,
        tap: Tap | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        if depth_stream not in DEPTH_STREAMS:
            raise UsageError(f"depth_stream must be one of {DEPTH_STREAMS}, got {depth_stream!r}")
        if snapshot_limit not in DEPTH_LIMITS:
            raise UsageError(f"snapshot_limit must be a limit the venue accepts, got {snapshot_limit}")
        if snapshot_concurrency < 1 or stale_after <= 0 or markets_refresh <= 0:
            raise UsageError("snapshot_concurrency, stale_after and markets_refresh must be > 0")
        if audit_interval is not None and audit_interval <= 0:
            raise UsageError("audit_interval must be > 0 or None")
        if connect_timeout is not None and not connect_timeout > 0:
            raise UsageError(f"connect_timeout must be > 0 seconds or None, got {connect_timeout}")
        if isinstance(symbols, str):
            self._requested: list[str] | None = None if symbols == "all" else [symbols]
        else:
            self._requested = list(symbols)
        self.rest_url = rest_url
        self.ws_url = ws_url
        self.depth_stream = depth_stream
        self.book_ticker = book_ticker
        self.snapshot_limit = snapshot_limit
        self.requests_per_minute = requests_per_minute
        self._bucket = TokenBucket.for_budget(requests_per_minute, burst)
        self._concurrency = snapshot_concurrency
        self._markets_refresh = markets_refresh
        self._stale_after_us = int(stale_after * 1_000_000)
        self._audit_interval = audit_interval
        self._prune = prune
        self._subscribe_batch = subscribe_batch
        self._all_spot, self._all_perp = all_spot, all_perp
        self._max_buffer = max_buffer
        self._ws_backoff = ws_backoff
        self._rest_retry = rest_retry
        self._snapshot_retry = snapshot_retry
        self._rest_timeout = rest_timeout
        self._ws_ping_interval = ws_ping_interval
        self._connect_timeout = connect_timeout
        self._rng = rng
        self._tap = tap
        self.sinks: tuple[Sink, ...] = tuple(sinks)  # sinks hook (issue 14)

        self._symbols: dict[str, _Symbol] = {}
        self._by_stream: dict[str, _Symbol] = {}
        self._catalog = MarketCatalog(())
        self._rest: RestClient | None = None
        self._conn: StreamConnection | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._snapshot_queue: asyncio.Queue[_Symbol] = asyncio.Queue()
        self._epoch = 0
        self._consumers: list[_Consumer] = []
        self._sync_waiters: list[asyncio.Future[None]] = []
        self._audit_cursor = 0
        self._connection = ConnectionStats(budget_per_minute=requests_per_minute)
        self._consumer_stats = ConsumerStats()
        self._audit_stats = AuditStats()
        self._engine_to_receive = _Samples()
        self._engine_to_notify = _Samples()
        self._send_to_notify = _Samples()
        self._gap_to_synced = _Samples(1024)
        self._reconnect_to_synced = _Samples(1024)
        self._running = False
        self._closed = False
        self._failure: OrderBookError | None = None

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Replicator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Fetch the markets, validate the symbols, connect and start syncing.

        Raises :class:`UsageError` naming a URL that cannot be the venue's
        (before any request), :class:`UnknownSymbol` (with close matches) for
        an unlisted symbol, :class:`~orderbook.errors.VenueUnavailable` or
        :class:`~orderbook.errors.RateLimited` when the market list cannot be
        fetched.  Returns once the tasks run; use :meth:`wait_synced`, which
        raises what makes the replicator fail later (a WebSocket that never
        connects).
        """
        if self._running:
            raise UsageError("the replicator is already started")
        check_rest_url(self.rest_url)
        check_ws_url(self.ws_url)
        self._rest = RestClient(self.rest_url, bucket=self._bucket, retry=self._rest_retry,
                                timeout=self._rest_timeout, max_connections=self._concurrency + 2,
                                rng=self._rng, on_response=self._tap.rest if self._tap else None)
        try:
            await self._refresh_markets()
            if self._requested is None:
                names = self._catalog.replicable(spot=self._all_spot, perp=self._all_perp)
                if not names:
                    raise UsageError("the venue lists no market to replicate")
            else:
                names = self._catalog.validate(self._requested)
        except BaseException:
            await self._rest.aclose()
            self._rest = None
            raise
        streams: list[str] = []
        for name in names:
            sym = _Symbol(name, self._max_buffer)
            self._symbols[name] = sym
            depth = depth_stream(name, self.depth_stream)
            self._by_stream[depth] = sym
            streams.append(depth)
            if self.book_ticker:
                streams.append(ticker_stream(name))
        self._conn = StreamConnection(
            self.ws_url, streams, self, batch_size=self._subscribe_batch,
            backoff=self._ws_backoff, ping_interval=self._ws_ping_interval,
            ping_timeout=self._ws_ping_interval, rng=self._rng,
            give_up_after=self._connect_timeout,
        )
        self._running = True
        spawn = asyncio.create_task
        stream = spawn(self._conn.run(), name="orderbook-stream")
        stream.add_done_callback(self._stream_ended)
        self._tasks.append(stream)
        self._tasks += [spawn(self._snapshot_worker(), name=f"orderbook-snapshots-{i}")
                        for i in range(self._concurrency)]
        self._tasks.append(spawn(self._housekeeping(), name="orderbook-housekeeping"))
        self._tasks.append(spawn(self._markets_loop(), name="orderbook-markets"))
        if self._audit_interval is not None:
            self._tasks.append(spawn(self._audit_loop(self._audit_interval), name="orderbook-audit"))
        # sinks hook (issue 14): each sink runs as a task of ours; close() cancels it with the rest
        self._tasks += [spawn(sink.run(self), name=f"orderbook-sink-{sink.name}") for sink in self.sinks]
        log.info("replicating %d symbols from %s (%s)", len(names), self.ws_url, self.depth_stream)

    async def close(self) -> None:
        """Stop every task, close the connection and end every consumer.  Idempotent."""
        self._running = False
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sym in self._symbols.values():
            sym.cancel_retry()
        for consumer in list(self._consumers):
            consumer.close()
        if self._rest is not None:
            await self._rest.aclose()
            self._rest = None

    # ------------------------------------------------------------ public API
    @property
    def symbols(self) -> list[str]:
        """The symbols replicated, in subscription order (empty before start)."""
        return list(self._symbols)

    def book(self, symbol: str) -> OrderBook:
        """The live :class:`OrderBook` of ``symbol`` -- always the same object;
        empty with ``last_update_id`` ``None`` while not synced.  Read it
        between frames (from the event loop).  O(1)."""
        return self._symbol(symbol).sync.book

    def status(self, symbol: str) -> str:
        """``"waiting"``, ``"synced"``, ``"resyncing"`` or ``"error(<reason>)"``.  O(1)."""
        return self._symbol(symbol).status()

    @property
    def failure(self) -> OrderBookError | None:
        """Why the replicator stopped working for good (a WebSocket that never
        connected within ``connect_timeout``, a URL refused by the WebSocket
        library), else ``None``.  Once set, no book will sync again: close the
        replicator."""
        return self._failure

    def market(self, symbol: str) -> Market | None:
        """The venue's latest reference data for ``symbol`` (``None`` if delisted)."""
        return self._catalog.get(symbol)

    async def wait_synced(self, symbol: str | None = None, timeout: float | None = None) -> None:
        """Wait until ``symbol`` (or every symbol) is synced.

        Raises :class:`TimeoutError` naming the symbols still not synced and
        their status after ``timeout`` seconds, and :attr:`failure` as soon as
        the replicator fails (e.g. :class:`~orderbook.errors.VenueUnavailable`
        for a WebSocket that never connected).
        """
        targets = [self._symbol(symbol)] if symbol is not None else list(self._symbols.values())
        if not targets:
            raise UsageError("the replicator is not started")

        async def wait() -> None:
            while not all(t.sync.state is SyncState.SYNCED for t in targets):
                if self._failure is not None:
                    raise self._failure
                waiter = asyncio.get_running_loop().create_future()
                self._sync_waiters.append(waiter)
                await waiter

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            missing = [f"{t.name}={t.status()}" for t in targets if t.sync.state is not SyncState.SYNCED]
            shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
            raise TimeoutError(f"not synced after {timeout} s: {shown}") from None

    def updates(self, *, policy: QueuePolicy = "conflate", maxsize: int = 10_000) -> UpdateStream:
        """An async iterator over book updates of every symbol, as they happen.

        The consumer is attached at once (call it before :meth:`start` to see
        every update from the first snapshot on).  Each iterator has its own
        bounded queue (``policy``, see the module docstring), so a slow
        consumer never blocks the feed or the others.  It ends when the
        replicator closes; :meth:`UpdateStream.aclose` (or ``async with``)
        detaches it earlier.
        """
        return UpdateStream(self, self._attach(policy, maxsize))

    def on_update(
        self, callback: Callable[[BookUpdate], object], *, policy: QueuePolicy = "conflate",
        maxsize: int = 10_000,
    ) -> Callable[[], None]:
        """Call ``callback(update)`` for every update, from its own task and
        queue (``policy`` as for :meth:`updates`), so a slow callback never
        blocks the feed.  Exceptions are logged and counted.  Returns a
        function that detaches the callback.  Needs a running event loop.
        """
        consumer = self._attach(policy, maxsize)

        async def pump() -> None:
            try:
                while (update := await consumer.get()) is not None:
                    self._delivered(update)
                    try:
                        callback(update)
                    except Exception:
                        self._consumer_stats.callback_errors += 1
                        log.exception("update callback %r failed", callback)
            finally:
                self._detach(consumer)

        task = asyncio.get_running_loop().create_task(pump(), name="orderbook-callback")
        self._tasks.append(task)

        def detach() -> None:
            consumer.close()

        return detach

    def stats(self) -> ReplicatorStats:
        """A snapshot of every counter and latency figure.  O(symbols + samples)."""
        now_us = _now_us()
        symbols: dict[str, SymbolStats] = {}
        for name, sym in self._symbols.items():
            c = sym.sync.counters
            symbols[name] = SymbolStats(
                status=sym.status(), last_update_id=sym.sync.book.last_update_id,
                frames=sym.frames, frames_applied=c.frames_applied, frames_dropped=c.frames_dropped,
                gaps=c.gaps, resyncs=c.resyncs, bad_frames=c.bad_frames, crossed=c.crossed,
                stale_snapshots=c.stale_snapshots, bad_snapshots=c.bad_snapshots,
                snapshots_applied=c.snapshots_applied, snapshot_requests=sym.snapshot_requests,
                last_frame_age=None if sym.last_frame_us is None else (now_us - sym.last_frame_us) / 1e6,
                stale=sym.stale, staleness_alerts=sym.staleness_alerts,
                ticker_mismatches=sym.ticker_mismatches, audit_divergences=sym.audit_divergences,
                apply_errors=c.apply_errors, history_restarts=c.history_restarts,
            )
            why = self._why(sym)
            if why is not None:
                symbols[name].not_synced, symbols[name].reason = why
        connection = self._connection
        if self._conn is not None:
            connection.connected = self._conn.connected
            connection.connects = self._conn.connects
            connection.reconnects = max(0, self._conn.connects - 1)
            connection.last_error = self._conn.last_error
        if self._rest is not None:
            rest = self._rest.stats
            connection.snapshot_requests = rest.snapshot_requests
            connection.rest_requests = rest.requests
            connection.responses_429 = rest.responses_429
            connection.rest_retries = rest.retries
            connection.rest_failures = rest.gave_up
        self._consumer_stats.consumers = len(self._consumers)
        latency = LatencyStats(
            self._engine_to_receive.summary(1e-3), self._engine_to_notify.summary(1e-3),
            self._send_to_notify.summary(1e-3), self._gap_to_synced.summary(),
            self._reconnect_to_synced.summary(),
        )
        return ReplicatorStats(
            symbols, ConnectionStats(**asdict(connection)), ConsumerStats(**asdict(self._consumer_stats)),
            AuditStats(**asdict(self._audit_stats)), latency,
        )

    # ---------------------------------------------- StreamHandler (transport)
    def on_connected(self) -> None:
        """Transport callback: a connection opened (subscriptions follow)."""
        log.info("connected to %s", self.ws_url)

    def on_subscribed(self, streams: Sequence[str]) -> None:
        """Transport callback: ``streams`` were subscribed; request their snapshots."""
        now_us = _now_us()
        for stream in streams:
            sym = self._by_stream.get(stream)
            if sym is None:
                continue
            sym.subscribed = True
            sym.refused = None
            sym.last_frame_us = sym.last_frame_us or now_us
            if not sym.started:
                sym.started = True
                self._carry_out(sym, sym.sync.start())
            elif sym.sync.awaiting_snapshot:
                self._request_snapshot(sym)

    def on_disconnected(self, reason: str) -> None:
        """Transport callback: the connection is gone: every book is void."""
        if self._tap is not None:
            self._tap.disconnected(reason, _now_us())
        log.log(logging.WARNING if self._running else logging.DEBUG,
                "stream disconnected (%s): invalidating %d books", reason, len(self._symbols))
        self._epoch += 1
        for sym in self._symbols.values():
            sym.subscribed = False
            sym.cancel_retry()
            sym.audit = None
            sym.stale = False
            if sym.started:
                self._carry_out(sym, sym.sync.connection_lost())

    def on_frame(self, raw: str | bytes, received_us: int) -> None:
        """Transport callback: one message, in receive order (the hot path)."""
        self._connection.frames += 1
        if self._tap is not None:
            self._tap.ws(raw, received_us)
        try:
            try:
                event = parse_frame(raw, validate_levels=False)
            except MalformedMessage as exc:
                self._bad_frame(exc, raw)
                return
            if type(event) is DepthEvent:
                sym = self._symbols.get(event.symbol)
                if sym is None:
                    return
                sym.frames += 1
                sym.last_frame_us = received_us
                self._engine_to_receive.add(received_us - event.engine_time)
                if sym.stale:
                    sym.stale = False
                    log.info("%s: frames again after a stale period", sym.name)
                actions = sym.sync.receive_frame(event)
                if len(actions) == 1 and type(actions[0]) is BookChanged:
                    if self._consumers:
                        self._notify_delta(sym, event, received_us)
                    if sym.ticker is not None:
                        self._check_ticker(sym)
                elif actions:
                    self._carry_out(sym, actions)
                if sym.retry_armed and sym.frames >= sym.retry_frames:
                    self._release_retry(sym)
                if sym.audit is not None:
                    self._audit_frame(sym, event)
            elif type(event) is BookTickerEvent:
                sym = self._symbols.get(event.symbol)
                if sym is not None:
                    sym.ticker = event
                    self._check_ticker(sym)
            elif type(event) is StreamReply and event.error is not None:
                self._refused(event, raw)
        except Exception:  # a bug: keep the feed alive and make it loud
            self._connection.internal_errors += 1
            log.exception("internal error while handling a frame")

    # -------------------------------------------------------------- internals
    def _why(self, sym: _Symbol) -> tuple[NotSynced, str] | None:
        """Why ``sym`` is not synced, as a kind and in words (``None`` if it is).  O(1)."""
        if sym.sync.state is SyncState.SYNCED:
            return None
        if sym.refused is not None:
            return NotSynced.REFUSED, f"subscription refused: {sym.refused}"
        if sym.error is not None:
            return NotSynced.ERROR, sym.error
        conn = self._conn
        if conn is None or not conn.connected:
            last = conn.last_error if conn is not None else None
            if conn is None or not conn.connects:
                attempt = f" (last attempt: {last})" if last else ""
                return NotSynced.CONNECTING, f"connecting to {self.ws_url}{attempt}"
            return NotSynced.DISCONNECTED, f"connection to {self.ws_url} lost ({last}); reconnecting"
        because = f" ({sym.last_reason})" if sym.last_reason else ""
        return NotSynced.SNAPSHOT, f"awaiting a snapshot{because}"

    def _stream_ended(self, task: asyncio.Task[None]) -> None:
        """Done callback of the connection's task: it ends only by
        cancellation (close) or by failing for good, which fails the replicator."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, OrderBookError):
            self._fail(exc)
            return
        self._connection.internal_errors += 1  # a bug: say so, and fail loudly rather than hang
        log.error("internal error in the WebSocket connection", exc_info=exc)
        failure = VenueUnavailable(f"the connection to {self.ws_url} failed: {exc!r}")
        failure.__cause__ = exc
        self._fail(failure)

    def _fail(self, failure: OrderBookError) -> None:
        """The replicator cannot work any more: say why everywhere (log,
        :attr:`failure`, every status, waiters of :meth:`wait_synced` and
        consumers, who are ended)."""
        if self._failure is not None:
            return
        self._failure = failure
        self._running = False
        log.error("%s", failure)
        for sym in self._symbols.values():
            sym.error = str(failure)
            sym.cancel_retry()
        waiters, self._sync_waiters = self._sync_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for consumer in list(self._consumers):
            consumer.close()

    def _symbol(self, symbol: str) -> _Symbol:
        found = self._symbols.get(symbol)
        if found is None:
            matches = MarketCatalog(
                Market(s, "", "", "", "Open", True, None, None) for s in self._symbols
            ).close_matches(symbol)
            raise UnknownSymbol(symbol, matches)
        return found

    def _bad_frame(self, error: MalformedMessage, raw: str | bytes) -> None:
        sym = self._symbols.get(error.symbol) if error.symbol else None
        log.warning("malformed frame from the venue (%s): %.200r", error, raw)
        if sym is None:
            self._connection.unattributed_bad_frames += 1
            return
        self._carry_out(sym, sym.sync.receive_bad_frame(error))

    def _refused(self, reply: StreamReply, raw: str | bytes) -> None:
        """An error reply.  One naming a stream of ours means that symbol gets
        no frames: its status is ``error(subscription refused: ...)`` until the
        next connection subscribes it again."""
        self._connection.stream_errors += 1
        log.error("the venue refused a request: %s (%.200r)", reply.error, raw)
        message = orjson.loads(raw)  # valid: it parsed as a reply
        stream = message.get("stream") if isinstance(message, dict) else None
        sym = self._by_stream.get(stream) if isinstance(stream, str) else None
        if sym is not None:
            sym.refused = str(reply.error)

    def _carry_out(self, sym: _Symbol, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is BookChanged:
                if action.event is None:
                    self._synced(sym)
                    if self._consumers:
                        self._notify_snapshot(sym)
                elif self._consumers:
                    self._notify_delta(sym, action.event, _now_us())
            elif type(action) is BookInvalidated:
                self._invalidated(sym, action)
            elif isinstance(action, RequestSnapshot):
                sym.last_reason = action.detail or action.reason
                self._request_snapshot(sym)

    def _synced(self, sym: _Symbol) -> None:
        sym.failures = 0
        sym.error = None
        sym.ever_synced = True
        sym.cancel_retry()
        if sym.invalidated_at is not None:
            elapsed = time.monotonic() - sym.invalidated_at
            target = self._reconnect_to_synced if sym.invalidated_by == "reconnect" else self._gap_to_synced
            target.add(elapsed)
            sym.invalidated_at = None
        waiters, self._sync_waiters = self._sync_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _invalidated(self, sym: _Symbol, action: BookInvalidated) -> None:
        reconnect = action.reason is Reason.CONNECTION_LOST
        if sym.invalidated_at is None:
            sym.invalidated_at = time.monotonic()
            sym.invalidated_by = "reconnect" if reconnect else "gap"
        sym.audit = None
        sym.ticker = None
        if reconnect:
            log.debug("%s: book void (connection lost)", sym.name)
        elif action.reason is Reason.STALE_SNAPSHOT:
            log.info("%s: %s: %s", sym.name, action.reason, action.detail)
        else:
            log.warning("%s: book invalidated: %s: %s", sym.name, action.reason, action.detail)
        if self._consumers:
            self._push(BookUpdate(sym.name, "invalidated", None, None, None, None, (), (),
                                  None, None, _now_us(), 1, f"{action.reason}: {action.detail}"))

    # ---- snapshots
    def _request_snapshot(self, sym: _Symbol) -> None:
        """Carry out a RequestSnapshot: now, or after a backoff when the last
        ones were stale or failed (see :class:`SnapshotRetryPolicy`)."""
        if not sym.subscribed or not self._running:
            return  # requested again once subscribed on the (next) connection
        streak = sym.sync.stale_streak + sym.failures
        if streak == 0:
            self._enqueue(sym)
            return
        policy = self._snapshot_retry
        decision = policy.decide(streak, self._rng)
        if not decision.retry:
            reason = f"{decision.reason}; last: {sym.last_reason}"
            if sym.error is None:
                log.error("%s: giving up for %.0f s: %s", sym.name, decision.delay, reason)
            sym.error = reason
        sym.cancel_retry()
        stale = sym.sync.stale_streak > 0 and decision.retry
        sym.retry_frames = sym.frames + (policy.min_new_frames if stale else 0)
        loop = asyncio.get_running_loop()
        sym.retry_handle = loop.call_later(decision.delay, self._retry_delay_over, sym, self._epoch)

    def _retry_delay_over(self, sym: _Symbol, epoch: int) -> None:
        sym.retry_handle = None
        if epoch != self._epoch:
            return
        if sym.frames >= sym.retry_frames:
            self._enqueue(sym)
            return
        # A stale snapshot: wait for the venue to move on, but not forever.
        sym.retry_armed = True
        loop = asyncio.get_running_loop()
        sym.retry_handle = loop.call_later(
            self._snapshot_retry.max_frame_wait, self._release_retry_if, sym, epoch
        )

    def _release_retry_if(self, sym: _Symbol, epoch: int) -> None:
        sym.retry_handle = None
        if epoch == self._epoch:
            self._release_retry(sym)

    def _release_retry(self, sym: _Symbol) -> None:
        sym.cancel_retry()
        self._enqueue(sym)

    def _enqueue(self, sym: _Symbol) -> None:
        if not sym.queued:
            sym.queued = True
            self._snapshot_queue.put_nowait(sym)

    async def _snapshot_worker(self) -> None:
        queue = self._snapshot_queue
        while True:
            sym = await queue.get()
            sym.queued = False
            try:
                await self._fetch_snapshot(sym)
            except Exception as exc:  # a bug: keep the worker and the symbol alive, loudly
                self._connection.internal_errors += 1
                log.exception("%s: internal error while fetching a snapshot", sym.name)
                sym.failures += 1
                sym.last_reason = f"internal error: {exc!r}"
                self._request_snapshot(sym)

    async def _fetch_snapshot(self, sym: _Symbol) -> None:
        if not sym.subscribed or not sym.sync.awaiting_snapshot:
            return
        assert self._rest is not None
        epoch = self._epoch
        sym.snapshot_requests += 1
        try:
            snapshot = await self._rest.fetch_snapshot(sym.name, self.snapshot_limit)
        except MalformedMessage as exc:
            if epoch == self._epoch:
                log.warning("%s: unusable snapshot: %s", sym.name, exc)
                sym.failures += 1
                self._carry_out(sym, sym.sync.bad_snapshot(exc))
            return
        except OrderBookError as exc:
            if epoch == self._epoch:
                log.warning("%s: snapshot request failed: %s", sym.name, exc)
                sym.failures += 1
                sym.last_reason = f"snapshot request failed: {exc}"
                self._request_snapshot(sym)
            return
        if epoch != self._epoch or not sym.subscribed:
            self._connection.late_snapshots += 1
            return
        bad_before = sym.sync.counters.bad_snapshots
        actions = sym.sync.receive_snapshot(snapshot, limit=self.snapshot_limit)
        if sym.sync.counters.bad_snapshots > bad_before:
            sym.failures += 1
            why = next((a.reason for a in actions if isinstance(a, RequestSnapshot)), "refused")
            log.warning("%s: snapshot %d refused: %s", sym.name, snapshot.last_update_id, why)
        self._carry_out(sym, actions)
        if sym.ticker is not None:
            self._check_ticker(sym)

    # ---- consumers
    def _attach(self, policy: QueuePolicy, maxsize: int) -> _Consumer:
        consumer = _Consumer(policy, maxsize, self._consumer_stats)
        if self._closed or self._failure is not None:
            consumer.close()  # the replicator is closed or failed: end at once
        self._consumers.append(consumer)
        return consumer

    def _detach(self, consumer: _Consumer) -> None:
        consumer.close()
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def _push(self, update: BookUpdate) -> None:
        for consumer in self._consumers:
            consumer.push(update)

    def _notify_delta(self, sym: _Symbol, event: DepthEvent, received_us: int) -> None:
        book = sym.sync.book
        self._push(BookUpdate(
            sym.name, "delta", event.first_id, event.last_id, book.best_bid(), book.best_ask(),
            _levels(event.bids), _levels(event.asks), event.engine_time, event.event_time,
            received_us,
        ))

    def _notify_snapshot(self, sym: _Symbol) -> None:
        book = sym.sync.book
        self._push(BookUpdate(
            sym.name, "snapshot", None, book.last_update_id, book.best_bid(), book.best_ask(),
            (), (), book.timestamp, None, _now_us(),
        ))

    def _delivered(self, update: BookUpdate) -> None:
        self._consumer_stats.delivered += 1
        if update.kind == "delta" and update.engine_time is not None:
            now_us = _now_us()
            self._engine_to_notify.add(now_us - update.engine_time)
            if update.event_time is not None:
                self._send_to_notify.add(now_us - update.event_time)

    # ---- bookTicker cross-check
    def _check_ticker(self, sym: _Symbol) -> None:
        """Compare the touch with a bookTicker at exactly the book's update id."""
        ticker = sym.ticker
        book = sym.sync.book
        if ticker is None or sym.sync.state is not SyncState.SYNCED:
            return
        if ticker.update_id != book.last_update_id:
            if ticker.update_id < book.last_update_id:  # type: ignore[operator]
                sym.ticker = None  # the book moved past it: it can never match
            return
        sym.ticker = None
        bid, ask = book.best_bid(), book.best_ask()
        expected_bid = (ticker.bid_price, ticker.bid_qty)
        expected_ask = (ticker.ask_price, ticker.ask_qty)
        if bid == expected_bid and ask == expected_ask:
            return
        sym.ticker_mismatches += 1
        reason = (f"bookTicker at update {ticker.update_id} disagrees: replica bid {bid} ask {ask}, "
                  f"venue bid {expected_bid} ask {expected_ask}")
        self._carry_out(sym, sym.sync.invalidate(Reason.TICKER_MISMATCH, reason))

    # ---- audits
    async def _audit_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            names = list(self._symbols)
            for offset in range(len(names)):
                sym = self._symbols[names[(self._audit_cursor + offset) % len(names)]]
                if sym.sync.state is SyncState.SYNCED and sym.audit is None and sym.subscribed:
                    self._audit_cursor = (self._audit_cursor + offset + 1) % len(names)
                    await self._audit(sym)
                    break

    async def _audit(self, sym: _Symbol) -> None:
        """Fetch a snapshot, align a shadow book with the replica, compare."""
        assert self._rest is not None
        shadow = SymbolSync(sym.name, max_buffer=self._max_buffer)
        shadow.start()
        sym.audit = shadow  # from now on every frame of sym also feeds the shadow
        self._audit_stats.started += 1
        try:
            snapshot = await self._rest.fetch_snapshot(sym.name, self.snapshot_limit)
        except OrderBookError as exc:
            log.info("%s: audit skipped: %s", sym.name, exc)
            self._end_audit(sym, shadow, skipped=True)
            return
        if sym.audit is not shadow:
            self._audit_stats.skipped += 1
            return
        shadow.receive_snapshot(snapshot, limit=self.snapshot_limit)
        self._audit_compare(sym)
        deadline = time.monotonic() + 5.0
        while sym.audit is shadow and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if sym.audit is shadow:
            log.info("%s: audit skipped: the replica never reached the snapshot's update id",
                     sym.name)
            self._end_audit(sym, shadow, skipped=True)

    def _end_audit(self, sym: _Symbol, shadow: SymbolSync, *, skipped: bool) -> None:
        if sym.audit is shadow:
            sym.audit = None
        if skipped:
            self._audit_stats.skipped += 1

    def _audit_frame(self, sym: _Symbol, event: DepthEvent) -> None:
        shadow = sym.audit
        assert shadow is not None
        was_synced = shadow.state is SyncState.SYNCED
        shadow.receive_frame(event)
        if was_synced and shadow.state is not SyncState.SYNCED:
            self._end_audit(sym, shadow, skipped=True)
            return
        self._audit_compare(sym)

    def _audit_compare(self, sym: _Symbol) -> None:
        shadow = sym.audit
        if shadow is None or shadow.state is not SyncState.SYNCED:
            return
        live = sym.sync.book
        if sym.sync.state is not SyncState.SYNCED or shadow.book.last_update_id != live.last_update_id:
            return
        sym.audit = None
        difference = compare_books(live, shadow.book)
        if difference is None:
            self._audit_stats.passed += 1
            return
        self._audit_stats.divergences += 1
        sym.audit_divergences += 1
        reason = f"audit at update {live.last_update_id}: {difference}"
        log.error("%s: %s; resyncing", sym.name, reason)
        self._carry_out(sym, sym.sync.invalidate(Reason.AUDIT_DIVERGENCE, reason))

    # ---- periodic work
    async def _housekeeping(self) -> None:
        """Once a second: staleness flags and optional pruning."""
        while True:
            await asyncio.sleep(min(1.0, self._stale_after_us / 2e6))
            now_us = _now_us()
            connected = self._conn is not None and self._conn.connected
            for sym in self._symbols.values():
                if sym.sync.state is not SyncState.SYNCED:
                    continue
                if (connected and not sym.stale and sym.last_frame_us is not None
                        and now_us - sym.last_frame_us > self._stale_after_us):
                    sym.stale = True
                    sym.staleness_alerts += 1
                    log.warning("%s: no frame for %.1f s on a live connection", sym.name,
                                (now_us - sym.last_frame_us) / 1e6)
                if self._prune:
                    sym.sync.book.prune()

    async def _refresh_markets(self) -> None:
        assert self._rest is not None
        markets, skipped = await self._rest.fetch_markets()
        old = self._catalog
        self._catalog = MarketCatalog(markets)
        self._connection.markets_refreshes += 1
        if skipped:
            log.warning("markets: %d unusable entries skipped", skipped)
        for name in self._symbols:
            before, after = old.get(name), self._catalog.get(name)
            if after is None:
                log.warning("%s: no longer listed by the venue", name)
            elif before is not None and before.order_book_state != after.order_book_state:
                log.warning("%s: order book state %s -> %s", name, before.order_book_state,
                            after.order_book_state)

    async def _markets_loop(self) -> None:
        while True:
            await asyncio.sleep(self._markets_refresh)
            try:
                await self._refresh_markets()
            except OrderBookError as exc:
                log.warning("markets refresh failed (keeping the previous list): %s", exc)

