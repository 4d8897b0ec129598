"""The public surface: one ``__all__``, complete for the core, documented, typed."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import orderbook
from paths import REPO

ROOT = REPO
PACKAGE = ROOT / "orderbook"
# The core engine: every public name of these modules is part of the top-level API.
CORE_MODULES = ["errors", "protocol.wire", "core.ladder", "core.book", "sync.symbol", "sync.status"]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"orderbook.{name}")


def attribute_docstrings(mod: ModuleType) -> dict[str, str]:
    """``NAME = ...`` followed by a string literal: the attribute docstring
    convention (what Sphinx autodoc reads) for aliases and constants."""
    source = inspect.getsource(mod)
    body = ast.parse(source).body
    found: dict[str, str] = {}
    for statement, following in zip(body, body[1:]):
        targets: list[ast.expr] = []
        if isinstance(statement, ast.Assign):
            targets = list(statement.targets)
        elif isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = following.value.value
    return found


def docstring_of(name: str) -> str | None:
    obj = getattr(orderbook, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        # a dataclass without a docstring gets a generated "Name(field, ...)" one
        if doc and not doc.startswith(f"{obj.__name__}("):
            return str(doc)
        return None
    for mod in package_modules():
        if getattr(mod, name, None) is obj and name in getattr(mod, "__all__", ()):
            doc = attribute_docstrings(mod).get(name)
            if doc:
                return doc
    return None


def package_modules() -> list[ModuleType]:
    """Every module of the package (not the ``__main__`` entry points)."""
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(orderbook.__path__, "orderbook.")
        if not info.name.endswith("__main__")
    ]


def test_core_modules_exist_and_declare_all() -> None:
    for name in CORE_MODULES:
        assert isinstance(module(name).__all__, list), name


@pytest.mark.parametrize("name", CORE_MODULES)
def test_every_core_name_is_exported_at_top_level(name: str) -> None:
    mod = module(name)
    missing = sorted(set(mod.__all__) - set(orderbook.__all__))
    assert not missing, f"orderbook.{name}.__all__ names missing from orderbook.__all__: {missing}"
    for public in mod.__all__:
        assert getattr(orderbook, public) is getattr(mod, public), public


def test_top_level_all_resolves_without_duplicates() -> None:
    assert len(orderbook.__all__) == len(set(orderbook.__all__))
    for name in orderbook.__all__:
        assert hasattr(orderbook, name), name
    for mod in package_modules():
        for name in getattr(mod, "__all__", ()):
            assert hasattr(mod, name), f"{mod.__name__}.__all__ lists missing {name}"


def test_every_exported_name_has_a_docstring() -> None:
    undocumented = [n for n in orderbook.__all__ if n != "__version__" and not docstring_of(n)]
    assert not undocumented, f"exported without a docstring: {undocumented}"


def test_every_public_core_method_has_a_docstring() -> None:
    missing = []
    for name in CORE_MODULES:
        for public in module(name).__all__:
            obj = getattr(module(name), public)
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                    continue
                if not (member.__doc__ or "").strip():
                    missing.append(f"{public}.{attr}")
    assert not missing, missing


def test_version_matches_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert orderbook.__version__ == project["version"]


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["orderbook"]
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "orderbook/py.typed"], cwd=ROOT, capture_output=True, text=True
    )
    assert tracked.returncode == 0, "py.typed is not committed"


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_strict_passes_on_the_package() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "-p", "orderbook"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
