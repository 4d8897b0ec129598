"""The state machine under a randomly delivered true order flow.

A *scenario* is a true flow (engine updates, each changing 1-3 levels of a
dict-of-Decimal true book that is never crossed) plus a delivery: the updates
aggregated into frames (last value per price wins, ``U`` = first id, ``u`` =
last id), a random *script* (frames delivered, dropped, duplicated now or
later; snapshots at random true ids handed over at random times through the
RequestSnapshot protocol), then a clean *tail* (every remaining frame, each
pending request answered with a recent snapshot, finally a current one).

Checked after every input: a synced book equals the truth at its own update
id (so no frame was ever applied out of sequence), each BookChanged continues
the book, the book never goes backwards, a waiting book is empty and has one
request outstanding.  At the end the book equals the final truth exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orderbook import BookChanged, BookInvalidated, RequestSnapshot, SymbolSync, SyncState
from orderbook.protocol.wire import DepthEvent, parse_message, parse_snapshot

SYMBOL = "SOL_USDC"
ZEROS = ("0", "0.000", "0.00000")

Change = tuple[str, int, int]  # (side "b"/"a", price in ticks of 0.01, quantity in 0.001; 0 deletes)
TrueBook = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]


@dataclass(frozen=True)
class Scenario:
    base: int  # id of the first true update; the initial book is the truth at base - 1
    initial: tuple[Change, ...]
    updates: tuple[tuple[Change, ...], ...]
    groups: tuple[int, ...]  # frame sizes in updates, summing to len(updates)
    script: tuple[tuple[str, int], ...]  # ("frame", index) or ("snapshot", true id)
    tail: int  # index of the first frame of the clean tail (< number of frames)
    tail_lags: tuple[int, ...] = ()  # how far behind the newest frame each tail answer is


# ---------------------------------------------------------------- the truth
def price_of(tick: int) -> Decimal:
    return Decimal(tick).scaleb(-2)


def qty_of(units: int) -> Decimal:
    return Decimal(units).scaleb(-3)


def truth_states(sc: Scenario) -> dict[int, TrueBook]:
    """The true book after every update id, from base - 1 to the last one."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}

    def apply(changes: tuple[Change, ...]) -> None:
        for side, tick, units in changes:
            book = bids if side == "b" else asks
            if units:
                book[price_of(tick)] = qty_of(units)
            else:
                book.pop(price_of(tick), None)

    apply(sc.initial)
    states = {sc.base - 1: (dict(bids), dict(asks))}
    for offset, changes in enumerate(sc.updates):
        apply(changes)
        assert not (bids and asks and max(bids) >= min(asks)), "scenario crosses the true book"
        states[sc.base + offset] = (dict(bids), dict(asks))
    return states


def frames_of(sc: Scenario) -> list[DepthEvent]:
    """Aggregate the updates into wire frames and parse them like the venue's bytes."""
    assert sum(sc.groups) == len(sc.updates) and all(g >= 1 for g in sc.groups)
    frames, start = [], 0
    for index, size in enumerate(sc.groups):
        merged: dict[tuple[str, int], int] = {}
        for changes in sc.updates[start : start + size]:
            for side, tick, units in changes:
                merged.pop((side, tick), None)  # last value per price wins
                merged[(side, tick)] = units
        levels: dict[str, list[list[str]]] = {"b": [], "a": []}
        for (side, tick), units in merged.items():
            price = format(price_of(tick), "f") + "0" * (index % 3)  # spellings vary
            qty = format(qty_of(units), "f") if units else ZEROS[(tick + index) % 3]
            levels[side].append([price, qty])
        first, last = sc.base + start, sc.base + start + size - 1
        time: Any = 1_700_000_000_000_000 + last
        data = {"e": "depth", "E": time + 1 if index % 2 else str(time + 1), "s": SYMBOL,
                "a": levels["a"], "b": levels["b"], "U": first, "u": last, "T": time}
        event = parse_message({"stream": f"depth.{SYMBOL}", "data": data})
        assert isinstance(event, DepthEvent)
        frames.append(event)
        start += size
    return frames


def snapshot_body(states: dict[int, TrueBook], update_id: int) -> dict[str, Any]:
    bids, asks = states[update_id]
    return {
        "lastUpdateId": str(update_id) if update_id % 2 else update_id,
        "bids": [[format(p, "f"), format(q, "f")] for p, q in sorted(bids.items(), reverse=True)],
        "asks": [[format(p, "f"), format(q, "f")] for p, q in sorted(asks.items())],
        "timestamp": update_id,
    }


