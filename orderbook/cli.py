"""The ``orderbook`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from .book import Level
from .capture import decimal_str, replay_capture
from .errors import OrderBookError

__all__ = ["main"]


def _cmd_replay(args: argparse.Namespace) -> int:
    result = replay_capture(args.path, at=args.at)
    if args.json:
        sys.stdout.write(orjson.dumps(result.to_json()).decode() + "\n")
        return 0
    header = f"{'symbol':<14} {'status':<8} {'last id':>12} {'best bid':>24} {'best ask':>24} {'bids':>5} {'asks':>5} {'applied':>7} {'dropped':>7} {'gaps':>4} {'resyncs':>7} {'bad':>3}"
    print(header)
    for symbol, machine in sorted(result.machines.items()):
        book, c = machine.book, machine.counters
        bid, ask = book.best_bid(), book.best_ask()
        n_bids, n_asks = book.depth()
        print(
            f"{symbol:<14} {machine.state.value:<8} {str(book.last_update_id):>12} {_show(bid):>24} "
            f"{_show(ask):>24} {n_bids:>5} {n_asks:>5} {c.frames_applied:>7} {c.frames_dropped:>7} "
            f"{c.gaps:>4} {c.resyncs:>7} {c.bad_frames:>3}"
        )
    return 0


def _show(level: Level | None) -> str:
    return f"{decimal_str(level[0])} x {decimal_str(level[1])}" if level else "-"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``orderbook`` command."""
    parser = argparse.ArgumentParser(
        prog="orderbook", description="Exact local replicas of Backpack Exchange order books."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay = commands.add_parser(
        "replay", help="replay a recorded capture through the sync engine and show the books",
        description="Feed a capture (.jsonl or .jsonl.gz) to the same state machines that run live.",
    )
    replay.add_argument("path", help="capture file")
    replay.add_argument("--json", action="store_true", help="print one JSON document")
    replay.add_argument("--at", type=int, metavar="UPDATE_ID", help="stop each book at the last update id <= UPDATE_ID")
    replay.set_defaults(handler=_cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orderbook`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except OrderBookError as exc:
        print(f"orderbook: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
