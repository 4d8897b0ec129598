"""The benchmark harness behind ``orderbook bench`` and ``benchmarks/run.py``.

Outside the hot path and outside the test run; nothing else in the package
imports it.  Four modules, and this one ties them together:

* :mod:`~orderbook.bench.workload`, :func:`make_workload` -- a seeded
  synthetic session: a REST snapshot (1000 levels per side) and N raw depth
  frames in the exact wire envelope, generated against a true model kept in
  ``Decimal`` so that the expected touch after every frame and the expected
  final book are known;
* :mod:`~orderbook.bench.contenders` -- the same raw frames fed, end to end,
  to this package (``parse_frame`` -> ``SymbolSync`` / ``OrderBook``), to a
  "reference style" book (``orjson`` + ``SortedDict`` keyed by ``Decimal``,
  the design of the venue's own reference book), to ccxt's order book sides
  (``OrderBookSide.storeArray``, floats) when ``ccxt`` is installed, and to
  ``orjson.loads`` alone (the floor);
* :mod:`~orderbook.bench.measure` and :func:`run_benchmarks` (here) --
  warm-up, interleaved repetitions, medians, the per-frame latency pass, read
  costs and memory per level, rendered as a markdown table
  (:mod:`~orderbook.bench.multi` does the same on 100 books interleaved).
  Every contender that claims exactness is checked against the model after
  every frame (in the untimed latency pass) and at the end of every timed
  repetition.

Method notes: throughput is CPU time of this process (``time.process_time``:
on a shared machine it leaves out the time other processes hold the CPU),
read around chunks of 10,000 frames fed to the contenders round robin, so
that load bursts hit every contender alike; no per-frame timer.  The
latency pass is separate, uses ``perf_counter_ns`` (wall clock)
around each frame and so includes one timer call (~60 ns) and any
preemption.  GC stays enabled, as in production, but the workload itself is
moved out of the collector's way with ``gc.freeze()`` so that no contender
pays for scanning the harness's data.
"""


from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable


from .._native import implementation
from .contenders import (
    CcxtSides,
    Contender,
    JsonFloor,
    OursBook,
    OursSync,
    ReferenceStyle,
    check_exactness,
    check_final,
    contenders,
    reference_apply,
)
from .multi import measure_multi, render_multi
from .measure import Result, measure_latency, measure_memory, measure_reads, measure_throughput
from .workload import Workload, make_snapshot, make_workload

__all__ = [
    "CcxtSides",
    "Contender",
    "JsonFloor",
    "OursBook",
    "OursSync",
    "ReferenceStyle",
    "Result",
    "Workload",
    "check_exactness",
    "check_final",
    "contenders",
    "machine_info",
    "make_snapshot",
    "make_workload",
    "measure_latency",
    "measure_memory",
    "measure_reads",
    "measure_throughput",
    "reference_apply",
    "render",
    "run_benchmarks",
]