# ------------------------------------------------------------------ the run
class Delivery:
    """Feeds one machine and checks every step against the truth."""

    def __init__(self, sc: Scenario) -> None:
        self.states = truth_states(sc)
        self.frames = frames_of(sc)
        self.machine = SymbolSync(SYMBOL)
        self.high: int | None = None  # highest update id a synced book has shown
        self.last_snapshot = sc.base - 1 - 10**9  # snapshot ids never go backwards
        self.trace: list[str] = []

    def start(self) -> None:
        actions = self.machine.start()
        assert [type(a) for a in actions] == [RequestSnapshot]
        self.check(actions, was_awaiting=False)

    def frame(self, event: DepthEvent) -> None:
        machine, book = self.machine, self.machine.book
        was_synced, was_awaiting = machine.state is SyncState.SYNCED, machine.awaiting_snapshot
        before_id, before_bridged = book.last_update_id, book.bridged
        actions = machine.receive_frame(event)
        self.trace.append(f"frame {event.first_id}..{event.last_id} -> {[type(a).__name__ for a in actions]}")
        changed = [a for a in actions if isinstance(a, BookChanged)]
        if changed:
            assert changed == [BookChanged(SYMBOL, event)] and was_synced
            assert before_id is not None
            if before_bridged:
                assert event.first_id == before_id + 1, "applied a frame that does not continue the book"
            else:
                assert event.first_id <= before_id + 1 <= event.last_id, "applied a frame that does not bridge"
            assert book.last_update_id == event.last_id
        elif machine.state is SyncState.SYNCED:
            assert book.last_update_id == before_id  # dropped: nothing changed
        self.check(actions, was_awaiting)

    def snapshot(self, update_id: int) -> None:
        machine = self.machine
        assert machine.awaiting_snapshot
        update_id = max(update_id, self.last_snapshot)
        self.last_snapshot = update_id
        applied_before = machine.counters.snapshots_applied
        actions = machine.receive_snapshot(parse_snapshot(snapshot_body(self.states, update_id)))
        self.trace.append(f"snapshot {update_id} -> {[type(a).__name__ for a in actions]}")
        rebuilt = machine.counters.snapshots_applied > applied_before
        assert (BookChanged(SYMBOL, None) in actions) == rebuilt
        assert all(a.event is None for a in actions if isinstance(a, BookChanged))
        self.check(actions, was_awaiting=False)

    def check(self, actions: list[Any], was_awaiting: bool) -> None:
        machine, book = self.machine, self.machine.book
        requests = [a for a in actions if isinstance(a, RequestSnapshot)]
        assert len(requests) <= 1 and not (requests and was_awaiting), "a second request while one is pending"
        if any(isinstance(a, BookInvalidated) for a in actions):
            assert requests or was_awaiting
        if machine.state is SyncState.SYNCED:
            book.check_integrity()
            last = book.last_update_id
            assert last is not None and last in self.states
            bids, asks = self.states[last]
            assert book.bids() == sorted(bids.items(), reverse=True), f"bids differ from the truth at {last}"
            assert book.asks() == sorted(asks.items()), f"asks differ from the truth at {last}"
            assert self.high is None or last >= self.high, "the book went backwards"
            self.high = last
            assert not machine.awaiting_snapshot
        else:
            assert book.last_update_id is None and book.depth() == (0, 0)
            assert machine.awaiting_snapshot, "waiting without a request outstanding"


def run(sc: Scenario) -> Delivery:
    delivery = Delivery(sc)
    frames = delivery.frames
    assert 0 <= sc.tail < len(frames)
    delivery.start()
    for op, arg in sc.script:
        if op == "frame":
            assert arg < sc.tail, "the script only uses frames before the tail"
            delivery.frame(frames[arg])
        elif op == "snapshot" and delivery.machine.awaiting_snapshot:
            delivery.snapshot(arg)
    # the clean tail: every remaining frame, pending requests answered with recent snapshots
    for position, event in enumerate(frames[sc.tail :]):
        delivery.frame(event)
        if delivery.machine.awaiting_snapshot:
            lag = sc.tail_lags[position] if position < len(sc.tail_lags) else 0
            delivery.snapshot(max(sc.base - 1, event.last_id - lag))
    final = sc.base + len(sc.updates) - 1
    if delivery.machine.awaiting_snapshot:
        delivery.snapshot(final)
    machine = delivery.machine
    assert machine.state is SyncState.SYNCED
    assert machine.book.last_update_id == final
    bids, asks = delivery.states[final]
    assert machine.book.bids() == sorted(bids.items(), reverse=True)
    assert machine.book.asks() == sorted(asks.items())
    return delivery


