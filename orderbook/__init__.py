"""orderbook: exact, self-healing local replicas of Backpack Exchange order books.

Layers, data flowing one way (frame -> parse -> sync decides -> book applies
-> consumers are told):

* :mod:`orderbook.core.book`  -- :class:`OrderBook`, exact price ladders, no I/O;
* :mod:`orderbook.protocol.wire`  -- venue bytes/dicts -> typed events;
* :mod:`orderbook.sync.symbol`  -- :class:`SymbolSync`, the sequencing state machine;
* :mod:`orderbook.record` -- the capture format, replay through the engine, export.

The hot path (reading a depth frame, applying it, top-N views) has optional
C fast paths (``orderbook._speedups``, built at install when a compiler is
present); :func:`implementation` says whether they are in use, and
``ORDERBOOK_PURE_PYTHON=1`` turns them off.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._native import implementation
from .core.book import OrderBook, Side, SideName
from .core.ladder import Ladder, Level
from .protocol.decimals import decimal_str
from .record.format import (
    BadEvent,
    CaptureEvent,
    CaptureHeader,
    CaptureWriter,
    DisconnectEvent,
    RestEvent,
    WsEvent,
)
from .record.reader import read_capture, read_events
from .record.upgrade import upgrade_capture
from .record.replay import ReplayResult, replay_capture
from .record.export import export_parquet, export_table
from .errors import (
    ConnectFailed,
    CrossedBook,
    IntegrityError,
    MalformedMessage,
    OrderBookError,
    RateLimited,
    SequenceGap,
    StaleSnapshot,
    TransportError,
    UnknownSymbol,
    UsageError,
    VenueDataError,
    VenueUnavailable,
    WebSocketClosed,
)
from .sync.symbol import (
    Action,
    BookChanged,
    BookInvalidated,
    RequestSnapshot,
    SyncCounters,
    SymbolSync,
    SyncState,
)
from .protocol.wire import (
    BookTickerEvent,
    DepthEvent,
    Snapshot,
    StreamReply,
    WireEvent,
    is_decimal_string,
    parse_decimal,
    parse_frame,
    parse_levels,
    parse_message,
    parse_snapshot,
)
from .protocol.markets import Market, MarketCatalog, close_matches, parse_markets
from .sync.policy import (
    Backoff,
    RetryDecision,
    RetryPolicy,
    SnapshotRetryPolicy,
    TokenBucket,
    backoff_delays,
    is_retryable,
    parse_retry_after,
)
from .core.analysis import compare_books
from .live.tap import Tap
from .sync.samples import Percentiles
from .sync.updates import BookUpdate

# The asyncio layers (and the network libraries under them) load on first
# use of one of their names, so that `import orderbook` and the commands that
# need no network (replay, export) start in a tenth of the time.
_LAZY = {
    "orderbook.live.config": ("Budget", "Connection", "Markets"),
    "orderbook.live.consumers": ("ConsumerStats", "QueuePolicy", "UpdateStream"),
    "orderbook.live.replicator": ("Replicator",),
    "orderbook.live.stats": ("AuditStats", "ConnectionStats", "LatencyStats", "NotSynced",
                             "ReplicatorStats", "SymbolStats"),
    "orderbook.live.transport": ("RestClient", "RestStats", "StreamConnection", "StreamHandler"),
    "orderbook.live.watch": ("BookWatch", "watch_order_book", "watch_order_books"),
    "orderbook.live.websocket": ("WebSocketSession", "WebSocketTransport", "resolve_transport"),
    "orderbook.serve.metrics": ("ReplicatorCollector",),
    "orderbook.serve": ("MirrorLimits", "MirrorServer", "MirrorStats"),
}
_LAZY_FROM = {name: module for module, names in _LAZY.items() for name in names}

if TYPE_CHECKING:
    from .live.config import Budget, Connection, Markets
    from .live.consumers import ConsumerStats, QueuePolicy, UpdateStream
    from .live.replicator import Replicator
    from .live.stats import (
        AuditStats,
        ConnectionStats,
        LatencyStats,
        NotSynced,
        ReplicatorStats,
        SymbolStats,
    )
    from .live.transport import RestClient, RestStats, StreamConnection, StreamHandler
    from .live.websocket import WebSocketSession, WebSocketTransport, resolve_transport
    from .live.watch import BookWatch, watch_order_book, watch_order_books
    from .serve.metrics import ReplicatorCollector
    from .serve import MirrorLimits, MirrorServer, MirrorStats


def __getattr__(name: str) -> Any:
    """The names of the asyncio layers, imported on first use (PEP 562)."""
    module = _LAZY_FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'orderbook' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

from .sync.status import Reason, Status
from .sync.engine import (
    BookUpdated,
    Engine,
    EngineAction,
    EngineCounters,
    EngineOptions,
    FetchSnapshot,
    Purpose,
    StatusChanged,
    Subscribe,
)
from .sync.updates import UpdateKind

from ._version import __version__

__all__ = [
    "BookUpdated",
    "Engine",
    "EngineAction",
    "EngineCounters",
    "EngineOptions",
    "FetchSnapshot",
    "Purpose",
    "StatusChanged",
    "Subscribe",
    "UpdateKind",
    "Reason",
    "Status",
    "implementation",
    "Action",
    "BookChanged",
    "BookInvalidated",
    "BookTickerEvent",
    "BadEvent",
    "CaptureEvent",
    "CaptureHeader",
    "CaptureWriter",
    "DisconnectEvent",
    "RestEvent",
    "WsEvent",
    "export_parquet",
    "export_table",
    "read_events",
    "upgrade_capture",
    "ConnectFailed",
    "CrossedBook",
    "DepthEvent",
    "IntegrityError",
    "Ladder",
    "Level",
    "MalformedMessage",
    "OrderBook",
    "OrderBookError",
    "RateLimited",
    "ReplayResult",
    "RequestSnapshot",
    "SequenceGap",
    "Snapshot",
    "StaleSnapshot",
    "StreamReply",
    "SymbolSync",
    "SyncCounters",
    "SyncState",
    "TransportError",
    "UnknownSymbol",
    "UsageError",
    "VenueDataError",
    "VenueUnavailable",
    "WebSocketClosed",
    "WireEvent",
    "__version__",
    "decimal_str",
    "is_decimal_string",
    "parse_decimal",
    "parse_frame",
    "parse_levels",
    "parse_message",
    "parse_snapshot",
    "read_capture",
    "replay_capture",
    "AuditStats",
    "Backoff",
    "Budget",
    "Connection",
    "Markets",
    "QueuePolicy",
    "Tap",
    "BookUpdate",
    "ConnectionStats",
    "ConsumerStats",
    "LatencyStats",
    "NotSynced",
    "Market",
    "MarketCatalog",
    "close_matches",
    "Percentiles",
    "Replicator",
    "ReplicatorStats",
    "RestClient",
    "RestStats",
    "RetryDecision",
    "RetryPolicy",
    "SnapshotRetryPolicy",
    "StreamConnection",
    "StreamHandler",
    "SymbolStats",
    "TokenBucket",
    "UpdateStream",
    "WebSocketSession",
    "WebSocketTransport",
    "backoff_delays",
    "compare_books",
    "is_retryable",
    "parse_markets",
    "parse_retry_after",
    "ReplicatorCollector",
    "BookWatch",
    "watch_order_book",
    "watch_order_books",
    "Side",
    "SideName",
    "resolve_transport",
    "MirrorLimits",
    "MirrorServer",
    "MirrorStats",
]
