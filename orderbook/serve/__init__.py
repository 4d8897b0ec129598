"""The local mirror: the replicas served in the venue's own REST and WebSocket protocol.

* :mod:`~orderbook.serve.publisher` -- the published books and their frames (pure);
* :mod:`~orderbook.serve.forward` -- what may be forwarded upstream, and how much (pure);
* :mod:`~orderbook.serve.upstream` -- the forwarding itself (httpx, the configured URL only);
* :mod:`~orderbook.serve.websocket` -- one bounded WebSocket client;
* :mod:`~orderbook.serve.connections` -- every TCP connection counted, watched, abortable;
* :mod:`~orderbook.serve.server` -- :class:`MirrorServer`, the aiohttp application;
* :mod:`~orderbook.serve.cli` -- ``orderbook serve``.
"""

from .cli import add_serve_command, run_mirror
from .limits import MirrorLimits
from .server import DEFAULT_PORT, MirrorServer
from .stats import MirrorStats

__all__ = ["DEFAULT_PORT", "MirrorLimits", "MirrorServer", "MirrorStats", "add_serve_command",
           "run_mirror"]