# ------------------------------------------------------------ random scenarios
@st.composite
def scenarios(draw: Any) -> Scenario:
    base = draw(st.sampled_from([1, 100, 2**40, 2**62]))
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    initial: list[Change] = []
    for tick in draw(st.sets(st.integers(1, 49), max_size=5)):
        bids[tick] = draw(st.integers(1, 10**6))
        initial.append(("b", tick, bids[tick]))
    for tick in draw(st.sets(st.integers(51, 100), max_size=5)):
        asks[tick] = draw(st.integers(1, 10**6))
        initial.append(("a", tick, asks[tick]))
    updates: list[tuple[Change, ...]] = []
    for _ in range(draw(st.integers(1, 30))):
        changes: list[Change] = []
        for _ in range(draw(st.integers(1, 3))):
            side = draw(st.sampled_from("ba"))
            book = bids if side == "b" else asks
            if book and draw(st.booleans()):  # update or delete an existing level
                tick = draw(st.sampled_from(sorted(book)))
                units = draw(st.sampled_from([0, draw(st.integers(1, 10**6))]))
            else:  # a new level that keeps the book uncrossed
                lo, hi = (1, min(asks, default=151) - 1) if side == "b" else (max(bids, default=0) + 1, 150)
                if lo > hi:
                    continue
                tick, units = draw(st.integers(lo, hi)), draw(st.integers(1, 10**6))
            if units:
                book[tick] = units
            else:
                book.pop(tick, None)
            changes.append((side, tick, units))
        updates.append(tuple(changes))
    groups: list[int] = []
    while sum(groups) < len(updates):
        groups.append(draw(st.integers(1, min(4, len(updates) - sum(groups)))))
    # mostly a long random part and a short clean tail
    tail = draw(st.integers(max(0, len(groups) - 4), len(groups) - 1) | st.integers(0, len(groups) - 1))
    final = base + len(updates) - 1
    snapshot_ids = st.integers(base - 1, final)
    script: list[tuple[str, int]] = []
    late: list[tuple[int, int]] = []  # (due after this many more frames, frame index)
    if draw(st.booleans()):
        script.append(("snapshot", draw(snapshot_ids)))  # before any frame
    for index in range(tail):
        fate = draw(st.sampled_from(["deliver"] * 4 + ["drop"] * 2 + ["duplicate", "late duplicate"]))
        if fate != "drop":
            script.append(("frame", index))
        if fate == "duplicate":
            script.append(("frame", index))
        if fate == "late duplicate":
            late.append((draw(st.integers(1, 3)), index))
        late = [(due - 1, i) for due, i in late]
        script.extend(("frame", i) for due, i in late if due <= 0)
        late = [(due, i) for due, i in late if due > 0]
        if draw(st.booleans()):  # mostly near the frames being delivered, sometimes anywhere
            here = base + sum(groups[: index + 1]) - 1
            near = st.integers(max(base - 1, here - 6), min(final, here + 2))
            script.append(("snapshot", draw(near | snapshot_ids)))
    script.extend(("frame", i) for _, i in late)
    tail_lags = tuple(draw(st.lists(st.integers(0, 6), max_size=len(groups) - tail)))
    return Scenario(base, tuple(initial), tuple(updates), tuple(groups), tuple(script), tail, tail_lags)


# ------------------------------------------------------- hand-written scenarios
# true flow: 100 b 48.00 -> 1 ; 101 a 51.00 x 2 ; 102 b 48.00 deleted ; 103 a 52.00 x 7 ; 104 b 47.50 x 3
FLOW = (
    (("b", 4800, 1000),),
    (("a", 5100, 2000),),
    (("b", 4800, 0),),
    (("a", 5200, 7000),),
    (("b", 4750, 3000),),
)
INITIAL = (("b", 4800, 5000), ("b", 4700, 1000), ("a", 5200, 5000))

