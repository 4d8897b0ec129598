"""Replay: a capture fed to the same :class:`~orderbook.sync.engine.Engine` as live.

:func:`replay_capture` replays a session recorded by our recorder input for
input (:class:`~orderbook.record.session.SessionReplay`, to exactly the live
engine's state); any other capture -- version 1, the real recordings,
another recorder's -- is followed as described here (:class:`Replay`).
:func:`planned_replay` chooses.

The events of a capture (:mod:`orderbook.record.format`, read by
:mod:`orderbook.record.reader`), in file order and
with their recorded times as the engine's ``now``, become engine inputs, one
function per event kind (:class:`Replay`)::

    event          engine input
    -------------  ---------------------------------------------------------------
    first event    connected(ts), then subscribed(every stream, ts): a connection
                   is open (again after a disconnect) whenever an event arrives
    ws             receive(raw, ts): the frame's text, as live
    rest (depth)   snapshot(ticket, body, ts), answering the symbol's outstanding
                   FetchSnapshot; none outstanding: ignored (counted); a status
                   other than 200 is a failed attempt of the REST retries: the
                   request stays outstanding, as live
    disconnect     disconnected(ts, reason): every book void until re-synced
    (time)         tick(ts) before the first event at or after engine.deadline()

The file is authoritative: a recorded snapshot response answers the request
outstanding for its symbol.  So that one always is while a symbol waits, the
default options (:func:`replay_options`) retry at once (the client that
recorded the file had its own timing, which its responses already show) and
never give up.  A version 2 header supplies the engine's ``snapshot_limit``,
``depth_stream``, ``book_ticker`` and ``max_buffer``; otherwise the first
recorded request's ``limit`` is used (1000 if none is valid).  The symbols
are the header's streams' or, without them, every symbol a depth frame or a
depth response of the file names (:mod:`orderbook.record.survey`; a version
1 file learns them as it goes, see :func:`replay_capture`).

Consecutive ``ws`` events are fed as one batch (up to :data:`BATCH` frames,
never across an engine deadline or another event; ``now`` the last one's
time): the books and counters are the same as frame by frame, and a replay
runs ~25% faster.  With an observer (told the engine's actions after every
input) or a clock (told every event's time first) it goes frame by frame,
for callers that look at the books after every change (the export);
:meth:`Replay.step` feeds one event.

Time travel: ``at`` stops each symbol at its last update id ``<= at`` (frames
and snapshots beyond it are not fed; an aggregated frame spanning ``at``
cannot be split, so the book stops before it); ``at_time`` stops the whole
replay before the first event received after it (receive time, µs).

Bad input in the file never stops a replay: a frame that cannot be read is
a bad frame for the engine (as live); an event with unusable fields is
counted in :attr:`ReplayResult.bad_events`.  Deterministic: the same file
always gives the same books and counters.  Cost: O(events), ~2 µs per
depth frame with the C module.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import MalformedMessage, UsageError, shown
from ..protocol.streams import StreamKind, parse_stream
from ..protocol.wire import parse_snapshot
from ..sync.actions import Purpose
from ..sync.engine import BookUpdated, Engine, EngineAction, EngineOptions, FetchSnapshot, Subscribe
from ..sync.track import Track
from .format import (
    SESSION_EVENTS,
    BadEvent,
    CaptureEvent,
    CaptureHeader,
    DisconnectEvent,
    RestEvent,
    WsEvent,
)
from .reader import CaptureReader, events_of, read_header
from .result import ReplayResult
from .session import SessionReplay, frame_beyond, session_engine
from .survey import (
    DEFAULT_SNAPSHOT_LIMIT,
    FOLLOW_THE_FILE,
    Survey,
    depth_symbol,
    header_symbols,
    replay_options,
    request_limit,
    survey,
)

__all__ = [
    "BATCH",
    "FOLLOW_THE_FILE",
    "Replay",
    "ReplayResult",
    "Survey",
    "parse_time",
    "planned_replay",
    "replay_capture",
    "replay_options",
    "survey",
]

BATCH = 256
"""Most consecutive frames :meth:`Replay.run` feeds the engine at once."""
_NEVER = 2**63
# -------------------------------------------------------------------- driver
Observer = Callable[[Engine, list[EngineAction], int], None]
"""Told the engine, the actions of each of its inputs and the input's time (µs)."""
FrameObserver = Callable[[Track, int], None]
"""Told a frame's symbol (its track) and receive time (µs) after the engine handled it."""


