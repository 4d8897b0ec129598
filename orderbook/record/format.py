"""The capture format (``shared/docs/capture-format.md``): typed events, reading, writing.

A capture is JSON Lines, optionally gzip-compressed: one event per line in
receive order.  This module is the only place that knows how lines look:

* **reading** -- :func:`read_events` yields each line as a typed event
  (:class:`CaptureHeader`, :class:`WsEvent`, :class:`RestEvent`,
  :class:`DisconnectEvent`, or :class:`BadEvent` for a JSON object that is an
  event of a known kind with unusable fields), for version 1 and version 2
  files alike; unknown kinds are skipped.  :func:`read_capture` yields the
  lines as plain JSON objects;
* **writing** -- :class:`CaptureWriter` writes version 2: a header line, then
  ``ws`` events carrying ``raw``, the frame's text exactly as received;
* **upgrading** -- :func:`upgrade_capture` rewrites a version 1 file as
  version 2.

Versions.  A version 2 file starts with a ``header`` line; a version 1 file
has none and its ``ws`` events carry the frame parsed (``frame``) instead of
its text (``raw``).  The reader decides per event, not per file: a ``ws``
event with ``raw`` is read as version 2, one with ``frame`` as version 1,
whose :attr:`WsEvent.raw` is then the frame re-encoded as compact JSON (the
original text is not in a v1 file; a ``frame`` that is a string, which the
v1 recorder wrote for a message that was not JSON, is that text itself).
Re-encoding costs ~0.3 µs and lets the native frame reader take v1 frames
too, three times faster than reading the decoded frame in Python.

Errors.  A file that cannot be a capture raises
:class:`~orderbook.errors.MalformedMessage` naming it and, when one is at
fault, the line: a truncated or corrupt gzip stream, text that is not UTF-8,
a line that is not a JSON object.  Whether a file is gzip is read from its
first bytes, not from its name.  Bad *content* in a well-formed line never
raises: it becomes a :class:`BadEvent` (a missing ``ts``, a ``raw`` that is
not a string), or a frame that replay counts as malformed, as live would.

Cost.  Reading streams the file: O(1) memory per line and one small object
per event.  A v2 ``ws`` line as :class:`CaptureWriter` writes it is read by
the C module (``ws_line``: ~0.15 µs; it declines anything unusual, e.g. an
escape other than ``\"``, and orjson decides); any other line costs one
``orjson.loads`` (~0.45 µs for a v2 ``ws`` line, whose payload is one JSON
string; slicing the string out in Python and unescaping it with
``str.replace`` was measured at ~0.95 µs, twice as slow).
"""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Union

import orjson

from .._native import speedups
from .._version import __version__
from ..errors import MalformedMessage, UsageError, shown
from ..protocol.streams import now_us

__all__ = [
    "FORMAT_VERSION",
    "BadEvent",
    "CaptureEvent",
    "CaptureHeader",
    "CaptureReader",
    "CaptureWriter",
    "DisconnectEvent",
    "RestEvent",
    "UpgradeResult",
    "WsEvent",
    "event_from_json",
    "read_capture",
    "read_events",
    "read_header",
    "upgrade_capture",
]

_ws_line = speedups.ws_line if speedups is not None else None
"""The C reader of a v2 ``ws`` line as :class:`CaptureWriter` writes it
(``None`` in pure Python): ``(ts, raw)``, or ``None`` to let orjson decide."""

FORMAT_VERSION = 2
"""The version :class:`CaptureWriter` writes (readers accept 1 and 2)."""
RECORDER = f"orderbook {__version__}"
"""What the header's ``recorder`` field says of this package."""
DEPTH_PATH = "/api/v1/depth"
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_TS = 2**63 - 1


