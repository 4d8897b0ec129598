"""Every bound and timeout of the mirror, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..protocol.subscribe import MAX_STREAMS

__all__ = ["MirrorLimits"]


@dataclass(frozen=True, slots=True)
class MirrorLimits:
    """Bounds and timeouts of a :class:`~orderbook.serve.MirrorServer` (seconds, bytes).

    Per WebSocket client:

    * ``queue_size`` messages and ``buffer_limit`` bytes may wait to be sent
      (the client's queue plus its transport's write buffer: frames, pongs,
      replies, anything); past either the client is closed with 1008
      ``"slow consumer"`` and counted;
    * ``control_rate`` control frames (pings, pongs) per second, bursts of
      ``control_burst``; beyond, the client is closed with 1008;
    * ``request_rate`` requests per second are read, bursts of
      ``request_burst``; more wait in the socket (TCP backpressure), never
      refused;
    * ``error_rate`` error replies per second, bursts of ``error_burst``
      (at least ``max_streams``, so one bad request is answered whole);
      beyond, replies are dropped and counted, never closing the client;
    * ``max_streams`` names per SUBSCRIBE (beyond: one error reply);
      ``max_message`` bytes per incoming message (beyond: 1009);
    * ``ping_interval`` between keep-alive pings (``None``: off; a client
      silent for half of it after a ping is dropped);
    * ``so_sndbuf`` the kernel send buffer of each socket (``None``: the OS's).

    Per HTTP connection: ``keepalive_timeout`` to send a whole request (from
    the connection's start or the previous answer; idle keep-alive connections,
    slowloris and half-sent requests end there), request lines and header
    fields of at most ``max_line`` bytes, ``max_headers`` headers, bodies of
    at most ``max_body`` bytes (never read).  ``stall_timeout``: a connection
    whose socket accepts nothing for that long (a client that stopped
    reading) is aborted.  At most ``max_connections`` TCP connections; more
    are answered 503 and closed.

    Forwarding: ``forward_timeout`` per upstream request, including the
    wait for one of ``forward_concurrency`` slots (then 504; it is the only
    timer running during a forwarded request, so it always fires first);
    ``forward_per_minute`` in total and ``forward_per_client_per_minute`` per
    client address; upstream bodies of at most ``forward_max_body`` bytes
    (else 502).

    Shutdown: ``close_timeout`` for each close handshake (then the socket is
    aborted); every step of a shutdown is bounded by it.
    """

    queue_size: int = 1000
    buffer_limit: int = 4 * 1024 * 1024
    control_rate: float = 10.0
    control_burst: int = 50
    request_rate: float = 100.0
    request_burst: int = 200
    error_rate: float = 20.0
    error_burst: int = MAX_STREAMS
    max_streams: int = MAX_STREAMS
    max_message: int = 65_536
    ping_interval: float | None = 20.0
    so_sndbuf: int | None = None
    keepalive_timeout: float = 15.0
    max_line: int = 4096
    max_headers: int = 32
    max_body: int = 1024
    stall_timeout: float = 30.0
    max_connections: int = 4096
    forward_timeout: float = 5.0
    forward_concurrency: int = 8
    forward_per_minute: float = 300.0
    forward_per_client_per_minute: float = 120.0
    forward_max_body: int = 16 * 1024 * 1024
    close_timeout: float = 0.25

    def __post_init__(self) -> None:
        positive = {name: getattr(self, name) for name in (
            "queue_size", "buffer_limit", "control_rate", "control_burst", "request_rate",
            "request_burst", "error_rate", "error_burst", "max_streams", "max_message",
            "keepalive_timeout", "max_line", "max_headers", "stall_timeout", "max_connections",
            "forward_timeout", "forward_concurrency", "forward_max_body", "close_timeout")}
        bad = [name for name, value in positive.items() if not value > 0]
        if bad:
            raise UsageError(f"these limits must be > 0: {', '.join(bad)}")
        if self.error_burst < self.max_streams:
            raise UsageError("error_burst must be >= max_streams (one request answered whole)")
        if self.forward_per_minute < 2 or self.forward_per_client_per_minute < 2:
            raise UsageError("forwarding budgets must be >= 2 per minute")
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise UsageError("ping_interval must be > 0 or None")
