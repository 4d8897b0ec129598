"""What a replay must know before the first event: the symbols and the engine's options.

The :class:`~orderbook.sync.engine.Engine` replicates a fixed list of
symbols with one ``snapshot_limit``.  :func:`survey` finds them: in a
version 2 header listing its streams (the file is not read further), else in
the file itself (every symbol a depth frame or a depth response names, and
the first valid request limit; O(events), a v1 frame's stream read without
decoding its line).  :func:`replay_options` turns a survey into the replay's
:class:`~orderbook.sync.engine.EngineOptions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import MalformedMessage
from ..protocol.streams import DEPTH_LIMITS, DEPTH_STREAMS, StreamKind, parse_stream
from ..protocol.wire import DepthEvent, parse_frame
from ..sync.engine import EngineOptions
from ..sync.policy import Backoff, SnapshotRetryPolicy
from .format import DEPTH_PATH, CaptureEvent, CaptureHeader, RestEvent, WsEvent, event_from_json
from .reader import CaptureReader

__all__ = [
    "DEFAULT_SNAPSHOT_LIMIT",
    "FOLLOW_THE_FILE",
    "Survey",
    "depth_symbol",
    "header_symbols",
    "note_stream",
    "replay_options",
    "request_limit",
    "survey",
]

DEFAULT_SNAPSHOT_LIMIT = 1000

FOLLOW_THE_FILE = SnapshotRetryPolicy(
    backoff=Backoff(initial=1e-7, maximum=1e-7, factor=1.0, jitter=0.0),
    max_streak=2**31, min_new_frames=0, max_frame_wait=0.0)
"""The replay's snapshot retry policy: ask again at once, never give up, so
that every recorded response finds its symbol's request outstanding."""


@dataclass(slots=True)
class Survey:
    """What a replay needs to know before the first event: the ``symbols``
    (in order of appearance), the ``header`` of a version 2 file and the
    first ``limit`` a depth request of the file used (``None`` if none is
    one of the venue's)."""

    symbols: list[str] = field(default_factory=list)
    header: CaptureHeader | None = None
    limit: int | None = None


def survey(source: str | Path | Iterable[CaptureEvent]) -> Survey:
    """The :class:`Survey` of a capture file or of typed events.

    A version 2 file whose header lists streams is not read further; any
    other file is read once (O(events), about the cost of reading it).
    """
    if isinstance(source, (str, Path)):
        return _survey_file(CaptureReader(source))
    found = Survey()
    for event in source:
        if type(event) is CaptureHeader:
            if found.header is None:
                found.header = event
                if header_symbols(event, found):
                    return found
        else:
            _note_event(event, found)
    return found


_V1_FRAME = b',"kind":"ws","frame":{"stream":"'
"""After ``{"ts":<digits>``, the start of a version 1 ``ws`` line as orjson
writes it (our v1 recorder, the real captures): the frame's stream is read
without decoding the line.  Found right after the line's first key, it can
only be the top-level keys."""


def _survey_file(reader: CaptureReader) -> Survey:
    found = Survey()
    loads = orjson.loads
    marker, skip = _V1_FRAME, len(_V1_FRAME)
    streams: set[bytes] = set()
    for number, line in reader.lines_of():
        at = line.find(marker, 7, 64)
        if at > 0 and line.startswith(b'{"ts":') and line[6:at].isdigit():  # ~0.3 µs
            end = line.find(b'"', at + skip)
            stream = line[at + skip:end]
            if end > 0 and b"\\" not in stream:
                if stream not in streams:
                    streams.add(stream)
                    note_stream(stream.decode("utf-8", "replace"), found)
                continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError:
            continue  # blank or corrupt: the replay itself reports it with its number
        if type(obj) is not dict:
            continue
        kind = obj.get("kind")
        if number == 1 and kind == "header":
            found.header = CaptureHeader.from_json(obj)
            if header_symbols(found.header, found):
                return found
        elif kind == "ws" and "raw" not in obj:  # version 1 in another layout
            frame = obj.get("frame")
            if type(frame) is dict:
                note_stream(frame.get("stream"), found)
        elif kind in ("ws", "rest"):
            event = event_from_json(obj)
            if event is not None:
                _note_event(event, found)
    return found


def header_symbols(header: CaptureHeader, found: Survey) -> bool:
    for stream in header.streams:
        note_stream(stream, found)
    limit = header.options.get("snapshot_limit")
    if type(limit) is int and limit in DEPTH_LIMITS:
        found.limit = limit
    return bool(found.symbols)


def note_stream(stream: object, found: Survey) -> None:
    name = parse_stream(stream)
    if name is not None and name.kind is StreamKind.DEPTH and name.symbol not in found.symbols:
        found.symbols.append(name.symbol)


def _note_event(event: CaptureEvent, found: Survey) -> None:
    if type(event) is WsEvent:
        try:
            parsed = parse_frame(event.raw, validate_levels=False)
        except MalformedMessage as exc:
            symbol = exc.symbol
        else:
            symbol = parsed.symbol if type(parsed) is DepthEvent else None
        if symbol and symbol not in found.symbols:
            found.symbols.append(symbol)
    elif type(event) is RestEvent:
        symbol = depth_symbol(event)
        if symbol is not None:
            if symbol not in found.symbols:
                found.symbols.append(symbol)
            if found.limit is None:
                found.limit = request_limit(event.query)


def depth_symbol(event: RestEvent) -> str | None:
    """The symbol of a depth response, ``None`` for any other response."""
    if event.path != DEPTH_PATH or type(event.query) is not dict:
        return None
    symbol = event.query.get("symbol")
    return symbol if type(symbol) is str and symbol else None


def request_limit(query: dict[str, Any]) -> int | None:
    text = query.get("limit")
    if type(text) is int:
        text = str(text)
    if type(text) is str and text.isascii() and text.isdecimal() and int(text) in DEPTH_LIMITS:
        return int(text)
    return None


def replay_options(found: Survey) -> EngineOptions:
    """The engine options of a replay: the header's ``depth_stream``,
    ``snapshot_limit``, ``book_ticker`` and ``max_buffer`` when valid (else
    the first recorded limit, or 1000), and :data:`FOLLOW_THE_FILE`."""
    options: dict[str, Any] = {"snapshot_limit": found.limit or DEFAULT_SNAPSHOT_LIMIT,
                               "snapshot_retry": FOLLOW_THE_FILE}
    recorded = found.header.options if found.header is not None else {}
    if recorded.get("depth_stream") in DEPTH_STREAMS:
        options["depth_stream"] = recorded["depth_stream"]
    if type(recorded.get("book_ticker")) is bool:
        options["book_ticker"] = recorded["book_ticker"]
    buffer = recorded.get("max_buffer")
    if type(buffer) is int and buffer >= 1:
        options["max_buffer"] = buffer
    return EngineOptions(**options)
