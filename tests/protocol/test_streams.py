"""Stream names: split by known prefix, so dotted symbols work on every stream kind."""

from __future__ import annotations

import orjson
import pytest

from orderbook import BookTickerEvent, DepthEvent, parse_frame
from orderbook.protocol.streams import (
    DEPTH_STREAMS,
    StreamKind,
    StreamName,
    depth_stream,
    parse_stream,
    ticker_stream,
)

DOTTED = ["SPCX.US_USDC", "TSLA.US_USDC_PERP", "A.B.C_USDC", "SOL_USDC"]


@pytest.mark.parametrize("symbol", DOTTED)
@pytest.mark.parametrize("kind", DEPTH_STREAMS)
def test_depth_streams_of_dotted_symbols_round_trip(kind: str, symbol: str) -> None:
    name = depth_stream(symbol, kind)
    parsed = parse_stream(name)
    assert parsed is not None
    assert parsed.kind is StreamKind.DEPTH
    assert parsed.symbol == symbol
    assert parsed.prefix == kind
    assert str(parsed) == name


@pytest.mark.parametrize("symbol", DOTTED)
def test_ticker_streams_of_dotted_symbols_round_trip(symbol: str) -> None:
    parsed = parse_stream(ticker_stream(symbol))
    assert parsed == StreamName(StreamKind.BOOK_TICKER, symbol)


@pytest.mark.parametrize(
    "name", ["depth.", "depth.200ms.", "bookTicker.", "trade.SOL_USDC", "depth", "", None, 5, "Depth.X"]
)
def test_names_that_are_not_book_streams(name: object) -> None:
    assert parse_stream(name) is None


def test_an_aggregation_window_is_never_taken_for_part_of_the_symbol() -> None:
    assert parse_stream("depth.600ms.X.Y") == StreamName(StreamKind.DEPTH, "X.Y", 600)
    # an unknown window is a symbol that happens to start with digits
    assert parse_stream("depth.5ms.X") == StreamName(StreamKind.DEPTH, "5ms.X", 0)


def _depth(stream: str, symbol: str) -> bytes:
    data = {"e": "depth", "E": 1, "s": symbol, "a": [["2.5", "1"]], "b": [["1.5", "2"]],
            "U": 5, "u": 6, "T": 3}
    return orjson.dumps({"stream": stream, "data": data})


@pytest.mark.parametrize("symbol", DOTTED)
@pytest.mark.parametrize("kind", DEPTH_STREAMS)
def test_depth_frames_of_dotted_symbols_parse(kind: str, symbol: str) -> None:
    raw = _depth(depth_stream(symbol, kind), symbol)
    for frame in (raw, raw.decode(), raw.replace(b'"U":5', b'"U":"5"')):
        event = parse_frame(frame)
        assert isinstance(event, DepthEvent)
        assert event.symbol == symbol
        assert (event.first_id, event.last_id) == (5, 6)


@pytest.mark.parametrize("symbol", DOTTED)
def test_book_ticker_frames_of_dotted_symbols_parse(symbol: str) -> None:
    data = {"e": "bookTicker", "E": 1, "s": symbol, "a": "2.5", "A": "1", "b": "1.5", "B": "2",
            "u": "7", "T": 3}
    event = parse_frame(orjson.dumps({"stream": ticker_stream(symbol), "data": data}))
    assert isinstance(event, BookTickerEvent)
    assert event.symbol == symbol
    assert event.update_id == 7
