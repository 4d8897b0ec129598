"""The ``orderbook`` command line.

Commands: ``demo`` (the simulated venue in-process and the live view, offline),
``run`` (the live view of real books), ``record`` (a live session to a capture
file), ``replay`` (a capture through the sync engine), ``bench`` (the benchmark
harness), ``serve`` (the local mirror, :mod:`orderbook.serve`), ``venue``
(the simulated venue alone, :mod:`orderbook.cli.venue`), ``capture upgrade``
and ``export`` (:mod:`orderbook.cli.capture`).  Every command has ``--help``;
``--log-level`` and ``--log-json`` are accepted before or after the command
name.  Long-running commands stop cleanly on SIGINT (exit status 130) or
SIGTERM (0), or after ``--duration`` seconds (0).

Start-up: the asyncio layers and their network libraries (aiohttp, httpx,
websockets) are imported by the commands that use them, inside their
functions, never at the top of this module; ``replay``, ``export`` and
``capture`` build a parser of the offline commands only (:data:`OFFLINE`), so
they start in ~0.1 s instead of ~0.5 s.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import OrderBookError, UnknownSymbol, UsageError, VenueUnavailable
from ..protocol.streams import DEPTH_STREAMS
from ..protocol.markets import Market, MarketCatalog
from .capture import add_capture_commands, replay_time

if TYPE_CHECKING:
    from ..live.replicator import Replicator

__all__ = ["JsonFormatter", "build_parser", "main", "setup_logging"]

log = logging.getLogger("orderbook.cli")

DEMO_SYMBOLS = ("SOL_USDC", "BTC_USDC_PERP")


# -------------------------------------------------------------------- logging
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC, µs), ``level``,
    ``logger``, ``message``, every extra field of the record
    (``log.info(..., extra={"symbol": s})``) and ``exc`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (values JSON cannot hold become strings)."""
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str = "INFO", json: bool = False) -> None:
    """Log to stderr, as text or as JSON lines (:class:`JsonFormatter`),
    replacing the root logger's handlers.

    ``level`` is the threshold of the ``orderbook.*`` loggers; the libraries
    underneath (websockets, httpx) log from WARNING, or from DEBUG too when
    ``level`` is DEBUG.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    threshold = logging.getLevelName(level)
    root.setLevel(min(threshold, logging.WARNING) if threshold == logging.DEBUG
                  else max(threshold, logging.WARNING))
    logging.getLogger("orderbook").setLevel(threshold)


# ------------------------------------------------------------------- commands
def _run_until_signalled(command: Coroutine[Any, Any, None]) -> int:
    """Run an async command until it returns (0) or SIGINT/SIGTERM cancels it
    (130 after Ctrl-C, 0 after SIGTERM; see :mod:`orderbook.cli.signals`)."""
    from .signals import StopSignals  # asyncio: only the commands that run a loop load it

    signals = StopSignals()

    import asyncio  # (with signal handling: only the commands that run a loop load it)

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        signals.install(task.cancel)
        try:
            await command
        except asyncio.CancelledError:
            if signals.received is None:
                raise
            log.info("interrupted: stopped cleanly")

    asyncio.run(guarded())
    return signals.exit_status


async def _demo(args: argparse.Namespace) -> None:
    from ..live.replicator import Replicator
    from ..testing.venue import Faults, OrderFlow, SimulatedVenue
    from .view import show

    from ..live.config import Connection

    symbols = args.symbols or list(DEMO_SYMBOLS)
    flow = OrderFlow(symbols, seed=args.seed)
    faults = Faults(drop_rate=args.drop_rate)
    async with SimulatedVenue(flow, faults=faults, rate=args.rate, seed=args.seed) as venue:
        async with Replicator(symbols, rest_url=venue.rest_url, ws_url=venue.ws_url,
                              connection=Connection(transport=args.transport)) as replicator:
            await show(replicator, source=f"simulated venue {venue.ws_url}", levels=args.levels,
                       duration=args.duration)


def _cmd_demo(args: argparse.Namespace) -> int:
    _check_demo_symbols(args.symbols)
    return _run_until_signalled(_demo(args))


def _check_demo_symbols(symbols: list[str]) -> None:
    """As ``run`` does against the venue's list: the simulated venue lists
    :data:`DEFAULT_SYMBOLS`; anything else is an :class:`UnknownSymbol` with
    the close matches (exit status 2)."""
    from ..testing.venue import DEFAULT_SYMBOLS

    if len(set(symbols)) != len(symbols):
        raise UsageError("each symbol may be given once")
    listed = MarketCatalog(Market(s, "", "", "", "Open", True, None, None) for s in DEFAULT_SYMBOLS)
    listed.validate(symbols or DEMO_SYMBOLS)


async def _run(args: argparse.Namespace) -> None:
    from ..live.replicator import Replicator
    from .options import replicator_options
    from .view import show

    async with Replicator(args.symbols, **replicator_options(args)) as replicator:
        await show(replicator, source=args.ws_url, levels=args.levels, duration=args.duration)
        _connected_once(replicator, args.duration)


def _connected_once(replicator: Replicator, duration: float | None) -> None:
    """A run that ended (``--duration``) without its WebSocket ever connecting
    did not do its job, even before the give-up time: say so (exit status 2)."""
    connection = replicator.stats().connection
    if not connection.connects:
        last = f"; last: {connection.last_error}" if connection.last_error else ""
        within = f" in {duration:g} s" if duration is not None else ""
        raise VenueUnavailable(f"never connected to {replicator.ws_url}{within}{last}")


def _cmd_run(args: argparse.Namespace) -> int:
    return _run_until_signalled(_run(args))


async def _record(args: argparse.Namespace) -> None:
    from ..record.recorder import Recording
    from .options import replicator_options

    if os.path.exists(args.output) and not args.force:
        raise UsageError(f"{args.output} exists (--force to replace it)")
    recording = Recording(args.output, args.symbols, **replicator_options(args))
    try:
        async with recording:
            await recording.run(args.duration)
            _connected_once(recording.replicator, args.duration)
    finally:
        if recording.final:
            recorder = recording.recorder
            print(f"recorded {recorder.messages} frames and {recorder.responses} depth responses "
                  f"to {recording.path} in {recording.seconds:.1f} s")
            _print_books(recording.final["symbols"])


def _cmd_record(args: argparse.Namespace) -> int:
    return _run_until_signalled(_record(args))


def _cmd_replay(args: argparse.Namespace) -> int:
    from ..record.replay import replay_capture

    result = replay_capture(args.path, at=args.at, at_time=args.at_time)
    if result.bad_events:
        log.warning("%s: %d events with unusable fields were skipped", args.path, result.bad_events)
    if args.symbol is not None and args.symbol not in result.machines:
        raise UnknownSymbol(args.symbol, difflib.get_close_matches(args.symbol, result.machines))
    doc = result.to_json()
    if args.symbol is not None:
        doc["symbols"] = {args.symbol: doc["symbols"][args.symbol]}
    if args.json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return 0
    _print_books(doc["symbols"])
    if args.symbol is not None:
        from .view import SymbolView, render_symbol

        machine = result.machines[args.symbol]
        book, counters = machine.book, machine.counters
        assert result.engine is not None  # it replicates the symbol
        view = SymbolView(
            args.symbol, result.engine.status(args.symbol), book.last_update_id, book.asks(args.levels),
            book.bids(args.levels), book.spread(), book.mid(), None, counters.frames_applied,
            counters.gaps, counters.resyncs, counters.bad_frames,
        )
        tty = sys.stdout.isatty()
        print()
        print("\n".join(render_symbol(view, levels=args.levels, color=tty, unicode=tty)))
    return 0


def _print_books(symbols: dict[str, Any]) -> None:
    """The summary table of books shaped like ``ReplayResult.to_json()["symbols"]``."""
    width = max([13, *(len(symbol) for symbol in symbols)]) + 1  # 14 at least
    print(f"{'symbol':<{width}} {'status':<9} {'last id':>12} {'best bid':>24} {'best ask':>24} "
          f"{'bids':>5} {'asks':>5} {'applied':>7} {'dropped':>7} {'gaps':>4} {'resyncs':>7} {'bad':>3}")
    for symbol, book in symbols.items():
        bid = " x ".join(book["bids"][0]) if book["bids"] else "-"
        ask = " x ".join(book["asks"][0]) if book["asks"] else "-"
        print(
            f"{symbol:<{width}} {book['status']:<9} {_shown(book['last_update_id']):>12} {bid:>24} "
            f"{ask:>24} {len(book['bids']):>5} {len(book['asks']):>5} {book['frames_applied']:>7} "
            f"{book['frames_dropped']:>7} {book['gaps']:>4} {book['resyncs']:>7} {book['bad_frames']:>3}"
        )


def _shown(value: object) -> str:
    """A table cell: ``-`` for a missing value (never ``None``)."""
    return "-" if value is None else str(value)


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.harness import run_benchmarks  # the harness is only loaded for this command

    print(run_benchmarks(args.frames, args.repeat, args.seed, include_ccxt=not args.no_ccxt,
                         books=args.books,
                         progress=log.info))
    return 0


# --------------------------------------------------------------------- parser
def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value

    return parse


def _add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--levels", type=_positive(int), default=10, metavar="N",
                        help="price levels shown per side (default: %(default)s)")
    parser.add_argument("--duration", type=_positive(float), metavar="S",
                        help="stop after S seconds (default: until Ctrl-C)")


def _add_venue_options(parser: argparse.ArgumentParser) -> None:
    from ..live.transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_REST_URL, DEFAULT_WS_URL

    parser.add_argument("--rest-url", default=DEFAULT_REST_URL,
                        help="venue REST API (default: %(default)s)")
    parser.add_argument("--ws-url", default=DEFAULT_WS_URL,
                        help="venue WebSocket (default: %(default)s)")
    parser.add_argument("--depth-stream", default="depth", choices=DEPTH_STREAMS,
                        help="depth stream kind (default: %(default)s)")
    parser.add_argument("--connect-timeout", type=_positive(float), default=DEFAULT_CONNECT_TIMEOUT,
                        metavar="S",
                        help="give up (exit status 2) when the WebSocket has not connected once "
                             "within S seconds (default: %(default)s); once connected, it "
                             "reconnects forever")
    parser.add_argument("--book-ticker", action="store_true",
                        help="also subscribe bookTicker and resync a book whose touch disagrees")
    parser.add_argument("--audit-every", type=_positive(float), metavar="S",
                        help="every S seconds, check one synced book against a fresh snapshot "
                             "(round robin; a divergence resyncs; default: off)")
    parser.add_argument("--prune-every", type=_positive(float), metavar="S",
                        help="every S seconds, drop levels beyond each snapshot's window "
                             "(default: never)")
    from .options import add_transport_option

    add_transport_option(parser)


def _add_logging_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The global options; on subcommands their defaults are suppressed so
    that they only override what was given before the command name."""
    parser.add_argument(
        "--log-level", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        default="INFO" if defaults else argparse.SUPPRESS,
        help="threshold of this package's logs; other libraries log from WARNING unless DEBUG "
             "(default: INFO)")
    parser.add_argument(
        "--log-json", action="store_true", default=False if defaults else argparse.SUPPRESS,
        help="log JSON lines (time, level, logger, message, extra fields) to stderr")


