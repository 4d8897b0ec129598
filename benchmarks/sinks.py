"""What publishing costs the replica: CPU per frame of ``orderbook serve`` with and without ``--publish``.

A simulated venue (this process) feeds a real ``orderbook serve`` child
process; real ``redis-server`` and ``nats-server`` processes (started here on
free loopback ports, in a temporary directory, no persistence) receive what it
publishes.  For each configuration -- ``off`` (no ``--publish``), ``redis``,
``nats``, ``both`` -- a fresh serve process is started, synced, warmed up,
then measured for ``--seconds`` *beside an ``off`` process started with it and
measured over the same window* (whatever else loads a shared machine loads
both alike): the CPU time each used (user + system, read off its POSIX CPU
clock to the nanosecond, see :func:`cpu_seconds`) divided by the depth frames it received (its
``orderbook_ws_messages_total``).  Of two such processes the one started
second pays more per frame (12-17% on the 2-core test machine, whatever it
runs), so each pair is measured twice, once in each order, and its ratio is
the geometric mean of the two (see :func:`pair_ratio`); a ``control`` row, a
second ``off`` process beside the first, shows what is left of the method's
error.  The configurations are interleaved round by round (``--rounds``); the
table reports the median µs per frame of each, of the ``off`` processes, and
the median of the per-round ratios, plus how many messages the sinks
published per frame.
Each broker is measured at every ``--lingers`` value (the ``linger`` option
of the ``--publish`` URL: how long updates are gathered before publishing).

    .venv/bin/python benchmarks/sinks.py                       # 5 rounds x 10 s x 9 configurations
    .venv/bin/python benchmarks/sinks.py --rounds 3 --seconds 5 --rate 4000
    .venv/bin/python benchmarks/sinks.py --configs control,both@0.05 --lingers 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from orderbook.testing.venue import OrderFlow, SimulatedVenue

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_broker(argv: list[str], port: int, workdir: Path, probe: bytes, greeting: bytes
                 ) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if probe:
                    sock.sendall(probe)
                if greeting in sock.recv(4096):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{argv[0]} did not start")


_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid``, to the nanosecond: its
    POSIX CPU clock (``clock_getcpuclockid``).  ``/proc/<pid>/stat`` counts in
    clock ticks (10 ms), which over an 8 s window of ~0.4 s of CPU is +-2.5%
    per reading; it is the fallback where the clock cannot be read."""
    clock = ctypes.c_int()
    stamp = _Timespec()
    if (_libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0
            and _libc.clock_gettime(clock.value, ctypes.byref(stamp)) == 0):
        return stamp.tv_sec + stamp.tv_nsec / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def metric_sum(text: str, name: str, label: str | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if label is None or label in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Sample:
    config: str
    us_per_frame: float
    frames: int
    cpu: float
    published: float
    dropped: float


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    """Per configuration, its CPU per frame over that of ``off`` measured at the same time."""

    def median(self, config: str) -> float:
        return statistics.median(s.us_per_frame for s in self.samples if s.config == config)


def configs(lingers: list[str]) -> list[str]:
    """``off``, then ``redis``/``nats``/``both`` at each linger (``redis@0.02``).
    (``control``, measured too, is a serve process without ``--publish``
    beside ``off``: the method's own error, which should be a ratio of 1.)"""
    return ["off"] + [f"{broker}@{linger}" for linger in lingers for broker in ("redis", "nats", "both")]


async def start_serve(config: str, venue: SimulatedVenue, symbols: list[str], urls: dict[str, str],
                      workdir: Path) -> tuple[asyncio.subprocess.Process, str]:
    broker, _, linger = config.partition("@")
    publish: list[str] = []
    if broker in ("redis", "both"):
        publish += ["--publish", f"{urls['redis']}?linger={linger}"]
    if broker in ("nats", "both"):
        publish += ["--publish", f"{urls['nats']}?linger={linger}"]
    log = (workdir / f"serve-{broker}.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orderbook.cli", "serve", *symbols, "--rest-url", venue.rest_url,
        "--ws-url", venue.ws_url, "--port", "0", "--log-level", "WARNING", *publish, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    return proc, line.split()[2]


async def stop_serve(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def measure_pair(config: str, venue: SimulatedVenue, symbols: list[str], urls: dict[str, str],
                       seconds: float, warmup: float, workdir: Path, off_first: bool
                       ) -> tuple[Sample, Sample]:
    """``off`` and ``config`` as two serve processes at once, over the same window:
    whatever else loads the machine loads both alike.  ``off_first``: which
    one is started (and subscribed to the venue) first -- that one is
    cheaper (see :func:`pair_ratio`)."""
    order = ("off", config) if off_first else (config, "off")
    procs = [await start_serve(name, venue, symbols, urls, workdir) for name in order]
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            for _, url in procs:
                while (await http.get(url + "/health")).status_code != 200:
                    assert time.monotonic() < deadline, "serve never synced"
                    await asyncio.sleep(0.1)
            await asyncio.sleep(warmup)
            before = [(await http.get(url + "/metrics")).text for _, url in procs]
            cpu0 = [cpu_seconds(proc.pid) for proc, _ in procs]
            await asyncio.sleep(seconds)
            cpu1 = [cpu_seconds(proc.pid) for proc, _ in procs]
            after = [(await http.get(url + "/metrics")).text for _, url in procs]
        samples = []
        for name, b, a, c0, c1 in zip(order, before, after, cpu0, cpu1):
            frames = int(metric_sum(a, "orderbook_ws_messages_total") - metric_sum(b, "orderbook_ws_messages_total"))
            published = (metric_sum(a, "orderbook_sink_published_total")
                         - metric_sum(b, "orderbook_sink_published_total"))
            cpu = c1 - c0
            samples.append(Sample(name, cpu / max(frames, 1) * 1e6, frames, cpu, published,
                                  metric_sum(a, "orderbook_sink_dropped_total")))
        return (samples[0], samples[1]) if off_first else (samples[1], samples[0])
    finally:
        for proc, _ in procs:
            await stop_serve(proc)


async def pair_ratio(config: str, venue: SimulatedVenue, symbols: list[str], urls: dict[str, str],
                     seconds: float, warmup: float, workdir: Path) -> tuple[float, list[Sample]]:
    """``config``'s CPU per frame over ``off``'s, free of the start order.

    Of two identical serve processes started one after the other from the
    same venue, the second uses 12-17% more CPU per frame on this machine (the
    ``control`` row measures it).  So the pair is measured twice, each order
    once, and the ratio is the geometric mean of the two: a factor that
    favours whichever process comes first cancels exactly."""
    ratios, samples = [], []
    for off_first in (True, False):
        off, sample = await measure_pair(config, venue, symbols, urls, seconds, warmup, workdir,
                                         off_first)
        ratios.append(sample.us_per_frame / off.us_per_frame)
        samples += [sample, off]
    return (ratios[0] * ratios[1]) ** 0.5, samples


def machine() -> str:
    cpu = "unknown CPU"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        if match:
            cpu = match.group(1).strip()
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


async def main(args: argparse.Namespace) -> int:
    redis_server = shutil.which("redis-server")
    nats_server = shutil.which("nats-server")
    if not redis_server or not nats_server:
        raise SystemExit("needs redis-server and nats-server on PATH (Debian packages)")
    symbols = [f"S{i}_USDC" for i in range(args.symbols - 1)] + ["SPCX.US_USDC"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis_port, nats_port = free_port(), free_port()
        brokers = [
            start_broker([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--protected-mode", "no"], redis_port, workdir,
                         b"PING\r\n", b"+PONG"),
            start_broker([nats_server, "-a", "127.0.0.1", "-p", str(nats_port)], nats_port, workdir,
                         b"", b"INFO"),
        ]
        urls = {"redis": f"redis://127.0.0.1:{redis_port}/0", "nats": f"nats://127.0.0.1:{nats_port}"}
        names = ["control"] + configs(args.lingers.split(","))[1:]
        if args.configs:
            unknown = set(args.configs.split(",")) - set(names)
            if unknown:
                raise SystemExit(f"unknown --configs {sorted(unknown)}; known: {names}")
            names = args.configs.split(",")
        results = Results()
        try:
            flow = OrderFlow(symbols, seed=17)
            async with SimulatedVenue(flow, rate=args.rate) as venue:
                for round_ in range(args.rounds):
                    shift = round_ % len(names)
                    for config in names[shift:] + names[:shift]:
                        ratio, pair = await pair_ratio(config, venue, symbols, urls, args.seconds,
                                                       args.warmup, workdir)
                        results.samples += pair
                        results.ratios.setdefault(config, []).append(ratio)
                        sample, off = pair[0], pair[1]
                        print(f"round {round_ + 1} {config:>11}: ratio {ratio:.3f} (first/second order: "
                              f"{sample.us_per_frame:.1f} vs off {off.us_per_frame:.1f}, "
                              f"{pair[2].us_per_frame:.1f} vs off {pair[3].us_per_frame:.1f} µs/frame; "
                              f"{sample.published:.0f} published, {sample.dropped:.0f} dropped)",
                              flush=True)
        finally:
            for proc in brokers:
                proc.kill()
                proc.wait()
    print()
    print(f"machine: {machine()}")
    print(f"command: {' '.join(['benchmarks/sinks.py', *sys.argv[1:]])}")
    print(f"venue: {args.rate:.0f} updates/s over {len(symbols)} symbols; {args.rounds} rounds x "
          f"{args.seconds:.0f} s per configuration, each beside an 'off' process measured at the same time")
    print()
    print("| configuration | linger | CPU per frame (median) | 'off' beside it (median) | ratio (median) "
          "| messages per frame | ratios per round |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for config in names:
        broker, _, linger = config.partition("@")
        picked = [s for s in results.samples if s.config == config]
        ratios = results.ratios[config]
        label = {"redis": "--publish redis://", "nats": "--publish nats://", "both": "both",
                 "control": "control: a second `off`"}[broker]
        per_frame = statistics.median(s.published / max(s.frames, 1) for s in picked)
        offs = [s.us_per_frame for s in results.samples if s.config == "off"]
        shown_linger = f"{float(linger) * 1000:g} ms" if linger else "-"
        print(f"| {label} | {shown_linger} | {results.median(config):.1f} µs | "
              f"{statistics.median(offs):.1f} µs | {statistics.median(ratios):.2f}x | {per_frame:.3f} | "
              f"{', '.join(f'{r:.2f}' for r in ratios)} |")
    print()
    for linger in args.lingers.split(","):
        if not all(f"{b}@{linger}" in results.ratios for b in ("redis", "nats", "both")):
            continue
        one = max(statistics.median(results.ratios[f"{b}@{linger}"]) for b in ("redis", "nats"))
        both = statistics.median(results.ratios[f"both@{linger}"])
        print(f"linger {float(linger) * 1000:g} ms: one broker {100 * (one - 1):+.1f}% at most, "
              f"both {100 * (both - 1):+.1f}% (bound: +15% per frame)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="venue updates per second")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--lingers", default="0.005,0.05,0.1",
                        help="comma-separated linger values (seconds) to measure (default: %(default)s)")
    parser.add_argument("--configs", default="",
                        help="comma-separated configurations to measure only, e.g. control,both@0.05 "
                             "(default: all, at every linger)")
    sys.exit(asyncio.run(main(parser.parse_args())))
