"""The README's offline examples, run as written from this checkout.

* ``orderbook replay fixtures/simulated-capture.jsonl`` prints exactly the table the README shows;
* ``orderbook venue ...`` and ``orderbook serve ...`` are run with the README's arguments,
  and one override each: ``--port 0`` (a free port: the machine is shared, 8764/8765 may be
  taken) and, for ``serve``, the venue's actual URLs; their first lines are the README's but
  for the port;
* the ccxt script block is written to a file as it is and run against both, with the URL as
  its argument, the way the README says to run it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from paths import REPO

README = (REPO / "README.md").read_text()
SCRIPT = Path(sys.executable).with_name("orderbook")
ORDERBOOK = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "orderbook.cli"]


def shell_example(command: str) -> tuple[list[str], list[str]]:
    """The README's ``    $ orderbook COMMAND ...`` line starting with ``command``: its
    arguments (after ``orderbook``) and the output lines shown under it."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"    $ orderbook {command}"))
    argv = shlex.split(lines[start][len("    $ "):])[1:]
    shown = []
    for line in lines[start + 1:]:
        if not line.startswith("    ") or line.startswith("    $ "):
            break
        shown.append(line[4:])
    return argv, shown


def python_block(marker: str) -> str:
    """The fenced python block right after the ``<!-- marker ...`` comment."""
    found = re.search(rf"<!-- {re.escape(marker)}[^\n]*-->\n```python\n(.*?)```", README, re.S)
    assert found, f"no python block after <!-- {marker} --> in the README"
    return found.group(1)


def test_the_readme_replay_example_prints_what_the_readme_shows() -> None:
    argv, shown = shell_example("replay")
    assert argv == ["replay", "fixtures/simulated-capture.jsonl"]
    done = subprocess.run([*ORDERBOOK, *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == shown
    assert (REPO / argv[1]).stat().st_size < 200_000  # small enough to ship
    assert all(row.split()[1] == "synced" for row in shown[1:])


async def _start(argv: list[str], log: Path) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start ``orderbook ARGV``; return it and its first two stdout lines (or one for serve)."""
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *ORDERBOOK, *argv, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    count = 2 if argv[0] == "venue" else 1
    lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode().rstrip("\n")
             for _ in range(count)]
    return proc, lines


async def _stop(proc: asyncio.subprocess.Process, signum: int, expected: int) -> None:
    if proc.returncode is None:
        proc.send_signal(signum)
    assert await asyncio.wait_for(proc.wait(), 30) == expected


def _ports_free(text: str) -> str:
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)


async def _ccxt_script(path: Path, url: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(path), url, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()


def _check_ccxt_output(lines: list[str]) -> None:
    """One REST line then three WebSocket lines: ``KIND nonce [bid, qty] [ask, qty]``."""
    assert [line.split()[0] for line in lines] == ["REST", "WebSocket", "WebSocket", "WebSocket"]
    nonces = []
    for line in lines:
        found = re.fullmatch(r"\w+ +(\d+) \[([\d.]+), ([\d.]+)\] \[([\d.]+), ([\d.]+)\]", line)
        assert found, line
        nonces.append(int(found.group(1)))
        assert float(found.group(2)) < float(found.group(4))  # bid below ask
    assert nonces == sorted(nonces) and nonces[1] < nonces[3]


def test_the_readme_venue_serve_and_ccxt_examples_work_as_written(tmp_path: Path) -> None:
    script = tmp_path / "ccxt_example.py"
    script.write_text(python_block("ccxt-example"))
    venue_argv, venue_shown = shell_example("venue")
    serve_argv, serve_shown = shell_example("serve")

    async def main() -> None:
        venue, venue_lines = await _start([*venue_argv, "--port", "0"], tmp_path / "venue.log")
        try:
            assert [_ports_free(line) for line in venue_lines] == [_ports_free(line) for line in venue_shown]
            rest, ws = venue_lines[0].split()[1], venue_lines[1].split()[1]
            _check_ccxt_output(await _ccxt_script(script, rest))

            serve, serve_lines = await _start(
                [*serve_argv, "--port", "0", "--rest-url", rest, "--ws-url", ws], tmp_path / "serve.log")
            try:
                assert [_ports_free(line) for line in serve_lines] == [_ports_free(s) for s in serve_shown]
                mirror = serve_lines[0].split()[2]
                _check_ccxt_output(await _ccxt_script(script, mirror))
            finally:
                await _stop(serve, signal.SIGINT, 130)  # Ctrl-C
        finally:
            await _stop(venue, signal.SIGTERM, 0)
    asyncio.run(asyncio.wait_for(main(), 240))
    for log in ("venue.log", "serve.log"):
        assert "Traceback" not in (tmp_path / log).read_text(), log
