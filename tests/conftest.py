"""Fixtures shared by the whole suite (helpers to import live in ``paths.py``
and ``loopback.py``, on the test path through ``pyproject.toml``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paths import CAPTURES, FIXTURES, SANS_IO_TESTS, TRANSPORTS


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


# ------------------------------------------------------------- transports


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test outside the sans-I/O folders over :data:`TRANSPORTS`.

    The choice reaches the code under test through ``$ORDERBOOK_TRANSPORT``,
    the default of every ``transport=`` (``Replicator``, ``StreamConnection``,
    the ``--transport`` option of the commands, subprocesses included), so a
    new networked test runs on both transports without doing anything.
    """
    folder = Path(str(metafunc.definition.path)).relative_to(Path(__file__).parent).parts[0]
    if "ws_transport" in metafunc.fixturenames and folder not in SANS_IO_TESTS:
        metafunc.parametrize("ws_transport", TRANSPORTS, indirect=True)


@pytest.fixture(autouse=True)
def ws_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The WebSocket transport this test runs on (``$ORDERBOOK_TRANSPORT`` is set to it)."""
    from orderbook.live.websocket import DEFAULT_TRANSPORT, TRANSPORT_ENV

    name: str = getattr(request, "param", DEFAULT_TRANSPORT)
    monkeypatch.setenv(TRANSPORT_ENV, name)
    return name
