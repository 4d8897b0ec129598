"""The benchmark harness behind ``orderbook bench`` and ``benchmarks/run.py``.

Outside the hot path and outside the test run; nothing else in the package
imports it.  Three parts:

* :func:`make_workload` -- a seeded synthetic session: a REST snapshot
  (1000 levels per side) and N raw depth frames in the exact wire envelope,
  generated against a true model kept in ``Decimal`` so that the expected
  touch after every frame and the expected final book are known;
* the contenders -- the same raw frames fed, end to end, to this package
  (``parse_frame`` -> ``SymbolSync`` / ``OrderBook``), to a "reference style"
  book (``orjson`` + ``SortedDict`` keyed by ``Decimal``, the design of the
  venue's own reference book), to ccxt's order book sides
  (``OrderBookSide.storeArray``, floats) when ``ccxt`` is installed, and to
  ``orjson.loads`` alone (the floor);
* :func:`run_benchmarks` -- warm-up, interleaved repetitions, medians, the
  per-frame latency pass, read costs and memory per level, rendered as a
  markdown table.  Every contender that claims exactness is checked against
  the model after every frame (in the untimed latency pass) and at the end
  of every timed repetition.

Method notes: throughput is CPU time of this process (``time.process_time``:
on a shared machine it leaves out the time other processes hold the CPU),
read around chunks of 10,000 frames fed to the contenders round robin, so
that load bursts hit every contender alike; no per-frame timer.  The
latency pass is separate, uses ``perf_counter_ns`` (wall clock)
around each frame and so includes one timer call (~60 ns) and any
preemption.  GC stays enabled, as in production, but the workload itself is
moved out of the collector's way with ``gc.freeze()`` so that no contender
pays for scanning the harness's data.
"""

from __future__ import annotations

import gc
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sortedcontainers import SortedDict, SortedList

from .._native import implementation
from ..core.book import OrderBook
from ..core.ladder import Level
from ..sync.symbol import SymbolSync, SyncState
from ..protocol.wire import parse_frame, parse_snapshot

__all__ = [
    "Contender",
    "Workload",
    "contenders",
    "machine_info",
    "make_snapshot",
    "make_workload",
    "reference_apply",
    "run_benchmarks",
]

SYMBOL = "BENCH_USDC"
TICK_DECIMALS = 2
NEAR_TICKS = 20
_ZEROS = ("0", "0.00", "0.000", "0.00000")
_QTY_DECIMALS = (0, 1, 2, 2, 3, 3, 4, 5)

Touch = tuple[Level | None, Level | None]


# ---------------------------------------------------------------- workload
@dataclass(slots=True)
class Workload:
    """A synthetic session and its ground truth.

    ``frames`` are raw WebSocket text frames (bytes) with contiguous update
    ids starting at ``snapshot["lastUpdateId"] + 1``; ``touches[i]`` is the
    exact ``(best bid, best ask)`` after ``frames[i]``; ``final_bids`` /
    ``final_asks`` the whole book after the last frame, best first.
    """

    symbol: str
    seed: int
    snapshot: dict[str, Any]
    snapshot_raw: bytes
    frames: list[bytes]
    level_updates: int
    touches: list[Touch]
    final_bids: list[Level]
    final_asks: list[Level]
    mix: dict[str, int] = field(default_factory=dict)


def _price_str(tick: int) -> str:
    whole, frac = divmod(tick, 10**TICK_DECIMALS)
    return f"{whole}.{frac:0{TICK_DECIMALS}d}"


def _qty_str(rng: random.Random) -> str:
    """A positive quantity with 0-5 decimals, sometimes with trailing zeros."""
    decimals = rng.choice(_QTY_DECIMALS)
    value = rng.randint(1, 5 * 10 ** (decimals + 2))
    text = str(value)
    if decimals:
        text = text.rjust(decimals + 1, "0")
        text = f"{text[:-decimals]}.{text[-decimals:]}"
        if rng.random() < 0.1:
            text += "00"
    return text


