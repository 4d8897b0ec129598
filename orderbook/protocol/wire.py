"""Wire parsing: bytes and dicts from the venue -> typed events.

Accepts what Backpack really sends (see ``shared/docs/backpack-protocol.md``):

* ``E`` / ``T`` (microseconds) as JSON integers *or* decimal strings;
* ``lastUpdateId`` as a string or an integer; ids ``U`` / ``u`` likewise;
* zero quantities in any spelling (``"0"``, ``"0.000"``);
* unknown extra fields (ignored).

Everything else raises :class:`~orderbook.errors.MalformedMessage`: invalid
JSON, a missing or mistyped field, a negative, zero (for prices) or
non-numeric price or quantity, ``U > u``.  Prices and quantities must be plain
decimal strings (ASCII digits with at most one ``.``); floats, exponents,
signs, whitespace and NaN are refused because they are not exact or not what
the venue sends.

Level lists in a :class:`DepthEvent` are kept exactly as received (lists of
``[price, quantity]`` strings): converting them is the book's job, because
the book owns the price -> key cache that makes the hot path fast.  With
``validate_levels=False`` the (cheap) per-level check is left to
:meth:`OrderBook.apply_delta`, which checks every level before it changes
anything; the replicator's hot path uses that to avoid checking twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union

import orjson

from .._native import speedups
from ..errors import MalformedMessage, shown
from .decimals import MAX_DECIMALS, MAX_INTEGER_DIGITS, is_decimal_string
from .streams import StreamKind, parse_stream

__all__ = [
    "BookTickerEvent",
    "DepthEvent",
    "Snapshot",
    "StreamReply",
    "WireEvent",
    "is_decimal_string",
    "parse_decimal",
    "parse_frame",
    "parse_levels",
    "parse_message",
    "parse_snapshot",
]

RawLevels = Sequence[Sequence[str]]


@dataclass(slots=True)
class DepthEvent:
    """One ``depth`` frame: absolute quantities for update ids ``first_id..last_id``.

    ``bids`` / ``asks`` are the ``[price, quantity]`` string pairs as received;
    a quantity of zero (any spelling) deletes the level.  Treat as immutable.
    """

    symbol: str
    first_id: int
    last_id: int
    event_time: int
    engine_time: int
    bids: RawLevels
    asks: RawLevels


@dataclass(slots=True, frozen=True)
class BookTickerEvent:
    """One ``bookTicker`` frame: the venue's own view of the touch at ``update_id``."""

    symbol: str
    update_id: int
    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal
    event_time: int
    engine_time: int


@dataclass(slots=True, frozen=True)
class Snapshot:
    """A REST depth snapshot, validated: ``bids`` best (highest) first,
    ``asks`` best (lowest) first, each ``(price, quantity)`` as strings."""

    last_update_id: int
    timestamp: int | None
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]


@dataclass(slots=True, frozen=True)
class StreamReply:
    """A non-data WebSocket message: a subscription acknowledgement or an error.
    ``stream`` is the stream the reply names, when it names one (an error about
    one stream), else ``None``."""

    id: Any
    error: Any
    stream: str | None = None


WireEvent = Union[DepthEvent, BookTickerEvent, StreamReply, None]
"""What :func:`parse_frame` returns: a depth or bookTicker event, a reply, or
``None`` for data of a stream the book does not use."""

_loads = orjson.loads
_native_depth_frame = None
"""``orderbook._speedups.depth_frame`` when the C module is in use."""
PyDepthEvent = DepthEvent
"""The pure-Python depth event (whichever implementation is in use)."""
if speedups is not None:
    # the native twin: same fields and behaviour; when read from a frame's
    # text its levels stay parsed until .bids / .asks is read
    DepthEvent = speedups.DepthEvent  # type: ignore[misc] # noqa: F811
    _native_depth_frame = speedups.depth_frame


def parse_decimal(value: object, field: str, symbol: str | None = None) -> Decimal:
    """Validate a plain decimal string within the bound (see
    :mod:`orderbook.protocol.decimals`) and return it as an exact ``Decimal``."""
    if not is_decimal_string(value):
        raise MalformedMessage(
            f"{field} must be a plain decimal string of at most {MAX_INTEGER_DIGITS} digits "
            f"before the point and {MAX_DECIMALS} after, got {shown(value)}",
            field=field,
            symbol=symbol,
        )
    return Decimal(value)  # type: ignore[arg-type]


MAX_ID = 2**63 - 1
"""Largest update id or time accepted: the venue's ids and microsecond times are int64."""
_MAX_ID_DIGITS = len(str(MAX_ID))


def _as_int(value: object, field: str, symbol: str | None) -> int:
    """An integer field (an id, a time) sent as a JSON int or a digit string,
    in ``0..MAX_ID``; anything else (a bool, a float, a negative number, a
    fraction, a nested value) is refused, whatever its JSON type."""
    if type(value) is int:
        if 0 <= value <= MAX_ID:
            return value
    elif type(value) is str and len(value) <= _MAX_ID_DIGITS and value.isascii() and value.isdecimal():
        number = int(value)
        if number <= MAX_ID:
            return number
    raise MalformedMessage(
        f"{field} must be an integer in 0..2**63-1 or a digit string, got {shown(value)}",
        field=field,
        symbol=symbol,
    )


