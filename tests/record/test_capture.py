"""Replaying recorded sessions: the fixture and the real captures (format version 1), through the engine.

The replay tests on the real captures in ../shared/data/captures check the facts
stated in that folder's README; they skip when the folder is absent.
"""

from __future__ import annotations

import gzip
import itertools
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderbook import (
    BookChanged,
    MalformedMessage,
    ReplayResult,
    SymbolSync,
    SyncState,
    UsageError,
    read_capture,
    replay_capture,
)
from orderbook.protocol.decimals import decimal_str
from orderbook.record.format import CaptureHeader, CaptureWriter, WsEvent
from orderbook.record.reader import read_events
from orderbook.sync.engine import Engine
from orderbook.protocol.streams import parse_stream
from orderbook.protocol.wire import BookTickerEvent, DepthEvent, StreamReply, parse_message, parse_snapshot
from paths import REPO, CAPTURES

D = Decimal
ROOT = REPO
FIXTURE = ROOT / "fixtures" / "small-capture.jsonl"
CAPTURES = CAPTURES
BINANCE = "real-binance-spot-2021-10-12.jsonl"
BINANCE_US = "real-binanceus-spot-2021-10-12.jsonl"
REAL_FILES = [BINANCE, BINANCE_US]
needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"{CAPTURES} is absent")

FIXTURE_JSON = {
    "symbols": {
        "BTC_USDC": {
            "status": "synced", "last_update_id": 13,
            "bids": [["30000.0", "3"]],
            "asks": [["30001.0", "1"], ["30002.0", "4"]],
            "frames_applied": 1, "frames_dropped": 1, "gaps": 0, "resyncs": 0, "bad_frames": 0,
        },
        "SOL_USDC": {
            "status": "synced", "last_update_id": 107,
            # after 21.905 every price is spelled with three decimals, exactly
            "bids": [["21.850", "0.5"], ["21.800", "11"], ["21.750", "1.5"], ["21.700", "5"]],
            "asks": [["21.905", "2"], ["22.000", "7.25"]],
            "frames_applied": 3, "frames_dropped": 1, "gaps": 0, "resyncs": 0, "bad_frames": 0,
        },
    }
}


def dumps(result: ReplayResult) -> bytes:
    return orjson.dumps(result.to_json())


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as out:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
    return path


def symbol_of(event: dict[str, Any]) -> str:
    if event["kind"] == "rest":
        return str(event["query"]["symbol"])
    name = parse_stream(event["frame"]["stream"])
    assert name is not None
    return name.symbol


# ------------------------------------------------------------- read_capture
def test_read_capture_plain_and_gz(tmp_path: Path) -> None:
    events = list(read_capture(FIXTURE))
    assert len(events) == 10 and events[0]["kind"] == "ws" and events[3]["kind"] == "rest"
    gz = tmp_path / "capture.jsonl.gz"
    gz.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert list(read_capture(gz)) == events
    assert list(read_capture(str(gz))) == events


def test_read_capture_skips_blank_lines(tmp_path: Path) -> None:
    lines = FIXTURE.read_text().splitlines()
    path = tmp_path / "blanks.jsonl"
    path.write_text("\n\n" + "\n   \n".join(lines) + "\n\n")
    assert list(read_capture(path)) == list(read_capture(FIXTURE))


@pytest.mark.parametrize(("line", "message"), [("{not json", "invalid JSON"), ("[1, 2]", "event is not a JSON object")])
def test_read_capture_bad_line_names_its_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(FIXTURE.read_text().splitlines()[0] + "\n" + line + "\n")
    events = read_capture(path)
    assert next(events)["kind"] == "ws"
    with pytest.raises(MalformedMessage, match=f"bad.jsonl:2: {message}"):
        next(events)


