"""The WebSocket transport seam, for each transport, over real loopback sockets.

Servers: the simulated venue; ``websockets`` servers of our own that send
what a test needs (bursts, a close code, an oversized or fragmented message,
pings); raw TCP servers that complete the opening handshake and then
misbehave (never answer a ping, send invalid UTF-8).  Every test runs once
per transport (the ``ws_transport`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from orderbook.errors import ConnectFailed, UsageError, WebSocketClosed
from orderbook.live.config import Connection
from orderbook.live.connection import StreamConnection
from orderbook.live.replicator import Replicator
from orderbook.live.websocket import (
    TRANSPORT_ENV,
    WebSocketSession,
    WebSocketTransport,
    describe_close,
    resolve_transport,
)
from orderbook.sync.policy import Backoff
from orderbook.testing.venue import OrderFlow, SimulatedVenue

SYMBOLS = ["SOL_USDC", "BTC_USDC_PERP", "SPCX.US_USDC"]
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FAST = Backoff(0.01, 0.05, 2.0, 0.0)


def run(coro: Awaitable[None], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


async def open_session(transport: str, url: str, *, max_message: int = 2**20,
                       max_queue: int = 4096, open_timeout: float = 10.0) -> WebSocketSession:
    return await resolve_transport(transport).connect(
        url, open_timeout=open_timeout, close_timeout=0.5, max_message=max_message,
        max_queue=max_queue)


@asynccontextmanager
async def server(handler: Callable[[ServerConnection], Awaitable[None]],
                 **options: object) -> AsyncIterator[str]:
    """A websockets server on a free loopback port; yields its URL."""
    async with serve(handler, "127.0.0.1", 0, **options) as srv:  # type: ignore[arg-type]
        yield f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"


@asynccontextmanager
async def raw_server(after_handshake: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                               Awaitable[None]]) -> AsyncIterator[str]:
    """A TCP server that completes the opening handshake by hand, then runs
    ``after_handshake`` (to misbehave as no library server would)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await after_handshake(reader, writer)

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"
    finally:
        for writer in writers:
            writer.close()
        srv.close()
        await srv.wait_closed()


async def read_until(session: WebSocketSession, count: int) -> list[list[str | bytes]]:
    batches: list[list[str | bytes]] = []
    while sum(map(len, batches)) < count:
        batches.append(await session.read_batch())
    return batches


# ------------------------------------------------------------------ batches
def test_batches_hold_every_message_in_order_and_the_venue_stream_is_contiguous(
        ws_transport: str) -> None:
    async def main() -> None:
        async with SimulatedVenue(OrderFlow(SYMBOLS, seed=5), rate=3000.0) as venue:
            session = await open_session(ws_transport, venue.ws_url)
            streams = [f"depth.{s}" for s in SYMBOLS]
            await session.send(orjson.dumps({"method": "SUBSCRIBE", "params": streams}).decode())
            first = await session.read_batch()
            await asyncio.sleep(0.3)  # messages pile up unread: the next batch holds several
            batches = [first] + await read_until(session, 300)
            assert all(batches) and max(map(len, batches)) > 1
            last: dict[str, int] = {}
            for raw in (m for batch in batches for m in batch):
                assert isinstance(raw, str)
                data = orjson.loads(raw)["data"]
                if data["s"] in last:
                    assert data["U"] == last[data["s"]] + 1  # nothing lost, nothing reordered
                last[data["s"]] = data["u"]
            assert set(last) == set(SYMBOLS)
            await session.close()
            with pytest.raises(WebSocketClosed):
                await session.read_batch()
    run(main())


def test_read_buffers_are_bounded_and_nothing_is_lost(ws_transport: str) -> None:
    """A server writing 4 MB as fast as it can to a client that does not read
    for a while: what the client holds stays bounded (reading from the
    socket pauses), and every message then arrives, in order."""
    count, size = 20_000, 200

    async def burst(conn: ServerConnection) -> None:
        for i in range(count):
            await conn.send(f"{i:08d}".ljust(size, "x"))
        await conn.wait_closed()

    async def main() -> None:
        async with server(burst, max_queue=None) as url:
            session = await open_session(ws_transport, url, max_queue=64)
            await asyncio.sleep(1.0)  # the whole burst is written meanwhile, if buffers allow
            first = await session.read_batch()
            assert len(first) * size < 1_000_000, len(first)  # far from the 4 MB sent
            batches = [first] + await read_until(session, count - len(first))
            messages = [m for batch in batches for m in batch]
            assert [int(m[:8]) for m in messages] == list(range(count))
            await session.close()
    run(main())


