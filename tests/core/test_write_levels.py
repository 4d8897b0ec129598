"""``OrderBook.write_levels``: the top of a book as exact fixed-point integers
(the storage of Arrow ``decimal128`` values of scale 18), in whichever
implementation is in use and in the pure one, checked against the levels
the book itself reads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import orderbook.core.ladder as ladder_module
from orderbook import OrderBook, UsageError
from orderbook.core.ladder import PyLadder, py_write_levels
from orderbook.protocol.wire import DepthEvent, PyDepthEvent

SNAPSHOT = {"lastUpdateId": 10, "bids": [["100.5", "2.000"], ["100.25", ".5"], ["99", "7."]],
            "asks": [["101", "3"], ["101.125", "0.00100"]]}


def decode(out: bytes, offset: int, n: int, price_scale: int = 18, qty_scale: int = 18,
           ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    values = [Decimal(f"{int.from_bytes(out[i:i + 16], 'little', signed=True)}E-{scale}")
              for i, scale in zip(range(offset, offset + 64 * n, 16), [price_scale, qty_scale] * 2 * n)]
    pairs = list(zip(values[0::2], values[1::2]))
    return pairs[:n], pairs[n:]


def expected(book: OrderBook, n: int) -> tuple[list[Any], list[Any]]:
    pad = [(Decimal(0), Decimal(0))] * n
    return (book.bids(n) + pad)[:n], (book.asks(n) + pad)[:n]


@pytest.mark.parametrize("implementation", ["in use", "pure"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5])
def test_write_levels_is_the_book_exactly(implementation: str, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if implementation == "pure":  # a book on the pure ladders
        monkeypatch.setattr("orderbook.core.book.Ladder", PyLadder)
        monkeypatch.setattr("orderbook.core.book.write_levels", py_write_levels)
        monkeypatch.setattr("orderbook.core.book.apply_levels", ladder_module.py_apply_levels)
        monkeypatch.setattr("orderbook.core.book.crossed", ladder_module.py_crossed)
    book = OrderBook("X")
    book.apply_snapshot(SNAPSHOT)
    kind = PyDepthEvent if implementation == "pure" else DepthEvent
    event = kind("X", 11, 11, 1, 2, [["100.25", "0"], ["100.375", "4.25"]], [["101.0625", "1"]])
    book.apply_delta(event)  # a level deleted, two new ones, a re-key to 4 decimals
    book.bids(1)  # one level read (stored as a tuple), the others still as received
    out = bytearray(b"\xee" * (8 + 64 * n))
    result = book.write_levels(n, out, 8)
    assert out[:8] == b"\xee" * 8
    assert decode(bytes(out), 8, n) == expected(book, n)
    bids, asks = book.bids(n), book.asks(n)
    decimals = max([0, *(-q.as_tuple().exponent for _, q in bids + asks)])  # type: ignore[operator]
    assert result == (len(bids), len(asks), 4, decimals)
    # at the scales needed, and a little more: the same values
    for price_scale, qty_scale in ((4, decimals), (6, decimals + 2)):
        out = bytearray(b"\xee" * (8 + 64 * n))
        assert book.write_levels(n, out, 8, price_scale, qty_scale) == result
        assert decode(bytes(out), 8, n, price_scale, qty_scale) == expected(book, n)
    # one decimal short: nothing written, the scales needed returned
    for price_scale, qty_scale in ((3, decimals), (4, decimals - 1)):
        if n and qty_scale >= 0:
            out = bytearray(b"\xee" * (8 + 64 * n))
            assert book.write_levels(n, out, 8, price_scale, qty_scale) == result
            assert out == b"\xee" * (8 + 64 * n)


def test_write_levels_refuses_a_small_buffer_and_negative_sizes() -> None:
    book = OrderBook("X")
    book.apply_snapshot(SNAPSHOT)
    for write in (book.write_levels, lambda n, out, offset: py_write_levels(PyLadder(-1), PyLadder(1), n, out, offset)):
        with pytest.raises(UsageError, match="too small"):
            write(2, bytearray(127), 0)
        with pytest.raises(UsageError, match="too small"):
            write(2, bytearray(128), 1)
        with pytest.raises(UsageError, match=">= 0"):
            write(-1, bytearray(128), 0)
    with pytest.raises(UsageError, match="0..18"):
        book.write_levels(1, bytearray(64), 0, 19, 2)


def test_write_levels_at_the_value_bound() -> None:
    """20 digits before the point and 18 after fit the 16 bytes exactly."""
    big = "9" * 20 + "." + "9" * 18
    book = OrderBook("X")
    book.apply_snapshot({"lastUpdateId": 1, "bids": [["0." + "0" * 17 + "1", big]], "asks": [[big, big]]})
    out = bytearray(64)
    assert book.write_levels(1, out, 0) == (1, 1, 18, 18)
    assert decode(bytes(out), 0, 1) == expected(book, 1)
