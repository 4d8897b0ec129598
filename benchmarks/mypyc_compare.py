"""Pure Python vs mypyc-compiled: the hot modules and the prototype, side by side.

    .venv/bin/python benchmarks/mypyc_compare.py [--frames 100000] [--repeat 5] [--keep]

Copies ``orderbook/`` (twice: ``orderbook`` to compile, ``orderbook_pure`` to
leave alone) and ``benchmarks/prototype_fast_path.py`` to a temporary
directory and compiles ``wire``, ``book``, ``sync``, ``errors`` and the
prototype with ``mypyc`` there.  Then one process times, interleaved on the
same frames, this package end to end (``parse_frame`` -> ``SymbolSync`` ->
best bid/ask) pure and compiled, the two prototype books pure and
compiled, and the reference-style book and ccxt's sides (never compiled:
the yardsticks).  Nothing is written to the checkout; build products stay in
the temporary directory.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOT_MODULES = ["wire.py", "book.py", "sync.py", "errors.py"]


# ----------------------------------------------------------------- child
def _prototype_contender(module: Any, book_class: str, label: str) -> Any:
    class Prototype:
        name = label
        exact = True

        def setup(self, workload: Any) -> None:
            book = getattr(module, book_class)(workload.symbol)
            book.apply_snapshot(workload.snapshot_raw)
            self.sync = module.Sync(book)
            self.fed = 0

        def run(self, frames: Any) -> None:
            sync = self.sync
            receive = sync.receive_frame
            book = sync.book
            best_bid, best_ask = book.best_bid, book.best_ask
            parse = module.parse_frame
            for raw in frames:
                receive(parse(raw))
                best_bid()
                best_ask()
            self.fed += len(frames)
            assert sync.frames_applied == self.fed and sync.synced

        def trace(self, frames: Any) -> tuple[list[int], list[Any]]:
            sync = self.sync
            receive = sync.receive_frame
            book = sync.book
            parse = module.parse_frame
            touches = []
            for raw in frames:
                receive(parse(raw))
                touches.append((book.best_bid(), book.best_ask()))
            return [], touches

        def sides(self) -> tuple[list[Any], list[Any]]:
            return self.sync.book.all_bids(), self.sync.book.all_asks()

    return Prototype()


def child(frames: int, repeat: int, seed: int, source: str) -> None:
    """Runs inside the build directory: compiled and pure copies side by side."""
    import gc
    import importlib.util

    import orderbook.core.book
    import orderbook_pure.bench as pure_bench
    import prototype_fast_path as proto_compiled
    from orderbook.bench.harness import CcxtSides, OursSync, ReferenceStyle, check_exactness, make_workload, measure_throughput

    spec = importlib.util.spec_from_file_location("prototype_pure", source)
    assert spec is not None and spec.loader is not None
    proto_pure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(proto_pure)
    assert orderbook.core.book.__file__.endswith(".so") and str(proto_compiled.__file__).endswith(".so")
    assert not str(pure_bench.__file__).endswith(".so")

    ours_pure, ours_compiled = pure_bench.OursSync(), OursSync()
    ours_pure.name = "ours end to end [pure]"
    ours_compiled.name = "ours end to end [mypyc]"
    entrants: list[Any] = [ours_pure, ours_compiled]
    for module, tag in ((proto_pure, "pure"), (proto_compiled, "mypyc")):
        entrants.append(_prototype_contender(module, "EagerBook", f"prototype, eager Decimal [{tag}]"))
        entrants.append(_prototype_contender(module, "LazyBook", f"prototype, lazy Decimal [{tag}]"))
    entrants += [ReferenceStyle(), CcxtSides()]
    workload = make_workload(frames, seed)
    verdicts = {}
    for entrant in entrants:
        entrant.setup(workload)
        _, touches = entrant.trace(workload.frames)
        verdicts[entrant.name] = check_exactness(entrant, workload, touches)
    gc.collect()
    gc.freeze()
    results = measure_throughput(workload, entrants, repeat)
    rates = {name: frames / statistics.median(r.seconds) for name, r in results.items()}
    print(json.dumps({"rates": rates, "verdicts": verdicts}))


# ---------------------------------------------------------------- parent
def build(target: Path) -> None:
    """Copy the package (twice) and the prototype to ``target``; compile one copy."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so")
    shutil.copytree(ROOT / "orderbook", target / "orderbook", ignore=ignore)
    shutil.copytree(ROOT / "orderbook", target / "orderbook_pure", ignore=ignore)
    shutil.copy(ROOT / "benchmarks" / "prototype_fast_path.py", target / "prototype_fast_path.py")
    shutil.copy(Path(__file__), target / "mypyc_compare.py")
    wire = target / "orderbook" / "wire.py"
    # mypyc cannot compile a dataclass field annotated ``object`` when a field
    # is named ``id`` (KeyError: 'object'): annotate it ``Any`` in the copy.
    wire.write_text(re.sub(r"^(\s+)id: object$", r"\1id: Any", wire.read_text(), flags=re.M))
    (target / "mypy.ini").write_text(
        "[mypy]\npython_version = 3.11\n"
        "[mypy-sortedcontainers.*]\nignore_missing_imports = True\n"
        "[mypy-ccxt.*]\nignore_missing_imports = True\n"
    )
    mypyc = Path(sys.executable).parent / "mypyc"
    sources = [f"orderbook/{name}" for name in HOT_MODULES] + ["prototype_fast_path.py"]
    started = time.perf_counter()
    result = subprocess.run(
        [str(mypyc), "--config-file", "mypy.ini", *sources], cwd=target, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"mypyc failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    print(f"compiled {', '.join(sources)} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def run_child(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    source = str(ROOT / "benchmarks" / "prototype_fast_path.py")
    command = [
        sys.executable, "-c",
        f"import sys; sys.path.insert(0, {str(path)!r}); import mypyc_compare; "
        f"mypyc_compare.child({args.frames}, {args.repeat}, {args.seed}, {source!r})",
    ]
    result = subprocess.run(command, cwd=path, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"child failed:\n{result.stderr[-4000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20_240_611)
    parser.add_argument("--keep", action="store_true", help="keep the temporary build directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orderbook-mypyc-"))
    try:
        build(workdir)
        print("measuring", file=sys.stderr)
        data = run_child(workdir, args)
    finally:
        if args.keep:
            print(f"build kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rates, verdicts = data["rates"], data["verdicts"]
    ref = rates["reference style: orjson + SortedDict[Decimal]"]
    ccxt = rates["ccxt OrderBookSide.storeArray (float)"]
    print(
        f"{args.frames:,} frames; one process, contenders fed 10,000 frames at a time round robin; "
        f"CPU-time median of {args.repeat} repetitions.\n"
    )
    print("| contender | frames/s | vs reference | vs ccxt | mypyc speed-up | result |")
    print("|---|---:|---:|---:|---:|---|")
    for name, rate in rates.items():
        gain = ""
        if name.endswith("[mypyc]"):
            gain = f"{rate / rates[name.replace('[mypyc]', '[pure]')]:.2f}x"
        print(f"| {name} | {rate / 1000:,.0f} k | {rate / ref:.2f}x | {rate / ccxt:.2f}x | {gain} | {verdicts[name]} |")


if __name__ == "__main__":
    main()
