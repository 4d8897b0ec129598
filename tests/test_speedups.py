"""The optional C fast paths (``orderbook._speedups``) against the pure-Python reference.

``orderbook._speedups`` handles the well-formed common case of the two
hottest steps and declines (returns ``None``) for everything else, so that
the Python code stays the reference and the only place errors are raised.
This file guards that contract:

* the extension really is built wherever a C compiler exists (a silently
  failed optional build would leave every install on the slow path);
* ``depth_frame`` (the C reader of raw frame text) never returns an event
  that differs from ``orjson.loads`` + ``parse_message(...,
  validate_levels=False)``, never returns one for text either rejects, and
  takes every frame in the venue's plain form (Hypothesis: plain frames in
  any key order and whitespace, decoded shapes of every kind rendered as
  text, character-level damage to plain frames; also ``parse_frame`` with
  and without the fast path);
* ``apply_delta``, through ``OrderBook.apply_delta``, leaves a book exactly
  where the pure path leaves it (same sorted keys, dead keys, stored levels
  and best levels, same return value, same exception, same integrity) for
  random frames mixing good, malformed, rescaling and int64-overflowing
  levels, gaps and other symbols, with the default ladder bounds and with
  tiny ones (frequent cache clearing and dead-key compaction); a declined
  call leaves the book untouched except for true entries in the price cache;
* neither function leaks memory or references;
* the core test modules pass in pure-Python mode (``ORDERBOOK_PURE_PYTHON=1``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import string
import subprocess
import sys
import sysconfig
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orjson

import orderbook.book as book_module
import orderbook.wire as wire_module
from orderbook import MalformedMessage, OrderBook
from orderbook._native import PURE_PYTHON_ENV, implementation, speedups
from orderbook.book import Ladder
from orderbook.wire import DepthEvent, is_decimal_string, parse_frame, parse_message

REPO = Path(__file__).resolve().parent.parent
SYMBOL = "SOL_USDC"

needs_native = pytest.mark.skipif(
    speedups is None,
    reason="orderbook._speedups is not in use (not built, or ORDERBOOK_PURE_PYTHON is set)",
)

# =================================================================== build


def _c_compiler() -> str | None:
    """Path of the C compiler setuptools would use, or of ``cc``; None if neither exists."""
    configured = sysconfig.get_config_var("CC") or ""
    first = configured.split()[0] if configured.split() else ""
    return (shutil.which(first) if first else None) or shutil.which("cc")


def test_native_module_is_built_when_a_compiler_exists() -> None:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        pytest.skip(f"{PURE_PYTHON_ENV} is set: pure Python was asked for")
    if _c_compiler() is None:
        pytest.skip("no C compiler on this machine: the pure-Python fallback is expected")
    assert implementation() == "native", (
        "a C compiler exists but orderbook._speedups was not built or does not import; "
        "reinstall with `pip install -e .` and read the build output"
    )
    assert speedups is not None
    assert book_module._native_apply_delta is speedups.apply_delta
    assert wire_module._native_depth_frame is speedups.depth_frame


# ============================================================ depth_frame

SYMBOL_CHARS = string.ascii_uppercase + string.digits + "_"
symbols = st.one_of(
    st.text(SYMBOL_CHARS, min_size=1, max_size=16),
    st.text(
        st.characters(blacklist_characters=".", blacklist_categories=["Cs"]), min_size=1, max_size=6
    ),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
decimal_texts = st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{0,4})?\Z")
raw_levels: st.SearchStrategy[Any] = st.lists(
    st.one_of(
        st.lists(decimal_texts, min_size=2, max_size=2),
        st.lists(st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=3),
    ),
    max_size=4,
)
DEPTH_FIELDS = ("U", "u", "E", "T", "b", "a", "s")


@st.composite
def spelled_ids(draw: st.DrawFn, low: int, high: int) -> tuple[int | str, int]:
    """``(spelling, value)``: a JSON int (any size) or a digit string of at most
    18 characters (zero-padded sometimes), both accepted by the fast path."""
    if low > 10**17 or draw(st.booleans()):
        value = draw(st.integers(low, high))
        return value, value
    value = draw(st.integers(low, min(high, 10**17)))
    text = str(value)
    return text.zfill(draw(st.integers(len(text), 18))), value


@st.composite
def well_formed_depth(draw: st.DrawFn) -> tuple[dict[str, Any], DepthEvent]:
    """A well-formed depth frame (as decoded from JSON) and the event it means."""
    symbol = draw(symbols)
    first_spelled, first = draw(spelled_ids(0, 2**80))
    last_spelled, last = draw(spelled_ids(first, first + draw(st.sampled_from([0, 1, 10**6, 2**70]))))
    event_spelled, event_time = draw(spelled_ids(0, 2**80))
    engine_spelled, engine_time = draw(spelled_ids(0, 2**80))
    bids = draw(raw_levels)
    asks = draw(raw_levels)
    data: dict[str, Any] = draw(
        st.dictionaries(st.text(max_size=3).filter(lambda k: k not in DEPTH_FIELDS), json_values, max_size=3)
    )
    data.update({"e": "depth", "E": event_spelled, "T": engine_spelled, "U": first_spelled, "u": last_spelled})
    data["b"], data["a"] = bids, asks
    if draw(st.booleans()):
        data["s"] = symbol
    # a random key order: the C code must not depend on it
    data = dict(draw(st.permutations(list(data.items()))))
    prefix = draw(st.sampled_from(["depth.", "depth.200ms.", "depth.1000ms."]))
    message: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(["id", "extra", "x"]), json_values, max_size=2)
    )
    message["stream"] = prefix + symbol
    message["data"] = data
    return message, DepthEvent(symbol, first, last, event_time, engine_time, bids, asks)


BAD_VALUES: list[Any] = [
    1.0, 0.0, True, False, None, -1, -(2**70), [], {}, [1], "", "-1", "+1", "1.0", " 1", "1 ",
    "١٢", "１２", "²", "1_0", "0x10", "1e5", "1" * 19, "9" * 41, "NaN", 2**64, 2**200,
]  # fmt: skip
BAD_STREAMS: list[Any] = [
    "depth.", "depth", "depth..", "depth.X.", "trade.SOL_USDC", "bookTicker.SOL_USDC", "DEPTH.SOL_USDC",
    "depthX.SOL_USDC", " depth.SOL_USDC", "depth.200ms.SOL_USDC", "depth.SOL_USDC.", "", None, 5, ["depth.X"],
]  # fmt: skip


@st.composite
def mutated_depth(draw: st.DrawFn) -> dict[str, Any] | Any:
    """A well-formed depth frame with one to three things broken (or not quite)."""
    message, _event = draw(well_formed_depth())
    for _ in range(draw(st.integers(1, 3))):
        data = message.get("data")
        kind = draw(
            st.sampled_from(
                ["drop", "bad value", "U>u", "stream", "s", "data", "message", "huge", "drop top"]
            )
        )
        if kind == "message":
            return draw(st.sampled_from([[], None, "depth.X", 5, [message]]))
        if kind == "drop top":
            message.pop(draw(st.sampled_from(["stream", "data"])), None)
        elif kind == "stream":
            message["stream"] = draw(st.sampled_from(BAD_STREAMS))
        elif kind == "data":
            message["data"] = draw(st.sampled_from([None, [], "x", 1, [data]]))
        elif type(data) is dict:
            if kind == "drop":
                data.pop(draw(st.sampled_from(DEPTH_FIELDS)), None)
            elif kind == "bad value":
                data[draw(st.sampled_from(DEPTH_FIELDS))] = draw(st.sampled_from(BAD_VALUES))
            elif kind == "U>u":
                low = draw(st.integers(0, 10**17))
                data["U"] = low + draw(st.integers(1, 10))
                data["u"] = draw(st.sampled_from([low, str(low)]))
            elif kind == "s":
                symbol = str(message.get("stream", "")).rpartition(".")[2]
                data["s"] = draw(st.sampled_from([symbol + "X", symbol.lower() + "x", "", None, 1, [symbol]]))
            elif kind == "huge":
                data[draw(st.sampled_from("UuET"))] = draw(
                    st.sampled_from([2**63, 2**64 + 1, 10**30, str(2**63), "9" * 18, "0" * 19 + "1"])
                )
    return message


def _pure_text(raw: bytes | str) -> object:
    """What the reference path (``orjson.loads`` + ``parse_message``) makes of
    a raw frame: a result, or the kind of error it raises."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "invalid JSON"
    try:
        return parse_message(message, validate_levels=False)
    except MalformedMessage as exc:
        return exc


