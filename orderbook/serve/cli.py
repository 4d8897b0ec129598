"""``orderbook serve``: the standalone process (a replicator and its mirror) and its command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import UsageError
from ..protocol.streams import DEPTH_STREAMS
from ..replicator import Replicator
from ..transport import DEFAULT_REST_URL, DEFAULT_WS_URL
from .limits import MirrorLimits
from .server import DEFAULT_PORT, MirrorServer

__all__ = ["add_serve_command", "run_mirror"]

log = logging.getLogger("orderbook.serve")

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


async def run_mirror(
    symbols: Sequence[str] | str,
    *,
    stop: asyncio.Event,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    queue_size: int = 1000,
    limits: MirrorLimits | None = None,
    announce: bool = True,
    **replicator_options: Any,
) -> None:
    """Replicate ``symbols`` (or ``"all"``) and serve the mirror until ``stop`` is set.

    What ``orderbook serve`` runs.  ``replicator_options`` go to
    :class:`Replicator` (``rest_url``, ``ws_url``, ``depth_stream``...);
    ``limits`` to the mirror (``queue_size`` overrides its field).  With
    ``announce`` the listening address is printed on stdout once bound (a
    line ``listening on http://HOST:PORT``).  Setting ``stop`` during startup
    abandons it.  Once ``stop`` is set the mirror and the replicator close
    together, each bounded (see :meth:`MirrorServer.close`).  Raises what
    :meth:`Replicator.start` and :meth:`MirrorServer.start` raise.
    """
    base = limits if limits is not None else MirrorLimits()
    if queue_size != base.queue_size:
        base = _with_queue_size(base, queue_size)
    replicator = Replicator(symbols, **replicator_options)
    mirror = MirrorServer(replicator, host=host, port=port, limits=base)
    try:
        if not await _unless_stopped(stop, replicator.start()):
            return
        if not await _unless_stopped(stop, mirror.start()):
            return
        if host not in _LOOPBACK:
            log.warning("the mirror is bound to %s: reachable from other hosts", host)
        if announce:
            print(f"listening on {mirror.url} (WebSocket {mirror.ws_url})", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        started = time.monotonic()
        await asyncio.gather(mirror.close(), replicator.close())
        log.info("stopped in %.0f ms", (time.monotonic() - started) * 1000)


def _with_queue_size(limits: MirrorLimits, queue_size: int) -> MirrorLimits:
    return replace(limits, queue_size=queue_size)


async def _unless_stopped(stop: asyncio.Event, step: Awaitable[None]) -> bool:
    """Run ``step`` unless ``stop`` is set first (then cancel it): True when it completed."""
    task = asyncio.ensure_future(step)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False


async def _serve_until_signalled(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows: Ctrl-C raises KeyboardInterrupt (exit 0 in main)
            break
    symbols: Sequence[str] | str = "all" if args.all else args.symbols
    await run_mirror(symbols, stop=stop, host=args.host, port=args.port, queue_size=args.queue_size,
                     rest_url=args.rest_url, ws_url=args.ws_url, depth_stream=args.depth_stream)


def _cmd_serve(args: argparse.Namespace) -> int:
    if bool(args.symbols) == bool(args.all):
        raise UsageError("give either SYMBOL... or --all")
    asyncio.run(_serve_until_signalled(args))
    return 0


def add_serve_command(commands: Any) -> None:
    """Add the ``serve`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    parser = commands.add_parser(
        "serve", help="replicate books and serve them locally with the venue's REST and WebSocket API",
        description=(
            "The standalone replicator: keeps exact replicas and serves GET /api/v1/depth, "
            "/api/v1/markets (cached; the venue's other public market-data GETs are forwarded "
            "to --rest-url only), a WebSocket at / with depth.<symbol> and bookTicker.<symbol>, "
            "GET /health (503 while a symbol is not synced) and GET /metrics (Prometheus). "
            "Binds loopback by default. Stops cleanly on SIGINT/SIGTERM in under a second."),
    )
    parser.add_argument("symbols", nargs="*", metavar="SYMBOL", help="markets to replicate")
    parser.add_argument("--all", action="store_true", help="replicate every listed spot and perp market")
    parser.add_argument("--rest-url", default=DEFAULT_REST_URL, help="upstream REST API (default: %(default)s)")
    parser.add_argument("--ws-url", default=DEFAULT_WS_URL, help="upstream WebSocket (default: %(default)s)")
    parser.add_argument("--depth-stream", default="depth", choices=DEPTH_STREAMS,
                        help="upstream depth stream (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to bind, 0 for any free one (default: %(default)s)")
    parser.add_argument("--queue-size", type=int, default=1000, metavar="N",
                        help="messages queued per WebSocket client before it is closed as a slow "
                             "consumer (default: %(default)s)")
    parser.set_defaults(handler=_cmd_serve)
