"""orderbook.record.replay: a capture through the Engine, and its time travel.

Version 2 replays exactly as version 1; frames fed in batches or one by one
give the same books and counters; a version 1 file learns its symbols as it
goes; ``at_time`` stops the books at a receive time; bad input inside
well-formed lines is counted, never raised.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderbook import UsageError
from orderbook.record.format import CaptureWriter
from orderbook.record.reader import read_capture, read_events
from orderbook.record.upgrade import upgrade_capture
from orderbook.record.replay import BATCH, Replay, parse_time, replay_capture, replay_options, survey
from orderbook.sync.engine import Engine, EngineAction
from paths import CAPTURES, FIXTURES

FIXTURE = FIXTURES / "small-capture.jsonl"
REAL = sorted(CAPTURES.glob("*.jsonl"))
needs_captures = pytest.mark.skipif(not REAL, reason=f"no real captures in {CAPTURES}")


def document(result: Any) -> dict[str, Any]:
    return result.to_json()["symbols"]


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    return path


def each(path: Path) -> Any:
    """The replay frame by frame (an observer forces it)."""
    seen: list[int] = []

    def count(engine: Engine, actions: list[EngineAction], now: int) -> None:
        seen.append(now)

    result = replay_capture(path, observer=count)
    assert seen
    return result


@needs_captures
@pytest.mark.parametrize("source", REAL, ids=lambda p: p.name)
def test_batched_and_frame_by_frame_give_the_same_books_and_counters(source: Path, tmp_path: Path) -> None:
    v2 = tmp_path / "v2.jsonl"
    upgrade_capture(source, v2)
    batched = replay_capture(v2)
    assert document(batched) == document(each(v2)) == document(replay_capture(source))
    assert batched.engine is not None
    counters = [track.sync.counters for track in batched.engine.tracks()]
    assert counters == [track.sync.counters for track in each(v2).engine.tracks()]  # type: ignore[union-attr]
    assert batched.events == len(list(read_capture(source)))


def test_more_frames_than_a_batch(tmp_path: Path) -> None:
    """A long run of frames crosses batch boundaries (and the engine's
    housekeeping deadlines): the same as frame by frame."""
    path = tmp_path / "long.jsonl"
    symbol = "SOL_USDC"
    with CaptureWriter(path) as writer:
        writer.write_rest(1_000, symbol, 1000, 200, orjson.dumps(
            {"lastUpdateId": 10, "bids": [["10", "1"]], "asks": [["11", "1"]]}))
        for n in range(11, 11 + 3 * BATCH + 7):
            price = f"{10 + (n % 7) / 100:.2f}"
            raw = orjson.dumps({"stream": f"depth.{symbol}", "data": {
                "e": "depth", "E": n, "T": n, "s": symbol, "U": n, "u": n,
                "b": [[price, str(n % 3)]], "a": []}})
            writer.write_ws(1_000 + n * 50_000, raw)  # 50 ms apart: many deadlines
    batched = replay_capture(path)
    assert document(batched) == document(each(path))
    assert document(batched)[symbol]["last_update_id"] == 10 + 3 * BATCH + 7


def test_a_version_1_file_learns_a_symbol_that_comes_late(tmp_path: Path) -> None:
    events = list(read_capture(FIXTURE))
    late = [e for e in events if "BTC_USDC" in orjson.dumps(e).decode()]
    early = [e for e in events if e not in late]
    path = write_jsonl(tmp_path / "late.jsonl", early + late)
    result = replay_capture(path)
    assert sorted(document(result)) == ["BTC_USDC", "SOL_USDC"]
    assert document(result) == document(replay_capture(early + late))  # survey of the list
    assert document(result) == document(each(path))  # survey of the file (with an observer)


def test_the_snapshot_limit_is_the_first_recorded_or_the_headers(tmp_path: Path) -> None:
    assert survey(FIXTURE).limit == 5
    events = list(read_capture(FIXTURE))
    for event in events:
        if event["kind"] == "rest":
            event["query"] = {**event["query"], "limit": "20"}
    result = replay_capture(write_jsonl(tmp_path / "l.jsonl", events))
    assert result.engine is not None and result.engine.options.snapshot_limit == 20
    assert replay_options(survey([])).snapshot_limit == 1000


def test_only_the_symbols_asked_for(tmp_path: Path) -> None:
    result = replay_capture(FIXTURE, symbols=["BTC_USDC"])
    assert list(document(result)) == ["BTC_USDC"]
    assert document(result)["BTC_USDC"] == document(replay_capture(FIXTURE))["BTC_USDC"]
    v2 = tmp_path / "v2.jsonl"
    upgrade_capture(FIXTURE, v2)
    assert document(replay_capture(v2, symbols=["BTC_USDC", "NOPE"])) == document(result)


# ------------------------------------------------------------------ at_time
def test_at_time_stops_every_book_at_a_receive_time(tmp_path: Path) -> None:
    full = document(replay_capture(FIXTURE))
    events = list(read_capture(FIXTURE))
    v2 = tmp_path / "v2.jsonl"
    upgrade_capture(FIXTURE, v2)
    for cut in range(len(events) + 1):
        at_time = events[cut - 1]["ts"] if cut else events[0]["ts"] - 1
        expected = document(replay_capture(events[:cut])) if cut else {}
        for source in (FIXTURE, v2):
            result = replay_capture(source, at_time=at_time)
            assert result.events == cut
            got = document(result)
            if cut:
                assert {s: got[s] for s in expected} == expected, cut
            assert all(book["last_update_id"] is None for s, book in got.items() if s not in expected)
    assert document(replay_capture(FIXTURE, at_time=events[-1]["ts"] + 10**9)) == full
    before_snapshot = document(replay_capture(FIXTURE, at_time=1700000000000003))["SOL_USDC"]
    assert before_snapshot["status"] == "waiting" and before_snapshot["bids"] == []


@pytest.mark.parametrize(("text", "micros"), [
    ("1633998512063357", 1633998512063357),
    ("2021-10-12T00:28:32.063357Z", 1633998512063357),
    ("2021-10-12T00:28:32.063357", 1633998512063357),
    ("2021-10-12T02:28:32.063357+02:00", 1633998512063357),
    ("2021-10-12 00:28:32", 1633998512000000),
    ("1970-01-01T00:00:00Z", 0),
])
def test_parse_time(text: str, micros: int) -> None:
    assert parse_time(text) == micros


@pytest.mark.parametrize("text", ["yesterday", "2021-13-01", "-5", "1.5", ""])
def test_parse_time_refuses_what_is_no_time(text: str) -> None:
    with pytest.raises(UsageError, match="not a time"):
        parse_time(text)


# ----------------------------------------------------------------- bad input
def test_bad_input_in_well_formed_lines_never_stops_a_replay(tmp_path: Path) -> None:
    """Garbage frames, bodies and fields are counted as live would count
    them; the other symbol's book is untouched; nothing is raised."""
    events = [dict(e) for e in read_capture(FIXTURE)]
    rng = random.Random(13)
    junk: list[dict[str, Any]] = [
        {"ts": 1, "kind": "ws", "raw": "not json"},
        {"ts": 1, "kind": "ws", "raw": '{"stream":"depth.BTC_USDC","data":{"U":"x"}}'},
        {"ts": 1, "kind": "ws", "raw": '{"stream":"depth.BTC_USDC","data":[]}'},
        {"ts": 1, "kind": "ws", "raw": "[" * 10_000},
        {"ts": 1, "kind": "ws", "raw": '{"stream":"depth.BTC_USDC","data":{"U":1,"u":2,"E":1,"T":1,"b":[["1e9","1"]],"a":[]}}'},
        {"ts": 1, "kind": "ws", "raw": 5},
        {"ts": "soon", "kind": "ws", "raw": "{}"},
        {"kind": "disconnect"},
        {"ts": 1, "kind": "rest", "path": "/api/v1/depth", "query": {"symbol": "BTC_USDC"}, "status": 200,
         "body": {"lastUpdateId": "nope"}},
        {"ts": 1, "kind": "rest", "path": "/api/v1/depth", "query": {"symbol": "BTC_USDC"}, "status": "200",
         "body": None},
        {"ts": 1, "kind": "rest", "path": "/api/v1/depth", "query": 7},
        {"ts": 1, "kind": "rest", "path": ["x"]},
        {"ts": 1, "kind": "quote", "price": "1"},
        {"ts": 2**63, "kind": "ws", "raw": "{}"},
    ]
    mixed = events[:4] + junk + events[4:]
    path = write_jsonl(tmp_path / "junk.jsonl", mixed)
    result = replay_capture(path)
    sol = document(result)["SOL_USDC"]
    assert sol == document(replay_capture(FIXTURE))["SOL_USDC"]
    assert result.bad_events == 4  # raw 5, ts "soon", a disconnect without ts, ts 2**63
    btc = result.machines["BTC_USDC"]
    assert btc.counters.bad_frames >= 1 and result.unattributed_bad_frames >= 2
    for _ in range(20):  # and in any order
        shuffled = events[:1] + rng.sample(junk + events[1:], len(junk) + len(events) - 1)
        replay_capture(write_jsonl(tmp_path / "s.jsonl", shuffled))


