"""The mirror as a hostile peer's target, over real loopback sockets.

A simulated venue feeds a Replicator; the mirror forwards to a *recording*
upstream of its own (a real aiohttp server that logs every request it gets),
and a second recording server plays the host an attacker would like the
mirror to reach.  Every client here speaks raw bytes, websockets or httpx.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from orderbook.protocol.subscribe import MAX_STREAMS
from orderbook.live.replicator import Replicator
from orderbook.serve import MirrorLimits, MirrorServer
from orderbook.testing.venue import OrderFlow, SimulatedVenue
from paths import REPO

SYMBOLS = ["SOL_USDC", "SPCX.US_USDC"]


def run(coro: Any, timeout: float = 90) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Recorder:
    """A real HTTP server that records each request: (method, path_qs, headers)."""

    hang: float = 30.0
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    markets_status: int = 200
    runner: web.AppRunner | None = None
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.raw_path, dict(request.headers)))
        path = request.path
        if path == "/api/v1/markets":
            return web.json_response([{"symbol": "FROM_RECORDER"}], status=self.markets_status)
        if path == "/api/v1/status":
            return web.Response(status=520, text="origin error")
        if path == "/api/v1/time":
            await asyncio.sleep(self.hang)
        if path == "/api/v1/ping":
            return web.Response(status=302, headers={"Location": "http://127.0.0.1:1/"})
        return web.json_response({"path": path, "query": request.raw_path.partition("?")[2]})

    async def __aenter__(self) -> Recorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def stack(recorder: Recorder, **limits: Any) -> AsyncIterator[tuple[SimulatedVenue, MirrorServer]]:
    flow = OrderFlow(SYMBOLS, seed=5)
    async with SimulatedVenue(flow, rate=200.0) as venue:
        async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as upstream:
            await upstream.wait_synced(timeout=20)
            async with MirrorServer(upstream, port=0, upstream_rest_url=recorder.url,
                                    limits=MirrorLimits(**limits)) as mirror:
                yield venue, mirror


async def wait_for(predicate: Any, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def raw_http(port: int, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send raw bytes; return the status and body of the first response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return status, body
    finally:
        writer.close()


def test_no_request_reaches_another_host_or_a_path_outside_the_allowlist() -> None:
    async def main() -> None:
        async with Recorder(markets_status=500) as upstream, Recorder() as elsewhere, \
                stack(upstream) as (_, mirror):
            other = f"127.0.0.1:{elsewhere.port}"
            attacks = [
                f"GET http://{other}/api/v1/markets HTTP/1.1\r\nHost: {other}\r\n\r\n",
                f"GET http://user:secret@{other}/api/v1/tickers HTTP/1.1\r\nHost: x\r\n\r\n",
                f"CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n",
                "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /api/v1/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /api/v1/..%2f..%2fetc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /api/v1/%00 HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /api/v1/order HTTP/1.1\r\nHost: x\r\n\r\n",
                "DELETE /api/v1/order HTTP/1.1\r\nHost: x\r\n\r\n",
                "POST /api/v1/tickers HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                "DELETE /api/v1/depth?symbol=SOL_USDC HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /api/v1/depth?symbol=SOL_USDC&limit=%C2%B2 HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /api/v1/tickers?a%00=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            statuses = []
            for attack in attacks:
                status, body = await raw_http(mirror.port, attack.encode())
                statuses.append(status)
                assert 400 <= status < 500, (attack, status, body)
                assert b'"code"' in body, (attack, body)
            assert statuses[7:11] == [404, 404, 405, 405]  # unknown path first, then method
            assert elsewhere.seen == []
            assert upstream.seen == [("GET", "/api/v1/markets", upstream.seen[0][2])]  # startup only
            # the cache stayed empty: a later markets request is forwarded to the upstream
            async with httpx.AsyncClient() as http:
                markets = await http.get(mirror.url + "/api/v1/markets",
                                         headers={"Authorization": "Bearer secret", "X-Evil": "1"})
                assert markets.status_code == 500
                assert markets.json() == [{"symbol": "FROM_RECORDER"}]
                ticker = await http.get(mirror.url + "/api/v1/tickers/",
                                        params={"symbol": "SPCX.US_USDC", "x": "a b"},
                                        headers={"Cookie": "c=1"})
                assert ticker.status_code == 200
                assert ticker.json() == {"path": "/api/v1/tickers",
                                         "query": "symbol=SPCX.US_USDC&x=a%20b"}
            assert all(method == "GET" and path.startswith("/api/v1/")
                       for method, path, _ in upstream.seen)
            for _, _, headers in upstream.seen:
                assert not {"Authorization", "X-Evil", "Cookie"} & set(headers)
                assert headers["Host"] == f"127.0.0.1:{upstream.port}"
    run(main())


def test_forwarding_statuses_methods_and_budgets() -> None:
    async def main() -> None:
        async with Recorder() as upstream, stack(upstream, forward_timeout=0.5,
                                                 forward_per_client_per_minute=12) as (_, mirror):
            async with httpx.AsyncClient() as http:
                api = mirror.url + "/api/v1"
                odd = await http.get(api + "/status")
                assert (odd.status_code, odd.json()["code"]) == (502, "SERVER_ERROR")
                redirect = await http.get(api + "/ping")
                assert redirect.status_code == 502
                started = time.monotonic()
                slow = await http.get(api + "/time", timeout=30)
                assert (slow.status_code, slow.json()["code"]) == (504, "TIMEOUT")
                assert time.monotonic() - started < 5  # our 0.5 s timer, not any other
                head = await http.head(api + "/tickers")
                assert head.status_code == 200 and head.content == b""
                assert upstream.seen[-1][0] == "HEAD"
                statuses = [(await http.get(api + "/trades", params={"symbol": "SOL_USDC"})).status_code
                            for _ in range(12)]
                assert 429 in statuses and statuses[0] == 200
                limited = await http.get(api + "/trades")
                assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
                # the local endpoints answer whatever the forwarding budget
                depth = await http.get(api + "/depth", params={"symbol": "SPCX.US_USDC", "limit": "5"})
                assert depth.status_code == 200 and len(depth.json()["bids"]) <= 5
                assert (await http.head(mirror.url + "/health")).status_code in (200, 503)
                assert (await http.get(mirror.url + "/")).status_code == 426
            assert mirror.stats.internal_errors == 0
    run(main())


def test_reading_clients_are_never_cut_for_what_they_ask() -> None:
    """1,001 bad streams, a burst of SUBSCRIBE/UNSUBSCRIBE and a flood of bad requests:
    a client that reads normally stays connected and is never a slow consumer."""
    async def main() -> None:
        async with Recorder() as upstream, stack(upstream, queue_size=50) as (_, mirror):
            async with connect(mirror.ws_url, max_size=None) as ws:
                replies: list[dict[str, Any]] = []

                async def read() -> None:
                    async for message in ws:
                        replies.append(orjson.loads(message))

                reader = asyncio.create_task(read())
                names = [f"depth.NOPE{i}" for i in range(1001)]
                await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": names}).decode())
                for _ in range(200):  # 400 requests: twice the read burst, 40x the queue
                    await ws.send('{"method":"SUBSCRIBE","params":["bookTicker.SPCX.US_USDC"]}')
                    await ws.send('{"method":"UNSUBSCRIBE","params":["bookTicker.SPCX.US_USDC"]}')
                for _ in range(300):
                    await ws.send("not json")
                await ws.send('{"method":"SUBSCRIBE","params":["depth.SPCX.US_USDC"]}')
                deadline = time.monotonic() + 30
                while not any(r.get("stream") == "depth.SPCX.US_USDC" and "data" in r for r in replies):
                    assert time.monotonic() < deadline, "no depth frame after the burst"
                    assert not reader.done(), "the connection was closed"
                    await asyncio.sleep(0.05)
                reader.cancel()
            errors = [r for r in replies if "error" in r]
            assert errors[0]["error"]["code"] == "TOO_MANY_STREAMS"
            assert str(MAX_STREAMS) in errors[0]["error"]["message"]
            assert len(errors) <= 300 + 1
            assert mirror.stats.subscribe_errors == 1 + 300
            assert mirror.stats.slow_consumers == 0 and mirror.stats.control_floods == 0
            assert mirror.stats.error_replies_dropped > 0
    run(main())


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _ws_handshake(port: int) -> socket.socket:
    """A raw WebSocket client socket (blocking mode off) with a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _ping(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x89, 0x80 | len(payload)) + mask + masked


