"""The fault suite: every fault kind of the simulated venue, every book exact at the end.

Protocol per fault: the venue runs with the fault on while the replicator
syncs and heals; then the fault is switched off, the flow runs a little
longer (a frame lost at the very end is undetectable by any client until the
next frame of that symbol arrives), the venue pauses, and every replica must
reach the truth's update id and equal the truth level for level.
A table of what happened is printed at the end of the module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from loopback import mismatches, wait_caught_up

from orderbook import Budget, Replicator
from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue

SYMBOLS = ["SOL_USDC", "BTC_USDC_PERP", "ETH_USDC", "DOGE_USDC_PERP", "SPCX.US_USDC", "TSLA.US_USDC_PERP"]
FAULT_SECONDS = 1.5
RATE = 400.0

CASES: dict[str, dict[str, Any]] = {
    "none": {},
    "drop_rate 5%": {"drop_rate": 0.05},
    "duplicate_rate 5%": {"duplicate_rate": 0.05},
    "aggregate": {"aggregate": True},
    "malformed_rate 3%": {"malformed_rate": 0.03},
    "snapshot_lag 30 (+drops)": {"snapshot_lag": 30, "drop_rate": 0.02},
    "rest_429_burst 6 (+drops)": {"rest_429_burst": 6, "drop_rate": 0.02},
    "rest_limit_per_minute = budget (+drops)": {"rest_limit_per_minute": 120, "drop_rate": 0.02},
    "rest_5xx_rate 30% (+drops)": {"rest_5xx_rate": 0.3, "drop_rate": 0.02},
    "rest_delay 0.3 s (+drops)": {"rest_delay": 0.3, "drop_rate": 0.02},
    "string_times": {"string_times": True},
    "zero_spelling": {"zero_spelling": True},
    "snapshot_order docs (+drops)": {"snapshot_order": "docs", "drop_rate": 0.03},
    "snapshot_order shuffled (+drops)": {"snapshot_order": "shuffled", "drop_rate": 0.03},
    "disconnect 1001": {"disconnect": "1001"},
    "disconnect abrupt": {"disconnect": "abrupt"},
    "everything at once": {
        "drop_rate": 0.02, "duplicate_rate": 0.02, "aggregate": True, "malformed_rate": 0.01,
        "snapshot_lag": 10, "rest_5xx_rate": 0.1, "rest_delay": 0.05, "string_times": True,
        "zero_spelling": True, "snapshot_order": "shuffled", "disconnect": "abrupt",
    },
}

ROWS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not ROWS:
        return
    lines = ["", f"fault suite ({len(SYMBOLS)} symbols, {RATE:.0f} updates/s, "
                 f"{FAULT_SECONDS} s of fault):", HEADER, SEPARATOR, *ROWS]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))


HEADER = ("| fault | frames | gaps | resyncs | bad frames | stale snaps | snapshot reqs "
          "| venue 429s | reconnects | catch-up s | exact |")
SEPARATOR = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"


@pytest.mark.parametrize("name", list(CASES))
def test_fault_kind_ends_exact(name: str) -> None:
    settings = dict(CASES[name])
    disconnect = settings.pop("disconnect", None)

    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=11)
        async with SimulatedVenue(flow, faults=Faults(**settings), rate=RATE, seed=3) as venue:
            await asyncio.sleep(0.2)  # some history, for lagging snapshots
            budget = 120.0 if "rest_limit_per_minute" in settings else 1000.0
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  budget=Budget(requests_per_minute=budget)) as rep:
                await asyncio.sleep(FAULT_SECONDS / 2)
                if disconnect == "1001":
                    await venue.disconnect_all(code=1001)
                elif disconnect == "abrupt":
                    await venue.disconnect_all(abrupt=True)
                await asyncio.sleep(FAULT_SECONDS / 2)
                for key in settings:
                    setattr(venue.faults, key, getattr(Faults(), key))
                await asyncio.sleep(0.3)
                await venue.pause()
                started = time.monotonic()
                await wait_caught_up(rep, flow, timeout=30)
                catch_up = time.monotonic() - started
                bad = mismatches(rep, flow)
                stats = rep.stats()
                total = {key: sum(getattr(s, key) for s in stats.symbols.values())
                         for key in ("frames", "gaps", "resyncs", "bad_frames", "stale_snapshots",
                                     "snapshot_requests")}
                ROWS.append(
                    f"| {name} | {total['frames']} | {total['gaps']} | {total['resyncs']} "
                    f"| {total['bad_frames']} | {total['stale_snapshots']} "
                    f"| {total['snapshot_requests']} | {venue.stats.responses_429} "
                    f"| {stats.connection.reconnects} | {catch_up:.2f} "
                    f"| {len(SYMBOLS) - len(bad)}/{len(SYMBOLS)} |"
                )
                assert bad == []
                assert stats.connection.internal_errors == 0
                if "rest_limit_per_minute" in settings:
                    assert venue.stats.responses_429 == 0  # the budget matches the venue's limit
                if disconnect:
                    assert stats.connection.reconnects == 1
                # Each fault must be seen to act, where it is frequent enough
                # that "never hit" is out of the question (a 1-2 % rate over a
                # few hundred frames, some of them buffered, may hit none).
                if settings.get("drop_rate", 0) >= 0.05:
                    assert total["gaps"] > 0
                if settings.get("malformed_rate", 0) >= 0.03:
                    assert total["bad_frames"] > 0
                if settings.get("rest_429_burst"):  # the next N requests, deterministic
                    assert venue.stats.responses_429 > 0
                if "snapshot_order" in settings:  # every order is a good snapshot
                    assert sum(s.bad_snapshots for s in stats.symbols.values()) == 0


    asyncio.run(asyncio.wait_for(main(), 60))


def test_snapshot_requests_stay_within_the_budget_under_a_429_storm() -> None:
    """Many gaps and a venue answering 429 to a burst of requests: the requests
    the venue sees never exceed the bucket's budget, and the books heal."""
    per_minute, burst = 60.0, 5.0

    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=5)
        async with SimulatedVenue(flow, rate=RATE) as venue:
            started = time.monotonic()
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  budget=Budget(requests_per_minute=per_minute, burst=burst)) as rep:
                await rep.wait_synced(timeout=10)
                venue.faults.drop_rate = 0.05
                venue.faults.rest_429_burst = 8
                await asyncio.sleep(3.0)
                elapsed = time.monotonic() - started
                sent = venue.stats.depth_requests + venue.stats.markets_requests
                allowed = burst + (per_minute - burst) / 61.0 * elapsed
                assert sent <= allowed + 1, (sent, allowed)
                assert venue.stats.responses_429 >= 2  # the storm is being answered
                assert all(s.gaps for s in rep.stats().symbols.values())  # every symbol needs a snapshot
                venue.faults.drop_rate = 0.0
                await asyncio.sleep(0.3)
                await venue.pause()
                await wait_caught_up(rep, flow, timeout=30)
                assert mismatches(rep, flow) == []
                elapsed = time.monotonic() - started
                sent = venue.stats.depth_requests + venue.stats.markets_requests
                assert sent <= burst + (per_minute - burst) / 61.0 * elapsed + 1

    asyncio.run(asyncio.wait_for(main(), 60))
