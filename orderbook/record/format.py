"""The capture format (``shared/docs/capture-format.md``): typed events and writing.

A capture is JSON Lines, optionally gzip-compressed: one event per line in
receive order.  This module says what a line means and writes them:

* **events** -- :class:`CaptureHeader`, :class:`WsEvent`, :class:`RestEvent`,
  :class:`DisconnectEvent`, the session events our recorder adds so that a
  replay repeats every input of the live engine (:class:`ConnectEvent`,
  :class:`SubscribedEvent`, :class:`RestErrorEvent`, :class:`TickEvent`,
  :class:`FailedEvent`), or :class:`BadEvent` for a JSON object that is an
  event of a known kind with unusable fields; :func:`event_from_json` makes
  one of a decoded line, for version 1 and version 2 alike (unknown kinds:
  ``None``);
* **writing** -- :class:`CaptureWriter` writes version 2: a header line, then
  ``ws`` events carrying ``raw``, the frame's text exactly as received.

Reading files is :mod:`orderbook.record.reader`, upgrading them
:mod:`orderbook.record.upgrade`.

Versions.  A version 2 file starts with a ``header`` line; a version 1 file
has none and its ``ws`` events carry the frame parsed (``frame``) instead of
its text (``raw``).  An event is read by its fields, not by the file's
version: a ``ws`` event with ``raw`` as version 2, one with ``frame`` as
version 1, whose :attr:`WsEvent.raw` is then the frame re-encoded as compact
JSON (the original text is not in a v1 file; a ``frame`` that is a string,
which the v1 recorder wrote for a message that was not JSON, is that text
itself).  Re-encoding costs ~0.3 µs and lets the native frame reader take v1
frames too, three times faster than reading the decoded frame in Python.

Bad *content* in a well-formed line never raises: it becomes a
:class:`BadEvent` (a missing ``ts``, a ``raw`` that is not a string), or a
frame that replay counts as malformed, as live would.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Union

import orjson

from .._version import __version__
from ..errors import UsageError, shown
from ..protocol.streams import now_us
from ..sync.actions import Purpose

__all__ = [
    "FORMAT_VERSION",
    "BadEvent",
    "CaptureEvent",
    "CaptureHeader",
    "CaptureWriter",
    "ConnectEvent",
    "DisconnectEvent",
    "FailedEvent",
    "RestErrorEvent",
    "RestEvent",
    "SubscribedEvent",
    "TickEvent",
    "WsEvent",
    "event_from_json",
]

FORMAT_VERSION = 2
"""The version :class:`CaptureWriter` writes (readers accept 1 and 2)."""
RECORDER = f"orderbook {__version__}"
"""What the header's ``recorder`` field says of this package."""
DEPTH_PATH = "/api/v1/depth"
MAX_TS = 2**63 - 1
"""The largest receive time (µs) an event may carry."""


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
    checks them.  Our recorder adds the engine's ``ticket`` of the request
    answered and its ``purpose`` (``None`` when absent or unusable).  Treat
    as immutable."""

    ts: int
    method: Any
    path: Any
    query: Any
    status: Any
    body: Any
    ticket: int | None = None
    purpose: Purpose | None = None


@dataclass(slots=True)
class DisconnectEvent:
    """The WebSocket connection was lost at ``ts`` (µs): every book is void
    until re-synced.  ``reason`` in words (never parsed)."""

    ts: int
    reason: str


@dataclass(slots=True)
class ConnectEvent:
    """A WebSocket connection opened at ``ts`` (µs) (session event)."""

    ts: int


@dataclass(slots=True)
class SubscribedEvent:
    """``streams`` were subscribed at ``ts`` (µs) (session event)."""

    ts: int
    streams: tuple[str, ...]


@dataclass(slots=True)
class RestErrorEvent:
    """The depth request ``ticket`` of ``symbol`` failed at ``ts`` (µs),
    after the REST retries (session event): ``error`` in words, the venue's
    ``retry_after`` seconds if it gave any, the request's ``purpose``."""

    ts: int
    symbol: str | None
    ticket: int
    error: str
    retry_after: float | None
    purpose: Purpose | None = None


@dataclass(slots=True)
class TickEvent:
    """The engine's timer fired at ``ts`` (µs) (session event)."""

    ts: int


@dataclass(slots=True)
class FailedEvent:
    """The replicator failed for good at ``ts`` (µs): ``detail`` in words
    (session event)."""

    ts: int
    detail: str


SESSION_EVENTS = (ConnectEvent, SubscribedEvent, RestErrorEvent, TickEvent, FailedEvent)
"""The event types only a session recording holds: inputs of the live
engine that a replay of frames and snapshots alone would infer."""


