"""BookUpdate: lazy levels and O(1) folding, and what conflation may drop (only
intermediate quantities, never a level)."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbook import DepthEvent, OrderBook, parse_frame
from orderbook.sync.updates import BookUpdate, UpdateKind


def frame(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> DepthEvent:
    data = {"e": "depth", "E": 1, "T": 1, "s": "SOL_USDC", "U": first, "u": last, "b": bids, "a": asks}
    event = parse_frame(orjson.dumps({"stream": "depth.SOL_USDC", "data": data}))
    assert isinstance(event, DepthEvent)
    return event


def delta(events: list[DepthEvent]) -> BookUpdate:
    return BookUpdate("SOL_USDC", UpdateKind.DELTA, events[0].first_id, events[-1].last_id, None, None,
                      events[-1].engine_time, events[-1].event_time, 0, 1, None, list(events))


def test_levels_are_merged_on_read_last_one_winning_exactly() -> None:
    update = delta([frame(5, 5, [["1.50", "2"]], []), frame(6, 7, [["1.5", "0"], ["1.4", "3"]], [["2", "1"]])])
    update.fold(delta([frame(8, 8, [], [["2.0", "4"]])]))
    assert (update.first_id, update.last_id, update.merged) == (5, 8, 2)
    assert update.bids == ((Decimal("1.50"), Decimal("0")), (Decimal("1.4"), Decimal("3")))
    assert update.asks == ((Decimal("2"), Decimal("4")),)
    assert update.raw_asks == (("2.0", "4"),)


def test_a_snapshot_or_an_invalidation_replaces_what_is_pending() -> None:
    update = delta([frame(5, 5, [["1", "2"]], [])])
    update.fold(BookUpdate("SOL_USDC", UpdateKind.SNAPSHOT, None, 9, None, None, None, None, 0))
    assert update.kind is UpdateKind.SNAPSHOT and update.bids == () and update.last_id == 9
    update.fold(delta([frame(10, 10, [["1", "3"]], [])]))
    assert update.kind is UpdateKind.SNAPSHOT and update.last_id == 10  # re-read the book
    update.fold(BookUpdate("SOL_USDC", UpdateKind.INVALIDATED, None, None, None, None, None, None, 0,
                           1, "sequence gap"))
    assert update.kind is UpdateKind.INVALIDATED and update.reason == "sequence gap"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(st.sampled_from(["1", "1.0", "1.5", "1.50", "2", "3"]),
                                             st.sampled_from(["0", "0.0", "1", "2.5"])).map(list),
                                   max_size=4),
                          st.lists(st.tuples(st.sampled_from(["5", "5.0", "6"]),
                                             st.sampled_from(["0", "1"])).map(list), max_size=3)),
                min_size=1, max_size=40))
def test_folding_changes_into_maps_is_updating_them_with_raw_changes(
        changes: list[tuple[list[list[str]], list[list[str]]]]) -> None:
    """``fold_changes_into`` gives what ``dict.update`` with ``raw_changes``
    gives, whether the update holds only its own frames (one frame) or later
    ones merged into its maps too, and leaves the update as it was."""
    events = [frame(n, n, bids, asks) for n, (bids, asks) in enumerate(changes, 1)]
    update = delta(events[:1])
    for event in events[1:]:
        update.extend([event], None, None, 0)
    mine = ({"1": ("1", "9"), "7": ("7", "9")}, {"6": ("6.00", "4")})
    expected = (dict(mine[0]), dict(mine[1]))
    update.fold_changes_into(*mine)
    raw = update.raw_changes()
    expected[0].update(raw[0])
    expected[1].update(raw[1])
    assert [list(m.items()) for m in mine] == [list(m.items()) for m in expected]
    assert update.raw_changes() == raw and (update.first_id, update.last_id) == (1, len(changes))


PRICES = st.sampled_from(["1", "1.0", "1.5", "1.50", "2", "2.25", "3", "10"])
QTYS = st.sampled_from(["0", "0.000", "1", "2.5", "7"])
LEVELS = st.lists(st.tuples(PRICES, QTYS).map(list), max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LEVELS, LEVELS), min_size=1, max_size=300),
       st.lists(st.integers(1, 50), min_size=1, max_size=20), st.lists(st.booleans(), min_size=1))
def test_a_folded_update_applied_to_the_old_book_gives_the_new_book(
        changes: list[tuple[list[list[str]], list[list[str]]]], chunks: list[int],
        extends: list[bool]) -> None:
    """Batches are folded in as updates (fold) or as bare frames (extend, what
    a queue with a pending delta does): either way, the same book."""
    start = OrderBook("SOL_USDC")
    start.apply_snapshot({"lastUpdateId": 100, "bids": [["0.5", "1"]], "asks": [["20", "1"]]})
    truth = OrderBook("SOL_USDC")
    truth.apply_snapshot({"lastUpdateId": 100, "bids": [["0.5", "1"]], "asks": [["20", "1"]]})
    events = [frame(101 + i, 101 + i, bids, asks) for i, (bids, asks) in enumerate(changes)]
    for event in events:
        truth.apply_delta(event)
    # the same frames, handed over in arbitrary batches and folded in a consumer's queue
    pending: BookUpdate | None = None
    at, turn = 0, 0
    while at < len(events):
        size = chunks[turn % len(chunks)]
        batch = delta(events[at: at + size])
        if pending is None:
            pending = batch
        elif extends[turn % len(extends)]:
            pending.extend(events[at: at + size], None, None, turn)
            assert pending.received_us == turn and pending.last_id == events[at: at + size][-1].last_id
        else:
            pending.fold(batch)
        at, turn = at + size, turn + 1
    assert pending is not None and pending.first_id == 101 and pending.last_id == 100 + len(events)
    bids = [[str(p), str(q)] for p, q in pending.bids]
    asks = [[str(p), str(q)] for p, q in pending.asks]
    start.apply_delta(frame(101, pending.last_id, bids, asks))
    assert start.bids() == truth.bids() and start.asks() == truth.asks()
