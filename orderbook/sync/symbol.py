"""The sequencing protocol of one symbol as a pure state machine (sans-I/O).

No asyncio, no sockets, no clock: the driver (the replicator, the capture
replayer, a test) feeds inputs and carries out the actions returned.

States::

    WAITING  -- no valid book; frames are buffered; a snapshot is requested
    SYNCED   -- the book is exact as of book.last_update_id

Every rule lives here.  Inputs, in each state, and what they do (reasons
are :class:`~orderbook.sync.status.Reason` values)::

    input                    WAITING                          SYNCED
    -----------------------  -------------------------------  -----------------------------------
    start()                  -> [RequestSnapshot(STARTING)]   (not used)
    receive_frame(ev)        buffer ev (bounded, oldest       u <= last: drop (a return value:
                             dropped)                         [], counted in frames_dropped);
                                                              continues: apply -> [BookChanged];
                                                              crossed after it: invalidate
                                                              (CROSSED_BOOK); first frame after
                                                              the snapshot has U > L+1:
                                                              invalidate (STALE_SNAPSHOT); any
                                                              other U: invalidate (SEQUENCE_GAP)
    receive_snapshot(snap)   if awaited: drop buffered        ignored (not awaited)
                             frames with u <= L; stale
                             (first left U > L+1, or L below
                             the high-water mark) ->
                             [RequestSnapshot(STALE_SNAPSHOT)];
                             else rebuild, replay the buffer
                             -> SYNCED, [BookChanged(None)]
    receive_bad_frame(err)   count it (the loss shows as a    invalidate (MALFORMED_FRAME)
                             gap later)
    bad_snapshot(err)        if awaited ->                    ignored
                             [RequestSnapshot(BAD_SNAPSHOT)]
    connection_lost()        buffer cleared,                  invalidate (CONNECTION_LOST), buffer
                             [RequestSnapshot(CONNECTION_     cleared
                             LOST)]
    invalidate(reason)       ignored                          invalidate (the driver's reason)

"Invalidate" clears the book, goes WAITING, counts a resync (not for a
stale snapshot), keeps the frame that revealed the problem (it may bridge
the next snapshot) and returns ``[BookInvalidated(reason),
RequestSnapshot(reason)]``.

Invariants (checked after every step of ``tests/test_sync_invariants.py``):

* **In sequence.**  A frame is applied only when it continues the book
  (checked by :meth:`OrderBook.apply_delta`, which raises otherwise), so the
  book is never advanced out of sequence.
* **Never back in time.**  The machine remembers the highest update id it
  ever applied (:attr:`SymbolSync.high_water`, kept across invalidations and
  lost connections).  A snapshot whose ``lastUpdateId`` is below it is
  refused as stale (counted in ``stale_snapshots``) and another one is
  requested: a consumer never sees an older book after a newer one.  The one
  exception is a venue whose history itself went back (its ids restarted, or
  the connection landed on another venue): when the live stream too stays
  behind the mark for :data:`RESTART_EVIDENCE` refused snapshots in a row,
  with new frames each time, the book follows the venue's new history
  (counted in ``history_restarts``) rather than never syncing again.
* **No half-changed book.**  An exception of *any* kind while applying a
  snapshot or a frame (bad venue data the parser let through, or a bug)
  leaves no partly applied book: the book is cleared, the symbol invalidated
  (counted in ``apply_errors`` unless it was a :class:`VenueDataError`) and a
  snapshot requested.  Nothing but :class:`OrderBookError` escapes an input.
* **No wedge.**  Once started, a symbol that is WAITING always has a
  snapshot on its way: ``awaiting_snapshot`` is True, so a ``RequestSnapshot``
  was returned and not answered yet (the driver reports a failed fetch with
  :meth:`bad_snapshot`, which asks again).  While a snapshot is awaited at
  most one ``RequestSnapshot`` is outstanding; a driver coalesces duplicates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Union

from ..core.book import OrderBook
from .status import Reason
from ..errors import (
    CrossedBook,
    IntegrityError,
    MalformedMessage,
    SequenceGap,
    StaleSnapshot,
    UsageError,
    VenueDataError,
    shown,
)
from ..protocol.wire import DepthEvent, Snapshot

__all__ = [
    "Action",
    "BookChanged",
    "BookInvalidated",
    "RequestSnapshot",
    "SyncCounters",
    "SyncState",
    "SymbolSync",
]


class SyncState(Enum):
    """Whether the book of a :class:`SymbolSync` can be trusted."""

    WAITING = "waiting"
    SYNCED = "synced"


@dataclass(slots=True, frozen=True)
class RequestSnapshot:
    """Fetch a REST depth snapshot for ``symbol`` and pass it to
    ``receive_snapshot``; ``reason`` says why one is needed, ``detail`` in
    words (for logs; never parsed)."""

    symbol: str
    reason: Reason
    detail: str = ""


@dataclass(slots=True)
class BookChanged:
    """The book changed.  ``event`` is the frame applied, or ``None`` when a
    snapshot rebuilt the whole book (readers should re-read everything).
    (Not frozen: it is made once per frame, and a frozen dataclass costs
    twice as much to build.)"""

    symbol: str
    event: DepthEvent | None


@dataclass(slots=True, frozen=True)
class BookInvalidated:
    """The book was cleared and cannot be trusted until re-synced: ``reason``
    why, ``detail`` in words (for logs; never parsed), ``error`` the
    exception that revealed it, if any."""

    symbol: str
    reason: Reason
    detail: str = ""
    error: Exception | None = None


_SYNCED = SyncState.SYNCED
_NOTHING: list["Action"] = []
"""The empty action list of the hot path (shared: callers never mutate a result)."""

RESTART_EVIDENCE = 3
"""Snapshots older than the high-water mark, in a row and each with the
venue's live stream behind it too, after which the venue is taken to have
restarted its update ids (see the module docstring)."""

Action = Union[RequestSnapshot, BookChanged, BookInvalidated]
"""What a :class:`SymbolSync` input returns for the driver to carry out, in order."""


@dataclass(slots=True)
class SyncCounters:
    """Per-symbol counters, only ever increased.

    ``frames_dropped`` counts frames discarded as old or duplicate (``u`` at or
    below the book) and buffered frames lost to the bound; ``gaps`` sequence
    breaks; ``resyncs`` invalidations of a synced book (gap, bad frame,
    crossed book, lost connection); ``stale_snapshots`` snapshots too old to
    bridge or older than the book already was; ``bad_snapshots`` malformed or
    crossed snapshots; ``apply_errors`` unexpected exceptions while applying
    (each one cleared the book and asked for a snapshot); ``history_restarts``
    times the venue's update ids went back for good and the book followed.
    """

    frames_applied: int = 0
    frames_dropped: int = 0
    gaps: int = 0
    resyncs: int = 0
    bad_frames: int = 0
    crossed: int = 0
    stale_snapshots: int = 0
    bad_snapshots: int = 0
    snapshots_applied: int = 0
    apply_errors: int = 0
    history_restarts: int = 0


@dataclass(slots=True)
class SymbolSync:
    """The sequencing state machine of one symbol.

    Each input method returns the list of actions the driver must carry out,
    in order.  ``book`` is the live :class:`OrderBook` (emptied while WAITING).
    ``max_buffer`` bounds the frames held while waiting for a snapshot.
    Cost per frame when synced: one :meth:`OrderBook.apply_delta`.
    """

    symbol: str
    max_buffer: int = 10_000
    book: OrderBook = field(init=False)
    counters: SyncCounters = field(init=False, default_factory=SyncCounters)
    state: SyncState = field(init=False, default=SyncState.WAITING)
    awaiting_snapshot: bool = field(init=False, default=False)
    stale_streak: int = field(init=False, default=0)
    """Consecutive stale snapshots; the driver uses it to back off and give up."""
    high_water: int | None = field(init=False, default=None)
    """The highest update id ever applied (``None`` before the first snapshot);
    a snapshot below it is refused, so the book never goes back in time."""
    _buffer: deque[DepthEvent] = field(init=False, default_factory=deque)
    _behind_streak: int = field(init=False, default=0)
    _behind_newest: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.max_buffer < 1:
            raise UsageError(f"max_buffer must be >= 1, got {self.max_buffer}")
        self.book = OrderBook(self.symbol)

    # ----------------------------------------------------------------- inputs
    def start(self) -> list[Action]:
        """Begin: ask for the first snapshot (frames are buffered meanwhile)."""
        return self._request(Reason.STARTING, "initial snapshot")

    def receive_frame(self, event: DepthEvent) -> list[Action]:
        """A depth frame for this symbol arrived (in receive order)."""
        actions = self.apply_frame(event)
        if actions is None:
            return [BookChanged(self.symbol, event)]
        return actions if actions else []

    def apply_frame(self, event: DepthEvent) -> list[Action] | None:
        """:meth:`receive_frame` for drivers on the hot path: ``None`` when
        the frame was applied and nothing else happened (the common case,
        with no list or action to allocate), else the actions (``[]`` for a
        buffered, old or duplicate frame)."""
        if self.state is not _SYNCED:
            buffer = self._buffer
            if len(buffer) >= self.max_buffer:
                buffer.popleft()
                self.counters.frames_dropped += 1
            buffer.append(event)
            return _NOTHING
        book = self.book
        if event.last_id <= book.last_update_id:  # type: ignore[operator] # old or duplicate
            self.counters.frames_dropped += 1
            return _NOTHING
        try:
            touched = book.apply_delta(event)
        except SequenceGap as gap:
            return self._out_of_sequence(event, gap)
        except MalformedMessage as exc:
            self.counters.bad_frames += 1
            return self._invalidate(Reason.MALFORMED_FRAME, str(exc), exc, keep=None)
        except Exception as exc:  # not foreseen: the book may be half changed, so clear it
            self.counters.apply_errors += 1
            unexpected = _unexpected("applying a frame", exc, self.symbol)
            return self._invalidate(Reason.APPLY_ERROR, str(unexpected), unexpected, keep=None)
        self.counters.frames_applied += 1
        if touched and book.is_crossed():
            self.counters.crossed += 1
            best_bid, best_ask = book.best_bid(), book.best_ask()
            error = CrossedBook(
                self.symbol,
                best_bid[0] if best_bid else None,
                best_ask[0] if best_ask else None,
                event.last_id,
            )
            return self._invalidate(Reason.CROSSED_BOOK, str(error), error, keep=None)
        self.high_water = event.last_id
        self.stale_streak = 0
        return None

    def _out_of_sequence(self, event: DepthEvent, gap: SequenceGap) -> list[Action]:
        """A synced book refused a newer ``event``: a stale snapshot or a gap."""
        if self.book.bridged:
            self.counters.gaps += 1
            detail = f"expected U={gap.expected}, got U={event.first_id}"
            return self._invalidate(Reason.SEQUENCE_GAP, detail, gap, keep=event)
        self.counters.stale_snapshots += 1
        self.stale_streak += 1
        stale = StaleSnapshot(self.symbol, gap.expected - 1, event.first_id)
        return self._invalidate(Reason.STALE_SNAPSHOT, str(stale), stale, keep=event, resync=False)

    def receive_snapshot(self, snapshot: Snapshot, *, limit: int | None = None) -> list[Action]:
        """The REST snapshot requested earlier arrived.  Ignored (``[]``) when
        no snapshot is awaited, e.g. a late duplicate answer."""
        if not self.awaiting_snapshot:
            return []
        self.awaiting_snapshot = False
        buffer = self._buffer
        snapshot_id = snapshot.last_update_id
        if self.high_water is not None and snapshot_id < self.high_water:
            if not self._history_restarted():
                self.counters.stale_snapshots += 1
                self.stale_streak += 1
                return self._request(
                    Reason.STALE_SNAPSHOT,
                    f"lastUpdateId={snapshot_id} is older than update {self.high_water} already applied",
                )
            self.counters.history_restarts += 1
            self.high_water = None
        self._behind_streak = 0
        while buffer and buffer[0].last_id <= snapshot_id:
            buffer.popleft()
            self.counters.frames_dropped += 1
        if buffer and buffer[0].first_id > snapshot_id + 1:
            self.counters.stale_snapshots += 1
            self.stale_streak += 1
            return self._request(
                Reason.STALE_SNAPSHOT, f"lastUpdateId={snapshot_id} but buffered U={buffer[0].first_id}"
            )
        try:
            self.book.apply_snapshot(snapshot, limit=limit)
        except VenueDataError as exc:
            return self._unusable(exc)
        except Exception as exc:  # not foreseen: the book may be half changed
            self.counters.apply_errors += 1
            return self._unusable(_unexpected("applying a snapshot", exc, self.symbol))
        self.counters.snapshots_applied += 1
        self.high_water = snapshot_id
        self.state = SyncState.SYNCED
        actions: list[Action] = [BookChanged(self.symbol, None)]
        while buffer and self.state is SyncState.SYNCED:
            for action in self.apply_frame(buffer.popleft()) or ():
                if not isinstance(action, BookChanged):
                    actions.append(action)
        return actions

    def receive_bad_frame(self, error: MalformedMessage) -> list[Action]:
        """A frame for this symbol could not be parsed; it is lost."""
        self.counters.bad_frames += 1
        if self.state is SyncState.SYNCED:
            return self._invalidate(Reason.MALFORMED_FRAME, str(error), error, keep=None)
        return []

    def bad_snapshot(self, error: Exception) -> list[Action]:
        """The snapshot response was unusable (malformed, crossed, error body)
        or could not be fetched; another is requested.  Ignored (``[]``) when
        no snapshot is awaited."""
        if not self.awaiting_snapshot:
            return []
        self.awaiting_snapshot = False
        return self._unusable(error)

    def _unusable(self, error: Exception) -> list[Action]:
        """The snapshot awaited was refused: clear whatever it left, ask again."""
        self.counters.bad_snapshots += 1
        self.state = SyncState.WAITING
        self.book.clear()
        return self._request(Reason.BAD_SNAPSHOT, str(error))

    def connection_lost(self) -> list[Action]:
        """The stream dropped: every buffered frame and the book are void."""
        self._buffer.clear()
        actions: list[Action] = []
        if self.state is SyncState.SYNCED:
            self.counters.resyncs += 1
            self.state = SyncState.WAITING
            self.book.clear()
            actions.append(BookInvalidated(self.symbol, Reason.CONNECTION_LOST))
        self.awaiting_snapshot = False
        return actions + self._request(Reason.CONNECTION_LOST)

    def invalidate(self, reason: Reason, detail: str = "", error: Exception | None = None) -> list[Action]:
        """The driver found the book wrong by other means (a bookTicker touch or
        an audit snapshot disagreeing with it): clear it, count a resync and ask
        for a snapshot.  Ignored (``[]``) unless SYNCED.  O(1)."""
        if self.state is not SyncState.SYNCED:
            return []
        return self._invalidate(reason, detail, error, keep=None)

    # ---------------------------------------------------------------- helpers
    def _invalidate(
        self, reason: Reason, detail: str, error: Exception | None, keep: DepthEvent | None,
        resync: bool = True,
    ) -> list[Action]:
        """Clear the book and ask for a snapshot.  ``keep`` (the frame that
        revealed the problem) goes back to the front of the buffer, where it
        may bridge the next snapshot; frames still buffered stay."""
        if resync:
            self.counters.resyncs += 1
        self.state = SyncState.WAITING
        self.book.clear()
        if keep is not None:
            self._buffer.appendleft(keep)
        return [BookInvalidated(self.symbol, reason, detail, error), *self._request(reason, detail)]

    def _request(self, reason: Reason, detail: str = "") -> list[Action]:
        if self.awaiting_snapshot:
            return []
        self.awaiting_snapshot = True
        return [RequestSnapshot(self.symbol, reason, detail)]

    def _history_restarted(self) -> bool:
        """Called for a snapshot older than :attr:`high_water`: True once the
        venue's own stream has been behind the high-water mark at
        :data:`RESTART_EVIDENCE` such snapshots in a row (every buffered frame
        older than it, at least one of them new since the previous one)."""
        buffer = self._buffer
        newest = max((event.last_id for event in buffer), default=None)
        assert self.high_water is not None
        if newest is None or newest >= self.high_water or newest == self._behind_newest:
            self._behind_streak = 0
            return False
        self._behind_newest = newest
        self._behind_streak += 1
        return self._behind_streak >= RESTART_EVIDENCE

    @property
    def buffered(self) -> int:
        """Frames held while waiting for a snapshot."""
        return len(self._buffer)


def _unexpected(doing: str, exc: Exception, symbol: str) -> IntegrityError:
    """An exception nobody foresaw while ``doing`` something, as the package's
    own error (the original is its ``__cause__``): the book could not be kept
    consistent, so it was cleared."""
    error = IntegrityError(f"{symbol}: unexpected {type(exc).__name__} while {doing}: {shown(str(exc))}")
    error.__cause__ = exc
    return error