def test_text_binary_and_fragmented_messages(ws_transport: str) -> None:
    async def mixed(conn: ServerConnection) -> None:
        await conn.send("plain")
        await conn.send(b"\x00\x01binary")
        await conn.send(["frag", "mented ", "text"])  # one message in three frames
        await conn.send([b"frag", b"mented"])
        await conn.wait_closed()

    async def main() -> None:
        async with server(mixed) as url:
            session = await open_session(ws_transport, url)
            messages = [m for batch in await read_until(session, 4) for m in batch]
            assert messages == ["plain", b"\x00\x01binary", "fragmented text", b"fragmented"]
            await session.close()
    run(main())


# --------------------------------------------------------------- close codes
@pytest.mark.parametrize("code", [1000, 1001, 4000])
def test_a_close_by_the_server_comes_after_every_message_with_its_code_and_reason(
        ws_transport: str, code: int) -> None:
    async def closing(conn: ServerConnection) -> None:
        for i in range(50):
            await conn.send(f"m{i}")
        await conn.close(code, "bye now")

    async def main() -> None:
        async with server(closing) as url:
            session = await open_session(ws_transport, url)
            messages: list[str | bytes] = []
            with pytest.raises(WebSocketClosed) as info:
                while True:
                    messages += await session.read_batch()
            assert messages == [f"m{i}" for i in range(50)]
            closed = info.value
            assert (closed.code, closed.reason) == (code, "bye now")
            assert closed.url == url and url in str(closed)
            assert closed.detail.startswith(f"received {code} (") and "bye now" in closed.detail
            with pytest.raises(WebSocketClosed):  # and it stays closed
                await session.read_batch()
            with pytest.raises(WebSocketClosed):
                await session.send("late")
    run(main())


@pytest.mark.parametrize("code", [1000, 1001])
def test_our_close_sends_the_code_and_is_idempotent(ws_transport: str, code: int) -> None:
    async def main() -> None:
        received: list[int | None] = []
        done = asyncio.Event()

        async def record(conn: ServerConnection) -> None:
            await conn.wait_closed()
            received.append(conn.close_code)
            done.set()

        async with server(record) as url:
            session = await open_session(ws_transport, url)
            await session.close(code, "client shutting down")
            await session.close()
            await asyncio.wait_for(done.wait(), 10)
            with pytest.raises(WebSocketClosed) as info:
                await session.read_batch()
            assert info.value.sent_code == code
        assert received == [code]
    run(main())


def test_an_abrupt_drop_is_1006_without_close_frames(ws_transport: str) -> None:
    async def drop(conn: ServerConnection) -> None:
        await conn.send("one")
        await asyncio.sleep(0.1)
        conn.transport.abort()

    async def main() -> None:
        async with server(drop) as url:
            session = await open_session(ws_transport, url)
            messages: list[str | bytes] = []
            with pytest.raises(WebSocketClosed) as info:
                while True:
                    messages += await session.read_batch()
            assert messages == ["one"]
            assert info.value.code == 1006 and "no close frame received" in info.value.detail
    run(main())


# ------------------------------------------------------------------ limits
def test_an_oversized_message_closes_with_1009_after_the_messages_before_it(
        ws_transport: str) -> None:
    async def big(conn: ServerConnection) -> None:
        await conn.send("small")
        await conn.send("x" * 20_000)
        await conn.send("never delivered")
        await conn.wait_closed()

    async def main() -> None:
        async with server(big) as url:
            session = await open_session(ws_transport, url, max_message=10_000)
            messages: list[str | bytes] = []
            with pytest.raises(WebSocketClosed) as info:
                while True:
                    messages += await session.read_batch()
            assert messages == ["small"]
            assert info.value.sent_code == 1009 and "1009 (message too big)" in info.value.detail
    run(main())


def test_invalid_utf8_in_a_text_message_closes_with_1007(ws_transport: str) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x81\x02ok" + b"\x81\x03\xff\xfe\xfd")  # "ok", then not UTF-8
        await reader.read()  # until the client goes

    async def main() -> None:
        async with raw_server(garbage) as url:
            session = await open_session(ws_transport, url)
            messages: list[str | bytes] = []
            with pytest.raises(WebSocketClosed) as info:
                while True:
                    messages += await session.read_batch()
            assert messages == ["ok"] and info.value.sent_code == 1007
    run(main())


