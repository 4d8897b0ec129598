"""Backoff, retry decisions, the token bucket and Retry-After: no sleeping."""

from __future__ import annotations

import itertools
import random

import pytest

from orderbook.errors import MalformedMessage, RateLimited, UsageError, VenueUnavailable
from orderbook.sync.policy import (
    Backoff,
    RetryPolicy,
    SnapshotRetryPolicy,
    TokenBucket,
    backoff_delays,
    is_retryable,
    parse_retry_after,
)


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    delays = list(itertools.islice(backoff_delays(Backoff(0.1, 1.0, 2.0, 0.0)), 6))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_jitter_stays_within_bounds_and_uses_the_injected_random() -> None:
    backoff = Backoff(1.0, 8.0, 2.0, 0.5)
    assert backoff.delay(2, rng=lambda: 0.0) == 4.0
    assert backoff.delay(2, rng=lambda: 0.999999) == pytest.approx(2.0, abs=1e-5)
    rng = random.Random(3)
    for attempt in range(50):
        base = min(8.0, 2.0**attempt)
        assert base / 2 <= backoff.delay(attempt, rng.random) <= base


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert Backoff(0.1, 5.0, 2.0, 0.0).delay(10_000) == 5.0


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 2, "maximum": 1},
                                    {"factor": 0.5}, {"jitter": 1.5}])
def test_backoff_refuses_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        Backoff(**kwargs)


@pytest.mark.parametrize(
    "outcome, expected",
    [(500, True), (502, True), (503, True), (429, True), (408, True), (400, False),
     (404, False), (200, False), (TimeoutError(), True), (ConnectionResetError(), True),
     (VenueUnavailable("x"), True), (RateLimited("x"), True), (MalformedMessage("x"), False),
     (ValueError(), False)],
)
def test_is_retryable(outcome: int | BaseException, expected: bool) -> None:
    assert is_retryable(outcome) is expected


def test_retry_policy_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(Backoff(0.1, 1.0, 2.0, 0.0), max_attempts=3)
    assert policy.decide(1, 503).retry and policy.decide(1, 503).delay == pytest.approx(0.1)
    assert policy.decide(2, TimeoutError()).delay == pytest.approx(0.2)
    final = policy.decide(3, 503)
    assert not final.retry and "3 attempts" in final.reason


def test_retry_policy_never_retries_client_errors() -> None:
    decision = RetryPolicy().decide(1, 400)
    assert not decision.retry and "HTTP 400" in decision.reason


def test_retry_policy_honours_retry_after_and_caps_it() -> None:
    policy = RetryPolicy(Backoff(0.1, 1.0, 2.0, 0.0), max_retry_after=30.0)
    assert policy.decide(0, 429, rate_limited=1, retry_after=7).delay == 7
    assert policy.decide(0, 429, rate_limited=1, retry_after=500).delay == 30
    # Without a hint the 429 backs off exponentially on its own streak.
    assert policy.decide(0, 429, rate_limited=3).delay == pytest.approx(0.4)
    assert not policy.decide(0, 429, rate_limited=20).retry


def test_snapshot_policy_backs_off_then_reports_an_error() -> None:
    policy = SnapshotRetryPolicy(Backoff(0.05, 1.0, 2.0, 0.0), max_streak=4, error_interval=9)
    decisions = [policy.decide(n) for n in range(1, 6)]
    assert [d.retry for d in decisions] == [True, True, True, False, False]
    assert [d.delay for d in decisions] == pytest.approx([0.05, 0.1, 0.2, 9, 9])
    with pytest.raises(UsageError):
        policy.decide(0)


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3)
    assert [bucket.reserve(100.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.reserve(100.0) == pytest.approx(0.5)
    assert bucket.reserve(100.0) == pytest.approx(1.0)
    assert bucket.available(101.0) == pytest.approx(0.0)
    assert not bucket.try_take(101.0) and bucket.try_take(101.5)


def test_token_bucket_block_until_delays_every_reservation() -> None:
    bucket = TokenBucket(rate=10.0, capacity=5)
    bucket.block_until(10.0)
    assert bucket.reserve(7.0) == pytest.approx(3.0)
    assert not bucket.try_take(9.9)
    bucket.block_until(8.0)  # never shortens
    assert bucket.reserve(9.0) == pytest.approx(1.0)


def test_token_bucket_for_budget_never_exceeds_the_window() -> None:
    """Simulate greedy callers: no 60 s sliding window ever holds more than the budget."""
    bucket = TokenBucket.for_budget(1000, burst=50)
    sends: list[float] = []
    now = 0.0
    while now < 300:
        wait = bucket.reserve(now)
        now += wait
        sends.append(now)
    start = 0
    for end, moment in enumerate(sends):
        while sends[start] <= moment - 60:
            start += 1
        assert end - start + 1 <= 1000
    assert len(sends) > 4 * 900  # and the budget is actually used


def test_token_bucket_refuses_bad_parameters() -> None:
    with pytest.raises(UsageError):
        TokenBucket(rate=0, capacity=5)
    with pytest.raises(UsageError):
        TokenBucket.for_budget(1)


@pytest.mark.parametrize(
    "value, expected",
    [("5", 5.0), (" 1.5 ", 1.5), (None, None), ("", None), ("soon", None), ("-3", None),
     ("nan", None), ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0), ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now_epoch=60.0) == expected
