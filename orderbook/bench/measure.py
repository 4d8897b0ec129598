"""Measuring the contenders: throughput, per-frame latency, reads and memory."""

from __future__ import annotations

import gc
import statistics
import time
import timeit
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from sortedcontainers import SortedDict

from ..core.book import OrderBook
from .contenders import CcxtSides, Contender, OursSync, ReferenceStyle, ccxt_sides, check_exactness, check_final
from .workload import SYMBOL, Workload, make_snapshot

__all__ = ["Result", "measure_latency", "measure_memory", "measure_reads", "measure_throughput"]

# ------------------------------------------------------------- measuring
@dataclass(slots=True)
class Result:
    """Measurements of one contender."""

    name: str
    seconds: list[float] = field(default_factory=list)
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    verdict: str = ""


def _percentile(sorted_values: Sequence[int], fraction: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def measure_throughput(
    workload: Workload,
    entrants: Sequence[Contender],
    repeat: int,
    warmup_frames: int = 20_000,
    chunk: int = 10_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Result]:
    """Warm up, then ``repeat`` repetitions, each on every frame for every contender.

    Within a repetition every contender gets a fresh book, then the frames
    are fed ``chunk`` at a time, round robin (contender order rotated for
    each chunk): on a shared machine a burst of load hits all contenders
    alike instead of whichever ran during it.  A contender's time for the
    repetition is the sum of its chunks' CPU times.
    """
    results = {c.name: Result(c.name) for c in entrants}
    warm = workload.frames[:warmup_frames]
    for contender in entrants:
        contender.setup(workload)
        contender.run(warm)
    frames = workload.frames
    clock = time.process_time
    for round_ in range(repeat):
        spent = dict.fromkeys(results, 0.0)
        for contender in entrants:
            contender.setup(workload)
        gc.collect()
        for index, at in enumerate(range(0, len(frames), chunk)):
            part = frames[at : at + chunk]
            shift = index % len(entrants)
            for contender in [*entrants[shift:], *entrants[:shift]]:
                start = clock()
                contender.run(part)
                spent[contender.name] += clock() - start
        for contender in entrants:
            check_final(contender, workload)
            results[contender.name].seconds.append(spent[contender.name])
        if progress:
            rates = "; ".join(f"{name} {len(frames) / t:,.0f}" for name, t in spent.items())
            progress(f"repetition {round_ + 1}/{repeat} (frames/s): {rates}")
    return results


def measure_latency(workload: Workload, entrants: Sequence[Contender], results: dict[str, Result]) -> None:
    """One traced pass per contender: p50/p99 per frame and the exactness verdict."""
    for contender in entrants:
        contender.setup(workload)
        gc.collect()
        latencies, touches = contender.trace(workload.frames)
        latencies.sort()
        result = results[contender.name]
        result.p50_us = _percentile(latencies, 0.50) / 1000
        result.p99_us = _percentile(latencies, 0.99) / 1000
        result.verdict = check_exactness(contender, workload, touches)


def _timeit_ns(stmt: str, namespace: dict[str, Any], number: int = 200_000, repeat: int = 7) -> float:
    """Best of ``repeat`` runs of ``number`` executions, in CPU time, ns per execution."""
    timer = timeit.Timer(stmt, timer=time.process_time, globals=namespace)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def _views_after_frames(
    contender: Contender, frames: Sequence[bytes], views: Callable[[], tuple[Callable[[], object], Callable[[], object]]]
) -> tuple[float, float]:
    """Median µs of the top-20 views read right after each frame (the
    first read of levels that just changed, as a screen refreshed on every
    frame sees it); includes one ``perf_counter_ns`` call."""
    clock = time.perf_counter_ns
    bid_times: list[int] = []
    ask_times: list[int] = []
    view_bids, view_asks = views()
    for raw in frames:
        contender.run([raw])
        start = clock()
        view_bids()
        middle = clock()
        view_asks()
        end = clock()
        bid_times.append(middle - start)
        ask_times.append(end - middle)
    return statistics.median(bid_times) / 1000, statistics.median(ask_times) / 1000


def measure_reads(workload: Workload, include_ccxt: bool = True, after_frames: int = 20_000) -> dict[str, dict[str, float]]:
    """Touch read (ns per call) and top-20 view (µs per side) on the book left
    by the workload, for ours, the reference style and ccxt (best of 7
    timeit runs, CPU time), and the top-20 views read after each of the last
    ``after_frames`` frames (median)."""
    out: dict[str, dict[str, float]] = {}
    head = workload.frames[: len(workload.frames) - after_frames]
    tail = workload.frames[len(workload.frames) - after_frames :]

    ours = OursSync()
    ours.setup(workload)
    ours.run(head)
    book = ours.sync.book
    after = _views_after_frames(ours, tail, lambda: (lambda: book.bids(20), lambda: book.asks(20)))
    ns = {"book": book}
    out["ours"] = {
        "best_bid_ns": _timeit_ns("book.best_bid()", ns),
        "best_ask_ns": _timeit_ns("book.best_ask()", ns),
        "top20_bids_us": _timeit_ns("book.bids(20)", ns, number=50_000) / 1000,
        "top20_asks_us": _timeit_ns("book.asks(20)", ns, number=50_000) / 1000,
        "after_bids_us": after[0],
        "after_asks_us": after[1],
    }
    ref = ReferenceStyle()
    ref.setup(workload)
    ref.run(head)
    bids, asks = ref.bids, ref.asks
    after = _views_after_frames(ref, tail, lambda: (lambda: bids.items()[-20:][::-1], lambda: asks.items()[:20]))
    ns = {"bids": bids, "asks": asks}
    out["reference"] = {
        "best_bid_ns": _timeit_ns("bids.peekitem(-1)", ns),
        "best_ask_ns": _timeit_ns("asks.peekitem(0)", ns),
        "top20_bids_us": _timeit_ns("bids.items()[-20:][::-1]", ns, number=50_000) / 1000,
        "top20_asks_us": _timeit_ns("asks.items()[:20]", ns, number=50_000) / 1000,
        "after_bids_us": after[0],
        "after_asks_us": after[1],
    }
    if include_ccxt and ccxt_sides() is not None:
        cc = CcxtSides()
        cc.setup(workload)
        cc.run(head)
        cbids, casks = cc.bids, cc.asks
        after = _views_after_frames(cc, tail, lambda: (lambda: cbids[:20], lambda: casks[:20]))
        ns = {"bids": cbids, "asks": casks}
        out["ccxt"] = {
            "best_bid_ns": _timeit_ns("bids[0]", ns),
            "best_ask_ns": _timeit_ns("asks[0]", ns),
            "top20_bids_us": _timeit_ns("bids[:20]", ns, number=50_000) / 1000,
            "top20_asks_us": _timeit_ns("asks[:20]", ns, number=50_000) / 1000,
            "after_bids_us": after[0],
            "after_asks_us": after[1],
        }
    out["empty statement"] = {"best_bid_ns": _timeit_ns("pass", {})}
    return out


def _retained_bytes(build: Callable[[], object]) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


def measure_memory(levels_per_side: int = 10_000, include_ccxt: bool = True) -> dict[str, float]:
    """Bytes retained per level by a book built from a snapshot of
    ``levels_per_side`` levels per side (raw bytes in, everything the book
    keeps counted: keys, level tuples, Decimals, price strings, caches).
    For ours also after a full read of both sides, for a book that builds
    level tuples lazily."""
    raw = orjson.dumps(make_snapshot(levels_per_side))
    levels = 2 * levels_per_side
    out: dict[str, float] = {}

    def ours() -> object:
        book = OrderBook(SYMBOL)
        book.apply_snapshot(raw)
        return book

    size, book = _retained_bytes(ours)
    assert isinstance(book, OrderBook) and book.depth() == (levels_per_side, levels_per_side)
    out["ours"] = size / levels

    def ours_read() -> object:
        book = ours()
        assert isinstance(book, OrderBook)
        book.bids()
        book.asks()  # every level read once: lazily built levels now exist
        return book

    out["ours, every level read"] = _retained_bytes(ours_read)[0] / levels

    def reference() -> object:
        body = orjson.loads(raw)
        return (
            SortedDict({Decimal(p): Decimal(q) for p, q in body["bids"]}),
            SortedDict({Decimal(p): Decimal(q) for p, q in body["asks"]}),
        )

    out["reference"] = _retained_bytes(reference)[0] / levels
    classes = ccxt_sides() if include_ccxt else None
    if classes is not None:
        bids_class, asks_class = classes

        def ccxt() -> object:
            body = orjson.loads(raw)
            return (
                bids_class([[float(p), float(q)] for p, q in body["bids"]]),
                asks_class([[float(p), float(q)] for p, q in body["asks"]]),
            )

        out["ccxt"] = _retained_bytes(ccxt)[0] / levels
    return out
