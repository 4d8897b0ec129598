"""Malformed frames and snapshots: one row per kind, each with its documented outcome.

Stages (where the defect is caught):

* ``parse``  -- ``parse_frame`` / ``parse_snapshot`` raise ``MalformedMessage``
  whatever ``validate_levels`` says;
* ``levels`` -- a bad level: ``parse_frame`` raises, and with
  ``validate_levels=False`` (the replay / replicator hot path) the frame parses
  and ``OrderBook.apply_delta`` raises ``MalformedMessage`` instead;
* ``apply``  -- the payload is well formed but cannot be applied
  (``OrderBook.apply_snapshot`` raises ``CrossedBook``).

In every case no book is ever partly changed: a plain ``OrderBook`` is left
exactly as it was, and a synced ``SymbolSync`` counts a bad frame, clears the
book (``BookInvalidated``) and asks for a snapshot (``RequestSnapshot``).
A bad snapshot answering a request is counted (``bad_snapshots``) and another
one is requested; the frames buffered meanwhile are kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest

from orderbook.sync.status import Reason
from orderbook import (
    BookChanged,
    BookInvalidated,
    CrossedBook,
    MalformedMessage,
    OrderBook,
    RequestSnapshot,
    SymbolSync,
    SyncState,
    VenueDataError,
    replay_capture,
)
from orderbook.protocol.wire import DepthEvent, parse_frame, parse_snapshot

D = Decimal
SYMBOL = "SOL_USDC"
SNAPSHOT = {"lastUpdateId": "100", "bids": [["10.00", "1"], ["9.50", "2"]],
            "asks": [["10.50", "1"], ["11.00", "3"]], "timestamp": 1700000000000000}
# The good frame continuing SNAPSHOT; its second bid needs more decimals than the
# snapshot (a re-key) so a partial application would be visible.
GOOD_DATA = {"e": "depth", "E": "1700000000000100", "s": SYMBOL, "U": 101, "u": 101, "T": "1700000000000099",
             "b": [["10.10", "4"], ["9.5012", "1"]], "a": [["10.50", "0"]]}
AFTER_GOOD = ([(D("10.10"), D(4)), (D("10.00"), D(1)), (D("9.5012"), D(1)), (D("9.50"), D(2))],
              [(D("11.00"), D(3))])
DELETE = object()


def _changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``changes`` applied (``DELETE`` removes a key)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DELETE:
            del out[key]
        else:
            out[key] = value
    return out


def frame(**changes: Any) -> dict[str, Any]:
    return {"stream": f"depth.{SYMBOL}", "data": _changed(GOOD_DATA, changes)}


def bad_bid(level: Any) -> bytes:
    """The good frame with one more bid level, the bad one, after the good ones."""
    message = frame()
    message["data"]["b"].append(level)
    return orjson.dumps(message)


def snapshot(**changes: Any) -> bytes:
    return orjson.dumps(_changed(SNAPSHOT, changes))


@dataclass(frozen=True)
class Kind:
    name: str
    raw: bytes
    stage: str  # "parse", "levels" or "apply"
    outcome: str
    field: str | None = None  # MalformedMessage.field, when the kind names one
    attributed: bool = True  # MalformedMessage.symbol names the market

    def __str__(self) -> str:
        return self.name


SYNCED_FRAME = "synced SymbolSync: bad_frames+1, BookInvalidated + RequestSnapshot, book cleared"
FRAME_KINDS = [
    # name, raw bytes, stage, outcome
    Kind("invalid JSON", b'{"stream": "depth.SOL_USDC", "data": {"U": 1', "parse",
         f"MalformedMessage, no symbol (replay: unattributed_bad_frames+1); {SYNCED_FRAME}", attributed=False),
    Kind("not an object", b"[1, 2]", "parse",
         f"MalformedMessage, no symbol (replay: unattributed); {SYNCED_FRAME}", attributed=False),
    Kind("missing stream", orjson.dumps({"data": GOOD_DATA}), "parse",
         f"MalformedMessage field=stream, no symbol (replay: unattributed); {SYNCED_FRAME}",
         field="stream", attributed=False),
    Kind("data not an object", orjson.dumps({"stream": f"depth.{SYMBOL}", "data": [1]}), "parse",
         f"MalformedMessage field=data; {SYNCED_FRAME}", field="data"),
    *(
        Kind(f"missing {name}", orjson.dumps(frame(**{name: DELETE})), "parse",
             f"MalformedMessage field={name}; {SYNCED_FRAME}", field=name)
        for name in ("U", "u", "a", "b", "E", "T")
    ),
    Kind("U > u", orjson.dumps(frame(U=102, u=101)), "parse", f"MalformedMessage field=U; {SYNCED_FRAME}", "U"),
    Kind("U as float", orjson.dumps(frame(U=101.0)), "parse", f"MalformedMessage field=U; {SYNCED_FRAME}", "U"),
    Kind("u negative", orjson.dumps(frame(u=-1)), "parse", f"MalformedMessage field=u; {SYNCED_FRAME}", "u"),
    Kind("U as bool", orjson.dumps(frame(U=True)), "parse", f"MalformedMessage field=U; {SYNCED_FRAME}", "U"),
    Kind("u as signed string", orjson.dumps(frame(u="+101")), "parse", f"MalformedMessage field=u; {SYNCED_FRAME}", "u"),
    Kind("E as non-digit string", orjson.dumps(frame(E="17e14")), "parse",
         f"MalformedMessage field=E; {SYNCED_FRAME}", "E"),
    Kind("T as float", orjson.dumps(frame(T=1.7e15)), "parse", f"MalformedMessage field=T; {SYNCED_FRAME}", "T"),
    Kind("levels not a list", orjson.dumps(frame(b={"10.10": "4"})), "parse",
         f"MalformedMessage (even without level validation); {SYNCED_FRAME}"),
    Kind("symbol mismatch between stream and s", orjson.dumps(frame(s="BTC_USDC")), "parse",
         f"MalformedMessage field=s, symbol of the stream; {SYNCED_FRAME}", "s"),
    Kind("level not a pair", bad_bid(["10.20"]), "levels",
         f"parse_frame raises; unvalidated: apply_delta raises, book unchanged; {SYNCED_FRAME}"),
    Kind("level with 3 items", bad_bid(["10.20", "1", "x"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("level is a 2-character string", bad_bid("12"), "levels",
         f"as above (was applied as price 1 x 2 before the fix); {SYNCED_FRAME}"),
    Kind("level is an object", bad_bid({"1": "a", "2": "b"}), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("level is null", bad_bid(None), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("price as number (float)", bad_bid([10.2, "1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("price as number (int)", bad_bid([10, "1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("negative price", bad_bid(["-10.20", "1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("zero price", bad_bid(["0.000", "1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("non-numeric price", bad_bid(["abc", "1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("empty price", bad_bid(["", "1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("price with exponent", bad_bid(["1.02e1", "1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity -1", bad_bid(["10.20", "-1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity NaN", bad_bid(["10.20", "NaN"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity Infinity", bad_bid(["10.20", "Infinity"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity 1e5", bad_bid(["10.20", "1e5"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity with whitespace", bad_bid(["10.20", " 1"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity with two dots", bad_bid(["10.20", "1.2.3"]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity as number", bad_bid(["10.20", 1]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity empty", bad_bid(["10.20", ""]), "levels", f"as above; {SYNCED_FRAME}"),
    Kind("quantity non-ASCII digits", bad_bid(["10.20", "١"]), "levels", f"as above; {SYNCED_FRAME}"),
]

WAITING_SNAPSHOT = "waiting SymbolSync: bad_snapshots+1, RequestSnapshot, buffered frames kept, book empty"
SNAPSHOT_KINDS = [
    Kind("snapshot: invalid JSON", b'{"lastUpdateId": "100", "bids": [', "parse",
         f"MalformedMessage; {WAITING_SNAPSHOT}"),
    Kind("snapshot: not an object", b'[["10", "1"]]', "parse", f"MalformedMessage; {WAITING_SNAPSHOT}"),
    Kind("snapshot: missing lastUpdateId", snapshot(lastUpdateId=DELETE), "parse",
         f"MalformedMessage field=lastUpdateId; {WAITING_SNAPSHOT}", "lastUpdateId"),
    Kind("snapshot: lastUpdateId as float", snapshot(lastUpdateId=100.0), "parse",
         f"MalformedMessage field=lastUpdateId; {WAITING_SNAPSHOT}", "lastUpdateId"),
    Kind("snapshot: lastUpdateId negative", snapshot(lastUpdateId=-100), "parse",
         f"MalformedMessage field=lastUpdateId; {WAITING_SNAPSHOT}", "lastUpdateId"),
    Kind("snapshot: timestamp not an integer", snapshot(timestamp="yesterday"), "parse",
         f"MalformedMessage field=timestamp; {WAITING_SNAPSHOT}", "timestamp"),
    Kind("snapshot: missing asks", snapshot(asks=DELETE), "parse",
         f"MalformedMessage field=asks; {WAITING_SNAPSHOT}", "asks"),
    Kind("snapshot: unsorted bids list a price twice",
         snapshot(bids=[["9.50", "2"], ["10.00", "1"], ["9.5", "3"]]), "parse",
         f"MalformedMessage field=bids; {WAITING_SNAPSHOT}", "bids"),
    Kind("snapshot: unsorted asks list a price twice",
         snapshot(asks=[["11.00", "3"], ["10.50", "1"], ["11", "1"]]), "parse",
         f"MalformedMessage field=asks; {WAITING_SNAPSHOT}", "asks"),
    Kind("snapshot: a price with 4,400 decimals", snapshot(asks=[["10." + "0" * 4399 + "1", "1"]]),
         "parse", f"MalformedMessage field=asks price; {WAITING_SNAPSHOT}", "asks price"),
    Kind("snapshot: duplicate price", snapshot(bids=[["10.00", "1"], ["10.0", "2"]]), "parse",
         f"MalformedMessage field=bids; {WAITING_SNAPSHOT}", "bids"),
    Kind("snapshot: bad quantity", snapshot(asks=[["10.50", "NaN"]]), "parse",
         f"MalformedMessage; {WAITING_SNAPSHOT}"),
    Kind("snapshot: zero price", snapshot(bids=[["0", "1"]]), "parse", f"MalformedMessage; {WAITING_SNAPSHOT}"),
    Kind("snapshot: level with 3 items", snapshot(bids=[["10.00", "1", "x"]]), "parse",
         f"MalformedMessage; {WAITING_SNAPSHOT}"),
    Kind("snapshot: error body", orjson.dumps({"code": "INVALID_MARKET", "message": "Market not found"}),
         "parse", f"MalformedMessage naming the venue code; {WAITING_SNAPSHOT}", "lastUpdateId"),
    Kind("snapshot: crossed", snapshot(bids=[["10.5001", "1"]], asks=[["10.5000", "1"]]), "apply",
         f"parses; apply_snapshot raises CrossedBook, book unchanged; {WAITING_SNAPSHOT}"),
    Kind("snapshot: locked (bid == ask)", snapshot(bids=[["10.5", "1"]], asks=[["10.50", "1"]]), "apply",
         f"parses; apply_snapshot raises CrossedBook; {WAITING_SNAPSHOT}"),
]


def test_the_table_covers_at_least_20_kinds() -> None:
    names = [k.name for k in FRAME_KINDS + SNAPSHOT_KINDS]
    assert len(names) == len(set(names)) >= 40
    assert all(k.outcome and k.stage in {"parse", "levels", "apply"} for k in FRAME_KINDS + SNAPSHOT_KINDS)


# ------------------------------------------------------------------ helpers
def good_book() -> OrderBook:
    book = OrderBook(SYMBOL)
    book.apply_snapshot(SNAPSHOT)
    return book


def observed(book: OrderBook) -> tuple[Any, ...]:
    return (book.bids(), book.asks(), book.last_update_id, book.timestamp, book.bridged, book.complete_to())


def synced_machine() -> SymbolSync:
    machine = SymbolSync(SYMBOL)
    machine.start()
    assert machine.receive_snapshot(parse_snapshot(SNAPSHOT)) == [BookChanged(SYMBOL, None)]
    return machine


def feed_frame(machine: SymbolSync, raw: bytes, *, validate_levels: bool) -> list[Any]:
    """A single-symbol driver: parse, and tell the machine either way."""
    try:
        event = parse_frame(raw, validate_levels=validate_levels)
    except MalformedMessage as exc:
        return machine.receive_bad_frame(exc)
    assert isinstance(event, DepthEvent)
    return machine.receive_frame(event)


def feed_snapshot(machine: SymbolSync, raw: bytes) -> list[Any]:
    try:
        snap = parse_snapshot(raw, SYMBOL)
    except MalformedMessage as exc:
        return machine.bad_snapshot(exc)
    return machine.receive_snapshot(snap)


GOOD_RAW = orjson.dumps(frame())


# ------------------------------------------------------------------- frames
@pytest.mark.parametrize("kind", FRAME_KINDS, ids=str)
def test_frame_is_refused_by_the_parser_or_the_book(kind: Kind) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_frame(kind.raw)
    assert info.value.symbol == (SYMBOL if kind.attributed else None)
    if kind.field:
        assert info.value.field == kind.field
    if kind.stage == "parse":
        with pytest.raises(MalformedMessage):
            parse_frame(kind.raw, validate_levels=False)
    else:
        event = parse_frame(kind.raw, validate_levels=False)
        assert isinstance(event, DepthEvent)
        book = good_book()
        before = observed(book)
        with pytest.raises(MalformedMessage) as applied:
            book.apply_delta(event)
        assert applied.value.symbol == SYMBOL
        assert observed(book) == before, "the book was partly changed"
        book.check_integrity()
        good = parse_frame(GOOD_RAW)
        assert isinstance(good, DepthEvent)
        book.apply_delta(good)  # still usable, still expecting 101
        assert (book.bids(), book.asks()) == AFTER_GOOD
        book.check_integrity()


@pytest.mark.parametrize("validate_levels", [True, False], ids=["validated", "unvalidated"])
@pytest.mark.parametrize("kind", FRAME_KINDS, ids=str)
def test_frame_through_a_synced_machine(kind: Kind, validate_levels: bool) -> None:
    machine = synced_machine()
    actions = feed_frame(machine, kind.raw, validate_levels=validate_levels)
    assert [type(a) for a in actions] == [BookInvalidated, RequestSnapshot]
    assert isinstance(actions[0].error, MalformedMessage)
    c = machine.counters
    assert (c.bad_frames, c.resyncs, c.frames_applied, c.gaps) == (1, 1, 0, 0)
    assert machine.state is SyncState.WAITING and machine.awaiting_snapshot
    assert machine.book.depth() == (0, 0) and machine.book.last_update_id is None
    assert machine.buffered == 0  # a malformed frame is never kept
    # nothing of the bad frame survives: resync and continue exactly
    assert feed_frame(machine, GOOD_RAW, validate_levels=validate_levels) == []
    assert machine.receive_snapshot(parse_snapshot(SNAPSHOT)) == [BookChanged(SYMBOL, None)]
    assert (machine.book.bids(), machine.book.asks()) == AFTER_GOOD
    assert machine.book.last_update_id == 101
    machine.book.check_integrity()


def decodable(kinds: list[Kind]) -> list[Kind]:
    """Kinds a capture file can hold (its frames and bodies are parsed JSON)."""
    out = []
    for kind in kinds:
        try:
            orjson.loads(kind.raw)
        except orjson.JSONDecodeError:
            continue
        out.append(kind)
    return out


def rest(body: Any, status: int = 200) -> dict[str, Any]:
    return {"ts": 2, "kind": "rest", "method": "GET", "path": "/api/v1/depth",
            "query": {"symbol": SYMBOL, "limit": "1000"}, "status": status, "body": body}


def ws(message: Any) -> dict[str, Any]:
    return {"ts": 1, "kind": "ws", "frame": message}


@pytest.mark.parametrize("kind", decodable(FRAME_KINDS), ids=str)
def test_frame_in_a_replayed_capture(kind: Kind) -> None:
    """The capture replayer is the real driver: an attributable bad frame resyncs
    its symbol; an unattributable one is counted for the file and the book,
    which lost nothing, carries on."""
    events = [rest(SNAPSHOT), ws(orjson.loads(kind.raw)), ws(frame()), rest(SNAPSHOT)]
    result = replay_capture(events)
    machine = result.machines[SYMBOL]
    c = machine.counters
    assert machine.state is SyncState.SYNCED
    assert (machine.book.bids(), machine.book.asks()) == AFTER_GOOD
    assert machine.book.last_update_id == 101
    if kind.attributed:
        assert (c.bad_frames, c.resyncs, c.snapshots_applied, result.unattributed_bad_frames) == (1, 1, 2, 0)
        assert result.ignored_snapshots == 0
    else:
        assert (c.bad_frames, c.resyncs, c.snapshots_applied, result.unattributed_bad_frames) == (0, 0, 1, 1)
        assert result.ignored_snapshots == 1
    assert result.to_json()["symbols"][SYMBOL]["bad_frames"] == c.bad_frames


# ---------------------------------------------------------------- snapshots
@pytest.mark.parametrize("kind", SNAPSHOT_KINDS, ids=str)
def test_snapshot_is_refused_and_the_book_unchanged(kind: Kind) -> None:
    if kind.stage == "parse":
        with pytest.raises(MalformedMessage) as info:
            parse_snapshot(kind.raw, SYMBOL)
        assert info.value.symbol == SYMBOL
        if kind.field:
            assert info.value.field == kind.field
    else:
        parse_snapshot(kind.raw, SYMBOL)
    book = good_book()
    good = parse_frame(GOOD_RAW)
    assert isinstance(good, DepthEvent)
    book.apply_delta(good)
    before = observed(book)
    with pytest.raises(CrossedBook if kind.stage == "apply" else MalformedMessage):
        book.apply_snapshot(kind.raw)
    assert observed(book) == before, "the book was partly changed"
    book.check_integrity()
    book.apply_delta(DepthEvent(SYMBOL, 102, 102, 0, 0, [["9.75", "1"]], []))  # still usable
    assert [p for p, _ in book.bids()] == [D("10.10"), D("10.00"), D("9.75"), D("9.5012"), D("9.50")]
    book.check_integrity()


@pytest.mark.parametrize("kind", SNAPSHOT_KINDS, ids=str)
def test_snapshot_through_a_waiting_machine(kind: Kind) -> None:
    machine = SymbolSync(SYMBOL)
    machine.start()
    machine.receive_frame(parse_frame(GOOD_RAW))  # type: ignore[arg-type]
    actions = feed_snapshot(machine, kind.raw)
    assert [type(a) for a in actions] == [RequestSnapshot]
    assert actions[0].reason is Reason.BAD_SNAPSHOT
    c = machine.counters
    assert (c.bad_snapshots, c.snapshots_applied, c.resyncs) == (1, 0, 0)
    assert machine.state is SyncState.WAITING and machine.awaiting_snapshot
    assert machine.book.depth() == (0, 0) and machine.book.last_update_id is None
    assert machine.buffered == 1
    assert machine.receive_snapshot(parse_snapshot(SNAPSHOT)) == [BookChanged(SYMBOL, None)]
    assert (machine.book.bids(), machine.book.asks()) == AFTER_GOOD
    assert machine.book.last_update_id == 101


@pytest.mark.parametrize("kind", [k for k in SNAPSHOT_KINDS if k.stage == "apply"], ids=str)
def test_unsolicited_bad_snapshot_leaves_a_synced_machine_alone(kind: Kind) -> None:
    machine = synced_machine()
    before = observed(machine.book)
    assert machine.receive_snapshot(parse_snapshot(kind.raw)) == []
    assert observed(machine.book) == before and machine.state is SyncState.SYNCED
    assert machine.counters.bad_snapshots == 0


@pytest.mark.parametrize("kind", decodable(SNAPSHOT_KINDS), ids=str)
def test_snapshot_in_a_replayed_capture(kind: Kind) -> None:
    events = [ws(frame()), rest(orjson.loads(kind.raw)), rest(SNAPSHOT)]
    result = replay_capture(events)
    machine = result.machines[SYMBOL]
    assert machine.counters.bad_snapshots == 1 and machine.counters.snapshots_applied == 1
    assert machine.state is SyncState.SYNCED
    assert (machine.book.bids(), machine.book.asks()) == AFTER_GOOD
    assert machine.book.last_update_id == 101


def test_error_status_in_a_replayed_capture_keeps_waiting() -> None:
    """A non-200 answer (here a 400 with the venue's error body) is a failed
    request, not a snapshot: nothing is counted and the request stays open."""
    events = [ws(frame()), rest({"code": "INVALID_MARKET", "message": "x"}, status=400)]
    machine = replay_capture(events).machines[SYMBOL]
    assert machine.state is SyncState.WAITING and machine.awaiting_snapshot
    assert machine.counters.bad_snapshots == 0 and machine.buffered == 1


def test_venue_data_errors_share_one_root() -> None:
    assert issubclass(MalformedMessage, VenueDataError) and issubclass(CrossedBook, VenueDataError)