@pytest.mark.parametrize("flood", ["fast", "within-rate"])
def test_a_ping_flood_that_never_reads_is_cut_with_memory_bounded(flood: str) -> None:
    async def main() -> None:
        limits: dict[str, Any] = {"buffer_limit": 64 * 1024, "so_sndbuf": 4096}
        if flood == "within-rate":  # never beyond the control rate: the send buffer cuts it
            limits.update(control_rate=1e6, control_burst=10**6)
        async with Recorder() as upstream, stack(upstream, **limits) as (_, mirror):
            baseline = _rss_mb()
            sock = await _ws_handshake(mirror.port)
            loop = asyncio.get_running_loop()
            frame = _ping(b"x" * 125) * 64
            sent = 0
            deadline = time.monotonic() + 30
            try:
                while mirror.stats.control_floods + mirror.stats.slow_consumers == 0:
                    assert time.monotonic() < deadline, "the flood was never cut"
                    await asyncio.wait_for(loop.sock_sendall(sock, frame), 5)
                    sent += 64
            except (ConnectionError, TimeoutError):
                pass  # cut while sending, or the mirror stopped reading: both bound it
            growth = _rss_mb() - baseline
            sock.close()
            if flood == "fast":
                assert mirror.stats.control_floods == 1
            else:
                assert mirror.stats.slow_consumers == 1
            assert growth < 50, f"RSS grew {growth:.1f} MB during a flood of {sent} pings"
    run(main())


