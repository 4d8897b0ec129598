"""The SUBSCRIBE / UNSUBSCRIBE protocol as a pure parser."""

from __future__ import annotations

import orjson

from orderbook.protocol.streams import StreamKind
from orderbook.protocol.subscribe import (
    MAX_STREAMS,
    ErrorCode,
    ErrorReply,
    Method,
    Request,
    parse_request,
)


def test_a_request_is_parsed_entry_by_entry_in_order() -> None:
    parsed = parse_request('{"method":"SUBSCRIBE","params":["depth.SPCX.US_USDC",7,'
                           '"bookTicker.TSLA.US_USDC_PERP","nope"],"id":3}')
    assert isinstance(parsed, Request)
    assert parsed.method is Method.SUBSCRIBE and parsed.request_id == 3
    first, bad_int, ticker, bad_name = parsed.entries
    assert isinstance(first, tuple) and first[0] == "depth.SPCX.US_USDC"
    assert (first[1].kind, first[1].symbol) == (StreamKind.DEPTH, "SPCX.US_USDC")
    assert isinstance(ticker, tuple) and ticker[1].symbol == "TSLA.US_USDC_PERP"
    assert isinstance(bad_int, ErrorReply) and bad_int.code is ErrorCode.INVALID_STREAM
    assert isinstance(bad_name, ErrorReply) and bad_name.stream == "nope"
    reply = orjson.loads(bad_name.encode())
    assert reply == {"id": 3, "error": {"code": "INVALID_STREAM", "message": "Unknown stream: 'nope'"},
                     "stream": "nope"}


def test_messages_that_are_not_requests_get_one_reply() -> None:
    for message in (b"not json", "[]", '{"method":"LIST"}', '{"method":"SUBSCRIBE","params":"x"}',
                    '{"params":[]}', "\xff"):
        parsed = parse_request(message)
        assert isinstance(parsed, ErrorReply) and parsed.code is ErrorCode.INVALID_CLIENT_REQUEST
        assert orjson.loads(parsed.encode())["id"] is None


def test_more_than_max_streams_is_one_error_and_nothing_else() -> None:
    names = [f"depth.S{i}" for i in range(MAX_STREAMS + 1)]
    parsed = parse_request(orjson.dumps({"method": "UNSUBSCRIBE", "params": names}))
    assert isinstance(parsed, ErrorReply) and parsed.code is ErrorCode.TOO_MANY_STREAMS
    ok = parse_request(orjson.dumps({"method": "UNSUBSCRIBE", "params": names[:MAX_STREAMS]}))
    assert isinstance(ok, Request) and len(ok.entries) == MAX_STREAMS
    assert ok.method is Method.UNSUBSCRIBE


def test_ids_are_echoed_only_when_plain() -> None:
    for raw_id, echoed in ((5, 5), ("a", "a"), (True, None), ({"x": 1}, None), (None, None)):
        parsed = parse_request(orjson.dumps({"method": "SUBSCRIBE", "params": [], "id": raw_id}))
        assert isinstance(parsed, Request) and parsed.request_id == echoed
