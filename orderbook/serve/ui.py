"""The mirror's live web page (``/ui``): static files shipped with the package.

``orderbook/serve/static/`` holds the page (plain HTML, CSS and JavaScript
with a canvas depth chart: no library, nothing from another origin).  The
JavaScript keeps each book exactly, from ``/api/v1/depth`` and the mirror's
own WebSocket, as any Backpack client does: ``book.js`` (the book, no I/O),
``chart.js`` (the depth chart), ``ui.js`` (the app; see the comment atop it).

Every file is read once, when the mirror starts, and served from memory with
strict headers: a ``Content-Security-Policy`` allowing this origin only (no
inline script or style, no frame, no form), ``X-Content-Type-Options:
nosniff``, ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-cache``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from aiohttp import web

__all__ = ["CSP", "HEADERS", "UI_PATH", "StaticFile", "load_ui", "wants_page"]

UI_PATH = "/ui"
"""Where the page is served (``/`` redirects a browser there)."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""The page's Content-Security-Policy: this origin only, for every kind of load."""

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Headers of every file of the page."""

_FILES = {
    UI_PATH: ("ui.html", "text/html; charset=utf-8"),
    f"{UI_PATH}/book.js": ("book.js", "text/javascript; charset=utf-8"),
    f"{UI_PATH}/chart.js": ("chart.js", "text/javascript; charset=utf-8"),
    f"{UI_PATH}/ui.js": ("ui.js", "text/javascript; charset=utf-8"),
    f"{UI_PATH}/ui.css": ("ui.css", "text/css; charset=utf-8"),
    f"{UI_PATH}/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file of the page: its bytes and content type."""

    body: bytes
    content_type: str

    def response(self) -> web.Response:
        """The file with the page's headers (:data:`HEADERS`).  O(1): the body is shared."""
        response = web.Response(body=self.body, headers=HEADERS)
        response.headers["Content-Type"] = self.content_type
        return response


def load_ui() -> dict[str, StaticFile]:
    """The page's files by URL path, read from the package data.  O(total size);
    raises :class:`OSError` if the package was installed without them."""
    static = resources.files(__package__) / "static"
    return {path: StaticFile(static.joinpath(name).read_bytes(), kind)
            for path, (name, kind) in _FILES.items()}


def wants_page(request: web.Request) -> bool:
    """True for a plain browser navigation (``Accept`` names ``text/html``): the
    WebSocket path then redirects to the page rather than answering 426."""
    return "text/html" in request.headers.get("Accept", "")
