"""Fault switches of the simulated venue, and the seeded dice that apply them.

`Faults` is a plain mutable record: every switch is off by default and may be flipped
at runtime (`venue.faults.drop_rate = 0.05`); values are validated on assignment.
`FaultInjector` makes every random fault decision with one seeded `random.Random`, so
a run with the same seed and the same sequence of calls makes the same decisions.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Faults", "FaultInjector", "FrameFate", "RestRejection", "SnapshotOrder"]

_RATES = frozenset({"drop_rate", "duplicate_rate", "rest_5xx_rate", "malformed_rate"})
_COUNTS = frozenset({"snapshot_lag", "rest_429_burst", "rest_limit_per_minute"})


class SnapshotOrder(enum.Enum):
    """The order in which a REST depth snapshot lists its levels.

    The venue's docs do not fix it (their own example lists bids ascending), so
    a client must sort locally and trust no order.
    """

    DESCENDING = "descending"
    """Best first on both sides: bids descending, asks ascending."""
    DOCS = "docs"
    """As in the venue docs' example: bids ascending (worst first), asks ascending."""
    SHUFFLED = "shuffled"
    """Each side in a random order (drawn from the seeded RNG)."""


@dataclass
class Faults:
    """What the venue does wrong. All off by default; switchable at runtime.

    Attributes:
        drop_rate: probability that a depth frame is silently not sent.
        duplicate_rate: probability that a depth frame is sent twice.
        aggregate: the realtime `depth.<s>` stream merges 2-5 consecutive updates
            into one frame (a frame waits for its updates; `pause()` flushes it).
        snapshot_lag: REST depth answers as of this many updates ago (clamped to
            the history the flow keeps).
        rest_429_burst: the next N depth requests get 429 with `Retry-After`
            (decremented as they are served).
        rest_limit_per_minute: sliding 60 s window limit on all REST requests
            (0 = unlimited); excess gets 429 TOO_MANY_REQUESTS.
        rest_5xx_rate: probability that a REST request gets a 5xx.
        rest_delay: seconds each REST response is held back (must stay below the
            server's 60 s request timeout).
        malformed_rate: probability that a depth frame is replaced by a malformed
            one; the real update is then lost to that client.
        string_times: send `E`/`T` as JSON strings, as the live venue does.
        zero_spelling: spell zero quantities "0.000" or "0.00000" instead of "0".
        snapshot_order: the order of the levels in REST depth snapshots, a
            `SnapshotOrder` or its value ("descending", "docs", "shuffled");
            best first on both sides by default.
    """

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    aggregate: bool = False
    snapshot_lag: int = 0
    rest_429_burst: int = 0
    rest_limit_per_minute: int = 0
    rest_5xx_rate: float = 0.0
    rest_delay: float = 0.0
    malformed_rate: float = 0.0
    string_times: bool = False
    zero_spelling: bool = False
    snapshot_order: SnapshotOrder = SnapshotOrder.DESCENDING

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "snapshot_order":
            try:
                value = SnapshotOrder(value)
            except ValueError:
                choices = ", ".join(repr(order.value) for order in SnapshotOrder)
                raise ValueError(f"snapshot_order must be one of {choices}, got {value!r}") from None
        if name in _RATES and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if name in _COUNTS and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if name == "rest_delay" and not 0.0 <= value < 60.0:
            raise ValueError(f"rest_delay must be in [0, 60) seconds, got {value!r}")
        super().__setattr__(name, value)


class FrameFate(enum.Enum):
    """What happens to one depth frame on its way to one client."""

    SEND = "send"
    DROP = "drop"
    DUPLICATE = "duplicate"
    MALFORM = "malform"


@dataclass(frozen=True, slots=True)
class RestRejection:
    """A REST request refused by a fault: HTTP status, error body and headers."""

    status: int
    code: str
    message: str
    retry_after: int | None = None


_ZERO_SPELLINGS = ("0.000", "0.00000")
_WINDOW_SECONDS = 60.0


