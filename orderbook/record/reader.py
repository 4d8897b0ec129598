"""Reading captures: typed events of version 1 and version 2 files, in file order.

:class:`CaptureReader` (and :func:`read_events`) yields each line as a typed
event (:mod:`orderbook.record.format`); :func:`read_capture` yields the lines
as plain JSON objects; :func:`read_header` reads a version 2 header.  Unknown
kinds are skipped.

Errors.  A file that cannot be a capture raises
:class:`~orderbook.errors.MalformedMessage` naming it and, when one is at
fault, the line: a truncated or corrupt gzip stream, text that is not UTF-8,
a line that is not a JSON object.  Whether a file is gzip is read from its
first bytes, not from its name.  Bad content in a well-formed line is a
:class:`~orderbook.record.format.BadEvent`, never an exception.

Cost.  Reading streams the file: O(1) memory per line and one small object
per event.  A v2 ``ws`` line as :class:`~orderbook.record.format.CaptureWriter`
writes it is read by the C module (``ws_line``: ~0.15 µs; it declines
anything unusual, e.g. an escape other than ``\\"``, and orjson decides); any
other line costs one ``orjson.loads`` (~0.45 µs for a v2 ``ws`` line, whose
payload is one JSON string; slicing the string out in Python and unescaping
it with ``str.replace`` was measured at ~0.95 µs, twice as slow).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson

from .._native import speedups
from ..errors import MalformedMessage, UsageError
from .format import MAX_TS, CaptureEvent, CaptureHeader, WsEvent, event_from_json

__all__ = ["CaptureReader", "events_of", "read_capture", "read_events", "read_header"]

_ws_line = speedups.ws_line if speedups is not None else None
"""The C reader of a v2 ``ws`` line as ``CaptureWriter`` writes it (``None``
in pure Python): ``(ts, raw)``, or ``None`` to let orjson decide."""
_GZIP_MAGIC = b"\x1f\x8b"


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
                        if (type(raw) is str and type(ts) is int and 0 <= ts <= MAX_TS
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