def _check_levels(levels: object, field: str, symbol: str) -> None:
    """Raise unless ``levels`` is a list of ``[price > 0, quantity >= 0]`` string pairs."""
    if type(levels) is not list:
        raise MalformedMessage(f"{field} must be a list", field=field, symbol=symbol)
    for level in levels:
        if type(level) is not list or len(level) != 2:
            raise MalformedMessage(
                f"{field} level must be a [price, quantity] pair, got {shown(level)}",
                field=field,
                symbol=symbol,
            )
        price, qty = level
        if not parse_decimal(price, f"{field} price", symbol):
            raise MalformedMessage(f"{field} price must be > 0", field=field, symbol=symbol)
        parse_decimal(qty, f"{field} quantity", symbol)


def parse_levels(levels: RawLevels, field: str = "levels") -> list[tuple[Decimal, Decimal]]:
    """Convert raw ``[price, quantity]`` pairs to exact ``(Decimal, Decimal)`` tuples.

    Cost: O(k) for k levels.  Raises :class:`MalformedMessage` on any bad level.
    """
    out = []
    for level in levels:
        if len(level) != 2:
            raise MalformedMessage(f"{field} level must be a pair, got {shown(level)}", field=field)
        price = parse_decimal(level[0], f"{field} price")
        if not price:
            raise MalformedMessage(f"{field} price must be > 0", field=field)
        out.append((price, parse_decimal(level[1], f"{field} quantity")))
    return out


def parse_frame(raw: bytes | bytearray | memoryview | str, *, validate_levels: bool = True) -> WireEvent:
    """Parse one raw WebSocket text frame.

    Returns a :class:`DepthEvent` or :class:`BookTickerEvent` for those streams,
    a :class:`StreamReply` for acknowledgements and error replies, and ``None``
    for data of other streams (trades, tickers, ...).  Raises
    :class:`MalformedMessage` (with ``symbol`` set when the stream names one).
    Cost: O(length of the frame); with the C module a depth frame in the
    venue's plain form is read without ``orjson`` (about 1 µs), anything
    else is decoded by ``orjson.loads``.
    """
    if _native_depth_frame is not None:
        # C fast path: reads a depth frame in the venue's plain form straight
        # from the text; None for anything else, which the code below decides
        event = _native_depth_frame(raw)
        if event is not None:  # its levels are valid: the reader accepts nothing else
            return event  # type: ignore[no-any-return]
    try:
        message = _loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"invalid JSON: {exc}") from exc
    if type(message) is dict:  # the common case, a depth frame, without parse_message's checks
        stream = message.get("stream")
        data = message.get("data")
        if type(stream) is str and type(data) is dict and stream.startswith("depth."):
            name = parse_stream(stream)
            if name is not None:
                return _parse_depth(data, name.symbol, validate_levels)
    return parse_message(message, validate_levels=validate_levels)


def parse_message(message: object, *, validate_levels: bool = True) -> WireEvent:
    """Like :func:`parse_frame` for a frame already decoded from JSON
    (for example a ``frame`` of a capture file)."""
    if type(message) is not dict:
        raise MalformedMessage(f"frame must be a JSON object, got {type(message).__name__}")
    stream = message.get("stream")
    if stream is None:
        if "error" in message or "result" in message or "id" in message:
            return StreamReply(message.get("id"), message.get("error"))
        raise MalformedMessage("frame has neither 'stream' nor a reply field", field="stream")
    if type(stream) is not str:
        raise MalformedMessage(f"stream must be a string, got {shown(stream)}", field="stream")
    name = parse_stream(stream)
    data = message.get("data")
    if type(data) is not dict:
        if "error" in message:
            return StreamReply(message.get("id"), message.get("error"), stream)
        raise MalformedMessage("frame has no 'data' object", field="data",
                               symbol=name.symbol if name else None)
    if name is None:
        if stream.partition(".")[0] in (StreamKind.DEPTH, StreamKind.BOOK_TICKER):
            raise MalformedMessage(f"stream {shown(stream)} names no symbol", field="stream")
        return None
    if name.kind is StreamKind.DEPTH:
        return _parse_depth(data, name.symbol, validate_levels)
    return _parse_book_ticker(data, name.symbol)


