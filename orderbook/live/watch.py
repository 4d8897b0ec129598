"""One call for an exact book as it changes: :func:`watch_order_book` (as in ccxt pro).

::

    async for book in watch_order_book("SOL_USDC"):
        print(book.last_update_id, book.best_bid(), book.best_ask())

    async with watch_order_books(["SOL_USDC", "BTC_USDC_PERP"], limit=20) as books:
        async for book in books:          # whichever symbol changed: book.symbol
            ...

Each call runs its own :class:`~orderbook.live.replicator.Replicator` (built
from ``**options``: ``rest_url``, ``ws_url``, ``sync``, ``connection``...), started
at the first iteration and closed when the iteration ends: on ``break`` (as
soon as the iterator is dropped: an asyncio async generator is finalized by
the event loop), on :meth:`BookWatch.aclose`, on leaving ``async with``, or on
an exception.  Use ``async with`` (or :func:`contextlib.aclosing`) to have it
closed at a known point.

What is yielded
---------------
Only exact books: the book of a symbol each time it is synced at a new update
id.  While a symbol resyncs (a gap, a reconnect) nothing is yielded for it;
the next book is the exact one after the resync.  Changes are *conflated*: a
consumer slower than the feed gets the newest book, never a backlog (the
intermediate states are skipped, never a wrong one).

By default (``copy=True``) each yielded book is an independent
:class:`~orderbook.core.book.OrderBook` (:meth:`~orderbook.core.book.OrderBook.copy`):
it never changes after it is yielded, whatever you await while reading it.
That costs O(levels) per yield; ``limit=N`` copies only the best N levels per
side (the copy then says it is complete only down to its last level).  With
``copy=False`` the live replica itself is yielded, at no cost: it is exact
when yielded and stays so until your next ``await``, at which point the
replicator may move it on.  Read it without awaiting, or copy it yourself.

Errors
------
Bad arguments raise :class:`~orderbook.errors.UsageError` at the call; what
:meth:`Replicator.start` raises (:class:`~orderbook.errors.UnknownSymbol`
with close matches, :class:`~orderbook.errors.VenueUnavailable`...) comes out
of the first iteration, and a replicator that fails later (a WebSocket that
never connects within ``Connection.connect_timeout``) raises its
:attr:`~orderbook.live.replicator.Replicator.failure` from the iteration.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from types import TracebackType
from typing import Any

from ..core.book import OrderBook
from ..errors import UsageError
from ..sync.status import Status
from .replicator import Replicator

__all__ = ["BookWatch", "watch_order_book", "watch_order_books"]


class BookWatch:
    """The async iterator :func:`watch_order_book` and :func:`watch_order_books`
    return: it yields :class:`OrderBook` objects (see the module docstring for
    what they are), and is an async context manager that closes it on exit.
    """

    def __init__(self, symbols: Sequence[str] | str, *, copy: bool, limit: int | None,
                 options: dict[str, Any]) -> None:
        if "tap" in options:
            raise UsageError("watch_order_book takes no tap (record with orderbook.record instead)")
        self._replicator = Replicator(symbols, **options)
        self._copy = copy
        self._limit = limit
        self._books = self._run()

    @property
    def replicator(self) -> Replicator:
        """The replicator behind the watch (its :meth:`~Replicator.stats`,
        :meth:`~Replicator.status`...); started at the first iteration."""
        return self._replicator

    def __aiter__(self) -> BookWatch:
        return self

    async def __anext__(self) -> OrderBook:
        """The next exact book (see the module docstring)."""
        return await self._books.__anext__()

    async def aclose(self) -> None:
        """End the watch and close its replicator.  Idempotent."""
        await self._books.aclose()
        await self._replicator.close()  # also when the iteration never started

    async def __aenter__(self) -> BookWatch:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[OrderBook, None]:
        replicator = self._replicator
        updates = replicator.updates(policy="conflate")  # before start: the first sync is seen
        yielded: dict[str, int | None] = {}
        try:
            await replicator.start()
            async for update in updates:
                symbol = update.symbol
                book = replicator.book(symbol)
                if replicator.status(symbol) != Status.SYNCED or book.last_update_id is None:
                    continue  # resyncing: the next exact book comes after the snapshot
                if yielded.get(symbol) == book.last_update_id:
                    continue  # already yielded at this id (the update was conflated into it)
                yielded[symbol] = book.last_update_id
                yield book.copy(self._limit) if self._copy else book
        finally:
            await updates.aclose()
            await replicator.close()


def _options(copy: bool, limit: int | None) -> None:
    if not isinstance(copy, bool):
        raise UsageError(f"copy must be True or False, got {copy!r}")
    if limit is not None:
        if type(limit) is not int or limit < 1:
            raise UsageError(f"limit must be an int >= 1 or None, got {limit!r}")
        if not copy:
            raise UsageError("limit applies to copies: drop limit or keep copy=True")


def watch_order_book(symbol: str, *, limit: int | None = None, copy: bool = True,
                     **options: Any) -> BookWatch:
    """The exact book of ``symbol`` each time it changes, as an async iterator.

    ``limit``: levels per side in each yielded copy (``None``: all); ``copy``:
    yield independent copies (default) or the live replica (see the module
    docstring); ``options``: :class:`Replicator` keyword arguments
    (``rest_url``, ``ws_url``, ``sync=EngineOptions(...)``, ``connection=Connection(...)``...).
    Raises :class:`UsageError` for bad arguments now; the venue's errors come
    out of the iteration.
    """
    if not isinstance(symbol, str) or not symbol:
        raise UsageError(f"symbol must be a non-empty str, got {symbol!r}")
    if symbol == "all":
        raise UsageError("watch_order_book watches one symbol: use watch_order_books for several")
    _options(copy, limit)
    return BookWatch([symbol], copy=copy, limit=limit, options=options)


def watch_order_books(symbols: Sequence[str], *, limit: int | None = None, copy: bool = True,
                      **options: Any) -> BookWatch:
    """The exact book of whichever of ``symbols`` changed, each time one does
    (``book.symbol`` says which), on one connection.  Arguments as for
    :func:`watch_order_book`; ``symbols`` is a non-empty sequence of distinct
    symbols (or ``"all"``: every listed market).
    """
    if isinstance(symbols, str):
        if symbols != "all":
            raise UsageError(f"symbols must be a list of symbols, got the str {symbols!r} "
                             "(use watch_order_book for one)")
        names: Sequence[str] | str = "all"
    else:
        names = list(symbols)
        if not names or not all(isinstance(s, str) and s for s in names):
            raise UsageError(f"symbols must be a non-empty list of symbols, got {symbols!r}")
        if len(set(names)) != len(names):
            raise UsageError("each symbol may be given once")
    _options(copy, limit)
    return BookWatch(names, copy=copy, limit=limit, options=options)