# --------------------------------------------------------------- keep-alive
class Handler:
    """A StreamHandler that records what happened."""

    def __init__(self) -> None:
        self.frames: list[str | bytes] = []
        self.batches = 0
        self.reasons: list[str] = []
        self.connected = 0

    def on_connected(self) -> None:
        self.connected += 1

    def on_subscribed(self, streams: Sequence[str]) -> None:
        pass

    def on_frames(self, frames: Sequence[str | bytes], received_us: int) -> None:
        assert frames
        self.batches += 1
        self.frames += frames

    def on_disconnected(self, reason: str) -> None:
        self.reasons.append(reason)


async def until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        await asyncio.sleep(0.01)


def test_a_server_that_never_answers_our_pings_is_closed_with_1011_and_retried(
        ws_transport: str) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads our pings, answers nothing

    async def main() -> None:
        async with raw_server(mute) as url:
            handler = Handler()
            conn = StreamConnection(url, ["depth.X"], handler, ping_interval=0.1,
                                    ping_timeout=0.2, close_timeout=0.1, backoff=FAST)
            task = asyncio.create_task(conn.run())
            await until(lambda: handler.connected >= 2)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            first = handler.reasons[0]
            assert "sent 1011 (internal error) keepalive ping timeout" in first, first
            assert conn.failures >= 1 and "keepalive" in str(conn.last_error)
    run(main())


def test_a_server_that_answers_our_pings_keeps_the_connection(ws_transport: str) -> None:
    async def quiet(conn: ServerConnection) -> None:
        async for _ in conn:
            await conn.send("subscribed")

    async def main() -> None:
        async with server(quiet, ping_interval=None) as url:
            handler = Handler()
            conn = StreamConnection(url, ["depth.X"], handler, ping_interval=0.05,
                                    ping_timeout=0.5, backoff=FAST)
            task = asyncio.create_task(conn.run())
            await until(lambda: handler.frames)
            await asyncio.sleep(1.0)  # twenty pings, each answered
            assert handler.connected == 1 and handler.reasons == [] and conn.connected
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert handler.reasons and "1001" in handler.reasons[0]
    run(main())


def test_pings_resolve_on_their_pong(ws_transport: str) -> None:
    async def main() -> None:
        async with SimulatedVenue(OrderFlow(SYMBOLS, seed=1), rate=100.0) as venue:
            session = await open_session(ws_transport, venue.ws_url)
            reader = asyncio.create_task(read_until(session, 10**9))  # pongs arrive by reading
            for _ in range(3):
                pong = await session.ping()
                await asyncio.wait_for(pong, 5)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await session.close()
    run(main())


# ------------------------------------------------------------ connect errors
def test_a_refused_connection_names_the_url_and_the_cause(ws_transport: str) -> None:
    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
            url = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
            with pytest.raises(ConnectFailed) as info:
                await open_session(ws_transport, url)
        assert info.value.url == url and url in str(info.value)
        assert info.value.detail.startswith("ConnectionRefusedError")
    run(main())


def test_a_handshake_that_never_comes_times_out_within_the_open_timeout(ws_transport: str) -> None:
    async def main() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)

        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"
        started = time.monotonic()
        with pytest.raises(ConnectFailed, match="TimeoutError") as info:
            await open_session(ws_transport, url, open_timeout=0.3)
        assert time.monotonic() - started < 5.0 and url in str(info.value)
        for writer in held:
            writer.close()
        srv.close()
        await srv.wait_closed()
    run(main())


