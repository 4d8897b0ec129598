"""orderbook.sync.symbol: the sequencing state machine, one rule at a time."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from orderbook.sync.status import Reason
from orderbook import (
    BookChanged,
    BookInvalidated,
    MalformedMessage,
    RequestSnapshot,
    StaleSnapshot,
    SymbolSync,
    SyncState,
    UsageError,
)
from orderbook.protocol.wire import DepthEvent, Snapshot, parse_snapshot

D = Decimal
SYMBOL = "SOL_USDC"


def frame(first: int, last: int | None = None, bids: Any = (), asks: Any = ()) -> DepthEvent:
    last = first if last is None else last
    return DepthEvent(SYMBOL, first, last, last * 10, last * 10 - 1, [list(b) for b in bids], [list(a) for a in asks])


def snap(last_update_id: int, bids: Any = (("10", "1"),), asks: Any = (("11", "1"),)) -> Snapshot:
    return parse_snapshot(
        {"lastUpdateId": str(last_update_id), "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]}
    )


def kinds(actions: list[Any]) -> list[type]:
    return [type(a) for a in actions]


def synced(last_update_id: int = 100) -> SymbolSync:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_snapshot(snap(last_update_id))
    assert machine.state is SyncState.SYNCED
    return machine


# ------------------------------------------------------------------ bootstrap
def test_start_requests_a_snapshot_once() -> None:
    machine = SymbolSync(SYMBOL)
    assert machine.state is SyncState.WAITING and not machine.awaiting_snapshot
    actions = machine.start()
    assert actions == [RequestSnapshot(SYMBOL, Reason.STARTING, "initial snapshot")]
    assert machine.awaiting_snapshot
    assert machine.start() == []  # at most one request outstanding


def test_frames_are_buffered_while_waiting() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    for first in (95, 96, 97):
        assert machine.receive_frame(frame(first)) == []
    assert machine.buffered == 3
    assert machine.book.last_update_id is None and machine.book.depth() == (0, 0)


def test_snapshot_discards_old_buffered_frames_and_replays_the_rest() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_frame(frame(98, bids=[("9", "1")]))
    machine.receive_frame(frame(99, 100, bids=[("9", "2")]))
    machine.receive_frame(frame(101, asks=[("12", "3")]))
    machine.receive_frame(frame(102, 104, bids=[("10", "0")]))
    actions = machine.receive_snapshot(snap(100))
    assert actions == [BookChanged(SYMBOL, None)]
    assert machine.state is SyncState.SYNCED and not machine.awaiting_snapshot
    assert machine.book.last_update_id == 104
    assert machine.book.bids() == []  # the 10 bid deleted by 102..104; the 9 bids were older
    assert machine.book.asks() == [(D(11), D(1)), (D(12), D(3))]
    c = machine.counters
    assert (c.frames_dropped, c.frames_applied, c.snapshots_applied, c.gaps) == (2, 2, 1, 0)
    assert machine.buffered == 0


def test_snapshot_inside_an_aggregated_buffered_frame() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_frame(frame(98, 103, bids=[("10", "5")]))
    actions = machine.receive_snapshot(snap(100))
    assert actions == [BookChanged(SYMBOL, None)]
    assert machine.book.last_update_id == 103
    assert machine.book.best_bid() == (D(10), D(5))
    assert machine.counters.stale_snapshots == 0


def test_snapshot_inside_an_aggregated_frame_that_arrives_later() -> None:
    machine = synced(100)
    machine.receive_frame(frame(95, 100))  # old: dropped
    ev = frame(99, 102, asks=[("11", "4")])
    assert machine.receive_frame(ev) == [BookChanged(SYMBOL, ev)]
    assert machine.book.best_ask() == (D(11), D(4))
    assert machine.counters.frames_dropped == 1


def test_snapshot_before_any_frame() -> None:
    machine = synced(100)
    assert machine.buffered == 0
    ev = frame(101)
    assert machine.receive_frame(ev) == [BookChanged(SYMBOL, ev)]
    assert machine.book.last_update_id == 101


def test_stale_snapshot_in_receive_snapshot_requests_another() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_frame(frame(105, 106))
    actions = machine.receive_snapshot(snap(100))
    assert kinds(actions) == [RequestSnapshot]
    assert isinstance(actions[0], (RequestSnapshot, BookInvalidated)) and actions[0].reason is Reason.STALE_SNAPSHOT
    assert machine.state is SyncState.WAITING and machine.awaiting_snapshot
    assert machine.buffered == 1  # kept: it may bridge the next snapshot
    assert (machine.counters.stale_snapshots, machine.stale_streak, machine.counters.resyncs) == (1, 1, 0)
    assert machine.receive_snapshot(snap(105)) == [BookChanged(SYMBOL, None)]
    assert machine.book.last_update_id == 106
    machine.receive_frame(frame(107))
    assert machine.stale_streak == 0  # reset by an applied frame


def test_stale_snapshot_found_by_the_first_frame() -> None:
    machine = synced(100)  # nothing buffered: the snapshot looks fine until the next frame
    ev = frame(103, 104)
    actions = machine.receive_frame(ev)
    assert kinds(actions) == [BookInvalidated, RequestSnapshot]
    assert isinstance(actions[0], (RequestSnapshot, BookInvalidated)) and actions[0].reason is Reason.STALE_SNAPSHOT
    error = actions[0].error
    assert isinstance(error, StaleSnapshot)
    assert (error.snapshot_id, error.first_id) == (100, 103)
    c = machine.counters
    assert (c.stale_snapshots, c.gaps, c.resyncs) == (1, 0, 0)
    assert machine.state is SyncState.WAITING and machine.book.depth() == (0, 0)
    assert machine.buffered == 1  # the revealing frame is kept
    assert machine.receive_snapshot(snap(103)) == [BookChanged(SYMBOL, None)]
    assert machine.book.last_update_id == 104


def test_gap_invalidates_and_keeps_the_frame() -> None:
    machine = synced(100)
    machine.receive_frame(frame(101))
    ev = frame(103, 105, bids=[("9", "9")])
    actions = machine.receive_frame(ev)
    assert kinds(actions) == [BookInvalidated, RequestSnapshot]
    invalidated = actions[0]
    assert isinstance(invalidated, BookInvalidated)
    assert invalidated.reason is Reason.SEQUENCE_GAP and invalidated.error is not None
    c = machine.counters
    assert (c.gaps, c.resyncs, c.frames_applied) == (1, 1, 1)
    assert machine.state is SyncState.WAITING
    assert machine.book.last_update_id is None and machine.book.depth() == (0, 0)
    # the kept frame bridges a snapshot taken inside it
    machine.receive_frame(frame(106))
    assert machine.receive_snapshot(snap(104)) == [BookChanged(SYMBOL, None)]
    assert machine.book.last_update_id == 106
    assert machine.book.bids() == [(D(10), D(1)), (D(9), D(9))]


def test_duplicates_and_old_frames_are_dropped() -> None:
    machine = synced(100)
    ev = frame(101, 103)
    assert machine.receive_frame(ev) == [BookChanged(SYMBOL, ev)]
    before = (machine.book.bids(), machine.book.asks(), machine.book.last_update_id)
    for old in (ev, frame(103), frame(90, 95), frame(102, 103)):
        assert machine.receive_frame(old) == []
    assert (machine.book.bids(), machine.book.asks(), machine.book.last_update_id) == before
    assert machine.counters.frames_dropped == 4 and machine.counters.gaps == 0
    assert machine.state is SyncState.SYNCED


def test_overlapping_frame_after_the_bridge_is_a_gap() -> None:
    machine = synced(100)
    machine.receive_frame(frame(101, 103))
    actions = machine.receive_frame(frame(102, 105))
    assert kinds(actions) == [BookInvalidated, RequestSnapshot]
    assert machine.counters.gaps == 1


def test_crossed_frame_invalidates() -> None:
    machine = synced(100)
    actions = machine.receive_frame(frame(101, bids=[("11", "1")]))
    assert kinds(actions) == [BookInvalidated, RequestSnapshot]
    c = machine.counters
    assert (c.crossed, c.resyncs, c.frames_applied) == (1, 1, 1)
    assert machine.book.depth() == (0, 0)
    assert machine.buffered == 0  # the crossing frame is not kept


def test_crossed_snapshot_is_a_bad_snapshot() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    actions = machine.receive_snapshot(snap(100, bids=[("12", "1")], asks=[("11", "1")]))
    assert kinds(actions) == [RequestSnapshot]
    assert machine.counters.bad_snapshots == 1 and machine.state is SyncState.WAITING
    assert machine.book.depth() == (0, 0)


def test_malformed_frame_applied_when_synced_invalidates() -> None:
    machine = synced(100)
    actions = machine.receive_frame(frame(101, bids=[("10", "1"), ("9", "x")]))
    assert kinds(actions) == [BookInvalidated, RequestSnapshot]
    assert machine.counters.bad_frames == 1 and machine.counters.resyncs == 1
    assert machine.buffered == 0


def test_bad_frame_while_synced_invalidates() -> None:
    machine = synced(100)
    actions = machine.receive_bad_frame(MalformedMessage("boom", symbol=SYMBOL))
    assert kinds(actions) == [BookInvalidated, RequestSnapshot]
    assert machine.counters.bad_frames == 1 and machine.counters.resyncs == 1
    assert machine.state is SyncState.WAITING


def test_bad_frame_while_waiting_is_counted_only() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_frame(frame(101))
    assert machine.receive_bad_frame(MalformedMessage("boom")) == []
    assert machine.counters.bad_frames == 1 and machine.counters.resyncs == 0
    assert machine.buffered == 1 and machine.awaiting_snapshot
    # the lost frame (102) shows up as a gap after the snapshot
    machine.receive_frame(frame(103))
    actions = machine.receive_snapshot(snap(100))
    assert kinds(actions) == [BookChanged, BookInvalidated, RequestSnapshot]
    assert machine.counters.gaps == 1


def test_bad_snapshot_requests_another() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_frame(frame(101))
    actions = machine.bad_snapshot(MalformedMessage("no lastUpdateId"))
    assert kinds(actions) == [RequestSnapshot]
    assert machine.counters.bad_snapshots == 1 and machine.buffered == 1
    assert machine.receive_snapshot(snap(100)) == [BookChanged(SYMBOL, None)]
    assert machine.book.last_update_id == 101


def test_unsolicited_snapshot_is_ignored() -> None:
    machine = synced(100)
    machine.receive_frame(frame(101, bids=[("10", "3")]))
    assert machine.receive_snapshot(snap(500, bids=[("1", "1")])) == []
    assert machine.book.last_update_id == 101 and machine.book.best_bid() == (D(10), D(3))
    assert machine.counters.snapshots_applied == 1
    fresh = SymbolSync(SYMBOL)  # never started: nothing awaited
    assert fresh.receive_snapshot(snap(5)) == [] and fresh.state is SyncState.WAITING


def test_only_one_request_outstanding() -> None:
    machine = SymbolSync(SYMBOL)
    assert kinds(machine.start()) == [RequestSnapshot]
    assert machine.start() == []
    machine.receive_frame(frame(101))
    assert machine.receive_bad_frame(MalformedMessage("x")) == []


def test_connection_lost() -> None:
    machine = synced(100)
    actions = machine.connection_lost()
    assert kinds(actions) == [BookInvalidated, RequestSnapshot]
    assert machine.counters.resyncs == 1 and machine.buffered == 0
    assert machine.state is SyncState.WAITING and machine.book.depth() == (0, 0)
    machine.receive_frame(frame(150))
    assert kinds(machine.connection_lost()) == [RequestSnapshot]  # waiting: no invalidation
    assert machine.buffered == 0 and machine.counters.resyncs == 1
    machine.receive_frame(frame(160))
    assert machine.receive_snapshot(snap(159)) == [BookChanged(SYMBOL, None)]
    assert machine.book.last_update_id == 160


def test_buffer_is_bounded_and_drops_the_oldest() -> None:
    machine = SymbolSync(SYMBOL, max_buffer=3)
    machine.start()
    for first in range(101, 106):
        machine.receive_frame(frame(first, bids=[("9", str(first))]))
    assert machine.buffered == 3 and machine.counters.frames_dropped == 2
    # frames 101-102 are gone: a snapshot at 100 is stale now, one at 102 bridges
    assert kinds(machine.receive_snapshot(snap(100))) == [RequestSnapshot]
    assert machine.receive_snapshot(snap(102)) == [BookChanged(SYMBOL, None)]
    assert machine.book.last_update_id == 105
    assert machine.book.bids() == [(D(10), D(1)), (D(9), D(105))]


@pytest.mark.parametrize("bad", [0, -1])
def test_max_buffer_must_be_positive(bad: int) -> None:
    with pytest.raises(UsageError):
        SymbolSync(SYMBOL, max_buffer=bad)


def test_snapshot_with_limit_sets_the_window() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_snapshot(snap(100, bids=[("10", "1"), ("9", "1")], asks=[("11", "1")]), limit=2)
    assert machine.book.complete_to() == (D(9), None)


def test_counters_only_increase_over_a_long_run() -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    history = []
    script: list[tuple[str, Any]] = [
        ("frame", frame(99)), ("snap", 98), ("frame", frame(100)), ("frame", frame(102)),
        ("frame", frame(103)), ("snap", 101), ("frame", frame(104)), ("frame", frame(104)),
        ("bad", None), ("snap", 104), ("frame", frame(105)), ("lost", None), ("frame", frame(107)),
        ("snap", 106),
    ]
    for op, arg in script:
        if op == "frame":
            machine.receive_frame(arg)
        elif op == "snap" and machine.awaiting_snapshot:
            machine.receive_snapshot(snap(arg))
        elif op == "bad":
            machine.receive_bad_frame(MalformedMessage("x"))
        elif op == "lost":
            machine.connection_lost()
        c = machine.counters
        history.append(
            (c.frames_applied, c.frames_dropped, c.gaps, c.resyncs, c.bad_frames, c.stale_snapshots,
             c.snapshots_applied)
        )
    assert all(a <= b for prev, cur in zip(history, history[1:]) for a, b in zip(prev, cur))
    assert machine.state is SyncState.SYNCED and machine.book.last_update_id == 107
    c = machine.counters
    assert (c.gaps, c.bad_frames, c.resyncs, c.snapshots_applied) == (1, 1, 3, 4)
