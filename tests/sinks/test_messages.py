"""Message encodings, stream keys and subjects: round trips, refusals, the escaping rule."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderbook.errors import MalformedMessage, UsageError
from orderbook.sinks import (
    Message,
    MessageKind,
    decode_fields,
    decode_json,
    delta_subject,
    redis_key,
    snapshot_subject,
    subject_token,
    symbol_of_token,
)
from orderbook.sinks.messages import wire_decimal, wire_levels, wire_raw_levels
from orderbook.sinks.naming import check_nats_prefix, check_redis_prefix

decimals = st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,18})?", fullmatch=True)
levels = st.lists(st.tuples(decimals, decimals), max_size=5).map(tuple)
ids = st.integers(0, 2**63 - 1)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(MessageKind))
    last = draw(ids)
    first = last if kind is MessageKind.SNAPSHOT else draw(st.integers(0, last))
    return Message("SPCX.US_USDC", kind, first, last, draw(ids), draw(levels), draw(levels))


@given(messages())
def test_both_encodings_round_trip(message: Message) -> None:
    assert decode_fields(message.fields(), message.symbol) == message
    as_text = {k: v.decode() for k, v in message.fields().items()}
    assert decode_fields(as_text, message.symbol) == message
    assert decode_json(message.json(), message.symbol) == message


def test_the_documented_shapes() -> None:
    message = Message("SOL_USDC", MessageKind.DELTA, 11, 12, 1_700_000_000_000_000,
                      (("18.67", "0.832"),), (("18.70", "0"),))
    assert message.fields() == {"type": b"delta", "U": b"11", "u": b"12", "ts": b"1700000000000000",
                                "bids": b'[["18.67","0.832"]]', "asks": b'[["18.70","0"]]'}
    assert orjson.loads(message.json()) == {"type": "delta", "U": 11, "u": 12, "ts": 1700000000000000,
                                            "bids": [["18.67", "0.832"]], "asks": [["18.70", "0"]]}


@pytest.mark.parametrize("change, field", [
    ({"type": b"trade"}, "type"),
    ({"U": b"-1"}, "U"),
    ({"u": b"9" * 20}, "u"),
    ({"U": b"13"}, "U"),                        # U > u
    ({"ts": b"1.5"}, "ts"),
    ({"bids": b"[[1, 2]]"}, "bids"),            # numbers, not decimal strings
    ({"asks": b'[["1e3", "1"]]'}, "asks"),
    ({"asks": b"{"}, "asks"),
    ({"bids": b'{"a": 1}'}, "bids"),
])
def test_bad_fields_are_refused_by_name(change: dict[str, bytes], field: str) -> None:
    good = Message("SOL_USDC", MessageKind.DELTA, 11, 12, 5, (), ()).fields()
    with pytest.raises(MalformedMessage) as caught:
        decode_fields({**good, **change}, "SOL_USDC")
    assert caught.value.field == field


def test_a_snapshot_has_one_id_and_json_must_be_an_object() -> None:
    snapshot = Message("X", MessageKind.SNAPSHOT, 5, 5, 0, (), ()).fields()
    with pytest.raises(MalformedMessage, match="impossible ids"):
        decode_fields({**snapshot, "U": b"4"}, "X")
    for payload in (b"[]", b"nope", b'{"type": "delta"}', b'{"type":"delta","U":true,"u":1}'):
        with pytest.raises(MalformedMessage):
            decode_json(payload, "X")


# ------------------------------------------------------------------ naming
@pytest.mark.parametrize("symbol, token", [
    ("SOL_USDC", "SOL_USDC"),
    ("SPCX.US_USDC", "SPCX~2EUS_USDC"),
    ("A~B", "A~7EB"),
    ("a b*>", "a~20b~2A~3E"),
    ("é", "~C3~A9"),
])
def test_the_documented_escaping_rule(symbol: str, token: str) -> None:
    assert subject_token(symbol) == token
    assert symbol_of_token(token) == symbol


@given(st.text(min_size=1))
def test_escaping_is_reversible_and_yields_one_plain_token(symbol: str) -> None:
    token = subject_token(symbol)
    assert symbol_of_token(token) == symbol
    assert all(c.isascii() and (c.isalnum() or c in "_-~") for c in token)
    assert "." not in token and "*" not in token and ">" not in token


@given(st.text(alphabet="AZaz09_-~2E7F.", min_size=1))
def test_only_canonical_tokens_name_a_symbol(token: str) -> None:
    try:
        symbol = symbol_of_token(token)
    except UsageError:
        return
    assert subject_token(symbol) == token


@pytest.mark.parametrize("token", ["", "A.B", "~2e", "~41", "~", "A~4", "~FF"])
def test_non_canonical_tokens_are_refused(token: str) -> None:
    with pytest.raises(UsageError):
        symbol_of_token(token)


def test_keys_and_subjects() -> None:
    assert redis_key("SPCX.US_USDC") == "orderbook:SPCX.US_USDC"
    assert redis_key("SOL_USDC", "prod:books") == "prod:books:SOL_USDC"
    assert delta_subject("SPCX.US_USDC") == "orderbook.SPCX~2EUS_USDC.delta"
    assert snapshot_subject("SOL_USDC", "prod.books") == "prod.books.SOL_USDC.snapshot"
    with pytest.raises(UsageError):
        subject_token("")
    with pytest.raises(UsageError):
        redis_key("")
    for bad in ("", "a..b", "a.*", "a b", ".a"):
        with pytest.raises(UsageError, match="NATS subject prefix"):
            check_nats_prefix(bad)
    with pytest.raises(UsageError, match="Redis key prefix"):
        check_redis_prefix("")


# Every spelling the engine accepts in a frame (is_decimal_string): leading
# zeros, a leading or trailing point, zeros of any length.
plain = st.from_regex(r"(0{0,3}[0-9]{1,6}(\.[0-9]{0,8})?|\.[0-9]{1,8}|0+(\.0*)?)", fullmatch=True)


@given(st.lists(st.tuples(plain, plain), max_size=8))
def test_raw_levels_are_published_exactly_as_their_values(raw: list[tuple[str, str]]) -> None:
    """The sinks publish received strings without building Decimals; the text
    must be what wire_levels makes of the same values (zero: "0")."""
    assert wire_raw_levels(raw) == wire_levels((Decimal(p), Decimal(q)) for p, q in raw)


@pytest.mark.parametrize(("text", "wire"), [
    ("1.50", "1.50"), ("0.5", "0.5"), ("0", "0"), ("10", "10"), (".5", "0.5"), ("5.", "5"),
    ("007.5", "7.5"), ("00", "0"), ("0.000", "0.000"),
])
def test_wire_decimal_keeps_canonical_spellings_and_fixes_the_others(text: str, wire: str) -> None:
    assert wire_decimal(text) == wire
    assert wire_raw_levels([(text, "0.000"), ("1", text)]) == (
        (wire, "0"), ("1", "0" if Decimal(text) == 0 else wire))
