"""The invariants of :class:`SymbolSync` under hostile input (see its module docstring).

A random script mixes a true order flow delivered well, late, twice or not
at all with everything that can go wrong: malformed frames (thousands of
decimals, deep nesting, wrong types), snapshots that are old, newer than
the buffer, malformed or crossed, failed fetches, lost connections, and
exceptions raised *inside* the book while it applies a frame or a snapshot
(after it has already changed part of itself).  After every step:

* only the package's own errors may escape (none do: every input is absorbed);
* ``check_integrity()`` holds;
* a synced book equals the truth at its own update id;
* the book never goes back in time: each synced id is at least the last one;
* no wedge: once started, a WAITING symbol always has a snapshot on its way.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook import MalformedMessage, OrderBook, OrderBookError, SymbolSync, SyncState
from orderbook.protocol.wire import DepthEvent, Snapshot, parse_message

SYMBOL = "SPCX.US_USDC"
TrueBook = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]


class FaultyBook(OrderBook):
    """An :class:`OrderBook` that can be told to raise in the middle of an
    apply, after having changed itself: the worst case for the machine."""

    __slots__ = ("fail_next",)

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.fail_next: str | None = None

    def apply_delta(self, event: DepthEvent) -> bool:
        if self.fail_next == "delta":
            self.fail_next = None
            super().apply_delta(event)
            raise RuntimeError("injected failure after a frame was applied")
        return super().apply_delta(event)

    def apply_snapshot(self, body: Snapshot | object, *, limit: int | None = None) -> None:
        if self.fail_next == "snapshot":
            self.fail_next = None
            super().apply_snapshot(body, limit=limit)
            raise ValueError("injected failure after a snapshot was applied")
        super().apply_snapshot(body, limit=limit)


def true_states(steps: list[tuple[int, int, int]]) -> list[TrueBook]:
    """The true book after each update (index 0: the initial book).  Each step
    sets ``(side, tick, units)``; bids below 100.00, asks at or above, never crossed."""
    bids = {Decimal(9900 - i).scaleb(-2): Decimal(1 + i) for i in range(5)}
    asks = {Decimal(10000 + i).scaleb(-2): Decimal(1 + i) for i in range(5)}
    states = [(dict(bids), dict(asks))]
    for side, tick, units in steps:
        book = bids if side == 0 else asks
        price = Decimal(9990 - tick if side == 0 else 10000 + tick).scaleb(-2)
        if units:
            book[price] = Decimal(units)
        else:
            book.pop(price, None)
        states.append((dict(bids), dict(asks)))
    return states


def frame(index: int, steps: list[tuple[int, int, int]], base: int) -> DepthEvent:
    """Update ``index`` (1-based) as a parsed wire frame with id ``base + index``."""
    side, tick, units = steps[index - 1]
    price = f"{Decimal(9990 - tick if side == 0 else 10000 + tick).scaleb(-2):f}"
    level = [[price, str(units) if units else "0.000"]]
    data = {"e": "depth", "E": 1, "T": 1, "s": SYMBOL, "U": base + index, "u": base + index,
            "b": level if side == 0 else [], "a": level if side == 1 else []}
    event = parse_message({"stream": f"depth.{SYMBOL}", "data": data}, validate_levels=False)
    assert isinstance(event, DepthEvent)
    return event


def snapshot(state: TrueBook, update_id: int) -> Snapshot:
    bids, asks = state
    return Snapshot(
        update_id, 1,
        tuple((f"{p:f}", f"{q:f}") for p, q in sorted(bids.items(), reverse=True)),
        tuple((f"{p:f}", f"{q:f}") for p, q in sorted(asks.items())),
    )


HOSTILE_LEVELS: list[Any] = [
    [["10." + "0" * 4399 + "1", "1"]],  # thousands of decimals
    [["99.00", "1" * 5000]],
    [[[[[[[["99"]]]]]]]],  # nesting
    [["99.00", "1", "2"]],
    [[99.0, "1"]],
    [["-99", "1"]],
    [["99.00", {"q": 1}]],
]


def nested(depth: int) -> Any:
    value: Any = "1"
    for _ in range(depth):
        value = [value]
    return value


OPERATIONS = st.one_of(
    st.tuples(st.just("next"), st.integers(1, 3)),  # deliver the next n frames in order
    st.tuples(st.just("skip"), st.integers(1, 2)),  # lose frames: a gap
    st.tuples(st.just("old"), st.integers(1, 5)),  # a frame from the past again
    st.tuples(st.just("hostile"), st.integers(0, len(HOSTILE_LEVELS) - 1)),
    st.tuples(st.just("bad_frame"), st.just(0)),  # a frame the parser refused
    st.tuples(st.just("snapshot"), st.integers(-6, 2)),  # answer at (true id + offset)
    st.tuples(st.just("bad_snapshot"), st.just(0)),  # a failed fetch or an unusable body
    st.tuples(st.just("crossed_snapshot"), st.just(0)),
    st.tuples(st.just("lost"), st.just(0)),
    st.tuples(st.just("fail"), st.sampled_from(["delta", "snapshot"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 8), st.integers(0, 3)), min_size=5, max_size=40
    ),
    script=st.lists(OPERATIONS, min_size=1, max_size=60),
)
def test_no_hostile_script_breaks_the_invariants(
    steps: list[tuple[int, int, int]], script: list[tuple[str, Any]]
) -> None:
    base = 1000
    states = true_states(steps)
    sync = SymbolSync(SYMBOL)
    book = sync.book = FaultyBook(SYMBOL)
    sync.start()
    sent = 0  # frames delivered (or lost) so far, in order
    newest_synced = -1

    def check() -> None:
        nonlocal newest_synced
        book.check_integrity()
        if sync.state is SyncState.SYNCED:
            last = book.last_update_id
            assert last is not None
            assert last >= newest_synced, "the book went back in time"
            newest_synced = last
            bids, asks = states[last - base]
            assert dict(book.bids()) == bids and dict(book.asks()) == asks
        else:
            assert sync.awaiting_snapshot, "WAITING with no snapshot on its way"
            assert book.last_update_id is None

    for op, arg in script:
        try:
            if op == "next":
                for _ in range(arg):
                    if sent < len(steps):
                        sent += 1
                        sync.receive_frame(frame(sent, steps, base))
            elif op == "skip":
                sent = min(len(steps), sent + arg)
            elif op == "old" and sent:
                sync.receive_frame(frame(max(1, sent - arg + 1), steps, base))
            elif op == "hostile":
                data = {"e": "depth", "E": 1, "T": 1, "U": base + sent + 1, "u": base + sent + 1,
                        "b": HOSTILE_LEVELS[arg], "a": [[nested(1000)]] if arg == 2 else []}
                event = parse_message({"stream": f"depth.{SYMBOL}", "data": data},
                                      validate_levels=False)
                assert isinstance(event, DepthEvent)
                sync.receive_frame(event)
            elif op == "bad_frame":
                sync.receive_bad_frame(MalformedMessage("refused by the parser", symbol=SYMBOL))
            elif op == "snapshot":
                at = min(len(steps), max(0, sent + arg))
                sync.receive_snapshot(snapshot(states[at], base + at), limit=1000)
            elif op == "bad_snapshot":
                sync.bad_snapshot(MalformedMessage("unusable", symbol=SYMBOL))
            elif op == "crossed_snapshot":
                bids, asks = states[sent]
                crossed = ({**bids, Decimal("200"): Decimal(1)}, asks)
                sync.receive_snapshot(snapshot(crossed, base + sent), limit=1000)
            elif op == "lost":
                sync.connection_lost()
            elif op == "fail":
                book.fail_next = arg
        except OrderBookError:
            pass  # the package's own errors may escape a public function (none do here)
        check()

    # a clean end: every frame, then a current snapshot when one is awaited
    while sent < len(steps):
        sent += 1
        sync.receive_frame(frame(sent, steps, base))
        check()
    book.fail_next = None
    hostile = sum(op == "hostile" for op, _ in script)
    for _attempt in range(hostile + 1):  # each answer may meet one hostile frame still buffered
        if sync.state is not SyncState.SYNCED:
            sync.receive_snapshot(snapshot(states[sent], base + sent), limit=1000)
        check()
    assert sync.state is SyncState.SYNCED
    assert book.last_update_id is not None and book.last_update_id <= base + len(steps)


def test_an_older_snapshot_after_an_invalidation_is_refused_as_stale() -> None:
    steps = [(0, 1, 2), (1, 2, 3), (0, 3, 1), (1, 1, 0)]
    states = true_states(steps)
    sync = SymbolSync(SYMBOL)
    sync.start()
    sync.receive_snapshot(snapshot(states[0], 1000), limit=1000)
    for index in range(1, 4):
        sync.receive_frame(frame(index, steps, 1000))
    assert sync.book.last_update_id == 1003
    sync.invalidate("audit disagreed")
    actions = sync.receive_snapshot(snapshot(states[1], 1001), limit=1000)  # older than 1003
    assert sync.state is SyncState.WAITING
    assert sync.counters.stale_snapshots == 1
    assert sync.awaiting_snapshot and [type(a).__name__ for a in actions] == ["RequestSnapshot"]
    sync.receive_snapshot(snapshot(states[3], 1003), limit=1000)
    assert sync.state is SyncState.SYNCED and sync.book.last_update_id == 1003


def test_an_exception_inside_apply_clears_the_book_and_asks_again() -> None:
    steps = [(0, 1, 2), (1, 2, 3)]
    states = true_states(steps)
    sync = SymbolSync(SYMBOL)
    book = sync.book = FaultyBook(SYMBOL)
    sync.start()
    book.fail_next = "snapshot"
    actions = sync.receive_snapshot(snapshot(states[0], 1000), limit=1000)
    assert sync.state is SyncState.WAITING and book.last_update_id is None
    assert sync.awaiting_snapshot and sync.counters.apply_errors == 1
    assert [type(a).__name__ for a in actions] == ["RequestSnapshot"]
    sync.receive_snapshot(snapshot(states[0], 1000), limit=1000)
    book.fail_next = "delta"
    actions = sync.receive_frame(frame(1, steps, 1000))
    assert [type(a).__name__ for a in actions] == ["BookInvalidated", "RequestSnapshot"]
    assert book.last_update_id is None and sync.counters.apply_errors == 2
    book.check_integrity()


def test_a_venue_whose_ids_went_back_for_good_is_followed_after_repeated_evidence() -> None:
    steps = [(0, 1, 2), (1, 2, 3), (0, 3, 1), (1, 1, 0), (0, 2, 2), (1, 3, 1)]
    states = true_states(steps)
    sync = SymbolSync(SYMBOL)
    sync.start()
    sync.receive_snapshot(snapshot(states[0], 5000), limit=1000)  # the old venue: ids near 5000
    sync.receive_frame(frame(1, steps, 5000))
    sync.connection_lost()  # ... and the new connection lands on a venue at ids near 1000
    outcomes = []
    for index in range(1, 4):
        sync.receive_frame(frame(index, steps, 1000))  # the live stream is behind 5001 too
        sync.receive_snapshot(snapshot(states[index - 1], 1000 + index - 1), limit=1000)
        outcomes.append(sync.state)
    assert outcomes == [SyncState.WAITING, SyncState.WAITING, SyncState.SYNCED]
    assert sync.counters.stale_snapshots == 2 and sync.counters.history_restarts == 1
    assert sync.book.last_update_id == 1003
    assert dict(sync.book.bids()) == states[3][0]


def test_old_frames_alone_are_no_evidence_of_a_restart() -> None:
    """A duplicate of an old frame, buffered again and again, never makes an
    old snapshot acceptable: the evidence needs new frames behind the mark."""
    steps = [(0, 1, 2), (1, 2, 3), (0, 3, 1)]
    states = true_states(steps)
    sync = SymbolSync(SYMBOL)
    sync.start()
    sync.receive_snapshot(snapshot(states[0], 1000), limit=1000)
    for index in range(1, 4):
        sync.receive_frame(frame(index, steps, 1000))
    sync.invalidate("audit disagreed")
    sync.receive_frame(frame(2, steps, 1000))  # an old duplicate, buffered
    for _ in range(5):
        sync.receive_snapshot(snapshot(states[1], 1001), limit=1000)
        assert sync.state is SyncState.WAITING
    assert sync.counters.history_restarts == 0 and sync.counters.stale_snapshots == 5
