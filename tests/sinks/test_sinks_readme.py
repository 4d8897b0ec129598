"""The README's reader examples, run as written (only the broker's port changed)
against real servers while a replicator publishes the simulated venue's books."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from brokers import Broker
from orderbook.live.replicator import Replicator
from orderbook.sinks import NatsSink, PublishOptions, RedisSink
from orderbook.testing.venue import OrderFlow, SimulatedVenue
from paths import REPO

README = (REPO / "README.md").read_text()


def example(kind: str) -> str:
    match = re.search(rf"<!-- readme-example: {kind} -->\n```python\n(.*?)```", README, re.S)
    assert match, f"no {kind} example in the README"
    return match.group(1)


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_the_readme_reader_examples_run_as_written(kind: str, redis_server: Broker, nats_server: Broker,
                                                   tmp_path: Path) -> None:
    code = example(kind)
    broker = redis_server if kind == "redis" else nats_server
    default = "redis://127.0.0.1:6379/0" if kind == "redis" else "nats://127.0.0.1:4222"
    assert default in code
    script = tmp_path / "example.py"
    script.write_text(code.replace(default, broker.url))
    symbol = "SOL_USDC" if kind == "redis" else "SPCX.US_USDC"

    async def main() -> None:
        flow = OrderFlow([symbol], seed=9)
        sink: Any = (RedisSink(broker.url, options=PublishOptions(linger=0.01)) if kind == "redis"
                     else NatsSink(broker.url, options=PublishOptions(snapshot_interval=None, linger=0.01)))
        async with SimulatedVenue(flow, rate=200.0) as venue, \
                Replicator([symbol], rest_url=venue.rest_url, ws_url=venue.ws_url, sinks=[sink]) as rep:
            await rep.wait_synced(timeout=20)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(script), cwd=REPO, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                assert proc.stdout is not None
                ids = []
                for _ in range(5):
                    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
                    update_id, bid, ask = line.split(" ", 2)
                    ids.append(int(update_id))
                    assert bid.startswith("(Decimal(") and "Decimal(" in ask, line
                assert ids == sorted(ids) and len(set(ids)) == len(ids)
                assert ids[-1] <= rep.book(symbol).last_update_id  # type: ignore[operator]
            finally:
                proc.kill()
                await proc.wait()
    asyncio.run(asyncio.wait_for(main(), 90))
