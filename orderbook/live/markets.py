"""``MarketsWatch``: the venue's reference data, fetched at start and refreshed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..errors import OrderBookError
from ..protocol.markets import MarketCatalog
from .transport import RestClient

__all__ = ["MarketsWatch"]

log = logging.getLogger("orderbook.replicator")


class MarketsWatch:
    """The latest :class:`~orderbook.protocol.markets.MarketCatalog` of the
    venue.  :meth:`refresh` fetches it once (raising what the REST client
    raises); :meth:`follow` refreshes it forever, keeping the previous list
    when a refresh fails, and logs what changed for the ``watched`` symbols
    (delisted, order book state)."""

    def __init__(self, rest: RestClient, watched: Callable[[], list[str]]) -> None:
        self.catalog = MarketCatalog(())
        self.refreshes = 0
        """Successful fetches so far."""
        self._rest = rest
        self._watched = watched

    async def refresh(self) -> None:
        """Fetch the market list now.  One REST request."""
        markets, skipped = await self._rest.fetch_markets()
        old, self.catalog = self.catalog, MarketCatalog(markets)
        self.refreshes += 1
        if skipped:
            log.warning("markets: %d unusable entries skipped", skipped)
        for name in self._watched():
            before, after = old.get(name), self.catalog.get(name)
            if after is None:
                log.warning("%s: no longer listed by the venue", name)
            elif before is not None and before.order_book_state != after.order_book_state:
                log.warning("%s: order book state %s -> %s", name, before.order_book_state,
                            after.order_book_state)

    async def follow(self, every: float) -> None:
        """Refresh every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except OrderBookError as exc:
                log.warning("markets refresh failed (keeping the previous list): %s", exc)