# -------------------------------------------------------------------- events
@dataclass(slots=True)
class CaptureHeader:
    """The first line of a version 2 file: who recorded what.

    ``format`` is the format version; ``recorder`` the recording program
    (``"orderbook 0.1.0"``); ``rest_url`` / ``ws_url`` the venue endpoints;
    ``streams`` the streams subscribed; ``options`` the recorder's options
    (JSON values); ``ts`` when the recording started (µs), if known.  Fields
    missing or of the wrong type in a file read as ``None`` / empty.
    """

    format: int = FORMAT_VERSION
    recorder: str | None = RECORDER
    rest_url: str | None = None
    ws_url: str | None = None
    streams: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    ts: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The header line as a JSON object (``kind`` first)."""
        return {"kind": "header", "format": self.format, "recorder": self.recorder,
                "rest_url": self.rest_url, "ws_url": self.ws_url, "streams": list(self.streams),
                "options": self.options, "ts": self.ts}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CaptureHeader:
        """A header from its JSON object, leniently (see the class docstring)."""
        version = obj.get("format")
        streams = obj.get("streams")
        options = obj.get("options")
        return cls(
            format=version if type(version) is int else 0,
            recorder=_str_or_none(obj.get("recorder")),
            rest_url=_str_or_none(obj.get("rest_url")),
            ws_url=_str_or_none(obj.get("ws_url")),
            streams=tuple(s for s in streams if type(s) is str) if type(streams) is list else (),
            options=options if type(options) is dict else {},
            ts=_ts_or_none(obj.get("ts")),
        )


@dataclass(slots=True)
class WsEvent:
    """One WebSocket message received at ``ts`` (µs): ``raw`` is its text,
    exactly as received in a version 2 file (``bytes`` only for a binary
    message that was not UTF-8, recorded in ``raw_base64``), the frame
    re-encoded in a version 1 file.  Treat as immutable."""

    ts: int
    raw: str | bytes


@dataclass(slots=True)
class RestEvent:
    """One REST response received at ``ts`` (µs), as recorded: ``method``,
    ``path``, ``query`` (usually a dict of strings), HTTP ``status`` and
    ``body`` -- the exact text when the file has it (``raw_body``), else the
    parsed JSON.  Fields keep whatever JSON types the file holds; replay
    checks them.  Treat as immutable."""

    ts: int
    method: Any
    path: Any
    query: Any
    status: Any
    body: Any


@dataclass(slots=True)
class DisconnectEvent:
    """The WebSocket connection was lost at ``ts`` (µs): every book is void
    until re-synced.  ``reason`` in words (never parsed)."""

    ts: int
    reason: str


@dataclass(slots=True)
class BadEvent:
    """A line holding an event of a known kind whose fields are unusable (no
    integer ``ts``, a ``raw`` that is not a string, ...).  Replay counts it
    and goes on.  ``line`` is its line number (``None`` when not read from a
    file), ``detail`` what is wrong."""

    kind: str
    detail: str
    line: int | None = None


CaptureEvent = Union[CaptureHeader, WsEvent, RestEvent, DisconnectEvent, BadEvent]
"""What :func:`read_events` yields, one per line of a known kind."""


def _str_or_none(value: object) -> str | None:
    return value if type(value) is str else None


def _ts_or_none(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= _MAX_TS else None


def event_from_json(obj: dict[str, Any], line: int | None = None) -> CaptureEvent | None:
    """The typed event of one decoded line, ``None`` for an unknown kind.

    Never raises: unusable fields make a :class:`BadEvent`.  O(size of the
    event) for a v1 ``ws`` event (re-encoded), O(1) otherwise.
    """
    kind = obj.get("kind")
    if kind == "header":
        return CaptureHeader.from_json(obj)
    if kind not in ("ws", "rest", "disconnect"):
        return None
    ts = obj.get("ts")
    if type(ts) is not int or not 0 <= ts <= _MAX_TS:
        return BadEvent(str(kind), f"ts must be an integer of microseconds, got {shown(ts)}", line)
    if kind == "ws":
        return _ws_event(obj, ts, line)
    if kind == "rest":
        raw_body = obj.get("raw_body")
        body = raw_body if type(raw_body) is str else obj.get("body")
        return RestEvent(ts, obj.get("method"), obj.get("path"), obj.get("query"),
                         obj.get("status"), body)
    reason = obj.get("reason")
    return DisconnectEvent(ts, reason if type(reason) is str else "")


def _ws_event(obj: dict[str, Any], ts: int, line: int | None) -> WsEvent | BadEvent:
    encoded = obj.get("raw_base64")
    if type(encoded) is str:
        try:
            return WsEvent(ts, base64.b64decode(encoded, validate=True))
        except ValueError:
            return BadEvent("ws", "raw_base64 is not base64", line)
    if "raw" in obj:
        raw = obj["raw"]
        if type(raw) is str:
            return WsEvent(ts, raw)
        return BadEvent("ws", f"raw must be a string, got {shown(raw)}", line)
    if "frame" not in obj:
        return BadEvent("ws", "a ws event needs raw (or frame, in version 1)", line)
    frame = obj["frame"]
    return WsEvent(ts, frame if type(frame) is str else orjson.dumps(frame).decode())


# ------------------------------------------------------------------- reading
class CaptureReader:
    """The events of one capture file, read once, in file order.

    Iterating yields :data:`CaptureEvent` values (see :func:`read_events`);
    :meth:`objects` the lines as JSON objects, :meth:`lines_of` as bytes.
    While it runs, :attr:`lines` is the number of lines read and
    :meth:`position` the bytes of the file consumed so far (compressed bytes
    for gzip), against :attr:`size`: enough for a progress bar.  Raises
    :class:`UsageError` at construction for a missing file.
    """

    def __init__(self, path: str | Path, *, on_stream: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.on_stream = on_stream
        """Told each stream name a version 1 frame carries, the first time, before
        the frame's event is yielded (replay learns the symbols this way)."""
        self._streams: set[str] = set()
        self.progress: Callable[[CaptureReader], None] | None = None
        """Told the reader every :attr:`progress_every` lines (a progress bar)."""
        self.progress_every = 8192
        if not self.path.is_file():
            raise UsageError(f"capture file not found: {self.path}")
        self.size = self.path.stat().st_size
        """The file's size in bytes."""
        self.lines = 0
        """Lines read so far."""
        self.header: CaptureHeader | None = None
        """The header of a version 2 file once its first line is read (``None``
        for version 1)."""
        self._file: BinaryIO | None = None

    @property
    def version(self) -> int:
        """1 or the header's format, once the first line is read."""
        return self.header.format if self.header is not None else 1

    def position(self) -> int:
        """Bytes of the file read so far (0 before or after the iteration)."""
        file = self._file
        if file is None or file.closed:
            return 0
        return file.tell()

    def __iter__(self) -> Iterator[CaptureEvent]:
        # the hot path: one generator over the file, a v2 frame in ~0.6 µs
        path, loads, every, line_reader = self.path, orjson.loads, self.progress_every, _ws_line
        with self._opened() as source:
            number = 0
            try:
                for line in source:
                    number += 1
                    if not number % every and self.progress is not None:
                        self.lines = number
                        self.progress(self)
                    if line_reader is not None:  # C: our own v2 frame lines, ~0.15 µs
                        hit = line_reader(line)
                        if hit is not None:
                            yield WsEvent(hit[0], hit[1])
                            continue
                    try:
                        obj = loads(line)
                    except orjson.JSONDecodeError as exc:
                        if not line.strip():
                            continue
                        raise _bad_line(path, number, line, exc) from exc
                    if type(obj) is not dict:
                        raise MalformedMessage(f"{path}:{number}: event is not a JSON object")
                    if obj.get("kind") == "ws":
                        ts = obj.get("ts")
                        raw = obj.get("raw")
                        if (type(raw) is str and type(ts) is int and 0 <= ts <= _MAX_TS
                                and "raw_base64" not in obj):
                            yield WsEvent(ts, raw)
                            continue
                        frame = obj.get("frame")
                        if self.on_stream is not None and raw is None and type(frame) is dict:
                            self._note_stream(frame.get("stream"))
                    event = event_from_json(obj, number)
                    if event is None:
                        continue
                    if type(event) is CaptureHeader and number == 1:
                        self.header = event
                    yield event
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise _bad_gzip(path, number, exc) from exc
            finally:
                self.lines = number

    def _note_stream(self, stream: object) -> None:
        if type(stream) is str and stream not in self._streams and self.on_stream is not None:
            self._streams.add(stream)
            self.on_stream(stream)

    def objects(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(line number, JSON object)`` for every non-blank line (see
        :func:`read_capture` for the errors)."""
        path = self.path
        loads = orjson.loads
        for number, line in self.lines_of():
            try:
                obj = loads(line)
            except orjson.JSONDecodeError as exc:
                if not line.strip():
                    continue
                raise _bad_line(path, number, line, exc) from exc
            if type(obj) is not dict:
                raise MalformedMessage(f"{path}:{number}: event is not a JSON object")
            yield number, obj

    def lines_of(self) -> Iterator[tuple[int, bytes]]:
        """``(line number, line)`` for every line, as bytes; a truncated or
        corrupt gzip stream raises :class:`MalformedMessage` naming the last
        line read whole (decompression runs ahead, so the damage lies after it)."""
        with self._opened() as source:
            number = 0
            try:
                for line in source:
                    number += 1
                    self.lines = number
                    yield number, line
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise _bad_gzip(self.path, number, exc) from exc

    @contextmanager
    def _opened(self) -> Iterator[IO[bytes]]:
        """The file's bytes, decompressed when it starts as gzip does."""
        with open(self.path, "rb") as raw:
            self._file = raw
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                yield raw
                return
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]