class _Side:
    """One side of the generator's true model: tick -> exact level, best first."""

    __slots__ = ("sign", "levels", "texts", "order")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # -1 bids (higher is better), +1 asks
        self.levels: dict[int, Level] = {}
        self.texts: dict[int, str] = {}  # quantity as sent
        self.order = SortedList()  # signed ticks, best first

    def put(self, tick: int, price: str, qty: str) -> None:
        if tick not in self.levels:
            self.order.add(self.sign * tick)
        self.levels[tick] = (Decimal(price), Decimal(qty))
        self.texts[tick] = qty

    def delete(self, tick: int) -> None:
        if self.levels.pop(tick, None) is not None:
            del self.texts[tick]
            self.order.remove(self.sign * tick)

    def best(self) -> Level | None:
        return self.levels[self.sign * self.order[0]] if self.order else None

    def near_range(self, boundary: int) -> tuple[int, int]:
        """Index range in ``order`` of the levels within NEAR_TICKS of the boundary."""
        if self.sign < 0:  # bids <= boundary
            edge = -(boundary - NEAR_TICKS + 1)
        else:  # asks >= boundary + 1
            edge = boundary + NEAR_TICKS
        return 0, self.order.bisect_right(edge)


def make_snapshot(levels_per_side: int, seed: int = 1, mid_tick: int = 15_000) -> dict[str, Any]:
    """A REST depth body with ``levels_per_side`` levels on each side, contiguous ticks."""
    rng = random.Random(seed)
    bids = [[_price_str(mid_tick - i), _qty_str(rng)] for i in range(levels_per_side)]
    asks = [[_price_str(mid_tick + 1 + i), _qty_str(rng)] for i in range(levels_per_side)]
    return {"asks": asks, "bids": bids, "lastUpdateId": "1000", "timestamp": 1_700_000_000_000_000}


