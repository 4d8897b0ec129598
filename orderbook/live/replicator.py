"""``Replicator``: the asyncio driver of one :class:`~orderbook.sync.engine.Engine`.

It only does I/O; every decision is the engine's::

    StreamConnection --a socket read's frames--> Engine.receive --actions-->
        FetchSnapshot  -> snapshot workers: GET /api/v1/depth through the shared
                          token bucket -> Engine.snapshot / snapshot_failed
        BookUpdated    -> consumer queues (one pending update per symbol), woken
                          once per batch
        StatusChanged  -> wait_synced() waiters
    a timer at Engine.deadline() -> Engine.tick

Statuses (:meth:`Replicator.status`) are :class:`~orderbook.sync.status.Status`
values (``StrEnum``: ``== "synced"`` works): ``waiting`` (never synced yet),
``synced`` (exact as of ``book.last_update_id``), ``resyncing`` (was synced,
lost it, rebuilding) and ``error`` (gave up for now after too many stale or
failed snapshots and retried every ``SnapshotRetryPolicy.error_interval``
seconds; or the venue refused the subscription; or, for good, the replicator
failed).  While a symbol is not synced, :meth:`Replicator.stats` says why:
``SymbolStats.cause`` (a :class:`~orderbook.sync.status.Reason`),
``SymbolStats.not_synced`` (a :class:`~orderbook.live.stats.NotSynced`) and
``SymbolStats.reason`` (in words, naming the URL for a connection problem).

Failures speak.  A URL that cannot be the venue's is a
:class:`~orderbook.errors.UsageError` from :meth:`Replicator.start`, before any
request.  A WebSocket that has never connected gives up after
``Connection.connect_timeout`` seconds: the replicator has then *failed*
(:attr:`Replicator.failure`), :meth:`Replicator.wait_synced` and every
:meth:`Replicator.updates` iterator raise it.  Once connected, a lost
connection is retried forever with backoff; every book is void until re-synced
and snapshots answered for the old connection are discarded.

Slow consumers never block the feed: see :mod:`orderbook.live.consumers` for
the queue policies and :mod:`orderbook.sync.updates` for what a consumer sees.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..core.book import OrderBook
from ..errors import OrderBookError, RateLimited, UnknownSymbol, UsageError, VenueUnavailable
from ..protocol.markets import Market
from ..protocol.streams import now_us
from ..sync.engine import BookUpdated, Engine, EngineAction, EngineOptions, FetchSnapshot, StatusChanged
from ..sync.policy import TokenBucket
from ..sync.status import Status
from ..sync.symbol import BookInvalidated, SyncState
from ..sync.track import Track
from ..sync.updates import BookUpdate, UpdateKind
from .config import Budget, Connection, Markets
from .markets import MarketsWatch
from .tap import Tap
from .consumers import ConsumerQueue, ConsumerStats, DeliveryLatency, QueuePolicy, UpdateStream
from .stats import (
    ConnectionStats,
    NotSynced,
    ReplicatorStats,
    audit_stats,
    latency_stats,
    symbol_stats,
)
from .transport import DEFAULT_REST_URL, DEFAULT_WS_URL, RestClient, StreamConnection, check_rest_url, check_ws_url
from .websocket import resolve_transport
from .sink import Sink  # sinks hook (issue 14)

__all__ = ["Replicator"]

log = logging.getLogger("orderbook.replicator")


class Replicator:
    """Keep exact replicas of ``symbols`` (or every market, with ``"all"``).

    Use as an async context manager: entering fetches the market list
    (raising :class:`~orderbook.errors.UnknownSymbol`, with close matches,
    for a symbol the venue does not list), connects, subscribes every symbol
    on one WebSocket and requests each first snapshot; leaving closes
    everything.

    Configuration: ``rest_url`` / ``ws_url``; ``sync`` (an
    :class:`~orderbook.sync.engine.EngineOptions`: depth stream, snapshot
    depth, bookTicker cross-check, audits, staleness, pruning, retries);
    ``connection`` (:class:`~orderbook.live.config.Connection`);
    ``budget`` (:class:`~orderbook.live.config.Budget`); ``markets``
    (:class:`~orderbook.live.config.Markets`); ``tap`` (a :class:`Tap`);
    ``sinks``: publishers (:mod:`orderbook.sinks`) whose ``run(self)`` is a
    task from :meth:`start` until :meth:`close`.
    """

    def __init__(
        self,
        symbols: Sequence[str] | str,
        *,
        rest_url: str = DEFAULT_REST_URL,
        ws_url: str = DEFAULT_WS_URL,
        sync: EngineOptions = EngineOptions(),
        connection: Connection = Connection(),
        budget: Budget = Budget(),
        markets: Markets = Markets(),
        tap: Tap | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        for name, value, kind in (("sync", sync, EngineOptions), ("connection", connection, Connection),
                                  ("budget", budget, Budget), ("markets", markets, Markets)):
            if not isinstance(value, kind):
                raise UsageError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
        if isinstance(symbols, str):
            self._requested: list[str] | None = None if symbols == "all" else [symbols]
        else:
            self._requested = list(symbols)
        self.rest_url = rest_url
        self.ws_url = ws_url
        self.options = sync if sync.seed is not None else replace(sync, seed=random.randrange(2**63))
        """The engine's options, with the seed of its retry jitter (recorded by a recorder)."""
        self.connection = connection
        self.budget = budget
        self.markets = markets
        self._tap = tap
        self._transport = resolve_transport(connection.transport)  # $ORDERBOOK_TRANSPORT read now
        self.sinks: tuple[Sink, ...] = tuple(sinks)  # sinks hook (issue 14)
        self._bucket = TokenBucket.for_budget(budget.requests_per_minute, budget.burst)
        self._engine: Engine | None = None
        self._rest: RestClient | None = None
        self._markets: MarketsWatch | None = None
        self._conn: StreamConnection | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._fetches: asyncio.Queue[FetchSnapshot] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._consumers: list[ConsumerQueue] = []
        self._sync_waiters: list[asyncio.Future[None]] = []
        self._consumer_stats = ConsumerStats()
        self._delivery = DeliveryLatency()
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
        raises what makes the replicator fail later.
        """
        if self._running:
            raise UsageError("the replicator is already started")
        check_rest_url(self.rest_url)
        check_ws_url(self.ws_url)
        conn = self.connection
        self._rest = RestClient(self.rest_url, bucket=self._bucket, retry=conn.rest_retry,
                                timeout=conn.rest_timeout,
                                max_connections=self.budget.snapshot_concurrency + 2)
        self._markets = MarketsWatch(self._rest, lambda: self.symbols)
        try:
            await self._markets.refresh()
            if self._requested is None:
                names = self._markets.catalog.replicable(spot=self.markets.spot, perp=self.markets.perp)
                if not names:
                    raise UsageError("the venue lists no market to replicate")
            else:
                names = self._markets.catalog.validate(self._requested)
        except BaseException:
            await self._rest.aclose()
            self._rest = None
            raise
        self._engine = engine = Engine(names, self.options)
        # The connection subscribes the engine's streams on every connect
        # (the engine's Subscribe action names the same streams).
        self._conn = StreamConnection(
            self.ws_url, engine.streams, self, batch_size=conn.subscribe_batch,
            backoff=conn.backoff, ping_interval=conn.ping_interval,
            ping_timeout=conn.ping_interval, give_up_after=conn.connect_timeout,
            transport=self._transport,
        )
        self._running = True
        spawn = asyncio.create_task
        stream = spawn(self._conn.run(), name="orderbook-stream")
        stream.add_done_callback(self._stream_ended)
        self._tasks.append(stream)
        self._tasks += [spawn(self._snapshot_worker(), name=f"orderbook-snapshots-{i}")
                        for i in range(self.budget.snapshot_concurrency)]
        self._tasks.append(spawn(self._markets.follow(self.markets.refresh), name="orderbook-markets"))
        # sinks hook (issue 14): each sink runs as a task of ours; close() cancels it with the rest
        self._tasks += [spawn(sink.run(self), name=f"orderbook-sink-{sink.name}") for sink in self.sinks]
        log.info("replicating %d symbols from %s (%s)", len(names), self.ws_url,
                 self.options.depth_stream)

    async def close(self) -> None:
        """Stop every task, close the connection and end every consumer.  Idempotent."""
        self._running = False
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._disarm()
        for consumer in list(self._consumers):
            consumer.close()
        if self._rest is not None:
            await self._rest.aclose()
            self._rest = None

    # ------------------------------------------------------------ public API
    @property
    def symbols(self) -> list[str]:
        """The symbols replicated, in subscription order (empty before start)."""
        return self._engine.symbols if self._engine is not None else []

    @property
    def engine(self) -> Engine | None:
        """The engine this replicator drives (``None`` before :meth:`start`);
        read it, never feed it."""
        return self._engine

    def book(self, symbol: str) -> OrderBook:
        """The live :class:`OrderBook` of ``symbol`` -- always the same object;
        empty with ``last_update_id`` ``None`` while not synced.  Read it
        between frames (from the event loop).  O(1)."""
        return self._track(symbol).sync.book

    def status(self, symbol: str) -> Status:
        """``symbol``'s :class:`~orderbook.sync.status.Status`.  O(1)."""
        return self._track(symbol).status()

    @property
    def failure(self) -> OrderBookError | None:
        """Why the replicator stopped working for good (a WebSocket that never
        connected within ``connect_timeout``, a URL refused by the WebSocket
        library), else ``None``.  Once set, no book will sync again."""
        return self._failure

    def market(self, symbol: str) -> Market | None:
        """The venue's latest reference data for ``symbol`` (``None`` if delisted)."""
        return self._markets.catalog.get(symbol) if self._markets is not None else None

    async def wait_synced(self, symbol: str | None = None, timeout: float | None = None) -> None:
        """Wait until ``symbol`` (or every symbol) is synced.

        Raises :class:`TimeoutError` naming the symbols still not synced and
        their status after ``timeout`` seconds, and :attr:`failure` as soon as
        the replicator fails.
        """
        if self._engine is None:
            raise UsageError("the replicator is not started")
        targets = [self._track(symbol)] if symbol is not None else list(self._engine.tracks())

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

        Attached at once (call it before :meth:`start` to see every update from
        the first snapshot on).  Each iterator has its own bounded queue
        (``policy``: ``"conflate"`` by default, see
        :mod:`orderbook.live.consumers`), so a slow consumer never blocks the
        feed or the others.  It ends when the replicator closes;
        :meth:`UpdateStream.aclose` (or ``async with``) detaches it earlier.
        """
        return UpdateStream(self, self._attach(policy, maxsize), self._detach)

    def on_update(
        self, callback: Callable[[BookUpdate], object], *, policy: QueuePolicy = "conflate",
        maxsize: int = 10_000,
    ) -> Callable[[], None]:
        """Call ``callback(update)`` for every update, from its own task and
        queue (``policy`` as for :meth:`updates`), so a slow callback never
        blocks the feed.  Exceptions are logged and counted.  Returns a
        function that detaches the callback.  Needs a running event loop.
        """
        queue = self._attach(policy, maxsize)

        async def pump() -> None:
            try:
                while (update := await queue.get()) is not None:
                    try:
                        callback(update)
                    except Exception:
                        self._consumer_stats.callback_errors += 1
                        log.exception("update callback %r failed", callback)
            finally:
                self._detach(queue)

        task = asyncio.get_running_loop().create_task(pump(), name="orderbook-callback")
        self._tasks.append(task)
        return queue.close

    def stats(self) -> ReplicatorStats:
        """A snapshot of every counter and latency figure.  O(symbols + samples)."""
        now = now_us()
        engine = self._engine
        symbols = {} if engine is None else {
            t.name: symbol_stats(t, now, self._why(t)) for t in engine.tracks()
        }
        connection = ConnectionStats(budget_per_minute=self.budget.requests_per_minute,
                                     markets_refreshes=self._markets.refreshes if self._markets else 0)
        if engine is not None:
            c = engine.counters
            connection.frames, connection.unattributed_bad_frames = c.frames, c.unattributed_bad_frames
            connection.stream_errors, connection.late_snapshots = c.stream_errors, c.late_snapshots
            connection.internal_errors = c.internal_errors
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
        consumers = replace(self._consumer_stats, consumers=len(self._consumers))
        return ReplicatorStats(symbols, connection, consumers, audit_stats(engine),
                               latency_stats(engine, self._delivery))

    # ---------------------------------------------- StreamHandler (transport)
    def on_connected(self) -> None:
        """Transport callback: a connection opened (subscriptions follow)."""
        log.info("connected to %s", self.ws_url)
        now = now_us()
        if self._tap is not None:
            self._tap.connected(now)
        self._run(self._feed().connected(now))

    def on_subscribed(self, streams: Sequence[str]) -> None:
        """Transport callback: ``streams`` were subscribed; the engine asks for snapshots."""
        now = now_us()
        if self._tap is not None:
            self._tap.subscribed(streams, now)
        self._run(self._feed().subscribed(streams, now))

    def on_frame(self, raw: str | bytes, received_us: int) -> None:
        """Transport callback: one message (see :meth:`on_frames`)."""
        self.on_frames((raw,), received_us)

    def on_frames(self, frames: Sequence[str | bytes], received_us: int) -> None:
        """Transport callback: one socket read's messages, in order (the hot path)."""
        if self._tap is not None:
            self._tap.frames(frames, received_us)
        actions = self._feed().receive(frames, received_us)
        if actions:
            self._run(actions)

    def on_disconnected(self, reason: str) -> None:
        """Transport callback: the connection is gone: every book is void."""
        now = now_us()
        if self._tap is not None:
            self._tap.disconnected(reason, now)
        log.log(logging.WARNING if self._running else logging.DEBUG,
                "stream disconnected (%s): invalidating %d books", reason, len(self.symbols))
        self._run(self._feed().disconnected(now, reason))

    # -------------------------------------------------------------- internals
    def _feed(self) -> Engine:
        assert self._engine is not None, "the replicator is not started"
        return self._engine

    def _run(self, actions: list[EngineAction]) -> None:
        """Carry out the engine's actions, in order, then wake consumers once
        and re-arm the engine's timer."""
        consumers = self._consumers
        for action in actions:
            kind = type(action)
            if kind is BookUpdated:
                if consumers:
                    self._deliver(action)  # type: ignore[arg-type]
            elif kind is FetchSnapshot:
                self._fetches.put_nowait(action)  # type: ignore[arg-type]
            elif kind is BookInvalidated:
                if consumers:
                    self._deliver_invalidated(action)  # type: ignore[arg-type]
            elif kind is StatusChanged:
                if action.status is Status.SYNCED:  # type: ignore[union-attr]
                    self._wake_waiters()
        for consumer in consumers:
            consumer.wake()
        self._arm()

    def _deliver(self, action: BookUpdated) -> None:
        book = self._feed().book(action.symbol)
        bid, ask = book.best_bid(), book.best_ask()
        frames = action.frames
        for index, consumer in enumerate(self._consumers):
            if frames is None:
                update = BookUpdate(action.symbol, UpdateKind.SNAPSHOT, None, book.last_update_id,
                                    bid, ask, book.timestamp, None, action.received_us)
            elif consumer.extend(action.symbol, frames, bid, ask, action.received_us):
                continue  # folded into the delta this consumer has pending
            else:
                last = frames[-1]
                update = BookUpdate(action.symbol, UpdateKind.DELTA, frames[0].first_id,
                                    last.last_id, bid, ask, last.engine_time, last.event_time,
                                    action.received_us, 1, None, frames if index == 0 else list(frames))
            consumer.push(update)

    def _deliver_invalidated(self, action: BookInvalidated) -> None:
        reason = f"{action.reason}: {action.detail}" if action.detail else str(action.reason)
        now = now_us()
        for consumer in self._consumers:
            consumer.push(BookUpdate(action.symbol, UpdateKind.INVALIDATED, None, None, None, None,
                                     None, None, now, 1, reason))

    def _wake_waiters(self) -> None:
        waiters, self._sync_waiters = self._sync_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---- the engine's timer
    def _arm(self) -> None:
        """(Re)arm one loop timer at the engine's deadline.  O(1) amortised."""
        engine = self._engine
        deadline = engine.deadline() if engine is not None and self._running else None
        if deadline == self._timer_at:
            return
        self._disarm()
        if deadline is not None:
            delay = max(0.0, (deadline - now_us()) / 1e6)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
            self._timer_at = deadline

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = now_us()
        if self._tap is not None:
            self._tap.tick(now)
        self._run(self._feed().tick(now))

    # ---- snapshots
    async def _snapshot_worker(self) -> None:
        while True:
            fetch = await self._fetches.get()
            engine = self._feed()
            if not engine.wants(fetch.ticket):
                continue  # asked on a connection that is gone
            assert self._rest is not None
            try:
                body = await self._rest.fetch_depth(fetch.symbol, fetch.limit)
            except OrderBookError as exc:
                self._snapshot_failed(fetch, str(exc), exc.retry_after if isinstance(exc, RateLimited) else None)
                continue
            except Exception as exc:  # a bug: keep the worker and the symbol alive, loudly
                engine.counters.internal_errors += 1
                log.exception("%s: internal error while fetching a snapshot", fetch.symbol)
                self._snapshot_failed(fetch, f"internal error: {exc!r}", None)
                continue
            now = now_us()
            if self._tap is not None:
                self._tap.snapshot(fetch, body, now)
            self._run(engine.snapshot(fetch.ticket, body, now))

    def _snapshot_failed(self, fetch: FetchSnapshot, error: str, retry_after: float | None) -> None:
        now = now_us()
        if self._tap is not None:
            self._tap.snapshot_failed(fetch, error, retry_after, now)
        self._run(self._feed().snapshot_failed(fetch.ticket, now, error, retry_after))

    # ---- consumers
    def _attach(self, policy: QueuePolicy, maxsize: int) -> ConsumerQueue:
        queue = ConsumerQueue(policy, maxsize, self._consumer_stats, self._delivery)
        if self._closed or self._failure is not None:
            queue.close()  # the replicator is closed or failed: end at once
        self._consumers.append(queue)
        return queue

    def _detach(self, queue: ConsumerQueue) -> None:
        queue.close()
        if queue in self._consumers:
            self._consumers.remove(queue)

    # ---- failure
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
        self._feed().counters.internal_errors += 1  # a bug: say so, and fail loudly rather than hang
        log.error("internal error in the WebSocket connection", exc_info=exc)
        failure = VenueUnavailable(f"the connection to {self.ws_url} failed: {exc!r}")
        failure.__cause__ = exc
        self._fail(failure)

    def _fail(self, failure: OrderBookError) -> None:
        """The replicator cannot work any more: say why everywhere (log,
        :attr:`failure`, every status, waiters and consumers, who are ended)."""
        if self._failure is not None:
            return
        self._failure = failure
        log.error("%s", failure)
        now = now_us()
        if self._tap is not None:
            self._tap.failed(str(failure), now)
        self._run(self._feed().failed(now, str(failure)))
        self._running = False
        self._disarm()
        self._wake_waiters()
        for consumer in list(self._consumers):
            consumer.close()

    def _why(self, track: Track) -> tuple[NotSynced, str] | None:
        """Why ``track`` is not synced, as a kind and in words (``None`` if it is)."""
        if track.status() is Status.SYNCED:
            return None
        cause, detail = track.why()
        if track.refused is not None:
            return NotSynced.REFUSED, detail
        if track.error is not None:
            return NotSynced.ERROR, detail
        conn = self._conn
        if conn is None or not conn.connected:
            last = conn.last_error if conn is not None else None
            if conn is None or not conn.connects:
                attempt = f" (last attempt: {last})" if last else ""
                return NotSynced.CONNECTING, f"connecting to {self.ws_url}{attempt}"
            return NotSynced.DISCONNECTED, f"connection to {self.ws_url} lost ({last}); reconnecting"
        return NotSynced.SNAPSHOT, f"awaiting a snapshot ({detail})"

    def _track(self, symbol: str) -> Track:
        if self._engine is None:
            raise UnknownSymbol(symbol, [])  # nothing is replicated before start
        return self._engine.track(symbol)