class Replay:
    """Feeds capture events to an :class:`Engine`: one method per event kind.

    ``observer``, if given, is called after every engine input with the
    engine, the input's actions (``BookUpdated``, ``StatusChanged``, ...) and
    its time.  ``at`` /
    ``at_time`` as in :func:`replay_capture`.  Not reusable across files.
    """

    def __init__(self, symbols: Iterable[str], options: EngineOptions, *,
                 at: int | None = None, at_time: int | None = None,
                 observer: Observer | None = None, header: CaptureHeader | None = None) -> None:
        names = list(symbols)
        self.engine: Engine | None = Engine(names, options) if names else None
        self.result = ReplayResult(self.engine, header)
        self.at = at
        self.at_time = at_time
        self.observer = observer
        self.stopped = False
        """True once an event beyond ``at_time`` ended the replay."""
        self.clock: Callable[[int], None] | None = None
        """Told the receive time of every event before it is fed (a sampler
        on a time grid); set, the replay goes event by event."""
        self.on_frame: FrameObserver | None = None
        """Told each frame's symbol (its :class:`~orderbook.sync.track.Track`)
        and receive time (µs) right after the engine handled it.  Set, frames
        still go in batches and their actions are not shown to the
        :attr:`observer` (this sees every frame); other inputs' are."""
        self._times: list[int] = []
        self.learn: Callable[[str, int | None], None] | None = None
        """Told the symbol and request limit of every depth response before it
        is fed (a replay learning its symbols as it goes)."""
        self._connected = False
        self._tickets: dict[str, deque[int]] = {name: deque() for name in names}
        self._deadline: int | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            WsEvent: self.ws, RestEvent: self.rest, DisconnectEvent: self.disconnect,
            BadEvent: self.bad, CaptureHeader: self.header,
            **{kind: self.session_event for kind in SESSION_EVENTS},
        }

    # ------------------------------------------------------------ running
    def run(self, events: Iterable[CaptureEvent]) -> ReplayResult:
        """Feed every event (consecutive frames in batches, see the module
        docstring) until the end or ``at_time``; return the result."""
        if self.engine is None or self.at is not None:
            step = self.step
            for event in events:
                if not step(event):
                    break
            return self.result
        if self.clock is not None or (self.observer is not None and self.on_frame is None):
            return self._run_each(events)
        batch: list[str | bytes] = []
        times = self._times
        now = 0
        limit = self.at_time if self.at_time is not None else _NEVER
        handlers = self._handlers
        result = self.result
        fed = 0
        open_until = self._open_until()
        for event in events:
            kind = type(event)
            if kind is WsEvent:
                ts: int = event.ts  # type: ignore[union-attr, assignment]
                if ts > limit:
                    self.stopped = True
                    break
                if len(batch) >= BATCH:
                    self._receive(batch, now)
                    batch = []
                    open_until = self._open_until()
                if ts < open_until:  # connected, and before the engine's next deadline
                    batch.append(event.raw)  # type: ignore[union-attr]
                    times.append(ts)
                    now = ts
                    fed += 1
                    continue
            elif kind is RestEvent or kind is DisconnectEvent:
                ts = event.ts  # type: ignore[union-attr, assignment]
                if ts > limit:
                    self.stopped = True
                    break
            else:
                ts = now
            if batch:
                self._receive(batch, now)
                batch = []
            handlers[kind](event)
            open_until = self._open_until()
            now = ts
        if batch:
            self._receive(batch, now)
        result.events += fed
        if result.events:
            self._seen(now)
        return result

    def _open_until(self) -> int:
        """Frames received before this time (µs) may join a batch: the
        engine's next deadline while connected, never (-1) while not."""
        if not self._connected:
            return -1
        return self._deadline if self._deadline is not None else _NEVER

    def _run_each(self, events: Iterable[CaptureEvent]) -> ReplayResult:
        """:meth:`run` frame by frame, for an observer or a clock: what
        :meth:`step` does, with the common frame inlined."""
        engine, observer, clock, at_time = self.engine, self.observer, self.clock, self.at_time
        assert engine is not None
        receive, handlers, result = engine.receive, self._handlers, self.result
        latest: int | None = None
        for event in events:
            kind = type(event)
            if kind is WsEvent or kind is RestEvent or kind is DisconnectEvent:
                ts: int = event.ts  # type: ignore[union-attr, assignment]
                if at_time is not None and ts > at_time:
                    self.stopped = True
                    break
                if clock is not None:
                    clock(ts)
                deadline = self._deadline
                if kind is WsEvent and self._connected and (deadline is None or ts < deadline):
                    result.events += 1
                    if latest is None or ts > latest:
                        latest = ts
                    if self.on_frame is not None:
                        self._times.append(ts)
                        actions = receive(event.raw, ts, self._each)  # type: ignore[union-attr]
                        self._times.clear()
                    else:
                        actions = receive(event.raw, ts)  # type: ignore[union-attr]
                        if observer is not None:
                            observer(engine, actions, ts)
                    for action in actions:
                        if type(action) is not BookUpdated:
                            self._carry_out(actions, ts)
                            break
                    continue
            handlers[kind](event)
        if latest is not None:
            self._seen(latest)
        return result

    def step(self, event: CaptureEvent) -> bool:
        """Feed one event (telling :attr:`clock` its time first); False (and
        nothing fed) when it lies beyond ``at_time``, which ends the replay."""
        if type(event) is WsEvent or type(event) is RestEvent or type(event) is DisconnectEvent:
            if self.at_time is not None and event.ts > self.at_time:
                self.stopped = True
                return False
            if self.clock is not None:
                self.clock(event.ts)
        self._handlers[type(event)](event)
        return True

    # ----------------------------------------------------- one per kind
    def ws(self, event: WsEvent) -> None:
        """A WebSocket message: ``receive`` (after ``at`` filtering)."""
        self._event(event.ts)
        if self.engine is None:
            return
        if self.at is not None and frame_beyond(event.raw, self.at):
            return
        self._times.append(event.ts)
        self._receive(event.raw, event.ts)

    def rest(self, event: RestEvent) -> None:
        """A REST response: the answer to its symbol's outstanding request."""
        self._event(event.ts)
        symbol = depth_symbol(event)
        if symbol is None:
            return
        if self.learn is not None:
            self.learn(symbol, request_limit(event.query))  # may restart the replay
        if self.engine is None:
            return
        tickets = self._tickets.get(symbol)
        if tickets is None:
            return  # a symbol the engine does not replicate
        if event.purpose is Purpose.AUDIT:
            return  # an audit's snapshot: the book was synced, nothing asked for it here
        if not tickets:
            self.result.ignored_snapshots += 1  # late, duplicate or unasked: live discards it too
            return
        if event.status != 200:
            return  # one failed attempt of the REST retries: the request stays outstanding
        body = event.body
        if self.at is not None:
            try:
                body = parse_snapshot(body, symbol)
            except MalformedMessage:
                pass  # the engine refuses it as live would
            else:
                if body.last_update_id > self.at:
                    return
        self._input(self.engine.snapshot(tickets.popleft(), body, event.ts), event.ts)

    def disconnect(self, event: DisconnectEvent) -> None:
        """The connection dropped: every book void; the next event reconnects."""
        self.result.events += 1
        self._seen(event.ts)
        if self.engine is None or not self._connected:
            return
        self._connected = False
        for tickets in self._tickets.values():
            tickets.clear()
        self._input(self.engine.disconnected(event.ts, event.reason), event.ts)

    def session_event(self, event: CaptureEvent) -> None:
        """A session event (connect, subscribed, tick, ...): this replay infers
        those inputs from the frames and snapshots, so it feeds none."""

    def bad(self, event: BadEvent) -> None:
        """An event with unusable fields: counted, skipped."""
        self.result.bad_events += 1

    def header(self, event: CaptureHeader) -> None:
        """A header (the file's first line, or one of a concatenated file): no input."""
        if self.result.header is None:
            self.result.header = event

    # ---------------------------------------------------------- internals
    def _event(self, ts: int) -> None:
        """Count the event; open the connection and run due timers first."""
        self.result.events += 1
        self._seen(ts)
        if self.engine is None:
            return
        if not self._connected:
            self._connected = True
            self._input(self.engine.connected(ts), ts)
        if self._deadline is not None and ts >= self._deadline:
            self._input(self.engine.tick(ts), ts)

    def _seen(self, ts: int) -> None:
        last = self.result.last_ts
        if last is None or ts > last:
            self.result.last_ts = ts

    def _receive(self, raw: str | bytes | list[str | bytes], now: int) -> None:
        """Feed frames whose receive times are in ``_times`` (then emptied)."""
        assert self.engine is not None
        if self.on_frame is not None:
            actions = self.engine.receive(raw, now, self._each)
        else:
            actions = self.engine.receive(raw, now)
            if self.observer is not None:
                self.observer(self.engine, actions, now)
        self._times.clear()
        for action in actions:
            if type(action) is not BookUpdated:
                self._carry_out(actions, now)
                return

    def _each(self, track: Track, position: int) -> None:
        self.on_frame(track, self._times[position])  # type: ignore[misc]

    def _input(self, actions: list[EngineAction], now: int) -> None:
        if self.observer is not None:
            assert self.engine is not None
            self.observer(self.engine, actions, now)
        self._carry_out(actions, now)

    def _carry_out(self, actions: list[EngineAction], now: int) -> None:
        """Do what the engine asks: note fetch tickets, answer subscriptions;
        then learn its next deadline (the next event at or after it ticks)."""
        assert self.engine is not None
        for action in actions:
            if type(action) is FetchSnapshot:
                self._tickets[action.symbol].append(action.ticket)
            elif type(action) is Subscribe:
                self._input(self.engine.subscribed(action.streams, now), now)
        self._deadline = self.engine.deadline()


