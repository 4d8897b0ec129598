"""What a replay produced (:class:`ReplayResult`), and an engine's whole state as JSON.

:func:`engine_state` is what "replays to the same books, statuses and
counters" means, as data: two engines fed the same inputs give equal states.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..protocol.decimals import decimal_str
from ..sync.engine import Engine
from ..sync.symbol import SymbolSync
from ..sync.track import Track
from .format import CaptureHeader

__all__ = ["ReplayResult", "engine_state"]


@dataclass
class ReplayResult:
    """What a replay produced: the engine (its books, statuses and counters)
    and file-level counts.

    ``ignored_snapshots`` counts depth responses that answered no outstanding
    request; ``bad_events`` events whose fields were unusable; ``events`` the
    events fed; ``last_ts`` the receive time of the last one (µs); ``exact``
    is True for a session replay (:mod:`orderbook.record.session`: every
    engine input from the file) and False when the file is followed
    (:mod:`orderbook.record.replay`).
    """

    engine: Engine | None = None
    header: CaptureHeader | None = None
    ignored_snapshots: int = 0
    bad_events: int = 0
    events: int = 0
    last_ts: int | None = None
    exact: bool = False

    @property
    def machines(self) -> dict[str, SymbolSync]:
        """Each symbol's sequencing machine (its ``book`` and ``counters``)."""
        if self.engine is None:
            return {}
        return {track.name: track.sync for track in self.engine.tracks()}

    @property
    def unattributed_bad_frames(self) -> int:
        """Frames too broken to name a symbol."""
        return self.engine.counters.unattributed_bad_frames if self.engine is not None else 0

    def to_json(self) -> dict[str, Any]:
        """The ``orderbook replay --json`` document: symbols sorted by name,
        prices and quantities as exact decimal strings, best first.
        O(levels)."""
        tracks = {track.name: track for track in self.engine.tracks()} if self.engine else {}
        return {"symbols": {symbol: _book_json(tracks[symbol]) for symbol in sorted(tracks)}}


def _book_json(track: Track) -> dict[str, Any]:
    book, counters = track.sync.book, track.sync.counters
    return {
        "status": str(track.status()),
        "last_update_id": book.last_update_id,
        "bids": [[decimal_str(p), decimal_str(q)] for p, q in book.bids()],
        "asks": [[decimal_str(p), decimal_str(q)] for p, q in book.asks()],
        "frames_applied": counters.frames_applied,
        "frames_dropped": counters.frames_dropped,
        "gaps": counters.gaps,
        "resyncs": counters.resyncs,
        "bad_frames": counters.bad_frames,
    }


def engine_state(engine: Engine) -> dict[str, Any]:
    """Everything an engine's inputs decided, as JSON: per symbol the book,
    status and reason, every sequencing counter and the engine's own figures
    (snapshot requests, failures, staleness alerts, ticker checks and mismatches, audit
    divergences); and the engine's counters.  Latency samples are left out
    (they measure the driver, not the protocol).  O(levels)."""
    symbols: dict[str, Any] = {}
    for track in engine.tracks():
        reason, detail = track.why()
        symbols[track.name] = {
            **_book_json(track),
            "reason": None if reason is None else str(reason),
            "detail": detail,
            "counters": asdict(track.sync.counters),
            "snapshot_requests": track.snapshot_requests,
            "failures": track.failures,
            "staleness_alerts": track.staleness_alerts,
            "ticker_checks": track.ticker_checks,
            "ticker_mismatches": track.ticker_mismatches,
            "audit_divergences": track.audit_divergences,
            "frames": track.frames,
        }
    return {"symbols": symbols, "engine": asdict(engine.counters)}
