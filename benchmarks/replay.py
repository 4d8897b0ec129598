"""Whole-job replay and export of a 200,000-frame capture, side by side with a reference-style replay.

    .venv/bin/python benchmarks/replay.py                      # 200,000 frames, 5 repetitions
    .venv/bin/python benchmarks/replay.py --frames 20000 --repeat 3
    .venv/bin/python benchmarks/replay.py --baseline /tmp/base  # also the code of another checkout

What is timed, each as its own process (interpreter start, imports, reading
the file, replaying, printing the books), CPU time (user + sys of the child,
``resource.getrusage``: on a shared machine it leaves out the time other
processes hold the CPU) and wall time:

* ``orderbook replay --json`` of the capture in format 2 and in format 1;
* ``benchmarks/reference_replay.py`` (orjson + ``SortedDict[Decimal]``) of the
  same two files;
* with ``--baseline DIR``, ``python -m orderbook.cli replay --json`` run from
  another checkout (``PYTHONPATH=DIR``), e.g. the code before this change;
* ``orderbook export --levels 10 --on-change`` of the format 2 file, with its
  rows per second (rows / the command's CPU time; the command's own figure,
  which leaves out the interpreter start, is shown too).

The runs are interleaved (one of each per repetition, in a rotating order)
so that load bursts hit every contender alike; medians are reported, with
the spread.  Every replay's document is checked against the reference's
books (levels and update ids) before anything is timed.

The capture: :func:`orderbook.bench.harness.make_workload` (the hot-path
benchmark's seeded session: a 1000-level snapshot, 1-6 levels per frame, 25%
deletes, a moving mid), as a REST snapshot event then one ``ws`` event per
frame, received 300-1300 µs after its engine time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orderbook.bench.harness import machine_info, make_workload  # noqa: E402

PYTHON = sys.executable
ORDERBOOK = [PYTHON, "-m", "orderbook.cli"]


def write_captures(frames: int, seed: int, directory: Path) -> tuple[Path, Path]:
    """The workload as a format 2 and a format 1 capture."""
    workload = make_workload(frames, seed)
    symbol = workload.symbol
    v1, v2 = directory / "bench-v1.jsonl", directory / "bench-v2.jsonl"
    started = int(workload.snapshot["timestamp"])
    rest = {"ts": started + 500, "kind": "rest", "method": "GET", "path": "/api/v1/depth",
            "query": {"symbol": symbol, "limit": "1000"}, "status": 200, "body": workload.snapshot}
    header = {"kind": "header", "format": 2, "recorder": "benchmarks/replay.py",
              "rest_url": None, "ws_url": None, "streams": [f"depth.{symbol}"],
              "options": {"symbols": [symbol], "depth_stream": "depth", "snapshot_limit": 1000},
              "ts": started}
    dumps, loads = orjson.dumps, orjson.loads
    with open(v1, "wb") as one, open(v2, "wb") as two:
        two.write(dumps(header) + b"\n")
        one.write(dumps(rest) + b"\n")
        two.write(dumps(rest) + b"\n")
        for number, raw in enumerate(workload.frames):
            frame = loads(raw)
            ts = int(frame["data"]["T"]) + 300 + number % 1000
            one.write(dumps({"ts": ts, "kind": "ws", "frame": frame}) + b"\n")
            two.write(dumps({"ts": ts, "kind": "ws", "raw": raw.decode()}) + b"\n")
    return v2, v1


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, stdout) of one run of ``command`` (from the
    checkout that ``env``'s ``PYTHONPATH`` names, else from this one: ``-m``
    puts the working directory first on the path)."""
    cwd = env["PYTHONPATH"] if env and "PYTHONPATH" in env else REPO
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.stdout


