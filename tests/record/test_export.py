"""orderbook.record.export: sampled books as Arrow tables and Parquet files.

Rows equal the engine's book at their update ids (spot-checked against
``replay --at``), the last row of each symbol is its final book, decimals
are exact at the scales of the data, nulls beyond the book, grid sampling
equals ``replay --at-time``, a growing scale rewrites the Parquet file in
wider types, and without pyarrow the message says how to get it.
"""

from __future__ import annotations

import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

pa = pytest.importorskip("pyarrow")  # the research extra; CI installs it with the test extra
pq = pytest.importorskip("pyarrow.parquet")

from orderbook import UnknownSymbol, UsageError  # noqa: E402
import orderbook.record.export as export_module  # noqa: E402
from orderbook.record.export import export_parquet, export_table, parse_interval  # noqa: E402
from orderbook.record.format import CaptureWriter  # noqa: E402
from orderbook.record.reader import read_capture  # noqa: E402
from orderbook.record.upgrade import upgrade_capture  # noqa: E402
from orderbook.record.replay import replay_capture  # noqa: E402
from paths import CAPTURES, FIXTURES, REPO  # noqa: E402

FIXTURE = FIXTURES / "small-capture.jsonl"
REAL = sorted(CAPTURES.glob("*.jsonl"))
needs_captures = pytest.mark.skipif(not REAL, reason=f"no real captures in {CAPTURES}")


def levels_of(row: dict[str, Any], n: int) -> tuple[list[Any], list[Any]]:
    """A row's (bids, asks) as (price, qty) pairs, nulls dropped."""
    sides = []
    for side in ("bid", "ask"):
        pairs = [(row[f"{side}_px_{k}"], row[f"{side}_qty_{k}"]) for k in range(n)]
        assert all((p is None) == (q is None) for p, q in pairs)
        present = [pair for pair in pairs if pair[0] is not None]
        assert pairs[len(present):] == [(None, None)] * (n - len(present))  # null only beyond the book
        sides.append(present)
    return sides[0], sides[1]


def rows_by_symbol(table: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        out.setdefault(row["symbol"], []).append(row)
    return out


@needs_captures
@pytest.mark.parametrize("source", REAL, ids=lambda p: p.name)
def test_the_last_row_of_each_symbol_is_its_final_book(source: Path, tmp_path: Path) -> None:
    """The acceptance check: --levels 10 --on-change of the real captures."""
    out = tmp_path / "out.parquet"
    result = export_parquet(source, out, levels=10)
    table = pq.read_table(out)
    assert table.num_rows == result.rows > 0
    final = replay_capture(source)
    by_symbol = rows_by_symbol(table)
    assert sorted(by_symbol) == sorted(final.machines)
    for symbol, machine in final.machines.items():
        last = by_symbol[symbol][-1]
        assert levels_of(last, 10) == (machine.book.bids(10), machine.book.asks(10)), symbol
        assert last["update_id"] <= machine.book.last_update_id


@needs_captures
def test_rows_equal_the_engines_book_at_their_update_ids(tmp_path: Path) -> None:
    """Spot checks: a row's levels are the book `replay --at` gives at its id
    (in-process for many rows, through the command line for a few)."""
    source = REAL[0]
    table = export_table(source, levels=5)
    rows = [r for r in table.to_pylist() if r["update_id"] is not None]
    rng = random.Random(3)
    picks = rng.sample(rows, 25)
    for row in picks:
        machine = replay_capture(source, at=row["update_id"]).machines[row["symbol"]]
        assert machine.book.last_update_id == row["update_id"]
        assert levels_of(row, 5) == (machine.book.bids(5), machine.book.asks(5))
    for row in picks[:3]:
        done = subprocess.run([sys.executable, "-m", "orderbook.cli", "replay", str(source), "--json",
                               "--at", str(row["update_id"]), "--symbol", row["symbol"]],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr
        book = orjson.loads(done.stdout)["symbols"][row["symbol"]]
        bids, asks = levels_of(row, 5)
        assert book["last_update_id"] == row["update_id"]
        assert [[Decimal(p), Decimal(q)] for p, q in book["bids"][:5]] == [list(pair) for pair in bids]
        assert [[Decimal(p), Decimal(q)] for p, q in book["asks"][:5]] == [list(pair) for pair in asks]


@needs_captures
def test_on_change_rows_are_the_changes_of_the_top_levels(tmp_path: Path) -> None:
    source = REAL[0]
    table = export_table(source, levels=3)
    for symbol, rows in rows_by_symbol(table).items():
        tops = [levels_of(row, 3) for row in rows]
        assert all(a != b for a, b in zip(tops, tops[1:])), symbol  # no row repeats the previous
        times = [row["receive_time"] for row in rows]
        assert times == sorted(times)
    assert table.num_rows < len(list(read_capture(source)))  # frames deep in the book add no row


def test_decimals_are_exact_at_the_scales_of_the_data_and_null_beyond_the_book() -> None:
    table = export_table(FIXTURE, levels=4)
    assert table.schema.field("bid_px_0").type == pa.decimal128(18, 3)  # 21.905: three decimals
    assert table.schema.field("ask_qty_0").type == pa.decimal128(18, 2)  # 7.25
    assert str(table.schema.field("receive_time").type) == "timestamp[us, tz=UTC]"
    assert table.schema.field("symbol").type == pa.dictionary(pa.int32(), pa.string())
    rows = rows_by_symbol(table)
    sol = rows["SOL_USDC"][-1]
    assert levels_of(sol, 4) == (
        [(Decimal("21.850"), Decimal("0.50")), (Decimal("21.800"), Decimal("11.00")),
         (Decimal("21.750"), Decimal("1.50")), (Decimal("21.700"), Decimal("5.00"))],
        [(Decimal("21.905"), Decimal("2.00")), (Decimal("22.000"), Decimal("7.25"))])
    assert sol["update_id"] == 107 and sol["engine_time"].timestamp() == 1700000000.000599
    btc = rows["BTC_USDC"][-1]
    assert btc["bid_px_1"] is None and btc["ask_px_2"] is None  # the book has fewer levels


def test_floats_when_asked() -> None:
    exact, floats = export_table(FIXTURE, levels=2), export_table(FIXTURE, levels=2, as_float=True)
    assert floats.schema.field("bid_px_0").type == pa.float64()
    for a, b in zip(exact.to_pylist(), floats.to_pylist()):
        for name, value in a.items():
            if isinstance(value, Decimal):
                assert b[name] == float(value)
            else:
                assert b[name] == value


def test_a_void_book_is_a_row_of_nulls(tmp_path: Path) -> None:
    events = list(read_capture(FIXTURE))
    cut = {"ts": 1700000000000007, "kind": "disconnect", "reason": "gone"}
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [*events[:7], cut, *events[7:]]))
    rows = rows_by_symbol(export_table(path, levels=2))["SOL_USDC"]
    void = [r for r in rows if r["update_id"] is None]
    assert len(void) == 1 and void[0]["receive_time"].timestamp() == 1700000000.000007
    assert levels_of(void[0], 2) == ([], []) and void[0]["engine_time"] is None


