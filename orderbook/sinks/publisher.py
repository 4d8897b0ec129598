"""The asyncio shell shared by the sinks: consume updates, write batches, reconnect.

Two kinds of loop run for the sinks of one replicator:

* one **pump** per ``linger`` value (so one for all sinks at the default),
  once per ``linger``: takes every update the replicator's conflating
  :meth:`~Replicator.updates` consumer has merged meanwhile (one per
  symbol; one consumer serves all sinks, see :class:`_SharedUpdates`), hands
  each to every sink's :class:`~orderbook.sinks.core.PublisherCore` (bounded
  work), then hands each sink's next batch of messages to its broker
  connection (:meth:`BrokerConnection.send` writes it to the socket at once;
  the broker's answer, if any, is read when it comes);
* per sink, the **connector**: connects (with :class:`~orderbook.sync.policy.Backoff`
  between attempts), then sleeps until the connection fails.  A failed
  connection or write pauses the core (its queue is discarded and counted as
  dropped, every symbol owes a snapshot), closes the connection and
  reconnects after a backoff.

So a slow or absent broker costs the replica one :meth:`PublisherCore.offer`
per update and nothing else: nothing on the replica's path ever awaits the
broker, and memory is bounded by ``queue_size`` messages.  Under load the
sinks are woken once per ``linger`` (by the pump's timer), whatever the rate
of updates and however many sinks there are.

A broker module subclasses :class:`BrokerSink` with :meth:`BrokerSink._connect`
returning a :class:`BrokerConnection`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..core.book import OrderBook
from ..errors import OrderBookError, UnknownSymbol, UsageError
from ..live.consumers import UpdateStream
from ..live.replicator import Replicator
from ..live.sink import SinkStats
from ..sync.updates import BookUpdate
from ..sync.policy import Backoff
from .core import PublisherCore
from .messages import Message
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
    """One open connection to a broker, as the pump uses it.

    A connection reports back to its sink through the two callables it was
    made with (see :meth:`BrokerSink._connect`): ``lost(exc)`` when it learns,
    unprompted, that it is gone (then :attr:`lost` is True), and
    ``acknowledged(messages, snapshots)`` when the broker has accepted a sent
    batch.
    """

    lost: bool = False
    """True once the connection is gone (the sink then reconnects)."""

    def ready(self) -> bool:
        """True if a batch can be sent now; False while earlier ones still
        wait for the broker (the messages wait in the core meanwhile, merging).
        O(1)."""
        return True

    @abstractmethod
    def send(self, batch: list[Message]) -> None:
        """Write ``batch`` to the broker, in order, at once (never waits).

        The connection reports the outcome later (``acknowledged``, or
        ``lost`` on an error answer or a stall of ``write_timeout``), and
        only offers another batch (:meth:`ready`) once the broker keeps up.
        Raises on a failure it sees at once, after which the sink reconnects.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close; must not raise (bounded by the caller)."""


_RETRY_SEND = 0.001
"""Seconds before a pump tries again to send what a connection could not
take yet (``linger`` 0 only; otherwise it tries once per ``linger``)."""


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
        self._shared: _SharedUpdates | None = None
        self._conn: BrokerConnection | None = None
        """The connection the pump sends on (``None`` while there is none)."""
        self._broken: asyncio.Future[BaseException] | None = None
        """What the connector waits on while connected: why the connection failed."""
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
        is not started.  Joins the replicator's one conflating
        :meth:`~Replicator.updates` consumer and the pump of its ``linger``
        (the first sink to join starts them, see :class:`_SharedUpdates`);
        every symbol's first message is a snapshot of its book once synced.
        """
        if self._core is not None:
            raise UsageError(f"the sink {self._name} already runs")
        if not replicator.symbols:
            raise UsageError("start the replicator before running a sink on it")
        options = self.options

        def books(symbol: str) -> OrderBook | None:
            return replicator.book(symbol) if replicator.status(symbol) == "synced" else None

        core = PublisherCore(books, snapshot_interval=options.snapshot_interval,
                             max_queue=options.queue_size, now_us=_now_us)
        core.owe(replicator.symbols)
        shared = _SharedUpdates.join(replicator, self, core)
        self._core, self._replicator, self._shared = core, replicator, shared
        connector = asyncio.create_task(self._connect_loop(core),
                                        name=f"orderbook-sink-connector-{self._name}")
        try:
            await shared.ended()
        finally:
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
            await shared.leave(self)
            self._dropped_before += core.counters.dropped
            self._core = self._replicator = self._shared = None
            self._connected = False

    def _offer(self, core: PublisherCore, update: BookUpdate) -> None:
        """Offer one update to this sink's core; a bug is logged and counted,
        and the symbol resnapshotted, never raised into the other sinks."""
        try:
            core.offer(update)
        except Exception:  # a bug: keep publishing, resnapshot the symbol, be loud
            self._internal_errors += 1
            log.exception("%s: internal error on an update of %s", self._name, update.symbol)
            core.owe([update.symbol])

    def _send(self, core: PublisherCore) -> None:
        """Send this sink's next batch if its connection can take one (a
        pump's call, once per ``linger``).  Any failure breaks the connection
        (the connector reconnects; a bug in the core shows as such a failure,
        logged with its reason, and the core starts over with snapshots)."""
        conn = self._conn
        if conn is None:
            return
        if conn.lost:
            self._break(conn, ConnectionError("the broker connection was closed"))
            return
        try:
            if conn.ready():
                batch = core.take(self.options.batch_size)
                if batch:
                    conn.send(batch)
        except Exception as exc:
            self._break(conn, exc)

    # -------------------------------------------------------------- broker
    @abstractmethod
    async def _connect(self) -> BrokerConnection:
        """Open a connection (raise on failure), made with :meth:`_lost` and
        :meth:`_acknowledged` as its two callbacks."""

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

    def _acknowledged(self, messages: int, snapshots: int) -> None:
        """A connection's callback: the broker accepted a batch."""
        self._published += messages
        self._snapshots += snapshots

    def _lost(self, conn: BrokerConnection, exc: BaseException) -> None:
        """A connection's callback: it is gone (``exc`` says why)."""
        conn.lost = True
        self._break(conn, exc)

    def _break(self, conn: BrokerConnection, exc: BaseException) -> None:
        """``conn`` failed: the pump stops sending on it, the connector reconnects."""
        if self._conn is not conn:
            return
        self._conn = None
        broken = self._broken
        if broken is not None and not broken.done():
            broken.set_result(exc)

    # ----------------------------------------------------------- connector
    async def _connect_loop(self, core: PublisherCore) -> None:
        options = self.options
        attempt = 0
        loop = asyncio.get_running_loop()
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
            broken = self._broken = loop.create_future()
            self._conn = conn
            core.resume()
            if self._shared is not None:
                self._shared.nudge()  # a pump has snapshots to send now
            try:
                if conn.lost:
                    self._break(conn, ConnectionError("the broker connection was closed"))
                self._failed(await broken, "connection lost")
            finally:
                self._break(conn, ConnectionError("the sink stopped"))
                self._broken = None
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

    def _failed(self, exc: BaseException, what: str) -> None:
        self._failures += 1
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        level = logging.WARNING if reason != self._last_error else logging.DEBUG
        log.log(level, "%s: %s (%s); retrying with backoff", self._name, what, reason)
        self._last_error = reason


