"""``orderbook venue``: the simulated Backpack venue as a command of its own.

It serves :class:`~orderbook.testing.venue.SimulatedVenue` (REST
``/api/v1/depth``, ``/api/v1/markets``, ``/api/v1/market`` and the WebSocket
``depth.<symbol>`` / ``bookTicker.<symbol>`` streams) on one port until
stopped, so that ``orderbook run``/``serve``, ccxt or your own code can be
tried offline.  It prints its URLs on stdout once listening::

    REST http://127.0.0.1:8764
    WebSocket ws://127.0.0.1:8764/

``--faults`` switches on what the venue does wrong, as ``name=value`` pairs
separated by commas (a bare name sets a switch to true), with the names and
checks of :class:`~orderbook.testing.venue.Faults`: ``--faults
drop_rate=0.01,aggregate,snapshot_order=shuffled``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from typing import Any

from ..errors import UsageError
from ..testing.venue import DEFAULT_SYMBOLS, Faults, OrderFlow, SimulatedVenue
from .signals import StopSignals

__all__ = ["DEFAULT_VENUE_PORT", "add_venue_command", "parse_faults"]

log = logging.getLogger("orderbook.cli")

DEFAULT_VENUE_PORT = 8764
"""The port ``orderbook venue`` binds unless told otherwise (the mirror's is 8765)."""

_FAULT_TYPES = {f.name: f.type for f in dataclasses.fields(Faults)}


def parse_faults(spec: str) -> Faults:
    """The :class:`Faults` of a ``name=value,name,...`` spec (empty: none).

    Raises :class:`UsageError` naming the bad part and the valid names.  O(len).
    """
    faults = Faults()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, equals, text = part.partition("=")
        name = name.strip()
        kind = _FAULT_TYPES.get(name)
        if kind is None:
            raise UsageError(f"unknown fault {name!r}; faults are {', '.join(_FAULT_TYPES)}")
        value: Any
        try:
            if kind in ("bool", bool):
                if equals and text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"{name} is a switch: {name} or {name}=true/false")
                value = not equals or text.strip().lower() in ("true", "1", "yes")
            elif not equals:
                raise ValueError(f"{name} needs a value: {name}=VALUE")
            elif kind in ("int", int):
                value = int(text)
            elif kind in ("float", float):
                value = float(text)
            else:
                value = text.strip()
            setattr(faults, name, value)
        except ValueError as exc:
            raise UsageError(f"--faults {part!r}: {exc}") from None
    return faults


async def _serve_venue(args: argparse.Namespace, signals: StopSignals) -> None:
    stop = asyncio.Event()
    signals.install(stop.set)
    flow = OrderFlow(args.symbols, seed=args.seed)
    venue = SimulatedVenue(flow, faults=args.faults, rate=args.rate, seed=args.seed,
                           host=args.host, port=args.port)
    try:
        await venue.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    try:
        print(f"REST {venue.rest_url}\nWebSocket {venue.ws_url}", flush=True)
        log.info("simulated venue: %s at %g updates/s (seed %d)", ", ".join(flow.symbols),
                 args.rate, args.seed)
        try:
            await asyncio.wait_for(stop.wait(), args.duration)
        except TimeoutError:
            pass
        log.info("stopping the simulated venue")
    finally:
        await venue.stop()


def _cmd_venue(args: argparse.Namespace) -> int:
    if len(set(args.symbols)) != len(args.symbols):
        raise UsageError("each symbol may be given once")
    signals = StopSignals()
    asyncio.run(_serve_venue(args, signals))
    return signals.exit_status


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _faults(text: str) -> Faults:
    try:
        return parse_faults(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_venue_command(commands: Any) -> None:
    """Add the ``venue`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    parser = commands.add_parser(
        "venue", help="run the simulated Backpack venue (REST and WebSocket) until stopped",
        description=(
            "Serve a simulated Backpack venue on one port: GET /api/v1/depth, /api/v1/markets, "
            "/api/v1/market and a WebSocket with depth.<symbol> and bookTicker.<symbol>, from a "
            "seeded random order flow. Prints its REST and WebSocket URLs, then runs until "
            "SIGINT (exit 130), SIGTERM (exit 0) or --duration."))
    parser.add_argument("--symbols", nargs="+", default=list(DEFAULT_SYMBOLS), metavar="SYMBOL",
                        help="markets to list (default: %(default)s)")
    parser.add_argument("--rate", type=_positive_float, default=200.0,
                        help="updates per second, all symbols together (default: %(default)s)")
    parser.add_argument("--faults", type=_faults, default=Faults(), metavar="SPEC",
                        help="what the venue does wrong: name=value pairs separated by commas, a "
                             "bare name for a switch, e.g. drop_rate=0.01,aggregate "
                             f"(names: {', '.join(_FAULT_TYPES)})")
    parser.add_argument("--seed", type=int, default=7, help="seed of the flow and the faults "
                                                            "(default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_VENUE_PORT,
                        help="port to bind, 0 for any free one (default: %(default)s)")
    parser.add_argument("--duration", type=_positive_float, metavar="S",
                        help="stop after S seconds (default: until Ctrl-C)")
    parser.set_defaults(handler=_cmd_venue)
