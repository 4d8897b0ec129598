"""What the mirror forwards upstream, and how much: pure decisions, no I/O.

Every rule that stands between a local HTTP request and the configured
upstream lives here:

1. **Origin form only.**  The request target must be a path (``/...``):
   absolute-form (``GET http://host/x``, what ``curl -x`` sends),
   authority-form (``CONNECT host:443``) and asterisk-form (``OPTIONS *``)
   are refused with 400.  The upstream host is never taken from a request.
2. **The path is normalized**: percent-escapes decoded strictly (a bad
   escape, invalid UTF-8, a control character, a backslash or an encoded
   ``/`` is a 400), empty segments dropped, ``.`` and ``..`` resolved
   (RFC 3986, never above the root).  Only the normalized path is used.
3. **Allowlist.**  Only the venue's public market-data endpoints
   (:data:`FORWARDED_PATHS`, from the venue's REST reference) are forwarded,
   with ``GET`` or ``HEAD``; any other path is a 404, another method a 405.
4. **The query is re-encoded** from its decoded pairs (keys must be plain
   identifiers, values printable text), so nothing the client wrote reaches
   the upstream byte for byte.  No request header is passed on.
5. **Budgets.**  :class:`ForwardBudget`: one token bucket for every
   forwarded request together and one per client address (at most
   ``max_clients`` addresses remembered, least recently seen forgotten first).
6. **Answers.**  Upstream statuses in :data:`RELAYED_STATUSES` are relayed;
   any other (520, 522, a redirect...) becomes 502.

:class:`ApiError` is the JSON error body of the venue (``{"code", "message"}``)
with its HTTP status, used for every refusal the mirror writes.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote_to_bytes

import orjson

from ..errors import UsageError
from ..sync.policy import TokenBucket

__all__ = [
    "FORWARDED_PATHS",
    "RELAYED_STATUSES",
    "ApiCode",
    "ApiError",
    "ForwardBudget",
    "Target",
    "parse_target",
    "query_value",
    "relayed_status",
    "safe_content_type",
]

FORWARDED_PATHS = frozenset({
    "/api/v1/assets",
    "/api/v1/markets",
    "/api/v1/market",
    "/api/v1/ticker",
    "/api/v1/tickers",
    "/api/v1/trades",
    "/api/v1/trades/history",
    "/api/v1/klines",
    "/api/v1/markPrices",
    "/api/v1/openInterest",
    "/api/v1/fundingRates",
    "/api/v1/securities",
    "/api/v1/status",
    "/api/v1/ping",
    "/api/v1/time",
})
"""The venue's public market-data endpoints the mirror forwards (``GET``/``HEAD``).
``/api/v1/depth`` is answered locally; everything that needs a signature is absent."""

RELAYED_STATUSES = frozenset({200, 400, 404, 429, 500, 502, 503, 504})
"""Upstream statuses relayed as they are (the venue's own); any other becomes 502."""

MAX_QUERY_PAIRS = 32
"""The most ``key=value`` pairs a forwarded query may carry."""

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_CONTENT_TYPE = re.compile(r"(application/json|text/plain)(; ?charset=[A-Za-z0-9_-]{1,20})?\Z")


class ApiCode(StrEnum):
    """The ``code`` of an error body (the venue's vocabulary, plus NOT_FOUND and
    METHOD_NOT_ALLOWED for what the venue would not route)."""

    INVALID_CLIENT_REQUEST = "INVALID_CLIENT_REQUEST"
    INVALID_SYMBOL = "INVALID_SYMBOL"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    SERVER_ERROR = "SERVER_ERROR"
    TIMEOUT = "TIMEOUT"


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error answer: HTTP ``status``, ``code`` and ``message`` (the body),
    and ``retry_after`` seconds for a 429/503 (``None``: no header)."""

    status: int
    code: ApiCode
    message: str
    retry_after: int | None = None

    def body(self) -> bytes:
        """The JSON body ``{"code": ..., "message": ...}``."""
        return orjson.dumps({"code": str(self.code), "message": self.message})


@dataclass(frozen=True, slots=True)
class Target:
    """A request target that passed the checks: the normalized ``path`` (no
    trailing slash, ``/`` for the root) and the re-encoded ``query`` (no ``?``)."""

    path: str
    query: str

    @property
    def forwardable(self) -> bool:
        """True when ``path`` is one of :data:`FORWARDED_PATHS`."""
        return self.path in FORWARDED_PATHS


def _bad(message: str) -> ApiError:
    return ApiError(400, ApiCode.INVALID_CLIENT_REQUEST, message)


def _decode(text: str, what: str, *, plus_is_space: bool) -> str | ApiError:
    """Strict percent-decoding to printable UTF-8 (no control characters)."""
    if plus_is_space:
        text = text.replace("+", " ")
    if "%" in text:
        pieces = text.split("%")
        for piece in pieces[1:]:
            if len(piece) < 2 or not all(c in "0123456789abcdefABCDEF" for c in piece[:2]):
                return _bad(f"malformed percent-escape in the {what}")
    try:
        decoded = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return _bad(f"the {what} is not UTF-8")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        return _bad(f"control character in the {what}")
    return decoded


def _normalize_path(raw: str) -> str | ApiError:
    if "%2f" in raw.lower() or "%5c" in raw.lower():
        return _bad("encoded '/' or '\\' in the path")
    path = _decode(raw, "path", plus_is_space=False)
    if isinstance(path, ApiError):
        return path
    if "\\" in path:
        return _bad("backslash in the path")
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def _reencode_query(raw: str) -> str | ApiError:
    pairs: list[str] = []
    for piece in raw.split("&"):
        if not piece:
            continue
        key_text, _, value_text = piece.partition("=")
        key = _decode(key_text, "query", plus_is_space=True)
        value = _decode(value_text, "query", plus_is_space=True)
        if isinstance(key, ApiError):
            return key
        if isinstance(value, ApiError):
            return value
        if not _KEY.match(key):
            return _bad(f"invalid query parameter name {key[:64]!r}")
        pairs.append(f"{key}={quote(value, safe='')}")
        if len(pairs) > MAX_QUERY_PAIRS:
            return _bad(f"more than {MAX_QUERY_PAIRS} query parameters")
    return "&".join(pairs)


def parse_target(raw: str) -> Target | ApiError:
    """Check and normalize a raw request target (path and query as sent).

    Returns the :class:`Target`, or the 400 :class:`ApiError` it earns: not
    origin-form, a fragment, or a path or query that does not decode
    cleanly (see the module docstring).  O(len(raw)).
    """
    if not raw.startswith("/"):
        return _bad("only origin-form request targets (a path) are served")
    if "#" in raw:
        return _bad("a request target cannot carry a fragment")
    raw_path, _, raw_query = raw.partition("?")
    path = _normalize_path(raw_path)
    if isinstance(path, ApiError):
        return path
    query = _reencode_query(raw_query)
    if isinstance(query, ApiError):
        return query
    return Target(path, query)


def query_value(target: Target, name: str) -> str | None:
    """The last decoded value of ``name`` in ``target``'s query (``None``: absent).  O(len(query))."""
    found: str | None = None
    for piece in target.query.split("&"):
        key, _, value = piece.partition("=")
        if key == name:
            found = unquote_to_bytes(value).decode("utf-8")
    return found


def relayed_status(status: int) -> int:
    """The status the mirror answers for an upstream ``status``: itself when the
    venue uses it (:data:`RELAYED_STATUSES`), else 502."""
    return status if status in RELAYED_STATUSES else 502


def safe_content_type(value: str | None) -> str:
    """An upstream ``Content-Type`` if it is plain JSON or text, else JSON's."""
    if value is not None and _CONTENT_TYPE.match(value.strip()):
        return value.strip()
    return "application/json; charset=utf-8"


class ForwardBudget:
    """The forwarding budget: ``total_per_minute`` for everyone together and
    ``client_per_minute`` for each client address (requests in any
    60-second window, see :meth:`TokenBucket.for_budget`).

    At most ``max_clients`` per-address buckets are kept (a dict in
    least-recently-used order): forgetting one gives that address a fresh
    bucket, which the total bucket still bounds.  :meth:`take` is O(1);
    memory O(max_clients).
    """

    __slots__ = ("_total", "_client_per_minute", "_clients", "_max_clients")

    def __init__(self, total_per_minute: float, client_per_minute: float,
                 max_clients: int = 1024) -> None:
        if max_clients < 1:
            raise UsageError(f"max_clients must be >= 1, got {max_clients}")
        self._total = TokenBucket.for_budget(total_per_minute)
        self._client_per_minute = client_per_minute
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max_clients = max_clients

    def take(self, client: str | None, now: float) -> ApiError | None:
        """Take one token for ``client`` at ``now`` (monotonic seconds): ``None``
        if the request may go upstream, else the 429 to answer (the client's
        own budget is checked first, so one client cannot spend the total).
        ``client`` ``None`` is the mirror itself: the total budget only."""
        if client is None:
            return None if self._total.try_take(now) else _spent("the mirror's", self._total)
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = self._clients[client] = TokenBucket.for_budget(self._client_per_minute)
            if len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        if bucket.available(now) < 1.0:
            return _spent("your", bucket)
        if not self._total.try_take(now):
            return _spent("the mirror's", self._total)
        bucket.try_take(now)
        return None


def _spent(whose: str, bucket: TokenBucket) -> ApiError:
    wait = max(1, math.ceil(1.0 / bucket.rate))
    return ApiError(429, ApiCode.TOO_MANY_REQUESTS,
                    f"{whose} budget for forwarded requests is spent", retry_after=wait)
