"""The mirror's health: :func:`health_body` (``GET /health``) and :func:`status_of`.  No I/O.

Statuses are :class:`~orderbook.sync.status.Status` values (``waiting``,
``synced``, ``resyncing``, ``error``), the reason being separate
(``SymbolStats.not_synced`` / ``reason``).  :meth:`Replicator.status
<orderbook.live.replicator.Replicator.status>` may still spell an error
``"error(<reason>)"``; :func:`status_of` is the one place that form is read,
so that code above it compares :class:`Status` values only.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from ..errors import UsageError
from ..live.replicator import Replicator
from ..sync.status import Status
from .publisher import Publisher

__all__ = ["health_body", "status_of"]


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


def health_body(replicator: Replicator, publisher: Publisher, ready: Callable[[str], bool],
                clients: int) -> tuple[int, bytes]:
    """``(HTTP status, JSON body)`` of ``GET /health``: per symbol its replicator
    status, whether it is served (``ready``), the replica's and the published
    update ids; 200 when every symbol is ready, else 503.  O(symbols)."""
    symbols = {}
    for symbol in publisher.symbols:
        published = publisher.book(symbol)
        symbols[symbol] = {
            "status": replicator.status(symbol),
            "ready": ready(symbol),
            "last_update_id": replicator.book(symbol).last_update_id,
            "published_update_id": published.last_update_id if published else None,
        }
    healthy = all(entry["ready"] for entry in symbols.values())
    body = {"status": "ok" if healthy else "unavailable", "clients": clients, "symbols": symbols}
    return (200 if healthy else 503), orjson.dumps(body)
