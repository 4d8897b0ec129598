"""The publisher core: the published sequence is exact whatever the timing.

A simulated engine applies random (aggregated) frames to a real ``OrderBook``
and pushes ``BookUpdate`` values into a conflating queue (merged exactly as
``Replicator``'s conflating consumers document: levels merged, the first id
kept).  The core consumes that queue *late*, at random moments, so the live
book it reads for a snapshot is often past the update it is processing.  It
is squeezed by tiny queues (drops), connection losses that lose part of the
batch in flight, resyncs of the replica, and periodic snapshots.  A strict
reader applies what was taken: after every message its book must equal the
truth at that message's ``u``, every delta must continue with
``U == previous u + 1`` after the latest snapshot, and once everything is
delivered the reader holds the final book.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook.core.book import OrderBook
from orderbook.errors import UsageError
from orderbook.sync.updates import BookUpdate, UpdateKind
from orderbook.protocol.wire import DepthEvent, Snapshot
from orderbook.sinks.core import PublisherCore
from orderbook.sinks.messages import Message, MessageKind

SYMBOLS = ("AAA_USDC", "B.B_USDC")
Side = dict[Decimal, Decimal]


def _state(book: OrderBook) -> tuple[tuple[tuple[Decimal, Decimal], ...], ...]:
    return tuple(book.bids()), tuple(book.asks())


@dataclass
class Engine:
    """The replica side: live books, their history, and a conflating consumer queue."""

    books: dict[str, OrderBook] = field(default_factory=dict)
    synced: dict[str, bool] = field(default_factory=dict)
    history: dict[tuple[str, int], tuple[tuple[tuple[Decimal, Decimal], ...], ...]] = field(
        default_factory=dict)
    pending: dict[str, BookUpdate] = field(default_factory=dict)
    clock: int = 1_000_000

    def __post_init__(self) -> None:
        for index, symbol in enumerate(SYMBOLS):
            book = OrderBook(symbol)
            book.apply_snapshot(Snapshot(100 * (index + 1), 5, (("10", "1"),), (("40", "2"),)))
            self.books[symbol] = book
            self.synced[symbol] = True
            self.history[symbol, book.last_update_id] = _state(book)  # type: ignore[index]
            self.push(BookUpdate(symbol, UpdateKind.SNAPSHOT, None, book.last_update_id, None, None,
                                 5, None, 0))

    def live(self, symbol: str) -> OrderBook | None:
        return self.books[symbol] if self.synced[symbol] else None

    def push(self, update: BookUpdate) -> None:
        """Conflate as Replicator's 'conflate' consumers do (BookUpdate.fold)."""
        old = self.pending.get(update.symbol)
        if old is None:
            self.pending[update.symbol] = update
        else:
            old.fold(update)

    def frame(self, symbol: str, span: int, bids: Side, asks: Side) -> None:
        book = self.books[symbol]
        if not self.synced[symbol]:
            return
        first = book.last_update_id + 1  # type: ignore[operator]
        last = first + span - 1
        self.clock += 1
        event = DepthEvent(symbol, first, last, self.clock, self.clock,
                           [[str(p), str(q)] for p, q in bids.items()],
                           [[str(p), str(q)] for p, q in asks.items()])
        book.apply_delta(event)
        self.history[symbol, last] = _state(book)
        self.push(BookUpdate(symbol, UpdateKind.DELTA, first, last, None, None, self.clock, None,
                             self.clock, frames=[event]))

    def resync(self, symbol: str, jump: int) -> None:
        """The replica loses the book, then rebuilds it from a snapshot further on."""
        book = self.books[symbol]
        self.synced[symbol] = False
        self.push(BookUpdate(symbol, UpdateKind.INVALIDATED, None, None, None, None, None, None, 0,
                             reason="gap"))
        new_id = book.last_update_id + jump  # type: ignore[operator]
        bids = tuple((str(p), str(q)) for p, q in book.bids())
        asks = tuple((str(p), str(q)) for p, q in book.asks())
        book.apply_snapshot(Snapshot(new_id, self.clock, bids, asks))
        self.history[symbol, new_id] = _state(book)
        self.synced[symbol] = True
        self.push(BookUpdate(symbol, UpdateKind.SNAPSHOT, None, new_id, None, None, self.clock, None, 0))

    def deliver(self, count: int, core: PublisherCore) -> None:
        for _ in range(count):
            if not self.pending:
                return
            symbol = next(iter(self.pending))
            core.offer(self.pending.pop(symbol))


