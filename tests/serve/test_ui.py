"""The mirror's live page (``/ui``) in a real headless Chromium, against the simulated venue.

The page keeps its own exact books (``/api/v1/depth`` + the mirror's WebSocket,
bridged by update id); the test reads what the page shows (the ``data-*``
attributes of each symbol's section, written together in one task) and
compares it with ``/api/v1/depth`` at the same update id, and with the venue's
truth.  Chromium missing is a failure, not a skip: CI installs it.

The screenshot goes to the test's tmp dir; with ``ORDERBOOK_DOCS_SCREENSHOT=1``
it also replaces ``docs/ui.png`` (the README's picture), which a normal run
leaves alone so that the work tree stays clean.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import time
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from browser import Browser, Page

from orderbook.live.replicator import Replicator
from orderbook.serve import MirrorServer
from orderbook.serve.ui import CSP, load_ui
from orderbook.testing.venue import Faults, OrderFlow, SimulatedVenue
from paths import REPO

SYMBOLS = ["SOL_USDC", "BTC_USDC_PERP", "ETH_USDC", "SPCX.US_USDC"]
SHOWN = "orderbookUI.app.shown()"


def run(coro: Any, timeout: float = 150) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def levels(raw: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in raw]


async def all_synced(page: Page, timeout: float = 45.0, resyncs: int = 0) -> dict[str, Any]:
    """What the page shows once every symbol is synced (after ``resyncs`` resyncs at least)."""
    expression = (f"(() => {{ const s = {SHOWN}; const v = Object.values(s); "
                  f"return v.length === {len(SYMBOLS)} && v.every(x => x.state === 'synced' "
                  f"&& x.resyncs >= {resyncs}) && s; }})()")
    shown: dict[str, Any] = await page.wait_for(expression, timeout)
    return shown


async def same_as_rest(page: Page, mirror: MirrorServer, flow: OrderFlow,
                       timeout: float = 30.0) -> dict[str, Any]:
    """Poll until the page shows, for every symbol, the update id ``/api/v1/depth``
    answers; then the best bid and ask shown must be the REST body's, the page's
    whole book the REST book and the venue's truth.  Returns what was compared."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=mirror.url) as http:
        while True:
            shown = await page.evaluate(SHOWN)
            bodies = {s: (await http.get("/api/v1/depth", params={"symbol": s, "limit": 1000})).json()
                      for s in SYMBOLS}
            if all(shown[s]["updateId"] == bodies[s]["lastUpdateId"] for s in SYMBOLS):
                break
            assert time.monotonic() < deadline, f"page {shown} never reached REST ids"
            await asyncio.sleep(0.05)
    for symbol in SYMBOLS:
        page_view, body = shown[symbol], bodies[symbol]
        bid, ask = levels(body["bids"])[0], levels(body["asks"])[0]
        assert (Decimal(page_view["bestBid"]), Decimal(page_view["bestBidQty"])) == bid, symbol
        assert (Decimal(page_view["bestAsk"]), Decimal(page_view["bestAskQty"])) == ask, symbol
        dump = await page.evaluate(f"orderbookUI.app.cards.get({json.dumps(symbol)}).book.dump()")
        assert dump["lastUpdateId"] == body["lastUpdateId"]
        for side in ("bids", "asks"):
            mine, rest = levels(dump[side]), levels(body[side])
            assert mine[:1000] == rest, (symbol, side)
        truth = flow.truth(symbol)
        assert int(body["lastUpdateId"]) == truth.last_update_id
        assert levels(dump["bids"]) == truth.bids() and levels(dump["asks"]) == truth.asks()
        text = await page.evaluate(
            f"document.getElementById({json.dumps('best-bid-' + symbol)}).textContent")
        assert text == f"{page_view['bestBid']} × {page_view['bestBidQty']}"
    return {s: (shown[s]["updateId"], shown[s]["bestBid"], shown[s]["bestAsk"]) for s in SYMBOLS}