class FaultInjector:
    """Applies a `Faults` record with a seeded RNG. O(1) per decision."""

    def __init__(self, faults: Faults, seed: int = 0) -> None:
        self.faults = faults
        self._rng = random.Random(seed)
        self._accepted: deque[float] = deque()

    def frames_at_risk(self) -> bool:
        """True if any per-frame fault (drop, duplicate, malform) is switched on."""
        f = self.faults
        return bool(f.drop_rate or f.duplicate_rate or f.malformed_rate)

    def frame_fate(self) -> FrameFate:
        """Draw the fate of one depth frame for one client."""
        f = self.faults
        roll = self._rng.random()
        for fate, rate in (
            (FrameFate.DROP, f.drop_rate),
            (FrameFate.MALFORM, f.malformed_rate),
            (FrameFate.DUPLICATE, f.duplicate_rate),
        ):
            if roll < rate:
                return fate
            roll -= rate
        return FrameFate.SEND

    def aggregate_size(self) -> int:
        """How many consecutive updates the next aggregated realtime frame merges."""
        return self._rng.randint(2, 5)

    def zero(self) -> str:
        """The spelling of a zero quantity under the current switches."""
        if self.faults.zero_spelling:
            return self._rng.choice(_ZERO_SPELLINGS)
        return "0"

    def order_snapshot(self, body: dict[str, Any]) -> None:
        """Put the levels of a depth snapshot `body` (best first on both sides,
        as `OrderFlow.snapshot` makes it) in the order `snapshot_order` says,
        in place.  O(levels)."""
        order = self.faults.snapshot_order
        if order is SnapshotOrder.DOCS:
            body["bids"].reverse()
        elif order is SnapshotOrder.SHUFFLED:
            self._rng.shuffle(body["bids"])
            self._rng.shuffle(body["asks"])

    def malformed(self, message: dict[str, Any]) -> str:
        """Text of a broken version of the wrapped depth `message` (not mutated)."""
        data = message["data"]
        kinds = _MALFORMERS if data["a"] or data["b"] else _MALFORMERS_WITHOUT_LEVELS
        return self._rng.choice(kinds)(self._rng, message)

    def rest_rejection(self, now: float, *, depth: bool) -> RestRejection | None:
        """Decide whether a REST request arriving at `now` (seconds) is refused.

        Order: the 429 burst (depth requests only), then the sliding-window limit,
        then random 5xx. Only accepted requests count toward the window.
        """
        f = self.faults
        if depth and f.rest_429_burst > 0:
            f.rest_429_burst -= 1
            return RestRejection(429, "TOO_MANY_REQUESTS", "Rate limit burst", 1)
        limited = self._window_rejection(now)
        if limited is not None:
            return limited
        if f.rest_5xx_rate and self._rng.random() < f.rest_5xx_rate:
            status = self._rng.choice((500, 502, 503))
            return RestRejection(status, "SERVER_ERROR", "Simulated server error")
        self._accepted.append(now)
        return None

    def _window_rejection(self, now: float) -> RestRejection | None:
        limit = self.faults.rest_limit_per_minute
        accepted = self._accepted
        while accepted and accepted[0] <= now - _WINDOW_SECONDS:
            accepted.popleft()
        if not limit or len(accepted) < limit:
            return None
        wait = math.ceil(accepted[-limit] + _WINDOW_SECONDS - now)
        return RestRejection(429, "TOO_MANY_REQUESTS", "Rate limit exceeded", max(1, wait))


# --- malformed frames: each takes the RNG and a wrapped message, returns text ------


def _dumps(message: Any) -> str:
    return orjson.dumps(message).decode()


def _with_data(message: dict[str, Any], data: Any) -> str:
    return _dumps({**message, "data": data})


def _bad_json(rng: random.Random, message: dict[str, Any]) -> str:
    text = _dumps(message)
    return text[: rng.randint(1, len(text) - 1)]


def _missing_field(rng: random.Random, message: dict[str, Any]) -> str:
    data = dict(message["data"])
    del data[rng.choice(("U", "u", "a", "b"))]
    return _with_data(message, data)


def _wrong_type(rng: random.Random, message: dict[str, Any]) -> str:
    data = dict(message["data"])
    field = rng.choice(("U", "u", "a", "b"))
    data[field] = {"U": [data["U"]], "u": None, "a": "levels", "b": 42}[field]
    return _with_data(message, data)


def _first_level(rng: random.Random, data: dict[str, Any]) -> tuple[str, list[str]]:
    """A side with levels and a copy of its first level, for corrupting."""
    key = rng.choice([k for k in ("a", "b") if data[k]])
    return key, list(data[key][0])


def _negative_price(rng: random.Random, message: dict[str, Any]) -> str:
    data = dict(message["data"])
    key, (price, quantity) = _first_level(rng, data)
    data[key] = [["-" + price, quantity], *data[key][1:]]
    return _with_data(message, data)


def _bad_number(rng: random.Random, message: dict[str, Any]) -> str:
    data = dict(message["data"])
    key, (price, _) = _first_level(rng, data)
    data[key] = [[price, rng.choice(("1.2.3", "NaN", "", "abc"))], *data[key][1:]]
    return _with_data(message, data)


def _not_an_object(rng: random.Random, message: dict[str, Any]) -> str:
    return _with_data(message, rng.choice(([], "depth", None)))


_MALFORMERS_WITHOUT_LEVELS = (_bad_json, _missing_field, _wrong_type, _not_an_object)
_MALFORMERS = (*_MALFORMERS_WITHOUT_LEVELS, _negative_price, _bad_number)
