"""The network layer: one WebSocket connection for every stream, one REST client.

This is the only module that imports ``websockets`` or ``httpx``; every
timeout and sleep of the package lives here or in the replicator's loop.
Decisions -- how long to back off, whether to retry, when a token is free --
come from the pure functions of :mod:`orderbook.sync.policy`.

:class:`StreamConnection` keeps one WebSocket open, subscribes every stream in
batches, answers pings (``websockets`` does so automatically; our own pings
detect a dead peer), and reconnects with exponential backoff and jitter after
any close or error.  It hands what happens to a :class:`StreamHandler`:
``on_connected``, ``on_subscribed(batch)``, ``on_frame(raw, received_us)`` for
each message in receive order, ``on_disconnected(reason)``.

Failures speak: a URL that cannot be a WebSocket URL is a
:class:`~orderbook.errors.UsageError` at once (:func:`check_ws_url`,
:func:`check_rest_url`); a connection that has never opened gives up after
``give_up_after`` seconds with a :class:`~orderbook.errors.VenueUnavailable`
naming the URL and the last cause; once it has opened, it is retried forever,
each failure logged with the URL and kept in ``last_error``.

:class:`RestClient` wraps an ``httpx.AsyncClient``: every request first takes
a token of the shared :class:`~orderbook.sync.policy.TokenBucket`, timeouts and
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
from urllib.parse import urlsplit

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State
from websockets.uri import parse_uri

from ..errors import (
    RateLimited,
    TransportError,
    UnknownSymbol,
    UsageError,
    VenueUnavailable,
)
from ..protocol.markets import Market, parse_markets
from ..sync.policy import Backoff, RetryPolicy, TokenBucket, parse_retry_after
from ..protocol.wire import Snapshot, parse_snapshot

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_REST_URL",
    "DEFAULT_WS_URL",
    "ResponseHook",
    "RestClient",
    "RestStats",
    "StreamConnection",
    "StreamHandler",
    "check_rest_url",
    "check_ws_url",
]

DEFAULT_WS_URL = "wss://ws.backpack.exchange"
DEFAULT_REST_URL = "https://api.backpack.exchange"
DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds a WebSocket that has never connected keeps trying before giving up."""

log = logging.getLogger("orderbook.transport")

ResponseHook = Callable[[str, dict[str, str] | None, int, bytes, int], None]
"""``(path, params, status, body, received_us)``: one HTTP response as received."""


def check_ws_url(url: str) -> str:
    """Return ``url`` if it can name a WebSocket (``ws://`` or ``wss://`` and a
    host), else raise :class:`UsageError` naming it and what is wrong.  O(len(url))."""
    try:
        parse_uri(url)
    except InvalidURI as exc:
        raise UsageError(f"invalid WebSocket URL {url!r}: {exc.msg} "
                         "(expected ws://HOST[:PORT]/ or wss://...)") from exc
    return url


