"""A real headless Chromium driven over the DevTools protocol, for the page tests.

A small client on aiohttp's WebSocket (no selenium, no playwright: a Debian
``chromium`` and a dozen CDP commands are all the tests need)::

    async with Browser(tmp_path) as browser:
        page = await browser.open("http://127.0.0.1:8765/ui")
        value = await page.evaluate("document.title")
        png = await page.screenshot()

Chromium runs with a fresh profile in ``tmp_path``, on a DevTools port of its
own choosing on loopback, and is stopped (then killed, if need be) on exit.
Every JavaScript exception and every console or browser log entry at error
level (a Content-Security-Policy violation, a failed load) is kept in
:attr:`Page.problems` for the test to assert on.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = os.environ.get("ORDERBOOK_CHROMIUM", "/usr/bin/chromium")
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_path() -> str:
    """The Chromium executable; AssertionError (never a skip) when it is missing:
    CI installs Debian's ``chromium`` (see ``.ci/run``)."""
    found = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    assert found, f"chromium is not installed ({CHROMIUM}): apt-get install chromium"
    return found


class Browser:
    """A headless Chromium and one DevTools connection to it."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 900) -> None:
        self.profile = profile
        self.size = (width, height)
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._pages: dict[str, Page] = {}
        self.log = profile / "chromium.log"

    async def __aenter__(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        width, height = self.size
        self._proc = await asyncio.create_subprocess_exec(
            chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile / 'profile'}", f"--window-size={width},{height}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            url = await asyncio.wait_for(self._devtools_url(), 30)
            self._http = aiohttp.ClientSession()
            self._ws = await self._http.ws_connect(url, max_msg_size=0)
            self._reader = asyncio.create_task(self._read())
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _devtools_url(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        with self.log.open("w") as log:
            while True:
                line = (await self._proc.stderr.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError(f"chromium exited before listening; see {self.log}")
                log.write(line)
                found = _LISTENING.search(line)
                if found:
                    asyncio.create_task(self._drain(self._proc.stderr))
                    return found.group(1)

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        with self.log.open("a") as log:
            while line := await stream.readline():
                log.write(line.decode(errors="replace"))

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None and not self._ws.closed:
            try:
                await asyncio.wait_for(self.send("Browser.close"), 5)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            doc = message.json()
            if "id" in doc:
                future = self._waiting.pop(doc["id"], None)
                if future is not None and not future.done():
                    if "error" in doc:
                        future.set_exception(RuntimeError(f"CDP error: {doc['error']}"))
                    else:
                        future.set_result(doc.get("result", {}))
            elif "sessionId" in doc and doc["sessionId"] in self._pages:
                self._pages[doc["sessionId"]].event(doc["method"], doc.get("params", {}))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None) -> Any:
        """One DevTools command; its result (RuntimeError for a CDP error)."""
        assert self._ws is not None
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        doc: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            doc["sessionId"] = session
        await self._ws.send_json(doc)
        return await future

    async def open(self, url: str) -> Page:
        """A new tab loading ``url`` (returns once it fired ``load``)."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        width, height = self.size
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        loaded = page.expect("Page.loadEventFired")
        await page.send("Page.navigate", {"url": url})
        await asyncio.wait_for(loaded, 30)
        return page


class Page:
    """One tab: evaluate JavaScript, take screenshots, collect its problems."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.problems: list[str] = []
        self._expected: dict[str, list[asyncio.Future[Any]]] = {}

    def event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.problems.append(f"exception: {details.get('exception', {}).get('description') or details}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.problems.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append(f"console.error: {params.get('args')}")
        for future in self._expected.pop(method, []):
            if not future.done():
                future.set_result(params)

    def expect(self, method: str) -> asyncio.Future[Any]:
        """A future of the next event ``method``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._expected.setdefault(method, []).append(future)
        return future

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.browser.send(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (awaited if it is a promise);
        AssertionError with the JavaScript error if it throws."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression[:80]!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; its value.  AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {expression!r}")
            await asyncio.sleep(0.05)

    async def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(shot["data"])