def _assert_frame_agrees(raw: Any) -> DepthEvent | None:
    """``depth_frame(raw)`` declines, or gives exactly the reference's event."""
    assert speedups is not None
    event = speedups.depth_frame(raw)
    if event is None:
        return None
    reference = _pure_text(raw)
    assert type(event) is DepthEvent, event
    assert event == reference, f"depth_frame gave {event!r}, the reference {reference!r} for {raw!r}"
    for name in ("first_id", "last_id", "event_time", "engine_time"):
        assert type(getattr(event, name)) is int
    assert type(event.symbol) is str
    for side in (event.bids, event.asks):  # what orjson builds: lists of [str, str] lists
        assert type(side) is list
        assert all(type(level) is list and [type(x) for x in level] == [str, str] for level in side)
    return event  # type: ignore[no-any-return]


WHITESPACE = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n  "])


@st.composite
def render(draw: st.DrawFn, value: Any) -> str:
    """``value`` as JSON text with random whitespace between the tokens."""
    if isinstance(value, dict):
        items = [
            draw(WHITESPACE) + json.dumps(key) + draw(WHITESPACE) + ":" + draw(render(item))
            for key, item in value.items()
        ]
        body = ",".join(items) or draw(WHITESPACE)
        return draw(WHITESPACE) + "{" + body + draw(WHITESPACE) + "}" + draw(WHITESPACE)
    if isinstance(value, list):
        body = ",".join(draw(render(item)) for item in value) or draw(WHITESPACE)
        return draw(WHITESPACE) + "[" + body + draw(WHITESPACE) + "]" + draw(WHITESPACE)
    return draw(WHITESPACE) + json.dumps(value) + draw(WHITESPACE)


PLAIN_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\'), max_size=6)
plain_scalars = st.one_of(st.none(), st.booleans(), st.integers(0, 10**18 - 1), PLAIN_TEXT)


@st.composite
def plain_depth(draw: st.DrawFn) -> tuple[str, DepthEvent]:
    """A depth frame as JSON text in the plain form the fast path must take:
    ASCII, no escapes, ids below 10**18, unknown keys with scalar values; any
    key order and whitespace."""
    symbol = draw(st.text(SYMBOL_CHARS, min_size=1, max_size=16))
    first = draw(st.integers(0, 10**17))
    last = first + draw(st.integers(0, 10**6))
    event_time, engine_time = draw(st.integers(0, 10**18 - 1)), draw(st.integers(0, 10**18 - 1))
    spelled = [draw(st.sampled_from([value, str(value), str(value).zfill(18)])) for value in
               (first, last, event_time, engine_time)]  # fmt: skip
    level = st.lists(st.one_of(decimal_texts, PLAIN_TEXT), min_size=2, max_size=2)
    bids, asks = draw(st.lists(level, max_size=5)), draw(st.lists(level, max_size=5))
    data: dict[str, Any] = draw(
        st.dictionaries(PLAIN_TEXT.filter(lambda k: k not in DEPTH_FIELDS), plain_scalars, max_size=3)
    )
    data.update(zip(("U", "u", "E", "T"), spelled))
    data.update({"e": "depth", "b": bids, "a": asks})
    if draw(st.booleans()):
        data["s"] = symbol
    data = dict(draw(st.permutations(list(data.items()))))
    message: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(["id", "extra", "x"]), plain_scalars, max_size=2)
    )
    message["stream"] = draw(st.sampled_from(["depth.", "depth.200ms.", "depth.1000ms."])) + symbol
    message["data"] = data
    message = dict(draw(st.permutations(list(message.items()))))
    return draw(render(message)), DepthEvent(symbol, first, last, event_time, engine_time, bids, asks)


