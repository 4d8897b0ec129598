"""Retry, backoff and rate-limit decisions as plain functions.  No asyncio, no clock.

Everything here takes its inputs explicitly -- the attempt number, the error,
the current time ``now`` (seconds, any monotonic origin), a random source --
and returns a number or a decision, so the asyncio layer
(:mod:`orderbook.live.transport`, :mod:`orderbook.live.replicator`) only sleeps for what
it is told and the tests never sleep.

* :class:`Backoff` / :func:`backoff_delays` -- exponential delays with jitter;
* :func:`is_retryable` -- which HTTP statuses and exceptions deserve a retry;
* :class:`RetryPolicy` -- retry-or-give-up for one REST request;
* :class:`SnapshotRetryPolicy` -- retry-or-give-up for a symbol whose snapshots
  keep coming back stale or failing;
* :class:`TokenBucket` -- the shared budget of REST requests;
* :func:`parse_retry_after` -- the ``Retry-After`` header in both spellings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import RateLimited, TransportError, UsageError

__all__ = [
    "Backoff",
    "RetryDecision",
    "RetryPolicy",
    "SnapshotRetryPolicy",
    "TokenBucket",
    "backoff_delays",
    "is_retryable",
    "parse_retry_after",
]

Random = Callable[[], float]
"""A source of floats uniform in ``[0, 1)``, like :func:`random.random`."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with proportional jitter.

    The delay before retry number ``attempt`` (0-based) is
    ``min(maximum, initial * factor**attempt)`` scaled by a random factor in
    ``[1 - jitter, 1]``: with ``jitter=0`` the delays are deterministic, with
    ``jitter=1`` they are "full jitter" (uniform in ``[0, delay]``).  Jitter
    spreads out clients (or symbols) that failed together.
    """

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise UsageError(f"need 0 < initial <= maximum, got {self.initial}, {self.maximum}")
        if self.factor < 1:
            raise UsageError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise UsageError(f"jitter must be in [0, 1], got {self.jitter}")

    def delay(self, attempt: int, rng: Random = random.random) -> float:
        """Seconds to wait before retry ``attempt`` (0-based).  O(1)."""
        if attempt < 0:
            raise UsageError(f"attempt must be >= 0, got {attempt}")
        # factor**attempt overflows for huge attempts: cap the exponent first.
        if self.factor > 1 and attempt > math.log(self.maximum / self.initial, self.factor):
            base = self.maximum
        else:
            base = min(self.maximum, self.initial * self.factor**attempt)
        return base * (1.0 - self.jitter * rng())


def backoff_delays(backoff: Backoff = Backoff(), rng: Random = random.random) -> Iterator[float]:
    """The endless sequence of delays of ``backoff``: attempt 0, 1, 2, ...

    The caller stops iterating when it succeeds or gives up.  Each step O(1).
    """
    attempt = 0
    while True:
        yield backoff.delay(attempt, rng)
        attempt += 1


_RETRYABLE_STATUSES = frozenset({408, 425, 429})


def is_retryable(outcome: int | BaseException) -> bool:
    """Whether a failed request is worth retrying.

    ``outcome`` is an HTTP status or the exception the request raised.
    Retryable: 5xx, 408, 425, 429; :class:`TransportError` (timeouts, refused
    or reset connections wrapped by the transport); :class:`OSError` and
    :class:`TimeoutError`.  Anything else -- 4xx client errors, bad data,
    usage errors -- is not: repeating it would fail the same way.
    """
    if isinstance(outcome, bool):
        raise UsageError("outcome must be an HTTP status or an exception, got a bool")
    if isinstance(outcome, int):
        return outcome >= 500 or outcome in _RETRYABLE_STATUSES
    return isinstance(outcome, (TransportError, OSError, TimeoutError))


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failure: wait ``delay`` seconds and retry, or give up."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry-or-give-up for one REST request.

    At most ``max_attempts`` attempts in all.  A 429 waits at least its
    ``Retry-After`` hint (capped at ``max_retry_after``) and does not use up
    an attempt of its own beyond ``max_rate_limited`` in a row, since a
    rate limit is the venue asking us to wait, not the venue failing.
    """

    backoff: Backoff = Backoff(initial=0.2, maximum=5.0)
    max_attempts: int = 5
    max_rate_limited: int = 20
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_rate_limited < 1:
            raise UsageError("max_attempts and max_rate_limited must be >= 1")

    def decide(
        self,
        failures: int,
        outcome: int | BaseException,
        *,
        rate_limited: int = 0,
        retry_after: float | None = None,
        rng: Random = random.random,
    ) -> RetryDecision:
        """Decide after a failed attempt.

        ``failures`` counts failed attempts so far that were not rate limits
        (including this one if it is not a 429), ``rate_limited`` the 429s in
        a row (including this one if it is).  ``outcome`` is the HTTP status
        or exception; ``retry_after`` the 429's hint in seconds.  O(1).
        """
        is_429 = outcome == 429 or isinstance(outcome, RateLimited)
        if not is_retryable(outcome):
            return RetryDecision(False, reason=f"not retryable: {_describe(outcome)}")
        if is_429:
            if rate_limited >= self.max_rate_limited:
                return RetryDecision(False, reason=f"rate limited {rate_limited} times in a row")
            wait = self.backoff.delay(max(rate_limited - 1, 0), rng)
            if retry_after is not None:
                wait = max(wait, min(retry_after, self.max_retry_after))
            return RetryDecision(True, wait, "rate limited")
        if failures >= self.max_attempts:
            return RetryDecision(
                False, reason=f"gave up after {failures} attempts: {_describe(outcome)}"
            )
        return RetryDecision(True, self.backoff.delay(max(failures - 1, 0), rng), _describe(outcome))


