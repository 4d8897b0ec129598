"""The ``orderbook`` command line: help, demo, run, record, replay, bench, logging.

Live commands run as real subprocesses (``orderbook`` console script) against
the simulated venue on loopback; nothing of the package is replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderbook.cli import JsonFormatter, build_parser, main, setup_logging
from orderbook.testing.venue import OrderFlow, SimulatedVenue
from paths import REPO

FIXTURE = REPO / "fixtures" / "small-capture.jsonl"
SCRIPT = Path(sys.executable).with_name("orderbook")
ORDERBOOK = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "orderbook.cli"]
SYMBOLS = ["SOL_USDC", "SPCX.US_USDC"]  # a dotted symbol, as the venue lists tokenized equities
PRICE_ROW = re.compile(r"^\s*\d+\.\d+\s+\d+(\.\d+)?\s", re.M)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main()`` configures logging for the process: undo it after each test (its
    handler writes to this test's captured stderr, closed afterwards)."""
    root, package = logging.getLogger(), logging.getLogger("orderbook")
    saved = root.handlers[:], root.level, package.level
    yield
    root.handlers = saved[0]
    root.setLevel(saved[1])
    package.setLevel(saved[2])


def commands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def frames_of(output: str) -> list[str]:
    """The plain frames printed by the view, in order (each starts with its header line)."""
    return [frame for frame in re.split(r"(?m)^(?=orderbook  )", output) if frame]


# ----------------------------------------------------------------------- help
def test_the_commands_of_the_issue_exist() -> None:
    assert {"demo", "run", "record", "replay", "bench"} <= set(commands())


@pytest.mark.parametrize("command", ["", *commands()])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"] if command else ["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: orderbook") and "--log-level" in out and "--log-json" in out


def test_bad_option_values_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["demo", "--levels", "0"], ["demo", "--duration", "soon"], ["run"],
                 ["record", "SOL_USDC"], ["--log-level", "chatty", "demo"]):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2, argv
    capsys.readouterr()


