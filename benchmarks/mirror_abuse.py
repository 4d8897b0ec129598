"""The mirror under abuse: every attack of issue 10 against a real ``orderbook serve`` process.

A simulated venue (this process) feeds ``orderbook serve`` (a child process,
loopback, default limits); the serve process's ``--rest-url`` is a recording
pass-through to the venue (this process) that hangs on ``/api/v1/time``, and a
second recording server is the "elsewhere" host an open proxy would reach.
Each row of the table is one attack; RSS and open file descriptors are read
from ``/proc/<serve pid>``.  Loads that need many sockets run in a child
process of their own (aiohttp client), so the stream-delay probe in this
process is not starved by its own load generator.

    .venv/bin/python benchmarks/mirror_abuse.py            # the whole list (about 3 minutes)
    .venv/bin/python benchmarks/mirror_abuse.py --quick    # shorter floods (about 1 minute)

Acceptance checks printed at the end: no 5xx other than 502/503/504, no
traceback in the serve log, nothing reached the "elsewhere" host, the
upstream saw only allowlisted paths, RSS within 50 MB of its baseline under
the ping flood, fds back to baseline after 1,000 WebSocket clients, SIGTERM
exits 0 in under 1 s in every shutdown case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from websockets.asyncio.client import connect

from orderbook.serve.forward import FORWARDED_PATHS
from orderbook.testing.venue import OrderFlow, SimulatedVenue

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["SOL_USDC", "SPCX.US_USDC", "BTC_USDC_PERP"]
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


@dataclass
class Row:
    attack: str
    requests: int
    statuses: Counter[int] = field(default_factory=Counter)
    result: str = ""
    ok: bool = True


class Upstream:
    """A recording pass-through to the venue; ``/api/v1/time`` hangs."""

    def __init__(self, venue_url: str | None) -> None:
        self.venue_url = venue_url
        self.seen: list[tuple[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.raw_path))
        if self.venue_url is None:
            return web.json_response({"elsewhere": True})
        if request.path == "/api/v1/time":
            await asyncio.sleep(120)
        assert self.session is not None
        async with self.session.get(self.venue_url + request.raw_path) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body, content_type="application/json")

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        assert self.runner is not None and self.session is not None
        await self.runner.cleanup()
        await self.session.close()


class Serve:
    """One ``orderbook serve`` child process."""

    def __init__(self, venue: SimulatedVenue, upstream: Upstream, log: Path) -> None:
        self.venue, self.upstream, self.log = venue, upstream, log
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        with self.log.open("ab") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "orderbook.cli", "serve", *SYMBOLS,
                "--rest-url", f"http://127.0.0.1:{self.upstream.port}",
                "--ws-url", self.venue.ws_url, "--port", "0", cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=log_file)
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
        self.port = int(line.split()[2].rsplit(":", 1)[1])
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                async with http.get(self.url + "/health") as answer:
                    if answer.status == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the mirror never became healthy")
                await asyncio.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    async def sigterm(self) -> tuple[int, float]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(15)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        return code, time.monotonic() - started


# ------------------------------------------------------------------ raw clients
async def raw(port: int, data: bytes, timeout: float = 10) -> int:
    """Send raw bytes; the status of the first response (0: closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split(b" ", 2)[1]) if line.startswith(b"HTTP/") else 0
    except (ConnectionError, TimeoutError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body
    return struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload)) + mask + body


async def ws_raw(port: int, rcvbuf: int = 4096) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
                                  b"Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                                  + KEY + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    return sock


# -------------------------------------------------------------------- attacks
async def open_proxy(serve: Serve, elsewhere: Upstream) -> Row:
    other = f"127.0.0.1:{elsewhere.port}"
    targets = [
        f"GET http://{other}/api/v1/markets HTTP/1.1\r\nHost: {other}\r\n\r\n",
        f"GET http://u:p@{other}/api/v1/tickers HTTP/1.1\r\nHost: {other}\r\n\r\n",
        f"GET https://{other}/api/v1/time HTTP/1.1\r\nHost: {other}\r\n\r\n",
        f"CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET //{other}/api/v1/tickers HTTP/1.1\r\nHost: {other}\r\n\r\n",
        f"GET /api/v1/tickers HTTP/1.1\r\nHost: {other}\r\nX-Forwarded-Host: {other}\r\n\r\n",
    ]
    row = Row("open proxy attempts", len(targets))
    for target in targets:
        row.statuses[await raw(serve.port, target.encode())] += 1
    row.ok = not elsewhere.seen
    row.result = f"elsewhere host reached {len(elsewhere.seen)} times"
    return row