def test_the_page_shows_the_books_of_api_v1_depth_at_the_same_update_id(tmp_path: Path) -> None:
    async def main() -> None:
        flow = OrderFlow(SYMBOLS, seed=7)
        async with SimulatedVenue(flow, faults=Faults(aggregate=True), rate=200.0) as venue:
            async with Replicator(SYMBOLS, rest_url=venue.rest_url, ws_url=venue.ws_url) as up:
                async with MirrorServer(up, port=0) as mirror:
                    async with Browser(tmp_path / "chromium") as browser:
                        page = await browser.open(mirror.url + "/")  # a browser is sent to /ui
                        assert await page.evaluate("location.pathname") == "/ui"
                        first = await all_synced(page)
                        await page.wait_for(  # the books move with the feed; tickers agree
                            "[...orderbookUI.app.cards.values()].every(c => c.rate.frames > 0 && c.rate.ids > 0 "
                            "&& c.ticker.startsWith('agrees') && BigInt(c.root.dataset.updateId) > "
                            f"BigInt({json.dumps({k: v['updateId'] for k, v in first.items()})}"
                            "[c.book.symbol]))")
                        shot = await page.screenshot()
                        await venue.pause()
                        compared = await same_as_rest(page, mirror, flow)

                        # a lost connection: every book resyncs from a new snapshot
                        venue.resume()
                        await page.evaluate("orderbookUI.app.dropConnection()")
                        await page.wait_for("orderbookUI.app.reconnects >= 1")
                        await all_synced(page, resyncs=1)
                        await asyncio.sleep(0.5)
                        await venue.pause()
                        again = await same_as_rest(page, mirror, flow)
                        assert all(int(again[s][0]) > int(compared[s][0]) for s in SYMBOLS)
                        assert page.problems == []  # no JS error, no CSP violation, no failed load
        assert png_size(shot) == (1280, 900)
        (tmp_path / "ui.png").write_bytes(shot)
        if os.environ.get("ORDERBOOK_DOCS_SCREENSHOT") == "1":
            (REPO / "docs" / "ui.png").write_bytes(shot)
    run(main())


# The page's book logic, run in the browser itself: every continuity rule.
_LOGIC = r"""
(() => {
  const { LocalBook, normalize, compare, subtract, middle, parseJson } = orderbookUI;
  const out = {};
  const f = (U, u, b = [], a = []) => ({ U: BigInt(U), u: BigInt(u), b, a });
  const snap = (id, bids, asks) => ({ lastUpdateId: BigInt(id), bids, asks });

  let book = new LocalBook("X");
  out.buffered = [book.onFrame(f(99, 100)), book.onFrame(f(101, 103, [["9", "2"]]))];
  out.bridgeInside = book.onSnapshot(snap(102, [["9", "1"], ["8", "1"]], [["11", "1"]]));
  out.afterBridge = [book.lastId.toString(), book.bids.best()];
  out.contiguous = book.onFrame(f(104, 104, [["8.000", "0.000"]], [["10.5", "3"]]));
  out.zeroRemoved = [book.bids.size, book.asks.best()];
  out.old = book.onFrame(f(100, 104));
  out.gap = book.onFrame(f(106, 106));
  out.afterGap = [book.synced, book.lastId, book.bids.size];

  book = new LocalBook("X");
  book.onFrame(f(105, 106));
  out.stale = book.onSnapshot(snap(100, [], []));
  out.staleKeepsBuffer = [book.synced, book.buffer.length];
  out.fresh = book.onSnapshot(snap(104, [["1", "1"]], [["2", "1"]]));
  out.freshId = book.lastId.toString();

  book = new LocalBook("X");
  book.onSnapshot(snap(7, [["10", "1"]], [["11", "1"]]));
  out.newerSnapshotFirstFrame = book.onFrame(f(5, 9, [], [["12", "1"]]));
  out.crossed = book.onFrame(f(10, 10, [["11", "1"]]));
  out.afterCrossed = book.synced;
  out.crossedSnapshot = new LocalBook("X").onSnapshot(snap(1, [["5", "1"]], [["5", "1"]]));

  out.normalize = ["010.50", "0.000", "7", "0.10"].map(normalize);
  out.compare = [compare("9.99", "10"), compare("10", "10.0".replace(/\.0$/, "")), compare("1.05", "1.5")];
  out.exact = [subtract("0.3", "0.1"), subtract("1", "1.0001"), middle("0.1", "0.2"), middle("3", "4")];
  const big = parseJson('{"data":{"U":9007199254740993,"u":"9007199254740995"},"lastUpdateId":"12345678901234567890"}');
  out.bigIds = [big.data.U.toString(), big.data.u.toString(), big.lastUpdateId.toString()];
  try { parseJson('{"U":-1}'); out.badId = "accepted"; } catch (e) { out.badId = "refused"; }
  try { normalize("1e5"); out.badDecimal = "accepted"; } catch (e) { out.badDecimal = "refused"; }
  return out;
})()
"""


