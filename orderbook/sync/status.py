"""Statuses and reasons: what the sync layer says about a symbol, as enums.

A symbol's :class:`Status` is one of four values; while it is not synced, a
:class:`Reason` says why (and, for people, a detail string that is never
parsed).  Both are ``StrEnum``: ``status == "synced"`` keeps working, and
they print as their value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason", "Status"]


class Status(StrEnum):
    """Whether a symbol's book can be trusted."""

    WAITING = "waiting"
    """Never synced yet: the first snapshot is on its way."""
    SYNCED = "synced"
    """The book is exact as of its ``last_update_id``."""
    RESYNCING = "resyncing"
    """Was synced, lost it (see the reason) and is rebuilding from a snapshot."""
    ERROR = "error"
    """Gave up for now (see the reason); retried later, it recovers by itself."""


class Reason(StrEnum):
    """Why a book is not synced, or why it was invalidated."""

    STARTING = "starting"
    """The first snapshot of the symbol is awaited."""
    SEQUENCE_GAP = "sequence gap"
    """A frame did not continue the book: frames were lost."""
    STALE_SNAPSHOT = "stale snapshot"
    """The snapshot was older than the frames that must bridge it, or than the
    book already was; a newer one is requested."""
    MALFORMED_FRAME = "malformed frame"
    """A frame for the symbol could not be read or applied."""
    BAD_SNAPSHOT = "bad snapshot"
    """The snapshot was malformed or crossed."""
    CROSSED_BOOK = "crossed book"
    """A frame left the best bid at or above the best ask."""
    APPLY_ERROR = "apply error"
    """An unexpected exception while applying (the book was cleared)."""
    CONNECTION_LOST = "connection lost"
    """The WebSocket dropped: every book is void until re-synced."""
    NOT_CONNECTED = "not connected"
    """No WebSocket connection is open (yet, or any more)."""
    TICKER_MISMATCH = "bookTicker mismatch"
    """The venue's bookTicker at the book's update id disagreed with its touch."""
    AUDIT_DIVERGENCE = "audit divergence"
    """An audit snapshot disagreed with the book at the same update id."""
    SNAPSHOT_FAILED = "snapshot request failed"
    """The snapshot could not be fetched (the venue unavailable, a 429, ...)."""
    GAVE_UP = "too many failed snapshots"
    """Too many stale or failed snapshots in a row: retried every
    ``error_interval`` seconds."""
    SUBSCRIPTION_REFUSED = "subscription refused"
    """The venue refused the subscription (until the next connection)."""
    FAILED = "failed"
    """The replicator failed for good (e.g. a WebSocket that never connected)."""
