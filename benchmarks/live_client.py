"""One contender of ``benchmarks/live.py``, run in its own process against the venue process.

    python benchmarks/live_client.py CONTENDER --workload DIR [--url ws://127.0.0.1:PORT/]
        [--transport websockets|aiohttp|websockets-asyncio] [--paced] [--path OLD_CHECKOUT]

Prints one JSON object: ``cpu`` (seconds of this process's CPU from just
before the stream starts to the moment the contender has handled the last
frame; setup -- imports, connecting, subscribing, the snapshots -- left out),
``wall`` (the same span in wall-clock seconds), ``frames``, and in paced mode
``read_to_consumer`` / ``send_to_consumer`` latencies in µs (a sample per
update the consumer saw).

Contenders (``CONTENDERS``): ``read`` (a StreamConnection and a handler that
counts), ``engine`` (``parse_frame`` + ``SymbolSync`` over the frames in
memory, no socket), ``engine-batch`` (the multi-symbol ``Engine.receive``
offline, a socket read's worth of frames per call), ``replicator`` (no consumer), ``updates`` (one
``updates()`` consumer), ``callback`` (one ``on_update`` callback) and
``baseline`` (the ``updates`` contender on an old checkout given by
``--path``, with that version's own API and transport).  ``orderbook`` is
imported only inside the contenders, after ``--path`` is put first on
``sys.path``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CONTENDERS = ("read", "engine", "engine-batch", "replicator", "updates", "callback", "baseline")
ENGINE_BATCH = 1000
"""Frames per ``Engine.receive`` call offline: about one 256 KiB socket read of this workload."""


class Run:
    """What the workload says and what a contender measures."""

    def __init__(self, args: argparse.Namespace) -> None:
        directory: Path = args.workload
        self.meta = json.loads(directory.joinpath("meta.json").read_text())
        self.final: dict[str, int] = self.meta["final"]
        self.symbols: list[str] = list(self.final)
        self.last_symbol: str = self.meta["last_symbol"]
        self.total: int = self.meta["frames"]
        self.directory = directory
        self.url: str = args.url
        self.rest_url = args.url.replace("ws://", "http://").rstrip("/")
        self.paced: bool = args.paced
        self.transport: str = args.transport
        self.cpu0 = self.wall0 = 0.0
        self.cpu = self.wall = self.user = self.sys = 0.0
        self.usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self.read_lat = array("q")
        self.send_lat = array("q")

    def start_clock(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.usage0 = resource.getrusage(resource.RUSAGE_SELF)

    def stop_clock(self) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.user = usage.ru_utime - self.usage0.ru_utime
        self.sys = usage.ru_stime - self.usage0.ru_stime

    async def go(self) -> None:
        """Start the clock and ask the venue to stream (a bare HTTP request)."""
        host, port = self.rest_url.removeprefix("http://").split(":")
        self.start_clock()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /bench/go HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await reader.read()
        writer.close()

    def result(self, frames: int) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu": self.cpu, "wall": self.wall, "frames": frames,
                               "user": self.user, "sys": self.sys}
        if self.paced:
            out["read_to_consumer"] = list(self.read_lat)
            out["send_to_consumer"] = list(self.send_lat)
        return out


# ------------------------------------------------------------------ read only
class Counter:
    """A StreamHandler that counts frames until the workload is in."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.frames = 0
        self.subscribed = 0
        self.ready = asyncio.Event()
        self.done = asyncio.Event()

    def on_connected(self) -> None:
        pass

    def on_subscribed(self, streams: Sequence[str]) -> None:
        self.subscribed += len(streams)
        if self.subscribed >= len(self.run.symbols):
            self.ready.set()

    def on_frames(self, frames: Sequence[str | bytes], received_us: int) -> None:
        self.frames += len(frames)
        if self.run.paced:  # the venue stamped each frame's E with its write time
            for raw in frames:
                text = raw if isinstance(raw, str) else raw.decode()
                at = text.find('"E":"') + 5
                self.run.send_lat.append(received_us - int(text[at:at + 16]))
        if self.frames >= self.run.total:
            self.run.stop_clock()
            self.done.set()

    def on_disconnected(self, reason: str) -> None:
        if not self.done.is_set():
            print(f"disconnected: {reason}", file=sys.stderr)


class AsyncioClientTransport:
    """The ``websockets`` asyncio client (``connect`` / ``recv``) behind the
    transport seam, for the read-only comparison only: a batch is the message
    ``recv`` waited for plus every complete message already buffered."""

    name = "websockets-asyncio"

    async def connect(self, url: str, *, open_timeout: float, close_timeout: float,
                      max_message: int, max_queue: int) -> Any:
        from websockets.asyncio.client import connect

        ws = await connect(url, open_timeout=open_timeout, close_timeout=close_timeout,
                           ping_interval=None, max_size=max_message, max_queue=max_queue,
                           compression=None)
        return _AsyncioSession(url, ws)


class _AsyncioSession:
    def __init__(self, url: str, ws: Any) -> None:
        self.url = url
        self._ws = ws
        self._queue = ws.recv_messages.frames.queue

    async def send(self, text: str) -> None:
        await self._ws.send(text)

    async def read_batch(self) -> list[str | bytes]:
        from websockets.exceptions import ConnectionClosed

        from orderbook.errors import WebSocketClosed

        recv, queue = self._ws.recv, self._queue
        try:
            out = [await recv()]
            while queue and queue[0].fin:
                out.append(await recv())
        except ConnectionClosed as exc:
            raise WebSocketClosed(self.url, 1006, "", None, str(exc)) from exc
        return out

    async def ping(self) -> Any:
        return await self._ws.ping()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.close(code, reason)


