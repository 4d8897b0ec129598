"""``orderbook serve`` binds its port before its replicator connects upstream."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import httpx

from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue
from paths import REPO


def test_an_early_client_gets_503_starting_not_a_refused_connection() -> None:
    async def main() -> None:
        # the venue's REST answers after 2 s: the replicator is still fetching the markets
        async with SimulatedVenue(OrderFlow(["SOL_USDC"], seed=5), faults=Faults(rest_delay=2.0),
                                  rate=50.0) as venue:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "orderbook.cli", "serve", "SOL_USDC", "--port", "0",
                "--rest-url", venue.rest_url, "--ws-url", venue.ws_url, cwd=REPO,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            assert proc.stdout is not None
            try:
                line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
                url = line.split()[2]
                async with httpx.AsyncClient(base_url=url) as http:
                    early = await http.get("/health")
                    depth = await http.get("/api/v1/depth", params={"symbol": "SOL_USDC"})
                    ws = await http.get("/", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                      "Sec-WebSocket-Version": "13",
                                                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
                    assert early.status_code == 503 and early.json()["status"] == "starting"
                    assert depth.status_code == 503 and depth.headers["retry-after"] == "1"
                    assert "starting" in depth.json()["message"]
                    assert ws.status_code == 503
                    deadline = time.monotonic() + 30
                    while (await http.get("/health")).status_code != 200:
                        assert time.monotonic() < deadline, "never became healthy"
                        await asyncio.sleep(0.1)
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    asyncio.run(asyncio.wait_for(main(), 90))
