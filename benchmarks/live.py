"""The live path on loopback: a venue process, one client process per contender, per transport.

    .venv/bin/python benchmarks/live.py --quick       # 100 symbols x 200 frames, 3 repeats (~1.5 min)
    .venv/bin/python benchmarks/live.py               # 100 symbols x 2,000 frames, 5 repeats (~6 min)
    .venv/bin/python benchmarks/live.py --no-baseline --transports aiohttp --output /tmp/live.md

The workload: ``symbols`` books (1,000 levels a side each), ``frames`` depth
frames per book from :func:`orderbook.bench.workload.make_workload` (valid,
contiguous update ids), interleaved round robin (the hot-path harness's
many-books workload, :func:`orderbook.bench.multi.make_multi_workload`); each book's
REST snapshot is at the id just before its first frame.  It is built once
and cached under ``--cache`` (keyed by its parameters).

The venue (``benchmarks/live_venue.py``, a subprocess) serves the markets,
the snapshots and one WebSocket.  Each contender run is a fresh client
subprocess (``benchmarks/live_client.py``) that connects, subscribes, syncs
every book, then starts its clock and asks the venue to stream.  Burst mode:
the venue writes every frame as fast as the socket takes them; the client's
CPU time (``time.process_time``) and wall time until it has handled the last
frame give CPU µs per frame and frames/s.  Paced mode: the venue writes
``--paced-rate`` frames per second (1 ms ticks) stamping each frame's ``E``
with its write time; the consumer records, per update, the µs since the
socket read that carried it (``received_us``) and since the venue wrote it.

The baseline is the ``updates`` contender on commit ``df05cb9`` (today's
Replicator before this work: its own API and websockets transport), checked
out into ``--baseline-dir`` and built in place on first use.

Medians over the repeats (contenders run round robin, so load bursts on the
shared machine hit all alike); ratios are computed from medians of the same
run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

BASELINE_COMMIT = "df05cb9"


# ------------------------------------------------------------------ workload
def build_workload(symbols: int, frames: int, seed: int, cache: Path) -> Path:
    """Write (once) frames.jsonl, snapshots.json and meta.json; return their directory.

    The frames are those of the hot-path harness's many-books workload
    (:func:`orderbook.bench.multi.make_multi_workload`: one seeded book each,
    interleaved round robin), so both benchmarks run on the same frames."""
    key = hashlib.sha256(f"{symbols}/{frames}/{seed}/v2".encode()).hexdigest()[:12]
    directory = cache / f"workload-{symbols}x{frames}-{key}"
    if (directory / "meta.json").exists():
        return directory
    import orjson

    from orderbook.bench.multi import make_multi_workload

    work = make_multi_workload(symbols, frames, seed)
    final = {book.symbol: int(orjson.loads(book.frames[-1])["data"]["u"]) for book in work.books}
    last_symbol = orjson.loads(work.frames[-1])["data"]["s"]
    directory.mkdir(parents=True, exist_ok=True)
    directory.joinpath("frames.jsonl").write_bytes(b"\n".join(work.frames) + b"\n")
    directory.joinpath("snapshots.json").write_bytes(
        orjson.dumps({book.symbol: book.snapshot_raw.decode() for book in work.books}))
    meta = {"symbols": symbols, "frames_per_symbol": frames, "seed": seed,
            "frames": len(work.frames), "final": final, "last_symbol": last_symbol,
            "bytes": sum(len(f) for f in work.frames)}
    directory.joinpath("meta.json").write_text(json.dumps(meta))
    return directory


# -------------------------------------------------------------------- venue
class VenueProcess:
    """``live_venue.py`` in a subprocess; ``url`` once it listens."""

    def __init__(self, workload: Path, paced: float | None) -> None:
        command = [sys.executable, str(HERE / "live_venue.py"), str(workload)]
        if paced is not None:
            command += ["--paced", str(paced)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the venue did not start: {line!r}")
        self.url = f"ws://127.0.0.1:{int(line.split()[1])}/"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ----------------------------------------------------------------- baseline
def ensure_baseline(directory: Path) -> Path:
    """A checkout of the baseline commit with its C extension built in place."""
    if not (directory / "orderbook" / "replicator.py").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(directory),
                        BASELINE_COMMIT], check=True, stdout=subprocess.DEVNULL)
    if not list((directory / "orderbook").glob("_speedups*.so")):
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=directory,
                       check=True, stdout=subprocess.DEVNULL)
    return directory


# ------------------------------------------------------------------ running
Entry = tuple[str, str]  # (contender, transport)


def run_client(entry: Entry, workload: Path, url: str, paced: bool,
               baseline: Path | None, timeout: float) -> dict[str, Any]:
    contender, transport = entry
    command = [sys.executable, str(HERE / "live_client.py"), contender, "--workload",
               str(workload), "--url", url, "--transport", transport]
    if paced:
        command.append("--paced")
    if contender == "baseline":
        assert baseline is not None
        command += ["--path", str(baseline)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode != 0:
        raise RuntimeError(f"{entry} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if contender == "baseline" and not result["orderbook"].startswith(str(baseline)):
        raise RuntimeError(f"the baseline ran {result['orderbook']}, not {baseline}")
    return result


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]) if ordered else float("nan")


def label(entry: Entry) -> str:
    contender, transport = entry
    names = {"read": "read only", "engine": "engine alone, offline (parse_frame + SymbolSync)",
             "engine-batch": "Engine.receive alone, offline, 1,000 frames per call",
             "replicator": "Replicator, no consumer", "updates": "Replicator + one updates() consumer",
             "callback": "Replicator + one on_update callback",
             "baseline": f"baseline: Replicator at {BASELINE_COMMIT} + one updates() consumer"}
    return f"{names[contender]} | {transport if not contender.startswith('engine') else '-'}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiohttp
    import websockets

    load = os.getloadavg()
    return (f"- Machine: {cpu}, `nproc` = {os.cpu_count()}, load average at start "
            f"{load[0]:.2f}; {platform.system()} {platform.release()}\n"
            f"- Python {sys.version.split()[0]}, websockets {websockets.__version__}, "
            f"aiohttp {aiohttp.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--frames", type=int, help="frames per symbol (default 2,000)")
    parser.add_argument("--repeat", type=int, help="repeats of every contender (default 5)")
    parser.add_argument("--seed", type=int, default=20_240_611)
    parser.add_argument("--quick", action="store_true", help="200 frames per symbol, 3 repeats")
    parser.add_argument("--transports", default="websockets,aiohttp")
    parser.add_argument("--paced-rate", type=float, default=20_000.0, metavar="FRAMES_PER_S")
    parser.add_argument("--paced-frames", type=int, default=200, metavar="PER_SYMBOL",
                        help="frames per symbol in the paced runs (default 200: 20,000 frames, "
                             "1 s at 20,000/s)")
    parser.add_argument("--no-paced", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline-dir", type=Path, default=Path("/tmp") / BASELINE_COMMIT)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/orderbook-live-bench"))
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    quick = (200, 3) if args.quick else (2000, 5)
    args.frames = args.frames or quick[0]
    args.repeat = args.repeat or quick[1]
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    transports = [t for t in args.transports.split(",") if t]
    baseline = None if args.no_baseline else ensure_baseline(args.baseline_dir)
    progress("building the workloads")
    burst_load = build_workload(args.symbols, args.frames, args.seed, args.cache)
    paced_load = build_workload(args.symbols, args.paced_frames, args.seed, args.cache)
    meta = json.loads((burst_load / "meta.json").read_text())
    paced_meta = json.loads((paced_load / "meta.json").read_text())

    burst: list[Entry] = [("read", t) for t in transports]
    if "websockets" in transports:
        burst.append(("read", "websockets-asyncio"))
    burst += [("engine", "-"), ("engine-batch", "-")]
    for contender in ("replicator", "updates", "callback"):
        burst += [(contender, t) for t in transports]
    if baseline is not None:
        burst.append(("baseline", "websockets"))
    paced: list[Entry] = [] if args.no_paced else [
        e for e in burst if e[0] in ("read", "updates", "callback", "baseline")
        and e[1] != "websockets-asyncio"]

    results: dict[Entry, list[dict[str, Any]]] = {e: [] for e in burst}
    paced_results: dict[Entry, list[dict[str, Any]]] = {e: [] for e in paced}
    venue = VenueProcess(burst_load, None)
    try:
        for rep in range(args.repeat):
            for entry in burst:
                progress(f"burst {rep + 1}/{args.repeat}: {entry}")
                results[entry].append(run_client(entry, burst_load, venue.url, False, baseline, 600))
    finally:
        venue.stop()
    if paced:
        venue = VenueProcess(paced_load, args.paced_rate)
        try:
            for rep in range(min(args.repeat, 3)):
                for entry in paced:
                    progress(f"paced {rep + 1}: {entry}")
                    paced_results[entry].append(
                        run_client(entry, paced_load, venue.url, True, baseline, 600))
        finally:
            venue.stop()

    report = render(args, meta, paced_meta, burst, results, paced, paced_results)
    command = " ".join(shlex.quote(p) for p in [".venv/bin/python", "benchmarks/live.py", *sys.argv[1:]])
    text = (f"Command: `{command}` ({time.perf_counter() - started:.0f} s)\n\n{machine()}\n\n"
            f"{report}\n")
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    return 0


def render(args: argparse.Namespace, meta: dict[str, Any], paced_meta: dict[str, Any],
           burst: list[Entry], results: dict[Entry, list[dict[str, Any]]], paced: list[Entry],
           paced_results: dict[Entry, list[dict[str, Any]]]) -> str:
    total = meta["frames"]
    cpu = {e: statistics.median(r["cpu"] for r in rs) / total * 1e6 for e, rs in results.items()}
    rate = {e: statistics.median(total / r["wall"] for r in rs) for e, rs in results.items()}
    for entry, runs in results.items():
        for r in runs:
            if r["frames"] < total:
                raise RuntimeError(f"{entry} saw {r['frames']} of {total} frames")
    lines = [
        f"Workload: {meta['symbols']} symbols x {meta['frames_per_symbol']:,} frames, interleaved "
        f"({total:,} frames, {meta['bytes'] / total:.0f} bytes each on average), seed {meta['seed']}; "
        f"{args.repeat} repeats, medians.", "",
        "| contender | transport | CPU µs / frame | of which kernel | frames / s | "
        "runs (CPU µs / frame) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for entry in burst:
        runs = ", ".join(f"{r['cpu'] / total * 1e6:.1f}" for r in results[entry])
        kernel = statistics.median(r["sys"] / max(r["user"] + r["sys"], 1e-9) for r in results[entry])
        lines.append(f"| {label(entry)} | {cpu[entry]:.2f} | {kernel:.0%} | {rate[entry]:,.0f} | "
                     f"{runs} |")
    lines += ["", "Ratios (same run):", ""]
    for transport in ("websockets", "aiohttp"):
        updates, read = ("updates", transport), ("read", transport)
        for engine, what in ((("engine", "-"), "parse_frame + SymbolSync"),
                             (("engine-batch", "-"), "Engine.receive")):
            if updates in cpu and read in cpu and engine in cpu:
                lines.append(
                    f"- {transport}: Replicator + updates() CPU / (read only + engine alone, {what}) = "
                    f"{cpu[updates]:.2f} / ({cpu[read]:.2f} + {cpu[engine]:.2f}) = "
                    f"**{cpu[updates] / (cpu[read] + cpu[engine]):.2f}** (target <= 1.3)")
        baseline = ("baseline", "websockets")
        if updates in rate and baseline in rate:
            lines.append(f"- {transport}: Replicator + updates() frames/s vs the baseline = "
                         f"{rate[updates]:,.0f} / {rate[baseline]:,.0f} = "
                         f"**{rate[updates] / rate[baseline]:.2f}x** (CPU: "
                         f"{cpu[baseline] / cpu[updates]:.2f}x less) (target >= 2.5x)")
    for contender in ("read", "replicator", "updates", "callback"):
        a, w = (contender, "aiohttp"), (contender, "websockets")
        if a in rate and w in rate:
            lines.append(f"- aiohttp vs websockets, {contender}: frames/s {rate[a] / rate[w]:.2f}x, "
                         f"CPU {cpu[w] / cpu[a]:.2f}x less"
                         + (" (target >= 1.3x for updates)" if contender == "updates" else ""))
    if ("read", "websockets-asyncio") in cpu and ("read", "websockets") in cpu:
        lines.append(f"- websockets, read only: sans-I/O ClientProtocol "
                     f"{cpu[('read', 'websockets')]:.2f} µs vs asyncio client (recv) "
                     f"{cpu[('read', 'websockets-asyncio')]:.2f} µs per frame")
    if paced:
        lines += ["", f"Paced: {paced_meta['frames']:,} frames at {args.paced_rate:,.0f} frames/s "
                  f"({paced_meta['symbols']} symbols x {paced_meta['frames_per_symbol']}), 1 ms ticks; "
                  "latency in µs, the median over the runs of each percentile. "
                  "`read -> consumer`: from the socket read that carried the frame (its "
                  "`received_us`) to the consumer holding the update; `write -> consumer`: from "
                  "the venue's write (the `E` it stamped) to the same moment (for read only: to "
                  "the handler).", "",
                  "| contender | transport | read -> consumer p50 / p99 / p99.9 | "
                  "write -> consumer p50 / p99 / p99.9 | samples |", "|---|---|---|---|---:|"]
        for entry in paced:
            runs = paced_results[entry]
            cells = []
            for key in ("read_to_consumer", "send_to_consumer"):
                if not runs[0][key]:
                    cells.append("-")
                    continue
                cells.append(" / ".join(
                    f"{statistics.median(percentile(r[key], q) for r in runs):,.0f}"
                    for q in (0.5, 0.99, 0.999)))
            samples = sum(len(r["send_to_consumer"]) for r in runs)
            lines.append(f"| {label(entry)} | {cells[0]} | {cells[1]} | {samples:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
