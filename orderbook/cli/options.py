"""The venue options shared by the commands that connect (run, record, serve)."""

from __future__ import annotations

import argparse
from typing import Any

from ..live.config import Connection
from ..live.transport import DEFAULT_CONNECT_TIMEOUT
from ..sync.engine import EngineOptions

__all__ = ["replicator_options"]


def replicator_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`~orderbook.live.replicator.Replicator` keywords from the parsed
    ``--rest-url``, ``--ws-url``, ``--depth-stream`` and ``--connect-timeout``."""
    return {
        "rest_url": args.rest_url,
        "ws_url": args.ws_url,
        "sync": EngineOptions(depth_stream=args.depth_stream),
        "connection": Connection(connect_timeout=getattr(args, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
    }
