"""The mirror's only way out: GET/HEAD of allowlisted paths on the configured REST URL.

:class:`Upstream` builds every upstream URL itself from the configured base
(scheme, host, port and path prefix of ``--rest-url``) and a checked
:class:`~orderbook.serve.forward.Target`; the request carries none of the
client's headers, never follows a redirect, and reads at most
``forward_max_body`` bytes.  ``forward_timeout`` bounds the whole exchange,
including the wait for one of ``forward_concurrency`` slots, and answers 504
when it fires.  :meth:`Upstream.shutdown` ends every exchange in flight at
once (their clients get a 503).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import httpx

from ..errors import UsageError
from ..sync.policy import parse_retry_after
from .forward import ApiCode, ApiError, ForwardBudget, Target, relayed_status, safe_content_type
from .limits import MirrorLimits

__all__ = ["Answer", "Upstream"]


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream answer to relay: status, body, ``Content-Type``, ``Retry-After``."""

    status: int
    body: bytes
    content_type: str
    retry_after: int | None = None


class Upstream:
    """Forwarded requests to ``rest_url`` within ``limits`` (see the module docstring)."""

    def __init__(self, rest_url: str, limits: MirrorLimits) -> None:
        base = httpx.URL(rest_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise UsageError(f"the upstream REST URL must be http(s)://host..., got {rest_url!r}")
        self._base = base
        self._limits = limits
        self.budget = ForwardBudget(limits.forward_per_minute, limits.forward_per_client_per_minute)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(limits.forward_timeout), follow_redirects=False,
            headers={"Accept": "application/json"},
            limits=httpx.Limits(max_connections=limits.forward_concurrency),
        )
        self._slots = asyncio.Semaphore(limits.forward_concurrency)
        self._inflight: set[asyncio.Task[Answer | ApiError]] = set()
        self._closing = False

    def url(self, target: Target) -> httpx.URL:
        """The upstream URL of ``target``: the configured base, its path
        prefix, the normalized path and the re-encoded query.  O(len)."""
        prefix = self._base.raw_path.split(b"?", 1)[0].rstrip(b"/")
        raw = prefix + target.path.encode("ascii", "strict")
        if target.query:
            raw += b"?" + target.query.encode("ascii")
        url = self._base.copy_with(raw_path=raw)
        assert (url.scheme, url.host, url.port) == (self._base.scheme, self._base.host,
                                                   self._base.port)
        return url

    async def get(self, target: Target, *, head: bool = False,
                  client: str | None = None) -> Answer | ApiError:
        """Forward ``target`` (a forwardable one) for ``client`` (its address;
        ``None``: the mirror itself, charged to the total budget only)."""
        if self._closing:
            return _shutting_down()
        refused = self.budget.take(client, time.monotonic())
        if refused is not None:
            return refused
        task = asyncio.create_task(self._fetch(target, "HEAD" if head else "GET"))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                task.cancel()
                raise
            return _shutting_down()

    async def _fetch(self, target: Target, method: str) -> Answer | ApiError:
        limit = self._limits.forward_max_body
        try:
            async with asyncio.timeout(self._limits.forward_timeout), self._slots:
                async with self._client.stream(method, self.url(target)) as response:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            return ApiError(502, ApiCode.SERVER_ERROR,
                                            f"the upstream answer exceeds {limit} bytes")
                        chunks.append(chunk)
                    status = response.status_code
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
                    content_type = safe_content_type(response.headers.get("Content-Type"))
        except (TimeoutError, httpx.TimeoutException):
            return ApiError(504, ApiCode.TIMEOUT, "the upstream API did not answer in time")
        except httpx.HTTPError as exc:
            return ApiError(502, ApiCode.SERVER_ERROR,
                            f"the upstream API is unreachable: {type(exc).__name__}")
        relayed = relayed_status(status)
        if relayed != status:
            return ApiError(502, ApiCode.SERVER_ERROR, f"the upstream API answered HTTP {status}")
        wait = math.ceil(retry_after) if retry_after is not None and status in (429, 503) else None
        return Answer(status, b"".join(chunks), content_type, wait)

    def shutdown(self) -> None:
        """Refuse new requests and end those in flight (answered 503).  O(in flight)."""
        self._closing = True
        for task in list(self._inflight):
            task.cancel()

    async def aclose(self) -> None:
        """:meth:`shutdown`, then close the connection pool."""
        self.shutdown()
        await self._client.aclose()


def _shutting_down() -> ApiError:
    return ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "the mirror is shutting down", retry_after=1)