def _add_commands(commands: Any) -> None:
    from ..testing.venue import DEFAULT_SYMBOLS  # the commands that connect load the I/O layers
    from .options import add_transport_option

    demo = commands.add_parser(
        "demo", help="a simulated venue in-process and the live view of its books (offline)",
        description="Start a simulated Backpack venue on loopback, replicate its books and show "
                    "them live. Needs no network.")
    demo.add_argument("symbols", nargs="*", metavar="SYMBOL",
                      help=f"markets to simulate, among {', '.join(DEFAULT_SYMBOLS)} "
                           f"(default: {' '.join(DEMO_SYMBOLS)})")
    demo.add_argument("--rate", type=_positive(float), default=200.0,
                      help="venue updates per second, all symbols together (default: %(default)s)")
    demo.add_argument("--drop-rate", type=float, default=0.0, metavar="P",
                      help="probability that the venue loses a frame, to watch resyncs "
                           "(default: %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated flow (default: %(default)s)")
    add_transport_option(demo)
    _add_view_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    run = commands.add_parser(
        "run", help="live terminal view of venue books",
        description="Replicate SYMBOL... and show asks and bids, spread, mid, update rate, "
                    "engine-to-local latency, status and counters, redrawn at most 10 times a "
                    "second (a plain frame every second when stdout is not a terminal).")
    run.add_argument("symbols", nargs="+", metavar="SYMBOL", help="markets, e.g. SOL_USDC")
    _add_venue_options(run)
    _add_view_options(run)
    run.set_defaults(handler=_cmd_run)

    record = commands.add_parser(
        "record", help="record a live session (snapshots and frames) to a capture file",
        description="Replicate SYMBOL... and write every frame and depth response, in the order "
                    "they were used, to a capture (.jsonl or .jsonl.gz) that `orderbook replay` "
                    "turns into the same books. Stops on Ctrl-C, SIGTERM or --duration.")
    record.add_argument("symbols", nargs="+", metavar="SYMBOL", help="markets, e.g. SOL_USDC")
    record.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="capture file to write (gzip when it ends in .gz)")
    record.add_argument("--force", action="store_true", help="replace FILE if it exists")
    record.add_argument("--duration", type=_positive(float), metavar="S",
                        help="stop after S seconds (default: until Ctrl-C)")
    _add_venue_options(record)
    record.set_defaults(handler=_cmd_record)


