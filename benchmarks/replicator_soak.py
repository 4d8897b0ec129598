"""Soak benchmark of the Replicator: many symbols, one connection, a busy venue.

The simulated venue runs in a child process (so the figures for the replicator
are its own CPU, not the venue's) on loopback; this process runs the
Replicator with its default REST budget while the venue enforces a
``rest_limit_per_minute`` equal to that budget and drops a small fraction of
frames (every drop is a gap that costs a snapshot).  At the end the faults are
switched off, the venue pauses and every replica is compared with the venue's
truth.

Reports: frames/s received, CPU of this process (and the venue's), snapshot
requests vs the budget, 429s, latency from a frame leaving the venue (its
``E`` timestamp, µs wall clock) to a consumer being notified, and the time
from a detected gap to that symbol being synced again.

    .venv/bin/python benchmarks/replicator_soak.py                 # 100 symbols, >= 5000 frames/s, 60 s
    .venv/bin/python benchmarks/replicator_soak.py --duration 10   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from dataclasses import asdict
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any

from orderbook import Budget, Replicator

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------- venue process
def venue_process(conn: Connection, symbols: list[str], rate: float, limit: int) -> None:
    """Child: run the venue, answer commands from the pipe."""
    asyncio.run(_venue_main(conn, symbols, rate, limit))


async def _venue_main(conn: Connection, symbols: list[str], rate: float, limit: int) -> None:
    from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue

    flow = OrderFlow(symbols, seed=2024)
    faults = Faults(rest_limit_per_minute=limit)
    loop = asyncio.get_running_loop()
    async with SimulatedVenue(flow, faults=faults, rate=rate, queue_size=200_000) as venue:
        conn.send((venue.rest_url, venue.ws_url))
        while True:
            command, argument = await loop.run_in_executor(None, conn.recv)
            if command == "faults":
                for key, value in argument.items():
                    setattr(venue.faults, key, value)
                conn.send(None)
            elif command == "stats":
                conn.send(asdict(venue.stats))
            elif command == "pause":
                await venue.pause()
                await asyncio.sleep(0.5)  # let queued frames drain
                truth = {
                    s: (flow.truth(s).last_update_id, flow.truth(s).bids(), flow.truth(s).asks())
                    for s in symbols
                }
                conn.send(truth)
            elif command == "stop":
                conn.send(None)
                return


class Venue:
    """Parent-side handle of the venue process."""

    def __init__(self, symbols: list[str], rate: float, limit: int) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=venue_process, args=(child, symbols, rate, limit),
                                   daemon=True)
        self.process.start()
        self.rest_url, self.ws_url = self._conn.recv()

    async def call(self, command: str, argument: Any = None) -> Any:
        self._conn.send((command, argument))
        return await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)

    def cpu_seconds(self) -> float:
        """User + system CPU of the venue process so far."""
        assert self.process.pid is not None
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# ------------------------------------------------------------------- helpers
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))] if ordered else float("nan")


def symbol_names(count: int) -> list[str]:
    """``count`` distinct symbols, every fourth a perpetual."""
    return [f"S{i:03d}_USDC_PERP" if i % 4 == 3 else f"S{i:03d}_USDC" for i in range(count)]


# ---------------------------------------------------------------------- main
async def soak(args: argparse.Namespace) -> dict[str, Any]:
    symbols = symbol_names(args.symbols)
    venue = Venue(symbols, args.rate, args.budget)
    rep = Replicator(symbols, rest_url=venue.rest_url, ws_url=venue.ws_url,
                     budget=Budget(requests_per_minute=args.budget))
    send_to_notify_us: list[int] = []
    delivered = 0

    async def consume() -> None:
        nonlocal delivered
        async for update in rep.updates():
            delivered += 1
            if update.kind == "delta" and update.event_time is not None:
                send_to_notify_us.append(time.time_ns() // 1000 - update.event_time)

    loop_lag_ms: list[float] = []

    async def watch_loop() -> None:
        """How late a 10 ms timer fires: the event loop's own stalls."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            loop_lag_ms.append((time.monotonic() - before - 0.01) * 1000)

    consumer = asyncio.create_task(consume())
    watcher = asyncio.create_task(watch_loop())
    started = time.monotonic()
    async with rep:
        await rep.wait_synced(timeout=60)
        synced_after = time.monotonic() - started
        send_to_notify_us.clear()
        loop_lag_ms.clear()
        await venue.call("faults", {"drop_rate": args.drop_rate})
        frames0 = sum(s.frames for s in rep.stats().symbols.values())
        venue0 = await venue.call("stats")
        cpu0, venue_cpu0, wall0 = time.process_time(), venue.cpu_seconds(), time.monotonic()
        await asyncio.sleep(args.duration)
        cpu1, venue_cpu1, wall1 = time.process_time(), venue.cpu_seconds(), time.monotonic()
        venue1 = await venue.call("stats")
        mid = rep.stats()
        frames1 = sum(s.frames for s in mid.symbols.values())
        await venue.call("faults", {"drop_rate": 0.0})
        await asyncio.sleep(1.0)
        truth = await venue.call("pause")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            rep.status(s) == "synced" and rep.book(s).last_update_id == truth[s][0] for s in symbols
        ):
            await asyncio.sleep(0.05)
        exact = sum(
            rep.book(s).last_update_id == truth[s][0]
            and rep.book(s).bids() == [(Decimal(p), Decimal(q)) for p, q in truth[s][1]]
            and rep.book(s).asks() == [(Decimal(p), Decimal(q)) for p, q in truth[s][2]]
            for s in symbols
        )
        final = rep.stats()
        synced_at_end = sum(rep.status(s) == "synced" for s in symbols)
        venue_end = await venue.call("stats")
    consumer.cancel()
    watcher.cancel()
    await venue.call("stop")
    venue.process.join(5)

    wall = wall1 - wall0
    window_requests = (venue1["depth_requests"] - venue0["depth_requests"]
                       + venue1["markets_requests"] - venue0["markets_requests"])
    total_requests = venue_end["depth_requests"] + venue_end["markets_requests"]
    gap = final.latency.gap_to_synced_s
    return {
        "symbols": len(symbols),
        "venue_rate": args.rate,
        "duration_s": round(wall, 2),
        "initial_sync_s": round(synced_after, 2),
        "frames_per_s": round((frames1 - frames0) / wall),
        "venue_frames_sent_per_s": round((venue1["frames_sent"] - venue0["frames_sent"]) / wall),
        "cpu_replicator_pct": round(100 * (cpu1 - cpu0) / wall, 1),
        "cpu_replicator_us_per_frame": round(1e6 * (cpu1 - cpu0) / max(1, frames1 - frames0), 1),
        "cpu_venue_pct": round(100 * (venue_cpu1 - venue_cpu0) / wall, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "gaps": sum(s.gaps for s in final.symbols.values()),
        "resyncs": sum(s.resyncs for s in final.symbols.values()),
        "stale_snapshots": sum(s.stale_snapshots for s in final.symbols.values()),
        "frames_dropped_by_venue": venue1["frames_dropped"] - venue0["frames_dropped"],
        "budget_per_minute": args.budget,
        "rest_requests_in_window": window_requests,
        "rest_requests_total": total_requests,
        "responses_429": venue_end["responses_429"],
        "consumer_updates": delivered,
        "conflated": final.consumers.conflated,
        "send_to_notify_ms_p50": round(percentile(send_to_notify_us, 0.5) / 1000, 3),
        "send_to_notify_ms_p99": round(percentile(send_to_notify_us, 0.99) / 1000, 3),
        "send_to_notify_ms_mean": round(statistics.fmean(send_to_notify_us) / 1000, 3)
        if send_to_notify_us else None,
        "engine_to_receive_ms_p50_p99": (mid.latency.engine_to_receive_ms.p50,
                                         mid.latency.engine_to_receive_ms.p99),
        "gap_to_synced_ms_p50": None if gap.p50 is None else round(gap.p50 * 1000, 1),
        "gap_to_synced_ms_p99": None if gap.p99 is None else round(gap.p99 * 1000, 1),
        "gap_to_synced_samples": gap.count,
        "synced_at_end": synced_at_end,
        "loop_lag_ms_p50_p99_max": (round(percentile(loop_lag_ms, 0.5), 2),
                                    round(percentile(loop_lag_ms, 0.99), 2),
                                    round(max(loop_lag_ms, default=0.0), 2)),
        "exact_at_end": exact,
        "internal_errors": final.connection.internal_errors,
        "reconnects": final.connection.reconnects,
        "host_load_average_1m": round(os.getloadavg()[0], 2),
        "host_cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--rate", type=float, default=7000.0,
                        help="venue target updates per second, total (it delivers less on a busy host)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--drop-rate", type=float, default=0.0005,
                        help="fraction of frames the venue drops (each one is a gap to heal)")
    parser.add_argument("--budget", type=int, default=1000,
                        help="requests/minute: the replicator's budget and the venue's limit")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    ok = (result["exact_at_end"] == result["symbols"] and result["responses_429"] == 0
          and result["rest_requests_in_window"] <= args.budget)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
