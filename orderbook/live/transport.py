"""The network layer's names in one place (a stable import path).

The layer itself is split by responsibility:

* :mod:`orderbook.live.websocket` -- the WebSocket transport seam
  (:class:`WebSocketTransport`, :class:`WebSocketSession`,
  :func:`resolve_transport`), with the ``websockets`` and ``aiohttp``
  implementations in :mod:`~orderbook.live.ws_websockets` and
  :mod:`~orderbook.live.ws_aiohttp`;
* :mod:`orderbook.live.connection` -- :class:`StreamConnection`: reconnects,
  backoff, keep-alive, subscriptions, on any transport;
* :mod:`orderbook.live.rest` -- :class:`RestClient` (httpx) behind the shared
  request budget;
* :mod:`orderbook.live.urls` -- the URL checks.

Every timeout and sleep of the package lives in these modules or in the
replicator's loop; decisions (how long to back off, whether to retry, when a
token is free) come from the pure functions of :mod:`orderbook.sync.policy`.
"""

from __future__ import annotations

from .connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_MESSAGE,
    DEFAULT_WS_URL,
    StreamConnection,
    StreamHandler,
)
from .rest import DEFAULT_REST_URL, ResponseHook, RestClient, RestStats
from .urls import check_rest_url, check_ws_url
from .websocket import (
    DEFAULT_TRANSPORT,
    TRANSPORT_ENV,
    TRANSPORTS,
    TransportChoice,
    WebSocketSession,
    WebSocketTransport,
    resolve_transport,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_REST_URL",
    "DEFAULT_TRANSPORT",
    "DEFAULT_WS_URL",
    "TRANSPORTS",
    "TRANSPORT_ENV",
    "ResponseHook",
    "RestClient",
    "RestStats",
    "StreamConnection",
    "StreamHandler",
    "TransportChoice",
    "WebSocketSession",
    "WebSocketTransport",
    "check_rest_url",
    "check_ws_url",
    "resolve_transport",
]
