"""``benchmarks/fuzz.py`` keeps working: a short run is clean, its validator
agrees with the documented rules, a scenario replays step by step."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from orderbook.protocol.decimals import is_decimal_string
from paths import REPO

ROOT = REPO
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz  # noqa: E402  (benchmarks/ is outside the package)


def test_a_short_run_finds_nothing_on_either_path() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--count", "3000",
                           "--workers", "1", "--seed", "5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no failure of any kind" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| native |", "| python |"))]
    assert len(rows) == 2 and all(line.endswith("| 0 | 0 | 0 | 0 | 0 | 0 |") for line in rows)
    assert "native/pure differences: 0 scenarios" in done.stdout


def test_the_validator_follows_the_documented_value_bound() -> None:
    rng = random.Random(3)
    for _ in range(20_000):
        value = "".join(rng.choice("0123456789.") for _ in range(rng.randint(0, 45)))
        valid = fuzz.judge_decimal(value, "quantity", positive=False)[0] is fuzz.Verdict.VALID
        assert valid == is_decimal_string(value), value


@pytest.mark.parametrize(("data", "rule"), [
    ({"E": -1}, "E negative"),
    ({"T": 1.5}, "T of type float"),
    ({"U": "9" * 20}, "U of more than 19 digits"),
    ({"s": "SPCX.US_USDC"}, "s is not the stream's symbol"),
    ({"b": [["0.0", "1"]]}, "b price zero"),
    ({"a": [["1." + "0" * 4400 + "1", "1"]]}, "a price beyond 20 digits before the point or 18 after"),
    ({"U": 9, "u": 8}, "U > u"),
])
def test_the_validator_refuses_what_the_rules_refuse(data: dict[str, object], rule: str) -> None:
    frame = {"stream": "depth.TSLA.US_USDC_PERP", "data": {
        "e": "depth", "E": 1, "T": 1, "U": 5, "u": 6, "s": "TSLA.US_USDC_PERP", "a": [], "b": [], **data}}
    judged = fuzz.judge_frame(frame)
    assert (judged.verdict, judged.rule, judged.symbol) == (fuzz.Verdict.INVALID, rule, "TSLA.US_USDC_PERP")
    del frame["data"]["s"]  # type: ignore[attr-defined]
    frame["data"] = {"e": "depth", "E": 1, "T": 1, "U": 5, "u": 6, "a": [["1.5", "0.000"]], "b": []}
    assert fuzz.judge_frame(frame).verdict is fuzz.Verdict.VALID


def test_a_scenario_replays_step_by_step() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--replay", "1:7"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--- native path" in done.stdout and "--- python path" in done.stdout
    assert "step 0:" in done.stdout