SNAPSHOT_INSIDE_AGGREGATED_FRAME = Scenario(
    base=100, initial=INITIAL, updates=FLOW, groups=(3, 1, 1),
    script=(("frame", 0), ("snapshot", 101)), tail=1,
)
SNAPSHOT_BEFORE_ANY_FRAME = Scenario(
    base=100, initial=INITIAL, updates=FLOW, groups=(1, 1, 1, 1, 1),
    script=(("snapshot", 99), ("frame", 0), ("frame", 1)), tail=2,
)
STALE_SNAPSHOT = Scenario(  # frame 0 lost before the snapshot at 99 arrives: it cannot be bridged
    base=100, initial=INITIAL, updates=FLOW, groups=(1, 1, 1, 1, 1),
    script=(("frame", 1), ("frame", 2), ("snapshot", 99), ("snapshot", 101)), tail=3,
)
GAP = Scenario(  # synced, then frame 1 (101..102) lost: 103 reveals the gap
    base=100, initial=INITIAL, updates=FLOW, groups=(1, 2, 1, 1),
    script=(("snapshot", 99), ("frame", 0), ("frame", 2), ("snapshot", 102)), tail=3,
)
DUPLICATE = Scenario(
    base=100, initial=INITIAL, updates=FLOW, groups=(2, 1, 1, 1),
    script=(("snapshot", 99), ("frame", 0), ("frame", 0), ("frame", 1), ("frame", 0), ("frame", 1)), tail=2,
)
SNAPSHOT_AHEAD_OF_EVERY_FRAME = Scenario(
    base=100, initial=INITIAL, updates=FLOW, groups=(1, 1, 1, 1, 1),
    script=(("frame", 0), ("snapshot", 103), ("frame", 1), ("frame", 2), ("frame", 3)), tail=4,
)
GAP_IN_THE_TAIL = Scenario(  # the random part ends on a drop: the tail must reveal and repair it
    base=100, initial=INITIAL, updates=FLOW, groups=(1, 1, 1, 1, 1),
    script=(("snapshot", 99), ("frame", 0), ("frame", 1)), tail=3, tail_lags=(1, 0),
)


@given(sc=scenarios())
@example(sc=SNAPSHOT_INSIDE_AGGREGATED_FRAME)
@example(sc=SNAPSHOT_BEFORE_ANY_FRAME)
@example(sc=STALE_SNAPSHOT)
@example(sc=GAP)
@example(sc=DUPLICATE)
@example(sc=SNAPSHOT_AHEAD_OF_EVERY_FRAME)
@example(sc=GAP_IN_THE_TAIL)
@settings(
    max_examples=200,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_random_delivery_never_applies_out_of_sequence_and_recovers(sc: Scenario) -> None:
    run(sc)


# ------------------------------------- the explicit cases, with their counters
def test_snapshot_inside_aggregated_frame() -> None:
    delivery = run(SNAPSHOT_INSIDE_AGGREGATED_FRAME)
    c = delivery.machine.counters
    assert (c.snapshots_applied, c.stale_snapshots, c.gaps, c.resyncs) == (1, 0, 0, 0)
    assert c.frames_applied == 3  # 100..102 re-applied over the snapshot at 101, then 103, 104


def test_snapshot_before_any_frame() -> None:
    c = run(SNAPSHOT_BEFORE_ANY_FRAME).machine.counters
    assert (c.snapshots_applied, c.frames_applied, c.frames_dropped, c.gaps) == (1, 5, 0, 0)


def test_stale_snapshot() -> None:
    delivery = run(STALE_SNAPSHOT)
    c = delivery.machine.counters
    assert c.stale_snapshots == 1 and c.snapshots_applied == 1 and c.gaps == 0 and c.resyncs == 0
    assert any(line.startswith("snapshot 99 -> ['RequestSnapshot']") for line in delivery.trace)


def test_gap() -> None:
    delivery = run(GAP)
    c = delivery.machine.counters
    assert (c.gaps, c.resyncs, c.snapshots_applied) == (1, 1, 2)
    assert "frame 103..103 -> ['BookInvalidated', 'RequestSnapshot']" in delivery.trace


def test_duplicate() -> None:
    c = run(DUPLICATE).machine.counters
    assert (c.frames_dropped, c.gaps, c.resyncs, c.frames_applied) == (3, 0, 0, 4)


def test_gap_in_the_tail() -> None:
    c = run(GAP_IN_THE_TAIL).machine.counters
    assert c.gaps == 1 and c.snapshots_applied == 2


@pytest.mark.parametrize("sc", [SNAPSHOT_INSIDE_AGGREGATED_FRAME, GAP, DUPLICATE])
def test_the_checker_is_not_vacuous(sc: Scenario) -> None:
    """A frame with the right ids but the wrong content is caught by the truth check."""
    delivery = Delivery(sc)
    delivery.start()
    delivery.snapshot(sc.base - 1)
    good = delivery.frames[0]
    # the true content of frame 0 presented as if it were the next-but-one frame
    liar = DepthEvent(SYMBOL, good.first_id, good.last_id, good.event_time, good.engine_time,
                      [["47.00", "0"]], [])
    delivery.machine.receive_frame(liar)
    with pytest.raises(AssertionError, match="differ from the truth"):
        delivery.check([], was_awaiting=False)
