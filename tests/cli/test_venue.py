"""``orderbook venue``, the exit statuses of the long-running commands, and small things
a new user hit (demo's symbols, replay's ``-``, record's single summary)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orderbook.cli import main
from orderbook.cli.venue import parse_faults
from orderbook.errors import UsageError
from orderbook.testing.venue import OrderFlow, SimulatedVenue, SnapshotOrder
from paths import REPO

SCRIPT = Path(sys.executable).with_name("orderbook")
ORDERBOOK = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "orderbook.cli"]
FIXTURE = REPO / "fixtures" / "small-capture.jsonl"


def test_parse_faults_reads_every_kind_of_switch() -> None:
    faults = parse_faults("drop_rate=0.25, aggregate,snapshot_lag=3,string_times=false,"
                          "snapshot_order=shuffled,rest_delay=0.5")
    assert (faults.drop_rate, faults.aggregate, faults.snapshot_lag) == (0.25, True, 3)
    assert faults.string_times is False and faults.snapshot_order is SnapshotOrder.SHUFFLED
    assert faults.rest_delay == 0.5
    assert parse_faults("") == parse_faults(" , ")
    for spec, message in (("bogus", "unknown fault 'bogus'; faults are drop_rate"),
                          ("drop_rate", "needs a value"), ("drop_rate=x", "drop_rate=x"),
                          ("drop_rate=1.5", "probability"), ("aggregate=maybe", "is a switch"),
                          ("snapshot_lag=-1", "non-negative int"),
                          ("snapshot_order=sideways", "snapshot_order must be one of")):
        with pytest.raises(UsageError, match=message):
            parse_faults(spec)


def test_bad_venue_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in ((["--faults", "drop_rate=2"], "probability"),
                          (["--rate", "0"], "must be > 0")):
        with pytest.raises(SystemExit) as exit:
            main(["venue", *argv])
        assert exit.value.code == 2
        assert message in capsys.readouterr().err
    assert main(["venue", "--symbols", "SOL_USDC", "SOL_USDC"]) == 2
    assert "each symbol may be given once" in capsys.readouterr().err


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_venue_serves_until_stopped_and_prints_its_urls(signum: int, status: int,
                                                         tmp_path: Path) -> None:
    async def main_() -> None:
        proc = await asyncio.create_subprocess_exec(
            *ORDERBOOK, "venue", "--symbols", "SOL_USDC", "TSLA.US_USDC_PERP", "--port", "0",
            "--rate", "100", "--faults", "aggregate", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None and proc.stderr is not None
        try:
            rest = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
            ws = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
            assert rest[0] == "REST" and re.fullmatch(r"http://127\.0\.0\.1:\d+", rest[1])
            assert ws == ["WebSocket", "ws" + rest[1][4:] + "/"]
            async with httpx.AsyncClient(base_url=rest[1]) as http:
                markets = (await http.get("/api/v1/markets")).json()
                assert [m["symbol"] for m in markets] == ["SOL_USDC", "TSLA.US_USDC_PERP"]
                depth = (await http.get("/api/v1/depth", params={"symbol": "SOL_USDC"})).json()
                assert depth["bids"] and depth["asks"]
                assert (await http.get("/api/v1/securities")).json() == []
                assert {a["symbol"] for a in (await http.get("/api/v1/assets")).json()} == {
                    "SOL", "USDC", "TSLA.US"}
            proc.send_signal(signum)
            assert await asyncio.wait_for(proc.wait(), 30) == status
            err = (await proc.stderr.read()).decode()
            assert "Traceback" not in err and "stopping the simulated venue" in err
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    asyncio.run(asyncio.wait_for(main_(), 60))


@pytest.mark.parametrize("command", ["run", "record"])
def test_ctrl_c_exits_130(command: str, tmp_path: Path) -> None:
    async def main_() -> tuple[int, str, str]:
        async with SimulatedVenue(OrderFlow(["SOL_USDC"], seed=3), rate=100.0) as venue:
            extra = ["-o", str(tmp_path / "x.jsonl")] if command == "record" else []
            proc = await asyncio.create_subprocess_exec(
                *ORDERBOOK, command, "SOL_USDC", *extra, "--rest-url", venue.rest_url,
                "--ws-url", venue.ws_url, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            deadline = time.monotonic() + 30  # only bounds a hang
            while venue.stats.depth_requests < 1:
                assert time.monotonic() < deadline and proc.returncode is None
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            out, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out.decode(), err.decode()

    code, out, err = asyncio.run(asyncio.wait_for(main_(), 60))
    assert code == 130, err
    assert "interrupted: stopped cleanly" in err and "Traceback" not in err
    if command == "record":  # the summary once, on stdout
        assert (out + err).count("recorded ") == 1 and out.startswith("recorded ")


def test_demo_validates_symbols_as_run_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "SOL_USD"]) == 2
    assert "unknown symbol 'SOL_USD'; did you mean SOL_USDC" in capsys.readouterr().err
    assert main(["demo", "SOL_USDC", "SOL_USDC"]) == 2
    assert "each symbol may be given once" in capsys.readouterr().err


def test_replay_shows_a_dash_for_a_missing_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(FIXTURE), "--at", "101"]) == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("SOL_USDC")]
    assert row.split()[:3] == ["SOL_USDC", "waiting", "-"] and "None" not in out


def test_every_long_running_command_documents_its_exit_statuses() -> None:
    for command in ("serve", "venue"):
        done = subprocess.run([*ORDERBOOK, command, "--help"], capture_output=True, text=True,
                              timeout=30)
        assert "SIGINT (exit 130)" in " ".join(done.stdout.split()), command
