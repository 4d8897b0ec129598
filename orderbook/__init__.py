"""orderbook: exact, self-healing local replicas of Backpack Exchange order books.

Layers, data flowing one way (frame -> parse -> sync decides -> book applies
-> consumers are told):

* :mod:`orderbook.book`  -- :class:`OrderBook`, exact price ladders, no I/O;
* :mod:`orderbook.wire`  -- venue bytes/dicts -> typed events;
* :mod:`orderbook.sync`  -- :class:`SymbolSync`, the sequencing state machine;
* :mod:`orderbook.capture` -- reading, writing and replaying recorded sessions.

The hot path (reading a depth frame, applying it, top-N views) has optional
C fast paths (``orderbook._speedups``, built at install when a compiler is
present); :func:`implementation` says whether they are in use, and
``ORDERBOOK_PURE_PYTHON=1`` turns them off.
"""

from ._native import implementation
from .book import OrderBook
from .ladder import Ladder, Level
from .capture import CaptureWriter, ReplayResult, decimal_str, read_capture, replay_capture
from .errors import (
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
)
from .sync import (
    Action,
    BookChanged,
    BookInvalidated,
    RequestSnapshot,
    SyncCounters,
    SymbolSync,
    SyncState,
)
from .wire import (
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
from .markets import Market, MarketCatalog, parse_markets
from .policy import (
    Backoff,
    RetryDecision,
    RetryPolicy,
    SnapshotRetryPolicy,
    TokenBucket,
    backoff_delays,
    is_retryable,
    parse_retry_after,
)
from .replicator import (
    AuditStats,
    BookUpdate,
    ConnectionStats,
    ConsumerStats,
    LatencyStats,
    NotSynced,
    Percentiles,
    Replicator,
    ReplicatorStats,
    SymbolStats,
    UpdateStream,
    compare_books,
)
from .transport import RestClient, RestStats, StreamConnection, StreamHandler
from .metrics import MetricsWriter, write_replicator_stats
from .serve import MirrorLimits, MirrorServer, MirrorStats

__version__ = "0.1.0"

__all__ = [
    "implementation",
    "Action",
    "BookChanged",
    "BookInvalidated",
    "BookTickerEvent",
    "CaptureWriter",
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
    "BookUpdate",
    "ConnectionStats",
    "ConsumerStats",
    "LatencyStats",
    "NotSynced",
    "Market",
    "MarketCatalog",
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
    "backoff_delays",
    "compare_books",
    "is_retryable",
    "parse_markets",
    "parse_retry_after",
    "MetricsWriter",
    "MirrorLimits",
    "MirrorServer",
    "MirrorStats",
    "write_replicator_stats",
]
