"""OrderBook.prune and SymbolSync.invalidate, the two core helpers the replicator adds."""

from __future__ import annotations

from decimal import Decimal

from orderbook.sync.status import Reason
from orderbook.core.book import OrderBook
from orderbook.sync.symbol import BookInvalidated, RequestSnapshot, SymbolSync, SyncState
from orderbook.protocol.wire import DepthEvent, parse_snapshot

SNAP = {"bids": [["10.0", "1"], ["9.5", "1"], ["9", "2"]],
        "asks": [["11", "1"], ["12.5", "1"], ["13", "1"]], "lastUpdateId": "5"}


def test_prune_drops_only_levels_beyond_the_snapshot_window() -> None:
    book = OrderBook("X")
    book.apply_snapshot(SNAP, limit=3)
    assert book.complete_to() == (Decimal("9"), Decimal("13"))
    book.apply_delta(DepthEvent("X", 6, 6, 0, 0, [["8", "1"], ["9.25", "3"]],
                                [["14", "1"], ["12.75", "2"]]))
    assert book.prune() == 2
    assert [p for p, _ in book.bids()] == [Decimal("10.0"), Decimal("9.5"), Decimal("9.25"), Decimal("9")]
    assert [p for p, _ in book.asks()] == [Decimal("11"), Decimal("12.5"), Decimal("12.75"), Decimal("13")]
    book.check_integrity()
    assert book.prune() == 0


def test_prune_keeps_everything_when_the_snapshot_was_not_truncated() -> None:
    book = OrderBook("X")
    book.apply_snapshot(SNAP, limit=1000)
    book.apply_delta(DepthEvent("X", 6, 6, 0, 0, [["1", "1"]], [["99", "1"]]))
    assert book.prune() == 0 and book.depth() == (4, 4)


def test_prune_refreshes_the_touch_when_the_window_emptied() -> None:
    book = OrderBook("X")
    book.apply_snapshot(SNAP, limit=3)
    book.apply_delta(DepthEvent("X", 6, 6, 0, 0, [["10.0", "0"], ["9.5", "0"], ["9", "0"], ["8", "4"]], []))
    assert book.best_bid() == (Decimal("8"), Decimal("4"))
    assert book.prune() == 1 and book.best_bid() is None
    book.check_integrity()


def test_invalidate_clears_a_synced_book_and_requests_a_snapshot() -> None:
    sync = SymbolSync("X")
    assert sync.invalidate(Reason.AUDIT_DIVERGENCE) == []  # not synced: nothing to do
    sync.start()
    sync.receive_snapshot(parse_snapshot(SNAP))
    actions = sync.invalidate(Reason.TICKER_MISMATCH, "touch disagrees")
    assert [type(a) for a in actions] == [BookInvalidated, RequestSnapshot]
    assert actions[0].reason is Reason.TICKER_MISMATCH and actions[0].detail == "touch disagrees"
    assert sync.state is SyncState.WAITING and sync.book.last_update_id is None
    assert sync.counters.resyncs == 1 and sync.awaiting_snapshot
