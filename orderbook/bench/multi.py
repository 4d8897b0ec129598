"""The many-books workload: 100 symbols, their frames interleaved.

One book fits in the CPU caches; a hundred do not, and a replica of a whole
venue keeps a hundred.  :func:`make_multi_workload` builds ``symbols``
independent one-book workloads (:func:`~orderbook.bench.harness.make_workload`,
one seed each) and interleaves their frames round robin -- the least cache
friendly order.  The contenders keep every book from the same frames:

* :class:`EngineMulti` -- :class:`~orderbook.sync.engine.Engine.receive`, one
  frame at a time (``batch=1``) or a socket read's worth at a time, reading the
  touch of every book that changed;
* :class:`SyncMulti` -- ``parse_frame`` routed by symbol to a
  :class:`~orderbook.sync.symbol.SymbolSync` each, touch read after each frame;
* :class:`ReferenceMulti` -- the reference style (``orjson`` + one
  ``SortedDict[Decimal]`` per side per symbol), touch read after each frame.

:func:`measure_multi` times them side by side (interleaved chunks, process
CPU time) beside the same contenders on one book, and checks every final book
against the truth.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from sortedcontainers import SortedDict

from ..protocol.wire import parse_frame, parse_snapshot
from ..sync.engine import BookUpdated, Engine, EngineOptions, FetchSnapshot
from ..sync.symbol import SymbolSync, SyncState
from .contenders import reference_apply
from .workload import Workload, make_workload

__all__ = [
    "EngineMulti",
    "MultiWorkload",
    "ReferenceMulti",
    "SyncMulti",
    "make_multi_workload",
    "measure_multi",
    "render_multi",
]


@dataclass(slots=True)
class MultiWorkload:
    """``books`` one-book workloads and their frames interleaved round robin."""

    books: list[Workload]
    frames: list[bytes]

    @property
    def symbols(self) -> list[str]:
        """The symbols, in order."""
        return [w.symbol for w in self.books]


def make_multi_workload(symbols: int = 100, frames_per_symbol: int = 2000, seed: int = 20_240_611,
                        depth: int = 1000) -> MultiWorkload:
    """``symbols`` seeded books of ``depth`` levels a side and
    ``frames_per_symbol`` frames each, interleaved.  Deterministic."""
    books = [make_workload(frames_per_symbol, seed + index, depth=depth, symbol=f"B{index:03d}_USDC")
             for index in range(symbols)]
    frames = [book.frames[k] for k in range(frames_per_symbol) for book in books]
    return MultiWorkload(books, frames)


class EngineMulti:
    """The engine: ``Engine.receive`` on ``batch`` frames at a time."""

    exact = True

    def __init__(self, batch: int = 1) -> None:
        self.batch = batch
        self.name = f"ours: Engine.receive, {batch} frame{'s' if batch > 1 else ''} per call"

    def setup(self, work: MultiWorkload) -> None:
        engine = Engine(work.symbols, EngineOptions(seed=0))
        engine.connected(0)
        fetches = [a for a in engine.subscribed(engine.streams, 0) if isinstance(a, FetchSnapshot)]
        raw = {w.symbol: w.snapshot_raw for w in work.books}
        for fetch in fetches:
            engine.snapshot(fetch.ticket, raw[fetch.symbol], 0)
        assert all(t.sync.state is SyncState.SYNCED for t in engine.tracks())
        self.engine = engine

    def run(self, frames: Sequence[bytes]) -> None:
        receive, book = self.engine.receive, self.engine.book
        batch = self.batch
        for at in range(0, len(frames), batch):
            for action in receive(frames[at: at + batch] if batch > 1 else frames[at], 1):
                if type(action) is BookUpdated:
                    b = book(action.symbol)
                    b.best_bid()
                    b.best_ask()

    def book(self, symbol: str) -> tuple[list[Any], list[Any], int | None]:
        b = self.engine.book(symbol)
        return b.bids(), b.asks(), b.last_update_id


class SyncMulti:
    """``parse_frame`` routed by symbol to one ``SymbolSync`` each."""

    name = "ours: parse_frame + SymbolSync per symbol"
    exact = True

    def setup(self, work: MultiWorkload) -> None:
        self.syncs: dict[str, SymbolSync] = {}
        for w in work.books:
            sync = SymbolSync(w.symbol)
            sync.start()
            sync.receive_snapshot(parse_snapshot(w.snapshot_raw, w.symbol), limit=1000)
            self.syncs[w.symbol] = sync

    def run(self, frames: Sequence[bytes]) -> None:
        syncs, parse = self.syncs, parse_frame
        for raw in frames:
            event = parse(raw, validate_levels=False)
            sync = syncs[event.symbol]  # type: ignore[union-attr]
            sync.receive_frame(event)  # type: ignore[arg-type]
            sync.book.best_bid()
            sync.book.best_ask()

    def book(self, symbol: str) -> tuple[list[Any], list[Any], int | None]:
        b = self.syncs[symbol].book
        return b.bids(), b.asks(), b.last_update_id


class ReferenceMulti:
    """The reference style, one pair of ``SortedDict[Decimal]`` per symbol."""

    name = "reference style: orjson + SortedDict[Decimal] per symbol"
    exact = True

    def setup(self, work: MultiWorkload) -> None:
        self.books: dict[str, list[Any]] = {}
        for w in work.books:
            body = orjson.loads(w.snapshot_raw)
            self.books[w.symbol] = [
                SortedDict({Decimal(p): Decimal(q) for p, q in body["bids"] if Decimal(q)}),
                SortedDict({Decimal(p): Decimal(q) for p, q in body["asks"] if Decimal(q)}),
                int(body["lastUpdateId"]),
            ]

    def run(self, frames: Sequence[bytes]) -> None:
        loads, books = orjson.loads, self.books
        for raw in frames:
            data = loads(raw)["data"]
            entry = books[data["s"]]
            bids, asks = entry[0], entry[1]
            entry[2] = reference_apply(bids, asks, data, entry[2])
            _ = bids.peekitem(-1) if bids else None
            _ = asks.peekitem(0) if asks else None

    def book(self, symbol: str) -> tuple[list[Any], list[Any], int | None]:
        bids, asks, last = self.books[symbol]
        return list(reversed(bids.items())), list(asks.items()), last


Contender = EngineMulti | SyncMulti | ReferenceMulti


@dataclass(slots=True)
class MultiResult:
    """CPU seconds per repetition of one contender on one workload."""

    name: str
    frames: int
    seconds: list[float] = field(default_factory=list)

    @property
    def us_per_frame(self) -> float:
        """Median CPU µs per frame."""
        return statistics.median(self.seconds) / self.frames * 1e6


def _check(contender: Contender, work: MultiWorkload) -> None:
    for w in work.books:
        bids, asks, last = contender.book(w.symbol)
        if bids != w.final_bids or asks != w.final_asks:
            raise AssertionError(f"{contender.name}: {w.symbol} differs from the truth")


def _time(work: MultiWorkload, entrants: Sequence[Contender], repeat: int, chunk: int,
          results: dict[str, MultiResult]) -> None:
    frames = work.frames
    for _ in range(repeat):
        spent = dict.fromkeys((c.name for c in entrants), 0.0)
        for contender in entrants:
            contender.setup(work)
        gc.collect()
        for index, at in enumerate(range(0, len(frames), chunk)):
            part = frames[at: at + chunk]
            shift = index % len(entrants)
            for contender in [*entrants[shift:], *entrants[:shift]]:
                start = time.process_time()
                contender.run(part)
                spent[contender.name] += time.process_time() - start
        for contender in entrants:
            _check(contender, work)
            results[contender.name].seconds.append(spent[contender.name])


def measure_multi(symbols: int = 100, frames_per_symbol: int = 2000, repeat: int = 5,
                  seed: int = 20_240_611, progress: Callable[[str], None] | None = None,
                  ) -> dict[str, dict[str, MultiResult]]:
    """Time every contender on the interleaved many-books workload and on one
    book with as many frames, side by side.  Returns ``{"many": ..., "one": ...}``."""
    say = progress or (lambda _m: None)
    say(f"generating {symbols} books x {frames_per_symbol:,} frames")
    many = make_multi_workload(symbols, frames_per_symbol, seed)
    one = make_multi_workload(1, symbols * frames_per_symbol, seed)
    out: dict[str, dict[str, MultiResult]] = {}
    gc.collect()
    gc.freeze()
    try:
        for label, work in (("many", many), ("one", one)):
            entrants: list[Contender] = [EngineMulti(1), EngineMulti(32), SyncMulti(), ReferenceMulti()]
            results = {c.name: MultiResult(c.name, len(work.frames)) for c in entrants}
            say(f"{label}: {len(work.books)} book(s), {len(work.frames):,} frames")
            _time(work, entrants, repeat, 10_000, results)
            out[label] = results
    finally:
        gc.unfreeze()
    return out


def render_multi(results: dict[str, dict[str, MultiResult]], symbols: int) -> str:
    """The markdown table of :func:`measure_multi`."""
    many, one = results["many"], results["one"]
    reference = many[ReferenceMulti.name].us_per_frame
    lines = [
        f"| contender | µs/frame, {symbols} books interleaved | µs/frame, one book | many / one | "
        "reference / contender (many) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in many.items():
        single = one[name].us_per_frame
        lines.append(f"| {name} | {result.us_per_frame:.2f} | {single:.2f} | "
                     f"{result.us_per_frame / single:.2f}x | {reference / result.us_per_frame:.2f}x |")
    engine = EngineMulti(1).name
    speedup = reference / many[engine].us_per_frame
    locality = many[engine].us_per_frame / one[engine].us_per_frame
    lines += ["", f"| target (the engine, {symbols} books interleaved) | measured | met |", "|---|---:|---|",
              f"| >= 2.5x the reference style on the same frames | {speedup:.2f}x | "
              f"{'yes' if speedup >= 2.5 else 'NO'} |",
              f"| <= 1.8x its own one-book cost per frame | {locality:.2f}x | "
              f"{'yes' if locality <= 1.8 else 'NO'} |"]
    return "\n".join(lines)