class _SharedUpdates:
    """The updates of one replicator, taken once for all the sinks run on it,
    and the pumps that send for them.

    One conflating :meth:`~Replicator.updates` consumer serves every sink of
    the replicator: the replica pays for one consumer per socket read however
    many brokers it publishes to.  One pump task per ``linger`` value among
    the sinks (:meth:`_pump`) drains it (:meth:`pull`: each update is offered
    to the core of every sink, so each core sees every update, in order,
    exactly once) and sends for the sinks of that ``linger``, each over its
    own connection: sinks at the same ``linger`` cost one timer wake per
    ``linger`` between them.  Made by the first sink to :meth:`join`,
    detached when the last one leaves.
    """

    _of: weakref.WeakKeyDictionary[Replicator, _SharedUpdates] = weakref.WeakKeyDictionary()

    def __init__(self, replicator: Replicator) -> None:
        self._replicator = replicator
        self._stream: UpdateStream = replicator.updates(policy="conflate")
        self._members: dict[BrokerSink, PublisherCore] = {}
        self._pumps: dict[float, asyncio.Task[None]] = {}
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting: asyncio.Future[bool] | None = None

    @classmethod
    def join(cls, replicator: Replicator, sink: BrokerSink, core: PublisherCore) -> _SharedUpdates:
        """The replicator's shared updates (made on first use), with ``sink``'s
        core among those offered every update from now on, and a pump for its
        ``linger`` running."""
        shared = cls._of.get(replicator)
        if shared is None:
            shared = cls._of[replicator] = cls(replicator)
        shared._members[sink] = core
        linger = sink.options.linger
        if linger not in shared._pumps:
            shared._pumps[linger] = asyncio.create_task(
                shared._pump(linger), name=f"orderbook-sink-pump-{linger:g}s")
        return shared

    async def ended(self) -> None:
        """Until the replicator's updates end (it closed or failed)."""
        await asyncio.shield(self._ended)

    async def leave(self, sink: BrokerSink) -> None:
        """``sink`` no longer takes updates; its pump stops if no other sink
        shares its ``linger``; the last one to leave detaches the consumer."""
        self._members.pop(sink, None)
        linger = sink.options.linger
        if all(other.options.linger != linger for other in self._members):
            pump = self._pumps.pop(linger, None)
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        if not self._members:
            if self._of.get(self._replicator) is self:
                del self._of[self._replicator]
            await self._stream.aclose()

    async def _pump(self, linger: float) -> None:
        """Once per ``linger``: take everything pending at once (:meth:`pull`),
        send each sink's next batch (those of this ``linger``), then sleep
        ``linger`` while the next batches gather.  When nothing is pending,
        wait for an update (or a :meth:`nudge`: a connection with snapshots
        to send) and hold it ``linger`` first.

        So under load the pump is woken once per ``linger`` by its own timer
        (not per socket read, not per update), and an update waits at most
        ``linger`` before it is offered and sent.  Costs O(1) per update
        besides the cores' :meth:`~PublisherCore.offer` and the encoding of
        what is sent.  Ends (and ends :meth:`ended`) with the replicator's
        updates.
        """
        try:
            while True:
                group = [(sink, core) for sink, core in self._members.items()
                         if sink.options.linger == linger]
                if not self.pull() and not any(len(core) for _, core in group):
                    if not await self.wait():
                        break
                    if linger:
                        await asyncio.sleep(linger)  # the first of a burst: hold it while the rest merges
                    continue
                for sink, core in group:
                    sink._send(core)
                if linger or any(len(core) for _, core in group):  # the next batch gathers meanwhile
                    await asyncio.sleep(max(linger, _RETRY_SEND))
        except OrderBookError as exc:  # the replicator failed: it says why itself
            log.info("sinks: the replicator stopped (%s)", exc)
        except Exception as exc:  # a bug: the sinks' run() raises it rather than hang
            log.exception("sinks: the pump of linger %g s failed", linger)
            if not self._ended.done():
                self._ended.set_exception(exc)
            return
        if not self._ended.done():
            self._ended.set_result(None)

    def pull(self) -> bool:
        """Offer every pending update to every member's core; True if there
        was any.  O(pending x members) besides the cores' offers."""
        updates = self._stream.drain()
        if not updates:
            return False
        for sink, core in self._members.items():
            for update in updates:
                sink._offer(core, update)
        return True

    async def wait(self) -> bool:
        """Until updates are pending or :meth:`nudge` was called (True), or the
        replicator's updates ended (False; raises its failure if it failed).
        Any number of pumps may wait at once: they share one wait."""
        waiting = self._waiting
        if waiting is None or waiting.done():
            waiting = self._waiting = asyncio.ensure_future(self._stream.wait())
        return await asyncio.shield(waiting)

    def nudge(self) -> None:
        """Wake the pumps waiting in :meth:`wait` (a sink has something to send)."""
        self._stream.nudge()