@dataclass(slots=True)
class BadEvent:
    """A line holding an event of a known kind whose fields are unusable (no
    integer ``ts``, a ``raw`` that is not a string, ...).  Replay counts it
    and goes on.  ``line`` is its line number (``None`` when not read from a
    file), ``detail`` what is wrong."""

    kind: str
    detail: str
    line: int | None = None


CaptureEvent = Union[CaptureHeader, WsEvent, RestEvent, DisconnectEvent, ConnectEvent,
                     SubscribedEvent, RestErrorEvent, TickEvent, FailedEvent, BadEvent]
"""What :func:`read_events` yields, one per line of a known kind."""


def _str_or_none(value: object) -> str | None:
    return value if type(value) is str else None


def _ts_or_none(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_TS else None


def event_from_json(obj: dict[str, Any], line: int | None = None) -> CaptureEvent | None:
    """The typed event of one decoded line, ``None`` for an unknown kind.

    Never raises: unusable fields make a :class:`BadEvent`.  O(size of the
    event) for a v1 ``ws`` event (re-encoded), O(1) otherwise.
    """
    kind = obj.get("kind")
    if kind == "header":
        return CaptureHeader.from_json(obj)
    if kind not in _KINDS:
        return None
    ts = obj.get("ts")
    if type(ts) is not int or not 0 <= ts <= MAX_TS:
        return BadEvent(str(kind), f"ts must be an integer of microseconds, got {shown(ts)}", line)
    if kind == "ws":
        return _ws_event(obj, ts, line)
    if kind == "rest":
        raw_body = obj.get("raw_body")
        body = raw_body if type(raw_body) is str else obj.get("body")
        ticket = obj.get("ticket")
        return RestEvent(ts, obj.get("method"), obj.get("path"), obj.get("query"),
                         obj.get("status"), body, ticket if type(ticket) is int else None,
                         _purpose(obj.get("purpose")))
    if kind == "disconnect":
        reason = obj.get("reason")
        return DisconnectEvent(ts, reason if type(reason) is str else "")
    return _session_event(kind, obj, ts, line)


_KINDS = frozenset({"ws", "rest", "disconnect", "connect", "subscribed", "rest_error", "tick",
                    "failed"})


def _purpose(value: object) -> Purpose | None:
    try:
        return Purpose(value) if type(value) is str else None
    except ValueError:
        return None


def _session_event(kind: str, obj: dict[str, Any], ts: int,
                   line: int | None) -> CaptureEvent:
    """The typed session event of ``kind`` (``ts`` already checked)."""
    if kind == "connect":
        return ConnectEvent(ts)
    if kind == "tick":
        return TickEvent(ts)
    if kind == "subscribed":
        streams = obj.get("streams")
        if type(streams) is not list or not all(type(s) is str for s in streams):
            return BadEvent(kind, f"streams must be a list of names, got {shown(streams)}", line)
        return SubscribedEvent(ts, tuple(streams))
    if kind == "failed":
        detail = obj.get("detail")
        return FailedEvent(ts, detail if type(detail) is str else "")
    ticket, error, retry_after = obj.get("ticket"), obj.get("error"), obj.get("retry_after")
    if type(ticket) is not int:
        return BadEvent(kind, f"ticket must be an integer, got {shown(ticket)}", line)
    if retry_after is not None and type(retry_after) not in (int, float):
        return BadEvent(kind, f"retry_after must be seconds or null, got {shown(retry_after)}", line)
    query = obj.get("query")
    symbol = query.get("symbol") if type(query) is dict else None
    return RestErrorEvent(ts, symbol if type(symbol) is str else None, ticket,
                          error if type(error) is str else "", retry_after,
                          _purpose(obj.get("purpose")))


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
                   body: bytes | str, **extra: Any) -> None:
        """Record a ``GET /api/v1/depth`` response received at ``ts`` (µs):
        ``body`` as received, stored parsed (``body``, its text when it is not
        JSON) and, when it is UTF-8, exactly (``raw_body``); ``extra`` fields
        (JSON values, e.g. the ``ticket`` of the request) are added as given."""
        query = {"symbol": symbol} if limit is None else {"symbol": symbol, "limit": str(limit)}
        event: dict[str, Any] = {"ts": ts, "kind": "rest", "method": "GET", "path": DEPTH_PATH,
                                 "query": query, "status": status, **extra}
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

    def write_event(self, event: dict[str, Any]) -> None:
        """Write one event given as its JSON object (``ts``, ``kind``, ...), as
        is: another kind of event, or a copy (:func:`~orderbook.record.upgrade.upgrade_capture`)."""
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