def _parse_depth(data: dict[str, Any], symbol: str, validate_levels: bool) -> DepthEvent:
    if not symbol:
        raise MalformedMessage("depth stream names no symbol", field="stream")
    try:
        first = data["U"]
        last = data["u"]
        bids = data["b"]
        asks = data["a"]
        event_time = data["E"]
        engine_time = data["T"]
    except KeyError as exc:
        raise MalformedMessage(
            f"depth frame lacks field {exc.args[0]!r}", field=str(exc.args[0]), symbol=symbol
        ) from None
    # the common case (non-negative JSON ints of at most 63 bits) costs two
    # comparisons per field; anything else is decided by _as_int
    if type(first) is not int or not 0 <= first <= MAX_ID:
        first = _as_int(first, "U", symbol)
    if type(last) is not int or not 0 <= last <= MAX_ID:
        last = _as_int(last, "u", symbol)
    if first > last:
        raise MalformedMessage(f"U={first} > u={last}", field="U", symbol=symbol)
    if type(event_time) is not int or not 0 <= event_time <= MAX_ID:
        event_time = _as_int(event_time, "E", symbol)
    if type(engine_time) is not int or not 0 <= engine_time <= MAX_ID:
        engine_time = _as_int(engine_time, "T", symbol)
    named = data.get("s", symbol)
    if named != symbol:
        raise MalformedMessage(f"stream symbol {shown(symbol)} but s={shown(named)}", field="s",
                               symbol=symbol)
    if validate_levels:
        _check_levels(bids, "b", symbol)
        _check_levels(asks, "a", symbol)
    elif type(bids) is not list or type(asks) is not list:
        raise MalformedMessage("a and b must be lists", field="a/b", symbol=symbol)
    return DepthEvent(symbol, first, last, event_time, engine_time, bids, asks)


def _parse_book_ticker(data: dict[str, Any], symbol: str) -> BookTickerEvent:
    try:
        fields = [data[name] for name in ("u", "b", "B", "a", "A", "E", "T")]
    except KeyError as exc:
        raise MalformedMessage(
            f"bookTicker frame lacks field {exc.args[0]!r}", field=str(exc.args[0]), symbol=symbol
        ) from None
    update_id, bid, bid_qty, ask, ask_qty, event_time, engine_time = fields
    return BookTickerEvent(
        symbol=symbol,
        update_id=_as_int(update_id, "u", symbol),
        bid_price=parse_decimal(bid, "b", symbol),
        bid_qty=parse_decimal(bid_qty, "B", symbol),
        ask_price=parse_decimal(ask, "a", symbol),
        ask_qty=parse_decimal(ask_qty, "A", symbol),
        event_time=_as_int(event_time, "E", symbol),
        engine_time=_as_int(engine_time, "T", symbol),
    )


def parse_snapshot(body: object, symbol: str | None = None) -> Snapshot:
    """Validate a REST ``/api/v1/depth`` body (bytes, str or decoded dict).

    The venue does not specify the order of a snapshot's levels (its own
    docs show bids ascending), so each side is sorted here, bids highest
    first and asks lowest first.  Raises :class:`MalformedMessage` unless
    every level is a valid ``[price > 0, quantity >= 0]`` pair within the
    value bound, no price is listed twice on a side (in any spelling), and
    ``lastUpdateId`` (and ``timestamp`` when present) is an integer or digit
    string.  A crossed snapshot is refused by :meth:`OrderBook.apply_snapshot`.
    Cost: O(n) for n levels already in order, O(n log n) otherwise.
    """
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            body = _loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"invalid JSON: {exc}", symbol=symbol) from exc
    if type(body) is not dict:
        raise MalformedMessage("snapshot must be a JSON object", symbol=symbol)
    if "lastUpdateId" not in body:
        code = body.get("code")
        detail = f" (venue error {shown(code)}: {shown(body.get('message'))})" if code else ""
        raise MalformedMessage(f"snapshot lacks lastUpdateId{detail}", field="lastUpdateId", symbol=symbol)
    last_update_id = _as_int(body["lastUpdateId"], "lastUpdateId", symbol)
    timestamp = body.get("timestamp")
    if timestamp is not None:
        timestamp = _as_int(timestamp, "timestamp", symbol)
    sides = []
    for field, descending in (("bids", True), ("asks", False)):
        levels = body.get(field)
        if levels is None:
            raise MalformedMessage(f"snapshot lacks {field}", field=field, symbol=symbol)
        _check_levels(levels, field, symbol or "")
        sides.append(_sorted_side(levels, field, descending, symbol))
    return Snapshot(last_update_id, timestamp, sides[0], sides[1])


def _sorted_side(
    levels: list[list[str]], field: str, descending: bool, symbol: str | None
) -> tuple[tuple[str, str], ...]:
    """One validated side, best first; a price listed twice is refused.  O(n)
    when already in order (the usual case), else O(n log n)."""
    prices = [Decimal(price) for price, _qty in levels]
    order = range(len(levels))
    in_order = all(
        (a > b) if descending else (a < b) for a, b in zip(prices, prices[1:])
    )
    if not in_order:
        order = sorted(order, key=prices.__getitem__, reverse=descending)  # type: ignore[assignment]
        for a, b in zip(order, order[1:]):
            if prices[a] == prices[b]:
                raise MalformedMessage(
                    f"snapshot {field} list price {shown(levels[a][0])} twice",
                    field=field,
                    symbol=symbol,
                )
    return tuple((levels[i][0], levels[i][1]) for i in order)