def test_cut_connections_leave_nothing_behind() -> None:
    """Clients that flood pings, are cut and come back at once: every cut
    connection's objects are freed at once (no timer of a closed connection
    keeps them), so memory cannot grow with the number of cuts."""
    async def main() -> None:
        async with Recorder() as upstream, stack(upstream) as (_, mirror):
            loop = asyncio.get_running_loop()
            frame = _ping(b"x" * 125) * 64

            async def flood_once() -> None:
                sock = await _ws_handshake(mirror.port)
                try:
                    for _ in range(20):
                        await asyncio.wait_for(loop.sock_sendall(sock, frame), 5)
                except (ConnectionError, TimeoutError):
                    pass
                finally:
                    sock.close()

            for _ in range(30):
                await asyncio.gather(*(flood_once() for _ in range(4)))
            assert mirror.stats.control_floods >= 100
            await wait_for(lambda: not mirror._clients, what="every flooder gone")
            await asyncio.sleep(0.3)
            gc.collect()
            alive = [obj for obj in gc.get_objects() if isinstance(obj, web.WebSocketResponse)]
            assert alive == [], f"{len(alive)} closed WebSocket responses still alive"
    run(main())


def test_a_client_that_answers_no_ping_is_dropped() -> None:
    async def main() -> None:
        async with Recorder() as upstream, stack(upstream, ping_interval=0.2) as (_, mirror):
            sock = await _ws_handshake(mirror.port)  # never reads, never answers
            try:
                # counted when the timeout fires, forgotten once its handler has finished
                await wait_for(lambda: mirror.stats.keepalive_timeouts == 1 and not mirror._clients,
                               what="keep-alive drop")
            finally:
                sock.close()
            async with websockets.connect(mirror.ws_url) as ws:  # a live client answers pings
                await asyncio.sleep(1.0)
                await ws.send('{"method":"SUBSCRIBE","params":["depth.SOL_USDC"]}')
                assert mirror.stats.keepalive_timeouts == 1 and len(mirror._clients) == 1
    run(main())