class StrictReader:
    """Applies published messages; every promise of the stream is asserted."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.books: dict[str, tuple[int, Side, Side] | None] = dict.fromkeys(SYMBOLS)
        self.after_loss: set[str] = set()

    def apply(self, message: Message) -> None:
        symbol = message.symbol
        held = self.books[symbol]
        if message.kind is MessageKind.SNAPSHOT:
            assert message.first_id == message.last_id
            bids = {Decimal(p): Decimal(q) for p, q in message.bids}
            asks = {Decimal(p): Decimal(q) for p, q in message.asks}
            self.after_loss.discard(symbol)
        else:
            if symbol in self.after_loss:
                return  # lost in flight before: the next message must be a snapshot (checked below)
            assert held is not None, f"{symbol}: a delta before any snapshot"
            assert message.first_id == held[0] + 1, (message.first_id, held[0])
            bids, asks = dict(held[1]), dict(held[2])
            for side, levels in ((bids, message.bids), (asks, message.asks)):
                for price, qty in levels:
                    if Decimal(qty):
                        side[Decimal(price)] = Decimal(qty)
                    else:
                        side.pop(Decimal(price), None)
        self.books[symbol] = (message.last_id, bids, asks)
        truth_bids, truth_asks = self.engine.history[symbol, message.last_id]
        assert sorted(bids.items(), reverse=True) == list(truth_bids), (symbol, message.last_id)
        assert sorted(asks.items()) == list(truth_asks), (symbol, message.last_id)

    def lost(self, messages: list[Message]) -> None:
        """These messages never reached the broker: the reader must resync on a snapshot."""
        self.after_loss.update(m.symbol for m in messages)


prices = st.sampled_from([Decimal(n) for n in range(1, 9)])
quantities = st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1), Decimal(2), Decimal("3.25")])
sides = st.dictionaries(prices, quantities, max_size=4)
action = st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(SYMBOLS), st.integers(1, 4), sides, sides),
    st.tuples(st.just("deliver"), st.integers(1, 3)),
    st.tuples(st.just("take"), st.integers(1, 6)),
    st.tuples(st.just("fail"), st.integers(1, 6), st.integers(0, 6)),
    st.tuples(st.just("resync"), st.sampled_from(SYMBOLS), st.integers(1, 30)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(action, max_size=120), max_queue=st.integers(2, 12),
       interval=st.one_of(st.none(), st.integers(1, 6)))
def test_the_published_stream_is_exact_after_every_message(actions: list[tuple], max_queue: int,
                                                         interval: int | None) -> None:
    engine = Engine()
    core = PublisherCore(engine.live, snapshot_interval=interval, max_queue=max_queue,
                         now_us=lambda: 7)
    reader = StrictReader(engine)
    core.owe(SYMBOLS)
    core.resume()
    for act in actions:
        kind = act[0]
        if kind == "frame":
            # asks sit above the bids: prices 1..8 are bids, 11..18 asks
            asks = {price + 10: qty for price, qty in act[4].items()}
            engine.frame(act[1], act[2], act[3], asks)
        elif kind == "deliver":
            engine.deliver(act[1], core)
        elif kind == "take":
            for message in core.take(act[1]):
                reader.apply(message)
        elif kind == "fail":
            batch = core.take(act[1])
            delivered = min(act[2], len(batch))
            for message in batch[:delivered]:
                reader.apply(message)
            reader.lost(batch[delivered:])
            core.pause()
            core.resume()
        else:
            engine.resync(act[1], act[2])
    # everything delivered: the reader holds the final book of every symbol
    engine.deliver(10_000, core)
    while batch := core.take(1000):
        for message in batch:
            reader.apply(message)
    assert core.owed() == []
    for symbol in SYMBOLS:
        held = reader.books[symbol]
        book = engine.books[symbol]
        assert held is not None and held[0] == book.last_update_id
        assert symbol not in reader.after_loss


def test_a_delta_straddling_the_snapshot_is_trimmed_and_an_older_one_skipped() -> None:
    """The consumer runs late: the snapshot is read at 103 while updates to 102 and 105 wait."""
    engine = Engine()
    core = PublisherCore(engine.live, snapshot_interval=None, max_queue=100, now_us=lambda: 7)
    engine.pending.clear()
    engine.frame("AAA_USDC", 2, {Decimal(1): Decimal(1)}, {})     # 101..102
    older = engine.pending.pop("AAA_USDC")
    engine.frame("AAA_USDC", 1, {Decimal(2): Decimal(1)}, {})     # 103
    straddling_first = engine.pending.pop("AAA_USDC")
    core.owe(["AAA_USDC"])
    core.resume()                                                 # snapshot at 103
    engine.frame("AAA_USDC", 2, {Decimal(2): Decimal(4)}, {})     # 104..105
    later = engine.pending.pop("AAA_USDC")
    straddling_first.fold(later)
    merged = straddling_first
    core.offer(older)
    core.offer(merged)
    snapshot, delta = core.take(10)
    assert (snapshot.kind, snapshot.last_id) == (MessageKind.SNAPSHOT, 103)
    assert (delta.kind, delta.first_id, delta.last_id) == (MessageKind.DELTA, 104, 105)
    assert delta.bids == (("2", "4"),)  # the level changed at 103, then at 105: its quantity at 105
    assert core.counters.skipped == 1 and core.counters.trimmed == 1


def test_deltas_waiting_for_the_writer_are_merged_into_one_message() -> None:
    engine = Engine()
    core = PublisherCore(engine.live, snapshot_interval=None, max_queue=100, now_us=lambda: 7)
    engine.pending.clear()
    core.owe(["AAA_USDC"])
    core.resume()
    for n in range(5):
        engine.frame("AAA_USDC", 2, {Decimal(1 + n % 2): Decimal(n + 1)}, {Decimal(12): Decimal(n)})
        engine.deliver(1, core)
    snapshot, delta = core.take(10)
    assert (snapshot.last_id, delta.first_id, delta.last_id) == (100, 101, 110)
    assert delta.bids == (("1", "5"), ("2", "4")) and delta.asks == (("12", "4"),)
    assert core.counters.merged == 4 and core.counters.deltas == 1
    engine.frame("AAA_USDC", 1, {Decimal(1): Decimal(9)}, {})  # after a take: a new message
    engine.deliver(1, core)
    assert [(m.first_id, m.last_id) for m in core.take(10)] == [(111, 111)]


def test_cores_offered_the_same_updates_never_change_each_others_levels() -> None:
    """The sinks of a replicator are offered the same update objects, and a new
    delta holds its update's own maps: a core that merges later updates into
    its waiting delta copies them first, so neither the update nor another
    core's message changes."""
    engine = Engine()
    cores = [PublisherCore(engine.live, snapshot_interval=None, max_queue=100, now_us=lambda: 7)
             for _ in range(2)]
    engine.pending.clear()
    for core in cores:
        core.owe(["AAA_USDC"])
        core.resume()
    fast, slow = cores
    fast.take(10)
    slow.take(10)
    for n in range(4):
        engine.frame("AAA_USDC", 1, {Decimal(1 + n % 2): Decimal(n + 1)}, {Decimal(12): Decimal(n)})
        update = engine.pending.pop("AAA_USDC")
        own = tuple(dict(side) for side in update.raw_changes())
        for core in cores:
            core.offer(update)
        (message,) = fast.take(10)  # one message per update: the update's levels as they were
        assert message.bids == tuple(own[0].values()) and message.asks == tuple(own[1].values())
        assert update.raw_changes() == own  # the slow core's merges did not write into it
    (merged,) = slow.take(10)
    assert (merged.first_id, merged.last_id) == (101, 104)
    assert merged.bids == (("1", "3"), ("2", "4")) and merged.asks == (("12", "3"),)


