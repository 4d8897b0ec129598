"""The native twins (``orderbook._speedups``) against the pure-Python reference.

The C module owns two types with pure-Python twins of the same API:
``DepthEvent`` (:mod:`orderbook.protocol.wire`) and ``Ladder`` (:mod:`orderbook.core.ladder`),
plus the functions ``depth_frame``, ``apply_levels``, ``crossed`` and ``write_levels``.  This
file checks that both implementations are interchangeable:

* the extension really is built wherever a C compiler exists (a silently
  failed optional build would leave every install on the slow path);
* ``depth_frame`` (the C reader of raw frame text) never returns an event
  that differs from ``orjson.loads`` + ``parse_message(...,
  validate_levels=False)``, never returns one for text either rejects, and
  takes every frame in the venue's plain form (Hypothesis: plain frames in
  any key order and whitespace, decoded shapes of every kind rendered as
  text, character-level damage to plain frames; also ``parse_frame`` with
  and without the reader);
* a C ``Ladder`` pair and a pure ``Ladder`` pair fed the same snapshots,
  frames (good, malformed, rescaling, at the value bound), cuts and reads
  step by step hold the same keys and scale, read the same levels (equal
  values, same spelling), return the same results and raise the same
  errors, and pass their integrity checks after every step;
* nothing leaks memory or references;
* the core test modules pass in pure-Python mode (``ORDERBOOK_PURE_PYTHON=1``).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import string
import subprocess
import sys
import sysconfig
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orderbook.core.ladder as ladder_module
import orderbook.protocol.wire as wire_module
from orderbook import MalformedMessage, OrderBook, UsageError
from orderbook._native import PURE_PYTHON_ENV, implementation, speedups
from orderbook.core.ladder import PyLadder, py_apply_levels, py_crossed, py_write_levels
from orderbook.protocol.decimals import MAX_DECIMALS
from orderbook.protocol.wire import DepthEvent, PyDepthEvent, parse_frame, parse_message
from paths import REPO

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
    assert ladder_module.Ladder is speedups.Ladder and ladder_module.apply_levels is speedups.apply_levels
    assert wire_module.DepthEvent is speedups.DepthEvent
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
nonzero_prices = decimal_texts.filter(lambda text: text.strip("0.") != "")
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
    level = st.tuples(nonzero_prices, decimal_texts).map(list)
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
        # levels the reader leaves to the Python code (errors, or values beyond the bound)
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["0","2"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["0.00","2"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1e5","2"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1.5","-2"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1.5","2x"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1.' + "1" * 19 + '","2"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["' + "1" * 21 + '","2"]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '["1.5","2",3]') + "}}",
        '{"stream":"depth.X","data":{' + DEPTH_BODY.replace('["1.5","2"]', '[1.5,"2"]') + "}}",
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


# ================================================================ Ladder

PIVOT = Decimal(100)  # bids below, asks at or above: a generated book never crosses
BID_VALUES = [Decimal(k) / 4 for k in range(1, 25)]
ASK_VALUES = [PIVOT + Decimal(k) / 4 for k in range(0, 24)]
"""Common prices: a small set, so frames keep hitting levels of the book."""
BID_ODD = [
    Decimal("99.125"), Decimal("50.0001"), Decimal("0.00000001"), Decimal("7.123456789"),
    Decimal("0.000000000000000001"),  # 18 decimals: the bound
    Decimal("99.999999999999999999"),
]  # fmt: skip
ASK_ODD = [
    Decimal("100.0625"), Decimal("123.45678"),
    Decimal("92233720368547758.08"),  # above int64 at scale 2
    Decimal("99999999999999999999"),  # 20 digits: the bound, above int64 at any scale
    Decimal("99999999999999999999.999999999999999999"),  # the largest value within the bound
    Decimal("9223372036854775807"),
]  # fmt: skip
"""Rare prices: many decimals (re-keying) or far beyond int64."""
ZERO_QTYS = ["0", "0.000", "00.0", "0.", ".0", "000"]
QTYS = ["1", "2.5", "0.832", "9602.00000000", "00.5", "5.", ".25", "12345678901234567890.123456789012345678"]
MALFORMED_LEVELS: list[Any] = [
    [1, "1"], ["1", 1], [None, "1"], ["1.5", None], [1.5, "1"], ["-1", "1"], ["1", "-1"], ["1e5", "1"],
    ["1", "1e5"], ["", "1"], ["1", ""], [".", "1"], ["1", "."], ["1.2.3", "1"], ["1", "1.2.3"], [" 1", "1"],
    ["1", " 1"], ["1 ", "1"], ["0", "1"], ["0.00", "1"], ["000", "0"], ["١٢", "1"], ["1", "١٢"], ["+1", "1"],
    ["1_0", "1"], ["1", "1_0"], ["NaN", "1"], ["1", "NaN"], ["1.5", "1", "2"], ["1.5"], [], "1.5", None,
    {"p": "1"}, [b"1", "1"], [["1"], "1"], ["1", "²"], ["1." + "1" * 19, "1"], ["1" * 21, "1"],
    ["1", "1" * 21], ["1", "0." + "0" * 4400 + "1"],
]  # fmt: skip


def spell(value: Decimal, extra_zeros: int) -> str:
    """A plain spelling of ``value`` with up to ``extra_zeros`` trailing zeros
    added within the bound (each extra decimal can force a re-key)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    room = MAX_DECIMALS - len(text.partition(".")[2])
    extra_zeros = min(extra_zeros, room)
    if extra_zeros > 0:
        text += ("" if "." in text else ".") + "0" * extra_zeros
    return text


