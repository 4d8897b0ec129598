"""Record a live session from the simulated venue, replay the file: same books.

The replicator runs against the venue on loopback with a ``Recording``
attached, under faults that make it resync (lost, duplicated, malformed and
aggregated frames, lagging and failing snapshots, dropped connections).  Then the faults stop, the
venue pauses, the replica catches up with the truth and the recording ends.
Replaying the file through ``replay_capture`` must give, for every symbol,
the live replica's levels, update id, status and sync counters.
"""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from loopback import Proxy, mismatches, wait_caught_up

from orderbook import __version__
from orderbook.record.format import CaptureHeader
from orderbook.record.reader import read_capture, read_events, read_header
from orderbook.record.replay import replay_capture
from orderbook.record.result import engine_state
from orderbook.record.session import session_engine
from orderbook.sync.engine import EngineOptions
from orderbook.errors import UnknownSymbol, UsageError
from orderbook.record.recorder import Recording
from orderbook.testing.venue import DEFAULT_SYMBOLS, Faults, OrderFlow, SimulatedVenue

SYMBOLS = list(DEFAULT_SYMBOLS)  # dotted symbols among them

CASES: dict[str, dict[str, Any]] = {
    "drops": {"drop_rate": 0.03},
    "reconnects (+drops)": {"drop_rate": 0.01, "disconnects": 3},
    # Only malformed frames (and the gaps they leave) make this case resync: ~250
    # aggregated frames go out while faulty, so at 5 % P(none) = 0.95**250 ~ 3e-6
    # (at 1 % it was ~8 %: 1 run in 12 had no resync).
    "aggregated, lagging, duplicated, malformed, 5xx": {
        "aggregate": True, "snapshot_lag": 5, "duplicate_rate": 0.02, "malformed_rate": 0.05,
        "rest_5xx_rate": 0.2, "string_times": True, "zero_spelling": True,
    },
    "snapshots bids ascending (docs order), drops": {"snapshot_order": "docs", "drop_rate": 0.03},
    "snapshots shuffled, drops": {"snapshot_order": "shuffled", "drop_rate": 0.03},
}


def record_session(path: Path, faults: dict[str, Any], seconds: float = 2.0, quiet: float = 0.0,
                   **options: Any) -> Recording:
    """Record ``seconds`` of faulty flow then a clean catch-up, and ``quiet``
    seconds of the paused venue after it; return the ended recording.

    ``faults["disconnects"]`` (popped) is a number of abrupt disconnects spread
    over the faulty period; ``options`` go to the :class:`Recording`."""
    faults = dict(faults)
    disconnects = faults.pop("disconnects", 0)

    async def main() -> Recording:
        flow = OrderFlow(SYMBOLS, seed=5)
        async with SimulatedVenue(flow, faults=Faults(**faults), rate=400.0, seed=9) as venue:
            await asyncio.sleep(0.2)  # some history, for lagging snapshots
            recording = Recording(path, SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  flush_interval=0.5, **options)
            async with recording:
                for round_ in range(disconnects):
                    await recording.run(duration=seconds / (disconnects + 1))
                    while venue.stats.connections <= round_:  # reconnected (after a 0.1-0.2 s backoff)
                        await recording.run(duration=0.01)
                    await venue.disconnect_all(abrupt=True)
                await recording.run(duration=seconds / (disconnects + 1))
                for switch, off in vars(Faults()).items():
                    setattr(venue.faults, switch, off)
                await asyncio.sleep(0.3)
                await venue.pause()
                await wait_caught_up(recording.replicator, flow)
                assert mismatches(recording.replicator, flow) == []
                if quiet:
                    await recording.run(duration=quiet)
        return recording

    return asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("name", list(CASES))