def test_read_capture_refuses_broken_gzip_and_text(tmp_path: Path) -> None:
    whole = gzip.compress(FIXTURE.read_bytes())
    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(whole[:-12])
    with pytest.raises(MalformedMessage, match=r"t\.jsonl\.gz: truncated or corrupt gzip data after line \d+"):
        list(read_capture(truncated))
    garbage = tmp_path / "g.jsonl.gz"
    garbage.write_bytes(b"\x1f\x8b" + bytes(range(256)))
    with pytest.raises(MalformedMessage, match="g.jsonl.gz: truncated or corrupt gzip data after line 0"):
        list(read_capture(garbage))
    latin = tmp_path / "l.jsonl"
    latin.write_bytes(FIXTURE.read_bytes() + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(MalformedMessage, match="l.jsonl:11: not UTF-8 text"):
        list(read_capture(latin))


@pytest.mark.parametrize("content", [b"", b"\n\n", b'{"kind": "header", "format": 2}\n', b'{"a": 1}\n'])
def test_replaying_a_file_without_capture_events_is_an_error(content: bytes, tmp_path: Path) -> None:
    for path in (tmp_path / "x.jsonl", tmp_path / "x.jsonl.gz"):
        path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
        with pytest.raises(MalformedMessage, match=f"{path.name}: no capture events"):
            replay_capture(path)
    assert replay_capture([]).to_json() == {"symbols": {}}  # an iterable of nothing is no file


def test_replay_ignores_rest_events_of_odd_shapes() -> None:
    events = list(read_capture(FIXTURE))
    odd = [dict(events[3], query=q) for q in ("SOL_USDC", ["SOL_USDC"], None, {"symbol": 5}, {"symbol": ""})]
    odd.append(dict(events[3], query={"symbol": "SOL_USDC", "limit": "\u00b2"}))  # a digit, not ASCII
    result = replay_capture([*odd[:-1], *events])
    assert result.to_json() == FIXTURE_JSON
    assert replay_capture([odd[-1]]).machines["SOL_USDC"].book.last_update_id == 102


def test_read_capture_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        list(read_capture(tmp_path / "nope.jsonl"))


# ------------------------------------------------------------ CaptureWriter
@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_writer_writes_version_2_that_replays_identically(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    header = CaptureHeader(rest_url="http://127.0.0.1:1", ws_url="ws://127.0.0.1:1",
                           streams=("depth.SOL_USDC", "depth.BTC_USDC"), options={"snapshot_limit": 5},
                           ts=1700000000000000)
    raws = []
    with CaptureWriter(path, header) as writer:
        for event in read_capture(FIXTURE):
            if event["kind"] == "ws":
                raws.append(orjson.dumps(event["frame"]).decode())
                writer.write_ws(event["ts"], raws[-1].encode() if len(raws) % 2 else raws[-1])
            else:
                limit = event["query"].get("limit")
                writer.write_rest(event["ts"], event["query"]["symbol"], int(limit) if limit else None,
                                  event["status"], orjson.dumps(event["body"]))
        assert writer.events == 10
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    lines = list(read_capture(path))
    assert lines[0] == header.to_json() and lines[0]["kind"] == "header" and lines[0]["format"] == 2
    assert [e["raw"] for e in lines if e["kind"] == "ws"] == raws  # the text, as written
    assert all("frame" not in e for e in lines)
    rest = [e for e in lines if e["kind"] == "rest"]
    assert all(orjson.loads(e["raw_body"]) == e["body"] for e in rest)
    events = list(read_events(path))
    assert events[0] == header and [e.raw for e in events if type(e) is WsEvent] == raws
    assert dumps(replay_capture(path)) == dumps(replay_capture(FIXTURE))


# ------------------------------------------------------------ the fixture
def test_fixture_replay_exact_result() -> None:
    result = replay_capture(FIXTURE)
    assert result.to_json() == FIXTURE_JSON
    assert result.engine is not None and result.engine.options.snapshot_limit == 5  # as recorded
    assert result.engine.track("SOL_USDC").ticker_mismatches == 0  # the bookTicker agrees
    assert result.ignored_snapshots == 0 and result.unattributed_bad_frames == 0
    assert result.bad_events == 0 and result.events == 10 and result.last_ts == 1700000000000010
    sol = result.machines["SOL_USDC"].book
    assert sol.timestamp == 1700000000000599
    assert sol.complete_to() == (None, None)  # 3 levels < limit 5
    btc = result.machines["BTC_USDC"].book
    assert btc.complete_to() == (None, None)


def test_a_snapshot_as_deep_as_the_limit_is_truncated() -> None:
    events = [dict(e) for e in read_capture(FIXTURE)]
    btc = events[5]
    btc["body"] = dict(btc["body"], bids=[[f"{30000 - i}.0", "1"] for i in range(5)],
                       asks=[[f"{30001 + i}.0", "1"] for i in range(5)])
    book = replay_capture(events).machines["BTC_USDC"].book
    assert book.complete_to() == (D("29996.0"), D("30005.0"))  # 5 levels = limit 5
    assert not book.is_complete("30006.0", "ask")


def test_the_engine_checks_book_tickers_in_replay() -> None:
    """A bookTicker disagreeing with the book at its update id resyncs the
    symbol, in replay as live."""
    events = [dict(e) for e in read_capture(FIXTURE)]
    ticker = events[2]
    ticker["frame"] = {**ticker["frame"], "data": {**ticker["frame"]["data"], "A": "4"}}
    result = replay_capture(events)
    assert result.engine is not None
    track = result.engine.track("SOL_USDC")
    assert track.ticker_mismatches == 1 and track.sync.counters.resyncs == 1
    assert result.to_json()["symbols"]["SOL_USDC"]["status"] == "resyncing"


def test_replay_document_does_not_depend_on_reads_during_the_replay() -> None:
    reads = []

    def read_everything(engine: Engine, actions: list[Any], now: int) -> None:
        for track in engine.tracks():
            reads.append((track.sync.book.bids(), track.sync.book.asks(), track.status()))
            track.sync.book.check_integrity()

    assert replay_capture(FIXTURE, observer=read_everything).to_json() == FIXTURE_JSON
    assert len(reads) > 20
    machines, _ = drive(read_capture(FIXTURE))  # the independent driver agrees
    assert documents(machines) == FIXTURE_JSON["symbols"]


def test_replay_from_path_or_iterable_is_the_same() -> None:
    assert dumps(replay_capture(FIXTURE)) == dumps(replay_capture(list(read_capture(FIXTURE))))
    assert dumps(replay_capture(str(FIXTURE))) == dumps(replay_capture(read_capture(FIXTURE)))


def test_replay_at_stops_each_book() -> None:
    symbols = replay_capture(FIXTURE, at=105).to_json()["symbols"]
    assert symbols["SOL_USDC"]["last_update_id"] == 105
    assert symbols["SOL_USDC"]["asks"] == [["21.905", "2"], ["22.000", "3"]]
    assert symbols["BTC_USDC"] == FIXTURE_JSON["symbols"]["BTC_USDC"]
    # 103 falls inside the aggregated frame 102..104, which cannot be split
    symbols = replay_capture(FIXTURE, at=103).to_json()["symbols"]
    assert symbols["SOL_USDC"]["last_update_id"] == 102
    assert symbols["SOL_USDC"]["bids"] == [["21.80", "10"], ["21.70", "5"], ["21.60", "2.5"]]
    assert symbols["SOL_USDC"]["frames_applied"] == 0
    # before the snapshot: the book is not synced
    symbols = replay_capture(FIXTURE, at=101).to_json()["symbols"]
    assert symbols["SOL_USDC"]["status"] == "waiting" and symbols["SOL_USDC"]["last_update_id"] is None
    assert symbols["SOL_USDC"]["bids"] == []


DOTTED_NAMES = {"SOL_USDC": "SPCX.US_USDC", "BTC_USDC": "TSLA.US_USDC_PERP"}


@pytest.mark.parametrize("prefix", ["depth", "depth.600ms"])
def test_dotted_symbols_replay_like_any_other(prefix: str, tmp_path: Path) -> None:
    """The fixture with its symbols renamed to tokenized equities (on depth,
    bookTicker and REST events) replays to the same books under the new names."""
    text = FIXTURE.read_text().replace('"stream":"depth.', f'"stream":"{prefix}.')
    for plain, dotted in DOTTED_NAMES.items():
        text = text.replace(f'{plain}"', f'{dotted}"')
    path = tmp_path / "dotted.jsonl"
    path.write_text(text)
    result = replay_capture(path)
    expected = {DOTTED_NAMES[s]: book for s, book in FIXTURE_JSON["symbols"].items()}
    assert result.to_json() == {"symbols": dict(sorted(expected.items()))}
    assert result.unattributed_bad_frames == 0
    assert {symbol_of(e) for e in read_capture(path) if "result" not in e.get("frame", {})} == set(
        DOTTED_NAMES.values())


def test_replay_ignores_unsolicited_and_failed_snapshots() -> None:
    events = list(read_capture(FIXTURE))
    extra = dict(events[3], body={"lastUpdateId": 1, "bids": [], "asks": []})
    failed = dict(events[3], status=503, body={"code": "SERVER_ERROR", "message": "x"})
    result = replay_capture([failed, *events[:4], extra, *events[4:]])
    assert result.ignored_snapshots == 1
    assert result.to_json() == FIXTURE_JSON


def test_decimal_str_is_plain_and_exact() -> None:
    assert decimal_str(D("1E-8")) == "0.00000001"
    assert decimal_str(D("6195.00000000")) == "6195.00000000"
    assert decimal_str(D("1E+3")) == "1000"


# ------------------------------------------------------- the real captures
def real(name: str) -> Path:
    return CAPTURES / name


def drive(events: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> tuple[dict[str, SymbolSync], dict[str, Any]]:
    """An independent driver of the documented replay rules (one machine per
    symbol, no engine) that checks every book after every event.  Returns
    the machines and per-symbol notes."""
    machines: dict[str, SymbolSync] = {}
    notes: dict[str, Any] = {}

    def machine_of(symbol: str) -> SymbolSync:
        if symbol not in machines:
            machines[symbol] = SymbolSync(symbol)
            machines[symbol].start()
        return machines[symbol]

    for event in events:
        if event["kind"] == "rest":
            symbol = event["query"]["symbol"]
            machine = machine_of(symbol)
            assert machine.awaiting_snapshot, f"{symbol}: a snapshot nobody asked for"
            snap = parse_snapshot(event["body"], symbol)
            notes.setdefault(symbol, {})["snapshot"] = snap.last_update_id
            notes[symbol]["buffered"] = machine.buffered
            actions = machine.receive_snapshot(snap, limit=int(event["query"]["limit"]))
            assert actions == [BookChanged(symbol, None)], f"{symbol}: {actions}"
        else:
            parsed = parse_message(event["frame"])
            if isinstance(parsed, DepthEvent):
                machine = machine_of(parsed.symbol)
                note = notes.setdefault(parsed.symbol, {})
                if "snapshot" in note and "first_usable" not in note and parsed.last_id > note["snapshot"]:
                    note["first_usable"] = (parsed.first_id, parsed.last_id)
                note.setdefault("frames", []).append((parsed.first_id, parsed.last_id))
                machine.receive_frame(parsed)
            else:
                assert isinstance(parsed, (BookTickerEvent, StreamReply))
        for machine in machines.values():
            machine.book.check_integrity()  # never crossed, ladders intact, after every event
    return machines, notes


def documents(machines: dict[str, SymbolSync]) -> dict[str, Any]:
    """The ``--json`` document of independently driven machines."""
    return {symbol: {
        "status": machine.state.value, "last_update_id": machine.book.last_update_id,
        "bids": [[decimal_str(p), decimal_str(q)] for p, q in machine.book.bids()],
        "asks": [[decimal_str(p), decimal_str(q)] for p, q in machine.book.asks()],
        "frames_applied": machine.counters.frames_applied,
        "frames_dropped": machine.counters.frames_dropped, "gaps": machine.counters.gaps,
        "resyncs": machine.counters.resyncs, "bad_frames": machine.counters.bad_frames,
    } for symbol, machine in sorted(machines.items())}


@needs_captures
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_facts(name: str) -> None:
    result = replay_capture(real(name))
    assert len(result.machines) == 4
    for symbol, machine in result.machines.items():
        c = machine.counters
        assert machine.state is SyncState.SYNCED, symbol
        assert (c.gaps, c.resyncs, c.bad_frames, c.stale_snapshots, c.bad_snapshots) == (0, 0, 0, 0, 0), symbol
        assert c.snapshots_applied == 1 and c.frames_applied > 0, symbol
        assert not machine.book.is_crossed()
        machine.book.check_integrity()
    # some buffered frames precede the snapshot and are discarded
    assert any(m.counters.frames_dropped > 0 for m in result.machines.values())
    assert result.ignored_snapshots == 0 and result.unattributed_bad_frames == 0


@needs_captures
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_first_usable_frame_bridges_its_snapshot(name: str) -> None:
    machines, notes = drive(read_capture(real(name)))
    assert documents(machines) == replay_capture(real(name)).to_json()["symbols"]
    for symbol, note in notes.items():
        snapshot_id = note["snapshot"]
        first, last = note["first_usable"]
        assert first <= snapshot_id + 1 <= last, f"{symbol}: {first}..{last} vs snapshot {snapshot_id}"
        # the stream itself is contiguous: no gap anywhere in the file
        frames = note["frames"]
        assert all(b[0] == a[1] + 1 for a, b in zip(frames, frames[1:])), symbol
    assert any(note["buffered"] > 0 for note in notes.values())


@needs_captures
def test_real_capture_nkn_final_state() -> None:
    result = replay_capture(real(BINANCE))
    book = result.machines["NKN_USDT"].book
    assert book.last_update_id == 499870179
    assert book.best_bid() == (D("0.35270000"), D("9602"))
    assert book.best_ask() == (D("0.35310000"), D("152"))
    assert book.depth() == (614, 994)
    document = result.to_json()["symbols"]["NKN_USDT"]
    assert document["bids"][0] == ["0.35270000", "9602.00000000"]
    assert document["asks"][0] == ["0.35310000", "152.00000000"]
    assert len(document["bids"]) == 614 and len(document["asks"]) == 994
    prices = [D(p) for p, _ in document["bids"]]
    assert prices == sorted(prices, reverse=True)
    prices = [D(p) for p, _ in document["asks"]]
    assert prices == sorted(prices)


@needs_captures
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_book_tickers_agree_with_the_books(name: str) -> None:
    """The real captures' bookTicker frames are cross-checked by the engine
    and agree; made to disagree, they resync the books."""
    events = list(read_capture(real(name)))
    tickers = [e for e in events if e["kind"] == "ws" and e["frame"]["stream"].startswith("bookTicker.")]
    assert tickers
    result = replay_capture(events)
    assert result.engine is not None
    assert all(track.ticker_mismatches == 0 for track in result.engine.tracks())
    for ticker in tickers:
        ticker["frame"] = {**ticker["frame"], "data": {**ticker["frame"]["data"], "B": "123456789"}}
    wrong = replay_capture(events)
    assert wrong.engine is not None
    assert sum(track.ticker_mismatches for track in wrong.engine.tracks()) > 0
    assert sum(m.counters.resyncs for m in wrong.machines.values()) > 0


@needs_captures
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_replays_identically_twice_and_from_gz(name: str, tmp_path: Path) -> None:
    first = dumps(replay_capture(real(name)))
    assert dumps(replay_capture(real(name))) == first
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress(real(name).read_bytes()))
    assert dumps(replay_capture(gz)) == first


@needs_captures
@pytest.mark.parametrize("order", ["docs", "shuffled"])
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_with_snapshots_in_another_order_replays_the_same(name: str, order: str) -> None:
    """Regression: a capture whose snapshots list bids ascending (the order of
    the venue docs' example) replayed to ``waiting`` with 0 frames applied."""
    rng = random.Random(name)
    events = list(read_capture(real(name)))
    for event in events:
        if event["kind"] == "rest" and isinstance(event.get("body"), dict) and "bids" in event["body"]:
            body = event["body"] = dict(event["body"])
            body["bids"] = body["bids"][::-1]
            if order == "shuffled":
                body["asks"] = rng.sample(body["asks"], len(body["asks"]))
                body["bids"] = rng.sample(body["bids"], len(body["bids"]))
    assert dumps(replay_capture(events)) == dumps(replay_capture(real(name)))
    assert all(m.counters.frames_applied > 0 for m in replay_capture(events).machines.values())


@needs_captures
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_split_by_symbol_and_in_pieces(name: str, tmp_path: Path) -> None:
    """Re-fed split: one file per symbol gives each symbol the same result as
    the whole file; the file cut in three pieces and chained gives the same."""
    events = list(read_capture(real(name)))
    whole = replay_capture(events).to_json()["symbols"]
    for symbol in whole:
        path = write_jsonl(tmp_path / f"{symbol}.jsonl", [e for e in events if symbol_of(e) == symbol])
        assert replay_capture(path).to_json()["symbols"] == {symbol: whole[symbol]}
    cuts = [0, len(events) // 3, 2 * len(events) // 3, len(events)]
    pieces = [write_jsonl(tmp_path / f"piece{i}.jsonl.gz", events[a:b]) for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]
    chained = itertools.chain.from_iterable(read_capture(p) for p in pieces)
    assert replay_capture(chained).to_json()["symbols"] == whole


def aggregate(events: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """Merge up to ``size`` consecutive depth frames of a symbol (no other event
    of that symbol between them) into one, as the depth.200ms stream would:
    U of the first, u of the last, last quantity per price."""
    out: list[dict[str, Any]] = []
    pending: dict[str, tuple[int, dict[str, Any], int]] = {}  # symbol -> (index in out, data, merged)

    for event in events:
        if event["kind"] == "ws" and event["frame"]["stream"].startswith("depth."):
            symbol = symbol_of(event)
            data = event["frame"]["data"]
            open_frame = pending.get(symbol)
            if open_frame and open_frame[2] < size:
                index, merged, count = open_frame
                for side in ("b", "a"):
                    levels = {p: q for p, q in merged[side]}
                    for p, q in data[side]:
                        levels.pop(p, None)
                        levels[p] = q
                    merged[side] = [[p, q] for p, q in levels.items()]
                merged["u"], merged["E"], merged["T"] = data["u"], data["E"], data["T"]
                pending[symbol] = (index, merged, count + 1)
                continue
            merged = dict(data, b=[list(x) for x in data["b"]], a=[list(x) for x in data["a"]])
            out.append({"ts": event["ts"], "kind": "ws", "frame": {"stream": event["frame"]["stream"], "data": merged}})
            pending[symbol] = (len(out) - 1, merged, 1)
        else:
            if event["kind"] == "rest":
                pending.pop(symbol_of(event), None)  # never merge across a snapshot
            out.append(event)
    return out


@needs_captures
@pytest.mark.parametrize("size", [2, 3, 7])
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_reaggregated_gives_the_same_books(name: str, size: int) -> None:
    """Recorded frames re-fed merged into aggregated frames (snapshots may now
    fall inside one): same final books, fewer frames, never a gap."""
    events = list(read_capture(real(name)))
    merged_events = aggregate(events, size)
    assert len(merged_events) < len(events)
    whole = replay_capture(events).to_json()["symbols"]
    merged, _ = drive(merged_events)
    assert replay_capture(merged_events).to_json()["symbols"] == documents(merged)
    for symbol, document in documents(merged).items():
        assert document["status"] == "synced" and document["gaps"] == 0 and document["resyncs"] == 0
        assert {k: document[k] for k in ("last_update_id", "bids", "asks")} == {
            k: whole[symbol][k] for k in ("last_update_id", "bids", "asks")
        }


@needs_captures
def test_real_capture_at_an_update_id() -> None:
    events = list(read_capture(real(BINANCE)))
    nkn = [parse_message(e["frame"]) for e in events if e["kind"] == "ws" and symbol_of(e) == "NKN_USDT"]
    ids = [ev.last_id for ev in nkn if isinstance(ev, DepthEvent)]
    at = ids[len(ids) // 2]
    stopped = replay_capture(events, at=at).machines["NKN_USDT"]
    assert stopped.book.last_update_id == at
    # the same as feeding only the events up to that frame
    machine = SymbolSync("NKN_USDT")
    machine.start()
    for event in events:
        if symbol_of(event) != "NKN_USDT":
            continue
        if event["kind"] == "rest":
            machine.receive_snapshot(parse_snapshot(event["body"]), limit=1000)
        else:
            parsed = parse_message(event["frame"])
            if isinstance(parsed, DepthEvent):
                if parsed.last_id > at:
                    break
                machine.receive_frame(parsed)
    assert (machine.book.bids(), machine.book.asks()) == (stopped.book.bids(), stopped.book.asks())
    final = replay_capture(events, at=499870179).to_json()
    assert final == replay_capture(events).to_json()
