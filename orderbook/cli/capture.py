"""``orderbook capture upgrade`` and ``orderbook export``: tools for capture files.

Both need no network and load no asyncio layer, so they start fast; the
export loads pyarrow (the ``research`` extra) when it runs.  Long files show
a progress bar on stderr when it is a terminal (:class:`ProgressBar`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

from ..errors import UsageError

__all__ = ["ProgressBar", "add_capture_commands"]


class ProgressBar:
    """A one-line progress bar: ``[#####.....]  42%  12.3/29.0 MB  81,920 rows  2.1 s``.

    Drawn on ``stream`` (stderr) only when it is a terminal, or always with
    ``force``, never unless ``enabled``; nothing is drawn for a run that ends within ``delay`` seconds,
    and the line is redrawn at most every ``interval`` seconds, so that it
    costs nothing measurable.  :meth:`done` clears the line.
    """

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None, *, force: bool = False, enabled: bool = True,
                 delay: float = 0.5, interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and (force or self.stream.isatty())
        self.delay = delay
        self.interval = interval
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.drawn = False

    def update(self, done: int, total: int, rows: int) -> None:
        """Show ``done`` of ``total`` bytes and ``rows`` so far."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < self.delay or now - self.drawn_at < self.interval:
            return
        self.drawn_at = now
        self.stream.write("\r" + self.line(done, total, rows, now - self.started))
        self.stream.flush()
        self.drawn = True

    @classmethod
    def line(cls, done: int, total: int, rows: int, seconds: float) -> str:
        """The text of the bar (without the carriage return)."""
        fraction = min(1.0, done / total) if total > 0 else 1.0
        filled = int(fraction * cls.WIDTH)
        return (f"[{'#' * filled}{'.' * (cls.WIDTH - filled)}] {fraction:4.0%}  "
                f"{done / 1e6:.1f}/{total / 1e6:.1f} MB  {rows:,} rows  {seconds:.1f} s")

    def done(self) -> None:
        """Erase the bar (if it was drawn)."""
        if self.drawn:
            self.stream.write("\r" + " " * (len(self.line(1, 1, 0, 0.0)) + 12) + "\r")
            self.stream.flush()
            self.drawn = False


def _refuse_existing(path: str, force: bool) -> None:
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} exists (--force to replace it)")


def _progress(args: argparse.Namespace) -> ProgressBar:
    """The bar ``--progress`` / ``--no-progress`` ask for (default: on a terminal)."""
    if args.progress is False:
        return ProgressBar(enabled=False)
    return ProgressBar(force=args.progress is True)


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from ..record.upgrade import upgrade_capture

    _refuse_existing(args.output, args.force)
    bar = _progress(args)
    try:
        result = upgrade_capture(args.input, args.output,
                                 progress=lambda reader: bar.update(reader.position(), reader.size, 0))
    finally:
        bar.done()
    if result.version == 1:
        print(f"upgraded {args.input} (format 1) to {args.output} (format 2): "
              f"{result.events} events, {result.frames} frames re-encoded")
    else:
        print(f"{args.input} is already format {result.version}: copied to {args.output} "
              f"({result.events} events)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ..record.export import export_parquet, parse_interval

    every = parse_interval(args.every) if args.every is not None else None
    _refuse_existing(args.output, args.force)
    bar = _progress(args)
    try:
        result = export_parquet(args.capture, args.output, symbol=args.symbol, levels=args.levels,
                                every=every, as_float=args.float,
                                progress=lambda p: bar.update(p.position, p.size, p.rows))
    finally:
        bar.done()
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    kinds = ("float64" if args.float else
             f"decimal prices (scale {result.price_scale}), quantities (scale {result.quantity_scale})")
    print(f"wrote {result.rows:,} rows of {len(result.symbols)} symbols to {result.path} "
          f"({kinds}) in {result.seconds:.2f} s ({rate:,.0f} rows/s)")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", dest="progress", action="store_true", default=None,
                        help="draw the progress bar on stderr even when it is not a terminal")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="never draw the progress bar (default: on a terminal, for runs "
                             "longer than half a second)")


def add_capture_commands(commands: Any) -> None:
    """Add ``capture`` (``capture upgrade``) and ``export`` to ``commands``
    (an ``add_subparsers()`` result)."""
    capture = commands.add_parser(
        "capture", help="tools for capture files (upgrade)",
        description="Tools for capture files (shared/docs/capture-format.md).")
    tools = capture.add_subparsers(dest="tool", required=True, metavar="TOOL")
    upgrade = tools.add_parser(
        "upgrade", help="rewrite a format 1 capture as format 2",
        description="Rewrite a format 1 capture (.jsonl or .jsonl.gz) as format 2: a header "
                    "line, then the same events, each frame as its text (re-encoded: a format 1 "
                    "file does not hold the text as received). Replays to the same books. A "
                    "format 2 input is copied. OUT is gzip when it ends in .gz.")
    upgrade.add_argument("input", metavar="IN", help="capture to read")
    upgrade.add_argument("output", metavar="OUT", help="capture to write")
    upgrade.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _add_progress_option(upgrade)
    upgrade.set_defaults(handler=_cmd_upgrade)

    export = commands.add_parser(
        "export", help="sample a capture's books into a Parquet file (needs orderbook[research])",
        description="Replay CAPTURE through the engine and write its books to a Parquet file: "
                    "one row per sample and symbol with symbol, receive_time, engine_time, "
                    "update_id and bid_px_0..N-1, bid_qty_.., ask_px_.., ask_qty_.. (best first, "
                    "null beyond the book). Exact decimals (scale from the prices seen) unless "
                    "--float. Needs pyarrow: pip install 'orderbook[research]'.")
    export.add_argument("capture", metavar="CAPTURE", help="capture file (.jsonl or .jsonl.gz)")
    export.add_argument("-o", "--output", required=True, metavar="OUT.parquet",
                        help="Parquet file to write")
    export.add_argument("--symbol", metavar="S", help="only this symbol")
    export.add_argument("--levels", type=_positive_int, default=10, metavar="N",
                        help="levels per side (default: %(default)s)")
    sampling = export.add_mutually_exclusive_group()
    sampling.add_argument("--every", metavar="INTERVAL",
                          help="a row per symbol every INTERVAL of receive time (e.g. 100ms, 1s)")
    sampling.add_argument("--on-change", action="store_true",
                          help="a row whenever a symbol's top N levels change (the default)")
    export.add_argument("--float", action="store_true",
                        help="float64 prices and quantities instead of exact decimals")
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _add_progress_option(export)
    export.set_defaults(handler=_cmd_export)


def replay_time(text: str) -> int:
    """``--at-time``: µs since the epoch or ISO 8601 (see :func:`~orderbook.record.replay.parse_time`)."""
    from ..record.replay import parse_time

    try:
        return parse_time(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