# --------------------------------------------------------------- report
def machine_info() -> str:
    """CPU model, core count, Python and package versions, one markdown list."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for name in ("orjson", "sortedcontainers", "ccxt"):
        try:
            module = __import__(name)
            versions.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            versions.append(f"{name} (not installed)")
    return "\n".join(
        [
            f"- Code: orderbook {_source_version()}, hot path: {implementation()}"
            " (`native` = the C fast paths of `orderbook._speedups`; `python` = pure Python)",
            f"- CPU: {cpu}, {os.cpu_count()} logical cores ({platform.machine()})",
            f"- OS: {platform.system()} {platform.release()}",
            f"- Python: {platform.python_implementation()} {sys.version.split()[0]}",
            f"- Packages: {', '.join(versions)}",
        ]
    )


def _source_version() -> str:
    """The package version and, in a git checkout, the commit (``+dirty`` if modified)."""
    from .._version import __version__

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=here, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} (git {commit})" if commit else __version__


def _fmt_rate(value: float) -> str:
    return f"{value / 1000:,.0f} k"


def render(
    workload: Workload,
    results: dict[str, Result],
    reads: dict[str, dict[str, float]] | None,
    memory: dict[str, float] | None,
    repeat: int,
) -> str:
    """The markdown report: throughput table, reads and memory, targets."""
    n = len(workload.frames)
    rate = {name: n / statistics.median(r.seconds) for name, r in results.items()}
    ref_rate = rate.get(ReferenceStyle.name)
    ccxt_rate = rate.get(CcxtSides.name)
    lines = [
        f"Workload: seed {workload.seed}, {n:,} frames, {workload.level_updates:,} level updates "
        f"({workload.level_updates / n:.2f} per frame), snapshot {len(workload.snapshot['bids'])}"
        f"+{len(workload.snapshot['asks'])} levels. frames/s: process CPU time, median of {repeat} "
        "interleaved repetitions [min-max]; p50/p99: wall clock per frame, one separate pass.",
        "",
        "| contender | frames/s | level updates/s | p50 µs/frame | p99 µs/frame | vs reference | vs ccxt | result |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in results.items():
        frames_s = rate[name]
        spread = f"[{_fmt_rate(n / max(result.seconds))}-{_fmt_rate(n / min(result.seconds))}]"
        vs_ref = f"{frames_s / ref_rate:.2f}x" if ref_rate else "-"
        vs_ccxt = f"{frames_s / ccxt_rate:.2f}x" if ccxt_rate else "-"
        updates = "-" if name == JsonFloor.name else _fmt_rate(workload.level_updates * frames_s / n)
        lines.append(
            f"| {name} | {_fmt_rate(frames_s)} {spread} | {updates} | {result.p50_us:.2f} | "
            f"{result.p99_us:.2f} | {vs_ref} | {vs_ccxt} | {result.verdict or '-'} |"
        )
    if reads:
        lines += [
            "",
            "Reads on the book left by the workload: best of 7 timeit runs (CPU time), repeated reads of an",
            f"unchanged book (the timeit loop costs {reads['empty statement']['best_bid_ns']:.0f} ns for an empty statement); "
            "and the top-20 views read right after each of the last frames (median, wall clock,",
            "one timer call included), where levels that just changed are read for the first time.",
            "Memory: bytes retained per level by a book built from a 10,000-per-side snapshot.",
            "",
            "| book | best bid read ns | best ask read ns | top-20 bids µs | top-20 asks µs | top-20 bids / asks µs right after a frame | bytes per level |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for who, values in reads.items():
            if who == "empty statement":
                continue
            mem = f"{memory[who]:.0f}" if memory and who in memory else "-"
            after_read = (memory or {}).get(f"{who}, every level read")
            if after_read is not None and abs(after_read - memory[who]) > 1:  # type: ignore[index]
                mem += f" ({after_read:.0f} once every level is read)"
            lines.append(
                f"| {who} | {values['best_bid_ns']:.0f} | {values['best_ask_ns']:.0f} | "
                f"{values['top20_bids_us']:.2f} | {values['top20_asks_us']:.2f} | "
                f"{values['after_bids_us']:.2f} / {values['after_asks_us']:.2f} | {mem} |"
            )
    ours_rate = rate.get(OursSync.name)
    if ours_rate and ref_rate:
        ours_reads = (reads or {}).get("ours", {})
        checks = [
            ("frames/s >= 2x reference style", ours_rate / ref_rate >= 2, f"{ours_rate / ref_rate:.2f}x"),
        ]
        if ccxt_rate:
            checks.append(("frames/s >= 1.3x ccxt sides", ours_rate / ccxt_rate >= 1.3, f"{ours_rate / ccxt_rate:.2f}x"))
        if ours_reads:
            worst_read = max(ours_reads["best_bid_ns"], ours_reads["best_ask_ns"])
            worst_view = max(ours_reads["top20_bids_us"], ours_reads["top20_asks_us"])
            checks += [
                ("best bid/ask read <= 150 ns", worst_read <= 150, f"{worst_read:.0f} ns"),
                ("top-20 view <= 2 µs per side", worst_view <= 2, f"{worst_view:.2f} µs"),
            ]
        if memory:
            checks.append(("<= 160 bytes per level", memory["ours"] <= 160, f"{memory['ours']:.0f} B"))
        lines += ["", "| target (ours end to end) | measured | met |", "|---|---:|---|"]
        lines += [f"| {what} | {value} | {'yes' if ok else 'NO'} |" for what, ok, value in checks]
    return "\n".join(lines)


def run_benchmarks(
    frames: int = 200_000,
    repeat: int = 3,
    seed: int = 20_240_611,
    *,
    include_ccxt: bool = True,
    books: int = 100,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Generate the workload, run every measurement and return the markdown report.

    This is what ``orderbook bench`` prints.  ``repeat`` below 3 is raised to 3.
    With ``books`` > 1 the same number of frames is also spread over that many
    books, interleaved (:mod:`orderbook.bench.multi`).  A 200,000-frame run
    takes a few minutes on a small machine.
    """
    repeat = max(3, repeat)
    say = progress or (lambda _message: None)
    say(f"generating {frames:,} frames (seed {seed})")
    workload = make_workload(frames, seed)
    entrants = contenders(include_ccxt)
    gc.collect()
    gc.freeze()  # the workload is the harness's, not the contenders' garbage
    try:
        results = measure_throughput(workload, entrants, repeat, progress=say)
        say("latency pass and exactness check")
        measure_latency(workload, entrants, results)
        say("reads")
        reads = measure_reads(workload, include_ccxt, after_frames=min(20_000, frames // 2))
    finally:
        gc.unfreeze()
    say("memory")
    memory = measure_memory(include_ccxt=include_ccxt)
    report = machine_info() + "\n\n" + render(workload, results, reads, memory, repeat)
    if books > 1:
        many = measure_multi(books, max(1, frames // books), repeat, seed, progress=say)
        report += (f"\n\nMany books: {books} books of 1000 levels a side, {frames // books:,} frames each, "
                   "interleaved round robin (the least cache friendly order), beside one book fed as "
                   f"many frames; CPU µs per frame, median of {repeat} interleaved repetitions; every "
                   "final book checked against the truth.\n\n" + render_multi(many, books))
    return report
