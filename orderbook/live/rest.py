"""REST access to the venue: one ``httpx.AsyncClient`` behind the shared request budget.

:class:`RestClient`: every request first takes a token of the shared
:class:`~orderbook.sync.policy.TokenBucket`, timeouts and 5xx are retried
with backoff, a 429 pauses the whole bucket for its ``Retry-After``.
Failures surface as :class:`~orderbook.errors.RateLimited` or
:class:`~orderbook.errors.VenueUnavailable` (wrapping the library error with
``raise ... from``), a 4xx as :class:`~orderbook.errors.UsageError`
(:class:`~orderbook.errors.UnknownSymbol` for an unknown market).  Every
error names the full URL of the request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from ..errors import RateLimited, TransportError, UnknownSymbol, UsageError, VenueUnavailable
from ..protocol.markets import Market, parse_markets
from ..protocol.wire import Snapshot, parse_snapshot
from ..sync.policy import RetryPolicy, TokenBucket, parse_retry_after

__all__ = ["DEFAULT_REST_URL", "ResponseHook", "RestClient", "RestStats"]

DEFAULT_REST_URL = "https://api.backpack.exchange"

log = logging.getLogger("orderbook.transport")

ResponseHook = Callable[[str, dict[str, str] | None, int, bytes, int], None]
"""``(path, params, status, body, received_us)``: one HTTP response as received."""


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

