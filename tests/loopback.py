"""Helpers for the networked tests: a fault-injecting WebSocket proxy and truth checks.

Everything here runs real sockets on 127.0.0.1; nothing replaces code of the package.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from orderbook.live.replicator import Replicator
from orderbook.testing.venue import OrderFlow

FrameFilter = Callable[[str], bool]
"""Given a venue message, True to forward it to the client."""


class Proxy:
    """A WebSocket proxy between the replicator and the venue.

    ``frame_filter`` decides per message whether it is forwarded; while
    ``refuse`` is True new connections are refused (closed at once), and
    :meth:`drop_all` closes the current ones abruptly.
    """

    def __init__(self, upstream: str, frame_filter: FrameFilter | None = None) -> None:
        self.upstream = upstream
        self.frame_filter = frame_filter
        self.refuse = False
        self.connections = 0
        self._server: Server | None = None
        self._live: set[ServerConnection] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    def drop_all(self) -> None:
        for conn in list(self._live):
            conn.transport.abort()

    async def _handle(self, client: ServerConnection) -> None:
        if self.refuse:
            await client.close(1013, "try again later")
            return
        self.connections += 1
        self._live.add(client)
        try:
            async with connect(self.upstream, max_queue=None, compression=None) as venue:
                async def up() -> None:
                    async for message in client:
                        await venue.send(message)

                async def down() -> None:
                    async for message in venue:
                        assert isinstance(message, str)
                        if self.frame_filter is None or self.frame_filter(message):
                            await client.send(message)

                tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except (ConnectionClosed, OSError):
            pass
        finally:
            self._live.discard(client)


def drop_nth_frame(symbol: str, n: int) -> FrameFilter:
    """A filter losing exactly the ``n``-th depth frame of ``symbol`` (1-based)."""
    seen = 0
    prefix = f'"stream":"depth.{symbol}"'

    def keep(message: str) -> bool:
        nonlocal seen
        if prefix in message:
            seen += 1
            return seen != n
        return True

    return keep


def caught_up(rep: Replicator, flow: OrderFlow) -> bool:
    """True when every book is synced at its truth's update id."""
    return all(
        rep.status(s) == "synced" and rep.book(s).last_update_id == flow.truth(s).last_update_id
        for s in rep.symbols
    )


async def wait_caught_up(rep: Replicator, flow: OrderFlow, timeout: float = 15.0) -> float:
    """Wait until :func:`caught_up`; return the seconds it took.  Raises AssertionError
    naming each symbol's status and ids on timeout."""
    started = time.monotonic()
    while not caught_up(rep, flow):
        if time.monotonic() - started > timeout:
            detail = {s: (rep.status(s), rep.book(s).last_update_id, flow.truth(s).last_update_id)
                      for s in rep.symbols}
            raise AssertionError(f"not caught up after {timeout} s: {detail}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def mismatches(rep: Replicator, flow: OrderFlow) -> list[str]:
    """Symbols whose replica differs from the venue's truth (levels or update id)."""
    bad = []
    for s in rep.symbols:
        book, truth = rep.book(s), flow.truth(s)
        if (book.last_update_id != truth.last_update_id or book.bids() != truth.bids()
                or book.asks() != truth.asks()):
            bad.append(s)
        else:
            book.check_integrity()
    return bad

