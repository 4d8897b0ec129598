"""Upgrading a version 1 capture to version 2 (``orderbook capture upgrade``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..errors import UsageError
from .format import FORMAT_VERSION, RECORDER, CaptureHeader, CaptureWriter
from .reader import CaptureReader

__all__ = ["UpgradeResult", "upgrade_capture"]


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
            started = _ts(obj.get("ts"))
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
                writer.write_event(obj)
            events = writer.events
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return UpgradeResult(version=version, events=events, frames=frames)



def _ts(value: object) -> int | None:
    return value if type(value) is int and 0 <= value < 2**63 else None
