"""Arrow batches of book levels, and where they go: a table or a Parquet file.

The export (:mod:`orderbook.record.export`) writes each row of levels with
:meth:`OrderBook.write_levels` as 128-bit fixed-point integers into a row
buffer; :func:`level_batch` turns a buffer of rows into an Arrow record batch
without a Python object per value: numpy transposes the rows into columns
(one copy) and each column's memory becomes a ``decimal128`` array as is.

Types.  A batch's decimals have the scales its rows were written at (the
largest price and quantity decimals seen so far) and precision 18, or 38
when a value needs more digits (precision 18 is stored as Parquet INT64).
Scales and precisions only grow, so a batch from before a growth is cast to
the later types exactly (:func:`widen`).  With floats the values are
computed from the integers (correctly rounded below 2**53).

:class:`TableSink` keeps the batches and returns one table;
:class:`ParquetSink` streams them to a file in row groups of about
:data:`ROW_GROUP_ROWS` rows and, when a batch needs wider types than the file
has, rewrites what it wrote so far with the wider types (rare: the first
batches show the decimals a market uses), so its memory stays at one row
group whatever the length of the capture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

__all__ = [
    "BatchSink", "LevelRows", "ParquetSink", "ROW_GROUP_ROWS", "TableSink", "column_names", "conform",
    "empty_schema", "level_batch", "widen",
]

ROW_GROUP_ROWS = 65_536
"""Rows per Parquet row group (about)."""
_NARROW = 18
_WIDE = 38
_TWO_64 = 18446744073709551616.0


@dataclass(slots=True)
class LevelRows:
    """Rows of a sampler, ready for :func:`level_batch`: ``levels`` is the
    row buffer (``64 * n`` bytes per row, see :meth:`OrderBook.write_levels`),
    ``count`` its rows, written at ``price_scale`` / ``quantity_scale``; the
    other fields are one value per row (-1: null)."""

    levels: bytearray
    count: int
    n: int
    price_scale: int
    quantity_scale: int
    symbols: list[str]
    symbol: Any
    receive: Any
    engine_time: Any
    update_id: Any


def column_names(n: int) -> list[str]:
    """The columns of an export of ``n`` levels per side."""
    return ["symbol", "receive_time", "engine_time", "update_id",
            *(f"{side}_{value}_{rank}" for side in ("bid", "ask") for value in ("px", "qty")
              for rank in range(n))]


def level_batch(pa: ModuleType, rows: LevelRows, as_float: bool, storage: Any = None) -> Any:
    """The rows as one Arrow record batch, its level columns in ``storage``
    (an Arrow buffer of at least ``64 * n`` bytes a row, which the batch then
    uses; ``None``: a new one).  Cost: one copy of the levels (~0.1 µs a row
    of 10 levels a side into memory touched before, ~1 µs into fresh pages)
    and O(columns) numpy calls."""
    import numpy as np

    count, n = rows.count, rows.n
    levels = np.frombuffer(rows.levels, dtype=np.int64, count=count * 64 * n // 8)
    # row, value (n bid (px, qty) pairs, then n ask pairs), (low, high) -> value, row, (low, high)
    # Moved as 16-byte items (twice as fast as int64 pairs) into memory of
    # Arrow's pool or the sink's (fresh pages from numpy cost ~1.5 µs a row in
    # first-touch faults, memory touched before ~0.1 µs).
    if storage is None:
        storage = pa.allocate_buffer(count * 64 * n)
    items = np.frombuffer(storage, dtype="V16", count=count * 4 * n).reshape(4 * n, count)
    np.copyto(items, levels.view("V16").reshape(count, 4 * n).T)
    columns = items.view(np.int64).reshape(4 * n, count, 2)
    prices = columns[0::2]
    present = (prices[:, :, 0] != 0) | (prices[:, :, 1] != 0)  # a level has a price > 0
    nulls = count - np.count_nonzero(present, axis=1)
    scales = (rows.price_scale, rows.quantity_scale)
    if as_float:
        types = (pa.float64(), pa.float64())
    else:
        types = tuple(pa.decimal128(_WIDE if _largest(block) >= 10**_NARROW else _NARROW, scale)
                      for block, scale in ((prices, scales[0]), (columns[1::2], scales[1])))
    arrays: dict[str, Any] = {}
    for side_number, side in enumerate(("bid", "ask")):
        for rank in range(n):
            level = side_number * n + rank
            missing = int(nulls[level])
            bitmap = pa.py_buffer(np.packbits(present[level], bitorder="little")) if missing else None
            for offset, kind in enumerate(("px", "qty")):
                data = columns[2 * level + offset]
                if as_float:
                    data = (data[:, 1].astype(np.float64) * _TWO_64
                            + data[:, 0].view(np.uint64).astype(np.float64)) / 10.0 ** scales[offset]
                arrays[f"{side}_{kind}_{rank}"] = pa.Array.from_buffers(
                    types[offset], count, [bitmap, pa.py_buffer(data)], null_count=missing)
    symbols = pa.DictionaryArray.from_arrays(
        pa.array(np.frombuffer(rows.symbol, dtype=np.int32)), pa.array(rows.symbols, pa.string()))
    when = pa.timestamp("us", tz="UTC")
    engine_time = np.frombuffer(rows.engine_time, dtype=np.int64)
    update_id = np.frombuffer(rows.update_id, dtype=np.int64)
    head = [symbols, pa.array(np.frombuffer(rows.receive, dtype=np.int64), when),
            pa.array(engine_time, when, mask=engine_time < 0),
            pa.array(update_id, pa.int64(), mask=update_id < 0)]
    names = column_names(n)
    return pa.RecordBatch.from_arrays(head + [arrays[name] for name in names[4:]],
                                      schema=_schema(pa, names, types[0], types[1]))


def _largest(block: Any) -> int:
    """The largest of non-negative 128-bit integers stored as (low, high)
    int64 pairs along the last axis of ``block``."""
    low, high = block[..., 0], block[..., 1]
    if not low.size:
        return 0
    wide = (high != 0) | (low < 0)
    if not wide.any():
        return int(low.max())
    values = [(int(h) << 64) | (int(lo) & (2**64 - 1)) for lo, h in zip(low[wide], high[wide])]
    return max([int(low[~wide].max()) if (~wide).any() else 0, *values])


def _schema(pa: ModuleType, names: list[str], price: Any, quantity: Any) -> Any:
    when = pa.timestamp("us", tz="UTC")
    fields = [pa.field("symbol", pa.dictionary(pa.int32(), pa.string()), nullable=False),
              pa.field("receive_time", when, nullable=False), pa.field("engine_time", when),
              pa.field("update_id", pa.int64())]
    fields += [pa.field(name, price if "_px_" in name else quantity) for name in names[4:]]
    return pa.schema(fields)


def widen(pa: ModuleType, schema: Any, other: Any) -> Any:
    """The schema whose decimals hold both: the larger scale and precision of
    each kind (floats stay floats)."""
    names = schema.names
    quantity_name = next(name for name in names if "_qty_" in name)
    return _schema(pa, names, _wider(pa, schema.field(4).type, other.field(4).type),
                   _wider(pa, schema.field(quantity_name).type, other.field(quantity_name).type))


def _wider(pa: ModuleType, a: Any, b: Any) -> Any:
    if pa.types.is_floating(a):
        return a
    return pa.decimal128(max(a.precision, b.precision), max(a.scale, b.scale))


def conform(pa: ModuleType, batch: Any, schema: Any) -> Any:
    """``batch`` in ``schema``'s types (exact: only ever to wider decimals)."""
    if batch.schema.equals(schema):
        return batch
    columns = [batch.column(i) if batch.schema.field(i).type == schema.field(i).type
               else batch.column(i).cast(schema.field(i).type, safe=True)
               for i in range(batch.num_columns)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class BatchSink(Protocol):
    """Where the export's batches go (:class:`TableSink`, :class:`ParquetSink`)."""

    def storage(self, size: int) -> Any:
        """A buffer of at least ``size`` bytes for the next batch's levels."""

    def add(self, batch: Any, storage: Any = None) -> None:
        """Take ``batch``, whose levels are in ``storage``."""


class TableSink:
    """Keeps every batch; :meth:`table` casts the earlier ones to the final
    types and returns one ``pyarrow.Table``."""

    def __init__(self, pa: ModuleType) -> None:
        self.pa = pa
        self.batches: list[Any] = []
        self.schema: Any = None

    def storage(self, size: int) -> Any:
        """A new buffer of ``size`` bytes for a batch's levels (kept with it)."""
        return self.pa.allocate_buffer(size)

    def add(self, batch: Any, storage: Any = None) -> None:
        """Keep ``batch``."""
        self.schema = batch.schema if self.schema is None else widen(self.pa, self.schema, batch.schema)
        self.batches.append(batch)

    def table(self, empty: Any) -> Any:
        """Every batch in the final types (``empty``: the schema when there are none)."""
        schema = self.schema if self.schema is not None else empty
        return self.pa.Table.from_batches([conform(self.pa, b, schema) for b in self.batches],
                                          schema=schema)


class ParquetSink:
    """Streams batches to the Parquet file ``path`` (written to a temporary
    file beside it, renamed by :meth:`close`; removed by :meth:`abort`)."""

    def __init__(self, pa: ModuleType, path: Path, compression: str,
                 row_group_rows: int = ROW_GROUP_ROWS) -> None:
        import pyarrow.parquet as pq

        self.pa, self.pq = pa, pq
        self.path = path
        self.compression = compression
        self.row_group_rows = row_group_rows
        self.schema: Any = None
        self.partial: Path | None = None
        self.writer: Any = None
        self.pending: list[Any] = []
        self.pending_rows = 0
        self._storages: list[Any] = []
        """The level buffers of the pending batches."""
        self._free: list[Any] = []
        """Level buffers of batches written out, for the next ones."""
        self.rewrites = 0
        """Times the file was rewritten with wider types."""

    def storage(self, size: int) -> Any:
        """A buffer of at least ``size`` bytes for a batch's levels: one that
        a batch already written used, when there is one (no page faults)."""
        while self._free:
            buffer = self._free.pop()
            if buffer.size >= size:
                return buffer
        return self.pa.allocate_buffer(size)

    def add(self, batch: Any, storage: Any = None) -> None:
        """Queue ``batch`` (its levels in ``storage``, from :meth:`storage`,
        reused once the batch is written); a row group is written every
        ``row_group_rows`` rows.
        The file is opened with the first row group: until then a wider
        batch only widens the schema (the first rows, whose scales usually
        grow, cost no rewrite)."""
        if self.schema is None:
            self.schema = batch.schema
        elif not batch.schema.equals(self.schema):
            wider = widen(self.pa, self.schema, batch.schema)
            if not wider.equals(self.schema):
                if self.writer is None:
                    self.schema = wider
                else:
                    self._rewrite(wider)
        self.pending.append(batch)
        if storage is not None:
            self._storages.append(storage)
        self.pending_rows += batch.num_rows
        if self.pending_rows >= self.row_group_rows:
            self._write()

    def _open(self, schema: Any) -> None:
        self.schema = schema
        self.partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.{self.rewrites}.partial")
        # dictionary pages only for the symbol: for the levels they cost a third
        # of the writing time and make the file bigger, not smaller
        self.writer = self.pq.ParquetWriter(self.partial, schema, compression=self.compression,
                                            store_decimal_as_integer=True, use_dictionary=["symbol"])

    def _write(self) -> None:
        if self.writer is None:
            self._open(self.schema)
        if self.pending:
            batches = [conform(self.pa, batch, self.schema) for batch in self.pending]
            self.writer.write_table(self.pa.Table.from_batches(batches, schema=self.schema))
            del batches
        self.pending, self.pending_rows = [], 0
        self._free += self._storages  # nothing refers to the batches written any more
        self._storages = []

    def _rewrite(self, schema: Any) -> None:
        """Copy what was written into a new file of the wider ``schema``."""
        self.writer.close()
        old = self.partial
        assert old is not None
        self.rewrites += 1
        self._open(schema)
        for group in self.pq.ParquetFile(old).iter_batches(batch_size=self.row_group_rows):
            self.writer.write_batch(conform(self.pa, group, schema))
        old.unlink()

    def close(self, empty: Any) -> None:
        """Write what is queued and put the file in place (``empty``: the schema
        of a file without rows)."""
        if self.schema is None:
            self.schema = empty
        self._write()
        self.writer.close()
        assert self.partial is not None
        os.replace(self.partial, self.path)
        self.partial = None

    def abort(self) -> None:
        """Remove the temporary file."""
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # closed already, or the failure itself
                pass
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)


def empty_schema(pa: ModuleType, n: int, as_float: bool) -> Any:
    """The schema of an export without rows."""
    value = pa.float64() if as_float else pa.decimal128(_NARROW, 0)
    return _schema(pa, column_names(n), value, value)

