"""The venue process of ``benchmarks/live.py``: pre-encoded depth frames on a loopback WebSocket.

    python benchmarks/live_venue.py WORKLOAD_DIR [--paced RATE]

Prints ``PORT <n>`` on stdout once listening on 127.0.0.1, then serves until
killed.  Standard library only (no ``orderbook`` import), so that it serves
today's code and an old checkout alike.  One port answers:

* ``GET /api/v1/markets`` -- every symbol of the workload, as the venue lists them;
* ``GET /api/v1/depth?symbol=S`` -- the snapshot of ``S`` (its ``lastUpdateId``
  is the id just before its first frame, so a replica syncs from it);
* ``GET /bench/go`` -- start the stream on a WebSocket connection that
  subscribed every depth stream (at once if one did, else as soon as one does);
* any other request with ``Upgrade: websocket`` -- a WebSocket: SUBSCRIBE
  messages are noted, pings answered, a close echoed.

Burst mode sends the whole workload with one ``transport.write`` of a buffer
of ready WebSocket frames, so it goes as fast as the socket takes it.  Paced
mode (``--paced 20000``) writes every 1 ms the frames due at that rate, with
each frame's ``E`` field overwritten with the wall clock (µs) of its write.
Every connection gets the whole workload from its first frame.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_E_FIELD = b'"E":"'
_TICK = 0.001


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One unmasked server frame (FIN set)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return head + payload


class Workload:
    """The files written by ``benchmarks/live.py`` (frames.jsonl, snapshots.json)."""

    def __init__(self, directory: Path) -> None:
        self.frames = directory.joinpath("frames.jsonl").read_bytes().splitlines()
        self.snapshots = {s: body.encode() for s, body in
                          json.loads(directory.joinpath("snapshots.json").read_text()).items()}
        self.symbols = list(self.snapshots)
        self.markets = json.dumps([_market(s) for s in self.symbols]).encode()
        self.blob = b"".join(ws_frame(f) for f in self.frames)


def _market(symbol: str) -> dict[str, object]:
    base, quote = symbol.split("_", 1)
    return {"symbol": symbol, "baseSymbol": base, "quoteSymbol": quote, "marketType": "SPOT",
            "orderBookState": "Open", "visible": True,
            "filters": {"price": {"minPrice": "0.01", "maxPrice": None, "tickSize": "0.01"},
                        "quantity": {"minQuantity": "0.00001", "maxQuantity": None,
                                     "stepSize": "0.00001"}}}


class Venue:
    def __init__(self, workload: Workload, paced: float | None) -> None:
        self.workload = workload
        self.paced = paced
        self.go = 0
        self.connections: list[Connection] = []
        self.depth_requests = 0

    def maybe_start(self) -> None:
        """Start one stream per ``/bench/go`` received, on a connection that
        subscribed every depth stream and got none yet."""
        wanted = len(self.workload.symbols)
        for conn in self.connections:
            if self.go and not conn.streaming and len(conn.subscribed) >= wanted:
                self.go -= 1
                conn.streaming = True
                if self.paced is None:
                    conn.transport.write(self.workload.blob)
                else:
                    asyncio.get_running_loop().create_task(self.pace(conn, self.paced))

    async def pace(self, conn: Connection, rate: float) -> None:
        """Write the frames due at ``rate`` every tick, ``E`` stamped at the write."""
        frames: list[tuple[bytearray, int]] = []
        for payload in self.workload.frames:
            framed = bytearray(ws_frame(payload))
            at = framed.find(_E_FIELD)
            offset = at + len(_E_FIELD)
            assert at > 0 and framed[offset:offset + 16].isdigit() and framed[offset + 16] == 34
            frames.append((framed, offset))
        loop = asyncio.get_running_loop()
        started, sent, total = loop.time(), 0, len(frames)
        while sent < total and not conn.transport.is_closing():
            due = min(total, int((loop.time() - started) * rate) + 1)
            if due > sent:
                stamp = b"%016d" % (time.time_ns() // 1000)
                chunk = []
                for framed, offset in frames[sent:due]:
                    framed[offset:offset + 16] = stamp
                    chunk.append(framed)
                conn.transport.write(b"".join(chunk))
                sent = due
            await asyncio.sleep(_TICK)


class Connection(asyncio.Protocol):
    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.buffer = bytearray()
        self.websocket = False
        self.subscribed: set[str] = set()
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.venue.connections:
            self.venue.connections.remove(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.websocket:
            self.frames()
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[:end + 4]
        target = head[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        if headers.get("upgrade", "").lower() == "websocket":
            key = headers["sec-websocket-key"].encode()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.websocket = True
            self.venue.connections.append(self)
            self.frames()
        else:
            self.http(target)

    def http(self, target: str) -> None:
        url = urlsplit(target)
        query = parse_qs(url.query)
        status, body = 200, b'"ok"'
        if url.path == "/api/v1/markets":
            body = self.venue.workload.markets
        elif url.path == "/api/v1/depth":
            snapshot = self.venue.workload.snapshots.get(query.get("symbol", [""])[0])
            self.venue.depth_requests += 1
            if snapshot is None:
                status, body = 400, b'{"code":"INVALID_SYMBOL","message":"Invalid symbol"}'
            else:
                body = snapshot
        elif url.path == "/bench/go":
            self.venue.go += 1
            self.venue.maybe_start()
        else:
            status, body = 404, b'{"code":"NOT_FOUND","message":"Unknown endpoint"}'
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        self.transport.close()

    def frames(self) -> None:
        """Parse the client's (masked) frames: SUBSCRIBE, ping, close."""
        buf = self.buffer
        while len(buf) >= 2:
            opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, at = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + 4 + size:
                return
            mask = buf[at:at + 4]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[at + 4:at + 4 + size]))
            del buf[:at + 4 + size]
            if opcode == 1:
                request = json.loads(payload)
                if request.get("method") == "SUBSCRIBE":
                    self.subscribed.update(request.get("params", []))
                    self.venue.maybe_start()
            elif opcode == 9:
                self.transport.write(ws_frame(payload, 0x0A))
            elif opcode == 8:
                self.transport.write(ws_frame(payload[:2], 0x08))
                self.transport.close()
                return


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", type=Path)
    parser.add_argument("--paced", type=float, metavar="RATE", help="frames per second")
    args = parser.parse_args()
    venue = Venue(Workload(args.workload), args.paced)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(venue), "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