def test_every_samples_a_grid_of_receive_times(tmp_path: Path) -> None:
    every = 2  # µs: the fixture's events are 1 µs apart
    table = export_table(FIXTURE, levels=3, every=every)
    times = [int(round(r["receive_time"].timestamp() * 1_000_000)) for r in table.to_pylist()]
    grid = sorted(set(times))
    assert grid == list(range(1700000000000002, 1700000000000011, every))
    assert table.num_rows == 2 * len(grid)  # one row per symbol and grid point
    for row in table.to_pylist():
        at = int(round(row["receive_time"].timestamp() * 1_000_000))
        machine = replay_capture(FIXTURE, at_time=at).machines.get(row["symbol"])
        if machine is None or machine.book.last_update_id is None:  # not seen yet, or not synced
            assert levels_of(row, 3) == ([], []) and row["update_id"] is None
            continue
        assert levels_of(row, 3) == (machine.book.bids(3), machine.book.asks(3))
        assert row["update_id"] == machine.book.last_update_id


def test_one_symbol_and_an_unknown_one() -> None:
    table = export_table(FIXTURE, symbol="BTC_USDC", levels=2)
    assert set(table.column("symbol").to_pylist()) == {"BTC_USDC"}
    with pytest.raises(UnknownSymbol, match="BTC_USD"):
        export_table(FIXTURE, symbol="BTC_USD")
    with pytest.raises(UsageError, match="levels"):
        export_table(FIXTURE, levels=0)


def test_parquet_round_trip_and_storage(tmp_path: Path) -> None:
    out = tmp_path / "fixture.parquet"
    result = export_parquet(FIXTURE, out, levels=4)
    # SOL: the snapshot (with the buffered frame), 105, 106..107; BTC: the snapshot, 12..13
    assert (result.rows, result.price_scale, result.quantity_scale) == (5, 3, 2)
    assert pq.read_table(out).equals(export_table(FIXTURE, levels=4))
    column = pq.ParquetFile(out).metadata.row_group(0).column(4)
    assert column.path_in_schema == "bid_px_0" and column.physical_type in ("INT32", "INT64")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary file left


