"""Options shared by the commands that connect to a venue (``demo``, ``run``, ``record``, ``serve``)."""

from __future__ import annotations

import argparse

from ..live.websocket import TRANSPORT_ENV, TRANSPORTS

__all__ = ["add_transport_option"]


def add_transport_option(parser: argparse.ArgumentParser) -> None:
    """``--transport websockets|aiohttp``: the WebSocket client; ``args.transport``
    is ``None`` when not given (the library default: ``$ORDERBOOK_TRANSPORT``,
    else websockets)."""
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default=None,
        help=f"WebSocket client library (default: ${TRANSPORT_ENV} if set, else websockets)")
