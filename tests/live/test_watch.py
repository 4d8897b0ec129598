"""``watch_order_book`` / ``watch_order_books`` against the simulated venue on loopback."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from orderbook import (
    BookWatch,
    Connection,
    OrderBook,
    UnknownSymbol,
    UsageError,
    VenueUnavailable,
    watch_order_book,
    watch_order_books,
)
from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue

SYMBOLS = ["SOL_USDC", "BTC_USDC_PERP"]


def run(coro: Awaitable[None], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def urls(venue: SimulatedVenue) -> dict[str, Any]:
    return {"rest_url": venue.rest_url, "ws_url": venue.ws_url}


def equals_truth(book: OrderBook, flow: OrderFlow) -> bool:
    truth = flow.truth(book.symbol)
    return (book.last_update_id == truth.last_update_id and book.bids() == truth.bids()
            and book.asks() == truth.asks())


async def connected_clients(venue: SimulatedVenue) -> int:
    """WebSocket clients still connected to the venue (closing them to count them)."""
    return await venue.disconnect_all()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_watch_order_book_yields_exact_independent_books_until_the_truth() -> None:
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=11)
        faults = Faults(drop_rate=0.02, aggregate=True)  # gaps: resyncs happen under the watch
        async with SimulatedVenue(flow, faults=faults, rate=400.0, seed=5) as venue:
            kept: list[tuple[OrderBook, list[Any], list[Any], int | None]] = []
            ids: list[int] = []
            async with watch_order_book("SOL_USDC", **urls(venue)) as books:
                assert isinstance(books, BookWatch)
                async for book in books:
                    assert book.last_update_id is not None  # never an unsynced book
                    book.check_integrity()
                    ids.append(book.last_update_id)
                    if len(kept) < 20:
                        kept.append((book, book.bids(), book.asks(), book.last_update_id))
                    await asyncio.sleep(0.001)  # a reader that awaits while holding books
                    if len(ids) == 150:  # the faults stop: a frame lost last shows as a gap
                        venue.faults.drop_rate, venue.faults.aggregate = 0.0, False
                    if len(ids) == 250:
                        await venue.pause()  # the truth stops moving
                    if len(ids) >= 250 and equals_truth(book, flow):
                        break
                gaps = books.replicator.stats().symbols["SOL_USDC"].gaps
            assert gaps > 0 and venue.stats.frames_dropped > 0
            assert ids == sorted(set(ids))  # each change once, never back in time
            for book, bids, asks, last_id in kept:  # copies never moved after they were yielded
                assert (book.bids(), book.asks(), book.last_update_id) == (bids, asks, last_id)
            await eventually(lambda: _none_connected(venue))  # async with closed the replicator
    run(main())


def test_watch_order_books_yields_every_symbol_and_limit_copies_the_top() -> None:
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=3)
        async with SimulatedVenue(flow, rate=300.0) as venue:
            seen: dict[str, OrderBook] = {}
            paused = False
            async with watch_order_books(SYMBOLS, limit=5, **urls(venue)) as books:
                async for book in books:
                    assert len(book.bids()) <= 5 and len(book.asks()) <= 5
                    seen[book.symbol] = book
                    if len(seen) == 2 and not paused:
                        await venue.pause()
                        paused = True
                    if paused and all(
                            b.last_update_id == flow.truth(s).last_update_id for s, b in seen.items()):
                        break
            for symbol, book in seen.items():
                truth = flow.truth(symbol)
                assert book.bids() == truth.bids(5) and book.asks() == truth.asks(5)
                bid_bound, ask_bound = book.complete_to()
                assert bid_bound == truth.bids(5)[-1][0] and ask_bound == truth.asks(5)[-1][0]
    run(main())


def test_copy_false_yields_the_live_replica() -> None:
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=4)
        async with SimulatedVenue(flow, rate=200.0) as venue:
            books = watch_order_book("SOL_USDC", copy=False, **urls(venue))
            objects = set()
            async with books:
                async for book in books:
                    assert book is books.replicator.book("SOL_USDC")
                    objects.add(id(book))
                    if len(objects) and books.replicator.stats().consumers.delivered > 20:
                        break
            assert len(objects) == 1
    run(main())


def test_break_without_async_with_closes_the_replicator() -> None:
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=6)
        async with SimulatedVenue(flow, rate=200.0) as venue:
            async for book in watch_order_book("SOL_USDC", **urls(venue)):
                assert book.best_bid() is not None
                break
            gc.collect()  # the dropped iterator is finalized by the event loop
            await eventually(lambda: _none_connected(venue))

            watch = watch_order_book("SOL_USDC", **urls(venue))
            await anext(watch)
            await watch.aclose()
            await watch.aclose()  # idempotent
            await eventually(lambda: _none_connected(venue))  # the venue sees the close soon after
            with pytest.raises(StopAsyncIteration):
                await anext(watch)
            await watch_order_book("SOL_USDC", **urls(venue)).aclose()  # never iterated
    run(main())


async def _none_connected(venue: SimulatedVenue) -> bool:
    return await connected_clients(venue) == 0


def test_errors_are_raised_clearly() -> None:
    for call, message in (
        (lambda: watch_order_book(""), "non-empty str"),
        (lambda: watch_order_book(["SOL_USDC"]), "non-empty str"),  # type: ignore[arg-type]
        (lambda: watch_order_book("all"), "watch_order_books"),
        (lambda: watch_order_book("SOL_USDC", limit=0), "limit must be"),
        (lambda: watch_order_book("SOL_USDC", limit=5, copy=False), "limit applies to copies"),
        (lambda: watch_order_book("SOL_USDC", sync="depth"), "sync must be a EngineOptions"),
        (lambda: watch_order_book("SOL_USDC", tap=object()), "no tap"),
        (lambda: watch_order_books("SOL_USDC"), "list of symbols"),
        (lambda: watch_order_books([]), "non-empty list"),
        (lambda: watch_order_books(["A", "A"]), "once"),
    ):
        with pytest.raises(UsageError, match=message):
            call()
    with pytest.raises(TypeError):
        watch_order_book("SOL_USDC", no_such_option=1)

    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=1)
        async with SimulatedVenue(flow, rate=50.0) as venue:
            with pytest.raises(UnknownSymbol, match="SOL_USDT"):
                async for _ in watch_order_book("SOL_USDT", **urls(venue)):
                    pass
            # the WebSocket never connects: the failure comes out of the iteration
            dead = {"rest_url": venue.rest_url, "ws_url": "ws://127.0.0.1:9/",
                    "connection": Connection(connect_timeout=0.5)}
            with pytest.raises(VenueUnavailable):
                async for _ in watch_order_book("SOL_USDC", **dead):
                    pass
    run(main())


def test_books_are_exact_decimals() -> None:
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=2)
        async with SimulatedVenue(flow, rate=100.0) as venue:
            async with watch_order_book("SOL_USDC", **urls(venue)) as books:
                book = await anext(books)
            bid = book.best_bid()
            assert bid is not None and all(isinstance(x, Decimal) for x in bid)
    run(main())
