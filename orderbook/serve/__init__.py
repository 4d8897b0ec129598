"""The local mirror: the replicas served in the venue's own REST and WebSocket protocol.

* :mod:`~orderbook.serve.publisher` -- the published books and their frames (pure);
* :mod:`~orderbook.serve.forward` -- what may be forwarded upstream, and how much (pure);
* :mod:`~orderbook.serve.upstream` -- the forwarding itself (httpx, the configured URL only);
* :mod:`~orderbook.serve.websocket` -- one bounded WebSocket client;
* :mod:`~orderbook.serve.connections` -- every TCP connection counted, watched, abortable;
* :mod:`~orderbook.serve.server` -- :class:`MirrorServer`, the aiohttp application
  (its small HTTP pieces in :mod:`~orderbook.serve.http`, /health in
  :mod:`~orderbook.serve.health`, the live page in :mod:`~orderbook.serve.ui`);
* :mod:`~orderbook.serve.metrics` -- the Prometheus exposition (a prometheus_client collector);
* :mod:`~orderbook.serve.run` -- :func:`run_mirror`, a mirror until told to stop
  (what ``orderbook serve`` runs; the command itself is in :mod:`orderbook.cli`).
"""

from .limits import MirrorLimits
from .run import run_mirror
from .server import DEFAULT_PORT, MirrorServer
from .stats import MirrorStats

__all__ = ["DEFAULT_PORT", "MirrorLimits", "MirrorServer", "MirrorStats", "run_mirror"]
