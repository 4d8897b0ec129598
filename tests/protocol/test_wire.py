"""orderbook.protocol.wire: venue bytes and dicts -> typed events, tolerant of the venue's quirks."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderbook import MalformedMessage, OrderBook
from orderbook.protocol.wire import (
    BookTickerEvent,
    DepthEvent,
    Snapshot,
    StreamReply,
    is_decimal_string,
    parse_decimal,
    parse_frame,
    parse_levels,
    parse_message,
    parse_snapshot,
)
from paths import REPO

EXAMPLES: dict[str, Any] = json.loads(
    (REPO / "fixtures" / "wire-examples.json").read_text()
)


def example(name: str) -> Any:
    return copy.deepcopy(EXAMPLES[name])


def depth(**data: Any) -> dict[str, Any]:
    body = {"e": "depth", "E": 1, "s": "SOL_USDC", "a": [], "b": [], "U": 5, "u": 5, "T": 1}
    body.update(data)
    return {"stream": "depth.SOL_USDC", "data": body}


# ------------------------------------------------------------------ depth frames
def test_documented_depth_frame() -> None:
    event = parse_frame(orjson.dumps(example("depth_documented")))
    assert isinstance(event, DepthEvent)
    assert event.symbol == "SOL_USDC"
    assert (event.first_id, event.last_id) == (94978271, 94978271)
    assert event.event_time == 1694687965941000
    assert event.engine_time == 1694687965940999
    # levels are kept exactly as received
    assert list(event.asks) == [["18.70", "0.000"]]
    assert list(event.bids) == [["18.67", "0.832"], ["18.68", "0.000"]]


def test_observed_depth_frame_with_string_times_and_ids() -> None:
    event = parse_frame(orjson.dumps(example("depth_observed")))
    assert isinstance(event, DepthEvent)
    assert event.event_time == 1754903057555305
    assert event.engine_time == 1754903057555001
    assert (event.first_id, event.last_id) == (94978272, 94978280)
    assert all(type(v) is int for v in (event.first_id, event.last_id, event.event_time, event.engine_time))


@pytest.mark.parametrize("spelling", [int, str])
@pytest.mark.parametrize("field", ["E", "T", "U", "u"])
def test_integer_fields_as_int_or_string(field: str, spelling: type) -> None:
    value = 1754903057555305 if field in "ET" else 5
    event = parse_message(depth(**{field: spelling(value)}))
    assert isinstance(event, DepthEvent)
    got = {"E": event.event_time, "T": event.engine_time, "U": event.first_id, "u": event.last_id}[field]
    assert got == value and type(got) is int


def test_int64_ids_beyond_float_precision_stay_exact() -> None:
    big = 2**62 + 1  # not representable as a float
    event = parse_message(depth(U=str(big), u=big))
    assert isinstance(event, DepthEvent)
    assert event.first_id == event.last_id == big


@pytest.mark.parametrize("zero", ["0", "0.000", "0.00000", "0.", ".0", "000.000"])
def test_zero_quantity_in_any_spelling_parses_and_deletes(zero: str) -> None:
    frame = depth(U=2, u=2, b=[["10.5", zero]], a=[["11", zero]])
    event = parse_message(frame)
    assert isinstance(event, DepthEvent)
    assert parse_levels(event.bids) == [(Decimal("10.5"), Decimal(0))]
    book = OrderBook("SOL_USDC")
    book.apply_snapshot({"lastUpdateId": 1, "bids": [["10.5", "3"]], "asks": [["11", "4"]]})
    book.apply_delta(event)
    assert book.depth() == (0, 0)


def test_unknown_extra_fields_are_ignored() -> None:
    frame = depth(b=[["10", "1"]], extra={"nested": [1, 2]}, z="?")
    frame["unknownTopLevel"] = True
    event = parse_message(frame)
    assert isinstance(event, DepthEvent)
    assert list(event.bids) == [["10", "1"]]
    body = example("snapshot")
    body["sequence"] = 7
    body["whatever"] = {"a": 1}
    assert parse_snapshot(body).last_update_id == 1684026955123


def test_aggregated_stream_names_carry_the_symbol() -> None:
    for stream in ("depth.200ms.SOL_USDC", "depth.600ms.SOL_USDC", "depth.1000ms.SOL_USDC"):
        frame = depth(U=3, u=9)
        frame["stream"] = stream
        event = parse_message(frame)
        assert isinstance(event, DepthEvent)
        assert event.symbol == "SOL_USDC"
        assert (event.first_id, event.last_id) == (3, 9)


def test_perp_symbol() -> None:
    frame = depth(s="SOL_USDC_PERP")
    frame["stream"] = "depth.SOL_USDC_PERP"
    event = parse_message(frame)
    assert isinstance(event, DepthEvent) and event.symbol == "SOL_USDC_PERP"


def test_missing_s_takes_the_stream_symbol() -> None:
    frame = depth()
    del frame["data"]["s"]
    event = parse_message(frame)
    assert isinstance(event, DepthEvent) and event.symbol == "SOL_USDC"


@pytest.mark.parametrize("kind", [bytes, str, bytearray, memoryview])
def test_parse_frame_accepts_bytes_like_and_str(kind: Any) -> None:
    raw = orjson.dumps(example("depth_documented"))
    payload = raw.decode() if kind is str else kind(raw)
    event = parse_frame(payload)
    assert isinstance(event, DepthEvent) and event.last_id == 94978271


def test_validate_levels_false_defers_level_checks_but_not_structure() -> None:
    frame = depth(b=[["abc", "1"]])
    with pytest.raises(MalformedMessage):
        parse_message(frame)
    event = parse_message(frame, validate_levels=False)
    assert isinstance(event, DepthEvent) and list(event.bids) == [["abc", "1"]]
    with pytest.raises(MalformedMessage):
        parse_message(depth(b={"10": "1"}), validate_levels=False)


def test_malformed_message_carries_field_and_symbol() -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_message(depth(U=9, u=3))
    assert info.value.field == "U"
    assert info.value.symbol == "SOL_USDC"
    assert "SOL_USDC" in str(info.value)
    with pytest.raises(MalformedMessage) as info:
        parse_frame(b"{")
    assert info.value.symbol is None
    assert isinstance(info.value.__cause__, orjson.JSONDecodeError)


def test_other_streams_are_not_book_events() -> None:
    for stream in ("trade.SOL_USDC", "ticker.SOL_USDC", "kline.1m.SOL_USDC", "markPrice.SOL_USDC_PERP"):
        assert parse_message({"stream": stream, "data": {"e": "trade", "p": "1"}}) is None


# ------------------------------------------------------------------- bookTicker
def test_book_ticker() -> None:
    event = parse_frame(orjson.dumps(example("book_ticker")))
    assert event == BookTickerEvent(
        symbol="SOL_USDC",
        update_id=111063070525358080,
        bid_price=Decimal("18.67"),
        bid_qty=Decimal("2.000"),
        ask_price=Decimal("18.70"),
        ask_qty=Decimal("1.000"),
        event_time=1694687965941000,
        engine_time=1694687965940999,
    )


def test_book_ticker_string_times_and_int_update_id() -> None:
    frame = example("book_ticker")
    frame["data"].update(E="1694687965941000", T="1694687965940999", u=5)
    event = parse_message(frame)
    assert isinstance(event, BookTickerEvent)
    assert (event.update_id, event.event_time, event.engine_time) == (5, 1694687965941000, 1694687965940999)


@pytest.mark.parametrize("field", ["u", "a", "A", "b", "B", "E", "T"])
def test_book_ticker_missing_field(field: str) -> None:
    frame = example("book_ticker")
    del frame["data"][field]
    with pytest.raises(MalformedMessage) as info:
        parse_message(frame)
    assert info.value.field == field


def test_book_ticker_bad_price() -> None:
    frame = example("book_ticker")
    frame["data"]["a"] = 18.7
    with pytest.raises(MalformedMessage):
        parse_message(frame)


# ---------------------------------------------------------------------- replies
def test_subscription_ack() -> None:
    assert parse_message(example("subscribe_ack")) == StreamReply(1, None)


def test_subscription_error_reply() -> None:
    reply = parse_frame(orjson.dumps(example("subscribe_error")))
    assert isinstance(reply, StreamReply)
    assert reply.id == 2
    assert reply.error == {"code": 4002, "message": "Invalid stream"}


def test_error_reply_on_a_stream() -> None:
    reply = parse_message({"stream": "depth.NOPE", "error": {"code": 4000, "message": "no such market"}})
    assert isinstance(reply, StreamReply)
    assert reply.error["code"] == 4000


# -------------------------------------------------------------------- snapshots
@pytest.mark.parametrize("last_update_id", ["1684026955123", 1684026955123])
def test_snapshot_last_update_id_string_or_int(last_update_id: object) -> None:
    body = example("snapshot")
    body["lastUpdateId"] = last_update_id
    snap = parse_snapshot(body)
    assert snap == Snapshot(
        last_update_id=1684026955123,
        timestamp=1684026955123000,
        bids=(("21.8", "3"), ("21.75", "0.5")),
        asks=(("21.9", "500.123"), ("22.0", "1")),
    )


@pytest.mark.parametrize("kind", [bytes, str, dict])
def test_snapshot_from_bytes_str_or_dict(kind: Any) -> None:
    body = example("snapshot")
    payload = body if kind is dict else orjson.dumps(body) if kind is bytes else orjson.dumps(body).decode()
    assert parse_snapshot(payload, "SOL_USDC").last_update_id == 1684026955123


def test_snapshot_timestamp_optional_and_string() -> None:
    body = example("snapshot")
    del body["timestamp"]
    assert parse_snapshot(body).timestamp is None
    body["timestamp"] = "1684026955123000"
    assert parse_snapshot(body).timestamp == 1684026955123000


def test_empty_snapshot_sides() -> None:
    snap = parse_snapshot({"lastUpdateId": 0, "bids": [], "asks": []})
    assert (snap.bids, snap.asks) == ((), ())


def test_snapshot_error_body_names_the_code() -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_snapshot(example("snapshot_error"), "SOL_USDC")
    assert "INVALID_MARKET" in str(info.value)
    assert info.value.field == "lastUpdateId"
    assert info.value.symbol == "SOL_USDC"


# -------------------------------------------------------------- decimal helpers
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("18.70", True),
        ("0", True),
        ("0.00000001", True),
        ("1.", True),
        (".5", True),
        ("12345678901234567890.123456789012345678", True),  # the bound: 20 + 18 digits
        ("123456789012345678901.5", False),  # 21 digits before the point
        ("1.1234567890123456789", False),  # 19 after it
        ("0." + "0" * 4400 + "1", False),
        ("1" * 5000, False),
        ("", False),
        (".", False),
        ("-1", False),
        ("+1", False),
        ("1e5", False),
        ("1E5", False),
        (" 1", False),
        ("1 ", False),
        ("1.2.3", False),
        ("NaN", False),
        ("Infinity", False),
        ("1_000", False),
        ("١٢", False),  # non-ASCII digits
        ("²", False),
        (1, False),
        (1.5, False),
        (None, False),
        (True, False),
        (b"1", False),
    ],
)
def test_is_decimal_string(value: object, ok: bool) -> None:
    assert is_decimal_string(value) is ok


def test_parse_decimal_is_exact() -> None:
    assert parse_decimal("0.1", "p") + parse_decimal("0.2", "p") == Decimal("0.3")
    assert parse_decimal("12345678901234567890.123456789012345678", "p") == Decimal(
        "12345678901234567890.123456789012345678"
    )
    with pytest.raises(MalformedMessage) as info:
        parse_decimal("1e5", "quantity", "SOL_USDC")
    assert (info.value.field, info.value.symbol) == ("quantity", "SOL_USDC")


def test_parse_levels() -> None:
    assert parse_levels([["18.70", "0.000"], ["18.5", "2"]]) == [
        (Decimal("18.70"), Decimal(0)),
        (Decimal("18.5"), Decimal(2)),
    ]
    assert parse_levels([]) == []
    for bad in ([["0", "1"]], [["1", "-1"]], [["1"]], [["1", "2", "3"]], [[1.5, "1"]]):
        with pytest.raises(MalformedMessage):
            parse_levels(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", ["depth.", "depth"])
def test_a_depth_stream_without_a_symbol_is_refused(stream: str) -> None:
    frame = {"stream": stream, "data": {"e": "depth", "E": 1, "T": 1, "U": 1, "u": 1, "a": [], "b": []}}
    with pytest.raises(MalformedMessage):
        parse_frame(orjson.dumps(frame))
