"""The synthetic one-book session of the benchmarks and its ground truth (see
:mod:`orderbook.bench.harness`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from sortedcontainers import SortedList

from ..core.ladder import Level

__all__ = ["NEAR_TICKS", "SYMBOL", "TICK_DECIMALS", "Touch", "Workload", "make_snapshot", "make_workload"]

SYMBOL = "BENCH_USDC"
TICK_DECIMALS = 2
NEAR_TICKS = 20
_ZEROS = ("0", "0.00", "0.000", "0.00000")
_QTY_DECIMALS = (0, 1, 2, 2, 3, 3, 4, 5)

Touch = tuple[Level | None, Level | None]


# ---------------------------------------------------------------- workload
@dataclass(slots=True)
class Workload:
    """A synthetic session and its ground truth.

    ``frames`` are raw WebSocket text frames (bytes) with contiguous update
    ids starting at ``snapshot["lastUpdateId"] + 1``; ``touches[i]`` is the
    exact ``(best bid, best ask)`` after ``frames[i]``; ``final_bids`` /
    ``final_asks`` the whole book after the last frame, best first.
    """

    symbol: str
    seed: int
    snapshot: dict[str, Any]
    snapshot_raw: bytes
    frames: list[bytes]
    level_updates: int
    touches: list[Touch]
    final_bids: list[Level]
    final_asks: list[Level]
    mix: dict[str, int] = field(default_factory=dict)


def _price_str(tick: int) -> str:
    whole, frac = divmod(tick, 10**TICK_DECIMALS)
    return f"{whole}.{frac:0{TICK_DECIMALS}d}"


def _qty_str(rng: random.Random) -> str:
    """A positive quantity with 0-5 decimals, sometimes with trailing zeros."""
    decimals = rng.choice(_QTY_DECIMALS)
    value = rng.randint(1, 5 * 10 ** (decimals + 2))
    text = str(value)
    if decimals:
        text = text.rjust(decimals + 1, "0")
        text = f"{text[:-decimals]}.{text[-decimals:]}"
        if rng.random() < 0.1:
            text += "00"
    return text


class _Side:
    """One side of the generator's true model: tick -> exact level, best first."""

    __slots__ = ("sign", "levels", "texts", "order")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # -1 bids (higher is better), +1 asks
        self.levels: dict[int, Level] = {}
        self.texts: dict[int, str] = {}  # quantity as sent
        self.order = SortedList()  # signed ticks, best first

    def put(self, tick: int, price: str, qty: str) -> None:
        if tick not in self.levels:
            self.order.add(self.sign * tick)
        self.levels[tick] = (Decimal(price), Decimal(qty))
        self.texts[tick] = qty

    def delete(self, tick: int) -> None:
        if self.levels.pop(tick, None) is not None:
            del self.texts[tick]
            self.order.remove(self.sign * tick)

    def best(self) -> Level | None:
        return self.levels[self.sign * self.order[0]] if self.order else None

    def near_range(self, boundary: int) -> tuple[int, int]:
        """Index range in ``order`` of the levels within NEAR_TICKS of the boundary."""
        if self.sign < 0:  # bids <= boundary
            edge = -(boundary - NEAR_TICKS + 1)
        else:  # asks >= boundary + 1
            edge = boundary + NEAR_TICKS
        return 0, self.order.bisect_right(edge)


def make_snapshot(levels_per_side: int, seed: int = 1, mid_tick: int = 15_000) -> dict[str, Any]:
    """A REST depth body with ``levels_per_side`` levels on each side, contiguous ticks."""
    rng = random.Random(seed)
    bids = [[_price_str(mid_tick - i), _qty_str(rng)] for i in range(levels_per_side)]
    asks = [[_price_str(mid_tick + 1 + i), _qty_str(rng)] for i in range(levels_per_side)]
    return {"asks": asks, "bids": bids, "lastUpdateId": "1000", "timestamp": 1_700_000_000_000_000}


