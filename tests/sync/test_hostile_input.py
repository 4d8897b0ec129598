"""Hostile venue input: each defect of issue 9 as a regression test, and a fuzz
test over mutated real frames.

What must hold for any input: only the package's own exceptions escape a
public function, error messages stay short, the book stays consistent
(``check_integrity()``), and a machine that refused something asks for a
snapshot again instead of wedging.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook import (
    MalformedMessage,
    OrderBookError,
    SymbolSync,
    SyncState,
    parse_frame,
    parse_message,
    parse_snapshot,
)
from orderbook.errors import SHOWN_CHARS
from orderbook.protocol.wire import DepthEvent
from paths import REPO, CAPTURES

SYMBOL = "SOL_USDC"
HUGE_DECIMALS = "10." + "0" * 4399 + "1"  # a price with 4,400 decimals
ROOT = REPO
CAPTURES = [ROOT / "fixtures/small-capture.jsonl", *sorted(CAPTURES.glob("*.jsonl"))]


def depth(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"e": "depth", "E": 1, "s": SYMBOL, "a": [["21.90", "1"]],
                            "b": [["21.80", "2"]], "U": 11, "u": 11, "T": 1}
    data.update(changes)
    return {"stream": f"depth.{SYMBOL}", "data": data}


def snapshot_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"lastUpdateId": "10", "timestamp": 1,
                            "bids": [["21.80", "1"], ["21.70", "2"], ["21.60", "3"]],
                            "asks": [["21.90", "1"], ["22.00", "2"], ["22.10", "3"]]}
    body.update(changes)
    return body


def synced() -> SymbolSync:
    sync = SymbolSync(SYMBOL)
    sync.start()
    sync.receive_snapshot(parse_snapshot(snapshot_body(), SYMBOL), limit=1000)
    assert sync.state is SyncState.SYNCED
    return sync


def nested(depth_: int, inner: Any = "1") -> Any:
    value = inner
    for _ in range(depth_):
        value = [value]
    return value


def deeply_nested(document: dict[str, Any], marker: str, depth_: int = 1000) -> bytes:
    """``document`` as JSON text with ``marker`` replaced by a string nested
    ``depth_`` lists deep (orjson refuses to *write* such nesting, but reads it)."""
    return orjson.dumps(document).replace(
        f'"{marker}"'.encode(), b"[" * depth_ + b'"1"' + b"]" * depth_
    )


def refused(raw: bytes, *, validate_levels: bool) -> MalformedMessage:
    with pytest.raises(MalformedMessage) as info:
        event = parse_frame(raw, validate_levels=validate_levels)
        assert isinstance(event, DepthEvent)
        sync = synced()
        before = sync.counters.bad_frames
        actions = sync.receive_frame(event)
        # refused by the book: counted, the book cleared and a snapshot asked for
        assert sync.counters.bad_frames == before + 1
        assert sync.state is SyncState.WAITING and sync.awaiting_snapshot
        assert [type(a).__name__ for a in actions] == ["BookInvalidated", "RequestSnapshot"]
        raise actions[0].error  # type: ignore[union-attr,misc]
    assert len(str(info.value)) < 3 * SHOWN_CHARS
    return info.value


# ------------------------------------------------------- regression: issue 9
@pytest.mark.parametrize("validate_levels", [True, False])
@pytest.mark.parametrize("side", ["a", "b"])
def test_a_price_with_4400_decimals_in_a_frame_is_refused(side: str, validate_levels: bool) -> None:
    error = refused(orjson.dumps(depth(**{side: [[HUGE_DECIMALS, "1"]]})), validate_levels=validate_levels)
    assert "price" in str(error)


@pytest.mark.parametrize("validate_levels", [True, False])
def test_a_quantity_with_thousands_of_digits_in_a_frame_is_refused(validate_levels: bool) -> None:
    refused(orjson.dumps(depth(b=[["21.80", "9" * 5000]])), validate_levels=validate_levels)


@pytest.mark.parametrize("side", ["bids", "asks"])
def test_a_price_with_4400_decimals_in_a_snapshot_is_refused_and_the_symbol_asks_again(side: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_snapshot(snapshot_body(**{side: [[HUGE_DECIMALS, "1"]]}), SYMBOL)
    assert info.value.field == f"{side} price" and len(str(info.value)) < 3 * SHOWN_CHARS
    sync = SymbolSync(SYMBOL)
    sync.start()
    actions = sync.bad_snapshot(info.value)
    assert [type(a).__name__ for a in actions] == ["RequestSnapshot"] and sync.awaiting_snapshot
    sync.receive_snapshot(parse_snapshot(snapshot_body(), SYMBOL))
    assert sync.state is SyncState.SYNCED  # not wedged


@pytest.mark.parametrize("validate_levels", [True, False])
@pytest.mark.parametrize(
    "where",
    ["level", "price", "U", "s", "E"],
)
def test_nesting_1000_deep_is_refused_without_recursion(where: str, validate_levels: bool) -> None:
    marker = "NESTED-HERE"
    frame = {
        "level": depth(b=[marker]),
        "price": depth(b=[[marker, "1"]]),
        "U": depth(U=marker),
        "s": depth(s=marker),
        "E": depth(E=marker),
    }[where]
    raw = deeply_nested(frame, marker)
    with pytest.raises(MalformedMessage) as info:
        event = parse_frame(raw, validate_levels=validate_levels)
        assert isinstance(event, DepthEvent)
        actions = synced().receive_frame(event)
        raise actions[0].error  # type: ignore[union-attr,misc]
    assert len(str(info.value)) < 3 * SHOWN_CHARS


@pytest.mark.parametrize("field", ["bids", "asks", "lastUpdateId", "timestamp"])
def test_nesting_1000_deep_in_a_snapshot_is_refused(field: str) -> None:
    marker = "NESTED-HERE"
    value = [marker] if field in ("bids", "asks") else marker
    with pytest.raises(MalformedMessage) as info:
        parse_snapshot(deeply_nested(snapshot_body(**{field: value}), marker), SYMBOL)
    assert len(str(info.value)) < 3 * SHOWN_CHARS


@pytest.mark.parametrize("field", ["E", "T", "U", "u"])
@pytest.mark.parametrize("value", [-1, "-1", -(2**62), 2**63, str(2**63), 1.5, "1.5", True, None])
def test_negative_fractional_or_oversized_ids_and_times_are_refused_whatever_their_json_type(
    field: str, value: Any
) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_frame(orjson.dumps(depth(**{field: value})))
    assert info.value.field == field


@pytest.mark.parametrize("order", ["bids ascending", "both shuffled", "asks descending"])
def test_snapshots_in_any_level_order_give_the_same_book(order: str) -> None:
    body = snapshot_body()
    expected = SymbolSync(SYMBOL)
    expected.start()
    expected.receive_snapshot(parse_snapshot(body, SYMBOL))
    shuffled = dict(body)
    rng = random.Random(7)
    if order == "bids ascending":
        shuffled["bids"] = list(reversed(body["bids"]))
    elif order == "asks descending":
        shuffled["asks"] = list(reversed(body["asks"]))
    else:
        for side in ("bids", "asks"):
            levels = list(body[side])
            while levels == body[side]:
                rng.shuffle(levels)
            shuffled[side] = levels
    snap = parse_snapshot(orjson.dumps(shuffled), SYMBOL)
    assert snap.bids == tuple(map(tuple, body["bids"])) and snap.asks == tuple(map(tuple, body["asks"]))
    sync = SymbolSync(SYMBOL)
    sync.start()
    sync.receive_snapshot(snap)
    assert sync.book.bids() == expected.book.bids() and sync.book.asks() == expected.book.asks()


def test_a_snapshot_listing_a_price_twice_in_another_spelling_is_refused() -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_snapshot(snapshot_body(bids=[["21.6", "1"], ["21.80", "2"], ["21.60", "3"]]), SYMBOL)
    assert info.value.field == "bids"


def test_a_rescale_to_the_bound_does_not_switch_the_book_to_another_scale_for_good() -> None:
    sync = synced()
    fine = "21.850000000000000001"  # 18 decimals: the bound; the new best bid
    sync.receive_frame(parse_frame(orjson.dumps(depth(b=[[fine, "1"]]))))  # type: ignore[arg-type]
    assert sync.book.best_bid() is not None and str(sync.book.best_bid()[0]) == fine  # type: ignore[index]
    sync.invalidate("test")
    sync.receive_snapshot(parse_snapshot(snapshot_body(lastUpdateId="11"), SYMBOL))
    # the book is keyed at the new snapshot's 2 decimals again
    assert [str(price) for price, _ in sync.book.bids()] == ["21.80", "21.70", "21.60"]


# ----------------------------------------------------- fuzz over real frames
def corpus() -> list[bytes]:
    """Raw depth frames and snapshot bodies from the captures at hand."""
    out: list[bytes] = []
    for path in CAPTURES:
        for line in path.read_text().splitlines():
            event = orjson.loads(line)
            if event.get("kind") == "ws":
                out.append(orjson.dumps(event["frame"]))
            elif event.get("kind") == "rest":
                out.append(orjson.dumps(event["body"]))
    return out


CORPUS = corpus()
JUNK: list[Any] = [-1, 2**63, 1.5, "", "-1", "1e5", "NaN", HUGE_DECIMALS, nested(50), {}, [], None, True,
                   "９", "0" * 50, "1." + "9" * 19, [["1", "1", "1"]], [[None, "1"]], "SPCX.US_USDC"]


def mutate(value: Any, rng: random.Random, depth_: int = 0) -> Any:
    """A structural mutation of a decoded frame or body: replace, delete or
    duplicate one node somewhere below ``value``."""
    if isinstance(value, dict) and value and depth_ < 6:
        key = rng.choice(list(value))
        copy = dict(value)
        roll = rng.random()
        if roll < 0.2:
            del copy[key]
        elif roll < 0.5:
            copy[key] = rng.choice(JUNK)
        else:
            copy[key] = mutate(value[key], rng, depth_ + 1)
        return copy
    if isinstance(value, list) and value and depth_ < 6:
        index = rng.randrange(len(value))
        copy = list(value)
        roll = rng.random()
        if roll < 0.2:
            del copy[index]
        elif roll < 0.35:
            copy.insert(index, copy[index])
        elif roll < 0.6:
            copy[index] = rng.choice(JUNK)
        else:
            copy[index] = mutate(value[index], rng, depth_ + 1)
        return copy
    return rng.choice(JUNK)


def damage(raw: bytes, rng: random.Random) -> bytes:
    """Character-level damage: insert, replace or delete a few bytes."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        roll = rng.random()
        byte = rng.choice(b'"{}[],:.0123456789-eE \\\x00\xff')
        if roll < 0.4 and at < len(data):
            data[at] = byte
        elif roll < 0.7:
            data.insert(at, byte)
        elif at < len(data):
            del data[at]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), picks=st.lists(st.integers(0, len(CORPUS) - 1), min_size=1, max_size=30))
