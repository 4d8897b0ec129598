"""``orderbook record``: a live session written as a capture file (format version 2).

A :class:`Recorder` is a :class:`~orderbook.live.tap.Tap`: the replicator
shows it every input it gives its engine, in order and with the same times
-- every WebSocket message (recorded as its text, exactly as received), every
depth answer (its body exactly as received, with the ticket of the request
it answers) and failure, every connect, subscription, disconnect and timer
tick -- and the recorder appends each to a
:class:`~orderbook.record.format.CaptureWriter` (``shared/docs/capture-format.md``).
The header line, written with the first event, names this package, the
venue URLs, the streams subscribed and the engine (its symbols in order and
all its options, its retry jitter's seed among them:
:func:`~orderbook.record.session.engine_header`).  Replaying the file with
:func:`~orderbook.record.replay.replay_capture` is then a session replay
(:mod:`orderbook.record.session`): the same engine fed the same inputs in the
same order, so the books, statuses and counters end exactly as the live
engine's did -- gaps, resyncs, retries, bookTicker checks, audits and prunes
included.  Readers that know only ``ws``, ``rest`` and ``disconnect`` may
ignore the other kinds (the format says so of unknown kinds).

:class:`Recording` runs a :class:`~orderbook.live.replicator.Replicator` with a
recorder attached, flushes the file periodically and closes it cleanly::

    async with Recording("session.jsonl.gz", ["SOL_USDC"]) as recording:
        await recording.run(duration=60)
    recording.replicator.book("SOL_USDC")  # equals the replay of the file
    recording.final_engine                # equals engine_state(replay.engine)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import UsageError
from ..live.replicator import Replicator
from ..protocol.streams import now_us
from ..sync.engine import FetchSnapshot
from .format import DEPTH_PATH, CaptureHeader, CaptureWriter
from .result import ReplayResult, engine_state
from .session import ENGINE_KEY, engine_header

__all__ = ["Recorder", "Recording", "final_state"]

log = logging.getLogger("orderbook.recorder")


class Recorder:
    """A :class:`~orderbook.live.replicator.Tap` appending every engine input to ``writer``.

    Records every WebSocket message, every depth answer (with the ticket of
    the request it answers) and failure, every connect, subscription,
    disconnect and timer tick, with their times: replaying the file through
    an :class:`~orderbook.sync.engine.Engine` repeats the live session.  A
    write error stops the recording (``error`` holds it) without disturbing
    the replica.  O(message size) per call.
    """

    def __init__(self, writer: CaptureWriter) -> None:
        self.writer = writer
        self.messages = 0
        """WebSocket messages recorded."""
        self.responses = 0
        """Depth responses recorded."""
        self.error: OSError | None = None
        """The write error that stopped the recording, if any."""
        self.stopped = False
        """True once :meth:`stop` was called: nothing more is recorded."""

    def stop(self) -> None:
        """Record nothing more (the file stays open until the writer is closed)."""
        self.stopped = True

    def _record(self, event: dict[str, Any]) -> bool:
        if self.error is not None or self.stopped:
            return False
        try:
            self.writer.write_event(event)
        except OSError as exc:
            self._failed(exc)
            return False
        return True

    def _live(self) -> bool:
        return self.error is None and not self.stopped

    def connected(self, now: int) -> None:
        """Record that a connection opened."""
        self._record({"ts": now, "kind": "connect"})

    def subscribed(self, streams: Sequence[str], now: int) -> None:
        """Record a subscription."""
        self._record({"ts": now, "kind": "subscribed", "streams": list(streams)})

    def frames(self, frames: Sequence[str | bytes], now: int) -> None:
        """Record one socket read's messages, each its text exactly as received."""
        for raw in frames:
            if not self._live():
                return
            try:
                self.writer.write_ws(now, raw)
            except OSError as exc:
                self._failed(exc)
                return
            self.messages += 1

    def snapshot(self, fetch: FetchSnapshot, body: bytes, now: int) -> None:
        """Record the answer to ``fetch`` (its body exactly as received)."""
        if not self._live():
            return
        try:
            self.writer.write_rest(now, fetch.symbol, fetch.limit, 200, body,
                                   ticket=fetch.ticket, purpose=str(fetch.purpose))
        except OSError as exc:
            self._failed(exc)
            return
        self.responses += 1

    def snapshot_failed(self, fetch: FetchSnapshot, error: str, retry_after: float | None,
                        now: int) -> None:
        """Record that ``fetch`` failed."""
        self._record({"ts": now, "kind": "rest_error", "path": DEPTH_PATH,
                      "query": {"symbol": fetch.symbol, "limit": str(fetch.limit)},
                      "ticket": fetch.ticket, "purpose": str(fetch.purpose), "error": error,
                      "retry_after": retry_after})

    def disconnected(self, reason: str, now: int) -> None:
        """Record a lost connection."""
        self._record({"ts": now, "kind": "disconnect", "reason": reason})

    def tick(self, now: int) -> None:
        """Record a timer tick of the engine."""
        self._record({"ts": now, "kind": "tick"})

    def failed(self, detail: str, now: int) -> None:
        """Record that the replicator failed for good."""
        self._record({"ts": now, "kind": "failed", "detail": detail})

    def flush(self) -> None:
        """Push what was recorded to the file (see :meth:`CaptureWriter.flush`)."""
        if self.error is None:
            try:
                self.writer.flush()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        log.error("recording to %s stopped: %s", self.writer.path, exc)