def test_shutdown_is_bounded_whatever_the_clients_do() -> None:
    """A frozen WebSocket client, an idle TCP connection, a half-sent request,
    a forward to a hung upstream and an unfinished handshake: close() < 1 s."""
    async def main() -> None:
        async with Recorder(hang=60) as upstream:
            flow = OrderFlow(SYMBOLS, seed=9)
            async with SimulatedVenue(flow, rate=2000.0) as venue, \
                    Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as rep:
                await rep.wait_synced(timeout=20)
                mirror = MirrorServer(rep, port=0, upstream_rest_url=upstream.url,
                                      limits=MirrorLimits(so_sndbuf=4096))
                await mirror.start()
                loop = asyncio.get_running_loop()
                frozen = await _ws_handshake(mirror.port)
                await loop.sock_sendall(frozen, _masked_text(
                    b'{"method":"SUBSCRIBE","params":["depth.SOL_USDC","depth.SPCX.US_USDC"]}'))
                idle = socket.create_connection(("127.0.0.1", mirror.port))
                half = socket.create_connection(("127.0.0.1", mirror.port))
                half.sendall(b"GET /api/v1/depth?symbol=SOL_USDC HTTP/1.1\r\nHost: x\r\nX-A")
                handshake = socket.create_connection(("127.0.0.1", mirror.port))
                handshake.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
                hung = asyncio.create_task(httpx.AsyncClient(timeout=60).get(
                    mirror.url + "/api/v1/time"))
                while not upstream.seen or upstream.seen[-1][1] != "/api/v1/time":
                    await asyncio.sleep(0.02)
                await asyncio.sleep(1.0)  # let the frozen client's buffers fill
                started = time.monotonic()
                await mirror.close()
                elapsed = time.monotonic() - started
                answer = await hung
                for sock in (frozen, idle, half, handshake):
                    sock.close()
                assert elapsed < 1.0, f"close() took {elapsed:.3f} s"
                assert answer.status_code == 503
    run(main())


def _masked_text(payload: bytes) -> bytes:
    mask = b"\x05\x06\x07\x08"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked


class ProxyRecorder(Recorder):
    """A recording upstream that passes the venue's REST through, except /api/v1/time (hangs)."""

    def __init__(self, venue_url: str, hang: float = 60.0) -> None:
        super().__init__(hang=hang)
        self.venue_url = venue_url
        self.client = httpx.AsyncClient()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/api/v1/time":
            return await super().handle(request)
        answer = await self.client.get(self.venue_url + request.raw_path)
        return web.Response(status=answer.status_code, body=answer.content,
                            content_type="application/json")


@pytest.mark.parametrize("case", ["frozen client", "idle connection", "half-sent request",
                                  "hung upstream", "all at once"])
def test_sigterm_exits_0_in_under_a_second(case: str, tmp_path: Any) -> None:
    import sys
    from pathlib import Path

    root = REPO

    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=13)
        async with SimulatedVenue(flow, rate=300.0) as venue, ProxyRecorder(venue.rest_url) as rest:
            log_path = tmp_path / "serve.log"
            with log_path.open("wb") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "orderbook.cli", "serve", *SYMBOLS, "--rest-url", rest.url,
                    "--ws-url", venue.ws_url, "--port", "0", cwd=root,
                    stdout=asyncio.subprocess.PIPE, stderr=log_file)
            try:
                assert proc.stdout is not None
                line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
                url = line.split()[2]
                port = int(url.rsplit(":", 1)[1])
                async with httpx.AsyncClient() as http:
                    deadline = time.monotonic() + 30
                    while (await http.get(url + "/health")).status_code != 200:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.05)
                held: list[socket.socket] = []
                hung: asyncio.Task[Any] | None = None
                if case in ("frozen client", "all at once"):
                    frozen = await _ws_handshake(port)
                    await asyncio.get_running_loop().sock_sendall(frozen, _masked_text(
                        b'{"method":"SUBSCRIBE","params":["depth.SOL_USDC","depth.SPCX.US_USDC"]}'))
                    held.append(frozen)
                if case in ("idle connection", "all at once"):
                    held.append(socket.create_connection(("127.0.0.1", port)))
                if case in ("half-sent request", "all at once"):
                    half = socket.create_connection(("127.0.0.1", port))
                    half.sendall(b"GET /api/v1/depth?symbol=SOL_USDC HTTP/1.1\r\nHost: x\r\nX-")
                    held.append(half)
                if case in ("hung upstream", "all at once"):
                    hung = asyncio.create_task(httpx.AsyncClient(timeout=60).get(url + "/api/v1/time"))
                    while not any(path == "/api/v1/time" for _, path, _ in rest.seen):
                        await asyncio.sleep(0.02)
                await asyncio.sleep(1.0)
                started = time.monotonic()
                proc.send_signal(15)
                code = await asyncio.wait_for(proc.wait(), 30)
                elapsed = time.monotonic() - started
                for sock in held:
                    sock.close()
                if hung is not None:
                    await asyncio.gather(hung, return_exceptions=True)
                assert code == 0
                assert elapsed < 1.0, f"{case}: SIGTERM to exit took {elapsed:.3f} s"
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        log = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in log, log
        assert "stopped in" in log
    run(main())