def test_mutated_real_frames_let_only_our_errors_escape_and_keep_the_book_consistent(
    seed: int, picks: list[int]
) -> None:
    rng = random.Random(seed)
    machines: dict[str, SymbolSync] = {}
    for pick in picks:
        raw = CORPUS[pick]
        roll = rng.random()
        if roll < 0.4:
            raw = orjson.dumps(mutate(orjson.loads(raw), rng))
        elif roll < 0.8:
            raw = damage(raw, rng)
        is_snapshot = b"lastUpdateId" in CORPUS[pick]
        try:
            if is_snapshot:
                symbol = rng.choice(list(machines) or [SYMBOL])
                machine = machines.setdefault(symbol, SymbolSync(symbol))
                if not machine.awaiting_snapshot and machine.state is SyncState.WAITING:
                    machine.start()
                try:
                    machine.receive_snapshot(parse_snapshot(raw, symbol), limit=1000)
                except MalformedMessage as exc:
                    machine.bad_snapshot(exc)
            else:
                for validate in (True, False):
                    try:
                        event = parse_frame(raw, validate_levels=validate)
                    except MalformedMessage as exc:
                        if exc.symbol and exc.symbol in machines:
                            machines[exc.symbol].receive_bad_frame(exc)
                        continue
                    if isinstance(event, DepthEvent):
                        machine = machines.get(event.symbol)
                        if machine is None:
                            machine = machines[event.symbol] = SymbolSync(event.symbol)
                            machine.start()
                        machine.receive_frame(event)
        except OrderBookError:
            pass
        for machine in machines.values():
            machine.book.check_integrity()
            if machine.state is SyncState.WAITING:
                assert machine.awaiting_snapshot