def make_workload(
    frames: int = 200_000,
    seed: int = 20_240_611,
    depth: int = 1000,
    symbol: str = SYMBOL,
    move_probability: float = 0.1,
) -> Workload:
    """Generate a seeded workload (deterministic for a given seed).

    Snapshot: ``depth`` levels per side around 150.00 (tick 0.01), about one
    tick in five left empty.  Each frame changes 1-6 distinct levels: about
    25% deletes (of existing levels, rarely of an absent price), 25% new
    levels, the rest quantity changes; 60% of the changes fall within 20
    ticks of the mid.  The mid does a random walk (one tick, on 10% of the
    frames); a level it crosses is deleted in that frame, so the book is
    never crossed.  20% of the frames aggregate several update ids
    (``U < u``).  ``E``/``T`` are strings, as the live venue sends them;
    zero quantities come in several spellings.
    """
    rng = random.Random(seed)
    bids, asks = _Side(-1), _Side(1)
    boundary = 15_000  # bids <= boundary < asks
    for side, start, step in ((bids, boundary, -1), (asks, boundary + 1, 1)):
        at, placed = start, 0
        while placed < depth:
            if placed == 0 or rng.random() < 0.8:
                side.put(at, _price_str(at), _qty_str(rng))
                placed += 1
            at += step
    last_id = 2_000_000_000
    engine_time = 1_700_000_000_000_000
    snapshot = {
        "asks": [[_price_str(t), asks.texts[t]] for t in asks.order],
        "bids": [[_price_str(-t), bids.texts[-t]] for t in bids.order],
        "lastUpdateId": str(last_id),
        "timestamp": engine_time,
    }
    mix = dict.fromkeys(
        ("delete", "delete_absent", "new", "modify", "near", "far", "mid_moves", "aggregated"), 0
    )
    out: list[bytes] = []
    touches: list[Touch] = []
    level_updates = 0
    dumps = orjson.dumps
    stream = f"depth.{symbol}"
    for _ in range(frames):
        changes: dict[int, dict[int, str]] = {-1: {}, 1: {}}
        wanted = rng.randint(1, 6)
        if rng.random() < move_probability:
            mix["mid_moves"] += 1
            if rng.random() < 0.5:
                boundary += 1  # the ask at the new boundary must go
                side, gone = asks, boundary
            else:
                boundary -= 1  # the bid just above the new boundary must go
                side, gone = bids, boundary + 1
            if gone in side.levels and len(side.levels) > 1:
                zero = rng.choice(_ZEROS)
                changes[side.sign][gone] = zero
                side.delete(gone)
                mix["delete"] += 1
                mix["near"] += 1
        attempts = 0
        while sum(map(len, changes.values())) < wanted and attempts < 30:
            attempts += 1
            side = bids if rng.random() < 0.5 else asks
            sign = side.sign
            near = rng.random() < 0.6
            roll = rng.random()
            kind = "delete" if roll < 0.25 else "new" if roll < 0.5 else "modify"
            lo, hi = side.near_range(boundary)
            size = len(side.order)
            tick: int | None = None
            if kind in ("delete", "modify"):
                if near and hi > lo:
                    tick = sign * side.order[rng.randrange(lo, hi)]
                elif not near and size > hi:
                    tick = sign * side.order[rng.randrange(hi, size)]
                if kind == "delete" and size <= 2:
                    tick = None
                if kind == "delete" and not near and rng.random() < 0.02:
                    kind = "delete_absent"
                    tick = None
                    deepest = sign * side.order[-1]
                    for _try in range(5):
                        candidate = deepest + sign * rng.randint(1, 50)
                        if candidate not in side.levels:
                            tick = candidate
                            break
            else:  # a new level at an empty price
                for _try in range(5):
                    if near:
                        offset = rng.randrange(NEAR_TICKS)
                    else:
                        deepest = abs(side.order[-1])
                        offset = rng.randrange(NEAR_TICKS, abs(deepest - boundary) + 50)
                    candidate = boundary - offset if sign < 0 else boundary + 1 + offset
                    if candidate not in side.levels:
                        tick = candidate
                        break
            if tick is None or tick in changes[sign]:
                continue
            mix[kind] += 1
            mix["near" if near else "far"] += 1
            price = _price_str(tick)
            if kind in ("delete", "delete_absent"):
                changes[sign][tick] = rng.choice(_ZEROS)
                side.delete(tick)
            else:
                qty = _qty_str(rng)
                changes[sign][tick] = qty
                side.put(tick, price, qty)
        first_id = last_id + 1
        if rng.random() < 0.2:
            last_id = first_id + rng.randint(1, 3)
            mix["aggregated"] += 1
        else:
            last_id = first_id
        engine_time += rng.randint(50, 5_000)
        b = [[_price_str(t), q] for t, q in sorted(changes[-1].items(), reverse=True)]
        a = [[_price_str(t), q] for t, q in sorted(changes[1].items())]
        level_updates += len(a) + len(b)
        data = {
            "e": "depth",
            "E": str(engine_time + rng.randint(100, 900)),
            "s": symbol,
            "a": a,
            "b": b,
            "U": first_id,
            "u": last_id,
            "T": str(engine_time),
        }
        out.append(dumps({"stream": stream, "data": data}))
        touches.append((bids.best(), asks.best()))
        best_bid, best_ask = touches[-1]
        assert best_bid is None or best_ask is None or best_bid[0] < best_ask[0]
    return Workload(
        symbol=symbol,
        seed=seed,
        snapshot=snapshot,
        snapshot_raw=dumps(snapshot),
        frames=out,
        level_updates=level_updates,
        touches=touches,
        final_bids=[bids.levels[-t] for t in bids.order],
        final_asks=[asks.levels[t] for t in asks.order],
        mix=mix,
    )