@st.composite
def levels(draw: st.DrawFn, values: list[Decimal], odd: list[Decimal], malformed: bool) -> Any:
    out = []
    for _ in range(draw(st.integers(0, 6))):
        roll = draw(st.integers(0, 19))
        if malformed and roll == 0:
            out.append(draw(st.sampled_from(MALFORMED_LEVELS)))
            continue
        price = draw(st.sampled_from(odd if roll == 1 else values))
        qty = draw(st.sampled_from(ZERO_QTYS if roll < 7 else QTYS))
        out.append([spell(price, draw(st.sampled_from([0, 0, 0, 1, 3]))), qty])
    return out


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
    """Validated snapshot sides, best first, and their scale."""
    bids = sorted(set(draw(st.lists(st.sampled_from(BID_VALUES + BID_ODD[:2]), max_size=12))), reverse=True)
    asks = sorted(set(draw(st.lists(st.sampled_from(ASK_VALUES + ASK_ODD[:2]), max_size=12))))
    spelled_bids = [(spell(p, draw(st.sampled_from([0, 0, 2]))), draw(st.sampled_from(QTYS + ["0"]))) for p in bids]
    spelled_asks = [(spell(p, draw(st.sampled_from([0, 0, 2]))), draw(st.sampled_from(QTYS + ["0"]))) for p in asks]
    scale = max((len(p.partition(".")[2]) for p, _ in spelled_bids + spelled_asks), default=0)
    return spelled_bids, spelled_asks, scale


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), levels(BID_VALUES, BID_ODD, True), levels(ASK_VALUES, ASK_ODD, True)),
        st.tuples(st.just("parsed frame"), levels(BID_VALUES, BID_ODD, False), levels(ASK_VALUES, ASK_ODD, False)),
        st.tuples(st.just("view"), st.one_of(st.none(), st.integers(0, 30)), st.just(None)),
        st.tuples(st.just("cut"), st.sampled_from(BID_VALUES), st.sampled_from(ASK_VALUES)),
        st.tuples(st.just("snapshot"), snapshots(), st.just(None)),
        st.tuples(st.just("iterate"), st.integers(0, 5), st.just(None)),
        st.tuples(st.just("clear"), st.just(None), st.just(None)),
    ),
    max_size=40,
)


def side_state(ladder: Any) -> tuple[Any, ...]:
    """Everything observable of one ladder, spellings included."""
    spelled = [(str(p), str(q)) for p, q in ladder.view(None)]
    best = ladder.best
    return (ladder.sign, ladder.scale, len(ladder), ladder.keys(), spelled, ladder.best_key,
            None if best is None else (str(best[0]), str(best[1])))


def outcome(call: Any) -> Any:
    try:
        return ("ok", call())
    except (MalformedMessage, UsageError) as exc:
        return (type(exc).__name__, getattr(exc, "field", None), str(exc))


