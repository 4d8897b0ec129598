"""Where a frame's time goes on the hot path: staged timing plus cProfile.

    .venv/bin/python benchmarks/profile_hot_path.py [--frames 100000] [--repeat 5]

1. Stages, each one step longer than the previous, timed like the harness
   (same frames, fed 10,000 at a time round robin, CPU time, median): the
   difference between consecutive stages is the cost of the step added.
2. Primitives on the workload's own values, per frame: what the per-level
   operations cost in isolation (``Decimal(qty)``, price-cache lookups,
   the quantity check, ladder inserts/deletes on a ``SortedList`` versus a
   plain list kept best-last with ``bisect``).
3. cProfile of the end-to-end loop, by own time (deterministic profiling
   inflates every Python-level call, so read it for the ranking only).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from bisect import bisect_left, insort
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from sortedcontainers import SortedList  # noqa: E402

from orderbook import OrderBook, SymbolSync, parse_frame, parse_snapshot  # noqa: E402
from orderbook.bench.harness import ReferenceStyle, Workload, make_workload, measure_throughput  # noqa: E402


class _Stage:
    exact = False

    def __init__(self, name: str, make: Callable[[Workload], Callable[[list[bytes]], None]]) -> None:
        self.name = name
        self._make = make

    def setup(self, workload: Workload) -> None:
        self.run = self._make(workload)  # type: ignore[method-assign]

    def run(self, frames: list[bytes]) -> None:  # replaced by setup
        raise NotImplementedError

    def sides(self) -> None:
        return None


def _loop(workload: Workload) -> Callable[[list[bytes]], None]:
    def run(frames: list[bytes]) -> None:
        for raw in frames:
            pass

    return run


def _loads(workload: Workload) -> Callable[[list[bytes]], None]:
    loads = orjson.loads

    def run(frames: list[bytes]) -> None:
        for raw in frames:
            loads(raw)

    return run


def _parse(workload: Workload) -> Callable[[list[bytes]], None]:
    def run(frames: list[bytes]) -> None:
        for raw in frames:
            parse_frame(raw, validate_levels=False)

    return run


def _apply(workload: Workload) -> Callable[[list[bytes]], None]:
    book = OrderBook(workload.symbol)
    book.apply_snapshot(workload.snapshot_raw, limit=1000)
    apply = book.apply_delta

    def run(frames: list[bytes]) -> None:
        for raw in frames:
            apply(parse_frame(raw, validate_levels=False))  # type: ignore[arg-type]

    return run


def _synced(workload: Workload) -> SymbolSync:
    sync = SymbolSync(workload.symbol)
    sync.start()
    sync.receive_snapshot(parse_snapshot(workload.snapshot_raw, workload.symbol), limit=1000)
    return sync


def _sync(workload: Workload) -> Callable[[list[bytes]], None]:
    receive = _synced(workload).receive_frame

    def run(frames: list[bytes]) -> None:
        for raw in frames:
            receive(parse_frame(raw, validate_levels=False))  # type: ignore[arg-type]

    return run


def _end_to_end(workload: Workload) -> Callable[[list[bytes]], None]:
    sync = _synced(workload)
    receive, book = sync.receive_frame, sync.book
    best_bid, best_ask = book.best_bid, book.best_ask

    def run(frames: list[bytes]) -> None:
        for raw in frames:
            receive(parse_frame(raw, validate_levels=False))  # type: ignore[arg-type]
            best_bid()
            best_ask()

    return run


def _ceiling(lazy: bool) -> Callable[[Workload], Callable[[list[bytes]], None]]:
    """The least an exact replica can do per frame in pure Python: no
    validation, no event object, no state machine, one function; plain list
    ladders kept best-last.  ``lazy`` stores quantity strings and builds the
    exact ``(Decimal, Decimal)`` touch only when a best level changed; else
    every level is stored as a ``(Decimal, Decimal)`` tuple.  The touch is
    read after every frame.  A bound to measure against, not a design."""

    def make(workload: Workload) -> Callable[[list[bytes]], None]:
        snap = orjson.loads(workload.snapshot_raw)
        D = Decimal
        sides = []
        for name, sign in (("bids", 1), ("asks", -1)):
            cache: dict[str, int] = {}
            exact: dict[int, Decimal] = {}
            levels: dict[int, Any] = {}
            for p, q in snap[name]:
                k = cache[p] = sign * int(p.replace(".", ""))
                exact[k] = D(p)
                levels[k] = q if lazy else (exact[k], D(q))
            sides.append((cache, exact, levels, sorted(levels), [None, None]))
        bid_side, ask_side = sides
        last = [int(snap["lastUpdateId"])]
        loads = orjson.loads

        def run(frames: list[bytes]) -> None:
            previous = last[0]
            for raw in frames:
                data = loads(raw)["data"]
                if data["U"] != previous + 1:
                    raise ValueError("gap")
                for changes, (cache, exact, levels, keys, best), sign in (
                    (data["b"], bid_side, 1),
                    (data["a"], ask_side, -1),
                ):
                    if not changes:
                        continue
                    for p, q in changes:
                        k = cache.get(p)
                        if k is None:
                            k = cache[p] = sign * int(p.replace(".", ""))
                            exact[k] = D(p)
                        if q.strip("0."):
                            if k not in levels:
                                insort(keys, k)
                            levels[k] = q if lazy else (exact[k], D(q))
                        elif levels.pop(k, None) is not None:
                            del keys[bisect_left(keys, k)]
                    top = levels[keys[-1]]
                    if lazy and top is not best[0]:  # the touch changed: build it exactly
                        best[0], best[1] = top, (exact[keys[-1]], D(top))
                previous = data["u"]
                bid_side[4][1] if lazy else bid_side[2][bid_side[3][-1]]
                ask_side[4][1] if lazy else ask_side[2][ask_side[3][-1]]
            last[0] = previous

        return run

    return make


BOUNDS = [
    ("bound: minimal exact loop, Decimal levels", _ceiling(False)),
    ("bound: minimal exact loop, quantity strings", _ceiling(True)),
]

STAGES = [
    ("loop over the frames", _loop),
    ("+ orjson.loads", _loads),
    ("+ envelope -> DepthEvent (parse_frame)", _parse),
    ("+ OrderBook.apply_delta", _apply),
    ("+ SymbolSync around it (receive_frame)", _sync),
    ("+ best_bid() and best_ask()", _end_to_end),
]


def stages(workload: Workload, repeat: int) -> list[str]:
    entrants: list[Any] = [_Stage(name, make) for name, make in STAGES + BOUNDS] + [ReferenceStyle()]
    results = measure_throughput(workload, entrants, repeat)
    n = len(workload.frames)
    per_frame = {name: statistics.median(r.seconds) / n * 1e9 for name, r in results.items()}
    total = per_frame[STAGES[-1][0]]
    lines = [
        "| stage | ns/frame, cumulative | step adds ns/frame | share of end to end |",
        "|---|---:|---:|---:|",
    ]
    previous = 0.0
    for name, _ in STAGES:
        step = per_frame[name] - previous
        lines.append(f"| {name} | {per_frame[name]:,.0f} | {step:,.0f} | {step / total:.0%} |")
        previous = per_frame[name]
    ref = per_frame[ReferenceStyle.name]
    lines.append(f"| (reference-style book, same run) | {ref:,.0f} | | {ref / total:.0%} |")
    lines += [
        "",
        "| same run | ns/frame | frames/s vs reference style |",
        "|---|---:|---:|",
        f"| ours end to end | {total:,.0f} | {ref / total:.2f}x |",
    ]
    lines += [f"| {name} | {per_frame[name]:,.0f} | {ref / per_frame[name]:.2f}x |" for name, _ in BOUNDS]
    lines.append(f"| reference style | {ref:,.0f} | 1.00x |")
    return lines


def _time_per_frame(n_frames: int, body: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        body()
        times.append(time.process_time() - start)
    return statistics.median(times) / n_frames * 1e9


def primitives(workload: Workload, repeat: int) -> list[str]:
    n = len(workload.frames)
    sides = [orjson.loads(raw)["data"] for raw in workload.frames]
    levels = [(side, p, q) for data in sides for side in ("b", "a") for p, q in data[side]]
    prices_cache = {p: i for i, (_, p, _) in enumerate(levels)}
    quantities = [q for _, _, q in levels]
    prices = [p for _, p, _ in levels]
    snapshot = workload.snapshot

    def key(price: str) -> int:
        return int(price.replace(".", ""))

    ops = [(side == "b", key(p), not q.strip("0.")) for side, p, q in levels]

    def decimal_qty() -> None:
        D = Decimal
        for q in quantities:
            D(q)

    def cache_lookup() -> None:
        get = prices_cache.get
        for p in prices:
            get(p)

    def qty_check() -> None:
        for q in quantities:
            if not (q.isascii() and q.replace(".", "", 1).isdecimal()):
                raise ValueError(q)
            q.strip("0.")

    def empty() -> None:
        for q in quantities:
            pass

    def ladder_sorted() -> None:
        books = {
            True: (SortedList(-key(p) for p, _ in snapshot["bids"]), {-key(p): 1 for p, _ in snapshot["bids"]}),
            False: (SortedList(key(p) for p, _ in snapshot["asks"]), {key(p): 1 for p, _ in snapshot["asks"]}),
        }
        for is_bid, k, delete in ops:
            keys, lv = books[is_bid]
            k = -k if is_bid else k
            if delete:
                if lv.pop(k, None) is not None:
                    keys.remove(k)
            else:
                if k not in lv:
                    keys.add(k)
                lv[k] = 1

    def ladder_list() -> None:  # best last: bids +key ascending, asks -key ascending
        books = {
            True: (sorted(key(p) for p, _ in snapshot["bids"]), {key(p): 1 for p, _ in snapshot["bids"]}),
            False: (sorted(-key(p) for p, _ in snapshot["asks"]), {-key(p): 1 for p, _ in snapshot["asks"]}),
        }
        for is_bid, k, delete in ops:
            keys, lv = books[is_bid]
            k = k if is_bid else -k
            if delete:
                if lv.pop(k, None) is not None:
                    del keys[bisect_left(keys, k)]
            else:
                if k not in lv:
                    insort(keys, k)
                lv[k] = 1

    def ladder_dict_only() -> None:
        books: dict[bool, dict[int, int]] = {
            True: {-key(p): 1 for p, _ in snapshot["bids"]},
            False: {key(p): 1 for p, _ in snapshot["asks"]},
        }
        for is_bid, k, delete in ops:
            lv = books[is_bid]
            if delete:
                lv.pop(k, None)
            else:
                lv[k] = 1

    base = _time_per_frame(n, empty, repeat)
    dict_only = _time_per_frame(n, ladder_dict_only, repeat)
    rows = [
        ("`Decimal(qty)` for every level", _time_per_frame(n, decimal_qty, repeat) - base),
        ("price-cache `dict.get` for every level", _time_per_frame(n, cache_lookup, repeat) - base),
        ("quantity check (`isascii`, `replace`, `isdecimal`, zero test)", _time_per_frame(n, qty_check, repeat) - base),
        ("sorted keys: `SortedList.add/remove` (beyond the dict ops)", _time_per_frame(n, ladder_sorted, repeat) - dict_only),
        ("sorted keys: plain list best-last, `insort`/`del` (beyond the dict ops)", _time_per_frame(n, ladder_list, repeat) - dict_only),
    ]
    lines = [
        f"{len(levels) / n:.2f} levels per frame; a Python `for` over them costs {base:,.0f} ns/frame by itself (subtracted).",
        "",
        "| primitive, per frame | ns/frame |",
        "|---|---:|",
    ]
    lines += [f"| {what} | {value:,.0f} |" for what, value in rows]
    return lines


def profile(workload: Workload, top: int = 14) -> list[str]:
    run = _end_to_end(workload)
    profiler = cProfile.Profile()
    profiler.enable()
    run(workload.frames)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    lines = ["| function | calls | own time share |", "|---|---:|---:|"]
    for (filename, line, name), (_, calls, own, _, _) in rows:
        where = f"{Path(filename).name}:{line}" if line else "C"
        lines.append(f"| `{name}` ({where}) | {calls:,} | {own / total:.1%} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20_240_611)
    args = parser.parse_args()
    workload = make_workload(args.frames, args.seed)
    gc.collect()
    gc.freeze()
    print(f"### Staged timing ({args.frames:,} frames, CPU-time median of {args.repeat})\n")
    print("\n".join(stages(workload, args.repeat)))
    print("\n### Primitives on the same frames\n")
    print("\n".join(primitives(workload, args.repeat)))
    print(f"\n### cProfile of the end-to-end loop ({args.frames:,} frames), by own time\n")
    print("\n".join(profile(workload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