# ----------------------------------------------------------------------- demo
def test_demo_shows_a_live_book_within_seconds_when_not_a_terminal() -> None:
    done = subprocess.run([*ORDERBOOK, "demo", "--duration", "3", "--levels", "5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # a pipe gets plain frames
    frames = frames_of(out)
    assert 3 <= len(frames) <= 5  # one a second, and the last one
    assert any("synced" in frame for frame in frames[1:-1])  # live while it runs, not only at the end
    last = frames[-1]
    assert last.count("synced") == 2 and "SOL_USDC" in last and "BTC_USDC_PERP" in last
    assert len(PRICE_ROW.findall(last)) == 10  # 5 asks + 5 bids, side by side
    assert re.search(r"spread \d+\.\d+  mid \d+\.\d+", last)
    assert re.search(r"[1-9]\d* upd/s", last) and "gaps 0" in last


def test_demo_stops_cleanly_on_sigint() -> None:
    proc = subprocess.Popen([*ORDERBOOK, "demo", "--levels", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    hang = threading.Timer(60, proc.kill)  # only bounds a hang
    hang.start()
    try:
        # Interrupt once a synced book is shown (the signal handlers are in place
        # by then), not after a fixed sleep a slow start may outlast.
        assert proc.stdout is not None
        shown = ""
        while "synced" not in shown and (line := proc.stdout.readline()):
            shown += line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        out = shown + out
    finally:
        hang.cancel()
        proc.kill()
    assert proc.returncode == 130, err  # Ctrl-C: 128 + SIGINT, as shells report it
    assert "synced" in out and "Traceback" not in err
    assert "interrupted: stopped cleanly" in err


def test_log_json_emits_one_json_object_per_line() -> None:
    done = subprocess.run([*ORDERBOOK, "--log-json", "demo", "--duration", "1", "--drop-rate", "0.05"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "orderbook.replicator" and r["message"].startswith("replicating 2 symbols")
               for r in records)
    assert any(r["level"] == "WARNING" and "sequence gap" in r["message"] for r in records)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", records[0]["time"])


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("orderbook.test").makeRecord(
            "orderbook.test", logging.ERROR, __file__, 1, "gap on %s", ("SOL_USDC",),
            sys.exc_info(), extra={"symbol": "SOL_USDC", "update_id": 105, "odd": object()})
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "gap on SOL_USDC" and doc["level"] == "ERROR"
    assert doc["logger"] == "orderbook.test"
    assert doc["symbol"] == "SOL_USDC" and doc["update_id"] == 105
    assert doc["odd"].startswith("<object") and "ValueError: boom" in doc["exc"]
    assert "args" not in doc and "msg" not in doc


def test_log_level_applies_to_the_package_and_libraries_stay_at_warning() -> None:
    setup_logging("INFO")
    assert logging.getLogger("orderbook.replicator").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    setup_logging("DEBUG", json=True)
    assert logging.getLogger("websockets").getEffectiveLevel() == logging.DEBUG
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
    setup_logging("ERROR")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.ERROR


# --------------------------------------------------------------- run / record
def run_against_venue(argv: list[str], *, stop_after: float | None = None,
                      ) -> tuple[int, str, str]:
    """Run ``orderbook ARGV --rest-url .. --ws-url ..`` against a simulated venue in
    this process; with ``stop_after``, send SIGTERM that many seconds after the
    command fetched a snapshot of every symbol (a slow start is waited for)."""

    async def main() -> tuple[int, str, str]:
        async with SimulatedVenue(OrderFlow(SYMBOLS, seed=4), rate=200.0) as venue:
            proc = await asyncio.create_subprocess_exec(
                *ORDERBOOK, *argv, "--rest-url", venue.rest_url, "--ws-url", venue.ws_url,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if stop_after is not None:
                deadline = time.monotonic() + 30  # only bounds a hang
                while venue.stats.depth_requests < len(SYMBOLS) and proc.returncode is None:
                    assert time.monotonic() < deadline, "no snapshot requested"
                    await asyncio.sleep(0.02)
                await asyncio.sleep(stop_after)
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            out, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out.decode(), err.decode()

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_run_shows_the_venue_books() -> None:
    code, out, err = run_against_venue(["run", *SYMBOLS, "--duration", "1.5", "--levels", "3"])
    assert code == 0, err
    last = frames_of(out)[-1]
    assert last.count("synced") == 2 and len(PRICE_ROW.findall(last)) == 6
    assert "SPCX.US_USDC" in last


def test_run_refuses_an_unknown_symbol_with_close_matches() -> None:
    code, out, err = run_against_venue(["run", "SOL_USD", "--duration", "1"])
    assert code == 2
    assert "unknown symbol 'SOL_USD'" in err and "SOL_USDC" in err and "Traceback" not in err


def table(text: str) -> list[str]:
    """The book summary table (header and one row per symbol) in a command's output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("symbol "))
    return lines[start : start + 1 + len(SYMBOLS)]


@pytest.mark.parametrize("how", ["--duration", "SIGTERM"])
def test_record_then_replay_prints_the_same_books(how: str, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl.gz"
    argv = ["record", *SYMBOLS, "-o", str(path)]
    if how == "--duration":
        code, out, err = run_against_venue([*argv, "--duration", "2"])
    else:
        code, out, err = run_against_venue(argv, stop_after=1.0)
    assert code == 0, err
    assert re.match(rf"recorded \d+ frames and [2-9]\d* depth responses to {re.escape(str(path))}", out)
    recorded = table(out)
    assert [row.split()[:2] for row in recorded[1:]] == [["SOL_USDC", "synced"],
                                                         ["SPCX.US_USDC", "synced"]]

    replayed = subprocess.run([*ORDERBOOK, "replay", str(path)], capture_output=True, text=True,
                              timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert table(replayed.stdout) == recorded  # ids, touch, depth and counters


def test_record_does_not_replace_a_file_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "kept.jsonl"
    path.write_text("precious\n")
    code, out, err = run_against_venue(["record", "SOL_USDC", "-o", str(path), "--duration", "1"])
    assert code == 2 and "exists (--force to replace it)" in err
    assert path.read_text() == "precious\n"
    code, out, err = run_against_venue(["record", "SOL_USDC", "-o", str(path), "--duration", "1",
                                        "--force"])
    assert code == 0, err
    assert path.read_text().startswith('{"kind":"header","format":2,')  # a format 2 capture


# ------------------------------------------------------ failures that speak
def run_with_rest_url(argv: list[str]) -> tuple[int, str, str, float]:
    """Run ``orderbook ARGV --rest-url VENUE`` (the WebSocket URL is the test's)
    against a simulated venue; return the status, stdout, stderr and seconds taken."""

    async def main() -> tuple[int, str, str, float]:
        async with SimulatedVenue(OrderFlow(SYMBOLS, seed=4), rate=100.0) as venue:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *ORDERBOOK, *argv, "--rest-url", venue.rest_url,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out.decode(), err.decode(), time.monotonic() - started

    return asyncio.run(asyncio.wait_for(main(), 60))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("orderbook: error:")]


@pytest.mark.parametrize("command", ["run", "record"])
def test_a_websocket_url_with_an_http_scheme_exits_2_at_once(command: str, tmp_path: Path) -> None:
    """Regression: the UsageError was raised in a background task nobody read,
    and the command hung until --duration (or forever)."""
    url = "http://127.0.0.1:9"
    extra = ["-o", str(tmp_path / "x.jsonl")] if command == "record" else []
    code, out, err, seconds = run_with_rest_url(
        [command, "SOL_USDC", *extra, "--ws-url", url, "--duration", "30"])
    assert code == 2, err
    assert seconds < 5  # the issue's bound
    assert error_lines(err) == [f"orderbook: error: invalid WebSocket URL {url!r}: scheme isn't ws "
                                "or wss (expected ws://HOST[:PORT]/ or wss://...)"]
    assert "Traceback" not in err and not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("command", ["run", "record"])
def test_a_websocket_that_never_connects_exits_2_after_the_connect_timeout(
    command: str, tmp_path: Path,
) -> None:
    """Regression: ``run ... --duration 30`` retried a refused WebSocket for 30 s,
    then exited 0 without ever syncing."""
    with socket.socket() as refusing:  # bound, not listening: connections are refused
        refusing.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{refusing.getsockname()[1]}/"
        extra = ["-o", str(tmp_path / "x.jsonl")] if command == "record" else []
        code, out, err, seconds = run_with_rest_url(
            [command, "SOL_USDC", "SPCX.US_USDC", *extra, "--ws-url", url, "--connect-timeout", "2",
             "--duration", "30"])
    assert code == 2, err
    assert 2 <= seconds < 30  # it tried for the give-up time, and did not wait for --duration
    [line] = error_lines(err)
    assert line.startswith(f"orderbook: error: could not connect to {url} within 2 s (")
    assert "last: connect failed: ConnectionRefusedError" in line
    assert f"stream {url}: connect failed" in err  # each failed attempt was logged with the URL
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "record"])
def test_a_duration_shorter_than_the_connect_timeout_still_exits_2_if_never_connected(
    command: str, tmp_path: Path,
) -> None:
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{refusing.getsockname()[1]}/"
        extra = ["-o", str(tmp_path / "x.jsonl")] if command == "record" else []
        code, out, err, seconds = run_with_rest_url(
            [command, "SPCX.US_USDC", *extra, "--ws-url", url, "--duration", "1.5"])
    assert code == 2, err
    assert seconds < 30  # the default give-up time was not waited for
    [line] = error_lines(err)
    assert line.startswith(f"orderbook: error: never connected to {url} in 1.5 s; last: connect failed: ")
    assert "Traceback" not in err


def test_the_literal_port_9_of_the_issue_fails_the_same_way() -> None:
    code, out, err, seconds = run_with_rest_url(
        ["run", "SOL_USDC", "--ws-url", "ws://127.0.0.1:9/", "--connect-timeout", "1"])
    assert code == 2, err
    assert 1 <= seconds < 30
    assert "could not connect to ws://127.0.0.1:9/ within 1 s" in err and "Traceback" not in err


def test_an_unreachable_rest_url_exits_2_naming_it() -> None:
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{refusing.getsockname()[1]}"
        done = subprocess.run([*ORDERBOOK, "run", "SOL_USDC", "--rest-url", url],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    [line] = error_lines(done.stderr)
    assert f"GET {url}/api/v1/markets" in line and "Traceback" not in done.stderr


def test_connect_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["run", "SOL_USDC", "--connect-timeout", "0"])
    assert exit.value.code == 2
    assert "--connect-timeout: must be > 0" in capsys.readouterr().err


# --------------------------------------------------------------------- replay
def test_replay_at_an_update_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(FIXTURE), "--at", "105", "--json"]) == 0
    symbols = json.loads(capsys.readouterr().out)["symbols"]
    assert symbols["SOL_USDC"]["last_update_id"] == 105
    assert symbols["SOL_USDC"]["bids"][0] == ["21.800", "11"]
    assert symbols["SOL_USDC"]["asks"][0] == ["21.905", "2"]

    assert main(["replay", str(FIXTURE), "--at", "105", "--symbol", "SOL_USDC", "--levels", "2"]) == 0
    out = capsys.readouterr().out
    assert "BTC_USDC " not in out
    assert re.search(r"SOL_USDC\s+synced\s+105\s+21.800 x 11\s+21.905 x 2", out)
    assert "spread 0.105  mid 21.8525" in out and "21.750" in out and "21.700" not in out

    assert main(["replay", str(FIXTURE), "--at", "101", "--json", "--symbol", "SOL_USDC"]) == 0
    assert json.loads(capsys.readouterr().out) == {"symbols": {"SOL_USDC": {
        "status": "waiting", "last_update_id": None, "bids": [], "asks": [], "frames_applied": 0,
        "frames_dropped": 0, "gaps": 0, "resyncs": 0, "bad_frames": 0}}}


def test_replay_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["replay", str(FIXTURE), "--symbol", "SOL_USD"]) == 2
    assert "did you mean SOL_USDC" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "capture file not found" in capsys.readouterr().err


def test_global_options_are_accepted_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["replay", "x", "--log-level", "debug", "--log-json"])
    assert (args.log_level, args.log_json) == ("DEBUG", True)
    args = build_parser().parse_args(["--log-level", "error", "replay", "x"])
    assert (args.log_level, args.log_json) == ("ERROR", False)


# ---------------------------------------------------------------------- bench
def test_bench_prints_the_harness_table() -> None:
    done = subprocess.run([*ORDERBOOK, "bench", "--frames", "500", "--no-ccxt"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| contender | frames/s |" in done.stdout
    assert "ours: parse_frame + SymbolSync" in done.stdout