def native_event(bids: Any, asks: Any, parsed: bool) -> Any:
    assert speedups is not None
    if parsed:
        raw = orjson.dumps({"stream": f"depth.{SYMBOL}", "data": {
            "e": "depth", "E": 1, "T": 2, "U": 3, "u": 3, "s": SYMBOL, "b": bids, "a": asks}})
        event = speedups.depth_frame(raw)
        assert event is not None, raw  # only valid levels are drawn for parsed frames
        return event
    return speedups.DepthEvent(SYMBOL, 3, 3, 1, 2, bids, asks)


def fixed(write: Any, pair: Any, n: int = 8) -> list[tuple[Any, bytes]]:
    """``write_levels`` of a ladder pair at the scales it needs, at too small
    ones and at 18: its results and the bytes written (past dirty bytes
    included, so that a missed zero shows)."""
    out = bytearray(b"\xff" * (64 * n + 16))
    results = [(write(pair[0], pair[1], n, out, 16, 18, 18), bytes(out))]
    _bids, _asks, price_scale, qty_scale = results[0][0]
    for scales in ((price_scale, qty_scale), (max(price_scale - 1, 0), qty_scale),
                   (price_scale, max(qty_scale - 1, 0))):
        out = bytearray(b"\xff" * (64 * n + 16))
        results.append((write(pair[0], pair[1], n, out, 16, *scales), bytes(out)))
    return results


@needs_native
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), STEPS)
def test_native_and_pure_ladders_agree_step_by_step(
    start: tuple[list[tuple[str, str]], list[tuple[str, str]], int], steps: list[tuple[str, Any, Any]]
) -> None:
    assert speedups is not None
    c = (speedups.Ladder(-1), speedups.Ladder(1))
    py = (PyLadder(-1), PyLadder(1))

    def compare(where: str) -> None:
        for native, pure, name in ((c[0], py[0], "bid"), (c[1], py[1], "ask")):
            native.check(name)
            pure.check(name)
            assert side_state(native) == side_state(pure), where
        assert speedups.crossed(*c) == py_crossed(*py)
        assert fixed(speedups.write_levels, c) == fixed(py_write_levels, py), where

    def load(bids: Any, asks: Any, scale: int) -> None:
        for pair in (c, py):
            pair[0].load(bids, scale)
            pair[1].load(asks, scale)

    load(*start)
    compare("snapshot")
    for kind, a, b in steps:
        if kind in ("frame", "parsed frame"):
            native = outcome(lambda: speedups.apply_levels(*c, native_event(a, b, kind == "parsed frame")))
            pure = outcome(lambda: py_apply_levels(*py, PyDepthEvent(SYMBOL, 3, 3, 1, 2, a, b)))
            assert native == pure, (kind, a, b)
        elif kind == "view":
            for native_side, pure_side in zip(c, py):
                got, want = native_side.view(a), pure_side.view(a)
                assert got == want and [tuple(map(str, lv)) for lv in got] == [tuple(map(str, lv)) for lv in want]
        elif kind == "cut":
            assert c[0].cut_beyond(format(a, "f")) == py[0].cut_beyond(format(a, "f"))
            assert c[1].cut_beyond(format(b, "f")) == py[1].cut_beyond(format(b, "f"))
        elif kind == "snapshot":
            load(*a)
        elif kind == "iterate":
            for native_side, pure_side in zip(c, py):
                assert list(zip(range(a), native_side)) == list(zip(range(a), pure_side))
        elif kind == "clear":
            for pair in (c, py):
                pair[0].clear()
                pair[1].clear()
        compare(kind)


GRID = st.integers(1, 2000)


@st.composite
def big_frames(draw: st.DrawFn) -> tuple[list[list[str]], list[list[str]]]:
    """Many levels on a wide grid of prices: ladders of hundreds of levels
    (chunks split and vanish), mass deletes, and now and then a re-key."""
    def side(offset: int) -> list[list[str]]:
        out = []
        for _ in range(draw(st.integers(0, 40))):
            tick = draw(GRID) + offset
            price = f"{tick / 100:.2f}" if draw(st.integers(0, 30)) else f"{tick / 100:.2f}5"
            out.append([price, draw(st.sampled_from(["0", "0", "1", "2.5", "7"]))])
        return out
    return side(0), side(2000)  # bids below 20.01, asks above


