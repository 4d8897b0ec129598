"""Where the tests find the checkout, its fixtures and the shared real captures."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The checkout."""
FIXTURES = REPO / "fixtures"
"""Small payloads of the project's own (``fixtures/README.md``)."""
CAPTURES = REPO.parent / "shared" / "data" / "captures"
"""The real recorded sessions beside the checkout (``../shared/data``); tests
that need them skip when the folder is absent."""

TRANSPORTS = ("websockets", "aiohttp")
"""The WebSocket transports every networked test runs on (``tests/conftest.py``)."""
SANS_IO_TESTS = frozenset({"core", "protocol", "sync"})
"""Test folders of the sans-I/O layers: not parametrized by transport."""
