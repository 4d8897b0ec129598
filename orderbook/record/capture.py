"""Recorded sessions (``shared/docs/capture-format.md``): read, write, replay.

A capture is JSON Lines, optionally gzip-compressed: one ``rest`` or ``ws``
event per line in receive order.  Replaying feeds the events, in file order,
to the same :class:`~orderbook.sync.SymbolSync` machines the live replicator
runs: a ``rest`` depth event answers that symbol's pending snapshot request
(it is ignored when none is pending), a ``ws`` event is a frame.  Our recorder
also writes a ``disconnect`` event when the connection dropped: every book is
void from there on, as it was live.  Other kinds are ignored.  Replay is
deterministic: the same file always gives the same books and counters.

A file that cannot be a capture is refused with a
:class:`~orderbook.errors.MalformedMessage` naming it (and the line, when one
is at fault): a truncated or corrupt gzip stream, text that is not UTF-8, a
line that is not a JSON object, and a file holding no capture event at all
(empty, an empty gzip, JSON of something else).  Whether a file is gzip is
read from its first bytes, not from its name.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BufferedIOBase
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import MalformedMessage, UsageError
from ..protocol.decimals import decimal_str
from ..sync.symbol import SymbolSync
from ..protocol.wire import BookTickerEvent, DepthEvent, parse_message, parse_snapshot

__all__ = [
    "CaptureWriter",
    "ReplayResult",
    "read_capture",
    "replay_capture",
]

DEFAULT_SNAPSHOT_LIMIT = 1000
EVENT_KINDS = frozenset({"rest", "ws", "disconnect"})
"""The ``kind`` of the events replay acts on (a capture holds at least one)."""
_GZIP_MAGIC = b"\x1f\x8b"


def _open_text(path: Path, mode: str) -> IO[str]:
    """``path`` opened for writing text, gzip when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def read_capture(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the events of a ``.jsonl`` or ``.jsonl.gz`` capture in file order.

    Whether the file is gzip is read from its first bytes, not its name.
    Blank lines are skipped; a line that is not a JSON object or not UTF-8
    text and a truncated or corrupt gzip stream raise
    :class:`MalformedMessage` naming the file and the line.  Streams the
    file: O(1) memory per line.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"capture file not found: {path}")
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if compressed:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield from _events(unzipped, path)
        else:
            yield from _events(raw, path)