def books(document: str) -> dict[str, Any]:
    """Levels (as Decimals) and update id per symbol of a replay document."""
    parsed = orjson.loads(document)["symbols"]
    return {symbol: (book["last_update_id"],
                     [(Decimal(p), Decimal(q)) for p, q in book["bids"]],
                     [(Decimal(p), Decimal(q)) for p, q in book["asks"]])
            for symbol, book in parsed.items()}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000, help="frames in the capture (200,000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of every run (5)")
    parser.add_argument("--seed", type=int, default=20_240_611, help="workload seed")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also time `python -m orderbook.cli replay` from this checkout")
    parser.add_argument("--dir", type=Path, help="where to write the captures (default: a temp dir)")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.dir or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        v2, v1 = write_captures(args.frames, args.seed, directory)
        reference = [PYTHON, str(REPO / "benchmarks" / "reference_replay.py")]
        runs: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "orderbook replay --json, format 2": ([*ORDERBOOK, "replay", str(v2), "--json"], None),
            "reference style, format 2": ([*reference, str(v2)], None),
            "orderbook replay --json, format 1": ([*ORDERBOOK, "replay", str(v1), "--json"], None),
            "reference style, format 1": ([*reference, str(v1)], None),
        }
        if args.baseline is not None:
            env = dict(os.environ, PYTHONPATH=str(args.baseline.resolve()))
            for version, path in (("2", v2), ("1", v1)):
                runs[f"baseline replay --json, format {version}"] = (
                    [PYTHON, "-m", "orderbook.cli", "replay", str(path), "--json"], env)
        parquet = directory / "bench.parquet"
        export = [*ORDERBOOK, "export", str(v2), "-o", str(parquet), "--levels", "10", "--on-change",
                  "--force", "--no-progress"]
        # exactness first: every replay agrees with the reference
        truth = books(timed(runs["reference style, format 1"][0])[2])
        for name, (command, env) in runs.items():
            if "format 2" in name and name.startswith("baseline"):
                continue  # the code before format 2 cannot read it
            got = books(timed(command, env)[2])
            if got != truth:
                raise SystemExit(f"{name}: the books differ from the reference's")
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu["export"], wall["export"] = [], []
        rows, own = 0, []
        names = list(runs) + ["export"]
        # the runs compared go back to back, in alternating order, so that a
        # burst of load on the shared machine hits both: ratios are per pair
        pairs = [("orderbook replay --json, format 2", "reference style, format 2"),
                 ("orderbook replay --json, format 1", "reference style, format 1")]
        if args.baseline is not None:
            pairs.append(("orderbook replay --json, format 1", "baseline replay --json, format 1"))
        ratios: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        for repetition in range(args.repeat):
            for pair in pairs:
                measured = {}
                for name in (pair if repetition % 2 == 0 else pair[::-1]):
                    seconds, elapsed, _ = timed(*runs[name])
                    measured[name] = seconds
                    cpu[name].append(seconds)
                    wall[name].append(elapsed)
                ratios[pair].append(measured[pair[1]] / measured[pair[0]])
            seconds, elapsed, out = timed(export)
            rows = int(out.split()[1].replace(",", ""))
            own.append(float(out.split(" in ")[1].split()[0]))
            cpu["export"].append(seconds)
            wall["export"].append(elapsed)
            print(f"[{time.perf_counter() - started:6.1f} s] repetition {repetition + 1} done",
                  file=sys.stderr, flush=True)
    lines = [f"Command: `{shlex.join(['.venv/bin/python', 'benchmarks/replay.py', *(argv or sys.argv[1:])])}` "
             f"({time.perf_counter() - started:.0f} s), {args.frames:,} frames, "
             f"{args.repeat} repetitions, median (min-max)", "", machine_info(), "",
             "| run | CPU | wall |", "|---|---:|---:|"]
    for name in names:
        if cpu[name]:
            lines.append(f"| {name} | {summary(cpu[name])} | {summary(wall[name])} |")
    def ratio(pair: tuple[str, str]) -> str:
        values = ratios[pair]
        return f"{statistics.median(values):.2f}x (per pair: {min(values):.2f}-{max(values):.2f})"

    lines += ["", "Ratios: CPU time of the second run over the first, per repetition (the two ran back "
                  "to back), median and range:", "",
              f"- format 2: orderbook is **{ratio(pairs[0])}** the speed of the reference style",
              f"- format 1: orderbook is {ratio(pairs[1])} the speed of the reference style"]
    if args.baseline is not None:
        lines.append(f"- format 1: orderbook is {ratio(pairs[2])} the speed of the baseline checkout "
                     "(the code before format 2)")
    export_cpu = statistics.median(cpu["export"])
    lines.append(f"- export --levels 10 --on-change: {rows:,} rows, **{rows / export_cpu:,.0f} rows/s** "
                 f"(whole job, CPU), {rows / statistics.median(own):,.0f} rows/s by the command's own "
                 "clock (without interpreter start and imports)")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
