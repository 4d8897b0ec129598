"""ConsumerQueue: frames are folded into a pending delta without a BookUpdate
built for them, and only where that is what a push would have done."""

from __future__ import annotations

import orjson

from orderbook import DepthEvent, parse_frame
from orderbook.live.consumers import ConsumerQueue, ConsumerStats, DeliveryLatency
from orderbook.sync.updates import BookUpdate, UpdateKind


def frame(first: int, bids: list[list[str]]) -> DepthEvent:
    data = {"e": "depth", "E": 1, "T": 2, "s": "SOL_USDC", "U": first, "u": first, "b": bids, "a": []}
    event = parse_frame(orjson.dumps({"stream": "depth.SOL_USDC", "data": data}))
    assert isinstance(event, DepthEvent)
    return event


def delta(events: list[DepthEvent]) -> BookUpdate:
    return BookUpdate("SOL_USDC", UpdateKind.DELTA, events[0].first_id, events[-1].last_id, None, None,
                      events[-1].engine_time, events[-1].event_time, 0, 1, None, list(events))


def queue(policy: str = "conflate") -> tuple[ConsumerQueue, ConsumerStats]:
    counts = ConsumerStats()
    return ConsumerQueue(policy, 10, counts, DeliveryLatency()), counts  # type: ignore[arg-type]


def test_frames_extend_the_pending_delta_and_count_as_conflated() -> None:
    q, counts = queue()
    assert not q.extend("SOL_USDC", [frame(5, [["1", "2"]])], None, None, 1)  # nothing pending
    q.push(delta([frame(5, [["1", "2"]])]))
    assert q.extend("SOL_USDC", [frame(6, [["1", "3"]]), frame(7, [["2", "1"]])], None, None, 9)
    assert counts.conflated == 1
    (update,) = q.drain()
    assert (update.first_id, update.last_id, update.merged, update.received_us) == (5, 7, 2, 9)
    assert update.raw_bids == (("1", "3"), ("2", "1"))
    assert q.drain() == []


def test_only_a_pending_delta_of_a_conflating_queue_is_extended() -> None:
    fifo, _ = queue("drop_oldest")
    fifo.push(delta([frame(5, [])]))
    assert not fifo.extend("SOL_USDC", [frame(6, [])], None, None, 1)
    q, _ = queue()
    q.push(BookUpdate("SOL_USDC", UpdateKind.SNAPSHOT, None, 5, None, None, None, None, 0))
    assert not q.extend("SOL_USDC", [frame(6, [])], None, None, 1)  # a snapshot: push, it re-reads
    assert not q.extend("ETH_USDC", [frame(6, [])], None, None, 1)  # another symbol
