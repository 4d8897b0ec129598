"""What a replicator status means: :func:`status_of`.  No I/O.

Statuses are :class:`~orderbook.sync.status.Status` values (``waiting``,
``synced``, ``resyncing``, ``error``), the reason being separate
(``SymbolStats.not_synced`` / ``reason``).  :meth:`Replicator.status
<orderbook.live.replicator.Replicator.status>` may still spell an error
``"error(<reason>)"``; :func:`status_of` is the one place that form is read,
so that code above it compares :class:`Status` values only.
"""

from __future__ import annotations

from ..errors import UsageError
from ..sync.status import Status

__all__ = ["status_of"]


def status_of(status: str) -> Status:
    """The :class:`Status` of a replicator status: a ``Status`` (or its value)
    as it is, ``"error(<reason>)"`` as :attr:`Status.ERROR`.  Raises
    :class:`UsageError` for anything else.  O(len)."""
    try:
        return Status(status)
    except ValueError:
        pass
    head, parenthesis, _ = status.partition("(")  # the "error(<reason>)" spelling
    if parenthesis and head == Status.ERROR.value:
        return Status.ERROR
    raise UsageError(f"not a replicator status: {status[:80]!r}")
