"""How a :class:`StreamConnection` ends: a shutdown says 1001 and never waits long.

Real loopback servers: a websockets server that records the close code it
receives, and a raw TCP server that completes the opening handshake and then
ignores everything (an upstream that is going away without saying so).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection, serve

from orderbook.live.connection import StreamConnection

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler:
    def __init__(self) -> None:
        self.subscribed = asyncio.Event()

    def on_connected(self) -> None:
        pass

    def on_subscribed(self, streams: Sequence[str]) -> None:
        self.subscribed.set()

    def on_frames(self, frames: Sequence[str | bytes], received_us: int) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


def test_cancelling_the_stream_closes_the_upstream_with_1001() -> None:
    async def main() -> None:
        codes: list[int | None] = []
        closed = asyncio.Event()

        async def upstream(conn: ServerConnection) -> None:
            await conn.wait_closed()
            codes.append(conn.close_code)
            closed.set()

        async with serve(upstream, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            handler = Handler()
            stream = StreamConnection(f"ws://127.0.0.1:{port}/", ["depth.SOL_USDC"], handler)
            task = asyncio.create_task(stream.run())
            await asyncio.wait_for(handler.subscribed.wait(), 10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.wait_for(closed.wait(), 10)
        assert codes == [1001]
    asyncio.run(main())


def test_cancelling_is_bounded_when_the_upstream_never_answers_the_close() -> None:
    async def main() -> None:
        held: list[asyncio.StreamWriter] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            held.append(writer)  # then read nothing, answer nothing

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        handler = Handler()
        stream = StreamConnection(f"ws://127.0.0.1:{port}/", ["depth.SOL_USDC"], handler,
                                  close_timeout=0.25)
        task = asyncio.create_task(stream.run())
        await asyncio.wait_for(handler.subscribed.wait(), 10)
        started = time.monotonic()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        elapsed = time.monotonic() - started
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        assert elapsed < 1.0, f"cancel took {elapsed:.3f} s"
    asyncio.run(main())