# ----------------------------------------------------------------- the call
class _Restart(Exception):
    """The file named a symbol (or a request limit) the engine was not built
    with: replay again from the start, knowing it."""


def replay_capture(
    source: str | Path | Iterable[CaptureEvent | dict[str, Any]], *,
    at: int | None = None, at_time: int | None = None, symbols: Iterable[str] | None = None,
    options: EngineOptions | None = None, observer: Observer | None = None,
) -> ReplayResult:
    """Replay a capture (a path, or typed events or decoded lines) through a
    fresh :class:`Engine` and return the result.

    A session recorded by our recorder is replayed exactly
    (:mod:`orderbook.record.session`: the live engine's inputs, to the live
    books, statuses and counters) unless ``symbols`` leaves some of its
    symbols out or ``options`` replaces its engine's; any other capture is
    followed (the module docstring).  ``at`` / ``at_time`` stop the books
    early; ``symbols`` limits the replay to those (default: every symbol of
    the file); ``options`` replaces :func:`replay_options`.  A path raises
    :class:`MalformedMessage` when the file is not a capture (see
    :mod:`orderbook.record.reader`) or holds no event,
    :class:`UsageError` when it does not exist.

    Cost: O(events), one pass over a file whose header lists its streams.
    A version 1 file learns its symbols as it goes: a symbol (or the first
    request's limit) the engine lacks restarts the replay from the start
    with it -- in practice within the first events, so about one pass.
    Any other file, and a version 1 file with an ``observer``, is surveyed
    first (:func:`survey`, a second pass).
    """
    allowed = list(symbols) if symbols is not None else None
    if not isinstance(source, (str, Path)):
        listed = list(events_of(source))
        found = _narrowed(survey(listed), allowed)
        replay = planned_replay(found, options=options, at=at, at_time=at_time, observer=observer)
        return replay.run(listed)
    header = read_header(source)
    found = Survey(header=header)
    if header is not None and header_symbols(header, found):
        return _checked(source, *_replay_file(source, _narrowed(found, allowed), options, at,
                                              at_time, observer))
    if header is not None or observer is not None:
        return _checked(source, *_replay_file(source, _narrowed(survey(source), allowed), options,
                                              at, at_time, observer))
    while True:  # version 1: learn the symbols on the way
        try:
            return _checked(source, *_replay_file(source, found, options, at, at_time, None,
                                                  learn=allowed or True))
        except _Restart:
            continue


