"""``orderbook serve``: the standalone process (a replicator and its mirror) and its command."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..protocol.streams import DEPTH_STREAMS
from ..live.transport import DEFAULT_REST_URL, DEFAULT_WS_URL
from ..serve.run import run_mirror
from ..serve.server import DEFAULT_PORT
from ..sinks import BrokerSink, sink_from_url
from .options import add_transport_option, replicator_options
from .signals import StopSignals

__all__ = ["add_serve_command"]

async def _serve_until_signalled(args: argparse.Namespace, signals: StopSignals,
                                 sinks: Sequence[BrokerSink]) -> None:
    stop = asyncio.Event()
    signals.install(stop.set)
    symbols: Sequence[str] | str = "all" if args.all else args.symbols
    await run_mirror(symbols, stop=stop, host=args.host, port=args.port, queue_size=args.queue_size,
                     sinks=sinks, **replicator_options(args))


def _cmd_serve(args: argparse.Namespace) -> int:
    if bool(args.symbols) == bool(args.all):
        raise UsageError("give either SYMBOL... or --all")
    sinks = [sink_from_url(url) for url in args.publish]  # a bad URL or a missing extra: exit 2
    if len({sink.name for sink in sinks}) != len(sinks):
        raise UsageError("each --publish URL may be given once")
    signals = StopSignals()
    asyncio.run(_serve_until_signalled(args, signals, sinks))
    return signals.exit_status


def add_serve_command(commands: Any) -> None:
    """Add the ``serve`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    parser = commands.add_parser(
        "serve", help="replicate books and serve them locally with the venue's REST and WebSocket API",
        description=(
            "The standalone replicator: keeps exact replicas and serves GET /api/v1/depth, "
            "/api/v1/markets (cached; the venue's other public market-data GETs are forwarded "
            "to --rest-url only), a WebSocket at / with depth.<symbol> and bookTicker.<symbol>, "
            "GET /health (503 while a symbol is not synced), GET /metrics (Prometheus) and "
            "the live page GET /ui. Binds loopback by default, before connecting upstream. "
            "Stops cleanly on SIGINT (exit 130) or SIGTERM (exit 0) in under a second."),
    )
    parser.add_argument("symbols", nargs="*", metavar="SYMBOL", help="markets to replicate")
    parser.add_argument("--all", action="store_true", help="replicate every listed spot and perp market")
    parser.add_argument("--rest-url", default=DEFAULT_REST_URL, help="upstream REST API (default: %(default)s)")
    parser.add_argument("--ws-url", default=DEFAULT_WS_URL, help="upstream WebSocket (default: %(default)s)")
    parser.add_argument("--depth-stream", default="depth", choices=DEPTH_STREAMS,
                        help="upstream depth stream (default: %(default)s)")
    add_transport_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to bind, 0 for any free one (default: %(default)s)")
    parser.add_argument("--queue-size", type=int, default=1000, metavar="N",
                        help="messages queued per WebSocket client before it is closed as a slow "
                             "consumer (default: %(default)s)")
    parser.add_argument("--publish", action="append", default=[], metavar="URL",
                        help="also publish every book to a broker, repeatable: redis://host:port/db "
                             "(one stream per symbol, orderbook:SYMBOL) or nats://host:port "
                             "(orderbook.TOKEN.delta, request/reply orderbook.TOKEN.snapshot); "
                             "options in the query, e.g. ?snapshot_interval=1000&maxlen=100000 "
                             "(see the README)")
    parser.set_defaults(handler=_cmd_serve)
