"""The venue options shared by the commands that connect (demo, run, record, serve)."""

from __future__ import annotations

import argparse
from typing import Any

from ..live.config import Connection
from ..live.transport import DEFAULT_CONNECT_TIMEOUT
from ..live.websocket import TRANSPORT_ENV, TRANSPORTS
from ..sync.engine import EngineOptions

__all__ = ["add_transport_option", "replicator_options"]


def add_transport_option(parser: argparse.ArgumentParser) -> None:
    """``--transport websockets|aiohttp``: the WebSocket client; ``args.transport``
    is ``None`` when not given (the library default: ``$ORDERBOOK_TRANSPORT``,
    else websockets)."""
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=None,
        help=f"WebSocket client library (default: ${TRANSPORT_ENV} if set, else websockets)")


def replicator_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`~orderbook.live.replicator.Replicator` keywords from the parsed
    ``--rest-url``, ``--ws-url``, ``--depth-stream``, ``--book-ticker``,
    ``--audit-every``, ``--prune-every``, ``--connect-timeout`` and ``--transport``."""
    return {
        "rest_url": args.rest_url,
        "ws_url": args.ws_url,
        "sync": EngineOptions(depth_stream=args.depth_stream,
                              book_ticker=getattr(args, "book_ticker", False),
                              audit_every=getattr(args, "audit_every", None),
                              prune_every=getattr(args, "prune_every", None)),
        "connection": Connection(
            connect_timeout=getattr(args, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            transport=getattr(args, "transport", None)),
    }
