"""Acceptance: ``orderbook serve --publish redis://... --publish nats://...`` in front of the
simulated venue, with a Redis reader and a NATS subscriber each in a process of its own.

Their books equal the venue's truth after a resync of the replica (frames lost
upstream) and after each broker was killed and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from brokers import Broker
from orderbook.testing.venue import OrderFlow, SimulatedVenue
from paths import REPO

SYMBOLS = ["SOL_USDC", "SPCX.US_USDC"]
READER = Path(__file__).with_name("reader_process.py")


def run(coro: Any, timeout: float = 180) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


class ReaderProcess:
    """``reader_process.py`` as a child: ask it for its books with :meth:`dump`."""

    def __init__(self, kind: str, url: str, log: Path) -> None:
        self.kind, self.url, self.log = kind, url, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(READER), self.kind, self.url, *SYMBOLS, cwd=REPO,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        assert (await asyncio.wait_for(self.proc.stdout.readline(), 30)).strip() == b"ready"

    async def dump(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"dump\n")
        await self.proc.stdin.drain()
        state: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))
        return state

    async def stop(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def assert_exact(reader: ReaderProcess, flow: OrderFlow, timeout: float = 30.0) -> dict[str, Any]:
    """The reader reaches each truth's update id, and then holds exactly its levels."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await reader.dump()
        if all(state[s]["synced"] and state[s]["id"] == flow.truth(s).last_update_id for s in SYMBOLS):
            break
        assert asyncio.get_running_loop().time() < deadline, (
            reader.kind, {s: (state[s]["synced"], state[s]["id"], flow.truth(s).last_update_id)
                          for s in SYMBOLS}, reader.log.read_text()[-3000:])
        await asyncio.sleep(0.1)
    for symbol in SYMBOLS:
        truth = flow.truth(symbol)
        assert state[symbol]["bids"] == [[str(p), str(q)] for p, q in truth.bids()], (reader.kind, symbol)
        assert state[symbol]["asks"] == [[str(p), str(q)] for p, q in truth.asks()], (reader.kind, symbol)
    return state


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            head = line.rsplit(" ", 1)[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_serve_publishes_to_redis_and_nats_readers_in_their_own_processes(
        redis_server: Broker, nats_server: Broker, tmp_path: Path) -> None:
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=31)
        async with SimulatedVenue(flow, rate=300.0) as venue:
            with (tmp_path / "serve.log").open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "orderbook.cli", "serve", *SYMBOLS, "--rest-url", venue.rest_url,
                    "--ws-url", venue.ws_url, "--port", "0",
                    "--publish", f"{redis_server.url}?snapshot_interval=100&linger=0.01",
                    "--publish", f"{nats_server.url}?linger=0.01", cwd=REPO,
                    stdout=asyncio.subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            readers = [ReaderProcess("redis", redis_server.url, tmp_path / "redis-reader.log"),
                       ReaderProcess("nats", nats_server.url, tmp_path / "nats-reader.log")]
            try:
                assert proc.stdout is not None
                line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
                url = line.split()[2]
                async with httpx.AsyncClient() as http:
                    async def metrics() -> str:
                        return (await http.get(url + "/metrics")).text

                    for reader in readers:
                        await reader.start()
                    # a resync of the replica: frames lost upstream
                    resyncs = metric(await metrics(), "orderbook_resyncs_total")
                    venue.faults.drop_rate = 0.5
                    while metric(await metrics(), "orderbook_resyncs_total") <= resyncs:
                        await asyncio.sleep(0.05)
                    venue.faults.drop_rate = 0.0
                    await asyncio.sleep(0.5)
                    await venue.pause()
                    for reader in readers:
                        await assert_exact(reader, flow)
                    venue.resume()

                    # each broker killed and restarted on its port while the venue runs
                    for broker, name in ((redis_server, redis_server.url), (nats_server, nats_server.url)):
                        await asyncio.sleep(0.3)
                        broker.restart()
                        while metric(await metrics(), "orderbook_sink_reconnects_total", sink=name) < 1 \
                                or metric(await metrics(), "orderbook_sink_connected", sink=name) < 1:
                            await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)
                    await venue.pause()
                    states = [await assert_exact(reader, flow) for reader in readers]
                    assert all(states[0][s]["stats"]["reconnects"] >= 1 for s in SYMBOLS)   # redis
                    assert all(states[1][s]["stats"]["reconnects"] >= 1 for s in SYMBOLS)   # nats
                    text = await metrics()
                    for name in (redis_server.url, nats_server.url):
                        assert metric(text, "orderbook_sink_published_total", sink=name) > 0
                        assert metric(text, "orderbook_sink_failures_total", sink=name) >= 1
                    assert 'orderbook_sink_dropped_total{sink="' in text
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
            finally:
                for reader in readers:
                    await reader.stop()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        log_text = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in log_text, log_text[-3000:]
    run(main())


def test_serve_refuses_bad_publish_urls() -> None:
    for argv, message in (
        (["--publish", "kafka://127.0.0.1:9092"], "unsupported scheme"),
        (["--publish", "redis://127.0.0.1:6379/0?maxlenn=5"], "unknown option maxlenn"),
        (["--publish", "redis://127.0.0.1:6379/0?maxlen=10"], "maxlen (10) must be at least"),
        (["--publish", "nats://127.0.0.1:4222?prefix=a..b"], "NATS subject prefix"),
        (["--publish", "nats://127.0.0.1:4222", "--publish", "nats://127.0.0.1:4222"], "given once"),
    ):
        done = subprocess.run([sys.executable, "-m", "orderbook.cli", "serve", "SOL_USDC", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done
        assert message in done.stderr, done.stderr