def planned_replay(found: Survey, *, options: EngineOptions | None = None, at: int | None = None,
                   at_time: int | None = None,
                   observer: Observer | None = None) -> Replay | SessionReplay:
    """The replay of a surveyed capture: a :class:`SessionReplay` when its
    header names the recorded engine and neither ``options`` nor a narrower
    ``found.symbols`` changes it, else a :class:`Replay` following the file
    (with ``options``, default :func:`replay_options`).  Raises
    :class:`MalformedMessage` for a header naming an engine that cannot be built."""
    session = session_engine(found.header) if options is None else None
    if session is not None and set(found.symbols) >= set(session[0]):
        return SessionReplay(*session, at=at, at_time=at_time, observer=observer,
                             header=found.header)
    return Replay(found.symbols, options if options is not None else replay_options(found),
                  at=at, at_time=at_time, observer=observer, header=found.header)


def _narrowed(found: Survey, allowed: list[str] | None) -> Survey:
    """``found`` replicating only the symbols ``allowed`` (all when ``None``)."""
    if allowed is not None:
        found.symbols = [s for s in found.symbols if s in allowed]
    return found


def _replay_file(path: str | Path, found: Survey, options: EngineOptions | None, at: int | None,
                 at_time: int | None, observer: Observer | None,
                 learn: list[str] | bool = False) -> tuple[ReplayResult, bool]:
    """One pass over the file; with ``learn``, new symbols (those listed, or
    any when True) and the first request limit update ``found`` and raise
    :class:`_Restart`."""
    replay = planned_replay(found, options=options, at=at, at_time=at_time, observer=observer)
    reader = CaptureReader(path)
    if learn and isinstance(replay, Replay):
        def on_stream(stream: str) -> None:
            name = parse_stream(stream)
            if name is not None and name.kind is StreamKind.DEPTH:
                _learn(name.symbol, None, found, learn, options)

        reader.on_stream = on_stream
        replay.learn = lambda symbol, limit: _learn(symbol, limit, found, learn, options)
    result = replay.run(reader)
    return result, replay.stopped


