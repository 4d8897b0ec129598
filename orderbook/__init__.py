"""orderbook: exact, self-healing local replicas of Backpack Exchange order books.

Layers, data flowing one way (frame -> parse -> sync decides -> book applies
-> consumers are told):

* :mod:`orderbook.core.book`  -- :class:`OrderBook`, exact price ladders, no I/O;
* :mod:`orderbook.protocol.wire`  -- venue bytes/dicts -> typed events;
* :mod:`orderbook.sync.symbol`  -- :class:`SymbolSync`, the sequencing state machine;
* :mod:`orderbook.record.capture` -- reading, writing and replaying recorded sessions.

The hot path (reading a depth frame, applying it, top-N views) has optional
C fast paths (``orderbook._speedups``, built at install when a compiler is
present); :func:`implementation` says whether they are in use, and
``ORDERBOOK_PURE_PYTHON=1`` turns them off.
"""

from ._native import implementation
from .core.book import OrderBook
from .core.ladder import Ladder, Level
from .protocol.decimals import decimal_str
from .record.capture import CaptureWriter, ReplayResult, read_capture, replay_capture
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
from .protocol.markets import Market, MarketCatalog, parse_markets
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
from .live.config import Budget, Connection, Markets
from .live.consumers import ConsumerStats, QueuePolicy, UpdateStream
from .live.replicator import Replicator
from .live.tap import Tap
from .live.stats import (
    AuditStats,
    ConnectionStats,
    LatencyStats,
    NotSynced,
    ReplicatorStats,
    SymbolStats,
)
from .sync.samples import Percentiles
from .sync.updates import BookUpdate
from .live.transport import RestClient, RestStats, StreamConnection, StreamHandler
from .serve.metrics import MetricsWriter, write_replicator_stats
from .serve import MirrorLimits, MirrorServer, MirrorStats

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