@needs_native
@settings(max_examples=400, deadline=None)
@given(plain_depth(), st.booleans())
def test_depth_frame_takes_plain_frames_and_matches_the_reference(
    case: tuple[str, DepthEvent], as_bytes: bool
) -> None:
    text, expected = case
    raw = text.encode() if as_bytes else text
    event = _assert_frame_agrees(raw)
    assert event is not None, f"depth_frame declined a plain frame: {raw!r}"
    assert event == expected


@needs_native
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(well_formed_depth().map(lambda case: case[0]), mutated_depth()), st.data())
def test_depth_frame_never_disagrees_on_any_decoded_shape(message: Any, data: st.DataObject) -> None:
    """Dict-level variety (nested and float values, huge ids, bad fields) rendered as JSON text."""
    try:
        text = data.draw(render(message))
    except (TypeError, ValueError):  # a value JSON cannot hold
        return
    _assert_frame_agrees(text.encode())
    _assert_frame_agrees(json.dumps(message, ensure_ascii=False).encode())


JSON_NOISE = list('{}[]",:0123456789.-+eE \t\n\\/xuUTsab') + ["\x00", "\x1f", "\x7f", "é", "\ufeff", "null", "true"]


@needs_native
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_depth(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.sampled_from(JSON_NOISE)),
                               min_size=1, max_size=3))  # fmt: skip
def test_depth_frame_never_accepts_damaged_text_differently(
    case: tuple[str, DepthEvent], edits: list[tuple[int, int, str]]
) -> None:
    """Byte-level damage to a plain frame (insert, replace or delete one
    character): the reader must decline, or agree with orjson + Python."""
    text = case[0]
    for position, kind, char in edits:
        at = position % (len(text) + 1)
        if kind == 0:
            text = text[:at] + char + text[at:]
        elif kind == 1:
            text = text[:at] + char + text[at + 1 :]
        else:
            text = text[:at] + text[at + 1 :]
    _assert_frame_agrees(text.encode("utf-8", "surrogatepass"))
    _assert_frame_agrees(text)


DEPTH_BODY = '"U":1,"u":2,"E":3,"T":4,"b":[["1.5","2"]],"a":[]'


@needs_native
@pytest.mark.parametrize(
    "raw",
    [
        '{"stream":"depth.X","data":{' + DEPTH_BODY + "}} x",  # text after the object
        '{"stream":"depth.X","data":{' + DEPTH_BODY + "}",  # unclosed
        '\ufeff{"stream":"depth.X","data":{' + DEPTH_BODY + "}}",  # byte order mark
        '{"stream":"depth.X","stream":"depth.Y","data":{' + DEPTH_BODY + "}}",  # repeated key
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ',"U":2}}',
        '{"stream":"depth.X","data":{' + DEPTH_BODY + "},}",  # trailing comma
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ",}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1', '"U":01') + "}}",  # leading zero
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1', '"U":1.0') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1', '"U":1e0') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1', '"U":-1') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1', '"U":1' + "0" * 18) + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1', '"U":"' + "1" * 19 + '"') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1,"u":2', '"U":"' + "9" * 19 + '","u":"' + "9" * 19 + '"') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1,"u":2', '"U":' + "9" * 19 + ',"u":' + "9" * 19) + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"E":3', '"E":"' + "0" * 19 + '3"') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"U":1', '"U":3') + "}}",  # U > u
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"1.5"', '"1\\u002e5"') + "}}",  # escape
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"1.5"', '"1.5\t"') + "}}",  # control char
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('"1.5"', '1.5') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1.5","2","3"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1.5"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1.5","2"],') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace(',"a":[]', "") + "}}",  # missing field
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ',"s":"Y"}}',
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ',"s":null}}',
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ',"x":{"y":1}}}',  # nested unknown value
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ',"x":[1]}}',
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ',"x":1.5}}',
        '{"stream":"depth.X","data":{' + DEPTH_BODY + ',"x":nul}}',
        '{"stream":"depth.","data":{' + DEPTH_BODY + "}}",
        '{"stream":"depth.200ms.","data":{' + DEPTH_BODY + "}}",
        '{"stream":"trade.X","data":{' + DEPTH_BODY + "}}",
        '{"stream":"depth.X","data":[1]}',
        '{"stream":"depth.X"}',
        '{"data":{' + DEPTH_BODY + "}}",
        '{"stream":"depth.é","data":{' + DEPTH_BODY + "}}",
        '{"result":null,"id":1}',
        "{}",
        "[]",
        "",
        "null",
    ],
)
def test_depth_frame_declines_what_it_must_not_read(raw: str) -> None:
    assert speedups is not None
    assert speedups.depth_frame(raw) is None
    assert speedups.depth_frame(raw.encode()) is None


@needs_native
def test_depth_frame_reads_bytes_and_ascii_text_only() -> None:
    assert speedups is not None
    raw = '{"stream":"depth.200ms.X","data":{"e":"depth","s":"X",' + DEPTH_BODY + "}}"
    expected = DepthEvent("X", 1, 2, 3, 4, [["1.5", "2"]], [])
    assert _assert_frame_agrees(raw) == expected
    assert _assert_frame_agrees(raw.encode()) == expected
    for other in (bytearray(raw.encode()), memoryview(raw.encode()), None, 5, {"stream": "depth.X"}):
        assert speedups.depth_frame(other) is None
    # the symbol object is shared between frames of the same stream, and still right after a change
    first, second = speedups.depth_frame(raw), speedups.depth_frame(raw.encode())
    assert first.symbol is second.symbol
    assert speedups.depth_frame(raw.replace("X", "Y")).symbol == "Y"


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(well_formed_depth().map(lambda case: case[0]), mutated_depth()), st.booleans(), st.booleans())
def test_parse_frame_is_the_same_with_and_without_the_fast_path(
    message: Any, validate_levels: bool, ascii_only: bool
) -> None:
    raw = json.dumps(message, ensure_ascii=ascii_only).encode()

    def outcome() -> object:
        try:
            return parse_frame(raw, validate_levels=validate_levels)
        except MalformedMessage as exc:
            return (type(exc), str(exc))

    native = outcome()
    with mock.patch.object(wire_module, "_native_depth_frame", None):
        pure = outcome()
    assert native == pure, f"{raw!r}: native {native!r}, pure {pure!r}"