@needs_native
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 400), st.lists(big_frames(), min_size=1, max_size=60), st.integers(0, 2**32))
def test_large_ladders_agree(depth: int, frames: list[Any], seed: int) -> None:
    assert speedups is not None
    import random

    rng = random.Random(seed)
    bid_prices = sorted({rng.randint(1, 2000) for _ in range(depth)}, reverse=True)
    ask_prices = sorted({rng.randint(2001, 4000) for _ in range(depth)})
    bids = [(f"{p / 100:.2f}", "3") for p in bid_prices]
    asks = [(f"{p / 100:.2f}", "3") for p in ask_prices]
    c = (speedups.Ladder(-1), speedups.Ladder(1))
    py = (PyLadder(-1), PyLadder(1))
    for pair in (c, py):
        pair[0].load(bids, 2)
        pair[1].load(asks, 2)
    for number, (frame_bids, frame_asks) in enumerate(frames):
        native = outcome(lambda: speedups.apply_levels(*c, native_event(frame_bids, frame_asks, True)))
        pure = outcome(lambda: py_apply_levels(*py, PyDepthEvent(SYMBOL, 3, 3, 1, 2, frame_bids, frame_asks)))
        assert native == pure
        if number % 10 == 0 or number == len(frames) - 1:
            for native_side, pure_side, name in ((c[0], py[0], "bid"), (c[1], py[1], "ask")):
                native_side.check(name)
                assert side_state(native_side) == side_state(pure_side)
                assert native_side.view(25) == pure_side.view(25)
            assert fixed(speedups.write_levels, c, 30) == fixed(py_write_levels, py, 30)
    cut = f"{rng.randint(1, 2000) / 100:.2f}"
    assert c[0].cut_beyond(cut) == py[0].cut_beyond(cut)
    c[0].check("bid")
    assert side_state(c[0]) == side_state(py[0])


@needs_native
@settings(max_examples=300, deadline=None)
@given(levels(BID_VALUES, BID_ODD, False), levels(ASK_VALUES, ASK_ODD, False))
def test_a_parsed_frame_and_its_lists_apply_alike(bids: Any, asks: Any) -> None:
    """An event read by depth_frame (levels held parsed) and the same event
    built from lists leave two ladders in the same state."""
    assert speedups is not None
    results = []
    for parsed in (True, False):
        pair = (speedups.Ladder(-1), speedups.Ladder(1))
        pair[0].load([("50", "1")], 0)
        pair[1].load([("150", "1")], 0)
        touched = speedups.apply_levels(*pair, native_event(bids, asks, parsed))
        results.append((touched, side_state(pair[0]), side_state(pair[1])))
    assert results[0] == results[1]
    assert native_event(bids, asks, True) == native_event(bids, asks, False)


@needs_native
def test_ladder_api_errors_match() -> None:
    assert speedups is not None
    for cls in (speedups.Ladder, PyLadder):
        with pytest.raises(UsageError):
            cls(0)
        ladder = cls(1)
        with pytest.raises(UsageError):
            ladder.load([("2", "1"), ("1", "1")], 0)  # not best first
        with pytest.raises(UsageError):
            ladder.load([("1.5", "1")], 0)  # more decimals than the scale
        with pytest.raises(UsageError):
            ladder.load([("1", "1")], MAX_DECIMALS + 1)
        with pytest.raises(UsageError):
            ladder.view(-1)
        ladder.load([("1.5", "1"), ("2.5", "0"), ("3.5", "2")], 1)
        assert len(ladder) == 2 and ladder.keys() == [15, 35]
        with pytest.raises(UsageError):
            ladder.set_scale(0)  # a scale only grows
        ladder.set_scale(3)
        assert ladder.keys() == [1500, 3500] and ladder.price_of(1500) == Decimal("1.500")
        with pytest.raises(UsageError):
            ladder.cut_beyond("x")


# ================================================================= leaks


