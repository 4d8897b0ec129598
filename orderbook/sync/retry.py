"""When a symbol's next snapshot may be fetched: the retry schedule, as data.

A :class:`RetrySchedule` is one symbol's pending retry.  It holds deadlines
(integer microseconds on the driver's clock) and a frame count, never a
timer: the engine asks :meth:`due` on every frame and on every tick, and
tells the driver the next deadline, so live and replay take the same
decisions at the same recorded times.

The rules (:class:`~orderbook.sync.policy.SnapshotRetryPolicy`)::

    first request, or the last snapshot synced   fetch now
    k-th stale or failed snapshot in a row       wait the policy's backoff(k); after a
                                                 *stale* one also wait for
                                                 ``min_new_frames`` new frames of the
                                                 symbol, or ``max_frame_wait`` more
                                                 seconds for a quiet market
    ``max_streak`` in a row                      give up for ``error_interval``
                                                 seconds (the symbol reports an
                                                 error), then try again
    a 429 / Retry-After                          never before the venue's time
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .policy import SnapshotRetryPolicy

__all__ = ["RetrySchedule", "plan_retry"]

_US = 1_000_000


@dataclass(slots=True)
class RetrySchedule:
    """One symbol's pending snapshot retry.

    Due once ``now >= not_before`` *and* either the symbol has seen
    ``min_frames`` frames in all or ``now >= give_up_waiting`` (the wait for
    new frames is over).  O(1) per check.
    """

    not_before: int
    """Earliest time (µs) the fetch may go out."""
    min_frames: int
    """The symbol's frame count that must be reached (after a stale snapshot)."""
    give_up_waiting: int
    """Time (µs) after which the fetch goes out even without new frames."""
    gave_up: bool
    """True when this is the slow retry after ``max_streak`` failures in a row."""
    reason: str
    """Why the retry is delayed, in words (for logs and stats)."""

    def due(self, now: int, frames: int) -> bool:
        """Whether the fetch may go out now."""
        if now < self.not_before:
            return False
        return frames >= self.min_frames or now >= self.give_up_waiting

    def next_deadline(self, frames: int) -> int:
        """The next time (µs) at which :meth:`due` may become true without a frame."""
        if frames >= self.min_frames:
            return self.not_before
        return max(self.not_before, self.give_up_waiting)


def plan_retry(
    policy: SnapshotRetryPolicy, *, now: int, stale_streak: int, failures: int, frames: int,
    retry_after: float | None, rng: random.Random,
) -> RetrySchedule | None:
    """The schedule of the next fetch, or ``None`` to fetch at once.

    ``stale_streak`` / ``failures`` are the stale and failed snapshots in a
    row; ``frames`` the symbol's frame count now; ``retry_after`` the venue's
    ``Retry-After`` (seconds) if the last failure carried one.  O(1).
    """
    streak = stale_streak + failures
    if streak == 0 and not retry_after:
        return None
    if streak == 0:
        delay, gave_up, reason = 0.0, False, "retry-after"
    else:
        decision = policy.decide(streak, rng.random)
        delay, gave_up, reason = decision.delay, not decision.retry, decision.reason
    if retry_after:
        delay = max(delay, retry_after)
    not_before = now + int(delay * _US)
    wait_frames = stale_streak > 0 and not gave_up
    min_frames = frames + (policy.min_new_frames if wait_frames else 0)
    give_up_waiting = not_before + int(policy.max_frame_wait * _US)
    return RetrySchedule(not_before, min_frames, give_up_waiting, gave_up, reason)
