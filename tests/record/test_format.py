"""orderbook.record.format, .reader and .upgrade: the capture format, versions 1 and 2.

Reading and writing round trips, typed events of both versions, unusable
fields as BadEvent (never an exception), corrupt lines named by number, the
C reader of our own v2 lines against orjson, and ``upgrade_capture`` (v1 ->
v2 gives identical books, on the fixture and the real captures).
"""

from __future__ import annotations

import base64
import gzip
import string
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orderbook.record.reader as reader_module
from orderbook import MalformedMessage, UsageError, __version__
from orderbook._native import speedups
from orderbook.record.format import (
    FORMAT_VERSION,
    BadEvent,
    CaptureHeader,
    CaptureWriter,
    ConnectEvent,
    DisconnectEvent,
    FailedEvent,
    RestErrorEvent,
    RestEvent,
    SubscribedEvent,
    TickEvent,
    WsEvent,
    event_from_json,
)
from orderbook.sync.actions import Purpose
from orderbook.record.reader import CaptureReader, read_capture, read_events, read_header
from orderbook.record.upgrade import upgrade_capture
from orderbook.record.replay import replay_capture
from paths import CAPTURES, FIXTURES

FIXTURE = FIXTURES / "small-capture.jsonl"
REAL = sorted(CAPTURES.glob("*.jsonl"))
needs_captures = pytest.mark.skipif(not REAL, reason=f"no real captures in {CAPTURES}")
needs_native = pytest.mark.skipif(speedups is None, reason="the C module is not in use")
HEADER = CaptureHeader(rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9",
                       streams=("depth.SOL_USDC",), options={"snapshot_limit": 5}, ts=1)


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Each item a JSON object (dumped) or raw bytes (written as is)."""
    data = b"".join(item if isinstance(item, bytes) else orjson.dumps(item) + b"\n" for item in lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# ------------------------------------------------------------ write / read
@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz"])
def test_version_2_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    frames: list[str | bytes] = ['{"stream":"depth.SOL_USDC","data":{}}', "not json at all",
                                 '{"a":"\\u00e9\\n\\t\\"q\\""}', "caf\u00e9 \u2603", b'{"b":1}',
                                 b"\xff\xfe binary, not UTF-8"]
    with CaptureWriter(path, HEADER) as writer:
        for number, raw in enumerate(frames):
            writer.write_ws(100 + number, raw)
        writer.write_rest(200, "SOL_USDC", 5, 200, b'{"lastUpdateId":1, "bids":[],"asks":[]}')
        writer.write_rest(201, "SOL_USDC", None, 503, b"<html>busy</html>")
        writer.write_disconnect(300, "peer went away")
        assert writer.events == len(frames) + 3
    events = list(read_events(path))
    assert events[0] == HEADER
    texts = [raw.decode() if isinstance(raw, bytes) and raw[:1] != b"\xff" else raw for raw in frames]
    assert [e.raw for e in events if type(e) is WsEvent] == texts  # text as given, bytes exactly
    assert [e.ts for e in events if type(e) is WsEvent] == list(range(100, 106))
    rest = [e for e in events if type(e) is RestEvent]
    assert [r.body for r in rest] == ['{"lastUpdateId":1, "bids":[],"asks":[]}', "<html>busy</html>"]
    assert [(r.method, r.path, r.query, r.status) for r in rest] == [
        ("GET", "/api/v1/depth", {"symbol": "SOL_USDC", "limit": "5"}, 200),
        ("GET", "/api/v1/depth", {"symbol": "SOL_USDC"}, 503)]
    assert events[-1] == DisconnectEvent(300, "peer went away")
    lines = list(read_capture(path))
    assert lines[0]["kind"] == "header" and lines[0]["format"] == FORMAT_VERSION
    assert lines[0]["recorder"] == f"orderbook {__version__}"
    binary = next(e for e in lines if "raw_base64" in e)
    assert base64.b64decode(binary["raw_base64"]) == frames[-1] and "\ufffd" in binary["raw"]
    assert lines[-3]["body"] == {"lastUpdateId": 1, "bids": [], "asks": []}  # parsed, for other readers
    assert read_header(path) == HEADER


def test_the_header_is_written_when_the_first_event_is(tmp_path: Path) -> None:
    made: list[int] = []

    def header() -> CaptureHeader:
        made.append(1)
        return HEADER

    path = tmp_path / "lazy.jsonl"
    writer = CaptureWriter(path, header)
    assert path.read_text() == "" and not made
    writer.write_ws(5, "{}")
    writer.write_ws(6, "{}")
    writer.close()
    assert made == [1] and list(read_events(path))[0] == HEADER
    empty = tmp_path / "empty.jsonl"
    CaptureWriter(empty, header).close()  # no event: the header alone, at close
    assert [type(e) for e in read_events(empty)] == [CaptureHeader]
    with pytest.raises(UsageError, match="writes format 2"):
        CaptureWriter(tmp_path / "x.jsonl", CaptureHeader(format=3))


def test_version_1_reads_as_typed_events() -> None:
    events = list(read_events(FIXTURE))
    assert len(events) == 10 and read_header(FIXTURE) is None
    lines = list(read_capture(FIXTURE))
    for event, line in zip(events, lines):
        if line["kind"] == "ws":
            assert type(event) is WsEvent and event.ts == line["ts"]
            assert event.raw == orjson.dumps(line["frame"]).decode()  # the frame re-encoded
        else:
            assert event == RestEvent(line["ts"], "GET", "/api/v1/depth", line["query"], 200, line["body"])
    reader = CaptureReader(FIXTURE)
    list(reader)
    assert reader.version == 1 and reader.lines == 10 and reader.size == FIXTURE.stat().st_size


@pytest.mark.parametrize(("obj", "expected"), [
    ({"kind": "ws", "ts": 5, "frame": "text as received"}, WsEvent(5, "text as received")),
    ({"kind": "ws", "ts": 5, "frame": [1, 2]}, WsEvent(5, "[1,2]")),
    ({"kind": "ws", "ts": 5, "frame": None}, WsEvent(5, "null")),
    ({"kind": "ws", "ts": 5, "raw": "x", "frame": {"ignored": 1}}, WsEvent(5, "x")),  # raw wins
    ({"kind": "ws", "ts": 5, "raw": "x", "extra": [1]}, WsEvent(5, "x")),  # unknown fields ignored
    ({"kind": "rest", "ts": 5, "body": {"a": 1}, "raw_body": '{"a": 1}'},
     RestEvent(5, None, None, None, None, '{"a": 1}')),  # the exact text when there is one
    ({"kind": "disconnect", "ts": 5}, DisconnectEvent(5, "")),
    ({"kind": "rest", "ts": 5, "status": 200, "ticket": 3, "purpose": "audit"},
     RestEvent(5, None, None, None, 200, None, 3, Purpose.AUDIT)),
    ({"kind": "rest", "ts": 5, "ticket": "3", "purpose": "other"},
     RestEvent(5, None, None, None, None, None, None, None)),  # unusable extras: absent
    ({"kind": "connect", "ts": 5}, ConnectEvent(5)),
    ({"kind": "tick", "ts": 5}, TickEvent(5)),
    ({"kind": "subscribed", "ts": 5, "streams": ["depth.A.B_C"]}, SubscribedEvent(5, ("depth.A.B_C",))),
    ({"kind": "failed", "ts": 5, "detail": "gone"}, FailedEvent(5, "gone")),
    ({"kind": "rest_error", "ts": 5, "ticket": 2, "error": "503", "retry_after": 1.5,
      "query": {"symbol": "SOL_USDC"}, "purpose": "sync"},
     RestErrorEvent(5, "SOL_USDC", 2, "503", 1.5, Purpose.SYNC)),
    ({"kind": "quote", "ts": 5}, None),  # an unknown kind
    ({"ts": 5}, None),
])
def test_events_of_every_shape(obj: dict[str, Any], expected: Any) -> None:
    assert event_from_json(obj) == expected


@pytest.mark.parametrize(("obj", "detail"), [
    ({"kind": "ws", "raw": "x"}, "ts must be an integer"),
    ({"kind": "ws", "ts": "5", "raw": "x"}, "ts must be an integer"),
    ({"kind": "ws", "ts": 1.5, "raw": "x"}, "ts must be an integer"),
    ({"kind": "ws", "ts": True, "raw": "x"}, "ts must be an integer"),
    ({"kind": "ws", "ts": -1, "raw": "x"}, "ts must be an integer"),
    ({"kind": "ws", "ts": 2**63, "raw": "x"}, "ts must be an integer"),
    ({"kind": "rest", "ts": None}, "ts must be an integer"),
    ({"kind": "ws", "ts": 5, "raw": {"a": 1}}, "raw must be a string"),
    ({"kind": "ws", "ts": 5}, "needs raw"),
    ({"kind": "ws", "ts": 5, "raw_base64": "***"}, "not base64"),
    ({"kind": "tick"}, "ts must be an integer"),
    ({"kind": "subscribed", "ts": 5, "streams": "depth.X"}, "streams must be a list"),
    ({"kind": "subscribed", "ts": 5, "streams": [1]}, "streams must be a list"),
    ({"kind": "rest_error", "ts": 5, "ticket": None}, "ticket must be an integer"),
    ({"kind": "rest_error", "ts": 5, "ticket": 1, "retry_after": "soon"}, "retry_after must be"),
])
def test_unusable_fields_make_a_bad_event(obj: dict[str, Any], detail: str) -> None:
    event = event_from_json(obj, 7)
    assert type(event) is BadEvent and detail in event.detail and event.line == 7


def test_header_fields_of_the_wrong_type_read_as_empty() -> None:
    header = CaptureHeader.from_json({"kind": "header", "format": "2", "recorder": 5,
                                      "streams": ["depth.X", 7], "options": [], "ts": "now"})
    assert header == CaptureHeader(format=0, recorder=None, streams=("depth.X",), options={}, ts=None)


# ------------------------------------------------------------ corrupt files
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
@pytest.mark.parametrize(("bad", "message"), [
    (b'{"ts":3,"kind":"ws","raw":"unterminated\n', "invalid JSON"),
    (b"[1, 2]\n", "event is not a JSON object"),
    (b'{"ts":3,"kind":"ws","raw":"caf\xe9"}\n', "not UTF-8 text"),
])
def test_a_corrupt_line_is_reported_with_its_number(tmp_path: Path, suffix: str, bad: bytes,
                                                    message: str) -> None:
    path = write_lines(tmp_path / f"c{suffix}", [HEADER.to_json(), {"ts": 1, "kind": "ws", "raw": "{}"},
                                                 b"\n", bad, {"ts": 4, "kind": "ws", "raw": "{}"}])
    for read in (lambda: list(read_events(path)), lambda: list(read_capture(path)),
                 lambda: replay_capture(path)):
        with pytest.raises(MalformedMessage, match=f"c{suffix.replace('.', '[.]')}:4: {message}"):
            read()


def test_a_truncated_gzip_names_the_last_line_read(tmp_path: Path) -> None:
    lines = [HEADER.to_json()] + [{"ts": n, "kind": "ws", "raw": "{}" * 50} for n in range(2000)]
    whole = gzip.compress(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MalformedMessage, match=r"t\.jsonl\.gz: truncated or corrupt gzip data after line \d+"):
        list(read_events(path))


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        CaptureReader(tmp_path / "nope.jsonl")


# ------------------------------------------------- the C reader of v2 lines
ASCII_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=60)
ANY_TEXT = st.text(max_size=40)


@needs_native
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(ASCII_TEXT, ANY_TEXT), st.integers(0, 2**64), st.lists(
    st.tuples(st.integers(0, 10**4), st.sampled_from([b"", b'"', b"\\", b"\n", b" ", b"0", b"\x00",
                                                      b"\xc3", b"}", b"u", b"/", b","])), max_size=3))
def test_ws_line_agrees_with_orjson(text: str, ts: int, damage: list[tuple[int, bytes]]) -> None:
    """Whatever the line, the C reader either declines or reads exactly what
    orjson reads; it takes every line our writer makes of printable ASCII."""
    assert speedups is not None
    try:
        line = orjson.dumps({"ts": ts, "kind": "ws", "raw": text}) + b"\n"
    except orjson.JSONEncodeError:  # ts beyond 64 bits
        line = b'{"ts":' + str(ts).encode() + b',"kind":"ws","raw":"x"}\n'
    for at, piece in damage:
        at %= len(line) + 1
        line = line[:at] + piece + line[at + 1:]
    got = speedups.ws_line(line)
    try:
        decoded = orjson.loads(line)
    except orjson.JSONDecodeError:
        decoded = None
    if got is not None:
        assert decoded == {"ts": got[0], "kind": "ws", "raw": got[1]}, line
    elif not damage and ts < 2**63 and all(c in string.printable[:-5] for c in text):
        pytest.fail(f"declined a plain line: {line!r}")


@needs_native
@pytest.mark.parametrize("line", [
    b'{"ts":1,"kind":"ws","raw":"x"}\r\n', b'{"ts": 1,"kind":"ws","raw":"x"}', b'{"kind":"ws","ts":1,"raw":"x"}',
    b'{"ts":1,"kind":"ws","raw":"x","extra":1}', b'{"ts":01,"kind":"ws","raw":"x"}',
    b'{"ts":9223372036854775808,"kind":"ws","raw":"x"}', b'{"ts":1,"kind":"ws","raw":"\\u0041"}',
    b'{"ts":1,"kind":"ws","raw":"\\n"}', b'{"ts":1,"kind":"ws","raw":"x"}}',
    b'{"ts":1,"kind":"ws","raw":"x"}\n\n', "not bytes",
])
def test_ws_line_declines_anything_unusual(line: Any) -> None:
    assert speedups is not None
    assert speedups.ws_line(line) is None


@needs_captures
def test_the_reader_gives_the_same_events_with_and_without_the_c_line_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v2.jsonl"
    upgrade_capture(REAL[0], path)
    with_c = list(read_events(path))
    monkeypatch.setattr(reader_module, "_ws_line", None)
    assert list(read_events(path)) == with_c
    assert sum(type(e) is WsEvent for e in with_c) > 200


# ------------------------------------------------------------------ upgrade
def books(result: Any) -> dict[str, Any]:
    return result.to_json()["symbols"]


@pytest.mark.parametrize("name", ["v2.jsonl", "v2.jsonl.gz"])
def test_upgrade_of_the_fixture_gives_identical_books(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    result = upgrade_capture(FIXTURE, out)
    assert (result.version, result.events, result.frames) == (1, 10, 8)
    header = read_header(out)
    assert header is not None and header.format == 2
    assert header.recorder == f"orderbook {__version__} (upgraded from format 1)"
    assert header.streams == ("depth.SOL_USDC", "bookTicker.SOL_USDC", "depth.BTC_USDC")
    assert header.options == {"upgraded_from": FIXTURE.name} and header.ts == 1700000000000001
    old, new = list(read_capture(FIXTURE)), list(read_capture(out))[1:]
    for before, after in zip(old, new, strict=True):
        if before["kind"] == "ws":
            assert after == {"ts": before["ts"], "kind": "ws", "raw": orjson.dumps(before["frame"]).decode()}
        else:
            assert after == before
    assert books(replay_capture(out)) == books(replay_capture(FIXTURE))


@needs_captures
@pytest.mark.parametrize("source", REAL, ids=lambda p: p.name)
def test_upgrade_of_the_real_captures_gives_identical_books(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "v2.jsonl.gz"
    upgrade_capture(source, out)
    assert books(replay_capture(out)) == books(replay_capture(source))
    assert read_events(out).__next__() == read_header(out)
    again = tmp_path / "again.jsonl"
    assert upgrade_capture(out, again).version == 2  # a v2 file is copied
    assert list(read_capture(again)) == list(read_capture(out))


def test_upgrade_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    copy = tmp_path / "same.jsonl"
    copy.write_bytes(FIXTURE.read_bytes())
    with pytest.raises(UsageError, match="another file"):
        upgrade_capture(copy, copy)
    future = write_lines(tmp_path / "f.jsonl", [{"kind": "header", "format": 3}, {"ts": 1, "kind": "ws"}])
    with pytest.raises(UsageError, match="format 3"):
        upgrade_capture(future, tmp_path / "out.jsonl")
    corrupt = write_lines(tmp_path / "c.jsonl", [*list(read_capture(FIXTURE))[:3], b"{nope\n"])
    out = tmp_path / "partial.jsonl"
    with pytest.raises(MalformedMessage, match="c.jsonl:4: invalid JSON"):
        upgrade_capture(corrupt, out)
    assert not out.exists()
