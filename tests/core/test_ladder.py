"""The pure-Python ladder's own mechanics (dead keys, compaction), which its
native twin does without: see tests/test_native.py for what both share."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orderbook.core.ladder import DEAD_SLACK, PyLadder, py_apply_levels
from orderbook.protocol.wire import PyDepthEvent

SYMBOL = "SOL_USDC"


def ladders() -> tuple[PyLadder, PyLadder]:
    bids, asks = PyLadder(-1), PyLadder(1)
    bids.load([("10.00", "1"), ("9.50", "2"), ("9.00", "3")], 2)
    asks.load([("10.50", "1.5"), ("11.00", "2"), ("12.00", "4")], 2)
    return bids, asks


def frame(bids: Any = (), asks: Any = ()) -> PyDepthEvent:
    return PyDepthEvent(SYMBOL, 1, 1, 1, 1, [list(x) for x in bids], [list(x) for x in asks])


def check(bids: PyLadder, asks: PyLadder) -> None:
    bids.check("bid")
    asks.check("ask")


def test_deleted_keys_stay_dead_until_revived_and_never_show() -> None:
    bids, asks = ladders()
    py_apply_levels(bids, asks, frame(bids=[("9.50", "0")], asks=[("11.00", "0.000")]))
    assert len(bids._dead) == 1 and len(asks._dead) == 1  # kept in the sorted list, not live
    assert bids.view(None) == [(Decimal("10.00"), Decimal("1")), (Decimal("9.00"), Decimal("3"))]
    assert asks.view(2) == [(Decimal("10.50"), Decimal("1.5")), (Decimal("12.00"), Decimal("4"))]
    assert (len(bids), len(asks)) == (2, 2)
    check(bids, asks)
    keys_before = len(bids._keys)
    py_apply_levels(bids, asks, frame(bids=[("9.50", "7")]))  # revived without a sorted insert
    assert not bids._dead and len(bids._keys) == keys_before
    assert bids.view(2) == [(Decimal("10.00"), Decimal("1")), (Decimal("9.50"), Decimal("7"))]
    check(bids, asks)


def test_a_dead_key_reaching_the_front_is_dropped() -> None:
    bids, asks = ladders()
    py_apply_levels(bids, asks, frame(bids=[("9.50", "0")]))
    py_apply_levels(bids, asks, frame(bids=[("10.00", "0")]))  # the best goes; 9.50 is dead
    assert bids.best == (Decimal("9.00"), Decimal("3"))
    assert bids._keys[0] == bids.best_key and not bids._dead
    check(bids, asks)


def test_dead_keys_are_bounded_by_compaction() -> None:
    """Levels far from the touch that come and go leave dead keys; their
    number stays within the bound after every frame, and the ladder equals a
    plain dict model throughout."""
    bids, asks = PyLadder(-1), PyLadder(1)
    bids.load([("1.00", "1")], 2)
    asks.load([("1000.00", "1")], 2)
    model: dict[str, str] = {}
    for round_ in range(3):
        prices = [f"{500 + round_ * 0.5 + i * 0.01:.2f}" for i in range(DEAD_SLACK + 50)]
        for price in prices:  # add, then delete every one of them
            py_apply_levels(bids, asks, frame(asks=[(price, "2")]))
            model[price] = "2"
        for price in prices:
            py_apply_levels(bids, asks, frame(asks=[(price, "0")]))
            del model[price]
            assert len(asks._dead) <= len(asks) // 2 + DEAD_SLACK
        check(bids, asks)
    assert asks.view(None) == sorted(
        [(Decimal(p), Decimal(q)) for p, q in model.items()] + [(Decimal("1000.00"), Decimal(1))]
    )
    assert len(asks._keys) < 2 * DEAD_SLACK + 2  # compacted at least once per round
