"""The simulated venue: Backpack's public REST and WebSocket market data on loopback.

One `websockets` server on one ephemeral port answers both: plain HTTP GETs under
`/api/` are served as REST from `process_request` (every response carries
`Connection: close` and the connection is then closed); any other request is a
WebSocket handshake. A generator task advances the `OrderFlow` at `rate` updates per
second, in batches per loop tick, and hands each update to the stream fan-out.

Usage::

    async with SimulatedVenue(OrderFlow(["SOL_USDC"], seed=7)) as venue:
        ...  # venue.rest_url, venue.ws_url, venue.faults, venue.stats
"""

from __future__ import annotations

import asyncio
import http
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ...protocol.streams import DEPTH_LIMITS
from .faults import FaultInjector, Faults, RestRejection
from .flow import FlowExhausted, MarketSpec, OrderFlow, format_decimal
from .stats import VenueStats
from .streams import INTERVALS_MS, Client, Fanout, dumps, parse_stream

__all__ = ["SimulatedVenue"]

_REQUEST_TIMEOUT = 60.0  # seconds to receive a request and answer it (rest_delay < this)
_MAX_CATCH_UP = 0.02  # seconds of updates one tick may produce; beyond, the rate yields

Json = Any
RestResult = tuple[int, Json, dict[str, str]]


