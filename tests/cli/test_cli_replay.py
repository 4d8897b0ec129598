"""``orderbook replay`` end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import gzip
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from paths import REPO, CAPTURES

ROOT = REPO
FIXTURE = ROOT / "fixtures" / "small-capture.jsonl"
CAPTURES = CAPTURES
BINANCE = CAPTURES / "real-binance-spot-2021-10-12.jsonl"
DOCUMENTED_KEYS = {
    "status", "last_update_id", "bids", "asks", "frames_applied", "frames_dropped", "gaps", "resyncs", "bad_frames",
}

LAUNCHERS = {"python -m orderbook.cli": [sys.executable, "-m", "orderbook.cli"]}
_script = Path(sys.executable).parent / "orderbook"
if _script.exists():
    LAUNCHERS["console script"] = [str(_script)]


def run(*args: str, launcher: str = "python -m orderbook.cli") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAUNCHERS[launcher], *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def replay_json(path: Path | str, *extra: str, launcher: str = "python -m orderbook.cli") -> dict[str, Any]:
    done = run("replay", str(path), "--json", *extra, launcher=launcher)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, "--json prints exactly one line"
    document = orjson.loads(lines[0])
    assert isinstance(document, dict) and set(document) == {"symbols"}
    return document


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_replay_json_document(launcher: str) -> None:
    symbols = replay_json(FIXTURE, launcher=launcher)["symbols"]
    assert list(symbols) == ["BTC_USDC", "SOL_USDC"]  # sorted by name
    for document in symbols.values():
        assert set(document) == DOCUMENTED_KEYS
        for side, descending in (("bids", True), ("asks", False)):
            levels = document[side]
            assert all(type(p) is str and type(q) is str for p, q in levels)  # exact strings, not floats
            prices = [Decimal(p) for p, _ in levels]
            assert prices == sorted(prices, reverse=descending)  # best first
    sol = symbols["SOL_USDC"]
    assert sol["status"] == "synced" and sol["last_update_id"] == 107
    assert sol["bids"] == [["21.850", "0.5"], ["21.800", "11"], ["21.750", "1.5"], ["21.700", "5"]]
    assert sol["asks"] == [["21.905", "2"], ["22.000", "7.25"]]
    assert (sol["frames_applied"], sol["frames_dropped"], sol["gaps"], sol["resyncs"], sol["bad_frames"]) == (
        3, 1, 0, 0, 0,
    )
    assert symbols["BTC_USDC"]["asks"] == [["30001.0", "1"], ["30002.0", "4"]]


def test_replay_table() -> None:
    done = run("replay", str(FIXTURE))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines[0].split()
    for column in ("symbol", "status", "bids", "asks", "applied", "dropped", "gaps", "resyncs", "bad"):
        assert column in header
    rows = {line.split()[0]: line for line in lines[1:] if line.strip()}
    assert set(rows) == {"BTC_USDC", "SOL_USDC"}
    sol = rows["SOL_USDC"].split()
    assert "synced" in sol and "107" in sol
    assert "21.850 x 0.5" in rows["SOL_USDC"] and "21.905 x 2" in rows["SOL_USDC"]
    assert "30000.0 x 3" in rows["BTC_USDC"] and "30001.0 x 1" in rows["BTC_USDC"]
    assert not done.stdout.lstrip().startswith("{")


def test_replay_at_stops_at_an_update_id() -> None:
    symbols = replay_json(FIXTURE, "--at", "105")["symbols"]
    assert symbols["SOL_USDC"]["last_update_id"] == 105
    assert symbols["SOL_USDC"]["bids"] == [["21.800", "11"], ["21.750", "1.5"], ["21.700", "5"]]
    assert symbols["SOL_USDC"]["asks"] == [["21.905", "2"], ["22.000", "3"]]
    assert symbols["BTC_USDC"]["last_update_id"] == 13
    symbols = replay_json(FIXTURE, "--at", "103")["symbols"]
    assert symbols["SOL_USDC"]["last_update_id"] == 102  # 102..104 cannot be split


def test_replay_gz(tmp_path: Path) -> None:
    gz = tmp_path / "capture.jsonl.gz"
    gz.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert replay_json(gz) == replay_json(FIXTURE)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    done = run("replay", str(missing), "--json")
    assert done.returncode != 0
    assert done.stdout == ""
    assert "not found" in done.stderr and str(missing) in done.stderr
    assert "Traceback" not in done.stderr


def test_corrupt_capture_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(FIXTURE.read_text().splitlines()[0] + "\n{not json\n")
    done = run("replay", str(bad))
    assert done.returncode != 0
    assert "bad.jsonl:2" in done.stderr and "Traceback" not in done.stderr


def _truncated_gzip() -> bytes:
    whole = gzip.compress(FIXTURE.read_bytes())
    return whole[: len(whole) - 12]  # the deflate end and the trailer are gone


def _corrupt_gzip() -> bytes:
    whole = bytearray(gzip.compress(FIXTURE.read_bytes()))
    whole[len(whole) - 6] ^= 0xFF  # the CRC/size trailer no longer matches
    return bytes(whole)


BROKEN_FILES = {
    "truncated.jsonl.gz": (_truncated_gzip, "truncated.jsonl.gz: truncated or corrupt gzip data after line"),
    "corrupt.jsonl.gz": (_corrupt_gzip, "corrupt.jsonl.gz: truncated or corrupt gzip data after line"),
    "empty.jsonl": (lambda: b"", "empty.jsonl: no capture events"),
    "empty.jsonl.gz": (lambda: gzip.compress(b""), "empty.jsonl.gz: no capture events"),
    "other.json": (lambda: b'{"asks": [], "bids": [], "lastUpdateId": 1}\n', "other.json: no capture events"),
    "header-only.jsonl": (lambda: b'{"kind": "header", "format": 2}\n', "header-only.jsonl: no capture events"),
    "binary.jsonl": (lambda: b"\x00\xff\xfe garbage\n", "binary.jsonl:1: not UTF-8 text"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_FILES))
@pytest.mark.parametrize("json_output", [False, True])
def test_a_file_that_is_no_capture_exits_nonzero_with_one_line(
    name: str, json_output: bool, tmp_path: Path,
) -> None:
    """Regression: an empty file, an empty gzip or JSON holding no capture
    event printed an empty table and exited 0; a truncated gzip ended in a raw
    EOFError traceback."""
    content, message = BROKEN_FILES[name]
    path = tmp_path / name
    path.write_bytes(content())
    done = run("replay", str(path), *(["--json"] if json_output else []))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("orderbook: error: ")
    assert f"{tmp_path}/{message}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_gzip_capture_is_read_whatever_its_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "capture.jsonl"
    misnamed.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert replay_json(misnamed) == replay_json(FIXTURE)


def test_usage_errors_exit_nonzero() -> None:
    assert run("replay").returncode != 0  # no path
    assert run("replay", str(FIXTURE), "--at", "soon").returncode != 0


@pytest.mark.skipif(not BINANCE.exists(), reason=f"{BINANCE} is absent")
def test_replay_real_capture_nkn() -> None:
    nkn = replay_json(BINANCE)["symbols"]["NKN_USDT"]
    assert nkn["status"] == "synced" and nkn["last_update_id"] == 499870179
    assert nkn["bids"][0] == ["0.35270000", "9602.00000000"]
    assert nkn["asks"][0] == ["0.35310000", "152.00000000"]
    assert (len(nkn["bids"]), len(nkn["asks"])) == (614, 994)
    assert (nkn["gaps"], nkn["resyncs"], nkn["bad_frames"]) == (0, 0, 0)
    table = run("replay", str(BINANCE))
    row = next(line for line in table.stdout.splitlines() if line.startswith("NKN_USDT"))
    assert "0.35270000 x 9602.00000000" in row and "0.35310000 x 152.00000000" in row