def test_a_disconnect_voids_the_books_and_the_next_event_reconnects(tmp_path: Path) -> None:
    events = list(read_capture(FIXTURE))
    cut = [{"ts": 1700000000000007, "kind": "disconnect", "reason": "gone"}]
    result = replay_capture(events[:7] + cut + events[7:])
    sol = document(result)["SOL_USDC"]
    assert sol["status"] == "resyncing" and sol["last_update_id"] is None and sol["resyncs"] == 1
    assert result.engine is not None and result.engine.counters.disconnects == 1
    assert result.engine.counters.connects == 2


def test_replay_is_the_same_from_typed_events_decoded_lines_or_a_path() -> None:
    typed = list(read_events(FIXTURE))
    assert document(replay_capture(typed)) == document(replay_capture(list(read_capture(FIXTURE)))) \
        == document(replay_capture(FIXTURE))


def test_replay_options_follow_the_header(tmp_path: Path) -> None:
    from orderbook.record.format import CaptureHeader

    header = CaptureHeader(streams=("depth.200ms.SOL_USDC",),
                           options={"depth_stream": "depth.200ms", "snapshot_limit": 100,
                                    "book_ticker": True, "max_buffer": 7})
    found = survey([header])
    options = replay_options(found)
    assert found.symbols == ["SOL_USDC"]
    assert (options.depth_stream, options.snapshot_limit, options.book_ticker, options.max_buffer) == (
        "depth.200ms", 100, True, 7)
    bad = replay_options(survey([CaptureHeader(options={"depth_stream": "x", "snapshot_limit": 7,
                                                        "max_buffer": 0})]))
    assert (bad.depth_stream, bad.snapshot_limit, bad.max_buffer) == ("depth", 1000, 10_000)
    assert Replay([], options).engine is None


