"""The asyncio shell shared by the sinks: consume updates, write batches, reconnect.

:class:`BrokerSink` runs two loops per replicator:

* the **pump** reads the replicator's conflating :meth:`~Replicator.updates`
  and hands each update to the :class:`~orderbook.sinks.core.PublisherCore`
  (bounded work, never awaits the broker);
* the **writer** connects (with :class:`~orderbook.sync.policy.Backoff`
  between attempts), then takes batches from the core and writes them, each
  write bounded by ``write_timeout``.  A failed connection or write pauses
  the core (its queue is discarded and counted as dropped, every symbol owes
  a snapshot), closes the connection and reconnects after a backoff.

So a slow or absent broker costs the replica one :meth:`PublisherCore.offer`
per update and nothing else: no await on the broker ever happens on the
replica's path, and memory is bounded by ``queue_size`` messages.

A broker module subclasses :class:`BrokerSink` with :meth:`BrokerSink._connect`
returning a :class:`BrokerConnection`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..core.book import OrderBook
from ..errors import OrderBookError, UnknownSymbol, UsageError
from ..live.consumers import UpdateStream
from ..live.replicator import Replicator
from ..live.sink import SinkStats
from ..sync.policy import Backoff
from .core import PublisherCore
from .messages import Message, MessageKind
from .naming import DEFAULT_PREFIX

__all__ = ["BrokerConnection", "BrokerSink", "PublishOptions"]

log = logging.getLogger("orderbook.sinks")


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """How a sink publishes (the same fields for every broker).

    * ``snapshot_interval``: deltas between periodic snapshot messages per
      symbol (``None``: only at start, after resyncs, drops and reconnects);
    * ``queue_size``: messages waiting at most; beyond, updates are dropped,
      counted, and covered by a fresh snapshot once there is room;
    * ``batch_size``: messages per write (one pipeline / one flush);
    * ``linger``: seconds to gather updates before publishing them: the first
      update of a burst waits that long, while the replicator merges the
      symbol's later updates into one (so at most one message per symbol per
      ``linger``, and one write).  0 publishes every update as soon as
      possible (batches still grow by themselves while a write is in flight);
    * ``write_timeout``: seconds a connection attempt or a write may take
      before it counts as failed;
    * ``backoff``: delays between connection attempts;
    * ``prefix``: the first part of every key or subject (``orderbook``).
    """

    snapshot_interval: int | None = 1000
    queue_size: int = 10_000
    batch_size: int = 500
    linger: float = 0.05
    write_timeout: float = 5.0
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.1, maximum=5.0))
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if self.snapshot_interval is not None and self.snapshot_interval < 1:
            raise UsageError(f"snapshot_interval must be >= 1 or None, got {self.snapshot_interval}")
        if self.queue_size < 2 or self.batch_size < 1:
            raise UsageError(f"need queue_size >= 2 and batch_size >= 1, got {self.queue_size}, "
                             f"{self.batch_size}")
        if not 0 <= self.linger <= 1 or not self.write_timeout > 0:
            raise UsageError(f"need 0 <= linger <= 1 s and write_timeout > 0, got {self.linger}, "
                             f"{self.write_timeout}")


class BrokerConnection(ABC):
    """One open connection to a broker, as the writer uses it."""

    lost: bool = False
    """Set by the connection when it learns, unprompted, that it is gone."""

    @abstractmethod
    async def write(self, batch: list[Message]) -> None:
        """Send ``batch`` in order; raise on any failure (the writer reconnects)."""

    @abstractmethod
    async def close(self) -> None:
        """Close; must not raise (bounded by the caller)."""


def _now_us() -> int:
    return time.time_ns() // 1000


class BrokerSink(ABC):
    """A :class:`~orderbook.live.sink.Sink` publishing to one broker (see the module docstring).

    Run it with ``Replicator(..., sinks=[sink])``, or with ``await
    sink.run(replicator)`` on a started replicator.  One sink serves one
    replicator at a time.
    """

    def __init__(self, name: str, options: PublishOptions) -> None:
        self._name = name
        self.options = options
        self._core: PublisherCore | None = None
        self._replicator: Replicator | None = None
        self._wake = asyncio.Event()
        self._connected = False
        self._ever_connected = False
        self._published = 0
        self._snapshots = 0
        self._reconnects = 0
        self._failures = 0
        self._internal_errors = 0
        self._dropped_before = 0
        self._last_error: str | None = None

    # ------------------------------------------------------------ public API
    @property
    def name(self) -> str:
        """The broker URL without credentials or options (logs, metrics' ``sink`` label)."""
        return self._name

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt or write failed (``None`` before any failure)."""
        return self._last_error

    def stats(self) -> SinkStats:
        """The sink's counters now.  O(1)."""
        core = self._core
        return SinkStats(
            name=self._name, connected=self._connected, published=self._published,
            snapshots=self._snapshots,
            dropped=self._dropped_before + (core.counters.dropped if core is not None else 0),
            reconnects=self._reconnects, failures=self._failures,
            queued=len(core) if core is not None else 0,
            snapshot_requests=self._snapshot_requests(), internal_errors=self._internal_errors,
        )

    async def run(self, replicator: Replicator) -> None:
        """Publish ``replicator``'s books until cancelled or until it closes.

        Raises :class:`UsageError` if the sink already runs or the replicator
        is not started.  Attaches a
        conflating :meth:`~Replicator.updates` consumer; every symbol's first
        message is a snapshot of its book once synced.
        """
        if self._core is not None:
            raise UsageError(f"the sink {self._name} already runs")
        if not replicator.symbols:
            raise UsageError("start the replicator before running a sink on it")
        options = self.options

        def books(symbol: str) -> OrderBook | None:
            return replicator.book(symbol) if replicator.status(symbol) == "synced" else None

        core = PublisherCore(books, snapshot_interval=options.snapshot_interval,
                             max_queue=options.queue_size, now_us=_now_us, on_queued=self._wake.set)
        self._core, self._replicator = core, replicator
        stream = replicator.updates(policy="conflate")
        core.owe(replicator.symbols)
        writer = asyncio.create_task(self._write_loop(core), name=f"orderbook-sink-writer-{self._name}")
        try:
            await self._pump(stream, core)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await stream.aclose()
            self._dropped_before += core.counters.dropped
            self._core = self._replicator = None
            self._connected = False

    async def _pump(self, stream: UpdateStream, core: PublisherCore) -> None:
        """Hand every update to the core in batches, one batch per ``linger``:
        take everything pending at once (:meth:`UpdateStream.drain`: the
        replicator's conflating queue has merged it to one update per symbol),
        offer it, then sleep ``linger`` while the next batch gathers.  When
        nothing is pending, wait for an update (without taking it) and hold it
        ``linger`` first.

        So under load the pump is woken once per ``linger`` by its own timer
        (not per socket read, not per update), and an update waits at most
        ``linger`` before it is offered.  Costs O(1) per update besides the
        core's :meth:`~PublisherCore.offer`.
        """
        linger = self.options.linger
        while True:
            updates = stream.drain()
            if not updates:
                try:
                    if not await stream.wait():
                        return
                except OrderBookError as exc:  # the replicator failed: it says why itself
                    log.info("%s: the replicator stopped (%s)", self._name, exc)
                    return
                if linger:
                    await asyncio.sleep(linger)  # the first of a burst: hold it while the rest merges
                continue
            for update in updates:
                try:
                    core.offer(update)
                except Exception:  # a bug: keep publishing, resnapshot the symbol, be loud
                    self._internal_errors += 1
                    log.exception("%s: internal error on an update of %s", self._name, update.symbol)
                    core.owe([update.symbol])
            if linger:
                await asyncio.sleep(linger)  # the next batch gathers meanwhile

    # -------------------------------------------------------------- broker
    @abstractmethod
    async def _connect(self) -> BrokerConnection:
        """Open a connection (raise on failure)."""

    def _snapshot_requests(self) -> int:
        return 0

    def _book(self, symbol: str) -> OrderBook | None:
        """The live book of ``symbol`` while synced (for request/reply), else ``None``."""
        rep = self._replicator
        try:
            if rep is None or rep.status(symbol) != "synced":
                return None
        except UnknownSymbol:
            return None
        return rep.book(symbol)

    # -------------------------------------------------------------- writer
    async def _write_loop(self, core: PublisherCore) -> None:
        options = self.options
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(options.write_timeout):
                    conn = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc, "cannot connect")
                await asyncio.sleep(options.backoff.delay(attempt))
                attempt += 1
                continue
            if self._ever_connected:
                self._reconnects += 1
                log.info("%s: connected again", self._name)
            else:
                log.info("%s: connected", self._name)
            self._ever_connected = self._connected = True
            attempt = 0
            core.resume()
            try:
                await self._write_batches(core, conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc, "connection lost")
            finally:
                self._connected = False
                core.pause()
                try:
                    async with asyncio.timeout(0.5):
                        await conn.close()
                except BaseException as exc:  # closing is best effort, cancellation included
                    if isinstance(exc, asyncio.CancelledError):
                        raise
            await asyncio.sleep(options.backoff.delay(attempt))
            attempt += 1

    async def _write_batches(self, core: PublisherCore, conn: BrokerConnection) -> None:
        options = self.options
        wake = self._wake
        while not conn.lost:
            batch = core.take(options.batch_size)
            if not batch:
                wake.clear()
                await wake.wait()
                continue
            async with asyncio.timeout(options.write_timeout):
                await conn.write(batch)
            self._published += len(batch)
            self._snapshots += sum(1 for m in batch if m.kind is MessageKind.SNAPSHOT)
        raise ConnectionError("the broker connection was closed")

    def _failed(self, exc: BaseException, what: str) -> None:
        self._failures += 1
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        level = logging.WARNING if reason != self._last_error else logging.DEBUG
        log.log(level, "%s: %s (%s); retrying with backoff", self._name, what, reason)
        self._last_error = reason