def test_drops_are_counted_and_covered_by_one_snapshot_once_there_is_room() -> None:
    engine = Engine()
    core = PublisherCore(engine.live, snapshot_interval=None, max_queue=2, now_us=lambda: 7)
    engine.deliver(10, core)  # the replica's first snapshots: owed, as the core is paused
    assert len(core) == 0 and core.owed() == list(SYMBOLS)
    core.resume()
    assert len(core) == 2  # the two first snapshots: the queue is full
    for n in range(3):
        engine.frame("AAA_USDC", 1, {Decimal(1 + n): Decimal(n + 1)}, {})
        engine.deliver(1, core)
    assert core.counters.dropped == 3 and core.owed() == ["AAA_USDC"]
    assert [m.kind for m in core.take(4)] == [MessageKind.SNAPSHOT, MessageKind.SNAPSHOT]
    refill = core.take(4)
    assert [(m.kind, m.last_id) for m in refill] == [(MessageKind.SNAPSHOT, 103)]
    assert refill[0].bids == (("10", "1"), ("3", "3"), ("2", "2"), ("1", "1"))
    assert core.owed() == []


def test_while_paused_nothing_is_queued_and_every_symbol_owes_a_snapshot() -> None:
    engine = Engine()
    core = PublisherCore(engine.live, snapshot_interval=None, max_queue=100, now_us=lambda: 7)
    engine.pending.clear()
    core.owe(SYMBOLS)
    assert core.take(10) == [] and core.paused
    core.resume()
    assert len(core) == 2
    engine.frame("AAA_USDC", 1, {Decimal(3): Decimal(1)}, {})
    engine.deliver(1, core)
    assert core.pause() == 3 and core.counters.dropped == 3
    engine.frame("AAA_USDC", 1, {Decimal(3): Decimal(2)}, {})
    engine.deliver(1, core)
    assert len(core) == 0 and core.counters.dropped == 4
    core.resume()
    assert [(m.symbol, m.kind, m.last_id) for m in core.take(10)] == [
        ("AAA_USDC", MessageKind.SNAPSHOT, 102), ("B.B_USDC", MessageKind.SNAPSHOT, 200)]


