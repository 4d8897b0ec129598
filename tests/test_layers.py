"""The layout shows the architecture, and imports only go down.

Each subpackage of ``orderbook`` is a layer with a rank; a module may import
from its own layer and from layers of a lower rank only.  The bottom three
(protocol, core, sync) are sans-I/O: they import no asyncio and no network
library.  Checked on the source, with ``ast``, so that a lazy import inside
a function counts as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "orderbook"

RANKS = {
    "errors": 0, "_native": 0, "_speedups": 0, "_version": 0,
    "protocol": 1,
    "core": 2,
    "sync": 3,
    "live": 4,
    "serve": 5, "record": 5, "sinks": 5, "testing": 5, "bench": 5,
    "cli": 6,
    "__main__": 7,
}  # fmt: skip
"""The layers; the package's ``__init__`` (the public surface) may import any of them."""
PEERS_ALLOWED = {("cli", "testing"), ("cli", "bench"), ("cli", "serve"), ("cli", "record"),
                 ("cli", "sinks")}
"""Same-rank or cross imports that are fine: the command line runs everything."""
SANS_IO = {"protocol", "core", "sync", "errors", "_native"}
NETWORK = {"asyncio", "websockets", "httpx", "aiohttp", "socket", "ssl", "redis", "nats"}


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    here = list(rel.parts)
    if here[-1] == "__init__":
        here = here[:-1]
    else:
        here = here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
                if not node.module:  # from . import x
                    out += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
                    continue
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    unknown = sorted({layer_of(p) for p in MODULES} - set(RANKS) - {"__init__"})
    assert not unknown, f"modules outside the known layers: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path: Path) -> None:
    layer = layer_of(path)
    if layer == "__init__":
        return  # the public surface re-exports every layer
    upward = []
    for name, line in imports(path):
        parts = name.split(".")
        if parts[0] != "orderbook" or len(parts) < 2:
            continue
        target = parts[1]
        if RANKS.get(target) == 0 and RANKS.get(layer) == 0:
            continue  # the bottom: the errors, the version and the native module
        if target == layer or (layer, target) in PEERS_ALLOWED:
            continue
        if target not in RANKS or RANKS[target] >= RANKS[layer]:
            upward.append(f"line {line}: {name}")
    assert not upward, f"{path.relative_to(PACKAGE)} imports up or across: {upward}"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if layer_of(p) in SANS_IO], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_the_sans_io_layers_import_no_asyncio_and_no_network(path: Path) -> None:
    found = [f"line {line}: {name}" for name, line in imports(path) if name.split(".")[0] in NETWORK]
    assert not found, f"{path.relative_to(PACKAGE)} is sans-I/O but imports {found}"


def test_the_checker_sees_upward_and_network_imports(tmp_path: Path) -> None:
    """The checks above could fail: the parser finds both kinds of import."""
    source = PACKAGE / "core" / "book.py"
    found = dict(imports(source))
    assert "orderbook.core.ladder" in found and "orderbook.errors" in found
    sample = PACKAGE / "core" / "_sample_for_test.py"
    try:
        sample.write_text("import asyncio\nfrom ..live import replicator\n")
        names = [name for name, _ in imports(sample)]
        assert names == ["asyncio", "orderbook.live"]
    finally:
        sample.unlink()