def make_workload(
    frames: int = 200_000,
    seed: int = 20_240_611,
    depth: int = 1000,
    symbol: str = SYMBOL,
    move_probability: float = 0.1,
) -> Workload:
    """Generate a seeded workload (deterministic for a given seed).

    Snapshot: ``depth`` levels per side around 150.00 (tick 0.01), about one
    tick in five left empty.  Each frame changes 1-6 distinct levels: about
    25% deletes (of existing levels, rarely of an absent price), 25% new
    levels, the rest quantity changes; 60% of the changes fall within 20
    ticks of the mid.  The mid does a random walk (one tick, on 10% of the
    frames); a level it crosses is deleted in that frame, so the book is
    never crossed.  20% of the frames aggregate several update ids
    (``U < u``).  ``E``/``T`` are strings, as the live venue sends them;
    zero quantities come in several spellings.
    """
    rng = random.Random(seed)
    bids, asks = _Side(-1), _Side(1)
    boundary = 15_000  # bids <= boundary < asks
    for side, start, step in ((bids, boundary, -1), (asks, boundary + 1, 1)):
        at, placed = start, 0
        while placed < depth:
            if placed == 0 or rng.random() < 0.8:
                side.put(at, _price_str(at), _qty_str(rng))
                placed += 1
            at += step
    last_id = 2_000_000_000
    engine_time = 1_700_000_000_000_000
    snapshot = {
        "asks": [[_price_str(t), asks.texts[t]] for t in asks.order],
        "bids": [[_price_str(-t), bids.texts[-t]] for t in bids.order],
        "lastUpdateId": str(last_id),
        "timestamp": engine_time,
    }
    mix = dict.fromkeys(
        ("delete", "delete_absent", "new", "modify", "near", "far", "mid_moves", "aggregated"), 0
    )
    out: list[bytes] = []
    touches: list[Touch] = []
    level_updates = 0
    dumps = orjson.dumps
    stream = f"depth.{symbol}"
    for _ in range(frames):
        changes: dict[int, dict[int, str]] = {-1: {}, 1: {}}
        wanted = rng.randint(1, 6)
        if rng.random() < move_probability:
            mix["mid_moves"] += 1
            if rng.random() < 0.5:
                boundary += 1  # the ask at the new boundary must go
                side, gone = asks, boundary
            else:
                boundary -= 1  # the bid just above the new boundary must go
                side, gone = bids, boundary + 1
            if gone in side.levels and len(side.levels) > 1:
                zero = rng.choice(_ZEROS)
                changes[side.sign][gone] = zero
                side.delete(gone)
                mix["delete"] += 1
                mix["near"] += 1
        attempts = 0
        while sum(map(len, changes.values())) < wanted and attempts < 30:
            attempts += 1
            side = bids if rng.random() < 0.5 else asks
            sign = side.sign
            near = rng.random() < 0.6
            roll = rng.random()
            kind = "delete" if roll < 0.25 else "new" if roll < 0.5 else "modify"
            lo, hi = side.near_range(boundary)
            size = len(side.order)
            tick: int | None = None
            if kind in ("delete", "modify"):
                if near and hi > lo:
                    tick = sign * side.order[rng.randrange(lo, hi)]
                elif not near and size > hi:
                    tick = sign * side.order[rng.randrange(hi, size)]
                if kind == "delete" and size <= 2:
                    tick = None
                if kind == "delete" and not near and rng.random() < 0.02:
                    kind = "delete_absent"
                    tick = None
                    deepest = sign * side.order[-1]
                    for _try in range(5):
                        candidate = deepest + sign * rng.randint(1, 50)
                        if candidate not in side.levels:
                            tick = candidate
                            break
            else:  # a new level at an empty price
                for _try in range(5):
                    if near:
                        offset = rng.randrange(NEAR_TICKS)
                    else:
                        deepest = abs(side.order[-1])
                        offset = rng.randrange(NEAR_TICKS, abs(deepest - boundary) + 50)
                    candidate = boundary - offset if sign < 0 else boundary + 1 + offset
                    if candidate not in side.levels:
                        tick = candidate
                        break
            if tick is None or tick in changes[sign]:
                continue
            mix[kind] += 1
            mix["near" if near else "far"] += 1
            price = _price_str(tick)
            if kind in ("delete", "delete_absent"):
                changes[sign][tick] = rng.choice(_ZEROS)
                side.delete(tick)
            else:
                qty = _qty_str(rng)
                changes[sign][tick] = qty
                side.put(tick, price, qty)
        first_id = last_id + 1
        if rng.random() < 0.2:
            last_id = first_id + rng.randint(1, 3)
            mix["aggregated"] += 1
        else:
            last_id = first_id
        engine_time += rng.randint(50, 5_000)
        b = [[_price_str(t), q] for t, q in sorted(changes[-1].items(), reverse=True)]
        a = [[_price_str(t), q] for t, q in sorted(changes[1].items())]
        level_updates += len(a) + len(b)
        data = {
            "e": "depth",
            "E": str(engine_time + rng.randint(100, 900)),
            "s": symbol,
            "a": a,
            "b": b,
            "U": first_id,
            "u": last_id,
            "T": str(engine_time),
        }
        out.append(dumps({"stream": stream, "data": data}))
        touches.append((bids.best(), asks.best()))
        best_bid, best_ask = touches[-1]
        assert best_bid is None or best_ask is None or best_bid[0] < best_ask[0]
    return Workload(
        symbol=symbol,
        seed=seed,
        snapshot=snapshot,
        snapshot_raw=dumps(snapshot),
        frames=out,
        level_updates=level_updates,
        touches=touches,
        final_bids=[bids.levels[-t] for t in bids.order],
        final_asks=[asks.levels[t] for t in asks.order],
        mix=mix,
    )


# --------------------------------------------------------------- contenders
class Contender(Protocol):
    """One way of keeping a book from the raw frames.

    ``setup`` builds a fresh book from the workload's snapshot (untimed);
    ``run`` feeds frames and reads the touch after each (timed);
    ``trace`` does the same with a per-frame timer and records the touch;
    ``sides`` returns the final book, best first, for the exactness check.
    """

    name: str
    exact: bool

    def setup(self, workload: Workload) -> None: ...

    def run(self, frames: Sequence[bytes]) -> None: ...

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]: ...

    def sides(self) -> tuple[list[Any], list[Any]] | None: ...