# ============================================================ apply_delta

PIVOT = Decimal(100)  # bids below, asks at or above: a generated book never crosses
BID_VALUES = [Decimal(k) / 4 for k in range(1, 25)]
ASK_VALUES = [PIVOT + Decimal(k) / 4 for k in range(0, 24)]
"""Common prices: a small set, so frames keep hitting levels of the book."""
BID_ODD = [
    Decimal("99.125"), Decimal("50.0001"), Decimal("0.00000001"), Decimal("7.123456789"),
    Decimal("0.0000000000000000001"),  # 19 decimals: the ladders leave the int64-friendly scales
]  # fmt: skip
ASK_ODD = [
    Decimal("100.0625"), Decimal("123.45678"),
    Decimal("92233720368547758.08"),  # just above int64 at scale 2
    Decimal("99999999999999999999"),  # above int64 at any scale
    Decimal("9223372036854775807"),  # int64 max at scale 0
    Decimal("900000000000000000"),  # fits at scale 0 and 1, not at 2
]  # fmt: skip
"""Rare prices: many decimals (rescales) or too large for the C code's int64."""
ZERO_QTYS = ["0", "0.000", "00.0", "0.", ".0", "000"]
MALFORMED_LEVELS: list[Any] = [
    [1, "1"], ["1", 1], [None, "1"], ["1.5", None], [1.5, "1"], ["-1", "1"], ["1", "-1"], ["1e5", "1"],
    ["1", "1e5"], ["", "1"], ["1", ""], [".", "1"], ["1", "."], ["1.2.3", "1"], ["1", "1.2.3"], [" 1", "1"],
    ["1", " 1"], ["1 ", "1"], ["0", "1"], ["0.00", "1"], ["000", "0"], ["١٢", "1"], ["1", "١٢"], ["+1", "1"],
    ["1_0", "1"], ["1", "1_0"], ["NaN", "1"], ["1", "NaN"], ["1.5", "1", "2"], ["1.5"], [], "1.5", None,
    {"p": "1"}, [b"1", "1"], [["1"], "1"], ["1", "²"],
]  # fmt: skip


def spell(value: Decimal, extra_zeros: int) -> str:
    """A plain spelling of ``value`` with ``extra_zeros`` trailing zeros added
    (each extra decimal can force a rescale)."""
    text = format(value.normalize(), "f")
    if extra_zeros:
        text += ("" if "." in text else ".") + "0" * extra_zeros
    return text


quantities = st.builds(
    lambda units, places: spell(Decimal(units).scaleb(-places), 0), st.integers(1, 10**9), st.integers(0, 6)
)


@st.composite
def levels(draw: st.DrawFn, values: list[Decimal], odd: list[Decimal], malformed: bool) -> Any:
    """One side of a frame: good levels (updates, deletes in any zero spelling,
    prices respelled with trailing zeros), sometimes malformed ones, as a list
    (sometimes of tuples), sometimes the whole side as a tuple."""
    out: list[Any] = []
    if draw(st.integers(0, 5)) == 0:  # a sweep: many deletes (dead keys, compaction)
        swept = draw(st.lists(st.sampled_from(values), min_size=4, max_size=16, unique=True))
        out.extend([spell(value, 0), draw(st.sampled_from(ZERO_QTYS))] for value in swept)
    for _ in range(draw(st.integers(0, 6))):
        roll = draw(st.integers(0, 19))
        if malformed and roll == 0:
            out.append(draw(st.sampled_from(MALFORMED_LEVELS)))
            continue
        value = draw(st.sampled_from(odd if draw(st.integers(0, 49)) == 0 else values))
        price = spell(value, draw(st.sampled_from([0] * 8 + [1, 2])))
        qty = draw(st.sampled_from(ZERO_QTYS)) if roll < 6 else draw(quantities)
        out.append((price, qty) if roll == 19 else [price, qty])
    if malformed and draw(st.integers(0, 14)) == 0:
        return tuple(out)
    return out


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    decimals = draw(st.integers(0, 3))

    def side(values: list[Decimal], descending: bool) -> list[list[str]]:
        chosen = draw(st.lists(st.sampled_from(values), max_size=12, unique=True))
        chosen.sort(reverse=descending)
        # every price spelled with at least ``decimals`` decimals: the snapshot's scale
        padded = [spell(v, max(0, decimals - len(spell(v, 0).partition(".")[2]))) for v in chosen]
        return [[price, draw(quantities)] for price in padded]

    return {
        "lastUpdateId": draw(st.integers(1, 10**6)),
        "timestamp": 1,
        "bids": side(BID_VALUES, True),
        "asks": side(ASK_VALUES, False),
    }


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[str, int, int, Any, Any]]:
    """``(sequencing, back, span, bid levels, ask levels)`` per frame."""
    malformed = draw(st.booleans())
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["next"] * 12 + ["gap", "other symbol"]),
                st.integers(0, 3),
                st.integers(0, 3),
                levels(BID_VALUES, BID_ODD, malformed),
                levels(ASK_VALUES, ASK_ODD, malformed),
            ),
            min_size=1,
            max_size=14,
        )
    )


def ladder_state(ladder: Ladder) -> tuple[Any, ...]:
    """Everything in a ladder except its price cache."""
    return (
        ladder.scale,
        ladder.sign,
        list(ladder.keys),
        dict(ladder.levels),
        set(getattr(ladder, "dead", ())),
        ladder.best,
        ladder.best_key,
    )