def test_a_snapshot_is_not_made_while_the_replica_is_resyncing() -> None:
    engine = Engine()
    core = PublisherCore(engine.live, snapshot_interval=None, max_queue=100, now_us=lambda: 7)
    engine.pending.clear()
    engine.synced["AAA_USDC"] = False
    core.owe(["AAA_USDC"])
    core.resume()
    assert core.take(10) == [] and core.owed() == ["AAA_USDC"]
    engine.synced["AAA_USDC"] = True
    core.offer(BookUpdate("AAA_USDC", UpdateKind.SNAPSHOT, None, 100, None, None, 5, None, 0))
    assert [m.kind for m in core.take(10)] == [MessageKind.SNAPSHOT]


def test_periodic_snapshots_and_bad_arguments() -> None:
    engine = Engine()
    core = PublisherCore(engine.live, snapshot_interval=2, max_queue=100, now_us=lambda: 7)
    core.owe(["AAA_USDC"])
    core.resume()
    engine.pending.clear()
    kinds = []
    for n in range(5):
        engine.frame("AAA_USDC", 1, {Decimal(1): Decimal(n + 1)}, {})
        engine.deliver(1, core)
        kinds += [m.kind.value[0] for m in core.take(100)]
    assert "".join(kinds) == "sddsddsd"
    with pytest.raises(UsageError, match="snapshot_interval"):
        PublisherCore(engine.live, snapshot_interval=0, now_us=lambda: 7)
    with pytest.raises(UsageError, match="at least 2"):
        PublisherCore(engine.live, max_queue=1, now_us=lambda: 7)
