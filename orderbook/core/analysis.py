"""Comparing books: where two replicas of one symbol disagree.  Pure, no I/O."""

from __future__ import annotations

from .book import OrderBook
from .ladder import Level

__all__ = ["compare_books"]


def compare_books(live: OrderBook, reference: OrderBook) -> str | None:
    """Compare two books of one symbol within the part both know completely.

    Each side is compared down to the shallower of the two books'
    :meth:`~OrderBook.complete_to` bounds (levels beyond a truncated
    snapshot's window may legitimately differ).  Returns ``None`` when they
    agree, else a short description of the first difference.  O(levels).
    """
    live_bid, live_ask = live.complete_to()
    ref_bid, ref_ask = reference.complete_to()
    bid_bounds = [b for b in (live_bid, ref_bid) if b is not None]
    ask_bounds = [b for b in (live_ask, ref_ask) if b is not None]
    bid_floor = max(bid_bounds) if bid_bounds else None
    ask_ceiling = min(ask_bounds) if ask_bounds else None
    ours: list[Level]
    theirs: list[Level]
    for side, ours, theirs in (
        ("bid", live.bids(), reference.bids()),
        ("ask", live.asks(), reference.asks()),
    ):
        if side == "bid" and bid_floor is not None:
            ours = [lv for lv in ours if lv[0] >= bid_floor]
            theirs = [lv for lv in theirs if lv[0] >= bid_floor]
        if side == "ask" and ask_ceiling is not None:
            ours = [lv for lv in ours if lv[0] <= ask_ceiling]
            theirs = [lv for lv in theirs if lv[0] <= ask_ceiling]
        if ours != theirs:
            for index, (mine, other) in enumerate(zip(ours, theirs)):
                if mine != other:
                    return f"{side} level {index}: replica {mine} != venue {other}"
            return f"{side} depth: replica {len(ours)} levels != venue {len(theirs)}"
    return None