def test_prices_stay_exact(tmp_path: Path) -> None:
    book = replay_capture(FIXTURE).machines["SOL_USDC"].book
    assert book.best_ask() == (Decimal("21.905"), Decimal("2"))


# ------------------------------------------------------------ session replay
def _session_file(path: Path, engine: dict[str, Any]) -> Path:
    from orderbook.record.format import CaptureHeader

    header = CaptureHeader(streams=("depth.SOL_USDC",), options={"engine": engine})
    with CaptureWriter(path, header) as writer:
        writer.write_event({"ts": 1, "kind": "connect"})
        writer.write_event({"ts": 2, "kind": "subscribed", "streams": ["depth.SOL_USDC"]})
        writer.write_rest(3, "SOL_USDC", 1000, 200,
                          b'{"lastUpdateId":"10","bids":[["1","2"]],"asks":[["3","4"]]}',
                          ticket=1, purpose="sync")
        writer.write_ws(4, '{"stream":"depth.SOL_USDC","data":{"e":"depth","E":1,"s":"SOL_USDC",'
                           '"U":11,"u":11,"b":[["1","5"]],"a":[],"T":1}}')
    return path


def test_a_session_file_is_replayed_input_for_input(tmp_path: Path) -> None:
    from dataclasses import asdict

    from orderbook.sync.engine import EngineOptions

    engine = {"symbols": ["SOL_USDC"], "options": asdict(EngineOptions(seed=7))}
    result = replay_capture(_session_file(tmp_path / "s.jsonl", engine))
    assert result.exact and result.events == 4
    book = result.engine.book("SOL_USDC")
    assert book.last_update_id == 11 and book.best_bid() == (Decimal("1"), Decimal("5"))
    assert result.engine.counters.connects == 1 and result.engine.options.seed == 7


@pytest.mark.parametrize("engine", [
    {"symbols": ["SOL_USDC"]},  # no options
    {"symbols": [], "options": {}},
    {"symbols": ["SOL_USDC"], "options": {"snapshot_limit": 7}},
    "not an object",
])
def test_a_session_header_naming_no_usable_engine_is_reported(tmp_path: Path, engine: Any) -> None:
    from orderbook import MalformedMessage

    with pytest.raises(MalformedMessage, match="recorded engine is unusable"):
        replay_capture(_session_file(tmp_path / "s.jsonl", engine))