def assert_price_cache_true(ladder: Ladder) -> None:
    """Every cached ``price -> key`` is the key of that price at the ladder's scale."""
    for price, key in ladder.prices.items():
        assert type(price) is str and is_decimal_string(price), price
        whole, _, fraction = price.partition(".")
        assert len(fraction) <= ladder.scale, (price, ladder.scale)
        assert type(key) is int and key == ladder.sign * int(whole + fraction.ljust(ladder.scale, "0")), (price, key)
        assert key != 0, price


def book_state(book: OrderBook) -> tuple[Any, ...]:
    return (
        book.bids(6),  # (a positional slice: with tiny sublists it builds the key lists' index)
        book.asks(6),
        book.bids(),
        book.asks(),
        book.best_bid(),
        book.best_ask(),
        book.depth(),
        book.last_update_id,
        book.timestamp,
        book.bridged,
    )


_INT64_SAFE = 10**17
"""Keys below this always fit the C code's int64 arithmetic."""


def native_must_accept(book: OrderBook, event: DepthEvent) -> bool:
    """True when every level of ``event`` is well formed at the book's current
    scale and all keys involved fit comfortably in an int64: then the fast
    path must not decline.  (False: it may do either.)"""
    for raw, ladder in ((event.bids, book._bids), (event.asks, book._asks)):
        if type(raw) is not list:
            return False
        if not raw:
            continue
        if ladder.scale > 18 or (ladder.best_key is not None and abs(ladder.best_key) >= _INT64_SAFE):
            return False
        for level in raw:
            if type(level) not in (list, tuple) or len(level) != 2:
                return False
            price, qty = level
            if not (is_decimal_string(price) and is_decimal_string(qty)):
                return False
            whole, _, fraction = price.partition(".")
            if len(fraction) > ladder.scale:
                return False
            key = int(whole + fraction.ljust(ladder.scale, "0"))
            if not 0 < key < _INT64_SAFE:
                return False
    return True


def whole_state(book: OrderBook) -> tuple[Any, ...]:
    """Everything in a book but its caches."""
    return (ladder_state(book._bids), ladder_state(book._asks), book.last_update_id, book.timestamp, book.bridged)


class NativeSpy:
    """Stands in for ``orderbook.book._native_apply_delta``: calls the C
    function and checks, on every call, that a declined call changed nothing
    but the price cache and that the cache holds only true entries."""

    def __init__(self) -> None:
        self.results: list[bool | None] = []

    def __call__(self, book: OrderBook, event: DepthEvent) -> bool | None:
        assert speedups is not None
        before = whole_state(book)
        result = speedups.apply_delta(book, event)
        if result is None:
            assert whole_state(book) == before, "a declined apply_delta changed the book"
        else:
            assert type(result) is bool
        assert_price_cache_true(book._bids)
        assert_price_cache_true(book._asks)
        self.results.append(result)
        return result  # type: ignore[no-any-return]


@contextlib.contextmanager
def ladder_bounds(cache_limit: int, dead_slack: int) -> Iterator[None]:
    """Set the price-cache limit and dead-key slack in both implementations."""
    assert speedups is not None
    saved = (book_module._PRICE_CACHE_LIMIT, book_module._DEAD_SLACK)

    def configure(limit: int, slack: int) -> None:
        assert speedups is not None
        book_module._PRICE_CACHE_LIMIT, book_module._DEAD_SLACK = limit, slack
        speedups.configure(
            Ladder, OrderBook, book_module._KeyList, Decimal, limit, slack, book_module._REMEMBERED_DEPTH
        )

    try:
        configure(cache_limit, dead_slack)
        yield
    finally:
        configure(*saved)


def _outcome(book: OrderBook, event: DepthEvent) -> tuple[str, Any]:
    try:
        return ("ok", book.apply_delta(event))
    except Exception as exc:  # compared by type and message
        return (type(exc).__name__, str(exc))


def run_differential(snapshot: dict[str, Any], frames: list[tuple[str, int, int, Any, Any]]) -> NativeSpy:
    """Feed the same frames to a native and a pure book; compare after every step."""
    native_book, pure_book = OrderBook(SYMBOL), OrderBook(SYMBOL)
    native_book.apply_snapshot(snapshot)
    pure_book.apply_snapshot(snapshot)
    spy = NativeSpy()
    for step, (sequencing, back, span, bids, asks) in enumerate(frames):
        last = native_book.last_update_id
        assert last is not None
        first = last + 1 if native_book.bridged else last + 1 - back
        if sequencing == "gap":
            first = last + 2
        event = DepthEvent(
            "OTHER" if sequencing == "other symbol" else SYMBOL,
            first, max(first, last + 1) + span, 10 * step + 7, 10 * step + 5, bids, asks,
        )  # fmt: skip
        must_accept = sequencing == "next" and native_book.bridged and native_must_accept(native_book, event)
        calls = len(spy.results)
        with mock.patch.object(book_module, "_native_apply_delta", spy):
            native = _outcome(native_book, event)
        with mock.patch.object(book_module, "_native_apply_delta", None):
            pure = _outcome(pure_book, event)
        context = f"step {step}: {event!r}"
        assert native == pure, f"{context}: native {native!r}, pure {pure!r}"
        if must_accept:
            assert spy.results[calls:] != [None], f"{context}: apply_delta declined a well-formed frame"
        assert whole_state(native_book) == whole_state(pure_book), context
        native_view = book_state(native_book)
        with mock.patch.object(book_module, "_native_view", None):
            pure_view = book_state(pure_book)
        assert native_view == pure_view, context
        assert whole_state(native_book) == whole_state(pure_book), context  # the same levels converted
        native_book.check_integrity()
        pure_book.check_integrity()
        assert_price_cache_true(native_book._bids)
        assert_price_cache_true(native_book._asks)
    return spy