def _bad_gzip(path: Path, number: int, exc: Exception) -> MalformedMessage:
    return MalformedMessage(f"{path}: truncated or corrupt gzip data after line {number} ({exc})")


def _bad_line(path: Path, number: int, line: bytes, exc: Exception) -> MalformedMessage:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return MalformedMessage(f"{path}:{number}: not UTF-8 text ({bad.reason})")
    return MalformedMessage(f"{path}:{number}: invalid JSON: {exc}")


def read_header(path: str | Path) -> CaptureHeader | None:
    """The header of a version 2 capture (its first line), ``None`` for a
    version 1 file.  Reads one line; errors as :func:`read_capture`."""
    for number, obj in CaptureReader(path).objects():
        return CaptureHeader.from_json(obj) if obj.get("kind") == "header" else None
    return None


def read_events(path: str | Path) -> Iterator[CaptureEvent]:
    """Yield the typed events of a ``.jsonl`` or ``.jsonl.gz`` capture (v1 or
    v2) in file order: the header first in a v2 file, then ``ws``, ``rest``,
    ``disconnect`` and :class:`BadEvent` values; unknown kinds are skipped.
    Raises :class:`MalformedMessage` for a file that is no capture (see the
    module docstring), :class:`UsageError` for a missing one."""
    return iter(CaptureReader(path))


