"""Audits and the bookTicker cross-check: is a synced book what the venue says?

Pure functions on a :class:`~orderbook.sync.track.Track`, no I/O; the engine
calls them and turns a disagreement (returned in words) into an invalidation.

An *audit* fetches a snapshot of one synced symbol, brings a shadow
:class:`~orderbook.sync.symbol.SymbolSync` from it to the replica's update id
with the same frames, and compares the two books where both are complete
(:func:`~orderbook.core.analysis.compare_books`).  The *cross-check* compares
the touch with a ``bookTicker`` frame at exactly the book's update id.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.analysis import compare_books
from ..protocol.wire import DepthEvent, Snapshot
from .actions import EngineCounters
from .symbol import SymbolSync, SyncState
from .track import Track

__all__ = ["audit_frame", "audit_snapshot", "begin_audit", "end_audit", "next_to_audit", "ticker_disagreement"]


def next_to_audit(tracks: Sequence[Track], cursor: int) -> tuple[Track | None, int]:
    """The next symbol to audit, round robin from ``cursor``: synced,
    subscribed, not being audited and with no snapshot fetch of its own
    outstanding; and the new cursor.  O(symbols)."""
    for offset in range(len(tracks)):
        track = tracks[(cursor + offset) % len(tracks)]
        if (track.sync.state is SyncState.SYNCED and track.audit is None and track.subscribed
                and track.ticket is None):
            return track, (cursor + offset + 1) % len(tracks)
    return None, cursor


def begin_audit(track: Track, max_buffer: int, counters: EngineCounters) -> None:
    """Give ``track`` a shadow book, which every frame of the symbol feeds from now on."""
    shadow = SymbolSync(track.name, max_buffer=max_buffer)
    shadow.start()
    track.audit = shadow
    track.watch()
    counters.audits_started += 1


def audit_snapshot(track: Track, snapshot: Snapshot, limit: int, deadline: int,
                   counters: EngineCounters) -> str | None:
    """The audit snapshot arrived: build the shadow, compare if it is already
    at the replica's id (else by ``deadline``, µs, it must be).  Returns a
    disagreement in words, else ``None``."""
    shadow = track.audit
    if shadow is None:
        counters.audits_skipped += 1  # the book was invalidated meanwhile
        return None
    shadow.receive_snapshot(snapshot, limit=limit)
    track.audit_deadline = deadline
    return _compare(track, counters)


def audit_frame(track: Track, event: DepthEvent, counters: EngineCounters) -> str | None:
    """Feed the shadow the frame the replica just got; compare once aligned."""
    shadow = track.audit
    assert shadow is not None
    was_synced = shadow.state is SyncState.SYNCED
    shadow.receive_frame(event)
    if was_synced and shadow.state is not SyncState.SYNCED:
        end_audit(track, counters)  # the shadow lost its sequence: nothing to compare
        return None
    return _compare(track, counters)


def end_audit(track: Track, counters: EngineCounters) -> bool:
    """Abandon ``track``'s audit, counted as skipped.  True if one was running."""
    running = track.audit is not None or track.audit_deadline is not None
    track.audit = None
    track.audit_deadline = None
    counters.audits_skipped += 1
    return running


def _compare(track: Track, counters: EngineCounters) -> str | None:
    shadow = track.audit
    if shadow is None or shadow.state is not SyncState.SYNCED:
        return None
    live = track.sync.book
    if track.sync.state is not SyncState.SYNCED or shadow.book.last_update_id != live.last_update_id:
        return None
    track.audit = None
    track.audit_deadline = None
    difference = compare_books(live, shadow.book)
    if difference is None:
        counters.audits_passed += 1
        return None
    counters.audit_divergences += 1
    track.audit_divergences += 1
    return f"audit at update {live.last_update_id}: {difference}"


def ticker_disagreement(track: Track) -> str | None:
    """Compare the touch with the pending bookTicker, if it is at exactly the
    book's update id (a ticker the book has moved past is dropped: it can
    never match).  Returns the disagreement in words, else ``None``.  O(1)."""
    ticker, book = track.ticker, track.sync.book
    if ticker is None or track.sync.state is not SyncState.SYNCED:
        return None
    if ticker.update_id != book.last_update_id:
        if ticker.update_id < book.last_update_id:  # type: ignore[operator]
            track.ticker = None
        return None
    track.ticker = None
    track.ticker_checks += 1
    bid, ask = book.best_bid(), book.best_ask()
    expected_bid = (ticker.bid_price, ticker.bid_qty)
    expected_ask = (ticker.ask_price, ticker.ask_qty)
    if bid == expected_bid and ask == expected_ask:
        return None
    track.ticker_mismatches += 1
    return (f"bookTicker at update {ticker.update_id} disagrees: replica bid {bid} ask {ask}, "
            f"venue bid {expected_bid} ask {expected_ask}")