class OursSync:
    """This package end to end: ``parse_frame`` -> ``SymbolSync.receive_frame``
    -> ``book.best_bid()`` / ``book.best_ask()``."""

    name = "ours: parse_frame + SymbolSync"
    exact = True

    def setup(self, workload: Workload) -> None:
        sync = SymbolSync(workload.symbol)
        sync.start()
        sync.receive_snapshot(parse_snapshot(workload.snapshot_raw, workload.symbol), limit=1000)
        assert sync.state is SyncState.SYNCED
        self.sync = sync
        self.fed = 0

    def run(self, frames: Sequence[bytes]) -> None:
        receive = self.sync.receive_frame
        book = self.sync.book
        best_bid, best_ask = book.best_bid, book.best_ask
        parse = parse_frame
        for raw in frames:
            receive(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()
        self._check_applied(len(frames))

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        receive = self.sync.receive_frame
        book = self.sync.book
        best_bid, best_ask = book.best_bid, book.best_ask
        parse = parse_frame
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            receive(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()
            latencies.append(clock() - start)
            touches.append((bid, ask))
        self._check_applied(len(frames))
        return latencies, touches

    def _check_applied(self, n: int) -> None:
        self.fed += n
        counters = self.sync.counters
        if self.sync.state is not SyncState.SYNCED or counters.frames_applied != self.fed:
            raise AssertionError(f"{self.name}: not every frame applied: {counters}")

    def sides(self) -> tuple[list[Any], list[Any]]:
        return self.sync.book.bids(), self.sync.book.asks()


class OursBook:
    """This package without the state machine: ``parse_frame`` ->
    ``OrderBook.apply_delta`` -> best bid/ask."""

    name = "ours: parse_frame + OrderBook.apply_delta"
    exact = True

    def setup(self, workload: Workload) -> None:
        self.book = OrderBook(workload.symbol)
        self.book.apply_snapshot(workload.snapshot_raw, limit=1000)

    def run(self, frames: Sequence[bytes]) -> None:
        book = self.book
        apply, best_bid, best_ask = book.apply_delta, book.best_bid, book.best_ask
        parse = parse_frame
        for raw in frames:
            apply(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        book = self.book
        apply, best_bid, best_ask = book.apply_delta, book.best_bid, book.best_ask
        parse = parse_frame
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            apply(parse(raw, validate_levels=False))  # type: ignore[arg-type]
            bid = best_bid()
            ask = best_ask()
            latencies.append(clock() - start)
            touches.append((bid, ask))
        return latencies, touches

    def sides(self) -> tuple[list[Any], list[Any]]:
        return self.book.bids(), self.book.asks()


class _Gap(Exception):
    pass


def reference_apply(bids: SortedDict, asks: SortedDict, data: dict[str, Any], last: int) -> int:
    """The reference style's step: check ``U == last + 1``, apply each level
    as a ``Decimal`` (zero pops it) and return the new ``u``."""
    if data["U"] != last + 1:
        raise _Gap(data["U"], last)
    D = Decimal
    for p, q in data["b"]:
        price, qty = D(p), D(q)
        if qty:
            bids[price] = qty
        else:
            bids.pop(price, None)
    for p, q in data["a"]:
        price, qty = D(p), D(q)
        if qty:
            asks[price] = qty
        else:
            asks.pop(price, None)
    return int(data["u"])


class ReferenceStyle:
    """The design of the venue's reference book in Python: ``orjson.loads``,
    ``Decimal`` price and quantity, one ``SortedDict`` per side keyed by the
    ``Decimal`` price, zero -> pop, ``U == last u + 1`` checked, touch read
    with ``peekitem`` after every frame."""

    name = "reference style: orjson + SortedDict[Decimal]"
    exact = True

    def setup(self, workload: Workload) -> None:
        body = orjson.loads(workload.snapshot_raw)
        self.bids = SortedDict({Decimal(p): Decimal(q) for p, q in body["bids"] if Decimal(q)})
        self.asks = SortedDict({Decimal(p): Decimal(q) for p, q in body["asks"] if Decimal(q)})
        self.last = int(body["lastUpdateId"])

    def run(self, frames: Sequence[bytes]) -> None:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        last = self.last
        D = Decimal
        for raw in frames:  # inline, as a reference implementation would be written
            data = loads(raw)["data"]
            if data["U"] != last + 1:
                raise _Gap(data["U"], last)
            for p, q in data["b"]:
                price, qty = D(p), D(q)
                if qty:
                    bids[price] = qty
                else:
                    bids.pop(price, None)
            for p, q in data["a"]:
                price, qty = D(p), D(q)
                if qty:
                    asks[price] = qty
                else:
                    asks.pop(price, None)
            last = data["u"]
            bids.peekitem(-1) if bids else None
            asks.peekitem(0) if asks else None
        self.last = last

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        last = self.last
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            last = reference_apply(bids, asks, loads(raw)["data"], last)
            bid = bids.peekitem(-1) if bids else None
            ask = asks.peekitem(0) if asks else None
            latencies.append(clock() - start)
            touches.append((bid, ask))
        self.last = last
        return latencies, touches

    def sides(self) -> tuple[list[Any], list[Any]]:
        return list(reversed(self.bids.items())), list(self.asks.items())


def _ccxt_sides() -> tuple[Any, Any] | None:
    try:
        from ccxt.async_support.base.ws.order_book_side import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            Asks,
            Bids,
        )
    except ImportError:
        return None
    return Bids, Asks


class CcxtSides:
    """ccxt's order book sides fed the way its Backpack adapter feeds them
    (``storeArray([float(price), float(qty)])`` per level), without the
    exchange object around them, plus the ``U == last u + 1`` check ccxt
    itself does not make.  Floats: not exact."""

    name = "ccxt OrderBookSide.storeArray (float)"
    exact = False

    def setup(self, workload: Workload) -> None:
        classes = _ccxt_sides()
        assert classes is not None
        bids_class, asks_class = classes
        body = orjson.loads(workload.snapshot_raw)
        self.bids = bids_class([[float(p), float(q)] for p, q in body["bids"]])
        self.asks = asks_class([[float(p), float(q)] for p, q in body["asks"]])
        self.nonce = int(body["lastUpdateId"])

    def run(self, frames: Sequence[bytes]) -> None:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        store_bid, store_ask = bids.storeArray, asks.storeArray
        nonce = self.nonce
        for raw in frames:
            data = loads(raw)["data"]
            if data["U"] != nonce + 1:
                raise _Gap(data["U"], nonce)
            for p, q in data["b"]:
                store_bid([float(p), float(q)])
            for p, q in data["a"]:
                store_ask([float(p), float(q)])
            nonce = data["u"]
            bid = bids[0] if bids else None
            ask = asks[0] if asks else None
        self.nonce = nonce

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        loads = orjson.loads
        bids, asks = self.bids, self.asks
        store_bid, store_ask = bids.storeArray, asks.storeArray
        nonce = self.nonce
        clock = time.perf_counter_ns
        latencies: list[int] = []
        touches: list[Any] = []
        for raw in frames:
            start = clock()
            data = loads(raw)["data"]
            if data["U"] != nonce + 1:
                raise _Gap(data["U"], nonce)
            for p, q in data["b"]:
                store_bid([float(p), float(q)])
            for p, q in data["a"]:
                store_ask([float(p), float(q)])
            nonce = data["u"]
            bid = bids[0] if bids else None
            ask = asks[0] if asks else None
            latencies.append(clock() - start)
            # ccxt levels are mutable lists updated in place: copy for the record
            touches.append((tuple(bid) if bid else None, tuple(ask) if ask else None))
        self.nonce = nonce
        return latencies, touches

    def sides(self) -> tuple[list[Any], list[Any]]:
        return [tuple(level) for level in self.bids], [tuple(level) for level in self.asks]


class JsonFloor:
    """``orjson.loads`` of every frame and nothing else: the floor."""

    name = "floor: orjson.loads alone"
    exact = False

    def setup(self, workload: Workload) -> None:
        pass

    def run(self, frames: Sequence[bytes]) -> None:
        loads = orjson.loads
        for raw in frames:
            loads(raw)

    def trace(self, frames: Sequence[bytes]) -> tuple[list[int], list[Any]]:
        loads = orjson.loads
        clock = time.perf_counter_ns
        latencies: list[int] = []
        for raw in frames:
            start = clock()
            loads(raw)
            latencies.append(clock() - start)
        return latencies, []

    def sides(self) -> None:
        return None


def contenders(include_ccxt: bool = True) -> list[Contender]:
    """The contenders, ours first; ccxt only when the package is installed."""
    found: list[Contender] = [OursSync(), OursBook(), ReferenceStyle()]
    if include_ccxt and _ccxt_sides() is not None:
        found.append(CcxtSides())
    found.append(JsonFloor())
    return found


# ------------------------------------------------------------ exactness
def _float_level(level: Level | None) -> tuple[float, float] | None:
    return None if level is None else (float(level[0]), float(level[1]))


def check_exactness(contender: Contender, workload: Workload, touches: list[Any]) -> str:
    """Compare a traced run with the model: every frame's touch and the final book.

    Returns a short verdict; raises ``AssertionError`` when a contender that
    claims exactness deviates.
    """
    sides = contender.sides()
    if sides is None:
        return "n/a"
    if contender.exact:
        bad = next((i for i, (got, want) in enumerate(zip(touches, workload.touches)) if got != want), None)
        if bad is not None:
            raise AssertionError(f"{contender.name}: touch after frame {bad} is {touches[bad]}, expected {workload.touches[bad]}")
        if sides != (workload.final_bids, workload.final_asks):
            raise AssertionError(f"{contender.name}: final book differs from the model")
        return "exact"
    want_touches = [(_float_level(b), _float_level(a)) for b, a in workload.touches]
    want_sides = (
        [_float_level(level) for level in workload.final_bids],
        [_float_level(level) for level in workload.final_asks],
    )
    same = touches == want_touches and sides == want_sides
    return "float (= float(truth))" if same else "float, DIFFERS"


def check_final(contender: Contender, workload: Workload) -> None:
    """After a timed run: the final book of an exact contender must equal the model."""
    if contender.exact and contender.sides() != (workload.final_bids, workload.final_asks):
        raise AssertionError(f"{contender.name}: final book differs from the model")


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
    if include_ccxt and _ccxt_sides() is not None:
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
    classes = _ccxt_sides() if include_ccxt else None
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


# --------------------------------------------------------------- report
def machine_info() -> str:
    """CPU model, core count, Python and package versions, one markdown list."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for name in ("orjson", "sortedcontainers", "ccxt"):
        try:
            module = __import__(name)
            versions.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            versions.append(f"{name} (not installed)")
    return "\n".join(
        [
            f"- Code: orderbook {_source_version()}, hot path: {implementation()}"
            " (`native` = the C fast paths of `orderbook._speedups`; `python` = pure Python)",
            f"- CPU: {cpu}, {os.cpu_count()} logical cores ({platform.machine()})",
            f"- OS: {platform.system()} {platform.release()}",
            f"- Python: {platform.python_implementation()} {sys.version.split()[0]}",
            f"- Packages: {', '.join(versions)}",
        ]
    )


def _source_version() -> str:
    """The package version and, in a git checkout, the commit (``+dirty`` if modified)."""
    from .._version import __version__

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=here, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} (git {commit})" if commit else __version__


def _fmt_rate(value: float) -> str:
    return f"{value / 1000:,.0f} k"


def render(
    workload: Workload,
    results: dict[str, Result],
    reads: dict[str, dict[str, float]] | None,
    memory: dict[str, float] | None,
    repeat: int,
) -> str:
    """The markdown report: throughput table, reads and memory, targets."""
    n = len(workload.frames)
    rate = {name: n / statistics.median(r.seconds) for name, r in results.items()}
    ref_rate = rate.get(ReferenceStyle.name)
    ccxt_rate = rate.get(CcxtSides.name)
    lines = [
        f"Workload: seed {workload.seed}, {n:,} frames, {workload.level_updates:,} level updates "
        f"({workload.level_updates / n:.2f} per frame), snapshot {len(workload.snapshot['bids'])}"
        f"+{len(workload.snapshot['asks'])} levels. frames/s: process CPU time, median of {repeat} "
        "interleaved repetitions [min-max]; p50/p99: wall clock per frame, one separate pass.",
        "",
        "| contender | frames/s | level updates/s | p50 µs/frame | p99 µs/frame | vs reference | vs ccxt | result |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in results.items():
        frames_s = rate[name]
        spread = f"[{_fmt_rate(n / max(result.seconds))}-{_fmt_rate(n / min(result.seconds))}]"
        vs_ref = f"{frames_s / ref_rate:.2f}x" if ref_rate else "-"
        vs_ccxt = f"{frames_s / ccxt_rate:.2f}x" if ccxt_rate else "-"
        updates = "-" if name == JsonFloor.name else _fmt_rate(workload.level_updates * frames_s / n)
        lines.append(
            f"| {name} | {_fmt_rate(frames_s)} {spread} | {updates} | {result.p50_us:.2f} | "
            f"{result.p99_us:.2f} | {vs_ref} | {vs_ccxt} | {result.verdict or '-'} |"
        )
    if reads:
        lines += [
            "",
            "Reads on the book left by the workload: best of 7 timeit runs (CPU time), repeated reads of an",
            f"unchanged book (the timeit loop costs {reads['empty statement']['best_bid_ns']:.0f} ns for an empty statement); "
            "and the top-20 views read right after each of the last frames (median, wall clock,",
            "one timer call included), where levels that just changed are read for the first time.",
            "Memory: bytes retained per level by a book built from a 10,000-per-side snapshot.",
            "",
            "| book | best bid read ns | best ask read ns | top-20 bids µs | top-20 asks µs | top-20 bids / asks µs right after a frame | bytes per level |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for who, values in reads.items():
            if who == "empty statement":
                continue
            mem = f"{memory[who]:.0f}" if memory and who in memory else "-"
            after_read = (memory or {}).get(f"{who}, every level read")
            if after_read is not None and abs(after_read - memory[who]) > 1:  # type: ignore[index]
                mem += f" ({after_read:.0f} once every level is read)"
            lines.append(
                f"| {who} | {values['best_bid_ns']:.0f} | {values['best_ask_ns']:.0f} | "
                f"{values['top20_bids_us']:.2f} | {values['top20_asks_us']:.2f} | "
                f"{values['after_bids_us']:.2f} / {values['after_asks_us']:.2f} | {mem} |"
            )
    ours_rate = rate.get(OursSync.name)
    if ours_rate and ref_rate:
        ours_reads = (reads or {}).get("ours", {})
        checks = [
            ("frames/s >= 2x reference style", ours_rate / ref_rate >= 2, f"{ours_rate / ref_rate:.2f}x"),
        ]
        if ccxt_rate:
            checks.append(("frames/s >= 1.3x ccxt sides", ours_rate / ccxt_rate >= 1.3, f"{ours_rate / ccxt_rate:.2f}x"))
        if ours_reads:
            worst_read = max(ours_reads["best_bid_ns"], ours_reads["best_ask_ns"])
            worst_view = max(ours_reads["top20_bids_us"], ours_reads["top20_asks_us"])
            checks += [
                ("best bid/ask read <= 150 ns", worst_read <= 150, f"{worst_read:.0f} ns"),
                ("top-20 view <= 2 µs per side", worst_view <= 2, f"{worst_view:.2f} µs"),
            ]
        if memory:
            checks.append(("<= 160 bytes per level", memory["ours"] <= 160, f"{memory['ours']:.0f} B"))
        lines += ["", "| target (ours end to end) | measured | met |", "|---|---:|---|"]
        lines += [f"| {what} | {value} | {'yes' if ok else 'NO'} |" for what, ok, value in checks]
    return "\n".join(lines)


def run_benchmarks(
    frames: int = 200_000,
    repeat: int = 3,
    seed: int = 20_240_611,
    *,
    include_ccxt: bool = True,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Generate the workload, run every measurement and return the markdown report.

    This is what ``orderbook bench`` prints.  ``repeat`` below 3 is raised to 3.
    A 200,000-frame run takes a few minutes on a small machine.
    """
    repeat = max(3, repeat)
    say = progress or (lambda _message: None)
    say(f"generating {frames:,} frames (seed {seed})")
    workload = make_workload(frames, seed)
    entrants = contenders(include_ccxt)
    gc.collect()
    gc.freeze()  # the workload is the harness's, not the contenders' garbage
    try:
        results = measure_throughput(workload, entrants, repeat, progress=say)
        say("latency pass and exactness check")
        measure_latency(workload, entrants, results)
        say("reads")
        reads = measure_reads(workload, include_ccxt, after_frames=min(20_000, frames // 2))
    finally:
        gc.unfreeze()
    say("memory")
    memory = measure_memory(include_ccxt=include_ccxt)
    return machine_info() + "\n\n" + render(workload, results, reads, memory, repeat)