OFFLINE = frozenset({"replay", "export", "capture"})
"""The commands that need no network: their own parser loads no asyncio layer."""


def build_parser(offline_only: bool = False) -> argparse.ArgumentParser:
    """The argument parser of every ``orderbook`` command (of the
    :data:`OFFLINE` ones only with ``offline_only``: faster to build)."""
    parser = argparse.ArgumentParser(
        prog="orderbook", description="Exact local replicas of Backpack Exchange order books."
    )
    _add_logging_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if not offline_only:
        _add_commands(commands)
    replay = commands.add_parser(
        "replay", help="replay a recorded capture through the sync engine and show the books",
        description="Feed a capture (.jsonl or .jsonl.gz) to the same state machines that run live.",
    )
    replay.add_argument("path", help="capture file")
    replay.add_argument("--json", action="store_true", help="print one JSON document")
    replay.add_argument("--at", type=int, metavar="UPDATE_ID", help="stop each book at the last update id <= UPDATE_ID")
    replay.add_argument("--at-time", type=replay_time, metavar="TIME",
                        help="the books as they were at receive time TIME: microseconds since the "
                             "epoch or ISO 8601 (2021-10-12T00:28:32.063Z; UTC unless an offset)")
    replay.add_argument("--symbol", metavar="SYMBOL", help="only this symbol, and show its book's levels")
    replay.add_argument("--levels", type=_positive(int), default=10, metavar="N",
                        help="levels per side shown with --symbol (default: %(default)s)")
    replay.set_defaults(handler=_cmd_replay)
    bench = commands.add_parser(
        "bench", help="run the hot-path benchmark harness and print its table",
        description="Feed the same synthetic session to this package and to reference designs; "
                    "print throughput, per-frame latency, read costs and memory as markdown. "
                    "Progress goes to the log (stderr).")
    bench.add_argument("--frames", type=_positive(int), default=100_000,
                       help="depth frames in the workload (default: %(default)s, about half a "
                            "minute; benchmarks/run.py uses 200000 and 5 repetitions)")
    bench.add_argument("--repeat", type=_positive(int), default=3,
                       help="timed repetitions, at least 3 (default: %(default)s)")
    bench.add_argument("--seed", type=int, default=20_240_611, help="workload seed (default: %(default)s)")
    bench.add_argument("--books", type=_positive(int), default=100, metavar="N",
                       help="also spread the frames over N books, interleaved (1: skip; "
                            "default: %(default)s)")
    bench.add_argument("--no-ccxt", action="store_true", help="leave ccxt out even if installed")
    bench.set_defaults(handler=_cmd_bench)
    if not offline_only:
        from .serve import add_serve_command
        from .venue import add_venue_command

        add_serve_command(commands)
        add_venue_command(commands)
    add_capture_commands(commands)
    for command in {id(p): p for p in commands.choices.values()}.values():
        _add_logging_options(command, defaults=False)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command name in ``argv``: its first word that is no global option."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orderbook`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(offline_only=_command_of(argv) in OFFLINE).parse_args(argv)
    setup_logging(args.log_level, args.log_json)
    try:
        return int(args.handler(args))
    except (OrderBookError, OSError) as exc:
        print(f"orderbook: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before a command took over the signals
        return 128 + 2  # SIGINT, as orderbook.cli.signals.INTERRUPTED

