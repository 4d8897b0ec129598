"""Export: a capture's books sampled into an Arrow table or a Parquet file.

The capture is replayed through the engine (:mod:`orderbook.record.replay`
or, for a session recording, :mod:`orderbook.record.session`) and sampled,
per symbol:

* **on change** (default): a row whenever a symbol's top ``levels`` levels
  change -- a frame that only touches deeper levels adds none -- and one
  row of nulls when its book becomes void (a gap, a lost connection...);
* **every** ``interval`` µs of receive time: at each multiple of the
  interval from the first event to the last, one row per symbol with its
  book as it was then (all events received at or before that time applied;
  nulls while the book is not synced).

Columns, one row per sample and symbol: ``symbol`` (dictionary-encoded),
``receive_time`` (the sample's receive time: the event's, or the grid
point's), ``engine_time`` (the venue's ``T`` of the book's last change),
``update_id`` (the book's last update id; both null for a void book), then
``bid_px_0..N-1``, ``bid_qty_0..N-1``, ``ask_px_0..N-1``, ``ask_qty_0..N-1``,
best first, null beyond the book.  Times are ``timestamp[us, UTC]``.

Prices and quantities are exact Arrow ``decimal128``: prices at the largest
number of price decimals of the books exported, quantities at the most
decimals a quantity exported was spelled with; precision 18 (stored as
Parquet INT64), or 38 when a value needs more digits.  With ``as_float``
they are ``float64`` instead (rounded; for analytics only).

How it runs: frames go to the engine in batches, its frame hook
(:meth:`Engine.receive`'s ``each``) showing the sampler the book after
every frame.  Each row is written by :meth:`OrderBook.write_levels` as
128-bit fixed-point integers at the scales seen so far into a reused buffer
(~0.2 µs for 10 levels a side); a larger scale rescales the rows buffered
in place; every :data:`BATCH_BYTES` the buffer becomes an Arrow batch
without a Python object per value (:mod:`orderbook.record.arrow`).  A
Parquet export streams its row groups to the file, rewriting it in wider
types should a later batch need more decimals or digits than rows already
written; memory stays at about one row group.  Figures: benchmarks/REPLAY.md.

``pyarrow`` is an optional dependency: ``pip install 'orderbook[research]'``.
Without it these functions raise :class:`~orderbook.errors.UsageError`
saying so.
"""

from __future__ import annotations

import difflib
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import UnknownSymbol, UsageError
from ..sync.engine import BookUpdated, Engine, EngineAction
from ..core.book import OrderBook
from ..sync.symbol import BookInvalidated, SymbolSync, SyncState
from ..sync.track import Track
from .arrow import ROW_GROUP_ROWS, BatchSink, LevelRows, ParquetSink, TableSink, empty_schema, level_batch
from .reader import CaptureReader
from .replay import Replay, planned_replay, survey
from .session import SessionReplay

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BATCH_BYTES",
    "ExportProgress",
    "ExportResult",
    "export_parquet",
    "export_table",
    "parse_interval",
]

BATCH_BYTES = 1 << 23
"""Bytes of levels buffered before they become Arrow columns (8 MiB, at most
16,384 rows: small enough for the allocator to reuse the memory of the
previous batch instead of faulting in fresh pages)."""
PROGRESS_EVERY = 8192
"""Events between two progress reports."""
INSTALL_HINT = "pip install 'orderbook[research]'"


def _arrow() -> ModuleType:
    """pyarrow, or a :class:`UsageError` saying how to get it."""
    try:
        import pyarrow
    except ImportError:
        raise UsageError(f"exporting needs pyarrow, which is not installed: {INSTALL_HINT}") from None
    module: ModuleType = pyarrow
    return module


@dataclass(slots=True)
class ExportProgress:
    """Where an export is: ``position`` of ``size`` bytes of the capture read
    (compressed bytes for gzip), ``events`` fed and ``rows`` sampled."""

    position: int
    size: int
    events: int
    rows: int


@dataclass(slots=True)
class ExportResult:
    """What :func:`export_parquet` wrote: ``rows``, the ``symbols``, the
    decimal ``price_scale`` / ``quantity_scale`` (``None`` with floats),
    the ``events`` replayed, the ``seconds`` it took and the ``rewrites``
    (times the file was rewritten in wider decimal types)."""

    path: Path
    rows: int
    symbols: list[str]
    price_scale: int | None
    quantity_scale: int | None
    events: int
    seconds: float
    rewrites: int = 0


