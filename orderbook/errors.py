"""The one exception hierarchy of ``orderbook``.

Every error the package raises on purpose derives from :class:`OrderBookError`.
The tree separates what the *venue* got wrong from what the *caller* got wrong
and from the network failing::

    OrderBookError
    ├── VenueDataError            the venue sent something we cannot apply
    │   ├── MalformedMessage      bad JSON, missing or mistyped field, impossible value
    │   ├── SequenceGap           a frame that does not continue the book's sequence
    │   ├── StaleSnapshot         a snapshot older than the first frame it must bridge
    │   └── CrossedBook           best bid >= best ask after a change
    ├── IntegrityError            a book's own invariants broke (a bug, never venue data)
    ├── UsageError (ValueError)   the caller misused the API
    │   └── UnknownSymbol         a symbol the venue does not list
    └── TransportError            network-level failure (the asyncio layer only)
        ├── RateLimited           HTTP 429 from the venue
        ├── VenueUnavailable      retries exhausted, 5xx, timeouts, refused connections
        │   └── ConnectFailed     a WebSocket could not be opened (names the URL and why)
        └── WebSocketClosed       an open WebSocket ended (names the URL and the close codes)

A :class:`VenueDataError` never leaves a book partly changed: the book either
applies a whole frame or none of it.  Library errors are wrapped at the
boundary with ``raise ... from`` so the original cause stays visible.
"""

from __future__ import annotations

__all__ = [
    "ConnectFailed",
    "CrossedBook",
    "IntegrityError",
    "MalformedMessage",
    "OrderBookError",
    "RateLimited",
    "SequenceGap",
    "StaleSnapshot",
    "TransportError",
    "UnknownSymbol",
    "UsageError",
    "VenueDataError",
    "VenueUnavailable",
    "WebSocketClosed",
]

SHOWN_CHARS = 200
"""Most characters of an offending value that an error message shows."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` for an error message: at most ``limit`` characters, and never
    a recursion into it (a list or dict is shown by its size, a huge integer
    by its bit length), so that no hostile value can make the message itself
    fail or grow.  O(limit)."""
    if isinstance(value, str):
        text = repr(value[:limit])
        return text if len(value) <= limit else f"{text}... ({len(value)} characters)"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 3 * limit:
            return f"an integer of {value.bit_length()} bits"
        return str(value)[:limit]
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{bytes(value[:limit])!r}" + ("..." if len(value) > limit else "")
    return f"a {type(value).__name__}"


class OrderBookError(Exception):
    """Root of every exception raised by this package."""


class VenueDataError(OrderBookError):
    """The venue sent data that cannot be applied to a correct book."""


class MalformedMessage(VenueDataError):
    """A frame or snapshot is not valid JSON, lacks a field, has a field of the
    wrong type, or carries an impossible value (negative or non-numeric price or
    quantity, ``U > u``, ...).  ``field`` names the offending field and
    ``symbol`` the market it was for, when known."""

    def __init__(
        self, message: str, *, field: str | None = None, symbol: str | None = None
    ) -> None:
        super().__init__(f"{symbol}: {message}" if symbol else message)
        self.field = field
        self.symbol = symbol


class SequenceGap(VenueDataError):
    """A depth frame ``first_id..last_id`` does not continue a book whose last
    applied update id is ``expected - 1``."""

    def __init__(self, symbol: str, first_id: int, last_id: int, expected: int) -> None:
        super().__init__(
            f"{symbol}: frame U={first_id} u={last_id} does not continue the book "
            f"(expected U={expected})"
        )
        self.symbol = symbol
        self.first_id = first_id
        self.last_id = last_id
        self.expected = expected


class StaleSnapshot(VenueDataError):
    """A snapshot at ``snapshot_id`` is older than the oldest frame available
    to bridge it (that frame starts at ``first_id > snapshot_id + 1``)."""

    def __init__(self, symbol: str, snapshot_id: int, first_id: int) -> None:
        super().__init__(
            f"{symbol}: snapshot lastUpdateId={snapshot_id} is stale; "
            f"the first available frame starts at U={first_id}"
        )
        self.symbol = symbol
        self.snapshot_id = snapshot_id
        self.first_id = first_id


class CrossedBook(VenueDataError):
    """After a change the best bid is at or above the best ask."""

    def __init__(self, symbol: str, bid: object, ask: object, update_id: int | None) -> None:
        super().__init__(f"{symbol}: crossed book bid={bid} >= ask={ask} at update {update_id}")
        self.symbol = symbol
        self.bid = bid
        self.ask = ask
        self.update_id = update_id


class IntegrityError(OrderBookError):
    """``OrderBook.check_integrity`` found a broken invariant: ladder order,
    a zero-quantity level, or a stale cached best level.  Always a bug."""


class UsageError(OrderBookError, ValueError):
    """The caller passed an invalid argument or called at the wrong time."""


class UnknownSymbol(UsageError):
    """A symbol the venue does not list; ``suggestions`` holds close matches."""

    def __init__(self, symbol: str, suggestions: list[str] | None = None) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown symbol {symbol!r}{hint}")
        self.symbol = symbol
        self.suggestions = suggestions or []


class TransportError(OrderBookError):
    """A network operation failed (raised only by the asyncio layer)."""


class RateLimited(TransportError):
    """The venue answered HTTP 429; ``retry_after`` is its hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class VenueUnavailable(TransportError):
    """The venue could not be reached or kept failing after retries."""


class ConnectFailed(VenueUnavailable):
    """A WebSocket to ``url`` could not be opened: the TCP connection was
    refused or timed out, TLS failed, or the server refused the opening
    handshake.  ``detail`` says why (e.g. ``ConnectionRefusedError: ...``,
    ``TimeoutError: no opening handshake within 10 s``)."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"could not open {url}: {detail}")
        self.url = url
        self.detail = detail


class WebSocketClosed(TransportError):
    """An open WebSocket to ``url`` ended.

    ``code`` / ``reason`` are what the server's close frame said (``code``
    1006 and an empty reason when no close frame arrived: the TCP connection
    dropped); ``sent_code`` is the code we sent (``None`` if we sent none),
    e.g. 1001 when we shut down, 1009 for a message over the size limit,
    1011 for a keep-alive ping left unanswered.  ``detail`` is the whole
    story in words, e.g. ``received 1001 (going away) bye; then sent 1001
    (going away) bye``.
    """

    def __init__(self, url: str, code: int, reason: str, sent_code: int | None, detail: str) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.code = code
        self.reason = reason
        self.sent_code = sent_code
        self.detail = detail
