"""A simulated Backpack Exchange: true order flow, REST and WebSocket servers, faults.

The venue is the truth our replica is checked against, so it keeps its own naive
exact model and shares none of the replica's logic: of `orderbook` it imports
only `orderbook.live.outbox`, the bounded per-client send queue (asyncio and
websockets only), and `orderbook.protocol`, the venue's protocol facts (stream
names split by their known prefix, since symbols can contain dots)::

    from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue

    flow = OrderFlow(seed=7)  # DEFAULT_SYMBOLS, dotted ones among them
    async with SimulatedVenue(flow, faults=Faults(), rate=2000.0) as venue:
        ...  # venue.rest_url, venue.ws_url; venue.faults.drop_rate = 0.05
        await venue.pause()
        assert flow.truth("SPCX.US_USDC").last_update_id > 0
"""

from .faults import Faults, SnapshotOrder
from .flow import DEFAULT_SYMBOLS, Change, FlowExhausted, MarketSpec, OrderFlow, TrueBook, Update
from .server import SimulatedVenue
from .stats import VenueStats

__all__ = [
    "DEFAULT_SYMBOLS",
    "Change",
    "Faults",
    "FlowExhausted",
    "MarketSpec",
    "OrderFlow",
    "SimulatedVenue",
    "SnapshotOrder",
    "TrueBook",
    "Update",
    "VenueStats",
]