async def read_only(run: Run) -> int:
    from orderbook.live.connection import StreamConnection

    handler = Counter(run)
    transport: Any = AsyncioClientTransport() if run.transport == "websockets-asyncio" else run.transport
    conn = StreamConnection(run.url, [f"depth.{s}" for s in run.symbols], handler,
                            transport=transport)
    task = asyncio.create_task(conn.run())
    await handler.ready.wait()
    await asyncio.sleep(0.2)
    await run.go()
    await handler.done.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return handler.frames


# --------------------------------------------------------------------- engine
def engine(run: Run) -> int:
    from orderbook.protocol.wire import parse_frame, parse_snapshot
    from orderbook.sync.symbol import SymbolSync, SyncState

    snapshots = json.loads(run.directory.joinpath("snapshots.json").read_text())
    frames = run.directory.joinpath("frames.jsonl").read_bytes().splitlines()
    syncs = {}
    for symbol, body in snapshots.items():
        sync = SymbolSync(symbol, max_buffer=10_000)
        sync.start()
        sync.receive_snapshot(parse_snapshot(body.encode(), symbol), limit=1000)
        syncs[symbol] = sync
    get = syncs.__getitem__
    run.start_clock()
    for raw in frames:
        event = parse_frame(raw, validate_levels=False)
        get(event.symbol).receive_frame(event)  # type: ignore[union-attr]
    run.stop_clock()
    for symbol, sync in syncs.items():
        assert sync.state is SyncState.SYNCED and sync.book.last_update_id == run.final[symbol]
    return len(frames)


def engine_batches(run: Run) -> int:
    """The multi-symbol ``Engine`` (what the Replicator drives) offline, fed
    :data:`ENGINE_BATCH` frames per call, the touch read of every book changed."""
    from orderbook.sync.engine import BookUpdated, Engine, EngineOptions, FetchSnapshot
    from orderbook.sync.symbol import SyncState

    snapshots = json.loads(run.directory.joinpath("snapshots.json").read_text())
    frames = run.directory.joinpath("frames.jsonl").read_bytes().splitlines()
    engine = Engine(list(snapshots), EngineOptions(seed=0))
    engine.connected(0)
    for action in engine.subscribed(engine.streams, 0):
        if isinstance(action, FetchSnapshot):
            engine.snapshot(action.ticket, snapshots[action.symbol].encode(), 0)
    receive, book = engine.receive, engine.book
    run.start_clock()
    for at in range(0, len(frames), ENGINE_BATCH):
        for action in receive(frames[at:at + ENGINE_BATCH], 1):
            if type(action) is BookUpdated:
                b = book(action.symbol)
                b.best_bid()
                b.best_ask()
    run.stop_clock()
    for track in engine.tracks():
        assert track.sync.state is SyncState.SYNCED
    for symbol, last in run.final.items():
        assert engine.book(symbol).last_update_id == last
    return len(frames)


# ----------------------------------------------------------------- replicator
def _tracker(run: Run, done: asyncio.Event) -> Callable[[Any], None]:
    """A consumer body: notes when every symbol reached its final id, and the latencies."""
    final = run.final
    remaining = set(final)
    read_lat, send_lat = run.read_lat.append, run.send_lat.append
    paced = run.paced
    clock = time.time_ns

    def seen(update: Any) -> None:
        if paced and update.event_time is not None:
            now = clock() // 1000
            read_lat(now - update.received_us)
            send_lat(now - update.event_time)
        if update.last_id == final[update.symbol]:
            remaining.discard(update.symbol)
            if not remaining:
                run.stop_clock()
                done.set()

    return seen


async def replicator(run: Run, consumer: str) -> int:
    if consumer == "baseline":
        from orderbook.replicator import Replicator  # the old flat layout
        options: dict[str, Any] = {}
    else:
        from orderbook.live.config import Connection
        from orderbook.live.replicator import Replicator
        options = {"connection": Connection(transport=run.transport)}
    rep = Replicator(run.symbols, rest_url=run.rest_url, ws_url=run.url, **options)
    done = asyncio.Event()
    seen = _tracker(run, done)
    consumer_task = None
    if consumer in ("updates", "baseline"):
        stream = rep.updates()

        async def consume() -> None:
            async for update in stream:
                seen(update)

        consumer_task = asyncio.create_task(consume())
    async with rep:
        if consumer == "callback":
            rep.on_update(seen)
        await rep.wait_synced(timeout=120)
        await asyncio.sleep(0.2)
        await run.go()
        if consumer == "none":
            book, last = rep.book(run.last_symbol), run.final[run.last_symbol]
            while book.last_update_id != last:
                await asyncio.sleep(0.002)
            run.stop_clock()
        else:
            await done.wait()
        frames = sum(rep.stats().symbols[s].frames for s in run.symbols)
    if consumer_task is not None:
        consumer_task.cancel()
        await asyncio.gather(consumer_task, return_exceptions=True)
    return frames


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("--workload", type=Path, required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--transport", default="websockets")
    parser.add_argument("--paced", action="store_true")
    parser.add_argument("--path", help="an old checkout to import orderbook from")
    args = parser.parse_args()
    if args.path:
        sys.path.insert(0, args.path)
    run = Run(args)
    if args.contender == "engine":
        frames = engine(run)
    elif args.contender == "engine-batch":
        frames = engine_batches(run)
    elif args.contender == "read":
        frames = asyncio.run(read_only(run))
    else:
        consumer = {"replicator": "none"}.get(args.contender, args.contender)
        frames = asyncio.run(replicator(run, consumer))
    import orderbook

    result = run.result(frames)
    result["orderbook"] = str(Path(orderbook.__file__).parent)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
