"""Running a mirror until told to stop: :func:`run_mirror`, what ``orderbook serve`` runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import Any

from ..live.replicator import Replicator
from .limits import MirrorLimits
from .server import DEFAULT_PORT, MirrorServer

__all__ = ["run_mirror"]

log = logging.getLogger("orderbook.serve")

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


async def run_mirror(
    symbols: Sequence[str] | str,
    *,
    stop: asyncio.Event,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    queue_size: int = 1000,
    limits: MirrorLimits | None = None,
    announce: bool = True,
    **replicator_options: Any,
) -> None:
    """Replicate ``symbols`` (or ``"all"``) and serve the mirror until ``stop`` is set.

    What ``orderbook serve`` runs.  ``replicator_options`` go to
    :class:`Replicator` (``rest_url``, ``ws_url``, ``depth_stream``...);
    ``limits`` to the mirror (``queue_size`` overrides its field).  With
    ``announce`` the listening address is printed on stdout once bound (a
    line ``listening on http://HOST:PORT``).  The port is bound before the
    replicator connects upstream: meanwhile ``/health`` answers 503.  Setting ``stop`` during startup
    abandons it.  Once ``stop`` is set the mirror and the replicator close
    together, each bounded (see :meth:`MirrorServer.close`).  Raises what
    :meth:`Replicator.start` and :meth:`MirrorServer.start` raise.
    """
    base = limits if limits is not None else MirrorLimits()
    if queue_size != base.queue_size:
        base = _with_queue_size(base, queue_size)
    replicator = Replicator(symbols, **replicator_options)
    mirror = MirrorServer(replicator, host=host, port=port, limits=base)
    try:
        # bound first: a client connecting while the replicator starts gets a 503, not a refusal
        if not await _unless_stopped(stop, mirror.listen()):
            return
        if host not in _LOOPBACK:
            log.warning("the mirror is bound to %s: reachable from other hosts", host)
        if announce:
            print(f"listening on {mirror.url} (WebSocket {mirror.ws_url})", flush=True)
        if not await _unless_stopped(stop, replicator.start()):
            return
        if not await _unless_stopped(stop, mirror.start()):
            return
        await stop.wait()
        log.info("shutting down")
    finally:
        started = time.monotonic()
        await asyncio.gather(mirror.close(), replicator.close())
        log.info("stopped in %.0f ms", (time.monotonic() - started) * 1000)


def _with_queue_size(limits: MirrorLimits, queue_size: int) -> MirrorLimits:
    return replace(limits, queue_size=queue_size)


async def _unless_stopped(stop: asyncio.Event, step: Awaitable[None]) -> bool:
    """Run ``step`` unless ``stop`` is set first (then cancel it): True when it completed."""
    task = asyncio.ensure_future(step)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False
