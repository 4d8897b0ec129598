"""Session replay: a recorded live session fed to the engine input for input.

Our recorder (:mod:`orderbook.record.recorder`) writes every input the live
:class:`~orderbook.sync.engine.Engine` was given, with its time: connects,
subscriptions, frames, snapshot answers (with the ``ticket`` of the request
they answer) and failures, disconnects, timer ticks, a failure for good.  Its
header names the engine's symbols, in order, and its whole options, the
retry jitter's seed among them (:func:`engine_header`).  A session replay
builds the same engine and feeds it the same inputs in the same order::

    event        engine input
    -----------  ------------------------------------------------
    connect      connected(ts)
    subscribed   subscribed(streams, ts)
    ws           receive(frames, ts): the frames of one socket read
    rest         snapshot(ticket, body, ts)
    rest_error   snapshot_failed(ticket, ts, error, retry_after)
    disconnect   disconnected(ts, reason)
    tick         tick(ts)
    failed       failed(ts, detail)

The engine is deterministic, so it takes every decision it took live: the
same tickets, retries, audits, bookTicker checks, stale flags and prunes.
The books, statuses and counters end equal to the live engine's
(:func:`~orderbook.record.result.engine_state`), even for the options a
replay that follows the file (:mod:`orderbook.record.replay`) cannot
reproduce (audits, pruning, retry timing).  The engine's actions are not
carried out: their answers are in the file.

Consecutive ``ws`` events with the same time (one socket read) are fed as
one batch, as live, unless an observer or a clock wants every frame.
``at`` / ``at_time`` as in :func:`~orderbook.record.replay.replay_capture`
(frames and snapshots beyond ``at`` are not fed).  Bad events are counted in
:attr:`~orderbook.record.result.ReplayResult.bad_events` and skipped.
Cost: O(events), as a replay that follows the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from ..errors import MalformedMessage, UsageError
from ..protocol.wire import DepthEvent, parse_frame, parse_snapshot
from ..sync.actions import EngineAction, EngineOptions
from ..sync.engine import Engine
from ..sync.policy import Backoff, SnapshotRetryPolicy
from ..sync.track import Track
from .format import (
    BadEvent,
    CaptureEvent,
    CaptureHeader,
    ConnectEvent,
    DisconnectEvent,
    FailedEvent,
    RestErrorEvent,
    RestEvent,
    SubscribedEvent,
    TickEvent,
    WsEvent,
)
from .result import ReplayResult

__all__ = ["ENGINE_KEY", "SessionReplay", "engine_header", "frame_beyond", "session_engine"]

ENGINE_KEY = "engine"
"""The header option holding the recorded engine (see :func:`engine_header`)."""

Observer = Callable[[Engine, list[EngineAction], int], None]
"""Told the engine, the actions of each of its inputs and the input's time (µs)."""


def frame_beyond(raw: str | bytes, at: int) -> bool:
    """Whether ``raw`` is a depth frame ending beyond update id ``at`` (time
    travel does not feed it; anything unreadable is fed, for the engine to
    count).  One parse."""
    try:
        parsed = parse_frame(raw, validate_levels=False)
    except MalformedMessage:
        return False
    return type(parsed) is DepthEvent and parsed.last_id > at


def engine_header(engine: Engine) -> dict[str, Any]:
    """The header option :data:`ENGINE_KEY` of a session recording:
    ``{"symbols": [...], "options": {...}}``, the engine's symbols in order
    and its options as JSON (nested policies as objects).  O(symbols)."""
    return {"symbols": engine.symbols, "options": asdict(engine.options)}


def session_engine(header: CaptureHeader | None) -> tuple[list[str], EngineOptions] | None:
    """The symbols and options of the engine a session recording's header
    names, ``None`` for any other file.  Raises
    :class:`~orderbook.errors.MalformedMessage` when the header names an
    engine that cannot be built (a damaged or foreign header).  O(symbols)."""
    recorded = header.options.get(ENGINE_KEY) if header is not None else None
    if recorded is None:
        return None
    try:
        symbols, options = recorded["symbols"], dict(recorded["options"])
        if type(symbols) is not list or not symbols or not all(type(s) is str for s in symbols):
            raise TypeError(f"symbols must be a list of names, got {symbols!r:.80}")
        retry = dict(options.pop("snapshot_retry"))
        retry["backoff"] = Backoff(**retry["backoff"])
        return symbols, EngineOptions(**options, snapshot_retry=SnapshotRetryPolicy(**retry))
    except (KeyError, TypeError, ValueError, UsageError) as exc:
        raise MalformedMessage(f"the header's recorded engine is unusable: {exc}") from None


