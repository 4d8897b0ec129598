"""``Engine``: the whole multi-symbol replication protocol, sans-I/O.

No asyncio, no sockets, no clock: every input carries the current time
``now`` (integer microseconds on the driver's clock), and every input returns
the :data:`EngineAction` list the driver must carry out, in order.  The live
:class:`~orderbook.live.replicator.Replicator` and the capture replayer drive
the same engine, so a recorded session replays to the same books, statuses
and counters.

Inputs::

    connected(now)                   a WebSocket connection opened
                                     -> [Subscribe(every stream)]
    subscribed(streams, now)         those streams were subscribed
                                     -> [FetchSnapshot(...)] for each symbol waiting
    receive(frames, now)             raw frames (one, or a socket read's batch)
                                     -> [BookUpdated per changed symbol, ...]
    snapshot(ticket, body, now)      the answer to FetchSnapshot(ticket)
    snapshot_failed(ticket, now, error, retry_after)
                                     the fetch failed (after the REST retries)
    disconnected(now, reason)        the connection dropped: every book is void
    failed(now, detail)              the driver gave up for good
    tick(now)                        time passed: call at (or after) deadline()

Outputs: :class:`Subscribe`, :class:`FetchSnapshot` (go now; when it is not
yet time, the engine holds the schedule and :meth:`Engine.deadline` says when
to tick), :class:`BookUpdated` (one per symbol per input, frames in order),
:class:`~orderbook.sync.symbol.BookInvalidated` and :class:`StatusChanged`.

The engine owns: routing frames to symbols, attributing bad frames,
snapshot retry scheduling (:mod:`orderbook.sync.retry`), the bookTicker
cross-check, audits with a shadow book, staleness and pruning.  It logs what
an operator must know (logger ``orderbook.engine``); logging is its only
side effect.

Invariant (besides :class:`~orderbook.sync.symbol.SymbolSync`'s): once
subscribed on a live connection, a symbol that is not synced has a snapshot
fetch outstanding or a retry scheduled; a ticket from an earlier connection is
never applied (counted in ``late_snapshots``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..core.book import OrderBook
from ..errors import MalformedMessage, OrderBookError, UnknownSymbol, UsageError
from ..protocol.markets import close_matches
from ..protocol.streams import depth_stream, ticker_stream
from ..protocol.wire import BookTickerEvent, DepthEvent, Snapshot, StreamReply, parse_frame, parse_snapshot
from .actions import (
    BookUpdated,
    EngineAction,
    EngineCounters,
    EngineOptions,
    FetchSnapshot,
    Purpose,
    StatusChanged,
    Subscribe,
)
from .audit import (
    audit_frame,
    audit_snapshot,
    begin_audit,
    end_audit,
    next_to_audit,
    ticker_disagreement,
)
from .retry import plan_retry
from .timers import Timer, Timers
from .samples import Samples
from .status import Reason, Status
from .symbol import BookChanged, BookInvalidated, RequestSnapshot, SymbolSync, SyncState
from .track import Track

FrameHook = Callable[[Track, int], None]
"""Told a symbol's track and a frame's position after the engine handled it
(see :meth:`Engine.receive`)."""

__all__ = [  # the engine, and (from .actions) what it takes and returns
    "BookUpdated",
    "Engine",
    "EngineAction",
    "EngineCounters",
    "EngineOptions",
    "FetchSnapshot",
    "FrameHook",
    "Purpose",
    "StatusChanged",
    "Subscribe",
]

log = logging.getLogger("orderbook.engine")
_US = 1_000_000


@dataclass(slots=True)
class _Ticket:
    symbol: str
    purpose: Purpose
    connection: int


@dataclass(slots=True)
class _Latency:
    engine_to_receive: Samples = field(default_factory=Samples)
    gap_to_synced: Samples = field(default_factory=lambda: Samples(1024))
    reconnect_to_synced: Samples = field(default_factory=lambda: Samples(1024))


class Engine:
    """Replicate ``symbols`` (see the module docstring for the protocol).

    Cost per depth frame when synced: one parse and one
    :meth:`~orderbook.core.book.OrderBook.apply_delta`, plus O(1) routing,
    with nothing allocated beyond the parsed frame.

    One class of about 450 lines, on purpose: it is the transition table of
    the whole protocol (each input method is a row, each private method a
    cell), and splitting it would scatter one state across classes.  What is
    not a transition lives beside it: the options and actions
    (:mod:`~orderbook.sync.actions`), per-symbol state
    (:mod:`~orderbook.sync.track`), retry plans (:mod:`~orderbook.sync.retry`),
    deadlines (:mod:`~orderbook.sync.timers`) and the checks
    (:mod:`~orderbook.sync.audit`).
    """

    def __init__(self, symbols: Iterable[str], options: EngineOptions = EngineOptions()) -> None:
        names = list(dict.fromkeys(symbols))
        if not names:
            raise UsageError("the engine needs at least one symbol")
        self.options = options
        self.counters = EngineCounters()
        self.latency = _Latency()
        self.rng = random.Random(options.seed)
        self.connected_now = False
        self._tracks: dict[str, Track] = {
            name: Track(SymbolSync(name, max_buffer=options.max_buffer)) for name in names
        }
        self._by_stream: dict[str, Track] = {}
        for track in self._tracks.values():
            self._by_stream[depth_stream(track.name, options.depth_stream)] = track
            if options.book_ticker:
                self._by_stream[ticker_stream(track.name)] = track
        self._connection = 0
        self._tickets: dict[int, _Ticket] = {}
        self._next_ticket = 1
        self._timers = Timers(self._timer_alive)
        self._housekeeping_at: int | None = None
        self._audit_at: int | None = None
        self._audit_cursor = 0
        self._prune_at: int | None = None
        self._failed: str | None = None

    # ------------------------------------------------------------ queries
    @property
    def symbols(self) -> list[str]:
        """The symbols replicated, in subscription order."""
        return list(self._tracks)

    @property
    def streams(self) -> list[str]:
        """Every stream the engine needs subscribed."""
        return list(self._by_stream)

    def track(self, symbol: str) -> Track:
        """The engine's state of ``symbol``; raises :class:`UnknownSymbol`.  O(1)."""
        found = self._tracks.get(symbol)
        if found is None:
            raise UnknownSymbol(symbol, close_matches(symbol, self._tracks))
        return found

    def tracks(self) -> Iterable[Track]:
        """Every symbol's state, in subscription order."""
        return self._tracks.values()

    def book(self, symbol: str) -> OrderBook:
        """The live book of ``symbol`` (always the same object).  O(1)."""
        return self.track(symbol).sync.book

    def status(self, symbol: str) -> Status:
        """``symbol``'s status.  O(1)."""
        return self.track(symbol).status()

    def wants(self, ticket: int) -> bool:
        """Whether an answer to ``ticket`` would still be used (it is not from
        an earlier connection, nor answered already).  O(1)."""
        return ticket in self._tickets

    def deadline(self) -> int | None:
        """The time (µs) by which :meth:`tick` must be called next, ``None`` if
        nothing is scheduled.  O(1) amortised."""
        candidates = [t for t in (self._housekeeping_at, self._audit_at, self._prune_at,
                                  self._timers.next()) if t is not None]
        return min(candidates) if candidates else None

    # ------------------------------------------------------------- inputs
    def connected(self, now: int) -> list[EngineAction]:
        """A connection opened: subscribe every stream (then call :meth:`subscribed`)."""
        self._connection += 1
        self.counters.connects += 1
        self.connected_now = True
        if self._housekeeping_at is None:
            self._housekeeping_at = now + self._housekeeping_period()
        if self.options.audit_every is not None and self._audit_at is None:
            self._audit_at = now + int(self.options.audit_every * _US)
        if self.options.prune_every is not None and self._prune_at is None:
            self._prune_at = now + int(self.options.prune_every * _US)
        return [Subscribe(tuple(self._by_stream))]

    def subscribed(self, streams: Sequence[str], now: int) -> list[EngineAction]:
        """``streams`` were subscribed: fetch the snapshots their symbols need."""
        out: list[EngineAction] = []
        for stream in streams:
            track = self._by_stream.get(stream)
            if track is None or track.subscribed:
                continue
            track.subscribed = True
            track.refused = None
            if track.last_frame_us is None:
                track.last_frame_us = now
            before = track.status()
            if not track.started:
                track.started = True
                self._carry_out(track, track.sync.start(), now, out)
            elif track.sync.awaiting_snapshot:
                self._request(track, now, out)
            self._status_check(track, before, out)
        return out

    def receive(self, frames: str | bytes | Sequence[str | bytes], now: int,
                each: FrameHook | None = None) -> list[EngineAction]:
        """Raw WebSocket frames, in receive order, read at ``now`` (the hot path).

        ``each``, if given, is called as ``each(track, position)`` right after
        every frame of a replicated symbol (depth, bookTicker, or a bad frame
        naming it) was handled, ``position`` its index in ``frames``: a
        caller that must see the book after every frame (an on-change export)
        can still feed a batch.  Without it the hot path pays one test."""
        if isinstance(frames, (str, bytes)):
            frames = (frames,)
        out: list[EngineAction] = []
        changed: dict[str, BookUpdated] = {}
        self.counters.frames += len(frames)
        tracks = self._tracks
        newest: DepthEvent | None = None
        for position, raw in enumerate(frames):
            try:
                event = parse_frame(raw, validate_levels=False)
            except MalformedMessage as exc:
                track = self._bad_frame(exc, raw, now, changed, out)
                if each is not None and track is not None:
                    each(track, position)
                continue
            if type(event) is DepthEvent:
                track = tracks.get(event.symbol)
                if track is None:
                    continue
                newest = event
                track.frames += 1
                track.last_frame_us = now
                try:
                    actions = track.sync.apply_frame(event)
                    if actions is None:  # applied, nothing else happened: the hot path
                        update = changed.get(track.name)
                        if update is None:
                            changed[track.name] = BookUpdated(track.name, [event], now)
                        elif update.frames is not None:
                            update.frames.append(event)
                        else:  # a snapshot rebuilt the book earlier in this input
                            self._flush(track, changed, out)
                            changed[track.name] = BookUpdated(track.name, [event], now)
                    elif actions:
                        self._flush(track, changed, out)
                        before = track.status()
                        self._carry_out(track, actions, now, out)
                        self._status_check(track, before, out)
                    if track.watched:
                        self._watch(track, event, now, changed, out)
                except Exception:  # a bug: keep the feed alive and make it loud
                    self.counters.internal_errors += 1
                    log.exception("%s: internal error while handling a frame", track.name)
                if each is not None:
                    each(track, position)
            elif type(event) is BookTickerEvent:
                track = tracks.get(event.symbol)
                if track is not None:
                    track.ticker = event
                    track.watch()
                    self._flush(track, changed, out)
                    self._check_ticker(track, now, out)
                    if each is not None:
                        each(track, position)
            elif type(event) is StreamReply and event.error is not None:
                self._refused(event, raw, now, changed, out)
        if newest is not None:  # one latency sample per input: the freshest frame
            self.latency.engine_to_receive.add(now - newest.engine_time)
        out.extend(changed.values())
        return out

    def snapshot(self, ticket: int, body: bytes | str | object, now: int) -> list[EngineAction]:
        """The body of the answer to ``FetchSnapshot(ticket)`` (raw JSON, the
        decoded object, or a parsed :class:`~orderbook.protocol.wire.Snapshot`)."""
        out: list[EngineAction] = []
        entry = self._answered(ticket)
        if entry is None:
            return out
        track = self._tracks[entry.symbol]
        try:
            snap = body if isinstance(body, Snapshot) else parse_snapshot(
                body if not isinstance(body, (bytes, str)) else _loads(body), track.name)
        except MalformedMessage as exc:
            if entry.purpose is Purpose.AUDIT:
                self._end_audit(track, why=f"unusable audit snapshot: {exc}")
                return out
            log.warning("%s: unusable snapshot: %s", track.name, exc)
            before = track.status()
            track.ticket = None
            track.failures += 1
            self._carry_out(track, track.sync.bad_snapshot(exc), now, out)
            self._status_check(track, before, out)
            return out
        if entry.purpose is Purpose.AUDIT:
            self._audit_snapshot(track, snap, now, out)
            return out
        track.ticket = None
        before = track.status()
        bad_before = track.sync.counters.bad_snapshots
        actions = track.sync.receive_snapshot(snap, limit=self.options.snapshot_limit)
        if track.sync.counters.bad_snapshots > bad_before:
            track.failures += 1
            why = next((a.detail for a in actions if isinstance(a, RequestSnapshot)), "refused")
            log.warning("%s: snapshot %d refused: %s", track.name, snap.last_update_id, why)
        self._carry_out(track, actions, now, out)
        if track.ticker is not None:
            self._check_ticker(track, now, out)
        self._status_check(track, before, out)
        return out

    def snapshot_failed(self, ticket: int, now: int, error: OrderBookError | str,
                        retry_after: float | None = None) -> list[EngineAction]:
        """``FetchSnapshot(ticket)`` could not be answered (``error``; the
        venue's ``Retry-After`` seconds if it gave one)."""
        out: list[EngineAction] = []
        entry = self._answered(ticket)
        if entry is None:
            return out
        track = self._tracks[entry.symbol]
        if entry.purpose is Purpose.AUDIT:
            self._end_audit(track, why=f"audit snapshot failed: {error}")
            return out
        log.warning("%s: snapshot request failed: %s", track.name, error)
        before = track.status()
        track.ticket = None
        track.failures += 1
        track.last_reason = f"snapshot request failed: {error}"
        self._request(track, now, out, retry_after=retry_after)
        self._status_check(track, before, out)
        return out

    def disconnected(self, now: int, reason: str = "") -> list[EngineAction]:
        """The connection dropped: every book is void until re-synced."""
        out: list[EngineAction] = []
        if not self.connected_now and not self._tickets:
            return out
        self.connected_now = False
        self.counters.disconnects += 1
        self._tickets.clear()
        self._timers.clear()
        for track in self._tracks.values():
            before = track.status()
            track.subscribed = False
            track.ticket = None
            track.retry = None
            track.audit = None
            track.audit_deadline = None
            track.stale = False
            if track.started:
                self._carry_out(track, track.sync.connection_lost(), now, out)
            self._status_check(track, before, out)
        return out

    def failed(self, now: int, detail: str) -> list[EngineAction]:
        """The driver gave up for good (e.g. the WebSocket never connected):
        every symbol reports :attr:`Reason.FAILED`."""
        out: list[EngineAction] = []
        self._failed = detail
        for track in self._tracks.values():
            before = track.status()
            track.error = (Reason.FAILED, detail)
            track.retry = None
            self._status_check(track, before, out)
        return out

    def tick(self, now: int) -> list[EngineAction]:
        """Time passed: release due retries, run housekeeping, audits and prunes."""
        out: list[EngineAction] = []
        for _, name, kind in self._timers.due(now):
            track = self._tracks[name]
            if kind is Timer.AUDIT:
                self._end_audit(track, why="the replica never reached the audit snapshot's update id")
            elif track.retry is not None and track.retry.due(now, track.frames):
                self._release(track, now, out)
        if self._housekeeping_at is not None and now >= self._housekeeping_at:
            self._housekeeping_at = now + self._housekeeping_period()
            self._housekeeping(now)
        if self._prune_at is not None and now >= self._prune_at:
            assert self.options.prune_every is not None
            self._prune_at = now + int(self.options.prune_every * _US)
            self.counters.prunes += 1
            for track in self._tracks.values():
                if track.sync.state is SyncState.SYNCED:
                    self.counters.levels_pruned += track.sync.book.prune()
        if self._audit_at is not None and now >= self._audit_at:
            assert self.options.audit_every is not None
            self._audit_at = now + int(self.options.audit_every * _US)
            self._start_audit(now, out)
        return out

    # ----------------------------------------------------------- internals
    def _watch(self, track: Track, event: DepthEvent, now: int, changed: dict[str, BookUpdated],
               out: list[EngineAction]) -> None:
        """After a frame of a symbol with something to watch (a stale flag, a
        retry waiting for frames, a ticker to compare, an audit's shadow)."""
        if track.stale:
            track.stale = False
            log.info("%s: frames again after a stale period", track.name)
        if track.ticker is not None:
            self._check_ticker(track, now, out, changed)
        if track.retry is not None and track.retry.due(now, track.frames):
            self._release(track, now, out)
        if track.audit is not None:
            self._audit_frame(track, event, now, out)
        track.watch()

    def _answered(self, ticket: int) -> _Ticket | None:
        """The request ``ticket`` answers, if still wanted (else counted late)."""
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry.connection != self._connection:
            self.counters.late_snapshots += 1
            return None
        return entry

    def _flush(self, track: Track, changed: dict[str, BookUpdated], out: list[EngineAction]) -> None:
        """Emit ``track``'s pending change before anything else about it."""
        update = changed.pop(track.name, None)
        if update is not None:
            out.append(update)

    def _carry_out(self, track: Track, actions: list[BookChanged | BookInvalidated | RequestSnapshot],
                   now: int, out: list[EngineAction]) -> None:
        for action in actions:
            if type(action) is BookChanged:
                if action.event is None:
                    self._synced(track, now)
                    out.append(BookUpdated(track.name, None, now))
                else:
                    out.append(BookUpdated(track.name, [action.event], now))
            elif type(action) is BookInvalidated:
                self._invalidated(track, action, now)
                out.append(action)
            elif type(action) is RequestSnapshot:
                track.last_reason = action.detail or str(action.reason)
                track.last_cause = action.reason
                self._request(track, now, out)

    def _synced(self, track: Track, now: int) -> None:
        track.failures = 0
        track.error = None
        track.ever_synced = True
        track.retry = None
        if track.invalidated_at is not None:
            target = (self.latency.reconnect_to_synced if track.invalidated_by_reconnect
                      else self.latency.gap_to_synced)
            target.add((now - track.invalidated_at) / _US)
            track.invalidated_at = None

    def _invalidated(self, track: Track, action: BookInvalidated, now: int) -> None:
        reconnect = action.reason is Reason.CONNECTION_LOST
        if track.invalidated_at is None:
            track.invalidated_at = now
            track.invalidated_by_reconnect = reconnect
        track.audit = None
        track.audit_deadline = None
        track.ticker = None
        if reconnect:
            log.debug("%s: book void (connection lost)", track.name)
        elif action.reason is Reason.STALE_SNAPSHOT:
            log.info("%s: %s: %s", track.name, action.reason, action.detail)
        else:
            log.warning("%s: book invalidated: %s: %s", track.name, action.reason, action.detail)

    def _request(self, track: Track, now: int, out: list[EngineAction],
                 retry_after: float | None = None) -> None:
        """Carry out a snapshot request: fetch now, or schedule the retry."""
        if not track.subscribed or self._failed is not None or track.ticket is not None:
            return  # asked again once subscribed on the (next) connection
        if track.retry is not None:
            return  # already scheduled
        policy = self.options.snapshot_retry
        schedule = plan_retry(policy, now=now, stale_streak=track.sync.stale_streak,
                              failures=track.failures, frames=track.frames,
                              retry_after=retry_after, rng=self.rng)
        if schedule is None:
            self._fetch(track, out)
            return
        if schedule.gave_up:
            detail = f"{schedule.reason}; last: {track.last_reason}"
            if track.error is None:
                log.error("%s: giving up for %.0f s: %s", track.name,
                          (schedule.not_before - now) / _US, detail)
            track.error = (Reason.GAVE_UP, detail)
        track.retry = schedule
        track.watch()
        self._schedule(track)

    def _schedule(self, track: Track) -> None:
        """Tick at both moments the retry may fall due without a frame: when
        the backoff ends (enough frames may have come by then) and when the
        wait for frames ends."""
        retry = track.retry
        assert retry is not None
        for at in sorted({retry.not_before, retry.next_deadline(track.frames)}):
            self._timers.push(at, track.name, Timer.RETRY)

    def _timer_alive(self, at: int, symbol: str, kind: Timer) -> bool:
        track = self._tracks[symbol]
        return track.audit_deadline == at if kind is Timer.AUDIT else track.retry is not None

    def _release(self, track: Track, now: int, out: list[EngineAction]) -> None:
        track.retry = None
        if track.sync.awaiting_snapshot and track.subscribed:
            self._fetch(track, out)

    def _fetch(self, track: Track, out: list[EngineAction], purpose: Purpose = Purpose.SYNC) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        self._tickets[ticket] = _Ticket(track.name, purpose, self._connection)
        if purpose is Purpose.SYNC:
            track.ticket = ticket
            track.snapshot_requests += 1
        out.append(FetchSnapshot(track.name, self.options.snapshot_limit, ticket, purpose))
        return ticket

    def _status_check(self, track: Track, before: Status, out: list[EngineAction]) -> None:
        after = track.status()
        if after is not before:
            reason, detail = track.why()
            out.append(StatusChanged(track.name, after, reason, detail))

    def _bad_frame(self, error: MalformedMessage, raw: str | bytes, now: int,
                   changed: dict[str, BookUpdated], out: list[EngineAction]) -> Track | None:
        """A frame that cannot be read: the symbol it names resyncs (returned)."""
        track = self._tracks.get(error.symbol) if error.symbol else None
        log.warning("malformed frame from the venue (%s): %.200r", error, raw)
        if track is None:
            self.counters.unattributed_bad_frames += 1
            return None
        self._flush(track, changed, out)
        before = track.status()
        self._carry_out(track, track.sync.receive_bad_frame(error), now, out)
        self._status_check(track, before, out)
        return track

    def _refused(self, reply: StreamReply, raw: str | bytes, now: int,
                 changed: dict[str, BookUpdated], out: list[EngineAction]) -> None:
        """An error reply.  One naming a stream of ours means that symbol gets
        no frames: it reports an error until the next connection subscribes it."""
        self.counters.stream_errors += 1
        log.error("the venue refused a request: %s (%.200r)", reply.error, raw)
        track = self._by_stream.get(reply.stream) if reply.stream else None
        if track is not None:
            self._flush(track, changed, out)
            before = track.status()
            track.refused = str(reply.error)
            self._status_check(track, before, out)

    def _check_ticker(self, track: Track, now: int, out: list[EngineAction],
                      changed: dict[str, BookUpdated] | None = None) -> None:
        """Compare the touch with a bookTicker at exactly the book's update id."""
        detail = ticker_disagreement(track)
        if detail is None:
            return
        if changed is not None:
            self._flush(track, changed, out)
        before = track.status()
        self._carry_out(track, track.sync.invalidate(Reason.TICKER_MISMATCH, detail), now, out)
        self._status_check(track, before, out)

    # ---- audits
    def _start_audit(self, now: int, out: list[EngineAction]) -> None:
        track, self._audit_cursor = next_to_audit(list(self._tracks.values()), self._audit_cursor)
        if track is not None:
            begin_audit(track, self.options.max_buffer, self.counters)
            self._fetch(track, out, Purpose.AUDIT)

    def _audit_snapshot(self, track: Track, snap: Snapshot, now: int, out: list[EngineAction]) -> None:
        deadline = now + int(self.options.audit_timeout * _US)
        self._diverged(track, audit_snapshot(track, snap, self.options.snapshot_limit, deadline,
                                             self.counters), now, out)
        if track.audit_deadline is not None:
            self._timers.push(track.audit_deadline, track.name, Timer.AUDIT)

    def _audit_frame(self, track: Track, event: DepthEvent, now: int, out: list[EngineAction]) -> None:
        self._diverged(track, audit_frame(track, event, self.counters), now, out)

    def _diverged(self, track: Track, detail: str | None, now: int, out: list[EngineAction]) -> None:
        if detail is None:
            return
        log.error("%s: %s; resyncing", track.name, detail)
        before = track.status()
        self._carry_out(track, track.sync.invalidate(Reason.AUDIT_DIVERGENCE, detail), now, out)
        self._status_check(track, before, out)

    def _end_audit(self, track: Track, *, why: str) -> None:
        if end_audit(track, self.counters):
            log.info("%s: audit skipped: %s", track.name, why)

    # ---- housekeeping
    def _housekeeping_period(self) -> int:
        return int(min(1.0, self.options.stale_after / 2) * _US)

    def _housekeeping(self, now: int) -> None:
        """Flag synced symbols whose feed went silent on a live connection."""
        if not self.connected_now:
            return
        stale_after = int(self.options.stale_after * _US)
        for track in self._tracks.values():
            if (track.sync.state is SyncState.SYNCED and not track.stale
                    and track.last_frame_us is not None and now - track.last_frame_us > stale_after):
                track.stale = True
                track.watch()
                track.staleness_alerts += 1
                log.warning("%s: no frame for %.1f s on a live connection", track.name,
                            (now - track.last_frame_us) / _US)


def _loads(body: bytes | str) -> object:
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"snapshot body is not JSON: {exc}") from exc