async def traversal(serve: Serve) -> Row:
    paths = ["/api/v1/%2e%2e/%2e%2e/etc/passwd", "/api/v1/..%2f..%2fetc/passwd",
             "/api/v1/..%5c..%5cwindows", "/api/v1/%252e%252e/x", "/api/v1/order",
             "/api/v1/../wapi/v1/capital", "/api/v1/%00", "/api/v1/tickers%0d%0aX:1",
             "/api/v1/%C0%AE%C0%AE/x", "/api/v1/tick%", "/api/v1/depth?symbol=SOL_USDC&limit=%C2%B2",
             "/api/v1/tickers?%00=1", "/api/v1/capital?x=1", "/%2e%2e/%2e%2e/"]
    row = Row("encoded traversal, bad escapes", len(paths))
    for path in paths:
        row.statuses[await raw(serve.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())] += 1
    bad = [p for m, p in serve.upstream.seen if p.split("?")[0] not in FORWARDED_PATHS
           and not p.startswith("/api/v1/depth")]
    row.ok = not bad and all(400 <= s < 500 for s in row.statuses)
    row.result = f"upstream paths outside the allowlist: {len(bad)}"
    return row


async def malformed(serve: Serve) -> Row:
    requests = [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # TLS hello
                b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /health\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                b"GET /health HTTP/1.1\r\n" + b"X-A: " + b"a" * 20000 + b"\r\n\r\n",
                b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
                b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                b"POST /api/v1/tickers HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc",
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n"]
    row = Row("malformed HTTP", len(requests))
    for data in requests:
        row.statuses[await raw(serve.port, data)] += 1
    row.result = "no 5xx; 0 = closed without an answer (200: valid head, body never read)"
    row.ok = all(s < 500 for s in row.statuses)
    return row


async def odd_methods(serve: Serve) -> Row:
    methods = ["DELETE", "PUT", "PATCH", "POST", "TRACE", "OPTIONS", "BREW", "PROPFIND", "HEAD"]
    paths = ["/api/v1/order", "/api/v1/tickers", "/api/v1/depth?symbol=SOL_USDC", "/health"]
    row = Row("odd methods", len(methods) * len(paths))
    for method in methods:
        for path in paths:
            data = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
            row.statuses[await raw(serve.port, data)] += 1
    upstream_methods = {m for m, _ in serve.upstream.seen}
    row.ok = upstream_methods <= {"GET", "HEAD"}
    row.result = f"methods seen upstream: {sorted(upstream_methods)}"
    return row


async def http_flood(serve: Serve, count: int) -> Row:
    row = Row("HTTP flood (/health, 50 keep-alive conns)", count)
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one() -> int:
            async with http.get(serve.url + "/health") as answer:
                await answer.read()
                return answer.status
        for status in await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True):
            row.statuses[status if isinstance(status, int) else 0] += 1
    elapsed = time.monotonic() - started
    row.result = f"{count / elapsed:,.0f} req/s; RSS {serve.rss_mb():.0f} MB"
    return row


async def slowloris(serve: Serve, conns: int, duration: float) -> Row:
    row = Row(f"slowloris ({conns} conns, a byte every 0.5 s)", conns)
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(conns):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", serve.port))
        socks.append(sock)
    text = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    alive = set(range(conns))
    started = time.monotonic()
    closed_at: list[float] = []
    i = 0
    while alive and time.monotonic() - started < duration:
        for n in list(alive):
            try:
                socks[n].send(text[i % len(text):i % len(text) + 1])
            except OSError:
                alive.discard(n)
                closed_at.append(time.monotonic() - started)
        i += 1
        await asyncio.sleep(0.5)
    for sock in socks:
        sock.close()
    row.statuses[0] = conns - len(alive)
    row.ok = not alive
    row.result = (f"all cut by {max(closed_at):.1f} s (keepalive_timeout 15 s)" if not alive
                  else f"{len(alive)} still open after {duration:.0f} s")
    return row