def test_a_refused_handshake_names_the_status(ws_transport: str) -> None:
    async def main() -> None:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        srv = await asyncio.start_server(refuse, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"
        with pytest.raises(ConnectFailed, match="403") as info:
            await open_session(ws_transport, url)
        assert url in str(info.value)
        srv.close()
        await srv.wait_closed()
    run(main())


def test_a_url_no_websocket_can_have_is_a_usage_error(ws_transport: str) -> None:
    async def main() -> None:
        for url in ("http://127.0.0.1:9/", "ws://", "nonsense"):
            with pytest.raises(UsageError, match="invalid WebSocket URL"):
                await open_session(ws_transport, url)
    run(main())


# ------------------------------------------------------------- the choice
def test_transport_names_instances_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_transport("websockets").name == "websockets"
    assert resolve_transport("aiohttp").name == "aiohttp"
    instance = resolve_transport("aiohttp")
    assert resolve_transport(instance) is instance
    monkeypatch.setenv(TRANSPORT_ENV, "aiohttp")
    assert resolve_transport(None).name == "aiohttp"
    monkeypatch.delenv(TRANSPORT_ENV)
    assert resolve_transport(None).name == "websockets"
    with pytest.raises(UsageError, match="'picows'"):
        resolve_transport("picows")
    with pytest.raises(UsageError, match="got 42"):
        resolve_transport(42)  # type: ignore[arg-type]
    monkeypatch.setenv(TRANSPORT_ENV, "nope")
    with pytest.raises(UsageError, match=r"'nope' \(from \$ORDERBOOK_TRANSPORT\)"):
        resolve_transport(None)
    with pytest.raises(UsageError, match="'nope'"):
        Replicator(SYMBOLS)
    with pytest.raises(UsageError, match="'carrier pigeon'"):
        Connection(transport="carrier pigeon")
    with pytest.raises(UsageError, match="'nope'"):
        StreamConnection("ws://127.0.0.1:9/", [], Handler())


def test_close_descriptions() -> None:
    assert describe_close(None, None) == "no close frame received or sent"
    assert describe_close((1001, "bye"), (1000, ""), True) == \
        "received 1001 (going away) bye; then sent 1000 (OK)"
    assert describe_close((1000, ""), (1001, "x"), False) == "sent 1001 (going away) x; then received 1000 (OK)"
    assert describe_close(None, (1009, "")) == "sent 1009 (message too big); no close frame received"
    assert describe_close((4001, "mine"), None) == "received 4001 (private use) mine; no close frame sent"


class Counting:
    """A transport of our own: the real one, counting its connections."""

    def __init__(self, inner: WebSocketTransport) -> None:
        self.inner = inner
        self.name = f"counting {inner.name}"
        self.connects = 0

    async def connect(self, url: str, *, open_timeout: float, close_timeout: float,
                      max_message: int, max_queue: int) -> WebSocketSession:
        self.connects += 1
        return await self.inner.connect(url, open_timeout=open_timeout,
                                        close_timeout=close_timeout, max_message=max_message,
                                        max_queue=max_queue)


def test_a_replicator_syncs_through_the_transport_it_is_given(ws_transport: str) -> None:
    async def main() -> None:
        transport = Counting(resolve_transport(ws_transport))
        async with SimulatedVenue(OrderFlow(SYMBOLS, seed=2), rate=500.0) as venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url,
                                  connection=Connection(transport=transport)) as rep:
                await rep.wait_synced(timeout=20)
                await venue.disconnect_all(code=1001)
                await until(lambda: rep.stats().connection.connects == 2)
                await rep.wait_synced(timeout=20)
        assert transport.connects == 2
    run(main())


@pytest.mark.parametrize("flag", ["websockets", "aiohttp"])
def test_the_transport_option_of_the_commands(flag: str, ws_transport: str) -> None:
    """``--transport`` wins over ``$ORDERBOOK_TRANSPORT`` (set to the other one here)."""
    other = "aiohttp" if flag == "websockets" else "websockets"
    script = Path(sys.executable).with_name("orderbook")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "orderbook.cli"]
    done = subprocess.run([*command, "--log-level", "DEBUG", "demo", "--duration", "1.5",
                           "--transport", flag], capture_output=True, text=True, timeout=60,
                          env={**os.environ, TRANSPORT_ENV: other})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"connected with {flag}" in done.stderr
    bad = subprocess.run([*command, "run", "SOL_USDC", "--transport", "smoke signals"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--transport" in bad.stderr and "smoke signals" in bad.stderr


def test_every_networked_test_runs_on_each_transport(request: pytest.FixtureRequest,
                                                      ws_transport: str) -> None:
    """The parametrization of ``tests/conftest.py`` is in force for every test
    collected outside the sans-I/O folders (this one included), and the code
    under test sees the transport through the environment."""
    from paths import SANS_IO_TESTS, TRANSPORTS

    assert os.environ[TRANSPORT_ENV] == ws_transport
    assert resolve_transport(None).name == ws_transport
    tests = Path(__file__).resolve().parents[1]
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], set[str]] = {}
    for item in request.session.items:
        folder = item.path.relative_to(tests).parts[0]
        if folder in SANS_IO_TESTS:
            continue
        params = getattr(item, "callspec", None)
        assert params is not None and "ws_transport" in params.params, item.nodeid
        others = tuple(sorted((k, repr(v)) for k, v in params.params.items() if k != "ws_transport"))
        seen.setdefault((item.nodeid.split("[")[0], others), set()).add(params.params["ws_transport"])
    assert ws_transport in TRANSPORTS and seen
    if not request.config.getoption("keyword") and not request.config.getoption("markexpr"):
        incomplete = [test for (test, _), values in seen.items() if values != set(TRANSPORTS)]
        assert not incomplete, incomplete[:5]  # unless -k / -m picked some of them