def _describe(outcome: int | BaseException) -> str:
    if isinstance(outcome, int):
        return f"HTTP {outcome}"
    return f"{type(outcome).__name__}: {outcome}"


@dataclass(frozen=True, slots=True)
class SnapshotRetryPolicy:
    """When to fetch a symbol's snapshot again after it came back stale or failed.

    A *stale* snapshot is older than the frames buffered to bridge it; a newer
    one only helps once the venue has moved on, so the retry waits
    ``backoff.delay(streak - 1)`` *and* for at least ``min_new_frames`` more
    frames of that symbol (or ``max_frame_wait`` seconds, for a quiet market).
    A *failed* fetch (venue unavailable, bad body) waits the backoff alone.

    After ``max_streak`` stale or failed snapshots in a row the symbol is
    reported as an error and retried only every ``error_interval`` seconds:
    never an endless tight loop, and it recovers by itself when the venue does.
    """

    backoff: Backoff = Backoff(initial=0.05, maximum=5.0)
    max_streak: int = 8
    min_new_frames: int = 1
    max_frame_wait: float = 5.0
    error_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.max_streak < 1 or self.min_new_frames < 0:
            raise UsageError("max_streak must be >= 1 and min_new_frames >= 0")
        if self.error_interval <= 0 or self.max_frame_wait < 0:
            raise UsageError("error_interval must be > 0 and max_frame_wait >= 0")

    def decide(self, streak: int, rng: Random = random.random) -> RetryDecision:
        """After the ``streak``-th (1-based) stale or failed snapshot in a row:
        ``retry=True`` with the delay to wait, or ``retry=False`` with the
        (longer) delay ``error_interval`` meaning "give up: report an error,
        try again later".  O(1)."""
        if streak < 1:
            raise UsageError(f"streak must be >= 1, got {streak}")
        if streak >= self.max_streak:
            return RetryDecision(
                False, self.error_interval, f"{streak} stale or failed snapshots in a row"
            )
        return RetryDecision(True, self.backoff.delay(streak - 1, rng), "retry")


@dataclass(slots=True)
class TokenBucket:
    """A token bucket driven by an injected clock: every method takes ``now``.

    Holds at most ``capacity`` tokens, refilled at ``rate`` tokens per second.
    :meth:`reserve` always succeeds and returns how long the caller must wait
    before using its token (tokens may go negative: reservations queue up in
    order), so callers sharing a bucket never exceed
    ``capacity + rate * T`` requests in any interval of length ``T``.
    :meth:`block_until` makes every token unusable before a moment (a 429
    with ``Retry-After`` pauses everyone, not just the request that got it).

    :meth:`for_budget` builds a bucket that never exceeds ``per_minute``
    requests in any sliding 60-second window, matching the venue's limit.
    """

    rate: float
    capacity: float
    _tokens: float = field(init=False)
    _updated: float | None = field(init=False, default=None)
    _blocked_until: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity < 1:
            raise UsageError(f"need rate > 0 and capacity >= 1, got {self.rate}, {self.capacity}")
        self._tokens = float(self.capacity)

    @classmethod
    def for_budget(cls, per_minute: float, burst: float = 20.0, window: float = 60.0,
                   margin: float = 1.0) -> TokenBucket:
        """A bucket allowing at most ``per_minute`` requests in any ``window``
        (seconds): ``burst`` immediately, then ``(per_minute - burst)`` spread
        over ``window + margin`` seconds.  The ``margin`` absorbs the network
        delay between our clock and the venue's counting.  O(1)."""
        if per_minute < 2:
            raise UsageError(f"per_minute must be >= 2, got {per_minute}")
        burst = max(1.0, min(burst, per_minute / 2))
        return cls(rate=(per_minute - burst) / (window + margin), capacity=burst)

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._updated = now
            return
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(float(self.capacity), self._tokens + elapsed * self.rate)
            self._updated = now

    def available(self, now: float) -> float:
        """Tokens available at ``now`` (negative while reservations are queued).  O(1)."""
        self._refill(now)
        return self._tokens

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0 if at once).  O(1)."""
        self._refill(now)
        self._tokens -= 1.0
        wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        return max(wait, self._blocked_until - now, 0.0)

    def try_take(self, now: float) -> bool:
        """Take one token only if it is usable at once.  O(1)."""
        self._refill(now)
        if self._tokens >= 1.0 and now >= self._blocked_until:
            self._tokens -= 1.0
            return True
        return False

    def block_until(self, until: float) -> None:
        """No token may be used before ``until`` (extends, never shortens).  O(1)."""
        self._blocked_until = max(self._blocked_until, until)


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header, or ``None``.

    Accepts delta-seconds (``"5"``, and leniently ``"1.5"``) and an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, compared with ``now_epoch``, Unix
    seconds).  Missing or unparsable values give ``None``; past dates ``0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime  # 6 ms to import: only when needed

            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now_epoch)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
