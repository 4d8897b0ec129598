"""Counters of what the simulated venue did, for tests and demos to assert on."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VenueStats"]


@dataclass
class VenueStats:
    """Plain integer counters, updated in place by the running venue.

    Attributes:
        updates_generated: engine updates the generator produced.
        depth_requests: REST `/api/v1/depth` requests received.
        markets_requests: REST `/api/v1/markets` and `/api/v1/market` requests.
        responses_429: REST responses with status 429.
        responses_5xx: REST responses with a 5xx status.
        connections: WebSocket connections accepted.
        frames_sent: data messages (depth and bookTicker) handed to the socket.
        frames_dropped: depth frames withheld by the drop fault.
        frames_duplicated: depth frames sent a second time by the duplicate fault.
        frames_malformed: depth frames replaced by a malformed message.
        subscribe_errors: error replies sent for bad (un)subscribe requests.
        queue_overflows: clients closed with 1008 because their queue overflowed.
        disconnects: connections closed by `disconnect_all`.
    """

    updates_generated: int = 0
    depth_requests: int = 0
    markets_requests: int = 0
    responses_429: int = 0
    responses_5xx: int = 0
    connections: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    frames_duplicated: int = 0
    frames_malformed: int = 0
    subscribe_errors: int = 0
    queue_overflows: int = 0
    disconnects: int = 0
