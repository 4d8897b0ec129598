"""``orderbook capture upgrade``, ``orderbook export`` and ``replay --at-time``,
in a subprocess, as a user runs them; and the progress bar."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from orderbook.cli import OFFLINE, _command_of, build_parser
from orderbook.cli.capture import ProgressBar
from orderbook.record.reader import read_header
from orderbook.record.replay import replay_capture
from paths import FIXTURES, REPO

FIXTURE = FIXTURES / "small-capture.jsonl"


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "orderbook.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_capture_upgrade(tmp_path: Path) -> None:
    out = tmp_path / "v2.jsonl.gz"
    done = run("capture", "upgrade", str(FIXTURE), str(out))
    assert done.returncode == 0, done.stderr
    assert "format 1" in done.stdout and "format 2" in done.stdout and "10 events" in done.stdout
    header = read_header(out)
    assert header is not None and header.format == 2
    assert replay_capture(out).to_json() == replay_capture(FIXTURE).to_json()
    again = run("capture", "upgrade", str(FIXTURE), str(out))
    assert again.returncode == 2 and "exists (--force to replace it)" in again.stderr
    assert run("capture", "upgrade", str(FIXTURE), str(out), "--force").returncode == 0
    copied = run("capture", "upgrade", str(out), str(tmp_path / "copy.jsonl"))
    assert copied.returncode == 0 and "already format 2" in copied.stdout


def test_capture_upgrade_of_a_corrupt_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(FIXTURE.read_text().splitlines()[0] + "\n{not json\n")
    done = run("capture", "upgrade", str(bad), str(tmp_path / "out.jsonl"))
    assert done.returncode == 2 and "bad.jsonl:2: invalid JSON" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.jsonl").exists()


def test_export(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "books.parquet"
    done = run("export", str(FIXTURE), "-o", str(out), "--levels", "3", "--on-change")
    assert done.returncode == 0, done.stderr
    assert "wrote 5 rows of 2 symbols" in done.stdout and "scale 3" in done.stdout
    assert "rows/s" in done.stdout and done.stderr == ""  # no bar when stderr is no terminal
    table = pq.read_table(out)
    assert table.num_rows == 5 and table.column_names[:4] == ["symbol", "receive_time", "engine_time", "update_id"]
    assert table.column_names[4:7] == ["bid_px_0", "bid_px_1", "bid_px_2"]
    assert run("export", str(FIXTURE), "-o", str(out)).returncode == 2  # exists
    every = run("export", str(FIXTURE), "-o", str(out), "--every", "2us", "--float", "--symbol",
                "SOL_USDC", "--force")
    assert every.returncode == 0, every.stderr
    table = pq.read_table(out)
    assert set(table.column("symbol").to_pylist()) == {"SOL_USDC"} and "float64" in every.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--symbol", "NOPE_USDC"], "NOPE_USDC"),
    (["--every", "soon"], "not an interval"),
    (["--every", "1s", "--on-change"], "not allowed with argument"),
    (["--levels", "0"], "must be > 0"),
])
def test_export_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    pytest.importorskip("pyarrow")
    done = run("export", str(FIXTURE), "-o", str(tmp_path / "x.parquet"), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_export_of_a_corrupt_capture_names_the_line(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    bad = tmp_path / "bad.jsonl"
    lines = FIXTURE.read_text().splitlines()
    bad.write_text("\n".join(lines[:5] + ['{"ts": 1, "kind": "ws", "raw": "x"'] + lines[5:]) + "\n")
    out = tmp_path / "x.parquet"
    done = run("export", str(bad), "-o", str(out))
    assert done.returncode == 2 and "bad.jsonl:6: invalid JSON" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_export_without_pyarrow_says_how_to_get_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['pyarrow'] = None\n"
            "from orderbook.cli import main\n"
            f"sys.exit(main(['export', {str(FIXTURE)!r}, '-o', {str(tmp_path / 'x.parquet')!r}]))")
    done = run(code=code)
    assert done.returncode == 2
    assert "pip install 'orderbook[research]'" in done.stderr and "Traceback" not in done.stderr


def test_replay_at_time(tmp_path: Path) -> None:
    def books(*extra: str) -> dict[str, object]:
        done = run("replay", str(FIXTURE), "--json", *extra)
        assert done.returncode == 0, done.stderr
        return orjson.loads(done.stdout)["symbols"]  # type: ignore[no-any-return]

    assert books("--at-time", "1700000000000007") == replay_capture(FIXTURE, at_time=1700000000000007).to_json()["symbols"]
    assert books("--at-time", "2023-11-14T22:13:20.000007Z") == books("--at-time", "1700000000000007")
    assert books("--at-time", "1700000000000003")["SOL_USDC"]["status"] == "waiting"  # type: ignore[index]
    assert books("--at-time", "1700000000000010") == books()
    bad = run("replay", str(FIXTURE), "--at-time", "whenever")
    assert bad.returncode == 2 and "not a time" in bad.stderr


def test_replay_of_a_corrupt_v2_line_exits_2_with_its_number(tmp_path: Path) -> None:
    v2 = tmp_path / "v2.jsonl"
    assert run("capture", "upgrade", str(FIXTURE), str(v2)).returncode == 0
    lines = v2.read_text().splitlines()
    lines[6] = lines[6][: len(lines[6]) // 2]
    v2.write_text("\n".join(lines) + "\n")
    done = run("replay", str(v2))
    assert done.returncode == 2 and "v2.jsonl:7: invalid JSON" in done.stderr and done.stdout == ""


def test_replay_warns_of_skipped_events(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(FIXTURE.read_bytes() + b'{"kind": "ws", "raw": "{}"}\n')
    done = run("replay", str(path), "--json")
    assert done.returncode == 0 and "1 events with unusable fields were skipped" in done.stderr
    assert orjson.loads(done.stdout) == replay_capture(FIXTURE).to_json()


def test_the_offline_commands_need_no_network_layer() -> None:
    assert _command_of(["--log-level", "DEBUG", "replay", "x"]) == "replay"
    assert _command_of(["--log-json", "export", "x"]) == "export"
    assert _command_of(["--help"]) is None
    assert {"replay", "export", "capture"} == set(OFFLINE)
    offline = build_parser(offline_only=True)
    full = build_parser()
    choices = next(a for a in full._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    few = next(a for a in offline._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    assert set(few) == OFFLINE | {"bench"} and set(choices) > set(few)
    code = ("import sys\nfrom orderbook.cli import main\n"
            f"main(['replay', {str(FIXTURE)!r}, '--json'])\n"
            "heavy = [m for m in ('aiohttp', 'httpx', 'websockets', 'asyncio', 'numpy') if m in sys.modules]\n"
            "print(heavy, file=sys.stderr)")
    done = run(code=code)
    assert done.returncode == 0 and done.stderr.strip() == "[]", done.stderr


# ------------------------------------------------------------ progress bar
def test_progress_bar_draws_only_when_asked_and_erases_itself() -> None:
    stream = io.StringIO()
    quiet = ProgressBar(stream)  # not a terminal
    quiet.update(5, 10, 3)
    assert stream.getvalue() == "" and not quiet.enabled
    bar = ProgressBar(stream, force=True, delay=0.0, interval=0.0)
    bar.update(5, 10, 1234)
    drawn = stream.getvalue()
    assert drawn.startswith("\r[############............]  50%") and "1,234 rows" in drawn
    bar.update(10, 10, 2000)
    assert "100%" in stream.getvalue()
    bar.done()
    assert stream.getvalue().endswith("\r") and not bar.drawn
    off = ProgressBar(stream, force=True, enabled=False)
    off.update(1, 2, 3)
    assert not off.drawn
    slow = ProgressBar(io.StringIO(), force=True, delay=3600.0)
    slow.update(1, 2, 3)  # a short run draws nothing
    assert not slow.drawn