def check_rest_url(url: str) -> str:
    """Return ``url`` if it can name a REST API (``http://`` or ``https://`` and
    a host), else raise :class:`UsageError` naming it and what is wrong."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:  # e.g. a bad port or IPv6 literal
        raise UsageError(f"invalid REST URL {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"invalid REST URL {url!r}: scheme isn't http or https "
                         "(expected http://HOST[:PORT] or https://...)")
    if not host:
        raise UsageError(f"invalid REST URL {url!r}: hostname isn't provided")
    return url


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

    Until a first connection opens, attempts stop after ``give_up_after``
    seconds (``None``: never): :meth:`run` then raises
    :class:`~orderbook.errors.VenueUnavailable` naming the URL and the last
    cause, each attempt being cut short so that the whole stays within that
    time.  A URL that is not a WebSocket URL raises
    :class:`~orderbook.errors.UsageError` from :meth:`run` at once (and from
    the constructor).  Once connected, it reconnects forever.
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
        give_up_after: float | None = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if give_up_after is not None and not give_up_after > 0:
            raise UsageError(f"give_up_after must be > 0 seconds or None, got {give_up_after}")
        self.url = check_ws_url(url)
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
        self._give_up_after = give_up_after
        self._ws: ClientConnection | None = None
        self.connects = 0
        """Connections opened so far (the first one included)."""
        self.failures = 0
        """Connection attempts that failed or connections that dropped."""
        self.last_error: str | None = None
        """Why the last connection attempt failed or the last connection ended
        (``None`` before any failure)."""

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._ws is not None

    async def run(self) -> None:
        """Connect, subscribe, read; after any close or error back off and
        reconnect.  Returns only by cancellation (which closes the socket).

        Raises :class:`VenueUnavailable` when no connection ever opened within
        ``give_up_after`` seconds, :class:`UsageError` for a URL that no
        WebSocket can have.
        """
        check_ws_url(self.url)
        started = time.monotonic()
        deadline = None if self._give_up_after is None else started + self._give_up_after
        attempt = 0
        while True:
            opened = time.monotonic()
            open_timeout = self._open_timeout
            if deadline is not None and not self.connects:
                open_timeout = max(0.05, min(open_timeout, deadline - opened))
            reason = await self._session(open_timeout)
            self.failures += 1
            self.last_error = reason
            now = time.monotonic()
            if now - opened >= self._stable_after:
                attempt = 0
            delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            if deadline is not None and not self.connects:
                if now >= deadline:
                    raise VenueUnavailable(
                        f"could not connect to {self.url} within {self._give_up_after:g} s "
                        f"({self.failures} attempts); last: {reason}")
                delay = min(delay, deadline - now)
            log.warning("stream %s: %s; reconnecting in %.2f s", self.url, reason, delay)
            await asyncio.sleep(delay)

    async def _session(self, open_timeout: float) -> str:
        """One connection's life (opening within ``open_timeout`` seconds);
        returns why it ended."""
        try:
            async with connect(
                self.url,
                open_timeout=open_timeout,
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
        except InvalidURI as exc:  # a redirect to a URL that is not ws:// or wss://
            raise UsageError(f"invalid WebSocket URL {self.url!r}: {exc}") from exc
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
        self.base_url = base_url.rstrip("/")
        """The API's base URL; error messages name the full URL of the request."""
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

    async def fetch_depth(self, symbol: str, limit: int = 1000) -> bytes:
        """``GET /api/v1/depth`` for ``symbol``: the body of the 200 answer, unparsed
        (the engine parses it).  Raises what :meth:`get` raises."""
        self.stats.snapshot_requests += 1
        return await self.get("/api/v1/depth", {"symbol": symbol, "limit": str(limit)}, symbol=symbol)

    async def fetch_markets(self) -> tuple[list[Market], int]:
        """``GET /api/v1/markets``: ``(markets, skipped entries)``, see
        :func:`~orderbook.protocol.markets.parse_markets`."""
        return parse_markets(await self.get("/api/v1/markets"))

    async def get(self, path: str, params: dict[str, str] | None = None, *,
                  symbol: str | None = None) -> bytes:
        """GET ``path`` and return the body of a 200 response.

        Retries timeouts, connection errors, 5xx and 429 as
        :class:`~orderbook.sync.policy.RetryPolicy` decides; a 429 blocks the
        whole bucket for ``Retry-After``.  Raises :class:`RateLimited` or
        :class:`VenueUnavailable` when giving up, :class:`UnknownSymbol` for a
        400 naming an invalid market or symbol, :class:`UsageError` for any
        other 4xx.
        """
        failures = 0
        rate_limited = 0
        stats = self.stats
        where = f"GET {self.base_url}{path}"
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
                error: TransportError = VenueUnavailable(f"{where}: timed out")
            except httpx.TransportError as exc:
                stats.connect_errors += 1
                cause = exc
                error = VenueUnavailable(f"{where}: {type(exc).__name__}: {exc}")
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
                    error = RateLimited(f"{where}: HTTP 429 {detail}", retry_after)
                elif status >= 500:
                    stats.server_errors += 1
                    error = VenueUnavailable(f"{where}: HTTP {status} {detail}")
                elif 400 <= status < 500 and status not in (408, 425):
                    stats.gave_up += 1
                    if symbol is not None and ("INVALID_MARKET" in detail or "INVALID_SYMBOL" in detail):
                        raise UnknownSymbol(symbol)
                    raise UsageError(f"{where} {params or ''}: HTTP {status} {detail}")
                else:
                    error = VenueUnavailable(f"{where}: HTTP {status} {detail}")
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
            log.info("%s %s failed (%s); retrying in %.2f s", where, params or "", error,
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