_WS_LOAD = r"""
import asyncio, sys, aiohttp
async def main(url, n):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def one(i):
            async with s.ws_connect(url, autoping=True) as ws:
                await ws.send_str('{"method":"SUBSCRIBE","params":["depth.%s"]}' % ("SOL_USDC", "SPCX.US_USDC")[i % 2])
                msg = await asyncio.wait_for(ws.receive(), 60)
                return 1 if msg.type == aiohttp.WSMsgType.TEXT else 0
        got = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
        print(sum(1 for g in got if g == 1), flush=True)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

_DEPTH_LOAD = r"""
import asyncio, sys, time, aiohttp
async def main(url, n):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def one():
            async with s.get(url) as r:
                await r.read(); return r.status
        t = time.monotonic()
        got = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        print(time.monotonic() - t, *[g if isinstance(g, int) else 0 for g in got], flush=True)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def child(script: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, *args,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    return out.decode()


async def ws_clients(serve: Serve, count: int) -> Row:
    row = Row(f"{count:,} WebSocket clients connect/receive/leave", count)
    before = serve.fds()
    received = int((await child(_WS_LOAD, serve.url.replace("http", "ws") + "/", str(count))).strip())
    deadline = time.monotonic() + 10
    while serve.fds() > before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    after = serve.fds()
    row.statuses[101] = received
    row.ok = received == count and after <= before
    row.result = f"received {received}; fds {before} -> {after}"
    return row


async def ping_flood(serve: Serve, clients: int, duration: float, reconnect: bool) -> Row:
    how = "reconnecting when cut" if reconnect else "each on one connection"
    row = Row(f"ping flood, {clients} clients not reading, {duration:.0f} s, {how}", 0)
    baseline = serve.rss_mb()
    peak = baseline
    cuts = 0
    frames = masked(0x9, b"p" * 125) * 64
    stop = time.monotonic() + duration

    async def flooder() -> None:
        nonlocal cuts
        loop = asyncio.get_running_loop()
        while time.monotonic() < stop:
            try:
                sock = await ws_raw(serve.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                while time.monotonic() < stop:
                    await asyncio.wait_for(loop.sock_sendall(sock, frames), 2)
                    row.requests += 64
            except (OSError, TimeoutError):
                cuts += 1
            finally:
                sock.close()
            if not reconnect:
                return

    tasks = [asyncio.create_task(flooder()) for _ in range(clients)]
    while time.monotonic() < stop:
        peak = max(peak, serve.rss_mb())
        await asyncio.sleep(0.25)
    await asyncio.gather(*tasks)
    await asyncio.sleep(2)
    growth = peak - baseline
    row.ok = growth < 50
    row.result = (f"RSS {baseline:.0f} -> peak {peak:.0f} MB (+{growth:.1f}), "
                  f"{serve.rss_mb():.0f} MB 2 s after; {cuts} cuts")
    return row


async def depth_load(serve: Serve, count: int, window: float) -> tuple[Row, str]:
    async def delays(seconds: float) -> list[float]:
        out: list[float] = []
        async with connect(serve.url.replace("http", "ws") + "/") as ws:
            await ws.send('{"method":"SUBSCRIBE","params":["depth.SOL_USDC"]}')
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    message = await asyncio.wait_for(ws.recv(), 5)
                except TimeoutError:
                    break
                data = orjson.loads(message).get("data")
                if data:
                    out.append((time.time_ns() // 1000 - int(data["T"])) / 1000)
        return out

    quiet = await delays(window)
    probe = asyncio.create_task(delays(window * 2))
    await asyncio.sleep(0.5)
    out = (await child(_DEPTH_LOAD, serve.url + "/api/v1/depth?symbol=SOL_USDC&limit=1000",
                       str(count))).split()
    loaded = await probe
    row = Row(f"{count:,} concurrent limit=1000 depth requests", count)
    row.statuses.update(int(s) for s in out[1:])
    row.result = f"all answered in {float(out[0]):.2f} s"

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")

    stream = (f"stream delay (venue T -> client) quiet p50 {pct(quiet, .5):.1f} ms "
              f"p99 {pct(quiet, .99):.1f} ms; under load p50 {pct(loaded, .5):.1f} ms "
              f"p99 {pct(loaded, .99):.1f} ms max {max(loaded, default=float('nan')):.1f} ms "
              f"({len(loaded)} frames)")
    return row, stream


async def shutdown_case(venue: SimulatedVenue, upstream: Upstream, log: Path, case: str) -> Row:
    serve = Serve(venue, upstream, log)
    await serve.start()
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []
    hung: asyncio.Task[Any] | None = None
    session = aiohttp.ClientSession()
    if case == "frozen client":
        sock = await ws_raw(serve.port)
        await loop.sock_sendall(sock, masked(0x1, b'{"method":"SUBSCRIBE","params":["depth.SOL_USDC",'
                                                  b'"depth.SPCX.US_USDC","depth.BTC_USDC_PERP"]}'))
        held.append(sock)
    elif case == "idle TCP connection":
        held.append(socket.create_connection(("127.0.0.1", serve.port)))
    elif case == "half-sent request":
        sock = socket.create_connection(("127.0.0.1", serve.port))
        sock.sendall(b"GET /api/v1/depth?symbol=SOL_USDC HTTP/1.1\r\nHost: x\r\nX-Half")
        held.append(sock)
    elif case == "hung upstream":
        hung = asyncio.create_task(session.get(serve.url + "/api/v1/time"))
        while not any(p == "/api/v1/time" for _, p in upstream.seen):
            await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)
    code, elapsed = await serve.sigterm()
    for sock in held:
        sock.close()
    if hung is not None:
        await asyncio.gather(hung, return_exceptions=True)
    await session.close()
    row = Row(f"SIGTERM with {case}", 1)
    row.ok = code == 0 and elapsed < 1.0
    row.result = f"exit {code} in {elapsed * 1000:.0f} ms"
    return row


async def only_ping_flood(seconds: float) -> int:
    log = Path(tempfile.mkdtemp(prefix="mirror-abuse-")) / "serve.log"
    async with SimulatedVenue(OrderFlow(SYMBOLS, seed=21, levels=1000), rate=300.0) as venue:
        upstream = Upstream(venue.rest_url)
        await upstream.start()
        serve = Serve(venue, upstream, log)
        await serve.start()
        row = await ping_flood(serve, 4, seconds, reconnect=True)
        await serve.sigterm()
        await upstream.stop()
    print(table([row]))
    return 0 if row.ok else 1


def table(rows: list[Row]) -> str:
    lines = ["| attack | requests | statuses | result | ok |", "|---|---:|---|---|---|"]
    for row in rows:
        statuses = " ".join(f"{s}x{n}" for s, n in sorted(row.statuses.items())) or "-"
        lines.append(f"| {row.attack} | {row.requests:,} | {statuses} | {row.result} | "
                     f"{'yes' if row.ok else 'NO'} |")
    return "\n".join(lines)


async def main(quick: bool) -> int:
    flow = OrderFlow(SYMBOLS, seed=21, levels=1000)
    log = Path(tempfile.mkdtemp(prefix="mirror-abuse-")) / "serve.log"
    rows: list[Row] = []
    async with SimulatedVenue(flow, rate=300.0) as venue:
        upstream, elsewhere = Upstream(venue.rest_url), Upstream(None)
        await upstream.start()
        await elsewhere.start()
        serve = Serve(venue, upstream, log)
        await serve.start()
        baseline_rss, baseline_fds = serve.rss_mb(), serve.fds()
        print(f"serve pid {serve.proc.pid if serve.proc else '?'}: RSS {baseline_rss:.0f} MB, "
              f"{baseline_fds} fds; log {log}", flush=True)
        rows.append(await open_proxy(serve, elsewhere))
        rows.append(await traversal(serve))
        rows.append(await malformed(serve))
        rows.append(await odd_methods(serve))
        rows.append(await http_flood(serve, 2000 if quick else 10_000))
        rows.append(await slowloris(serve, 200, 20.0))
        rows.append(await ws_clients(serve, 1000))
        rows.append(await ping_flood(serve, 4, 10.0 if quick else 30.0, reconnect=False))
        rows.append(await ping_flood(serve, 4, 10.0 if quick else 30.0, reconnect=True))
        depth_row, stream = await depth_load(serve, 1000, 3.0 if quick else 5.0)
        rows.append(depth_row)
        code, elapsed = await serve.sigterm()
        rows.append(Row("SIGTERM after all of the above", 1, ok=code == 0 and elapsed < 1.0,
                        result=f"exit {code} in {elapsed * 1000:.0f} ms"))
        for case in ("frozen client", "idle TCP connection", "half-sent request", "hung upstream"):
            rows.append(await shutdown_case(venue, upstream, log, case))
        await upstream.stop()
        await elsewhere.stop()
    text = log.read_text()
    bad_5xx = sum(n for row in rows for s, n in row.statuses.items() if s >= 500 and s not in (502, 503, 504))
    print()
    print(table(rows))
    print()
    print(stream)
    print(f"5xx other than 502/503/504: {bad_5xx}; tracebacks in the serve log: "
          f"{text.count('Traceback')}; elsewhere host hits: {len(elsewhere.seen)}")
    failed = [r.attack for r in rows if not r.ok]
    print("all checks passed" if not failed and not bad_5xx and "Traceback" not in text
          else f"FAILED: {failed}")
    return 0 if not failed and not bad_5xx and "Traceback" not in text else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter floods")
    parser.add_argument("--ping-flood-only", type=float, metavar="SECONDS",
                        help="run only the ping flood, for SECONDS")
    args = parser.parse_args()
    if args.ping_flood_only:
        sys.exit(asyncio.run(only_ping_flood(args.ping_flood_only)))
    sys.exit(asyncio.run(main(args.quick)))
