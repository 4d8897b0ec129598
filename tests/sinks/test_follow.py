"""The reader's bridging rule and the trimming choice, without a broker."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from orderbook.sinks import Message, MessageKind, RedisBook
from orderbook.sinks.redis import StreamTrimmer

D = Decimal


def follower() -> RedisBook:
    return RedisBook("redis://127.0.0.1:1/0", "SOL_USDC")  # never started: apply() only


def snap(u: int, bids: tuple[tuple[str, str], ...] = (("10", "1"),),
         asks: tuple[tuple[str, str], ...] = (("20", "1"),)) -> Message:
    return Message("SOL_USDC", MessageKind.SNAPSHOT, u, u, 1, bids, asks)


def delta(first: int, last: int, bids: tuple[tuple[str, str], ...] = (),
          asks: tuple[tuple[str, str], ...] = ()) -> Message:
    return Message("SOL_USDC", MessageKind.DELTA, first, last, 2, bids, asks)


def test_deltas_before_a_snapshot_are_skipped_then_the_book_follows() -> None:
    f = follower()
    f.apply(delta(1, 1, (("9", "1"),)))
    assert not f.synced and f.stats.skipped == 1
    f.apply(snap(10))
    f.apply(delta(11, 12, (("9", "2"),)))
    assert f.synced and f.book.last_update_id == 12
    assert f.book.bids() == [(D(10), D(1)), (D(9), D(2))]


def test_an_overlapping_delta_is_applied_and_an_old_one_skipped() -> None:
    """Duplicates and overlaps (a broker retry, two publishers) keep the book exact."""
    f = follower()
    f.apply(snap(10))
    f.apply(delta(11, 14, (("9", "2"),)))
    f.apply(delta(11, 14, (("9", "2"),)))        # delivered twice
    f.apply(delta(12, 16, (("9", "3"),)))        # overlaps: quantities are absolute
    assert f.book.last_update_id == 16 and f.book.bids()[1] == (D(9), D(3))
    assert f.stats.skipped == 1 and f.stats.deltas == 2


def test_a_gap_clears_the_book_until_the_next_snapshot() -> None:
    f = follower()
    f.apply(snap(10))
    f.apply(delta(12, 12, (("9", "2"),)))
    assert not f.synced and f.book.last_update_id is None and f.book.bids() == []
    assert f.stats.gaps == 1
    f.apply(delta(13, 13))
    assert not f.synced
    f.apply(snap(20, (("11", "1"),)))
    assert f.synced and f.book.bids() == [(D(11), D(1))]


def test_bad_content_is_counted_and_treated_as_a_gap() -> None:
    f = follower()
    f.apply(snap(10, (("20", "1"),), (("10", "1"),)))          # a crossed snapshot
    assert not f.synced and f.stats.bad == 1
    f.apply(snap(10))
    f.apply(delta(11, 11, (("25", "1"),)))                    # a bid above the best ask
    assert not f.synced and f.stats.bad == 2
    f.apply(snap(12))
    f.apply(delta(13, 13, (("0", "1"),)))                     # price zero
    assert not f.synced and f.stats.bad == 3


@given(st.lists(st.booleans(), min_size=1, max_size=400), st.integers(1, 30), st.integers(30, 120))
def test_trimming_always_keeps_a_snapshot_within_about_maxlen(kinds: list[bool], interval: int,
                                                              maxlen: int) -> None:
    """Simulate the stream: entries are written in order (True: a snapshot, at
    least every ``interval`` entries) and each snapshot trims with MINID to the
    id the trimmer chose; the kept part always starts at a snapshot and holds at
    most maxlen + interval entries."""
    trimmer = StreamTrimmer(maxlen)
    stream: list[tuple[int, bool]] = []   # (entry id, is a snapshot)
    since = 0
    for n, wanted in enumerate([True, *kinds]):
        is_snapshot = wanted or since >= interval
        since = 0 if is_snapshot else since + 1
        index, minid = trimmer.entry("k", is_snapshot)
        assert index == n
        stream.append((n, is_snapshot))
        if minid is not None:
            stream = [(i, s) for i, s in stream if i >= int(minid)]  # exact MINID (~ keeps more)
        if is_snapshot:
            trimmer.written("k", index, str(n).encode())
        assert stream[0][1], "the stream must start at a snapshot"
        assert len(stream) <= maxlen + interval + 1


def test_a_nats_subscriber_bridges_the_reply_with_what_it_buffered() -> None:
    """Subscribe (buffering), the reply at L, then the buffered deltas: those at or
    before L are skipped, the one straddling L is applied; a buffered snapshot
    bridges by itself; a buffer that does not reach L + 1 is a gap (ask again)."""
    from nats.aio.msg import Msg

    from orderbook.sinks import NatsBook

    def msg(message: Message) -> Msg:
        return Msg(_client=None, subject="orderbook.SOL_USDC.delta", data=message.json())  # type: ignore[arg-type]

    async def main() -> None:
        sub = NatsBook("nats://127.0.0.1:1", "SOL_USDC")
        for m in (delta(9, 11, (("9", "1"),)), delta(12, 13, (("9", "2"),)), delta(14, 15, (("9", "3"),))):
            await sub._on_message(msg(m))
        assert not sub.synced
        assert sub._bridge(snap(12))
        assert sub.book.last_update_id == 15 and sub.book.bids()[1] == (D(9), D(3))
        assert (sub.stats.skipped, sub.stats.deltas) == (1, 2)
        await sub._on_message(msg(delta(17, 17)))               # a gap: bridging again
        assert not sub.synced and sub._bridging
        await sub._on_message(msg(delta(18, 18)))
        assert not sub._bridge(snap(16))                        # 18 does not continue 16
        await sub._on_message(msg(snap(30, (("12", "1"),))))    # a snapshot on the stream
        assert sub.synced and not sub._bridging and sub.book.last_update_id == 30

    import asyncio
    asyncio.run(main())
