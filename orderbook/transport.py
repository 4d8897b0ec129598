"""The network layer: one WebSocket connection for every stream, one REST client.

This is the only module that imports ``websockets`` or ``httpx``; every
timeout and sleep of the package lives here or in the replicator's loop.
Decisions -- how long to back off, whether to retry, when a token is free --
come from the pure functions of :mod:`orderbook.policy`.

:class:`StreamConnection` keeps one WebSocket open, subscribes every stream in
batches, answers pings (``websockets`` does so automatically; our own pings
detect a dead peer), and reconnects with exponential backoff and jitter after
any close or error.  It hands what happens to a :class:`StreamHandler`:
``on_connected``, ``on_subscribed(batch)``, ``on_frame(raw, received_us)`` for
each message in receive order, ``on_disconnected(reason)``.

:class:`RestClient` wraps an ``httpx.AsyncClient``: every request first takes
a token of the shared :class:`~orderbook.policy.TokenBucket`, timeouts and
5xx are retried with backoff, a 429 pauses the whole bucket for its
``Retry-After``.  Failures surface as :class:`~orderbook.errors.RateLimited`
or :class:`~orderbook.errors.VenueUnavailable` (wrapping the library error
with ``raise ... from``), a 4xx as :class:`~orderbook.errors.UsageError`
(:class:`~orderbook.errors.UnknownSymbol` for an unknown market).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from .errors import (
    RateLimited,
    TransportError,
    UnknownSymbol,
    UsageError,
    VenueUnavailable,
)
from .markets import Market, parse_markets
from .policy import Backoff, RetryPolicy, TokenBucket, parse_retry_after
from .wire import Snapshot, parse_snapshot

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "ResponseHook",
    "RestClient",
    "RestStats",
    "StreamConnection",
    "StreamHandler",
]

DEFAULT_WS_URL = "wss://ws.backpack.exchange"
DEFAULT_REST_URL = "https://api.backpack.exchange"

log = logging.getLogger("orderbook.transport")

ResponseHook = Callable[[str, dict[str, str] | None, int, bytes, int], None]
"""``(path, params, status, body, received_us)``: one HTTP response as received."""


class StreamHandler(Protocol):
    """What a :class:`StreamConnection` reports to.  Called from the event loop;
    every method must return quickly (it runs on the receive path)."""

    def on_connected(self) -> None:
        """A connection is open; subscriptions follow."""

    def on_subscribed(self, streams: Sequence[str]) -> None:
        """A SUBSCRIBE for ``streams`` was sent on the current connection."""

    def on_frame(self, raw: str | bytes, received_us: int) -> None:
        """One message, with the local wall clock (µs) at which it was read."""

    def on_disconnected(self, reason: str) -> None:
        """The connection closed or failed; a reconnect follows after a backoff."""


class StreamConnection:
    """One WebSocket connection carrying every stream, reconnected forever.

    ``streams`` are subscribed in batches of ``batch_size`` names per
    SUBSCRIBE message after every (re)connect.  Reconnects wait
    ``backoff.delay(n)`` for the n-th consecutive failure; a connection that
    stayed up ``stable_after`` seconds resets the count.  ``ping_interval`` /
    ``ping_timeout`` are our own keep-alive pings (the server's are answered
    regardless).  Run it with :meth:`run` (until cancelled): cancelling it
    closes the connection with 1001 (going away), waiting at most
    ``close_timeout`` seconds for the server's answer.
    """

    def __init__(
        self,
        url: str,
        streams: Sequence[str],
        handler: StreamHandler,
        *,
        batch_size: int = 50,
        backoff: Backoff = Backoff(initial=0.1, maximum=10.0),
        stable_after: float = 2.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        open_timeout: float = 10.0,
        close_timeout: float = 0.25,
        max_queue: int = 4096,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.url = url
        self.streams = list(streams)
        self._handler = handler
        self._batch_size = batch_size
        self._backoff = backoff
        self._stable_after = stable_after
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._max_queue = max_queue
        self._rng = rng
        self._ws: ClientConnection | None = None
        self.connects = 0
        """Connections opened so far (the first one included)."""
        self.failures = 0
        """Connection attempts that failed or connections that dropped."""

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._ws is not None

    async def run(self) -> None:
        """Connect, subscribe, read; after any close or error back off and
        reconnect.  Returns only by cancellation (which closes the socket)."""
        attempt = 0
        while True:
            opened = time.monotonic()
            reason = await self._session()
            self.failures += 1
            if time.monotonic() - opened >= self._stable_after:
                attempt = 0
            delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            log.warning("stream %s: %s; reconnecting in %.2f s", self.url, reason, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> str:
        """One connection's life; returns why it ended."""
        try:
            async with connect(
                self.url,
                open_timeout=self._open_timeout,
                close_timeout=self._close_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                max_queue=self._max_queue,
                max_size=2**24,
                compression=None,
            ) as ws:
                self._ws = ws
                self.connects += 1
                handler = self._handler
                handler.on_connected()
                try:
                    await self._subscribe_all(ws)
                    async for message in ws:
                        handler.on_frame(message, time.time_ns() // 1000)
                    return _close_reason(ws)
                except asyncio.CancelledError:
                    # Shutting down: say so with 1001 (the context manager would
                    # send 1011 "internal error" for any exception).
                    await ws.close(1001, "client shutting down")
                    raise
                finally:
                    self._ws = None
                    handler.on_disconnected(_close_reason(ws))
        except ConnectionClosed as exc:
            return f"connection closed: {exc}"
        except InvalidURI as exc:
            raise UsageError(f"invalid WebSocket URL {self.url!r}") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return f"connect failed: {type(exc).__name__}: {exc}"

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        size = self._batch_size
        for start in range(0, len(self.streams), size):
            batch = self.streams[start : start + size]
            await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": batch}).decode())
            self._handler.on_subscribed(batch)

    async def close(self) -> None:
        """Close the current connection, if any (``run`` will reconnect unless cancelled)."""
        if self._ws is not None:
            await self._ws.close()


def _close_reason(ws: ClientConnection) -> str:
    """Why ``ws`` closed, e.g. ``received 1001 (going away); then sent 1001 (going away)``."""
    if ws.protocol.state is State.CLOSED:
        return f"connection closed: {ws.protocol.close_exc}"
    return "connection abandoned while open"


@dataclass(slots=True)
class RestStats:
    """Counters of a :class:`RestClient`, only ever increased.

    ``requests`` counts HTTP requests sent (retries included),
    ``snapshot_requests`` those for ``/api/v1/depth``; ``responses_429``,
    ``server_errors`` (5xx), ``timeouts`` and ``connect_errors`` the failures
    by kind; ``retries`` the requests repeated; ``gave_up`` the calls that
    raised after their retries.
    """

    requests: int = 0
    snapshot_requests: int = 0
    responses_429: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connect_errors: int = 0
    retries: int = 0
    gave_up: int = 0


class RestClient:
    """REST access to the venue through one shared request budget.

    Every request (retries included) takes a token of ``bucket`` first, so
    all requests of the process together stay within its budget.  Use as an
    async context manager or call :meth:`aclose`.  ``on_response``, if given,
    sees every response (any status, retries included) before it is used;
    it runs on the request path and must return quickly.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_REST_URL,
        *,
        bucket: TokenBucket | None = None,
        retry: RetryPolicy = RetryPolicy(),
        timeout: float = 10.0,
        max_connections: int = 16,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.bucket = bucket if bucket is not None else TokenBucket.for_budget(1000)
        self.stats = RestStats()
        self._retry = retry
        self._clock = clock
        self._rng = rng
        self._on_response = on_response
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"Accept": "application/json"},
        )

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def fetch_snapshot(self, symbol: str, limit: int = 1000) -> Snapshot:
        """``GET /api/v1/depth`` for ``symbol``, validated.

        Raises :class:`MalformedMessage` for an unusable body,
        :class:`UnknownSymbol` when the venue does not know ``symbol``, and
        whatever :meth:`get` raises.  Cost: one request (plus retries).
        """
        self.stats.snapshot_requests += 1
        body = await self.get("/api/v1/depth", {"symbol": symbol, "limit": str(limit)},
                              symbol=symbol)
        return parse_snapshot(body, symbol)

    async def fetch_markets(self) -> tuple[list[Market], int]:
        """``GET /api/v1/markets``: ``(markets, skipped entries)``, see
        :func:`~orderbook.markets.parse_markets`."""
        return parse_markets(await self.get("/api/v1/markets"))

    async def get(self, path: str, params: dict[str, str] | None = None, *,
                  symbol: str | None = None) -> bytes:
        """GET ``path`` and return the body of a 200 response.

        Retries timeouts, connection errors, 5xx and 429 as
        :class:`~orderbook.policy.RetryPolicy` decides; a 429 blocks the
        whole bucket for ``Retry-After``.  Raises :class:`RateLimited` or
        :class:`VenueUnavailable` when giving up, :class:`UnknownSymbol` for a
        400 naming an invalid market or symbol, :class:`UsageError` for any
        other 4xx.
        """
        failures = 0
        rate_limited = 0
        stats = self.stats
        while True:
            wait = self.bucket.reserve(self._clock())
            if wait > 0:
                await asyncio.sleep(wait)
            stats.requests += 1
            retry_after: float | None = None
            status: int | None = None
            cause: httpx.TransportError | None = None
            try:
                response = await self._client.get(path, params=params)
            except httpx.TimeoutException as exc:
                stats.timeouts += 1
                cause = exc
                error: TransportError = VenueUnavailable(f"GET {path}: timed out")
            except httpx.TransportError as exc:
                stats.connect_errors += 1
                cause = exc
                error = VenueUnavailable(f"GET {path}: {type(exc).__name__}: {exc}")
            else:
                status = response.status_code
                if self._on_response is not None:
                    self._on_response(path, params, status, response.content, time.time_ns() // 1000)
                if status == 200:
                    return response.content
                detail = _error_detail(response)
                if status == 429:
                    stats.responses_429 += 1
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
                    error = RateLimited(f"GET {path}: HTTP 429 {detail}", retry_after)
                elif status >= 500:
                    stats.server_errors += 1
                    error = VenueUnavailable(f"GET {path}: HTTP {status} {detail}")
                elif 400 <= status < 500 and status not in (408, 425):
                    stats.gave_up += 1
                    if symbol is not None and ("INVALID_MARKET" in detail or "INVALID_SYMBOL" in detail):
                        raise UnknownSymbol(symbol)
                    raise UsageError(f"GET {path} {params or ''}: HTTP {status} {detail}")
                else:
                    error = VenueUnavailable(f"GET {path}: HTTP {status} {detail}")
            if status == 429:
                rate_limited += 1
            else:
                failures += 1
                rate_limited = 0
            decision = self._retry.decide(
                failures, status if status is not None else error,
                rate_limited=rate_limited, retry_after=retry_after, rng=self._rng,
            )
            if not decision.retry:
                stats.gave_up += 1
                raise error from cause
            if status == 429:
                self.bucket.block_until(self._clock() + decision.delay)
            stats.retries += 1
            log.info("GET %s %s failed (%s); retrying in %.2f s", path, params or "", error,
                     decision.delay)
            await asyncio.sleep(decision.delay)


def _error_detail(response: httpx.Response) -> str:
    """``CODE: message`` from a venue error body, or the start of the raw body."""
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.content[:200].decode("utf-8", "replace")
    if isinstance(body, dict) and "code" in body:
        return f"{body.get('code')}: {body.get('message', '')}"
    return str(body)[:200]