def _events(source: BufferedIOBase, path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(_lines(source, path), 1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise MalformedMessage(f"{path}:{number}: not UTF-8 text ({bad.reason})") from bad
            raise MalformedMessage(f"{path}:{number}: invalid JSON: {exc}") from exc
        if type(event) is not dict:
            raise MalformedMessage(f"{path}:{number}: event is not a JSON object")
        yield event


def _lines(source: BufferedIOBase, path: Path) -> Iterator[bytes]:
    """The lines of ``source``, a gzip stream failing turned into a
    :class:`MalformedMessage` naming ``path`` and the last line read whole
    (decompression runs ahead of the lines, so the damage lies after it)."""
    number = 0
    while True:
        try:
            line = source.readline()
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise MalformedMessage(
                f"{path}: truncated or corrupt gzip data after line {number} ({exc})") from exc
        if not line:
            return
        number += 1
        yield line


class CaptureWriter:
    """Append events to a capture file (gzip when the name ends in ``.gz``).

    Usable as a context manager; :meth:`close` flushes.  The files it writes
    are read back by :func:`read_capture` and replay identically.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = _open_text(self.path, "w")
        self.events = 0

    def write_rest(
        self, ts: int, symbol: str, limit: int | None, status: int, body: Any
    ) -> None:
        """Record a ``GET /api/v1/depth`` response received at ``ts`` (µs)."""
        query = {"symbol": symbol} if limit is None else {"symbol": symbol, "limit": str(limit)}
        self._write(
            {"ts": ts, "kind": "rest", "method": "GET", "path": "/api/v1/depth",
             "query": query, "status": status, "body": body}
        )

    def write_ws(self, ts: int, frame: Any) -> None:
        """Record one WebSocket frame (already decoded JSON) received at ``ts`` (µs)."""
        self._write({"ts": ts, "kind": "ws", "frame": frame})

    def write_disconnect(self, ts: int, reason: str) -> None:
        """Record that the WebSocket connection dropped at ``ts`` (µs)."""
        self._write({"ts": ts, "kind": "disconnect", "reason": reason})

    def write_event(self, event: dict[str, Any]) -> None:
        """Record any event (a JSON object with ``ts`` and ``kind``)."""
        self._write(event)

    def _write(self, event: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(event).decode())
        self._file.write("\n")
        self.events += 1

    def flush(self) -> None:
        """Push what was written so far to the file (for gzip a sync flush:
        the events so far can be decompressed even if the process then dies)."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ReplayResult:
    """What a replay produced: one machine per symbol plus file-level counts.

    ``ignored_snapshots`` counts depth responses that answered no pending
    request; ``unattributed_bad_frames`` frames too broken to name a symbol;
    ``book_tickers`` bookTicker frames seen (not applied to books).
    """

    machines: dict[str, SymbolSync] = field(default_factory=dict)
    ignored_snapshots: int = 0
    unattributed_bad_frames: int = 0
    book_tickers: int = 0

    def machine(self, symbol: str) -> SymbolSync:
        """The machine for ``symbol``, created (and started) on first use."""
        found = self.machines.get(symbol)
        if found is None:
            found = self.machines[symbol] = SymbolSync(symbol)
            found.start()
        return found

    def to_json(self) -> dict[str, Any]:
        """The ``orderbook replay --json`` document: symbols sorted by name,
        prices and quantities as exact decimal strings, best first."""
        symbols = {}
        for symbol in sorted(self.machines):
            machine = self.machines[symbol]
            book, counters = machine.book, machine.counters
            symbols[symbol] = {
                "status": machine.state.value,
                "last_update_id": book.last_update_id,
                "bids": [[decimal_str(p), decimal_str(q)] for p, q in book.bids()],
                "asks": [[decimal_str(p), decimal_str(q)] for p, q in book.asks()],
                "frames_applied": counters.frames_applied,
                "frames_dropped": counters.frames_dropped,
                "gaps": counters.gaps,
                "resyncs": counters.resyncs,
                "bad_frames": counters.bad_frames,
            }
        return {"symbols": symbols}


def replay_capture(
    source: str | Path | Iterable[dict[str, Any]], *, at: int | None = None
) -> ReplayResult:
    """Feed a capture (a path or an iterable of events) to fresh state machines.

    With ``at``, each symbol stops at the last update id ``<= at``: frames
    and snapshots beyond it are not fed (an aggregated frame spanning ``at``
    cannot be split, so the book stops before it).  A path raises
    :class:`MalformedMessage` when the file is not a capture (see
    :func:`read_capture`) or holds no event of :data:`EVENT_KINDS`.
    Cost: O(events).
    """
    events = read_capture(source) if isinstance(source, (str, Path)) else source
    result = ReplayResult()
    seen = 0
    for event in events:
        kind = event.get("kind")
        seen += kind in EVENT_KINDS
        if kind == "rest":
            _replay_rest(result, event, at)
        elif kind == "ws":
            _replay_ws(result, event.get("frame"), at)
        elif kind == "disconnect":
            for machine in result.machines.values():
                machine.connection_lost()
    if not seen and isinstance(source, (str, Path)):
        raise MalformedMessage(
            f"{source}: no capture events (an empty file, or not a capture: expected JSON lines "
            "of kind 'rest', 'ws' or 'disconnect')")
    return result


def _replay_rest(result: ReplayResult, event: dict[str, Any], at: int | None) -> None:
    if event.get("path") != "/api/v1/depth":
        return
    query = event.get("query")
    symbol = query.get("symbol") if type(query) is dict else None
    if type(symbol) is not str or not symbol:
        return
    machine = result.machine(symbol)
    if not machine.awaiting_snapshot:
        result.ignored_snapshots += 1
        return
    if event.get("status") != 200:
        return  # a failed request: the snapshot is still awaited, as live
    try:
        snapshot = parse_snapshot(event.get("body"), symbol)
    except MalformedMessage as exc:
        machine.bad_snapshot(exc)
        return
    if at is not None and snapshot.last_update_id > at:
        return
    limit = str(query.get("limit", DEFAULT_SNAPSHOT_LIMIT))  # type: ignore[union-attr]
    usable = limit.isascii() and limit.isdecimal() and len(limit) <= 9
    machine.receive_snapshot(snapshot, limit=int(limit) if usable else None)


def _replay_ws(result: ReplayResult, frame: Any, at: int | None) -> None:
    try:
        parsed = parse_message(frame, validate_levels=False)
    except MalformedMessage as exc:
        if exc.symbol:
            result.machine(exc.symbol).receive_bad_frame(exc)
        else:
            result.unattributed_bad_frames += 1
        return
    if isinstance(parsed, DepthEvent):
        if at is not None and parsed.last_id > at:
            return
        result.machine(parsed.symbol).receive_frame(parsed)
    elif isinstance(parsed, BookTickerEvent):
        result.book_tickers += 1
