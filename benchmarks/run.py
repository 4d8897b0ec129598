"""Run the benchmark harness and print its markdown report.

    .venv/bin/python benchmarks/run.py                    # 200,000 frames, 5 repetitions
    .venv/bin/python benchmarks/run.py --quick            # 20,000 frames, 3 repetitions
    .venv/bin/python -m benchmarks.run --frames 50000 --repeat 3 --seed 7 --output /tmp/r.md

The harness itself lives in :mod:`orderbook.bench.harness` (so that the installed
``orderbook bench`` command can run it too); this script adds the command
line, progress on stderr and the exact command in the report.  See
``benchmarks/RESULTS.md`` for the committed results and their reading.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orderbook.bench.harness import run_benchmarks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the hot path against the reference style, ccxt and the JSON floor.")
    parser.add_argument("--frames", type=int, default=200_000, help="frames in the workload (default 200,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions, at least 3 (default 5)")
    parser.add_argument("--seed", type=int, default=20_240_611, help="workload seed")
    parser.add_argument("--quick", action="store_true", help="20,000 frames, 3 repetitions")
    parser.add_argument("--no-ccxt", action="store_true", help="leave ccxt out even when installed")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.repeat = 20_000, 3
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    report = run_benchmarks(
        args.frames, args.repeat, args.seed, include_ccxt=not args.no_ccxt, progress=progress
    )
    command = " ".join(shlex.quote(part) for part in [".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]])
    text = f"Command: `{command}` ({time.perf_counter() - started:.0f} s)\n\n{report}\n"
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