def test_replay_of_a_recorded_session_gives_the_live_books(name: str, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl.gz"
    recording = record_session(path, CASES[name])
    recorder = recording.recorder
    assert recorder.error is None and recorder.messages > 0 and recorder.responses >= len(SYMBOLS)

    result = replay_capture(path)
    assert result.header is not None and result.header.format == 2  # recorded in version 2
    live, replayed = recording.final["symbols"], result.to_json()["symbols"]
    assert sorted(live) == sorted(replayed) == sorted(SYMBOLS)
    for symbol in SYMBOLS:
        assert live[symbol].pop("status") == replayed[symbol].pop("status") == "synced"
        assert live[symbol]["last_update_id"] is not None
    assert live == replayed  # levels, update ids and sync counters
    assert sum(book["resyncs"] for book in live.values()) > 0  # the faults made it resync
    assert recording.replicator.stats().connection.reconnects == CASES[name].get("disconnects", 0)
    assert replay_capture(path).to_json() == result.to_json()  # deterministic


def test_the_file_is_a_version_2_capture_of_frames_and_depth_responses(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl.gz"
    recording = record_session(path, {}, seconds=0.5)
    with gzip.open(path, "rt") as text:
        assert text.readline().startswith('{"kind":"header","format":2,')
    lines = list(read_capture(path))
    header, events = lines[0], lines[1:]
    assert header["recorder"] == f"orderbook {__version__}"
    assert header["rest_url"] == recording.replicator.rest_url
    assert header["ws_url"] == recording.replicator.ws_url
    assert header["streams"] == [f"depth.{s}" for s in recording.replicator.symbols]
    assert header["options"]["symbols"] == SYMBOLS and header["options"]["snapshot_limit"] == 1000
    assert header["options"]["seed"] == recording.replicator.options.seed  # the retry jitter's
    assert type(header["ts"]) is int and header["ts"] <= events[0]["ts"]
    kinds = {event["kind"] for event in events}  # no disconnect: the recorder stopped first
    assert {"connect", "subscribed", "ws", "rest"} <= kinds <= {"connect", "subscribed", "ws", "rest",
                                                               "tick"}
    counted = [e for e in events if e["kind"] in ("ws", "rest")]
    assert len(counted) == recording.recorder.messages + recording.recorder.responses
    rest = [e for e in events if e["kind"] == "rest"]
    assert {e["query"]["symbol"] for e in rest} == set(SYMBOLS)
    assert all(e["path"] == "/api/v1/depth" and e["query"]["limit"] == "1000" for e in rest)
    assert all(isinstance(e["body"]["bids"], list) for e in rest if e["status"] == 200)
    assert all(orjson.loads(e["raw_body"]) == e["body"] for e in rest)
    times = [e["ts"] for e in events]
    assert times == sorted(times)
    assert all(type(e["raw"]) is str and "frame" not in e for e in events if e["kind"] == "ws")
    assert all(type(e["ticket"]) is int and e["purpose"] == "sync" for e in rest)  # the engine's request
    typed = list(read_events(path))
    assert type(typed[0]) is CaptureHeader and typed[0].streams == tuple(header["streams"])


def test_frames_are_recorded_exactly_as_the_venue_sent_them(tmp_path: Path) -> None:
    """Byte for byte: every message the replicator received (seen on a proxy
    between it and the venue) is a ws event's raw, in order, and nothing else is."""
    path = tmp_path / "session.jsonl"
    sent: list[str] = []

    def keep(message: str) -> bool:
        sent.append(message)
        return True

    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=5)
        faults = Faults(string_times=True, zero_spelling=True, malformed_rate=0.05)
        async with SimulatedVenue(flow, faults=faults, rate=300.0, seed=9) as venue:
            async with Proxy(venue.ws_url, keep) as proxy:
                recording = Recording(path, SYMBOLS, rest_url=venue.rest_url, ws_url=proxy.url)
                async with recording:
                    await recording.run(duration=1.0)
                received = recording.recorder.messages

        assert received > 50
        raws = [e["raw"] for e in read_capture(path) if e.get("kind") == "ws"]
        assert raws == sent[:received]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_plain_jsonl_file_is_flushed_while_recording(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"

    async def main() -> None:
        async with SimulatedVenue(OrderFlow(SYMBOLS, seed=5), rate=200.0) as venue:
            recording = Recording(path, SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  flush_interval=0.1)
            async with recording:
                # Readable before the recording ends.  Poll rather than sleep: the
                # first frames may come late on a loaded machine, and between two
                # flushes the file may end in a partial line (a full I/O buffer is
                # written out as is), so wait for a flush to end it on an event.
                for _ in range(250):  # ~25 s: only bounds a hang
                    await recording.run(duration=0.1)
                    if path.read_bytes().endswith(b"\n"):
                        break
                assert path.stat().st_size > 0
                assert len(list(read_capture(path))) > 0

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_recording_that_cannot_start_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl.gz"

    async def main() -> None:
        async with SimulatedVenue(OrderFlow(SYMBOLS, seed=5), rate=50.0) as venue:
            recording = Recording(path, ["NOPE_USDC"], rest_url=venue.rest_url,
                                  ws_url=venue.ws_url)
            with pytest.raises(UnknownSymbol):
                async with recording:
                    pass

    asyncio.run(asyncio.wait_for(main(), 30))
    assert not path.exists()


def test_a_recording_supplies_its_own_tap(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="tap"):
        Recording(tmp_path / "x.jsonl", SYMBOLS, tap=None)


CHECKED = EngineOptions(book_ticker=True, audit_every=0.1, audit_timeout=1.0, prune_every=0.2,
                        stale_after=0.3)
"""Every check the engine has, often: bookTicker cross-checks, audits every
100 ms, prunes every 200 ms and stale flags after 300 ms of silence (the
paused venue at the end raises them)."""


def test_a_session_with_audits_ticker_checks_and_pruning_replays_to_the_live_engine(
        tmp_path: Path) -> None:
    """The acceptance of one engine for live and replay: a session recorded
    with every check on, under drops, a dropped connection and failing
    snapshots, replays to the live engine's books, statuses, reasons and
    every counter (the engine's and each symbol's)."""
    path = tmp_path / "checked.jsonl.gz"
    faults = {"drop_rate": 0.02, "disconnects": 1, "rest_5xx_rate": 0.3}
    recording = record_session(path, faults, seconds=2.0, quiet=0.8, sync=CHECKED)
    live = recording.final_engine
    assert recording.final_engine and recording.recorder.error is None

    result = replay_capture(path)
    assert result.exact and result.bad_events == 0  # a session replay, every event usable
    assert engine_state(result.engine) == live

    counters, symbols = live["engine"], live["symbols"]
    assert list(symbols) == SYMBOLS
    assert counters["connects"] == 2 and counters["disconnects"] == 1
    assert counters["audits_started"] > 0 and counters["audits_passed"] > 0
    assert counters["prunes"] > 0
    assert sum(s["ticker_checks"] for s in symbols.values()) > 0
    assert sum(s["resyncs"] for s in symbols.values()) > 0
    assert sum(s["staleness_alerts"] for s in symbols.values()) > 0
    assert all(s["status"] == "synced" for s in symbols.values())
    kinds = {e.get("kind") for e in read_capture(path)}
    assert {"connect", "subscribed", "ws", "rest", "disconnect", "tick"} <= kinds

    # replaying only some symbols cannot be exact (the live engine had all):
    # the file is followed instead, and still gives that symbol's book
    one = replay_capture(path, symbols=[SYMBOLS[0]])
    assert not one.exact
    followed = one.to_json()["symbols"][SYMBOLS[0]]
    assert followed["bids"] == symbols[SYMBOLS[0]]["bids"]
    assert followed["asks"] == symbols[SYMBOLS[0]]["asks"]


def test_the_header_names_the_engine_a_session_replay_rebuilds(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    recording = record_session(path, {}, seconds=0.3, sync=CHECKED)
    header = read_header(path)
    assert header is not None
    symbols, options = session_engine(header)  # type: ignore[misc]
    assert symbols == recording.replicator.symbols
    assert options == recording.replicator.options  # the seed and the nested policies too
    assert header.options["snapshot_retry"]["backoff"]["initial"] == \
        CHECKED.snapshot_retry.backoff.initial  # as JSON, not as repr