class SimulatedVenue:
    """REST + WebSocket servers on 127.0.0.1 serving an `OrderFlow`, with faults.

    Args:
        flow: the true order flow to serve (and to advance).
        faults: fault switches; a fresh all-off `Faults()` if None. The same object
            is exposed as `venue.faults` and may be changed at runtime.
        rate: engine updates per second, in total over all symbols (a ceiling: an
            event loop too busy to keep up gets fewer, never a burst).
        ping_interval: seconds between server WebSocket pings (pong timeout is
            twice that).
        seed: seeds every fault decision.
        queue_size: per-client outgoing queue bound, in messages.
        tick: seconds between generator batches.
        host, port: the address to listen on (loopback, any free port by default).

    Attributes:
        flow: the served `OrderFlow`; `flow.truth(symbol)` is the book to match.
        faults: the live `Faults` switches.
        stats: the live `VenueStats` counters.
        rate: updates per second; may be changed while running.
    """

    def __init__(
        self,
        flow: OrderFlow,
        faults: Faults | None = None,
        *,
        rate: float = 2000.0,
        ping_interval: float = 60.0,
        seed: int = 0,
        queue_size: int = 10_000,
        tick: float = 0.005,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if rate <= 0 or tick <= 0 or ping_interval <= 0 or queue_size < 1:
            raise ValueError("rate, tick, ping_interval must be > 0, queue_size >= 1")
        self.flow = flow
        self.stats = VenueStats()
        self.rate = rate
        self._ping_interval = ping_interval
        self._queue_size = queue_size
        self._tick = tick
        self._host = host
        self._port = port
        self._injector = FaultInjector(faults if faults is not None else Faults(), seed)
        self._fanout = Fanout(flow, self._injector, self.stats)
        self._clients: dict[Client, None] = {}
        self._server: Server | None = None
        self._generator: asyncio.Task[None] | None = None
        self._paused = False
        self._exhausted = False
        self._routes: dict[str, Callable[[dict[str, list[str]]], RestResult]] = {
            "/api/v1/depth": self._depth,
            "/api/v1/markets": self._markets,
            "/api/v1/market": self._market,
            "/api/v1/assets": self._assets,
            "/api/v1/securities": self._securities,
        }

    @property
    def faults(self) -> Faults:
        """The live fault switches (assigning a new `Faults` replaces them all)."""
        return self._injector.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._injector.faults = faults

    # --- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on an ephemeral loopback port by default) and start generating updates."""
        self._server = await serve(
            self._serve_websocket,
            self._host,
            self._port,
            process_request=self._process_request,
            ping_interval=self._ping_interval,
            ping_timeout=2 * self._ping_interval,
            open_timeout=_REQUEST_TIMEOUT,
            server_header="simulated-backpack",
        )
        self._generator = asyncio.create_task(self._generate())

    async def stop(self) -> None:
        """Stop generating, close every connection (1001) and the listener."""
        if self._generator is not None:
            self._generator.cancel()
            await asyncio.gather(self._generator, return_exceptions=True)
            self._generator = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def port(self) -> int:
        """The TCP port both REST and WebSocket are served on."""
        if self._server is None:
            raise RuntimeError("the venue is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API, e.g. "http://127.0.0.1:PORT"."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """URL of the WebSocket API, e.g. "ws://127.0.0.1:PORT/"."""
        return "ws" + self.rest_url[4:] + "/"

    # --- control -------------------------------------------------------------------

    async def pause(self) -> None:
        """Stop generating updates and emit every partial aggregate now.

        Frames already queued are still delivered; after this returns the truth no
        longer moves and the last frame queued on every subscribed depth stream ends
        at the truth's update id (unless a fault lost it).
        """
        self._paused = True
        self._fanout.flush_all()
        await asyncio.sleep(0)

    def resume(self) -> None:
        """Resume generating updates at `rate` (without catching up the pause)."""
        self._paused = False

    @property
    def paused(self) -> bool:
        """True between `pause()` and `resume()`."""
        return self._paused

    @property
    def exhausted(self) -> bool:
        """True once a replayed flow has no update left (a random flow never ends)."""
        return self._exhausted

    async def disconnect_all(
        self, code: int = 1001, reason: str = "going away", *, abrupt: bool = False
    ) -> int:
        """Close every WebSocket connection; return how many were closed.

        With `abrupt`, the TCP connections are aborted without a close frame;
        otherwise a close frame with `code` and `reason` is sent and the closing
        handshake awaited.
        """
        clients = list(self._clients)
        self.stats.disconnects += len(clients)
        if abrupt:
            for client in clients:
                client.ws.transport.abort()
        else:
            await asyncio.gather(*(client.ws.close(code, reason) for client in clients))
        return len(clients)

    # --- generator -----------------------------------------------------------------

    async def _generate(self) -> None:
        """Advance the flow at `rate`, a batch per tick; close aggregation windows."""
        loop = asyncio.get_running_loop()
        start, done, rate = loop.time(), 0, self.rate
        deadlines = {interval: start + interval / 1000 for interval in INTERVALS_MS}
        while True:
            await asyncio.sleep(self._tick)
            now = loop.time()
            if self._paused or self._exhausted or rate != self.rate:
                start, done, rate = now, 0, self.rate
            else:
                due = int((now - start) * rate) - done
                backlog = due - max(1, int(rate * _MAX_CATCH_UP))
                if backlog > 0:  # a starved loop: slow down rather than flood clients
                    due -= backlog
                    done += backlog
                self._advance(due)
                done += due
            for interval, deadline in deadlines.items():
                if now >= deadline:
                    self._fanout.flush_window(interval)
                    deadline += interval / 1000
                    deadlines[interval] = deadline if deadline > now else now + interval / 1000

    def _advance(self, count: int) -> None:
        flow, publish, stats = self.flow, self._fanout.publish, self.stats
        try:
            for _ in range(count):
                publish(flow.next_update())
                stats.updates_generated += 1
        except FlowExhausted:
            self._exhausted = True
            self._fanout.flush_all()

    # --- WebSocket -----------------------------------------------------------------

    async def _serve_websocket(self, conn: ServerConnection) -> None:
        client = Client(conn, self._queue_size, self.stats)
        self._clients[client] = None
        self.stats.connections += 1
        writer = asyncio.create_task(client.run())
        try:
            async for message in conn:
                for reply in self._on_message(client, message):
                    await conn.send(dumps(reply))
        except ConnectionClosed:
            pass
        finally:
            self._fanout.remove(client)
            del self._clients[client]
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    def _on_message(self, client: Client, message: str | bytes) -> list[Json]:
        """Carry out one (UN)SUBSCRIBE request; return the error replies to send."""
        try:
            request = json.loads(message)
            method, params = request["method"], request["params"]
            if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
                raise ValueError(method)
        except (ValueError, TypeError, KeyError):
            self.stats.subscribe_errors += 1
            return [_ws_error("INVALID_CLIENT_REQUEST", "Expected SUBSCRIBE or UNSUBSCRIBE")]
        replies = []
        for name in params:
            reply = self._apply_subscription(client, method, name)
            if reply is not None:
                self.stats.subscribe_errors += 1
                replies.append(reply)
        return replies

    def _apply_subscription(self, client: Client, method: str, name: Any) -> Json | None:
        key = parse_stream(name) if isinstance(name, str) else None
        if key is None:
            return _ws_error("INVALID_STREAM", f"Unknown stream: {name!r}", name)
        if not self._fanout.knows(key.symbol):
            return _ws_error("INVALID_SYMBOL", f"Unknown symbol: {key.symbol}", name)
        if method == "SUBSCRIBE":
            self._fanout.subscribe(client, name, key)
        else:
            self._fanout.unsubscribe(client, name)
        return None

    # --- REST ----------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if not url.path.startswith("/api/"):
            return None  # a WebSocket handshake
        route = self._routes.get(url.path.rstrip("/"), _not_found)
        status, body, headers = route(parse_qs(url.query))
        if self.faults.rest_delay:
            await asyncio.sleep(self.faults.rest_delay)
        return self._response(status, body, headers)

    def _response(self, status: int, body: Json, headers: dict[str, str]) -> Response:
        if status == 429:
            self.stats.responses_429 += 1
        elif status >= 500:
            self.stats.responses_5xx += 1
        payload = dumps(body).encode()
        all_headers = Headers(
            {
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(payload)),
                "Connection": "close",
                **headers,
            }
        )
        return Response(status, http.HTTPStatus(status).phrase, all_headers, payload)

    def _gate(self, *, depth: bool) -> RestResult | None:
        """The rejection a REST request gets from the faults, if any."""
        now = asyncio.get_running_loop().time()
        rejection = self._injector.rest_rejection(now, depth=depth)
        return None if rejection is None else _rejected(rejection)

    def _depth(self, query: dict[str, list[str]]) -> RestResult:
        self.stats.depth_requests += 1
        rejected = self._gate(depth=True)
        if rejected is not None:
            return rejected
        symbol = _single(query, "symbol")
        if symbol is None or not self._fanout.knows(symbol):
            return 400, _rest_error("INVALID_SYMBOL", f"Invalid symbol: {symbol}"), {}
        limit_text = _single(query, "limit") or "1000"
        if not limit_text.isdigit() or int(limit_text) not in DEPTH_LIMITS:
            message = f"limit must be one of {sorted(DEPTH_LIMITS)}"
            return 400, _rest_error("INVALID_CLIENT_REQUEST", message), {}
        lag = min(self.faults.snapshot_lag, self.flow.max_lag(symbol))
        body = self.flow.snapshot(symbol, int(limit_text), lag)
        self._injector.order_snapshot(body)
        return 200, body, {}

    def _markets(self, query: dict[str, list[str]]) -> RestResult:
        self.stats.markets_requests += 1
        rejected = self._gate(depth=False)
        if rejected is not None:
            return rejected
        return 200, [_market_body(self.flow.market(s)) for s in self.flow.symbols], {}

    def _market(self, query: dict[str, list[str]]) -> RestResult:
        self.stats.markets_requests += 1
        rejected = self._gate(depth=False)
        if rejected is not None:
            return rejected
        symbol = _single(query, "symbol")
        if symbol is None or not self._fanout.knows(symbol):
            return 400, _rest_error("INVALID_SYMBOL", f"Invalid symbol: {symbol}"), {}
        return 200, _market_body(self.flow.market(symbol)), {}


    def _assets(self, query: dict[str, list[str]]) -> RestResult:
        """Every base and quote asset of the markets (no deposit networks): what
        a client such as ccxt loads before the markets."""
        self.stats.markets_requests += 1
        rejected = self._gate(depth=False)
        if rejected is not None:
            return rejected
        names = dict.fromkeys(a for s in self.flow.symbols
                              for a in (self.flow.market(s).base, self.flow.market(s).quote) if a)
        return 200, [{"symbol": a, "displayName": a, "coingeckoId": None, "tokens": []}
                     for a in names], {}

    def _securities(self, query: dict[str, list[str]]) -> RestResult:
        """Tokenized stock metadata: none here (an empty list, as the venue answers
        when it lists none)."""
        self.stats.markets_requests += 1
        rejected = self._gate(depth=False)
        if rejected is not None:
            return rejected
        return 200, [], {}


def _not_found(query: dict[str, list[str]]) -> RestResult:
    return 404, _rest_error("NOT_FOUND", "Unknown endpoint"), {}


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _rest_error(code: str, message: str) -> Json:
    return {"code": code, "message": message}


def _ws_error(code: str, message: str, stream: Any = None) -> Json:
    error: dict[str, Any] = {"error": {"code": code, "message": message}}
    if stream is not None:
        error["stream"] = stream
    return error


def _rejected(rejection: RestRejection) -> RestResult:
    headers: dict[str, str] = {}
    if rejection.retry_after is not None:
        headers["Retry-After"] = str(rejection.retry_after)
    return rejection.status, _rest_error(rejection.code, rejection.message), headers


def _market_body(market: MarketSpec) -> Json:
    tick, step = format_decimal(market.tick_size), format_decimal(market.step_size)
    return {
        "symbol": market.symbol,
        "baseSymbol": market.base,
        "quoteSymbol": market.quote,
        "marketType": market.market_type,
        "orderBookState": "Open",
        "visible": True,
        "filters": {
            "price": {"minPrice": tick, "maxPrice": None, "tickSize": tick},
            "quantity": {"minQuantity": step, "maxQuantity": None, "stepSize": step},
        },
    }

