"""The replicator's configuration, as a few typed objects.

* :class:`Connection` -- how to reach the venue (timeouts, keep-alive,
  reconnect backoff, REST retries, subscription batches);
* :class:`Budget` -- the REST request budget shared by every symbol;
* :class:`Markets` -- which markets ``"all"`` means and how often the
  reference data is refreshed;
* what to replicate and how it is checked (depth stream, snapshot depth,
  bookTicker cross-check, audits, staleness, pruning, retries) is the
  engine's :class:`~orderbook.sync.engine.EngineOptions`.

Every object validates itself when built: a bad value is a
:class:`~orderbook.errors.UsageError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..sync.policy import Backoff, RetryPolicy
from .transport import DEFAULT_CONNECT_TIMEOUT
from .websocket import TransportChoice, resolve_transport

__all__ = ["Budget", "Connection", "Markets"]


@dataclass(frozen=True, slots=True)
class Connection:
    """How the replicator talks to the venue.

    * ``connect_timeout``: seconds the WebSocket may take to connect for the
      first time before the replicator fails (``None``: retry forever); once
      connected, a lost connection is retried forever with ``backoff``;
    * ``ping_interval``: seconds between our keep-alive pings (``None``: off);
    * ``rest_timeout``: seconds per REST request; ``rest_retry``: retries of
      a REST request (5xx, 429, timeouts);
    * ``subscribe_batch``: streams per SUBSCRIBE message;
    * ``transport``: the WebSocket client, ``"websockets"``, ``"aiohttp"`` or a
      :class:`~orderbook.live.websocket.WebSocketTransport`; ``None`` (the
      default) reads ``$ORDERBOOK_TRANSPORT`` when the replicator is built,
      else websockets (see :func:`~orderbook.live.websocket.resolve_transport`).
    """

    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    ping_interval: float | None = 20.0
    backoff: Backoff = Backoff(initial=0.1, maximum=10.0)
    rest_timeout: float = 10.0
    rest_retry: RetryPolicy = RetryPolicy()
    subscribe_batch: int = 50
    transport: TransportChoice = None

    def __post_init__(self) -> None:
        if self.connect_timeout is not None and not self.connect_timeout > 0:
            raise UsageError(f"connect_timeout must be > 0 seconds or None, got {self.connect_timeout}")
        if self.ping_interval is not None and not self.ping_interval > 0:
            raise UsageError(f"ping_interval must be > 0 seconds or None, got {self.ping_interval}")
        if not self.rest_timeout > 0:
            raise UsageError(f"rest_timeout must be > 0 seconds, got {self.rest_timeout}")
        if self.subscribe_batch < 1:
            raise UsageError(f"subscribe_batch must be >= 1, got {self.subscribe_batch}")
        if self.transport is not None:
            resolve_transport(self.transport)  # a UsageError naming a bad one


@dataclass(frozen=True, slots=True)
class Budget:
    """The REST budget: at most ``requests_per_minute`` requests in any 60 s
    window (default 1000, half the venue's 2000), of which ``burst`` may go
    at once (e.g. the first snapshots), with at most ``snapshot_concurrency``
    snapshot requests in flight."""

    requests_per_minute: float = 1000.0
    burst: float = 100.0
    snapshot_concurrency: int = 8

    def __post_init__(self) -> None:
        if not self.requests_per_minute > 0 or not self.burst >= 1:
            raise UsageError("requests_per_minute must be > 0 and burst >= 1, got "
                             f"{self.requests_per_minute} and {self.burst}")
        if self.snapshot_concurrency < 1:
            raise UsageError(f"snapshot_concurrency must be >= 1, got {self.snapshot_concurrency}")


@dataclass(frozen=True, slots=True)
class Markets:
    """Reference data: refreshed every ``refresh`` seconds; ``"all"`` takes
    the spot markets if ``spot`` and the perpetuals if ``perp``."""

    refresh: float = 300.0
    spot: bool = True
    perp: bool = True

    def __post_init__(self) -> None:
        if not self.refresh > 0:
            raise UsageError(f"refresh must be > 0 seconds, got {self.refresh}")
        if not (self.spot or self.perp):
            raise UsageError("Markets needs spot or perp (or both)")