def test_the_page_book_follows_every_continuity_rule(tmp_path: Path) -> None:
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=2)
        async with SimulatedVenue(flow, rate=50.0) as venue:
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url) as up:
                async with MirrorServer(up, port=0) as mirror:
                    async with Browser(tmp_path / "chromium") as browser:
                        page = await browser.open(mirror.url + "/ui")
                        out = await page.evaluate(_LOGIC)
                        assert page.problems == []
        assert out["buffered"] == ["buffered", "buffered"]
        assert out["bridgeInside"] == "synced"  # the snapshot at 102 inside the frame 101..103
        assert out["afterBridge"] == ["103", ["9", "2"]]
        assert out["contiguous"] == "applied"
        assert out["zeroRemoved"] == [1, ["10.5", "3"]]
        assert out["old"] == "old"
        assert out["gap"] == "gap" and out["afterGap"] == [False, None, 0]
        assert out["stale"] == "stale" and out["staleKeepsBuffer"] == [False, 1]
        assert out["fresh"] == "synced" and out["freshId"] == "106"
        assert out["newerSnapshotFirstFrame"] == "applied"
        assert out["crossed"] == "crossed" and out["afterCrossed"] is False
        assert out["crossedSnapshot"] == "crossed"
        assert out["normalize"] == ["10.5", "0", "7", "0.1"]
        assert out["compare"] == [-1, 0, -1]
        assert out["exact"] == ["0.2", "-0.0001", "0.15", "3.5"]
        assert out["bigIds"] == ["9007199254740993", "9007199254740995", "12345678901234567890"]
        assert out["badId"] == "refused" and out["badDecimal"] == "refused"
    run(main())


def test_the_page_is_served_with_strict_headers_and_ships_as_package_data() -> None:
    async def main() -> None:
        flow = OrderFlow(["SOL_USDC"], seed=1)
        async with SimulatedVenue(flow, rate=20.0) as venue:
            async with Replicator(["SOL_USDC"], rest_url=venue.rest_url, ws_url=venue.ws_url) as up:
                async with MirrorServer(up, port=0) as mirror:
                    async with httpx.AsyncClient(base_url=mirror.url) as http:
                        for path, kind in (("/ui", "text/html"), ("/ui/ui.js", "text/javascript"),
                                           ("/ui/book.js", "text/javascript"),
                                           ("/ui/chart.js", "text/javascript"),
                                           ("/ui/ui.css", "text/css"), ("/ui/favicon.svg", "image/svg+xml")):
                            response = await http.get(path)
                            assert response.status_code == 200, path
                            assert response.headers["content-type"].startswith(kind), path
                            assert response.headers["content-security-policy"] == CSP
                            assert response.headers["x-content-type-options"] == "nosniff"
                            assert (await http.head(path)).status_code == 200
                        page = await http.get("/", headers={"Accept": "text/html,*/*"})
                        assert page.status_code == 303 and page.headers["location"] == "/ui"
                        assert (await http.get("/")).status_code == 426  # not a browser: as before
                        assert (await http.get("/ui/nothing.js")).status_code == 404
                        html = (await http.get("/ui")).text
                        assert "<script" in html and "<script>" not in html  # no inline script
                        assert "http://" not in html and "https://" not in html  # no other origin
                        metrics = (await http.get("/metrics")).text
                        assert 'orderbook_mirror_http_requests_total{code="200",endpoint="ui"}' in metrics
    run(main())
    assert "default-src 'none'" in CSP and "'unsafe-inline'" not in CSP
    files = load_ui()  # read as package data, through importlib.resources
    assert files["/ui/ui.js"].body.startswith(b"// The mirror's live page")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "serve/static/*" in config["tool"]["setuptools"]["package-data"]["orderbook"]
    for name in ("ui.html", "book.js", "chart.js", "ui.js", "ui.css", "favicon.svg"):
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", f"orderbook/serve/static/{name}"],
                                 cwd=REPO, capture_output=True)
        assert tracked.returncode == 0, f"{name} is not committed"