def read_capture(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield every line of a capture as its JSON object, in file order (the
    header too).  Blank lines are skipped; a line that is not a JSON object
    or not UTF-8 text and a truncated or corrupt gzip stream raise
    :class:`MalformedMessage` naming the file and the line.  Streams the
    file: O(1) memory per line."""
    reader = CaptureReader(path)
    return (obj for _number, obj in reader.objects())


def events_of(source: Iterable[CaptureEvent | dict[str, Any]]) -> Iterator[CaptureEvent]:
    """Typed events from an iterable of typed events or decoded lines
    (unknown kinds skipped).  O(1) per item."""
    for item in source:
        if type(item) is dict:
            event = event_from_json(item)
            if event is not None:
                yield event
        else:
            yield item  # type: ignore[misc]


# ------------------------------------------------------------------- writing
def _open_text(path: Path) -> IO[str]:
    """``path`` opened for writing text, gzip when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


class CaptureWriter:
    """Write a version 2 capture (gzip when the name ends in ``.gz``).

    ``header`` is the first line: a :class:`CaptureHeader`, a function making
    it (called before the first event is written, or at :meth:`close` if
    none is: for a recorder that knows its streams only once started), or
    ``None`` for a minimal one saying who wrote the file and when.  Usable as
    a context manager; :meth:`close` flushes.  What it writes reads back
    through :func:`read_events` as the same events.  O(event size) per write.
    """

    def __init__(self, path: str | Path,
                 header: CaptureHeader | Callable[[], CaptureHeader] | None = None) -> None:
        self.path = Path(path)
        self._make_header = header if callable(header) else None
        self.header: CaptureHeader | None = None
        """The header, once written."""
        self._file = _open_text(self.path)
        self.events = 0
        """Events written (the header not counted)."""
        if not callable(header):
            self._write_header(header if header is not None else CaptureHeader(ts=now_us()))

    def _write_header(self, header: CaptureHeader) -> None:
        if header.format != FORMAT_VERSION:
            raise UsageError(f"a CaptureWriter writes format {FORMAT_VERSION}, "
                             f"the header says {header.format}")
        self.header = header
        self._line(header.to_json())

    def write_ws(self, ts: int, raw: str | bytes) -> None:
        """Record one WebSocket message received at ``ts`` (µs), as its text
        (``bytes`` are decoded as UTF-8; a binary message that is not UTF-8
        is kept exactly in ``raw_base64``, with ``raw`` its lossy text)."""
        if isinstance(raw, str):
            self._event({"ts": ts, "kind": "ws", "raw": raw})
            return
        try:
            self._event({"ts": ts, "kind": "ws", "raw": raw.decode("utf-8")})
        except UnicodeDecodeError:
            self._event({"ts": ts, "kind": "ws", "raw": raw.decode("utf-8", "replace"),
                         "raw_base64": base64.b64encode(raw).decode("ascii")})

    def write_rest(self, ts: int, symbol: str, limit: int | None, status: int,
                   body: bytes | str) -> None:
        """Record a ``GET /api/v1/depth`` response received at ``ts`` (µs):
        ``body`` as received, stored parsed (``body``, its text when it is not
        JSON) and, when it is UTF-8, exactly (``raw_body``)."""
        query = {"symbol": symbol} if limit is None else {"symbol": symbol, "limit": str(limit)}
        event: dict[str, Any] = {"ts": ts, "kind": "rest", "method": "GET", "path": DEPTH_PATH,
                                 "query": query, "status": status}
        try:
            text = body if isinstance(body, str) else body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            event["body"] = orjson.loads(body)
        except orjson.JSONDecodeError:
            event["body"] = text if text is not None else body.decode("utf-8", "replace")  # type: ignore[union-attr]
        if text is not None:
            event["raw_body"] = text
        self._event(event)

    def write_disconnect(self, ts: int, reason: str) -> None:
        """Record that the WebSocket connection dropped at ``ts`` (µs)."""
        self._event({"ts": ts, "kind": "disconnect", "reason": reason})

    def write_json(self, event: dict[str, Any]) -> None:
        """Write one event given as its JSON object, as is (for tools that
        copy events, like :func:`upgrade_capture`)."""
        self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        if self.header is None:
            assert self._make_header is not None
            self._write_header(self._make_header())
        self._line(event)
        self.events += 1

    def _line(self, obj: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(obj).decode())
        self._file.write("\n")

    def flush(self) -> None:
        """Push what was written so far to the file (for gzip a sync flush:
        the events so far can be decompressed even if the process then dies)."""
        self._file.flush()

    def abandon(self) -> None:
        """Close the file without writing anything more (it is to be removed)."""
        self._file.close()

    def close(self) -> None:
        """Write the header if no event did, flush and close the file."""
        if self.header is None and not self._file.closed:
            try:
                assert self._make_header is not None
                self._write_header(self._make_header())
            finally:
                self._file.close()
        self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------- upgrading
@dataclass(slots=True)
class UpgradeResult:
    """What :func:`upgrade_capture` did: the input's ``version``, the
    ``events`` written (header not counted) and the ``frames`` re-encoded."""

    version: int
    events: int
    frames: int


def upgrade_capture(source: str | Path, destination: str | Path, *,
                    progress: Callable[[CaptureReader], None] | None = None) -> UpgradeResult:
    """Rewrite a version 1 capture as version 2 (gzip when ``destination``
    ends in ``.gz``).

    Every line is kept in order; a ``ws`` event's ``frame`` becomes ``raw``,
    the frame re-encoded as compact JSON (a v1 file does not hold the text as
    received); ``rest``, ``disconnect`` and unknown events are copied.  The
    header names the streams the frames carry, the recorder as this package
    ``(upgraded from format 1)`` and ``options.upgraded_from`` the source
    file.  A version 2 source is copied with its own header.  Replaying the
    result gives the same books as the source.  Reads the source twice
    (streams first); O(1) memory.  Raises :class:`UsageError` when both
    paths name the same file, :class:`MalformedMessage` for a source that is
    no capture (the destination is then removed).
    """
    source, destination = Path(source), Path(destination)
    if destination.exists() and destination.resolve() == source.resolve():
        raise UsageError(f"{destination}: the upgrade must go to another file")
    first = CaptureReader(source)
    streams: dict[str, None] = {}
    started: int | None = None
    header: CaptureHeader | None = None
    for number, obj in first.objects():
        if number == 1 and obj.get("kind") == "header":
            header = CaptureHeader.from_json(obj)
            break
        if started is None:
            started = _ts_or_none(obj.get("ts"))
        frame = obj.get("frame")
        if obj.get("kind") == "ws" and type(frame) is dict and type(frame.get("stream")) is str:
            streams[frame["stream"]] = None
    version = 1 if header is None else header.format
    if header is not None and header.format != FORMAT_VERSION:
        raise UsageError(f"{source}: a header of format {header.format}; upgrade reads formats 1 "
                         f"and {FORMAT_VERSION}")
    if header is None:
        header = CaptureHeader(recorder=f"{RECORDER} (upgraded from format 1)",
                               streams=tuple(streams), options={"upgraded_from": source.name},
                               ts=started)
    reader = CaptureReader(source)
    frames = 0
    try:
        with CaptureWriter(destination, header) as writer:
            for number, obj in reader.objects():
                if progress is not None and not number % 8192:
                    progress(reader)
                kind = obj.get("kind")
                if kind == "header":
                    if number == 1:
                        continue  # already written
                elif kind == "ws" and "raw" not in obj and "frame" in obj:
                    frame = obj.pop("frame")
                    obj["raw"] = frame if type(frame) is str else orjson.dumps(frame).decode()
                    frames += 1
                writer.write_json(obj)
            events = writer.events
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return UpgradeResult(version=version, events=events, frames=frames)