class SessionReplay:
    """Feeds a session recording's events to a fresh :class:`Engine` of
    ``symbols`` with ``options`` (see the module docstring).

    The same interface as :class:`~orderbook.record.replay.Replay`:
    :meth:`run`, :meth:`step`, :attr:`result`, :attr:`stopped`, and the
    optional :attr:`observer` and :attr:`clock`.  Not reusable across files.
    """

    def __init__(self, symbols: Iterable[str], options: EngineOptions, *,
                 at: int | None = None, at_time: int | None = None,
                 observer: Observer | None = None, header: CaptureHeader | None = None) -> None:
        self.engine: Engine = Engine(symbols, options)
        self.result = ReplayResult(self.engine, header, exact=True)
        self.at = at
        self.at_time = at_time
        self.observer = observer
        """Told every engine input's actions (see :data:`Observer`)."""
        self.clock: Callable[[int], None] | None = None
        """Told the time of every event before it is fed."""
        self.on_frame: Callable[[Track, int], None] | None = None
        """Told each frame's track and receive time after the engine handled
        it; set, the frames' actions are not shown to the :attr:`observer`
        (as :attr:`Replay.on_frame <orderbook.record.replay.Replay.on_frame>`)."""
        self.stopped = False
        """True once an event beyond ``at_time`` ended the replay."""
        self._batch_ts = 0
        self._handlers: dict[type, Callable[[Any], None]] = {
            WsEvent: self.ws, RestEvent: self.rest, RestErrorEvent: self.rest_error,
            ConnectEvent: self.connect, SubscribedEvent: self.subscribed,
            DisconnectEvent: self.disconnect, TickEvent: self.tick, FailedEvent: self.failed,
            BadEvent: self.bad, CaptureHeader: self.header,
        }

    # ------------------------------------------------------------ running
    def run(self, events: Iterable[CaptureEvent]) -> ReplayResult:
        """Feed every event until the end or ``at_time``; return the result."""
        if (self.clock is not None or self.at is not None
                or (self.observer is not None and self.on_frame is None)):
            step = self.step
            for event in events:
                if not step(event):
                    break
            return self.result
        result = self.result
        limit = self.at_time if self.at_time is not None else 2**63
        batch: list[str | bytes] = []
        batch_ts = -1
        for event in events:
            if type(event) is WsEvent:
                ts = event.ts
                if ts > limit:
                    self.stopped = True
                    break
                if ts != batch_ts and batch:
                    self._receive(batch, batch_ts)
                    batch = []
                batch.append(event.raw)
                batch_ts = ts
                result.events += 1
                continue
            if batch:
                self._receive(batch, batch_ts)
                batch = []
            if not self.step(event):
                break
        if batch:
            self._receive(batch, batch_ts)
        return result

    def step(self, event: CaptureEvent) -> bool:
        """Feed one event (telling :attr:`clock` its time first); False (and
        nothing fed) when it lies beyond ``at_time``, which ends the replay."""
        ts = getattr(event, "ts", None)
        if type(ts) is int and type(event) is not CaptureHeader:
            if self.at_time is not None and ts > self.at_time:
                self.stopped = True
                return False
            if self.clock is not None:
                self.clock(ts)
        self._handlers[type(event)](event)
        return True

    # ----------------------------------------------------- one per kind
    def ws(self, event: WsEvent) -> None:
        """A WebSocket message: ``receive`` (unless beyond ``at``)."""
        if self.at is not None and frame_beyond(event.raw, self.at):
            self._counted(event.ts)
            return
        if self.on_frame is not None:
            self._batch_ts = event.ts
            self.engine.receive(event.raw, event.ts, self._each)
            self._counted(event.ts)
            return
        self._fed(self.engine.receive(event.raw, event.ts), event.ts)

    def rest(self, event: RestEvent) -> None:
        """A depth answer: ``snapshot`` for its ticket."""
        if event.ticket is None:
            self.result.bad_events += 1  # not from our recorder: nothing says what it answers
            return
        body = event.body
        if self.at is not None:
            try:
                body = parse_snapshot(body, event.query.get("symbol") if type(event.query) is dict
                                      else None)
            except MalformedMessage:
                pass  # the engine refuses it as live did
            else:
                if body.last_update_id > self.at:
                    self._counted(event.ts)
                    return
        self._fed(self.engine.snapshot(event.ticket, body, event.ts), event.ts)

    def rest_error(self, event: RestErrorEvent) -> None:
        """A failed depth request: ``snapshot_failed`` for its ticket."""
        self._fed(self.engine.snapshot_failed(event.ticket, event.ts, event.error,
                                              event.retry_after), event.ts)

    def connect(self, event: ConnectEvent) -> None:
        """A connection opened: ``connected``."""
        self._fed(self.engine.connected(event.ts), event.ts)

    def subscribed(self, event: SubscribedEvent) -> None:
        """Streams subscribed: ``subscribed``."""
        self._fed(self.engine.subscribed(event.streams, event.ts), event.ts)

    def disconnect(self, event: DisconnectEvent) -> None:
        """The connection dropped: ``disconnected``."""
        self._fed(self.engine.disconnected(event.ts, event.reason), event.ts)

    def tick(self, event: TickEvent) -> None:
        """The engine's timer fired: ``tick``."""
        self._fed(self.engine.tick(event.ts), event.ts)

    def failed(self, event: FailedEvent) -> None:
        """The replicator failed for good: ``failed``."""
        self._fed(self.engine.failed(event.ts, event.detail), event.ts)

    def bad(self, event: BadEvent) -> None:
        """An event with unusable fields: counted, skipped."""
        self.result.bad_events += 1

    def header(self, event: CaptureHeader) -> None:
        """A header: no input."""
        if self.result.header is None:
            self.result.header = event

    # ---------------------------------------------------------- internals
    def _receive(self, batch: list[str | bytes], ts: int) -> None:
        """One socket read's frames (already counted)."""
        if self.on_frame is not None:
            self._batch_ts = ts
            self.engine.receive(batch, ts, self._each)
        else:
            self.engine.receive(batch, ts)
        self._seen(ts)

    def _each(self, track: Track, position: int) -> None:
        assert self.on_frame is not None
        self.on_frame(track, self._batch_ts)

    def _fed(self, actions: list[EngineAction], ts: int) -> None:
        self._counted(ts)
        if self.observer is not None:
            self.observer(self.engine, actions, ts)

    def _counted(self, ts: int) -> None:
        self.result.events += 1
        self._seen(ts)

    def _seen(self, ts: int) -> None:
        last = self.result.last_ts
        if last is None or ts > last:
            self.result.last_ts = ts
