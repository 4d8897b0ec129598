"""The Replicator against the simulated venue over loopback sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from loopback import Proxy, drop_nth_frame, mismatches, wait_caught_up

from orderbook.sync.status import Reason, Status
from orderbook.sync.engine import EngineOptions
from orderbook.core.book import OrderBook
from orderbook.errors import UnknownSymbol, UsageError
from orderbook.sync.policy import Backoff, SnapshotRetryPolicy
from orderbook import BookUpdate, Markets, Replicator, compare_books
from orderbook.testing.venue import DEFAULT_SYMBOLS, Faults, OrderFlow, SimulatedVenue, SnapshotOrder
from orderbook.protocol.wire import DepthEvent

SYMBOLS = list(DEFAULT_SYMBOLS)  # dotted symbols among them: SPCX.US_USDC, TSLA.US_USDC_PERP
DOTTED = [s for s in SYMBOLS if "." in s]


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; ``timeout`` only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        await asyncio.sleep(0.01)


def make(rate: float = 300.0, seed: int = 7, **faults: object) -> tuple[OrderFlow, SimulatedVenue]:
    flow = OrderFlow(SYMBOLS, seed=seed)
    return flow, SimulatedVenue(flow, faults=Faults(**faults), rate=rate)  # type: ignore[arg-type]


def test_syncs_every_symbol_exactly_and_reports_status() -> None:
    async def main() -> None:
        flow, venue = make()
        async with venue:
            rep = Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url)
            assert rep.symbols == []
            async with rep:
                assert rep.status("SOL_USDC") in ("waiting", "synced")
                await rep.wait_synced(timeout=10)
                await rep.wait_synced("ETH_USDC", timeout=1)
                assert all(rep.status(s) == "synced" for s in SYMBOLS)
                book = rep.book("SOL_USDC")
                await asyncio.sleep(0.3)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert rep.book("SOL_USDC") is book
                assert mismatches(rep, flow) == []
                stats = rep.stats()
                sol = stats.symbols["SOL_USDC"]
                assert sol.status == "synced" and sol.frames > 0 and sol.gaps == 0
                assert sol.last_update_id == flow.truth("SOL_USDC").last_update_id
                assert stats.connection.connects == 1 and stats.connection.responses_429 == 0
                assert stats.connection.snapshot_requests == len(SYMBOLS)
                assert stats.latency.engine_to_receive_ms.count > 0
                assert rep.market("BTC_USDC_PERP") is not None
                assert rep.market("BTC_USDC_PERP").is_perp  # type: ignore[union-attr]
                assert stats.to_dict()["symbols"]["ETH_USDC"]["status"] == "synced"
    run(main())


@pytest.mark.parametrize("stream", ["depth", "depth.200ms"])
def test_dotted_markets_end_exact_with_no_bad_frame(stream: str) -> None:
    """Tokenized equities (``SPCX.US_USDC``, ``TSLA.US_USDC_PERP``) sync like any
    market: every frame of theirs is attributed, none refused as malformed, and
    the books end equal to the venue's truth.  bookTicker frames are checked too
    (a ticker of the wrong symbol would show as a mismatch)."""
    async def main() -> None:
        flow, venue = make(seed=21)
        async with venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sync=EngineOptions(depth_stream=stream, book_ticker=True)) as rep:
                await rep.wait_synced(timeout=10)
                await asyncio.sleep(0.5)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
                stats = rep.stats()
                for symbol in DOTTED:
                    figures = stats.symbols[symbol]
                    assert figures.frames > 0 and figures.frames_applied > 0
                    assert rep.book(symbol).last_update_id == flow.truth(symbol).last_update_id
                    assert rep.book(symbol).bids() == flow.truth(symbol).bids()
                    assert rep.book(symbol).asks() == flow.truth(symbol).asks()
                assert all(s.bad_frames == 0 and s.ticker_mismatches == 0
                           for s in stats.symbols.values())
                assert stats.connection.unattributed_bad_frames == 0
                assert stats.connection.stream_errors == 0
    run(main())


def test_unknown_symbol_is_refused_with_close_matches() -> None:
    async def main() -> None:
        _, venue = make()
        async with venue:
            with pytest.raises(UnknownSymbol) as info:
                async with Replicator(["SOL_USDC", "SOL_USDT"], rest_url=venue.rest_url,
                                      ws_url=venue.ws_url):
                    pass
            assert info.value.suggestions[0] == "SOL_USDC"
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                with pytest.raises(UnknownSymbol, match="did you mean SOL_USDC"):
                    rep.book("SOL_USDT")
    with pytest.raises(UsageError):
        Replicator(SYMBOLS, sync=EngineOptions(depth_stream="depth.5ms"))
    run(main())


def test_all_markets_mode_and_quiet_market() -> None:
    """With the venue paused no frame ever arrives: the first snapshot alone syncs."""
    async def main() -> None:
        flow, venue = make()
        async with venue:
            await venue.pause()
            async with Replicator("all", rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sync=EngineOptions(stale_after=0.2)) as rep:
                assert rep.symbols == SYMBOLS
                await rep.wait_synced(timeout=5)
                assert mismatches(rep, flow) == []
                await until(lambda: rep.stats().symbols["SOL_USDC"].stale)  # no frame for 0.2 s
                venue.resume()
                await until(lambda: not rep.stats().symbols["SOL_USDC"].stale)  # frames again
                assert rep.stats().symbols["SOL_USDC"].staleness_alerts == 1
            async with Replicator("all", rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  markets=Markets(spot=False)) as rep:
                assert rep.symbols == ["BTC_USDC_PERP", "TSLA.US_USDC_PERP"]
    run(main())


@pytest.mark.parametrize("order", list(SnapshotOrder))
def test_snapshots_in_any_level_order_end_exact(order: SnapshotOrder) -> None:
    """The venue's docs do not fix the order of a snapshot's levels (their own
    example lists bids ascending): whatever the order, every book syncs, heals
    its gaps from more such snapshots and ends exact, none refused as bad."""
    async def main() -> None:
        flow, venue = make(seed=23, snapshot_order=order.value, drop_rate=0.03)
        async with venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                await rep.wait_synced(timeout=10)
                await until(lambda: sum(s.snapshots_applied for s in rep.stats().symbols.values())
                            > len(SYMBOLS))  # gaps healed by more of these snapshots
                venue.faults.drop_rate = 0.0
                await asyncio.sleep(0.3)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
                stats = rep.stats().symbols
                assert all(s.bad_snapshots == 0 and s.bad_frames == 0 for s in stats.values())
                for symbol in SYMBOLS:
                    assert rep.book(symbol).bids() == flow.truth(symbol).bids()  # best first, whatever came
    run(main())


@pytest.mark.parametrize("stream", ["depth.200ms", "depth.1000ms"])
def test_aggregated_streams(stream: str) -> None:
    async def main() -> None:
        flow, venue = make()
        async with venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sync=EngineOptions(depth_stream=stream)) as rep:
                await rep.wait_synced(timeout=10)
                await asyncio.sleep(0.5)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
    run(main())


def test_a_gap_on_one_symbol_resyncs_that_symbol_only() -> None:
    async def main() -> None:
        flow, venue = make()
        async with venue, Proxy(venue.ws_url) as proxy:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=proxy.url) as rep:
                invalidated: list[str] = []
                rep.on_update(lambda u: invalidated.append(u.symbol) if u.kind == "invalidated" else None)
                await rep.wait_synced(timeout=10)
                # Lose the next SOL frame once its book is bridged, so that the loss is
                # a gap (not "the 40th frame", which a slow first snapshot may cover).
                await until(lambda: rep.book("SOL_USDC").bridged)
                proxy.frame_filter = drop_nth_frame("SOL_USDC", 1)
                await until(lambda: rep.stats().symbols["SOL_USDC"].gaps > 0)
                await asyncio.sleep(0.3)
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
                await asyncio.sleep(0.05)
                stats = rep.stats()
                assert stats.symbols["SOL_USDC"].gaps == 1 and stats.symbols["SOL_USDC"].resyncs == 1
                assert stats.symbols["SOL_USDC"].snapshot_requests == 2
                for other in SYMBOLS[1:]:
                    assert stats.symbols[other].resyncs == 0
                    assert stats.symbols[other].snapshot_requests == 1
                assert invalidated == ["SOL_USDC"]
                assert stats.latency.gap_to_synced_s.count == 1
    run(main())


def test_consumers_conflate_or_drop_and_never_block_the_feed() -> None:
    """A consumer mirroring the books from updates ends equal to them (conflation
    loses no level); a stuck drop_oldest consumer only loses its own updates."""
    async def main() -> None:
        flow, venue = make(rate=1000.0)
        async with venue:
            rep = Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url)
            updates, stuck = rep.updates(), rep.updates(policy="drop_oldest", maxsize=5)
            async with rep:
                mirror: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
                kinds: set[str] = set()

                def apply(update: BookUpdate) -> None:
                    kinds.add(update.kind)
                    if update.kind == "snapshot":
                        book = rep.book(update.symbol)
                        mirror[update.symbol] = {"bid": dict(book.bids()), "ask": dict(book.asks())}
                    elif update.kind == "delta" and update.symbol in mirror:
                        for side, levels in (("bid", update.bids), ("ask", update.asks)):
                            for price, qty in levels:
                                if qty:
                                    mirror[update.symbol][side][price] = qty
                                else:
                                    mirror[update.symbol][side].pop(price, None)

                async def slow_mirror() -> None:
                    async with updates:
                        async for update in updates:
                            apply(update)
                            await asyncio.sleep(0.01)  # far slower than the feed

                first = await anext(stuck)  # then never read again
                mirror_task = asyncio.create_task(slow_mirror())
                await rep.wait_synced(timeout=10)
                await asyncio.sleep(1.0)
                await venue.pause()
                await wait_caught_up(rep, flow)
                await asyncio.sleep(0.3)
                assert mismatches(rep, flow) == []
                for s in SYMBOLS:
                    book = rep.book(s)
                    assert mirror[s] == {"bid": dict(book.bids()), "ask": dict(book.asks())}
                stats = rep.stats().consumers
                assert stats.conflated > 0 and stats.dropped > 0 and stats.consumers == 2
                assert first.symbol in SYMBOLS and "delta" in kinds
                mirror_task.cancel()
                await stuck.aclose()
    run(main())


def test_book_ticker_cross_check_repairs_a_silently_corrupted_book() -> None:
    async def main() -> None:
        flow, venue = make(rate=200.0)
        async with venue:
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sync=EngineOptions(book_ticker=True)) as rep:
                await rep.wait_synced(timeout=10)
                forge_phantom_bid(rep.book("SOL_USDC"))
                await until(lambda: rep.stats().symbols["SOL_USDC"].ticker_mismatches)
                assert rep.stats().symbols["SOL_USDC"].ticker_mismatches >= 1
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
    run(main())


def test_audit_counts_and_repairs_a_divergence() -> None:
    async def main() -> None:
        flow, venue = make(rate=200.0)
        async with venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sync=EngineOptions(audit_every=0.1)) as rep:
                await rep.wait_synced(timeout=10)
                await until(lambda: rep.stats().audits.passed >= 3)
                assert rep.stats().audits.passed >= 3 and rep.stats().audits.divergences == 0
                forge_phantom_bid(rep.book("ETH_USDC"), deep=True)
                await until(lambda: rep.stats().audits.divergences)
                assert rep.stats().symbols["ETH_USDC"].audit_divergences == 1
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
    run(main())


def forge_phantom_bid(book: OrderBook, *, deep: bool = False) -> None:
    """Corrupt a live book the way only a cross-check can see: a forged frame
    taking the next update id adds a bid the venue does not have -- at the
    touch (just under the best ask), or ``deep`` below every bid where the
    flow will not overwrite it.  The real frame with that id is then dropped
    as already applied."""
    last = book.last_update_id
    assert last is not None
    bids, ask = book.bids(), book.best_ask()
    assert bids and ask is not None
    exponent = min(bids[0][0].as_tuple().exponent, ask[0].as_tuple().exponent, -1)
    tick = Decimal(1).scaleb(int(exponent))
    if deep:
        phantom = bids[-1][0] - 100 * tick
    else:
        phantom = ask[0] - tick if ask[0] - tick > bids[0][0] else bids[0][0]
    book.apply_delta(DepthEvent(book.symbol, last + 1, last + 1, 0, 0, [[str(phantom), "777"]], []))


def test_stale_snapshots_back_off_then_surface_as_an_error_and_recover() -> None:
    """A venue whose snapshots lag far behind its stream: retried with backoff
    after more frames, bounded, then error(...) -- never a tight loop."""
    # error_interval leaves 1 s between the check below (0.5 s after the error is
    # seen) and the next retry: a loaded machine may see the error late.
    policy = SnapshotRetryPolicy(Backoff(0.05, 0.2, 2.0, 0.0), max_streak=3, error_interval=1.5)
    async def main() -> None:
        flow, venue = make(rate=60.0, snapshot_lag=1000)
        async with venue:
            await asyncio.sleep(0.5)  # history for the venue's lagging snapshots
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  sync=EngineOptions(snapshot_retry=policy)) as rep:
                await until(lambda: rep.status("SOL_USDC") is Status.ERROR)
                figures = rep.stats().symbols["SOL_USDC"]
                assert figures.cause is Reason.GAVE_UP, figures
                assert figures.reason is not None
                assert figures.reason.startswith("3 stale or failed snapshots in a row"), figures
                requests = rep.stats().symbols["SOL_USDC"].snapshot_requests
                assert requests == 3
                await asyncio.sleep(0.5)
                assert rep.stats().symbols["SOL_USDC"].snapshot_requests == 3  # waiting, not looping
                venue.faults.snapshot_lag = 0
                await rep.wait_synced("SOL_USDC", timeout=30)
                assert rep.status("SOL_USDC") == "synced"
                await venue.pause()
                await wait_caught_up(rep, flow)
                assert mismatches(rep, flow) == []
    run(main())


def test_wait_synced_timeout_names_the_missing_symbols() -> None:
    async def main() -> None:
        _, venue = make(rest_delay=1.0)
        async with venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                with pytest.raises(TimeoutError, match="SOL_USDC=waiting"):
                    await rep.wait_synced(timeout=0.2)
    run(main())


def test_compare_books_ignores_levels_beyond_a_truncated_window() -> None:
    snap = {"bids": [["10", "1"], ["9", "1"]], "asks": [["11", "1"], ["12", "1"]], "lastUpdateId": 1}
    live, ref = OrderBook("X"), OrderBook("X")
    live.apply_snapshot(snap, limit=2)
    ref.apply_snapshot(snap, limit=1000)
    assert compare_books(live, ref) is None
    ref.apply_delta(DepthEvent("X", 2, 2, 0, 0, [["8", "5"]], []))
    live.apply_delta(DepthEvent("X", 2, 2, 0, 0, [["7", "5"]], []))
    assert compare_books(live, ref) is None  # both beyond the live window (bid 9)
    live.apply_delta(DepthEvent("X", 3, 3, 0, 0, [["9.5", "5"]], []))
    ref.apply_delta(DepthEvent("X", 3, 3, 0, 0, [["9.5", "6"]], []))
    assert compare_books(live, ref) == "bid level 1: replica (Decimal('9.5'), Decimal('5')) != venue (Decimal('9.5'), Decimal('6'))"


def test_a_refused_subscription_is_an_error_status() -> None:
    """The venue's error reply naming one of our streams (delivered here through
    the transport callback, as the connection would) marks that symbol only."""
    async def main() -> None:
        _, venue = make()
        async with venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                await rep.wait_synced(timeout=10)
                reply = ('{"error": {"code": "INVALID_SYMBOL", "message": "Unknown symbol"},'
                         ' "stream": "depth.ETH_USDC"}')
                rep.on_frame(reply, 0)
                assert rep.status("ETH_USDC") is Status.ERROR
                figures = rep.stats().symbols["ETH_USDC"]
                assert figures.cause is Reason.SUBSCRIPTION_REFUSED
                assert figures.reason is not None and "INVALID_SYMBOL" in figures.reason
                assert rep.status("SOL_USDC") == "synced"
                assert rep.stats().connection.stream_errors == 1
                await venue.disconnect_all()  # a new connection subscribes again
                await rep.wait_synced(timeout=10)
                assert rep.status("ETH_USDC") == "synced"
    run(main())