def test_a_larger_scale_later_rewrites_the_file_in_wider_types(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prices with 2 decimals for many rows (written out in row groups), then
    one with 4 and a quantity of 25 digits: the file ends in the wider types,
    every value exact.  Rows still buffered are rescaled in place; rows
    already in the file make it be rewritten."""
    path = tmp_path / "grow.jsonl"
    symbol = "SOL_USDC"
    with CaptureWriter(path) as writer:
        writer.write_rest(1, symbol, 1000, 200, orjson.dumps(
            {"lastUpdateId": 10, "bids": [["10.00", "1"]], "asks": [["11.00", "1"]]}))
        for n in range(11, 300):
            bid = "10.0001" if n == 250 else "10.99" if n == 260 else f"{10 + (n % 50) / 100:.2f}"
            qty = "12345678901234567890.5" if n == 260 else str(n)  # 21 digits: precision 38
            writer.write_ws(n, orjson.dumps({"stream": f"depth.{symbol}", "data": {
                "e": "depth", "E": n, "T": n, "s": symbol, "U": n, "u": n, "b": [[bid, qty]], "a": []}}))
    out = tmp_path / "grow.parquet"
    at_once = export_parquet(path, out, levels=3, row_group_rows=16)
    assert at_once.rewrites == 0  # every row still buffered when the scales grew
    whole = pq.read_table(out)
    monkeypatch.setattr(export_module, "BATCH_BYTES", 64 * 3 * 10)  # batches of 10 rows
    result = export_parquet(path, out, levels=3, row_group_rows=16)
    table = pq.read_table(out)
    assert table.schema.field("bid_px_0").type == pa.decimal128(18, 4)
    assert table.schema.field("bid_qty_0").type == pa.decimal128(38, 1)
    assert result.rows == table.num_rows and (result.price_scale, result.quantity_scale) == (4, 1)
    assert result.rewrites >= 1  # row groups of narrower types were in the file already
    assert table.equals(export_table(path, levels=3)) and table.equals(whole)
    final = replay_capture(path).machines[symbol].book
    assert levels_of(table.to_pylist()[-1], 3) == (final.bids(3), final.asks(3))


@pytest.mark.parametrize(("text", "micros"), [("100ms", 100_000), ("1s", 1_000_000), ("1.5s", 1_500_000),
                                               ("250us", 250), ("250µs", 250), ("2m", 120_000_000),
                                               ("1h", 3_600_000_000)])
def test_parse_interval(text: str, micros: int) -> None:
    assert parse_interval(text) == micros


@pytest.mark.parametrize("text", ["100", "0ms", "-1s", "0.5us", "fast", "1e3ms", "ms"])
def test_parse_interval_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="not an interval"):
        parse_interval(text)


def test_without_pyarrow_the_message_says_how_to_get_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['pyarrow'] = None\n"
            "from orderbook.record.export import export_table\n"
            "from orderbook import UsageError\n"
            f"try:\n    export_table({str(FIXTURE)!r})\n"
            "except UsageError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pyarrow" in done.stdout and "pip install 'orderbook[research]'" in done.stdout


@needs_captures
def test_a_v2_copy_exports_the_same_rows(tmp_path: Path) -> None:
    v2 = tmp_path / "v2.jsonl.gz"
    upgrade_capture(REAL[1], v2)
    assert export_table(v2, levels=10).equals(export_table(REAL[1], levels=10))


def test_progress_is_reported_as_the_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    symbol = "SOL_USDC"
    with CaptureWriter(path) as writer:
        writer.write_rest(1, symbol, 1000, 200, orjson.dumps(
            {"lastUpdateId": 10, "bids": [["10.00", "1"]], "asks": [["11.00", "1"]]}))
        for n in range(11, 30_000):
            writer.write_ws(n, orjson.dumps({"stream": f"depth.{symbol}", "data": {
                "e": "depth", "E": n, "T": n, "s": symbol, "U": n, "u": n,
                "b": [[f"{10 + (n % 90) / 100:.2f}", str(n)]], "a": []}}))
    seen: list[Any] = []
    result = export_parquet(path, tmp_path / "many.parquet", levels=2, progress=seen.append)
    assert len(seen) >= 3
    positions = [p.position for p in seen]
    assert positions == sorted(positions) and seen[-1].position == seen[-1].size == path.stat().st_size
    assert [p.rows for p in seen] == sorted(p.rows for p in seen) and seen[-1].rows == result.rows
    assert seen[-1].events == result.events == 29_990


def test_a_larger_scale_beyond_the_top_levels_adds_no_row(tmp_path: Path) -> None:
    """A deep price with more decimals widens the book's scale but not its
    top: on change, no row (the rows so far are rescaled, not repeated)."""
    path = tmp_path / "deep.jsonl"
    symbol = "SOL_USDC"
    with CaptureWriter(path) as writer:
        writer.write_rest(1, symbol, 1000, 200, orjson.dumps(
            {"lastUpdateId": 10, "bids": [["10.00", "1"], ["9.00", "1"]], "asks": [["11.00", "1"]]}))
        for n, bid in ((11, ["10.00", "2"]), (12, ["8.1234", "5"]), (13, ["10.00", "3"])):
            writer.write_ws(n, orjson.dumps({"stream": f"depth.{symbol}", "data": {
                "e": "depth", "E": n, "T": n, "s": symbol, "U": n, "u": n, "b": [bid], "a": []}}))
    table = export_table(path, levels=1)
    assert table.column("update_id").to_pylist() == [10, 11, 13]  # none for the deep level at 12
    assert table.schema.field("bid_px_0").type.scale == 4
    assert [str(v) for v in table.column("bid_qty_0").to_pylist()] == ["1", "2", "3"]
    assert [str(v) for v in table.column("bid_px_0").to_pylist()] == ["10.0000"] * 3