class Recording:
    """A replicator of ``symbols`` recording its whole session to ``path``.

    ``options`` are :class:`~orderbook.live.replicator.Replicator` keyword
    arguments (``rest_url``, ``ws_url``, ``sync``, ...; not ``tap``).  Entering opens the file (gzip when it ends in ``.gz``,
    replacing any file there) and starts the replicator (if that fails the
    file is removed); the file is flushed every ``flush_interval`` seconds.  Leaving stops the recorder, takes :attr:`final` at that same
    instant (so the file holds exactly the inputs those books were built
    from), then closes the replicator (which voids its books) and the file.
    """

    def __init__(self, path: str | Path, symbols: list[str] | str, *,
                 flush_interval: float = 1.0, **options: Any) -> None:
        if "tap" in options:
            raise UsageError("a recording supplies its own tap")
        if flush_interval <= 0:
            raise UsageError(f"flush_interval must be > 0, got {flush_interval}")
        self.path = Path(path)
        self._symbols = symbols
        self._options = options
        self._flush_interval = flush_interval
        self._recorder: Recorder | None = None
        self._replicator: Replicator | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._started = 0.0
        self._opened_us = 0
        self.seconds = 0.0
        """How long the recording ran (set when it ends)."""
        self.final: dict[str, Any] = {}
        """The live books when the recording ended, in the shape of
        :meth:`ReplayResult.to_json() <orderbook.record.result.ReplayResult.to_json>`
        (``{"symbols": {...}}``)."""
        self.final_engine: dict[str, Any] = {}
        """The live engine's whole state when the recording ended
        (:func:`~orderbook.record.result.engine_state`): a replay of the file
        ends with an equal one."""

    @property
    def replicator(self) -> Replicator:
        """The live replicator (its books stay readable after the recording ends)."""
        if self._replicator is None:
            raise UsageError("the recording is not started")
        return self._replicator

    @property
    def recorder(self) -> Recorder:
        """The tap writing the file: its counters and write error."""
        if self._recorder is None:
            raise UsageError("the recording is not started")
        return self._recorder

    async def __aenter__(self) -> Recording:
        self._opened_us = now_us()
        writer = CaptureWriter(self.path, self._header)  # the header once the symbols are known
        self._recorder = Recorder(writer)
        try:
            self._replicator = Replicator(self._symbols, tap=self._recorder, **self._options)
            await self._replicator.start()
        except BaseException:
            if self._replicator is not None:
                await self._replicator.close()
            writer.abandon()
            self.path.unlink(missing_ok=True)  # nothing was recorded
            raise
        self._started = time.monotonic()
        self._flusher = asyncio.create_task(self._flush_loop(), name="orderbook-record-flush")
        log.info("recording %s to %s", ", ".join(self._replicator.symbols), self.path)
        return self

    def _header(self) -> CaptureHeader:
        """The header line, made when the first event is written (the engine
        knows its streams by then): this package, the venue, the streams and
        the engine's options (JSON values; others as text)."""
        replicator = self.replicator
        engine = replicator.engine
        options: dict[str, Any] = {
            "symbols": self._symbols if isinstance(self._symbols, str) else list(self._symbols)}
        for option in fields(replicator.options):
            value = getattr(replicator.options, option.name)
            plain = not is_dataclass(value) or isinstance(value, type)
            options[option.name] = value if plain else asdict(value)
        if engine is not None:
            options[ENGINE_KEY] = engine_header(engine)
        return CaptureHeader(rest_url=replicator.rest_url, ws_url=replicator.ws_url,
                             streams=tuple(engine.streams) if engine is not None else (),
                             options=options, ts=self._opened_us)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        recorder = self.recorder
        recorder.stop()
        self.final = final_state(self.replicator)
        if self.replicator.engine is not None:
            self.final_engine = engine_state(self.replicator.engine)
        await self.replicator.close()
        try:
            recorder.writer.close()
        except OSError as error:
            recorder.error = recorder.error or error
        self.seconds = time.monotonic() - self._started
        log.debug("recorded %d frames and %d snapshots to %s in %.1f s", recorder.messages,
                  recorder.responses, self.path, self.seconds)

    async def run(self, duration: float | None = None) -> None:
        """Record for ``duration`` seconds (``None``: until cancelled).

        Raises the recorder's :class:`OSError` if writing the file failed, and
        the replicator's :attr:`~orderbook.live.replicator.Replicator.failure` if it
        failed (a WebSocket that never connected).
        """
        deadline = None if duration is None else time.monotonic() + duration
        while self.recorder.error is None:
            if self.replicator.failure is not None:
                raise self.replicator.failure
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            await asyncio.sleep(0.2 if left is None else min(0.2, left))
        raise self.recorder.error

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            self.recorder.flush()


def final_state(replicator: Replicator) -> dict[str, Any]:
    """The replicator's books and sync counters now, as
    :meth:`ReplayResult.to_json() <orderbook.record.result.ReplayResult.to_json>`
    gives them for a replay.  O(levels)."""
    return ReplayResult(replicator.engine).to_json()
