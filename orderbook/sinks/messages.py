"""The messages the sinks publish, and their two encodings (Redis fields, JSON).

One message describes one symbol's book at update id ``u``:

======== ==================================================================
field    meaning
======== ==================================================================
``type`` ``snapshot`` (the whole book) or ``delta`` (the levels that changed)
``U``    first update id covered; for a snapshot ``U == u``
``u``    the book's update id after this message
``ts``   engine time in µs of the newest change (for a snapshot, the book's
         timestamp; our clock when the venue gave none)
``bids`` JSON array of ``[price, qty]`` decimal strings, best first for a
         snapshot; a delta holds absolute quantities, ``"0"`` = delete
``asks`` the same for asks
======== ==================================================================

Continuity: after a snapshot at ``u = L``, the next delta has ``U == L + 1``
and each later one ``U == previous u + 1``.  A reader applies a snapshot by
replacing its book and a delta by setting each level to its quantity.

In a Redis stream every field is one stream field (``U``, ``u``, ``ts`` as
decimal digits, ``bids``/``asks`` as JSON text); on NATS the message is one
JSON object with the same keys (``U``, ``u``, ``ts`` as numbers).

Decoding validates everything (what a broker holds is input like any other):
the type, the ids (``0 <= U <= u < 2**63``), the time, and every level as a
decimal string within the package's bound; anything else is a
:class:`~orderbook.errors.MalformedMessage` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from .._native import speedups
from ..core.ladder import Level
from ..errors import MalformedMessage, shown
from ..protocol.decimals import decimal_str, is_decimal_string

__all__ = ["Message", "MessageKind", "WireLevels", "decode_fields", "decode_json", "wire_decimal",
           "wire_levels", "wire_raw_levels"]

_MAX_ID = 2**63 - 1

WireLevels = tuple[tuple[str, str], ...]
"""``(price, quantity)`` decimal strings, as published."""


class MessageKind(StrEnum):
    """The ``type`` field of a published message."""

    SNAPSHOT = "snapshot"
    """The whole book at ``u``: replace what you hold."""
    DELTA = "delta"
    """The levels changed in ``U..u`` with their absolute quantity (zero: removed)."""


def wire_levels(levels: Iterable[Level]) -> WireLevels:
    """Levels as published decimal strings (a zero quantity is ``"0"``).  O(n)."""
    return tuple((decimal_str(price), decimal_str(qty) if qty else "0") for price, qty in levels)


def wire_decimal(text: str) -> str:
    """A plain decimal string (:func:`~orderbook.protocol.decimals.is_decimal_string`:
    what the engine accepts in a frame) exactly as :func:`wire_levels` would
    publish its value, ``decimal_str(Decimal(text))``.

    A spelling that is already canonical (no ``.`` first or last, no leading
    zero but a lone ``0`` before the point) is returned as it is, without
    building a ``Decimal``: O(1), a few character tests; the others (``".5"``,
    ``"5."``, ``"007"``) go through ``Decimal``.
    """
    first = text[0]
    if first == "." or text[-1] == "." or (first == "0" and len(text) > 1 and text[1] != "."):
        return decimal_str(Decimal(text))
    return text


def wire_raw_levels(levels: Iterable[tuple[str, str]]) -> WireLevels:
    """Levels given as plain decimal strings (as received and accepted by the
    engine), published exactly as :func:`wire_levels` publishes their values:
    by :func:`wire_decimal`, and a quantity whose value is zero, whatever its
    spelling, as ``"0"``.  O(n); no ``Decimal`` is built for a canonical
    spelling (the common case), and with the C fast path built
    (``_speedups.wire_raw_levels``) no string either: a level already spelled
    as published is the very tuple given."""
    return _wire_raw(levels, wire_decimal)


def _py_wire_raw_levels(levels: Iterable[tuple[str, str]],
                        slow: Callable[[str], str]) -> WireLevels:
    """The pure-Python twin of ``_speedups.wire_raw_levels``: ``slow`` is
    :func:`wire_decimal` (given, so that both twins share its rule)."""
    return tuple((slow(price), "0" if not qty.strip("0.") else slow(qty)) for price, qty in levels)


_wire_raw: Callable[[Iterable[tuple[str, str]], Callable[[str], str]], WireLevels] = (
    _py_wire_raw_levels if speedups is None else speedups.wire_raw_levels)


@dataclass(frozen=True, slots=True)
class Message:
    """One published message of ``symbol`` (see the module docstring for the fields)."""

    symbol: str
    kind: MessageKind
    first_id: int
    last_id: int
    ts: int
    bids: WireLevels
    asks: WireLevels

    def fields(self) -> dict[str, bytes]:
        """The Redis stream entry: ``type``, ``U``, ``u``, ``ts``, ``bids``, ``asks``.  O(levels)."""
        return {
            "type": self.kind.value.encode(),
            "U": str(self.first_id).encode(),
            "u": str(self.last_id).encode(),
            "ts": str(self.ts).encode(),
            "bids": orjson.dumps(self.bids),
            "asks": orjson.dumps(self.asks),
        }

    def json(self) -> bytes:
        """The NATS payload: one JSON object with the same keys.  O(levels)."""
        return orjson.dumps({
            "type": self.kind.value, "U": self.first_id, "u": self.last_id, "ts": self.ts,
            "bids": self.bids, "asks": self.asks,
        })


def _text(value: object, field: str, symbol: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        return value
    raise MalformedMessage(f"{field} must be ASCII text, got {shown(value)}", field=field, symbol=symbol)


def _int(value: object, field: str, symbol: str) -> int:
    if isinstance(value, (bytes, str)):
        text = _text(value, field, symbol)
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise MalformedMessage(f"{field} must be an integer, got {shown(text)}", field=field,
                                   symbol=symbol)
        value = int(text)
    if type(value) is not int or not 0 <= value <= _MAX_ID:
        raise MalformedMessage(f"{field} must be an integer in 0..2**63-1, got {shown(value)}",
                               field=field, symbol=symbol)
    return value


def _levels(value: object, field: str, symbol: str) -> WireLevels:
    if isinstance(value, (bytes, str)):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"{field} is not JSON: {exc}", field=field, symbol=symbol) from exc
    if type(value) is not list:
        raise MalformedMessage(f"{field} must be a JSON array, got {shown(value)}", field=field,
                               symbol=symbol)
    out = []
    for pair in value:
        if (type(pair) is not list or len(pair) != 2 or not is_decimal_string(pair[0])
                or not is_decimal_string(pair[1])):
            raise MalformedMessage(f"{field}: bad level {shown(pair)}", field=field, symbol=symbol)
        out.append((pair[0], pair[1]))
    return tuple(out)


def _message(get: Mapping[str, Any], symbol: str) -> Message:
    kind_text = _text(get.get("type"), "type", symbol)
    try:
        kind = MessageKind(kind_text)
    except ValueError:
        raise MalformedMessage(f"type must be 'snapshot' or 'delta', got {shown(kind_text)}",
                               field="type", symbol=symbol) from None
    first, last = _int(get.get("U"), "U", symbol), _int(get.get("u"), "u", symbol)
    if first > last or (kind is MessageKind.SNAPSHOT and first != last):
        raise MalformedMessage(f"impossible ids U={first} u={last} for a {kind}", field="U",
                               symbol=symbol)
    return Message(symbol, kind, first, last, _int(get.get("ts"), "ts", symbol),
                   _levels(get.get("bids"), "bids", symbol), _levels(get.get("asks"), "asks", symbol))


def decode_fields(fields: Mapping[bytes, bytes] | Mapping[str, str], symbol: str) -> Message:
    """A Redis stream entry's fields (bytes or str keys) as a :class:`Message`.

    Raises :class:`MalformedMessage` naming the bad field.  O(levels).
    """
    by_name: dict[str, Any] = {}
    for key, value in fields.items():
        name = key.decode("ascii", "replace") if isinstance(key, bytes) else key
        by_name[name] = value
    return _message(by_name, symbol)


def decode_json(payload: bytes | str, symbol: str) -> Message:
    """A NATS payload as a :class:`Message`; :class:`MalformedMessage` if it is not one.  O(levels)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"invalid JSON: {exc}", symbol=symbol) from exc
    if type(body) is not dict:
        raise MalformedMessage("a message must be a JSON object", symbol=symbol)
    return _message(body, symbol)


def levels_as_decimals(levels: WireLevels) -> list[Level]:
    """The published levels as exact ``(Decimal, Decimal)`` pairs.  O(n)."""
    return [(Decimal(price), Decimal(qty)) for price, qty in levels]