@needs_native
def test_no_memory_or_reference_leaks() -> None:
    """20,000 rounds of every native call, accepted and refused."""
    assert speedups is not None
    depth_frame, apply_levels = speedups.depth_frame, speedups.apply_levels
    fresh = "".join  # strings made at run time: no other code object shares them
    good: dict[str, Any] = {
        "stream": "depth.SOL_USDC",
        "data": {"e": "depth", "E": "1700000000000001", "T": 1700000000000000, "U": 10**12, "u": "1000000000001",
                 "s": "SOL_USDC", "b": [["9.75", "1.5"], ["10.25", "2"]], "a": [["10.75", "3"]]},
    }  # fmt: skip
    declined = [
        {"stream": "depth.SOL_USDC", "data": dict(good["data"], U=10**13)},  # U > u
        {"stream": "depth.SOL_USDC", "data": dict(good["data"], s="OTHER")},
        {"stream": "depth.SOL_USDC", "data": dict(good["data"], b=[["1e5", "1"]])},
        {"stream": "trade.SOL_USDC", "data": good["data"]},
    ]
    good_raw = orjson.dumps(good)
    declined_raw = [orjson.dumps(message) for message in declined] + [good_raw[:-1]]
    many = [[f"{5 + k / 100:.2f}", "1"] for k in range(150)]  # more than two chunks
    many_deletes = [[price, "0"] for price, _ in many]
    bad = [[fresh(["9.", "80"]), "1"], [fresh(["x", "y"]), "1"]]
    bids, asks = speedups.Ladder(-1), speedups.Ladder(1)
    bids.load([("10.00", "1"), ("9.00", "2")], 2)
    asks.load([("11.00", "1"), ("12.00", "2")], 2)

    def run(times: int) -> None:
        for _ in range(times):
            event = depth_frame(good_raw)
            assert event is not None and event.bids and event.asks
            assert depth_frame(good_raw.decode()) is not None
            for raw in declined_raw:
                assert depth_frame(raw) is None
            apply_levels(bids, asks, speedups.DepthEvent(SYMBOL, 1, 1, 1, 1, many, []))
            bids.view(20)
            list(bids)
            apply_levels(bids, asks, speedups.DepthEvent(SYMBOL, 1, 1, 1, 1, many_deletes, []))
            with pytest.raises(MalformedMessage):
                apply_levels(bids, asks, speedups.DepthEvent(SYMBOL, 1, 1, 1, 1, bad, []))
            apply_levels(bids, asks, speedups.DepthEvent(SYMBOL, 1, 1, 1, 1, [["10.00", "0"]], [["11.00", "0"]]))
            apply_levels(bids, asks, speedups.DepthEvent(SYMBOL, 1, 1, 1, 1, [["10.00", "1"]], [["11.00", "1"]]))
            assert bids.best is not None and asks.view(None)
            bids.cut_beyond("9.50")
            bids.load([("10.00", "1"), ("9.00", "2")], 2)

    run(500)  # warm up: caches reach a steady state
    gc.collect()
    watched: list[object] = [good_raw, *declined_raw, many, many[0], many[0][0], bad[0][0], bad[1][0]]
    refcounts = [sys.getrefcount(obj) for obj in watched]
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run(20_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"memory grew by {grown} bytes over 20,000 rounds"
    assert [sys.getrefcount(obj) for obj in watched] == refcounts
    bids.check("bid")
    asks.check("ask")


# ==================================================== pure-Python mode

CORE_MODULES = [
    "tests/protocol/test_wire.py",
    "tests/core/test_book.py",
    "tests/core/test_ladder.py",
    "tests/sync/test_sync.py",
    "tests/sync/test_malformed.py",
    "tests/core/test_book_stateful.py",
    "tests/sync/test_sync_delivery.py",
    "tests/sync/test_sync_invariants.py",
    "tests/sync/test_hostile_input.py",
]


@pytest.mark.skipif(
    os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"), reason=f"already in pure-Python mode ({PURE_PYTHON_ENV})"
)
def test_core_modules_pass_in_pure_python_mode() -> None:
    env = {**os.environ, PURE_PYTHON_ENV: "1"}
    probe = subprocess.run(
        [sys.executable, "-c",
         "import orderbook.core.ladder as l, orderbook.protocol.wire as w\n"
         "from orderbook._native import implementation\n"
         "print(implementation(), l.Ladder is l.PyLadder, w._native_depth_frame)"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["python", "True", "None"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_MODULES],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, f"core tests fail in pure-Python mode:\n{tail}"


# ============================================================ fold_frames

plain_decimals = st.from_regex(r"\A(0{0,3}[0-9]{1,6}(\.[0-9]{0,6})?|\.[0-9]{1,6}|0+(\.0*)?)\Z")
sides = st.lists(st.tuples(plain_decimals, plain_decimals).map(list), max_size=6)


@needs_native
@given(st.lists(st.tuples(sides, sides), max_size=5),
       st.lists(st.tuples(plain_decimals, plain_decimals), max_size=4))
def test_fold_frames_twins_merge_alike_and_keys_are_exact_values(
        frames: list[tuple[list[list[str]], list[list[str]]]], earlier: list[tuple[str, str]]) -> None:
    """The C fold and the Python one give the same maps, in the same order,
    for the engine's own frames (C ``DepthEvent``) and for any object with
    ``bids`` / ``asks``; two prices share a key exactly when their values are
    equal."""
    from orderbook.protocol.decimals import value_key
    from orderbook.protocol.wire import DepthEvent as PyDepthEvent
    from orderbook.sync.updates import _py_fold_frames

    assert speedups is not None
    for kind in (speedups.DepthEvent, PyDepthEvent):
        events = [kind("S_USDC", n, n, n, n, bids, asks) for n, (bids, asks) in enumerate(frames, 1)]
        native: tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]] = ({}, {})
        python: tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]] = ({}, {})
        for (bids, asks), fold in ((native, speedups.fold_frames), (python, _py_fold_frames)):
            bids.update((value_key(p), (p, q)) for p, q in earlier)
            fold(bids, asks, events)
        assert [list(side.items()) for side in native] == [list(side.items()) for side in python]
        for price, _ in [level for bids, _ in frames for level in bids] + earlier:
            assert value_key(price) in native[0]
        for a in native[0]:
            for b in native[0]:
                assert (a == b) == (Decimal(native[0][a][0]) == Decimal(native[0][b][0]))