def _learn(symbol: str, limit: int | None, found: Survey, learn: list[str] | bool,
           options: EngineOptions | None) -> None:
    if symbol not in found.symbols and (learn is True or symbol in learn):  # type: ignore[operator]
        found.symbols.append(symbol)
        if limit is not None and found.limit is None:
            found.limit = limit
        raise _Restart(symbol)
    if limit is not None and found.limit is None:
        found.limit = limit
        if options is None and limit != DEFAULT_SNAPSHOT_LIMIT:
            raise _Restart(limit)


def _checked(source: str | Path, result: ReplayResult, stopped: bool) -> ReplayResult:
    if not result.events and not stopped:
        raise MalformedMessage(
            f"{source}: no capture events (an empty file, or not a capture: expected JSON lines "
            "of kind 'rest', 'ws' or 'disconnect')")
    return result


# ---------------------------------------------------------------------- time
def parse_time(text: str) -> int:
    """A receive time for ``--at-time``: integer microseconds since the epoch
    (``1633998512063357``) or ISO 8601 (``2021-10-12T00:28:32.063357Z``; an
    offset is honoured, none means UTC).  Raises :class:`UsageError`."""
    text = text.strip()
    if text.isascii() and text.isdecimal():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise UsageError(f"not a time: {shown(text)} (integer microseconds since the epoch, "
                         "or ISO 8601 such as 2021-10-12T00:28:32.063357Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
