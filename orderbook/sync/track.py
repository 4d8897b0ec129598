"""``Track``: the engine's state of one symbol around its :class:`SymbolSync`."""

from __future__ import annotations

from ..protocol.wire import BookTickerEvent
from .retry import RetrySchedule
from .status import Reason, Status
from .symbol import SymbolSync, SyncState

__all__ = ["Track"]


class Track:
    """One symbol as the :class:`~orderbook.sync.engine.Engine` sees it.

    ``sync`` is the sequencing machine (and its book); the rest is what the
    engine adds: subscription, the outstanding snapshot ``ticket``, the
    ``retry`` schedule, failures in a row, health (``stale``), the pending
    ``ticker`` of the cross-check and the ``audit`` shadow.  Read-only for
    everyone but the engine.  O(1) memory besides the book.
    """

    __slots__ = (
        "sync", "started", "ever_synced", "subscribed", "refused", "error", "ticket", "retry",
        "failures", "last_reason", "last_cause", "frames", "last_frame_us", "stale",
        "staleness_alerts", "invalidated_at", "invalidated_by_reconnect", "ticker",
        "ticker_checks", "ticker_mismatches", "audit", "audit_deadline", "audit_divergences", "snapshot_requests",
        "watched",
    )

    def __init__(self, sync: SymbolSync) -> None:
        self.sync = sync
        self.started = False
        self.ever_synced = False
        self.subscribed = False
        self.refused: str | None = None
        """The venue's error when it refused the subscription (until re-subscribed)."""
        self.error: tuple[Reason, str] | None = None
        """Set while the symbol has given up for now (or the driver failed)."""
        self.ticket: int | None = None
        """The outstanding sync snapshot fetch, if any."""
        self.retry: RetrySchedule | None = None
        self.failures = 0
        """Failed or refused snapshots in a row (stale ones are ``sync.stale_streak``)."""
        self.last_reason = ""
        self.last_cause: Reason | None = None
        self.frames = 0
        self.last_frame_us: int | None = None
        self.stale = False
        self.staleness_alerts = 0
        self.invalidated_at: int | None = None
        self.invalidated_by_reconnect = False
        self.ticker: BookTickerEvent | None = None
        self.ticker_checks = 0
        """bookTickers compared with the touch (at exactly the book's update id)."""
        self.ticker_mismatches = 0
        self.audit: SymbolSync | None = None
        self.audit_deadline: int | None = None
        self.audit_divergences = 0
        self.snapshot_requests = 0
        self.watched = False
        """True when a frame of the symbol may matter beyond the book (see
        :meth:`watch`): the engine's hot path checks this one flag."""

    def watch(self) -> None:
        """Recompute :attr:`watched`: a stale flag to clear, a retry waiting
        for frames, a ticker to compare or an audit shadow to feed.  O(1)."""
        self.watched = (self.stale or self.ticker is not None or self.retry is not None
                        or self.audit is not None)

    @property
    def name(self) -> str:
        """The symbol."""
        return self.sync.symbol

    def status(self) -> Status:
        """The symbol's status.  O(1)."""
        if self.refused is not None or self.error is not None:
            return Status.ERROR
        if self.sync.state is SyncState.SYNCED:
            return Status.SYNCED
        return Status.RESYNCING if self.ever_synced else Status.WAITING

    def why(self) -> tuple[Reason | None, str]:
        """Why the symbol is not synced (``(None, "")`` while it is).  O(1)."""
        if self.refused is not None:
            return Reason.SUBSCRIPTION_REFUSED, f"subscription refused: {self.refused}"
        if self.error is not None:
            return self.error
        if self.sync.state is SyncState.SYNCED:
            return None, ""
        if self.last_cause is None:
            return Reason.STARTING, "awaiting the first snapshot"
        return self.last_cause, self.last_reason