@needs_native
def test_fold_frames_refuses_what_is_not_a_level() -> None:
    from orderbook.protocol.wire import DepthEvent as PyDepthEvent

    assert speedups is not None
    with pytest.raises(ValueError, match="pair"):
        speedups.fold_frames({}, {}, [PyDepthEvent("S", 1, 1, 1, 1, [["1", "2", "3"]], [])])
    with pytest.raises(TypeError, match="ASCII str"):
        speedups.fold_frames({}, {}, [PyDepthEvent("S", 1, 1, 1, 1, [], [[1, "2"]])])
    with pytest.raises(AttributeError):
        speedups.fold_frames({}, {}, [object()])


# ============================================================ wire_raw_levels

@needs_native
@given(st.lists(st.tuples(plain_decimals, plain_decimals), max_size=12),
       st.lists(st.tuples(plain_decimals, plain_decimals).map(list), max_size=4))
def test_wire_raw_levels_twins_publish_alike(tuples: list[tuple[str, str]],
                                             lists: list[list[str]]) -> None:
    """The C and the Python spelling of published levels agree level for level
    (both follow ``wire_decimal``, whose own agreement with ``wire_levels``
    is tested in tests/sinks/test_messages.py), and a level already spelled
    as published comes back as the very tuple given."""
    from orderbook.sinks.messages import _py_wire_raw_levels, wire_decimal

    assert speedups is not None
    levels: list[Any] = [*tuples, *lists]
    native = speedups.wire_raw_levels(levels, wire_decimal)
    assert native == _py_wire_raw_levels(levels, wire_decimal)
    assert type(native) is tuple and all(type(level) is tuple for level in native)
    for given_level, out in zip(tuples, native):
        if out == given_level:
            assert out is given_level


@needs_native
def test_wire_raw_levels_refuses_what_is_not_a_level() -> None:
    from orderbook.sinks.messages import wire_decimal

    assert speedups is not None
    with pytest.raises(ValueError, match="pair"):
        speedups.wire_raw_levels([("1", "2", "3")], wire_decimal)
    with pytest.raises(TypeError, match="ASCII strings"):
        speedups.wire_raw_levels([(1, "2")], wire_decimal)
    with pytest.raises(TypeError, match="ASCII strings"):
        speedups.wire_raw_levels([("1", b"2")], wire_decimal)
