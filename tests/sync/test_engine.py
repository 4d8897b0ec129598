"""The multi-symbol Engine, driven by hand with explicit times: no sockets, no sleeping.

Covers what the old replicator did with timers and epoch guards: retry
scheduling after stale and failed snapshots, giving up and coming back,
Retry-After, late answers from an old connection; plus routing, batching,
the bookTicker cross-check, audits, staleness and pruning.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from orderbook import Status
from orderbook.errors import UsageError, VenueUnavailable
from orderbook.sync.engine import (
    BookUpdated,
    Engine,
    EngineOptions,
    FetchSnapshot,
    Purpose,
    StatusChanged,
    Subscribe,
)
from orderbook.sync.policy import Backoff, SnapshotRetryPolicy
from orderbook.sync.status import Reason
from orderbook.sync.symbol import BookInvalidated
from orderbook.testing.venue import OrderFlow
from orderbook.testing.venue.flow import Update, format_decimal

SYMBOLS = ["SOL_USDC", "BTC_USDC", "SPCX.US_USDC"]
S = 1_000_000  # one second in µs

NO_JITTER = SnapshotRetryPolicy(backoff=Backoff(initial=0.5, maximum=4.0, jitter=0.0),
                                max_streak=4, min_new_frames=2, max_frame_wait=3.0,
                                error_interval=30.0)


def frame(update: Update, first: int | None = None) -> str:
    bids = [[format_decimal(c.price), format_decimal(c.quantity)] for c in update.changes if c.side == "bid"]
    asks = [[format_decimal(c.price), format_decimal(c.quantity)] for c in update.changes if c.side == "ask"]
    data = {"e": "depth", "E": update.timestamp, "s": update.symbol, "a": asks, "b": bids,
            "U": update.first_id if first is None else first, "u": update.last_id,
            "T": update.timestamp}
    return orjson.dumps({"stream": f"depth.{update.symbol}", "data": data}).decode()


def fetches(actions: list[Any]) -> list[FetchSnapshot]:
    return [a for a in actions if isinstance(a, FetchSnapshot)]


def statuses(actions: list[Any]) -> list[tuple[str, Status, Reason | None]]:
    return [(a.symbol, a.status, a.reason) for a in actions if isinstance(a, StatusChanged)]


class Harness:
    """An engine, a flow, and the outstanding fetches, moved on by hand."""

    def __init__(self, options: EngineOptions = EngineOptions(seed=1), symbols: list[str] = SYMBOLS) -> None:
        self.flow = OrderFlow(symbols, seed=7)
        self.engine = Engine(symbols, options)
        self.now = 1_700_000_000 * S
        self.pending: dict[str, FetchSnapshot] = {}
        self.actions: list[Any] = []

    def record(self, actions: list[Any]) -> list[Any]:
        self.actions += actions
        for fetch in fetches(actions):
            if fetch.purpose is Purpose.SYNC:
                self.pending[fetch.symbol] = fetch
        return actions

    def connect(self) -> list[Any]:
        subscribe = self.engine.connected(self.now)
        assert subscribe == [Subscribe(tuple(self.engine.streams))]
        return self.record(self.engine.subscribed(self.engine.streams, self.now))

    def step(self, count: int = 1, *, batch: bool = False) -> list[Any]:
        frames = [frame(self.flow.next_update()) for _ in range(count)]
        self.now += 1000
        if batch:
            return self.record(self.engine.receive(frames, self.now))
        out: list[Any] = []
        for raw in frames:
            out += self.record(self.engine.receive(raw, self.now))
        return out

    def answer(self, symbol: str, *, lag: int = 0) -> list[Any]:
        fetch = self.pending.pop(symbol)
        body = orjson.dumps(self.flow.snapshot(symbol, limit=fetch.limit, lag=lag))
        self.now += 1000
        return self.record(self.engine.snapshot(fetch.ticket, body, self.now))

    def fail(self, symbol: str, retry_after: float | None = None) -> list[Any]:
        fetch = self.pending.pop(symbol)
        self.now += 1000
        return self.record(self.engine.snapshot_failed(
            fetch.ticket, self.now, VenueUnavailable("503 from the venue"), retry_after))

    def tick(self, at: int) -> list[Any]:
        self.now = at
        return self.record(self.engine.tick(at))

    def exact(self, symbol: str) -> bool:
        book, truth = self.engine.book(symbol), self.flow.truth(symbol)
        return (book.last_update_id == truth.last_update_id and book.bids() == truth.bids()
                and book.asks() == truth.asks())


def synced_harness(options: EngineOptions = EngineOptions(seed=1)) -> Harness:
    h = Harness(options)
    h.connect()
    h.step(30)
    for symbol in SYMBOLS:
        h.answer(symbol)
    h.step(30)
    assert all(h.engine.status(s) is Status.SYNCED for s in SYMBOLS)
    return h


def test_syncs_every_symbol_and_stays_exact() -> None:
    h = Harness()
    actions = h.connect()
    assert sorted(f.symbol for f in fetches(actions)) == sorted(SYMBOLS)
    assert all(f.purpose is Purpose.SYNC and f.limit == 1000 for f in fetches(actions))
    h.step(50)
    for symbol in SYMBOLS:
        out = h.answer(symbol, lag=3)  # frames buffered since then bridge it
        assert (symbol, Status.SYNCED, None) in statuses(out)
    h.step(500)
    assert all(h.exact(s) for s in SYMBOLS)
    assert h.engine.counters.frames == 550


def test_a_batch_gives_one_update_per_symbol_with_its_frames_in_order() -> None:
    h = synced_harness()
    out = h.step(40, batch=True)
    updates = [a for a in out if isinstance(a, BookUpdated)]
    assert len(updates) == len({u.symbol for u in updates}) == len(SYMBOLS)
    for update in updates:
        ids = [f.last_id for f in update.frames or []]
        assert ids == sorted(ids) and ids[-1] == h.engine.book(update.symbol).last_update_id
    assert sum(len(u.frames or []) for u in updates) == 40
    assert all(h.exact(s) for s in SYMBOLS)


def test_a_stale_snapshot_is_retried_after_the_backoff_and_new_frames() -> None:
    h = Harness(EngineOptions(seed=1, snapshot_retry=NO_JITTER), symbols=["SOL_USDC"])
    for _ in range(10):
        h.flow.next_update()  # history the replica never sees
    h.connect()
    h.step(5)
    # a snapshot older than the first buffered frame: stale, no immediate refetch
    fetch = h.pending.pop("SOL_USDC")
    old = orjson.dumps(h.flow.snapshot("SOL_USDC", lag=5 + 3))
    out = h.record(h.engine.snapshot(fetch.ticket, old, h.now))
    assert fetches(out) == [] and h.engine.track("SOL_USDC").sync.stale_streak == 1
    refused_at = h.now
    assert h.engine.deadline() == refused_at + int(0.5 * S)  # the backoff's end
    assert fetches(h.tick(refused_at + int(0.5 * S) - 1)) == []
    # the backoff is over, but the venue has not moved on: wait for 2 new frames
    assert fetches(h.tick(refused_at + int(0.5 * S))) == []
    h.step(1)
    assert "SOL_USDC" not in h.pending
    out = h.step(1)
    assert [f.symbol for f in fetches(out)] == ["SOL_USDC"]
    h.answer("SOL_USDC", lag=1)
    assert h.engine.status("SOL_USDC") is Status.SYNCED and h.exact("SOL_USDC")


def test_new_frames_during_the_backoff_release_the_retry_when_it_ends() -> None:
    h = Harness(EngineOptions(seed=1, snapshot_retry=NO_JITTER), symbols=["SOL_USDC"])
    for _ in range(10):
        h.flow.next_update()
    h.connect()
    h.step(5)
    fetch = h.pending.pop("SOL_USDC")
    h.engine.snapshot(fetch.ticket, orjson.dumps(h.flow.snapshot("SOL_USDC", lag=8)), h.now)
    refused_at = h.now
    h.step(3)  # enough new frames, but the backoff is not over
    assert "SOL_USDC" not in h.pending
    assert [f.symbol for f in fetches(h.tick(refused_at + int(0.5 * S)))] == ["SOL_USDC"]


def test_a_quiet_market_gets_its_retry_after_max_frame_wait() -> None:
    h = Harness(EngineOptions(seed=1, snapshot_retry=NO_JITTER), symbols=["SOL_USDC"])
    for _ in range(10):
        h.flow.next_update()  # history the replica never sees
    h.connect()
    h.step(5)
    fetch = h.pending.pop("SOL_USDC")
    h.engine.snapshot(fetch.ticket, orjson.dumps(h.flow.snapshot("SOL_USDC", lag=8)), h.now)
    start = h.now
    assert fetches(h.tick(start + int(0.5 * S))) == []
    for second in (1, 2, 3):  # housekeeping ticks: still waiting for frames
        assert fetches(h.tick(start + second * S)) == []
    assert fetches(h.tick(start + int(3.5 * S) - 1)) == []  # backoff + max_frame_wait
    assert [f.symbol for f in fetches(h.tick(start + int(3.5 * S)))] == ["SOL_USDC"]


def test_failed_fetches_back_off_then_give_up_then_recover() -> None:
    h = Harness(EngineOptions(seed=1, snapshot_retry=NO_JITTER), symbols=["SOL_USDC"])
    h.connect()
    delays = []
    for attempt in range(3):
        before = h.now
        assert fetches(h.fail("SOL_USDC")) == []
        retry = h.engine.track("SOL_USDC").retry
        assert retry is not None
        due = retry.not_before
        delays.append((due - before - 1000) / S)
        h.tick(due)
        assert "SOL_USDC" in h.pending
    assert delays == [0.5, 1.0, 2.0]  # exponential, no jitter, no frames needed
    out = h.fail("SOL_USDC")  # the 4th in a row: give up for error_interval
    assert statuses(out) == [("SOL_USDC", Status.ERROR, Reason.GAVE_UP)]
    retry = h.engine.track("SOL_USDC").retry
    assert retry is not None and retry.not_before == h.now + 30 * S
    assert fetches(h.tick(h.now + 30 * S - 1)) == []
    h.tick(h.now + 1)
    h.step(3)
    out = h.answer("SOL_USDC")
    assert statuses(out) == [("SOL_USDC", Status.SYNCED, None)]


def test_retry_after_is_respected() -> None:
    h = Harness(EngineOptions(seed=1, snapshot_retry=NO_JITTER), symbols=["SOL_USDC"])
    h.connect()
    h.fail("SOL_USDC", retry_after=7.0)
    retry = h.engine.track("SOL_USDC").retry
    assert retry is not None and retry.not_before == h.now + 7 * S
    assert fetches(h.tick(h.now + 7 * S - 1)) == []
    assert fetches(h.tick(h.now + 1))


def test_an_answer_from_an_old_connection_is_never_applied() -> None:
    h = synced_harness()
    bad = '{"stream":"depth.SOL_USDC","data":{"e":"depth","s":"SOL_USDC","U":"x"}}'
    h.record(h.engine.receive(bad, h.now))  # SOL_USDC now has a fetch outstanding
    old = h.pending.pop("SOL_USDC")
    h.engine.disconnected(h.now, "reset")
    assert all(h.engine.status(s) is Status.RESYNCING for s in SYMBOLS)
    assert fetches(h.engine.tick(h.now + 10 * S)) == []  # not subscribed: nothing to fetch
    h.now += 10 * S
    out = h.connect()
    assert sorted(f.symbol for f in fetches(out)) == sorted(SYMBOLS)
    assert old.ticket not in {f.ticket for f in fetches(out)}
    body = orjson.dumps(h.flow.snapshot("SOL_USDC"))
    assert h.engine.snapshot(old.ticket, body, h.now) == []
    assert h.engine.counters.late_snapshots == 1
    assert h.engine.status("SOL_USDC") is Status.RESYNCING
    h.step(10)
    for symbol in SYMBOLS:
        h.answer(symbol)
    assert all(h.exact(s) for s in SYMBOLS)
    assert h.engine.latency.reconnect_to_synced.total == len(SYMBOLS) - 1
    assert h.engine.latency.gap_to_synced.total == 1  # SOL_USDC: from its bad frame on


def test_a_ticker_that_disagrees_at_the_books_id_resyncs_it() -> None:
    h = synced_harness(EngineOptions(seed=1, book_ticker=True))
    assert "bookTicker.SOL_USDC" in h.engine.streams
    book = h.engine.book("SOL_USDC")
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is not None and ask is not None

    def ticker(bid_qty: str) -> str:
        data = {"e": "bookTicker", "E": 1, "s": "SOL_USDC", "a": str(ask[0]), "A": str(ask[1]),
                "b": str(bid[0]), "B": bid_qty, "u": str(book.last_update_id), "T": 1}
        return orjson.dumps({"stream": "bookTicker.SOL_USDC", "data": data}).decode()

    assert h.engine.receive(ticker(str(bid[1])), h.now) == []  # agrees
    out = h.record(h.engine.receive(ticker(str(bid[1] + 1)), h.now))
    invalidated = [a for a in out if isinstance(a, BookInvalidated)]
    assert [a.reason for a in invalidated] == [Reason.TICKER_MISMATCH]
    assert statuses(out) == [("SOL_USDC", Status.RESYNCING, Reason.TICKER_MISMATCH)]
    assert [f.symbol for f in fetches(out)] == ["SOL_USDC"]
    assert h.engine.track("SOL_USDC").ticker_mismatches == 1


def test_audits_pass_on_an_exact_book_and_repair_a_divergent_one() -> None:
    h = synced_harness(EngineOptions(seed=1, audit_every=10.0))
    start = h.now
    out = h.tick(start + 10 * S)
    audit = fetches(out)
    assert len(audit) == 1 and audit[0].purpose is Purpose.AUDIT
    symbol = audit[0].symbol
    h.step(3)
    body = orjson.dumps(h.flow.snapshot(symbol))
    h.engine.snapshot(audit[0].ticket, body, h.now)
    assert h.engine.counters.audits_passed == 1
    # the next audit, on the next symbol, answered with a doctored snapshot
    audit = fetches(h.tick(h.now + 10 * S))
    other = audit[0].symbol
    assert other != symbol
    snap = h.flow.snapshot(other)
    snap["bids"][0][1] = format_decimal(__import__("decimal").Decimal(snap["bids"][0][1]) + 1)
    out = h.record(h.engine.snapshot(audit[0].ticket, orjson.dumps(snap), h.now))
    assert [a.reason for a in out if isinstance(a, BookInvalidated)] == [Reason.AUDIT_DIVERGENCE]
    assert h.engine.counters.audit_divergences == 1
    h.step(5)
    h.answer(other)
    assert h.exact(other)


def test_an_audit_that_cannot_align_is_skipped_after_its_timeout() -> None:
    h = synced_harness(EngineOptions(seed=1, audit_every=10.0, audit_timeout=2.0))
    audit = fetches(h.tick(h.now + 10 * S))[0]
    # a snapshot from the future: the replica is behind it until frames arrive
    future = h.flow.snapshot(audit.symbol)
    future["lastUpdateId"] = str(int(future["lastUpdateId"]) + 10_000)
    h.engine.snapshot(audit.ticket, orjson.dumps(future), h.now)
    assert h.engine.track(audit.symbol).audit_deadline == h.now + 2 * S
    h.tick(h.now + 2 * S)
    assert h.engine.counters.audits_skipped == 1 and h.engine.track(audit.symbol).audit is None


def test_a_refused_subscription_reports_an_error_until_subscribed_again() -> None:
    h = synced_harness()
    reply = orjson.dumps({"id": 1, "error": {"code": 4005, "message": "Invalid stream"},
                          "stream": "depth.BTC_USDC"})
    out = h.engine.receive(reply, h.now)
    assert statuses(out) == [("BTC_USDC", Status.ERROR, Reason.SUBSCRIPTION_REFUSED)]
    assert h.engine.counters.stream_errors == 1


def test_a_silent_feed_is_flagged_stale_and_cleared_by_a_frame() -> None:
    h = synced_harness(EngineOptions(seed=1, stale_after=2.0))
    h.tick(h.now + 3 * S)
    assert all(h.engine.track(s).stale for s in SYMBOLS)
    h.step(30)
    assert not any(h.engine.track(s).stale for s in SYMBOLS)
    assert all(h.engine.track(s).staleness_alerts == 1 for s in SYMBOLS)


def test_bad_frames_are_attributed_to_their_symbol() -> None:
    h = synced_harness()
    bad = '{"stream":"depth.SOL_USDC","data":{"e":"depth","s":"SOL_USDC","U":"x"}}'
    out = h.record(h.engine.receive([bad, "not json"], h.now))
    assert [a.reason for a in out if isinstance(a, BookInvalidated)] == [Reason.MALFORMED_FRAME]
    assert h.engine.counters.unattributed_bad_frames == 1
    assert h.engine.status("SOL_USDC") is Status.RESYNCING
    h.step(5)
    h.answer("SOL_USDC")
    assert h.exact("SOL_USDC")


def test_same_inputs_same_actions() -> None:
    def run() -> list[Any]:
        h = Harness(EngineOptions(seed=5, snapshot_retry=SnapshotRetryPolicy()))
        h.connect()
        h.step(60)
        h.fail("SOL_USDC")
        h.answer("BTC_USDC", lag=12)  # stale
        h.tick(h.now + 10 * S)
        h.step(20)
        return [(a.symbol, [f.last_id for f in a.frames or []]) if isinstance(a, BookUpdated)
                else repr(a) for a in h.actions]  # frame times come from the wall clock

    assert run() == run()


def test_options_are_checked() -> None:
    with pytest.raises(UsageError, match="depth_stream"):
        EngineOptions(depth_stream="depth.5ms")
    with pytest.raises(UsageError, match="snapshot_limit"):
        EngineOptions(snapshot_limit=7)
    with pytest.raises(UsageError, match="audit_every"):
        EngineOptions(audit_every=0)
    with pytest.raises(UsageError, match="at least one symbol"):
        Engine([])


def test_the_frame_hook_sees_every_frame_of_a_batch_with_the_book_after_it() -> None:
    """``receive(frames, now, each)``: called after each frame of a replicated
    symbol (depth, or bad and naming it), in order, with its position; the
    book it sees is the book after exactly that frame."""
    h = synced_harness()
    twin = synced_harness()  # the same inputs, fed frame by frame
    frames = [frame(h.flow.next_update()) for _ in range(40)]
    for raw in frames:
        twin.flow.next_update()
    bad = '{"stream":"depth.SOL_USDC","data":{"e":"depth","s":"SOL_USDC","U":"x"}}'
    frames.insert(17, bad)
    frames.insert(3, "not json")  # names no symbol: not shown
    seen: list[tuple[int, str, int | None]] = []
    h.engine.receive(frames, h.now, lambda track, position: seen.append(
        (position, track.name, track.sync.book.last_update_id)))
    expected = []
    for position, raw in enumerate(frames):
        if raw == "not json":
            continue
        twin.engine.receive(raw, h.now)
        name = orjson.loads(raw)["stream"].split(".", 1)[1]
        expected.append((position, name, twin.engine.book(name).last_update_id))
    assert seen == expected and len(seen) == 41
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
