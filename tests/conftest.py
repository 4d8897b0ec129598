"""Fixtures shared by the whole suite (helpers to import live in ``paths.py``
and ``loopback.py``, on the test path through ``pyproject.toml``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paths import CAPTURES, FIXTURES


@pytest.fixture
def small_capture() -> Path:
    """The hand-written two-symbol capture (see ``fixtures/README.md``)."""
    return FIXTURES / "small-capture.jsonl"


@pytest.fixture
def real_captures() -> list[Path]:
    """The real captures of ``../shared/data/captures`` (the test skips without them)."""
    found = sorted(CAPTURES.glob("*.jsonl"))
    if not found:
        pytest.skip(f"no real captures in {CAPTURES}")
    return found