@needs_native
@pytest.mark.parametrize(
    ("bounds", "sublist_load"),
    [(None, None), ((4, 0), None), ((64, 1), None), (None, 4), ((64, 1), 5)],
    ids=["default-bounds", "tiny-bounds", "small-bounds", "tiny-sublists", "small-bounds-and-sublists"],
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot=snapshots(), frames=steps())
def test_apply_delta_native_and_pure_agree_step_by_step(
    bounds: tuple[int, int] | None,
    sublist_load: int | None,
    snapshot: dict[str, Any],
    frames: list[tuple[str, int, int, Any, Any]],
) -> None:
    """With tiny sublists (load factor 4, the least SortedList allows, or 5)
    the sorted key lists split and merge sublists and build their positional
    index all the time: the C code must hand those cases to SortedList and
    still agree."""
    with contextlib.ExitStack() as stack:
        if bounds:
            stack.enter_context(ladder_bounds(*bounds))
        if sublist_load:
            stack.enter_context(mock.patch.object(book_module._KeyList, "DEFAULT_LOAD_FACTOR", sublist_load))
        run_differential(snapshot, frames)


@needs_native
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    snapshot=snapshots(),
    frames=st.lists(
        st.tuples(
            st.just("next"),
            st.just(0),
            st.integers(0, 2),
            st.lists(st.tuples(st.sampled_from(BID_VALUES), st.sampled_from(ZERO_QTYS[:3]) | quantities), max_size=6),
            st.lists(st.tuples(st.sampled_from(ASK_VALUES), st.sampled_from(ZERO_QTYS[:3]) | quantities), max_size=6),
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_apply_delta_takes_every_well_formed_frame_at_the_current_scale(
    snapshot: dict[str, Any], frames: list[tuple[str, int, int, list[tuple[Decimal, str]], list[tuple[Decimal, str]]]]
) -> None:
    """Prices of at most 2 decimals after a snapshot of scale >= 2: the fast path
    must take every frame after the first (which bridges the snapshot and is
    left to Python), else it is dead code; with the pure result."""
    snapshot["bids"].append(["0.001", "1"])  # scale 3 from the start: no frame needs a rescale
    spelled = [
        (seq, back, span, [[spell(p, 0), q] for p, q in bids], [[spell(p, 0), q] for p, q in asks])
        for seq, back, span, bids, asks in frames
    ]
    spy = run_differential(snapshot, spelled)
    assert spy.results[0] is None  # the bridging frame
    assert None not in spy.results[1:] and len(spy.results) == len(frames)


def _deep_book(levels_per_side: int) -> OrderBook:
    """A book at update 1000, bridged (a first frame applied after the snapshot)."""
    book = OrderBook(SYMBOL)
    book.apply_snapshot(
        {
            "lastUpdateId": 999,
            "bids": [[f"{50 - k / 100:.2f}", "1"] for k in range(levels_per_side)],
            "asks": [[f"{150 + k / 100:.2f}", "1"] for k in range(levels_per_side)],
        }
    )
    book.apply_delta(DepthEvent(SYMBOL, 1000, 1000, 1, 1, [], []))
    return book


@needs_native
@pytest.mark.parametrize("touch_best", [False, True])
def test_mass_deletes_compaction_and_return_value_match_the_pure_path(touch_best: bool) -> None:
    """Deleting hundreds of deep levels in one frame triggers dead-key
    compaction (default bounds); apply_delta must still return whether the
    *best* may have changed, as the pure path does."""
    native_book, pure_book = _deep_book(900), _deep_book(900)
    deep_asks = [[f"{150 + k / 100:.2f}", "0"] for k in range(200, 900)]
    deep_bids = [[f"{50 - k / 100:.2f}", "0.000"] for k in range(300, 900)]
    if touch_best:
        deep_bids.append(["50.00", "0"])
    for frame, (bids, asks) in enumerate([([], deep_asks), (deep_bids, []), ([["49.995", "1"]], [])]):
        event = DepthEvent(SYMBOL, 1001 + frame, 1001 + frame, 1, 1, bids, asks)
        spy = NativeSpy()
        with mock.patch.object(book_module, "_native_apply_delta", spy):
            native = _outcome(native_book, event)
        with mock.patch.object(book_module, "_native_apply_delta", None):
            pure = _outcome(pure_book, event)
        assert native == pure, f"frame {frame}: native {native!r}, pure {pure!r}"
        if frame < 2:
            assert spy.results[0] is not None
        assert whole_state(native_book) == whole_state(pure_book)
        assert book_state(native_book) == book_state(pure_book)
        native_book.check_integrity()
        pure_book.check_integrity()


def _small_book() -> OrderBook:
    """A book at update 100, bridged (a first frame applied after the snapshot)."""
    book = OrderBook(SYMBOL)
    book.apply_snapshot(
        {
            "lastUpdateId": 99,
            "bids": [["10.00", "1"], ["9.50", "2"], ["9.00", "3"]],
            "asks": [["10.50", "1.5"], ["11.00", "2"], ["12.00", "4"]],
        }
    )
    book.apply_delta(DepthEvent(SYMBOL, 100, 100, 1, 1, [], []))
    return book


@needs_native
@pytest.mark.parametrize(
    "bad",
    [["9.75", "x"], ["x", "1"], ["9.75"], ["9.75", "1", "2"], 5, None, ["9.755", "1"], ["0", "1"], ["0.00", "1"],
     ["99999999999999999999", "1"], [9.75, "1"], ["9.75", 1], ["-9.75", "1"], ["9.75", "-1"], ["1e3", "1"],
     ["9.7.5", "1"], [" 9.75", "1"], ["9.75", ""], ["١٢", "1"]],
)  # fmt: skip
@pytest.mark.parametrize("side", ["bids", "asks"])
def test_declined_apply_delta_leaves_the_book_unchanged(bad: Any, side: str) -> None:
    assert speedups is not None
    book = _small_book()
    good_bids: list[Any] = [["9.75", "5"], ["10.00", "0"], ["9.25", "1"], ("8.00", "2")]
    good_asks: list[Any] = [["10.75", "5"], ["10.50", "0"], ["11.50", "1"]]
    bids, asks = (good_bids + [bad], good_asks) if side == "bids" else (good_bids, good_asks + [bad])
    event = DepthEvent(SYMBOL, 101, 101, 1, 1, bids, asks)
    before = whole_state(book)
    assert speedups.apply_delta(book, event) is None
    assert whole_state(book) == before
    assert_price_cache_true(book._bids)
    assert_price_cache_true(book._asks)
    # and the book then goes the pure way, to the same end as a pure book
    pure = _small_book()
    native_outcome = _outcome(book, event)
    with mock.patch.object(book_module, "_native_apply_delta", None):
        assert native_outcome == _outcome(pure, event)
    assert book_state(book) == book_state(pure)
    book._bids.check("bid")  # (a huge bid crosses the book, in both implementations)
    book._asks.check("ask")


@needs_native
def test_apply_delta_declines_what_the_python_path_must_decide() -> None:
    assert speedups is not None
    book = _small_book()
    before = whole_state(book)

    def frame(first: int = 101, symbol: str = SYMBOL, bids: Any = (), asks: Any = ()) -> DepthEvent:
        return DepthEvent(symbol, first, first, 1, 1, list(bids) if bids == () else bids, [] if asks == () else asks)

    assert speedups.apply_delta(book, frame(bids=(["9.75", "1"],))) is None  # a tuple side
    assert speedups.apply_delta(book, frame(asks=None)) is None
    assert speedups.apply_delta(book, frame(first=102)) is None  # a gap
    assert speedups.apply_delta(book, frame(first=100)) is None  # an old frame
    assert speedups.apply_delta(book, frame(symbol="OTHER")) is None
    assert speedups.apply_delta(book._bids, frame()) is None  # not a book
    assert speedups.apply_delta(book, {"U": 101}) is None  # not an event
    book._bids.scale = 19  # beyond int64 fixed point: the C code must not try
    assert speedups.apply_delta(book, frame(bids=[["9.75", "1"]])) is None
    book._bids.scale = 2
    book._last_update_id = 2**63 - 1  # U would not fit an int64
    assert speedups.apply_delta(book, DepthEvent(SYMBOL, 2**63, 2**63, 1, 1, [], [])) is None
    book._last_update_id = 100
    assert whole_state(book) == before
    unbridged = OrderBook(SYMBOL)
    unbridged.apply_snapshot({"lastUpdateId": 100, "bids": [["1", "1"]], "asks": [["2", "1"]]})
    assert speedups.apply_delta(unbridged, frame()) is None  # the first frame after a snapshot
    assert unbridged.bridged is False
    with pytest.raises(TypeError):
        speedups.apply_delta(book)


@needs_native
@pytest.mark.parametrize("n", [0, 1, 2, 5, 40, None])
@pytest.mark.parametrize("remembered", [100, 2])
def test_view_matches_the_python_method_with_dead_and_unread_levels(n: int | None, remembered: int) -> None:
    assert speedups is not None
    books = [_deep_book(60), _deep_book(60)]
    frames = [
        ([[f"{50 - k / 100:.2f}", "0"] for k in range(0, 30, 3)], [[f"{150 + k / 100:.2f}", "0"] for k in range(1, 30, 4)]),
        ([["49.995", "7"], ["49.97", "2.5"]], [["150.005", "1"], ["150.10", "3"]]),  # a rescale: Python applies
        ([["49.96", "4"]], [["150.06", "0.5"]]),
    ]  # fmt: skip
    saved = book_module._REMEMBERED_DEPTH
    try:
        book_module._REMEMBERED_DEPTH = remembered
        speedups.configure(Ladder, OrderBook, book_module._KeyList, Decimal, book_module._PRICE_CACHE_LIMIT,
                           book_module._DEAD_SLACK, remembered)  # fmt: skip
        for first, (bids, asks) in enumerate(frames, start=1001):
            for book in books:
                book.apply_delta(DepthEvent(SYMBOL, first, first, 1, 1, bids, asks))
            native = (books[0].bids(n), books[0].asks(n))
            with mock.patch.object(book_module, "_native_view", None):
                pure = (books[1].bids(n), books[1].asks(n))
            assert native == pure
            assert whole_state(books[0]) == whole_state(books[1])
            assert speedups.view(books[0]._bids, -1) is None
            assert speedups.view(books[0]._bids, 2.0) is None
            assert speedups.view(books[0], 2) is None  # not a ladder
    finally:
        book_module._REMEMBERED_DEPTH = saved
        speedups.configure(Ladder, OrderBook, book_module._KeyList, Decimal, book_module._PRICE_CACHE_LIMIT,
                           book_module._DEAD_SLACK, saved)  # fmt: skip


@needs_native
def test_key_lists_of_another_class_go_through_their_own_methods() -> None:
    """The C code touches the sorted lists' internals only for the class it
    was configured with; any other list (a subclass, another sortedcontainers
    version) is driven through its methods, with the same results."""
    from sortedcontainers import SortedList

    class Other(SortedList):  # type: ignore[misc]
        pass

    native, pure = _deep_book(300), _deep_book(300)
    for ladder in (native._bids, native._asks):
        ladder.keys = Other(ladder.keys)
    for first in range(1001, 1041):
        step = first - 1000
        bids = [[f"{50 - k / 100:.2f}", "0" if k % 3 == 0 else str(step)] for k in range(step % 5, 40, 7)]
        asks = [[f"{150 + k / 100:.2f}", "0" if k % 4 == 0 else str(step)] for k in range(step % 3, 40, 5)]
        bids.append([f"{50 + step / 100:.2f}" if step % 6 == 0 else f"{49 - step / 100:.2f}", "1"])  # bests, inserts
        event = DepthEvent(SYMBOL, first, first, 1, 1, bids, asks)
        assert native.apply_delta(event) == pure.apply_delta(event)
        with mock.patch.object(book_module, "_native_view", None):
            expected = (pure.bids(30), pure.asks(30))
        assert (native.bids(30), native.asks(30)) == expected
        assert speedups is not None and speedups.view(native._bids, 5) is None
        assert whole_state(native) == whole_state(pure)
        native.check_integrity()
    assert type(native._bids.keys) is Other and type(native._asks.keys) is Other


# =========================================================== leaks


@needs_native
@pytest.mark.parametrize("cache_limit", [None, 4], ids=["default-cache", "tiny-cache"])
def test_no_memory_or_reference_leaks(cache_limit: int | None) -> None:
    """20,000 rounds of accepted and declined calls.  With a tiny price cache
    every round also takes the cache-miss path (new keys) and clears caches."""
    assert speedups is not None
    with ladder_bounds(cache_limit, 256) if cache_limit else contextlib.nullcontext():
        _leak_rounds(20_000 if cache_limit is None else 5_000)


def _leak_rounds(rounds: int) -> None:
    assert speedups is not None
    depth_frame, apply_delta = speedups.depth_frame, speedups.apply_delta
    fresh = "".join  # strings made at run time: no other code object shares them
    bids_levels = [[fresh(["9.", "75"]), fresh(["1.", "5"])], [fresh(["10.", "25"]), "2"]]
    asks_levels = [[fresh(["10.", "75"]), "3"]]
    good: dict[str, Any] = {
        "stream": "depth.SOL_USDC",
        "data": {"e": "depth", "E": "1700000000000001", "T": 1700000000000000, "U": 10**12, "u": "1000000000001",
                 "s": "SOL_USDC", "b": bids_levels, "a": asks_levels},
    }  # fmt: skip
    declined: list[Any] = [
        {"stream": "depth.SOL_USDC", "data": dict(good["data"], U=10**13)},  # U > u
        {"stream": "depth.SOL_USDC", "data": dict(good["data"], s="OTHER")},
        {"stream": "depth.SOL_USDC", "data": dict(good["data"], U="1" * 19)},
        {"stream": "depth.SOL_USDC", "data": dict(good["data"], T=-5)},
        {"stream": "trade.SOL_USDC", "data": good["data"]},
        [good],
    ]
    good_raw = orjson.dumps(good)
    declined_raw = [orjson.dumps(message) for message in declined] + [good_raw[:-1], good_raw.decode() + " x"]
    book = _small_book()
    add = ([[fresh(["9.", "80"]), fresh(["1.", "0"])], ["8.00", "2"]], [[fresh(["10.", "40"]), "1"], ["13.00", "2"]])
    delete = ([[add[0][0][0], "0"], ["8.00", "0.00"]], [[add[1][0][0], "0"], ["13.00", "0.0"]])
    bad = ([[add[0][0][0], "1"], [fresh(["9.", "1234"]), "1"]], [[add[1][0][0], "1"], [fresh(["x", "y"]), "1"]])
    many_bids = [[f"{5 + k / 100:.2f}", "1"] for k in range(40)]  # more than the 16-change stack buffer
    many_deletes = [[price, "0"] for price, _ in many_bids]

    def apply(bids: Any, asks: Any, accepted: bool = True) -> None:
        last = book.last_update_id
        assert last is not None
        result = apply_delta(book, DepthEvent(SYMBOL, last + 1, last + 1, 5, 6, bids, asks))
        assert (result is not None) == accepted
        assert book.last_update_id == (last + 1 if accepted else last)

    def run(times: int) -> None:
        for _ in range(times):
            assert depth_frame(good_raw) is not None
            assert depth_frame(good_raw.decode()) is not None
            for raw in declined_raw:
                assert depth_frame(raw) is None
            apply(*add)
            apply(*delete)
            apply(bad[0], [], accepted=False)
            apply([], bad[1], accepted=False)
            apply(many_bids, [])
            apply(many_deletes, [])
            apply(many_bids + [["1", "x"]], [], accepted=False)
            apply([["10.00", "0"]], [["10.50", "0"]])  # the best levels go: the sorted lists decide
            apply([["10.00", "1"]], [["10.50", "1.5"]])
            assert len(speedups.view(book._bids, 20)) == len(book._bids.levels)  # type: ignore[arg-type]
            assert speedups.view(book._asks, None) is not None

    run(500)  # warm up: price caches, dead keys, converted tuples reach a steady state
    gc.collect()
    watched: list[object] = [
        good_raw, *declined_raw, bids_levels, asks_levels, bids_levels[0], bids_levels[0][0], bids_levels[0][1],
        good["data"]["U"], good["data"]["E"], *add[0], add[0][0][0], add[0][0][1], *bad[0], bad[1][1][0],
        many_bids[0][0],
    ]  # fmt: skip
    if len(book._bids.prices) > 4:  # the cached keys (with a tiny cache they come and go)
        watched += [book._bids.prices[price] for price in (add[0][0][0], many_bids[0][0])]
        watched.append(book._asks.prices[add[1][0][0]])
    refcounts = [sys.getrefcount(obj) for obj in watched]
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run(rounds)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"memory grew by {grown} bytes over {rounds} rounds"
    assert [sys.getrefcount(obj) for obj in watched] == refcounts
    book.check_integrity()


# ==================================================== pure-Python mode


CORE_MODULES = [
    "tests/test_wire.py",
    "tests/test_book.py",
    "tests/test_sync.py",
    "tests/test_malformed.py",
    "tests/test_book_stateful.py",
    "tests/test_sync_delivery.py",
]


@pytest.mark.skipif(
    os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"), reason=f"already in pure-Python mode ({PURE_PYTHON_ENV})"
)
def test_core_modules_pass_in_pure_python_mode() -> None:
    env = {**os.environ, PURE_PYTHON_ENV: "1"}
    probe = subprocess.run(
        [sys.executable, "-c",
         "import orderbook.book as b, orderbook.wire as w\n"
         "from orderbook._native import implementation\n"
         "print(implementation(), b._native_apply_delta, w._native_depth_frame)"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["python", "None", "None"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_MODULES],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, f"core tests fail in pure-Python mode:\n{tail}"