def parse_interval(text: str) -> int:
    """A sampling interval in microseconds: ``250us`` (or ``µs``), ``100ms``,
    ``1s``, ``1.5s``, ``2m``, ``1h``.  Raises :class:`UsageError`."""
    units = (("us", 1), ("µs", 1), ("ms", 1_000), ("s", 1_000_000), ("m", 60_000_000),
             ("h", 3_600_000_000))
    for unit, factor in units:
        number = text.strip().removesuffix(unit)
        if number != text.strip() and number.replace(".", "", 1).isdigit():
            try:
                value = Decimal(number)
            except ArithmeticError:
                break
            micros = value * factor
            if value.is_finite() and micros >= 1 and micros == micros.to_integral_value():
                return int(micros)
            break
    raise UsageError(f"not an interval: {text!r} (a positive number of us, ms, s, m or h, "
                     "at least 1 us, e.g. 100ms)")


# ------------------------------------------------------------------ sampling
class _Sampler:
    """Rows of levels in a reused buffer (written by ``OrderBook.write_levels``
    at the scales seen so far), handed on as Arrow batches when it fills or
    when a larger scale turns up.  O(1) Python work per row."""

    def __init__(self, pa: ModuleType, engine: Engine | None, symbols: list[str], levels: int,
                 on_change: bool, as_float: bool, sink: BatchSink) -> None:
        self.pa = pa
        self.symbols = symbols
        self.index = {symbol: number for number, symbol in enumerate(symbols)}
        tracks = list(engine.tracks()) if engine else []
        self.tracks = tracks
        self.syncs = {track.name: track.sync for track in tracks}
        self.n = levels
        self.row_bytes = 64 * levels
        self.capacity = max(1, min(16_384, BATCH_BYTES // self.row_bytes))
        self.buffer = bytearray(self.row_bytes * self.capacity)
        self.view = memoryview(self.buffer)
        self.on_change = on_change
        self.as_float = as_float
        self.sink = sink
        self.rows = 0
        """Rows sampled in all."""
        self.price_scale = 0
        """The price scale of the rows buffered (the largest seen so far)."""
        self.quantity_scale = 0
        self._previous: dict[str, bytes | None] = {}
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.receive = array("q")
        self.engine_time = array("q")
        self.update_id = array("q")
        self.symbol = array("i")

    def hooks(self) -> tuple[Callable[[Engine, list[EngineAction], int], None],
                             Callable[[Track, int], None]]:
        """The replay's observer and frame hook on change: a row per change of
        a book's top levels.  The frame hook sees every frame (fed in
        batches); the observer every other input's actions (snapshots,
        disconnects, ticks).  The common case -- a synced book, the same
        scales -- is inlined, its names bound; anything else is :meth:`sample`."""
        tracks = self.tracks
        n, row_bytes, view, previous = self.n, self.row_bytes, self.view, self._previous
        buffer, synced, sample, index = self.buffer, SyncState.SYNCED, self.sample, self.index
        # per exported symbol, bound once: its machine, book, level writer and number
        states = {symbol: (sync, sync.book, sync.book.write_levels, index[symbol])
                  for symbol, sync in self.syncs.items() if symbol in index}
        by_track = {track: states[track.name] for track in tracks if track.name in states}

        def changed(symbol: str, state: tuple[SymbolSync, OrderBook, Any, int], now: int) -> None:
            """``symbol``'s book may have changed at ``now``: a row if its top did."""
            sync, book, write, number = state
            if sync.state is not synced:
                sample(symbol, now)
                return
            row_at(symbol, book, write, number, now)

        def row_at(symbol: str, book: OrderBook, write: Any, number: int, now: int) -> None:
            """A row of a synced book if its top changed (the common case inlined)."""
            count = self.count
            at = count * row_bytes
            price_scale, quantity_scale = self.price_scale, self.quantity_scale
            result = write(n, buffer, at, price_scale, quantity_scale)
            if result[2] > price_scale or result[3] > quantity_scale:
                sample(symbol, now)  # a larger scale: the general path
                return
            row = bytes(view[at:at + row_bytes])
            if row == previous.get(symbol):
                return
            previous[symbol] = row
            engine_time = book.timestamp
            self.receive.append(now)
            self.engine_time.append(-1 if engine_time is None else engine_time)
            self.update_id.append(book.last_update_id)  # type: ignore[arg-type]
            self.symbol.append(number)
            self.count = count + 1
            self.rows += 1
            if count + 1 == self.capacity:
                self.flush()

        def observe(engine: Engine, actions: list[EngineAction], now: int) -> None:
            for action in actions:
                kind = type(action)
                if kind is BookUpdated or kind is BookInvalidated:
                    symbol = action.symbol  # type: ignore[union-attr]
                    state = states.get(symbol)
                    if state is not None:  # replayed, maybe not exported (a session replays all)
                        changed(symbol, state, now)

        def on_frame(track: Track, now: int) -> None:
            state = by_track.get(track)
            if state is None:
                return
            sync, book, write, number = state
            if sync.state is synced:
                row_at(sync.symbol, book, write, number, now)
            elif type(previous.get(sync.symbol)) is bytes:
                sample(sync.symbol, now)  # void since this frame: a row of nulls
            # else void already (or never synced): frames buffered for a snapshot

        return observe, on_frame

    def sample(self, symbol: str, now: int) -> None:
        """One row of ``symbol``'s book at receive time ``now`` (on change:
        only if its top levels differ from the previous row's)."""
        sync = self.syncs[symbol]
        at = self.count * self.row_bytes
        if sync.state is not SyncState.SYNCED:
            if self.on_change and self._previous.get(symbol, b"") is None:
                return  # still void
            self.buffer[at:at + self.row_bytes] = bytes(self.row_bytes)
            self._previous[symbol] = None
            self._append(symbol, now, -1, -1)
            return
        book = sync.book
        _bids, _asks, price_scale, quantity_scale = book.write_levels(
            self.n, self.buffer, at, self.price_scale, self.quantity_scale)
        if price_scale > self.price_scale or quantity_scale > self.quantity_scale:
            wider = max(price_scale, self.price_scale), max(quantity_scale, self.quantity_scale)
            if not self._rescale(*wider):
                self.flush()  # the rows so far keep their scales; later ones get the larger
                at = 0
            self.price_scale, self.quantity_scale = wider
            book.write_levels(self.n, self.buffer, at, self.price_scale, self.quantity_scale)
        if self.on_change:
            row = bytes(self.view[at:at + self.row_bytes])
            if row == self._previous.get(symbol):
                return
            self._previous[symbol] = row
        engine_time = book.timestamp
        self._append(symbol, now, -1 if engine_time is None else engine_time,
                     book.last_update_id)  # type: ignore[arg-type]

    def _rescale(self, price_scale: int, quantity_scale: int) -> bool:
        """Bring the buffered rows, and each symbol's previous row (which
        on-change compares with), to the larger scales in place: one batch of
        one type, no cast later.  False, with nothing changed, when a value
        would not stay below 2**63 (the caller flushes instead).  O(rows)."""
        import numpy as np

        factors = (10 ** (price_scale - self.price_scale),
                   10 ** (quantity_scale - self.quantity_scale))
        # value (lo, hi) int64 pairs: level, (price, quantity), (lo, hi)
        buffered = np.frombuffer(self.buffer, dtype=np.int64,
                                 count=self.count * self.row_bytes // 8).reshape(-1, 2, 2)
        previous = {symbol: np.frombuffer(row, dtype=np.int64).reshape(-1, 2, 2).copy()
                    for symbol, row in self._previous.items() if row is not None}
        blocks = [buffered, *previous.values()]
        for block in blocks:
            for kind, factor in enumerate(factors):
                low, high = block[:, kind, 0], block[:, kind, 1]
                if factor > 1 and (high.any() or (low < 0).any()
                                   or (low > (2**63 - 1) // factor).any()):
                    return False
        for block in blocks:
            for kind, factor in enumerate(factors):
                if factor > 1:
                    block[:, kind, 0] *= factor
        for symbol, values in previous.items():
            self._previous[symbol] = values.tobytes()  # the dict the hooks hold, updated
        return True

    def _append(self, symbol: str, now: int, engine_time: int, update_id: int) -> None:
        self.receive.append(now)
        self.engine_time.append(engine_time)
        self.update_id.append(update_id)
        self.symbol.append(self.index[symbol])
        self.count += 1
        self.rows += 1
        if self.count == self.capacity:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows on as one Arrow batch."""
        if self.count:
            storage = self.sink.storage(self.count * self.row_bytes)
            self.sink.add(level_batch(self.pa, LevelRows(
                self.buffer, self.count, self.n, self.price_scale, self.quantity_scale, self.symbols,
                self.symbol, self.receive, self.engine_time, self.update_id), self.as_float,
                storage), storage)
        self._reset()


@dataclass(slots=True)
class _Plan:
    symbols: list[str]
    replay: Replay | SessionReplay
    sampler: _Sampler
    reader: CaptureReader
    every: int | None
    progress: Callable[[ExportProgress], None] | None
    events: int = 0
    started: float = field(default_factory=time.perf_counter)


def _plan(pa: ModuleType, capture: str | Path, symbol: str | None, levels: int, every: int | None,
          as_float: bool, progress: Callable[[ExportProgress], None] | None,
          sink: BatchSink) -> _Plan:
    if levels < 1:
        raise UsageError(f"levels must be >= 1, got {levels}")
    if every is not None and every < 1:
        raise UsageError(f"the sampling interval must be >= 1 us, got {every}")
    found = survey(capture)
    exported = found.symbols
    if symbol is not None:
        if symbol not in found.symbols:
            raise UnknownSymbol(symbol, difflib.get_close_matches(symbol, found.symbols))
        exported = [symbol]
    replay = planned_replay(found)  # a session replays every symbol, to be exact
    if isinstance(replay, Replay) and exported != found.symbols:
        found.symbols = exported  # a replay that follows the file needs only the one
        replay = planned_replay(found)
    reader = CaptureReader(capture)
    sampler = _Sampler(pa, replay.engine, exported, levels, every is None, as_float, sink)
    if every is None:
        replay.observer, replay.on_frame = sampler.hooks()
    return _Plan(exported, replay, sampler, reader, every, progress)


def _run(plan: _Plan) -> None:
    """Replay the capture event by event, sampling as planned."""
    replay, sampler, reader, every = plan.replay, plan.sampler, plan.reader, plan.every
    progress = plan.progress
    symbols = plan.symbols if replay.engine is not None else []
    if progress is not None:
        reader.progress_every = PROGRESS_EVERY
        reader.progress = lambda read: progress(
            ExportProgress(read.position(), read.size, read.lines, sampler.rows))
    tick: int | None = None

    def clock(ts: int) -> None:
        """Before each event: the grid points before it."""
        nonlocal tick
        assert every is not None
        if tick is None:
            tick = -(-ts // every) * every  # the first grid point at or after the first event
        while tick < ts:
            for symbol in symbols:
                sampler.sample(symbol, tick)
            tick += every

    if every is not None:
        replay.clock = clock
    result = replay.run(reader)
    last = result.last_ts
    if every is not None and tick is not None and last is not None:
        while tick <= last:
            for symbol in symbols:
                sampler.sample(symbol, tick)
            tick += every
    sampler.flush()
    plan.events = result.events
    if progress is not None:
        progress(ExportProgress(reader.size, reader.size, result.events, sampler.rows))


def _scales(schema: Any, as_float: bool) -> tuple[int | None, int | None]:
    if as_float:
        return None, None
    quantity = next(name for name in schema.names if "_qty_" in name)
    return schema.field(4).type.scale, schema.field(quantity).type.scale


# ---------------------------------------------------------------- the calls
def export_table(capture: str | Path, *, symbol: str | None = None, levels: int = 10,
                 every: int | None = None, as_float: bool = False,
                 progress: Callable[[ExportProgress], None] | None = None) -> pa.Table:
    """The sampled books of ``capture`` as a ``pyarrow.Table`` (see the
    module docstring; ``table.to_pandas()`` or ``polars.from_arrow(table)``
    from there).

    ``symbol``: only that one (:class:`UnknownSymbol` when the capture has
    none of it); ``levels``: per side; ``every``: the sampling interval in µs
    (``None``: on change, see :func:`parse_interval`); ``as_float``: float64
    instead of decimals; ``progress``: told an :class:`ExportProgress` now
    and then.  Raises :class:`UsageError` without pyarrow, and what
    :func:`~orderbook.record.replay.replay_capture` raises for a file that is
    no capture.  Cost: one replay plus ~1-2 µs per row; memory: the table.
    """
    pa = _arrow()
    sink = TableSink(pa)
    plan = _plan(pa, capture, symbol, levels, every, as_float, progress, sink)
    _run(plan)
    return sink.table(empty_schema(pa, levels, as_float))


def export_parquet(capture: str | Path, output: str | Path, *, symbol: str | None = None,
                   levels: int = 10, every: int | None = None, as_float: bool = False,
                   progress: Callable[[ExportProgress], None] | None = None,
                   compression: str = "zstd", row_group_rows: int = ROW_GROUP_ROWS) -> ExportResult:
    """Write the sampled books of ``capture`` (as :func:`export_table`) to the
    Parquet file ``output`` (replaced if it exists, only once complete).

    Streams: memory stays at about one row group (``row_group_rows`` rows)
    whatever the capture's length; decimals of precision 18 are stored as
    Parquet INT64; ``compression`` is any pyarrow codec.  Returns an
    :class:`ExportResult`; raises as :func:`export_table`.  Cost: one replay
    plus ~2 µs per row.
    """
    pa = _arrow()
    if row_group_rows < 1:
        raise UsageError(f"row_group_rows must be >= 1, got {row_group_rows}")
    sink = ParquetSink(pa, Path(output), compression, row_group_rows)
    try:
        plan = _plan(pa, capture, symbol, levels, every, as_float, progress, sink)
        _run(plan)
        sink.close(empty_schema(pa, levels, as_float))
    except BaseException:
        sink.abort()
        raise
    schema = sink.schema
    price_scale, quantity_scale = _scales(schema, as_float)
    return ExportResult(Path(output), plan.sampler.rows, plan.symbols, price_scale, quantity_scale,
                        plan.events, time.perf_counter() - plan.started, sink.rewrites)
