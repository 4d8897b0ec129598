"""A simulated Backpack Exchange: true order flow, REST and WebSocket servers, faults.

The venue is the truth our replica is checked against, so it keeps its own naive
exact model and shares none of the replica's logic: of `orderbook` it imports
only `orderbook.outbox`, the bounded per-client send queue (asyncio and
websockets only)::

    from orderbook.venue import Faults, OrderFlow, SimulatedVenue

    flow = OrderFlow(symbols=["SOL_USDC", "BTC_USDC_PERP"], seed=7)
    async with SimulatedVenue(flow, faults=Faults(), rate=2000.0) as venue:
        ...  # venue.rest_url, venue.ws_url; venue.faults.drop_rate = 0.05
        await venue.pause()
        assert flow.truth("SOL_USDC").last_update_id > 0
"""

from .faults import Faults
from .flow import Change, FlowExhausted, MarketSpec, OrderFlow, TrueBook, Update
from .server import SimulatedVenue
from .stats import VenueStats

__all__ = [
    "Change",
    "Faults",
    "FlowExhausted",
    "MarketSpec",
    "OrderFlow",
    "SimulatedVenue",
    "TrueBook",
    "Update",
    "VenueStats",
]
