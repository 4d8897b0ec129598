"""``MirrorServer``: the venue's REST and WebSocket API for the replicas, on one aiohttp port.

One ``aiohttp.web`` application (127.0.0.1 by default; HTTP/1.1 keep-alive,
method routing, ``HEAD``, bounded requests) answers:

* ``GET /api/v1/depth?symbol=&limit=`` -- the venue's depth body, from the
  *published* book (see :mod:`orderbook.serve.publisher`) at one update id;
  503 while the symbol is not synced, 400 for a symbol this mirror does not
  replicate or a ``limit`` the venue would refuse;
* ``GET /api/v1/markets`` -- the venue's own body, cached and refreshed every
  ``markets_refresh`` seconds (forwarded while the cache is empty, or when a
  query is given);
* the venue's other public market-data GETs -- forwarded to the configured
  REST URL only, under the rules of :mod:`orderbook.serve.forward`;
* ``GET /health`` -- JSON per symbol; 503 while any symbol is not ready;
* ``GET /ui`` -- the live page (:mod:`orderbook.serve.ui`; ``GET /`` from a
  browser redirects there);
* ``GET /metrics`` -- Prometheus text or OpenMetrics, by ``prometheus_client``
  (see :mod:`orderbook.serve.metrics`);
* a WebSocket at ``/`` speaking the venue's ``SUBSCRIBE`` / ``UNSUBSCRIBE``
  protocol (:mod:`orderbook.protocol.subscribe`) for ``depth.<symbol>`` and
  ``bookTicker.<symbol>``; clients are bounded as :mod:`orderbook.serve.websocket` says.

Anything else is a 400, 404 or 405 with a JSON body ``{"code", "message"}``.
Every bound and timeout is a field of :class:`MirrorLimits`.

Shutdown (:meth:`MirrorServer.close`) is bounded by about two
``close_timeout``: stop listening; answer in-flight forwards 503; close
every WebSocket client with 1001 (each close handshake bounded, then
aborted); cancel unfinished handshakes; let aiohttp end idle and half-sent
HTTP requests; abort whatever is left.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from ..core.book import OrderBook
from ..errors import TransportError, UsageError
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from .metrics import FamiliesCollector, exposition, sink_families
from ..protocol.streams import DEPTH_LIMITS, StreamKind, now_us, parse_stream
from ..protocol.subscribe import ErrorCode, ErrorReply, Method, parse_request
from ..live.consumers import UpdateStream
from ..live.replicator import Replicator
from ..sync.status import Status
from .connections import ConnectionTracker
from .health import health_body
from .forward import ApiCode, ApiError, Target, parse_target, query_value
from .limits import MirrorLimits
from .publisher import Frame, Publisher
from .stats import CloseReason, Endpoint, MirrorStats, mirror_families
from .ui import UI_PATH, load_ui, wants_page
from .http import Handler, HttpLog, checked_target, error_response, relay, serve_file
from .upstream import Answer, Upstream
from .websocket import WsClient

__all__ = ["DEFAULT_PORT", "MirrorServer"]

log = logging.getLogger("orderbook.serve")

DEFAULT_PORT = 8765
"""The port ``orderbook serve`` binds unless told otherwise."""
_LIMITS = {str(n): n for n in DEPTH_LIMITS}
_STARTING = ApiError(503, ApiCode.SERVICE_UNAVAILABLE,
                     "the mirror is starting: its replicator is connecting upstream", retry_after=1)
_MARKETS = "/api/v1/markets"
_Handler = Handler


class MirrorServer:
    """Serve the replicas of a started :class:`Replicator` on one HTTP + WebSocket port.

    Use as an async context manager (or :meth:`start` / :meth:`close`); the
    replicator must be started first and is not closed by the mirror.
    ``host`` / ``port`` to bind (port 0: any free port, see :attr:`port`);
    ``upstream_rest_url`` the only host forwarded requests and the markets
    cache go to (default: the replicator's); ``markets_refresh`` seconds
    between markets refreshes; ``limits`` every bound and timeout.
    """

    def __init__(self, replicator: Replicator, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 upstream_rest_url: str | None = None, markets_refresh: float = 300.0,
                 limits: MirrorLimits | None = None) -> None:
        if markets_refresh <= 0:
            raise UsageError(f"markets_refresh must be > 0, got {markets_refresh}")
        self.replicator = replicator
        self.host = host
        self.limits = limits if limits is not None else MirrorLimits()
        self.stats = MirrorStats()
        self._port = port
        self._rest_url = upstream_rest_url or replicator.rest_url
        self._markets_refresh = markets_refresh
        self._publisher = Publisher((), self.stats.times)
        self._clients: dict[WsClient, None] = {}
        self._subscribers: dict[str, dict[WsClient, None]] = {}
        self._handshakes: set[asyncio.Task[Any]] = set()
        self._markets: bytes | None = None
        self._upstream: Upstream | None = None
        self._stream: UpdateStream | None = None
        self._runner: web.AppRunner | None = None
        self._tracker: ConnectionTracker | None = None
        self._listener: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._attached = False
        self.registry = CollectorRegistry(auto_describe=False)
        """The ``prometheus_client`` registry ``/metrics`` renders (the mirror's
        collector is registered; register more of your own if you like)."""
        self.registry.register(FamiliesCollector(self._families))
        self._local: dict[str, _Handler] = {
            "/": self._counted(Endpoint.WEBSOCKET, self._websocket),
            "/api/v1/depth": self._counted(Endpoint.DEPTH, self._depth),
            "/health": self._counted(Endpoint.HEALTH, self._health),
            "/metrics": self._counted(Endpoint.METRICS, self._metrics),
            **{path: self._counted(Endpoint.UI, serve_file(file)) for path, file in load_ui().items()},
        }
        """The local endpoints by path (routed for GET and HEAD)."""

    def _counted(self, endpoint: Endpoint, handler: _Handler) -> _Handler:
        """``handler``, its answers counted under ``endpoint``."""
        http = self.stats.http

        async def counted(request: web.Request) -> web.StreamResponse:
            response = await handler(request)
            http[endpoint.value, response.status] += 1
            return response

        return counted

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> MirrorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def listen(self) -> None:
        """Bind and answer before the replicator is started (what ``orderbook
        serve`` does, so that an early client gets an answer, never a refused
        connection): until :meth:`start`, ``/health`` and ``/api/v1/depth``
        answer 503 and a WebSocket handshake 503; forwarding works.

        Raises :class:`UsageError` if the mirror already listens,
        :class:`TransportError` if the address cannot be bound.
        """
        if self._listener is not None or self._closing:
            raise UsageError("the mirror is already listening")
        self._upstream = Upstream(self._rest_url, self.limits)
        try:
            await self._listen()
        except OSError as exc:
            await self.close()
            raise TransportError(f"cannot listen on {self.host}:{self._port}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        log.info("mirror listening on %s (WebSocket %s)", self.url, self.ws_url)

    async def start(self) -> None:
        """Attach to the (started) replicator, fill the markets cache and serve
        every endpoint; listens first unless :meth:`listen` was called.

        Raises :class:`UsageError` if the replicator is not started or the
        mirror already is, :class:`TransportError` if the address cannot be bound.
        """
        rep = self.replicator
        if not rep.symbols:
            raise UsageError("start the replicator before the mirror")
        if self._attached or self._closing:
            raise UsageError("the mirror is already started")
        if self._listener is None:
            await self.listen()
        self._publisher = Publisher(rep.symbols, self.stats.times)
        for symbol in rep.symbols:
            if rep.status(symbol) == Status.SYNCED:
                self._publisher.start(symbol, rep.book(symbol))
        self._stream = rep.updates(policy="conflate")  # no await since the copies: nothing missed
        self._attached = True
        self._tasks = [
            asyncio.create_task(self._pump(self._stream), name="orderbook-mirror-pump"),
            asyncio.create_task(self._markets_loop(), name="orderbook-mirror-markets"),
            *([asyncio.create_task(self._keepalive_loop(self.limits.ping_interval),
                                   name="orderbook-mirror-keepalive")]
              if self.limits.ping_interval is not None else []),
        ]
        try:
            await self._refresh_markets()
        except BaseException:
            await self.close()
            raise
        log.info("mirror serving %d symbols", len(rep.symbols))

    async def _listen(self) -> None:
        lim = self.limits
        app = web.Application(middlewares=[self._guard], client_max_size=lim.max_body)
        for path, handler in self._local.items():
            app.router.add_get(path, handler)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=lim.close_timeout,
            keepalive_timeout=lim.keepalive_timeout, lingering_time=lim.close_timeout,
            max_line_size=lim.max_line, max_field_size=lim.max_line, max_headers=lim.max_headers,
            logger=HttpLog(self.stats))
        await self._runner.setup()
        assert self._runner.server is not None

        def refused() -> None:
            self.stats.refused_connections += 1

        def stalled() -> None:
            self.stats.stalled_aborts += 1

        self._tracker = ConnectionTracker(
            self._runner.server, max_connections=lim.max_connections,
            stall_timeout=lim.stall_timeout, on_open=self._on_open, on_stalled=stalled,
            on_refused=refused)
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._tracker, self.host, self._port,
                                                  reuse_address=True, backlog=1024)

    def _on_open(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and self.limits.so_sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.so_sndbuf)

    async def close(self) -> None:
        """Stop listening, close every client (1001) and detach; bounded (see
        the module docstring).  Idempotent."""
        self._closing = True
        if self._listener is not None:
            self._listener.close()
        if self._upstream is not None:
            self._upstream.shutdown()
        for task in list(self._handshakes):
            task.cancel()
        clients = list(self._clients)
        for client in clients:
            client.close(1001, CloseReason.SHUTDOWN.value)
        await asyncio.gather(*(c.outbox.wait_closed() for c in clients))
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tracker is not None:
            self._tracker.abort_all()
        if self._listener is not None:
            try:
                async with asyncio.timeout(self.limits.close_timeout):
                    await self._listener.wait_closed()
            except TimeoutError:
                pass
            self._listener = None
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._listener is None:
            raise UsageError("the mirror is not started")
        port: int = self._listener.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Base URL of the REST API, e.g. ``http://127.0.0.1:8765``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """URL of the WebSocket, e.g. ``ws://127.0.0.1:8765/``."""
        return "ws" + self.url[4:] + "/"

    def ready(self, symbol: str) -> bool:
        """True when ``symbol``'s replica is synced and the published book is current
        (what ``/health`` and ``/api/v1/depth`` require).  O(1)."""
        return self._publisher.ready(symbol, self.replicator.status(symbol) == Status.SYNCED)

    def published_book(self, symbol: str) -> OrderBook | None:
        """The book the frames sent so far lead to (``None`` before the first
        sync).  Read it from the event loop; do not modify it.  O(1)."""
        return self._publisher.book(symbol)

    # ---------------------------------------------------------- publication
    async def _pump(self, stream: UpdateStream) -> None:
        rep, publisher, subscribers = self.replicator, self._publisher, self._subscribers
        async for update in stream:
            try:
                symbol = update.symbol
                out = publisher.update(update, rep.book(symbol), rep.status(symbol) == Status.SYNCED,
                                       now_us(), subscribers)
                for item in out:
                    clients = subscribers.get(item.stream, {})
                    if isinstance(item, Frame):
                        for client in clients:
                            client.send(item.text)
                    else:
                        log.warning("%s; closing %d clients", item.reason, len(clients))
                        for client in list(clients):
                            client.close(item.code, item.reason)
            except Exception:  # a bug: keep publishing and make it loud
                self.stats.internal_errors += 1
                publisher.invalidate(update.symbol)
                log.exception("%s: internal error while publishing an update", update.symbol)

    # ------------------------------------------------------------ WebSocket
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        lim = self.limits
        ws: web.WebSocketResponse = web.WebSocketResponse(
            # no aiohttp heartbeat: its timer can outlive an aborted connection
            # and keep the connection's memory alive; see _keepalive_loop
            timeout=lim.close_timeout, autoclose=True, autoping=False, heartbeat=None,
            compress=False, max_msg_size=lim.max_message)
        if not ws.can_prepare(request):
            if wants_page(request):  # a browser: the live page
                return web.Response(status=303, headers={"Location": UI_PATH})
            return error_response(ApiError(426, ApiCode.INVALID_CLIENT_REQUEST,
                                   "this path is the WebSocket API: send an Upgrade request"))
        if self._closing:
            return error_response(ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "the mirror is shutting down"))
        if not self._attached:
            return error_response(_STARTING)
        transport = request.transport
        task = asyncio.current_task()
        assert task is not None and transport is not None
        self._handshakes.add(task)
        try:
            await ws.prepare(request)
        except ConnectionError:
            return ws
        finally:
            self._handshakes.discard(task)
        client = WsClient(ws, transport, lim, self.stats, str(request.remote))
        self._clients[client] = None
        self.stats.connections += 1
        try:
            await client.run(self._on_message)
        finally:
            for name in list(client.streams):
                self._unsubscribe(client, name)
            del self._clients[client]
        return ws

    async def _keepalive_loop(self, interval: float) -> None:
        """Every ``interval``: ping each client, and drop one that answered
        nothing since the previous ping.  One timer for all clients; O(clients)."""
        while True:
            await asyncio.sleep(interval)
            now = asyncio.get_running_loop().time()
            for client in list(self._clients):
                if not client.keepalive(now, interval):
                    self.stats.keepalive_timeouts += 1

    def _on_message(self, client: WsClient, message: str | bytes) -> None:
        """Carry out one (UN)SUBSCRIBE request; refusals are replied like the venue's."""
        parsed = parse_request(message, max_streams=self.limits.max_streams)
        if isinstance(parsed, ErrorReply):
            client.reply(parsed)
            return
        publisher = self._publisher
        for entry in parsed.entries:
            if isinstance(entry, ErrorReply):
                client.reply(entry)
                continue
            name, stream = entry
            if stream.interval_ms or not publisher.knows(stream.symbol):
                client.reply(parsed.refuse(
                    name, ErrorCode.INVALID_STREAM,
                    f"Unknown stream: {name!r}; this mirror serves depth.<symbol> and "
                    f"bookTicker.<symbol> for its {len(publisher.symbols)} symbols (see /health)"))
            elif parsed.method is Method.UNSUBSCRIBE:
                self._unsubscribe(client, name)
            elif name not in client.streams:
                client.streams.add(name)
                self._subscribers.setdefault(name, {})[client] = None
                if stream.kind is StreamKind.BOOK_TICKER:
                    text = publisher.ticker(stream.symbol, now_us())
                    if text is not None:
                        client.outbox.push(text, optional=True)

    def _unsubscribe(self, client: WsClient, name: str) -> None:
        client.streams.discard(name)
        clients = self._subscribers.get(name)
        if clients is not None:
            clients.pop(client, None)
            if not clients:
                del self._subscribers[name]

    # ----------------------------------------------------------------- HTTP
    @web.middleware
    async def _guard(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Origin-form targets only (see :func:`parse_target`); JSON errors.
        The handlers count their own answers, this counts its own."""
        target = parse_target(request.raw_path)
        if isinstance(target, ApiError):
            return self._refuse(target)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return self._refuse(ApiError(exc.status, ApiCode.NOT_FOUND, exc.reason))
        except Exception:  # a bug: answer, count and make it loud
            self.stats.internal_errors += 1
            log.exception("internal error answering %s %s", request.method, target.path)
            return self._refuse(ApiError(500, ApiCode.SERVER_ERROR, "internal error"))

    def _refuse(self, error: ApiError, endpoint: Endpoint = Endpoint.OTHER) -> web.Response:
        self.stats.http[endpoint.value, error.status] += 1
        return error_response(error)

    async def _other(self, request: web.Request) -> web.StreamResponse:
        """Every target the router did not place: local endpoints by their
        normalized path, allowlisted forwards, else 404; wrong methods 405."""
        target = checked_target(request)
        local = self._local
        if target.path not in local and not target.forwardable:
            return self._refuse(ApiError(404, ApiCode.NOT_FOUND, "Unknown endpoint"))
        if request.method not in ("GET", "HEAD"):
            response = self._refuse(ApiError(
                405, ApiCode.METHOD_NOT_ALLOWED,
                f"{request.method[:16]} is not allowed here: GET or HEAD"))
            response.headers["Allow"] = "GET, HEAD"
            return response
        if target.path in local:
            return await local[target.path](request)
        return await self._forward(request, target)

    async def _forward(self, request: web.Request, target: Target) -> web.StreamResponse:
        markets = target.path == _MARKETS
        endpoint = Endpoint.MARKETS if markets else Endpoint.FORWARD
        if markets and not target.query and self._markets is not None:
            self.stats.http[endpoint.value, 200] += 1
            return web.Response(body=self._markets, content_type="application/json")
        assert self._upstream is not None
        answer = await self._upstream.get(target, head=request.method == "HEAD",
                                          client=str(request.remote))
        if isinstance(answer, ApiError):
            return self._refuse(answer, endpoint)
        if markets and not target.query and answer.status == 200 and request.method == "GET":
            self._markets = answer.body
        self.stats.http[endpoint.value, answer.status] += 1
        return relay(answer)

    async def _depth(self, request: web.Request) -> web.StreamResponse:
        """The depth body at one update id; nothing here yields to the event loop."""
        if not self._attached:
            return error_response(_STARTING)
        target = checked_target(request)
        symbol = query_value(target, "symbol")
        if symbol is None:
            return error_response(ApiError(400, ApiCode.INVALID_CLIENT_REQUEST, "symbol is required"))
        if not self._publisher.knows(symbol):
            return error_response(ApiError(400, ApiCode.INVALID_SYMBOL,
                                   f"Invalid symbol: {symbol[:64]} is not replicated by this mirror"))
        limit = _LIMITS.get(query_value(target, "limit") or "1000")
        if limit is None:
            return error_response(ApiError(400, ApiCode.INVALID_CLIENT_REQUEST,
                                   f"limit must be one of {list(DEPTH_LIMITS)}"))
        if not self.ready(symbol):
            return error_response(ApiError(503, ApiCode.SERVICE_UNAVAILABLE,
                                   f"{symbol} is {self.replicator.status(symbol)} on this mirror; "
                                   "retry shortly", retry_after=1))
        body = self._publisher.depth_body(symbol, limit, now_us())
        return web.Response(body=body, content_type="application/json")

    async def _health(self, request: web.Request) -> web.StreamResponse:
        if not self._attached:
            return web.Response(status=503, body=b'{"status":"starting","clients":0,"symbols":{}}',
                                content_type="application/json")
        status, body = health_body(self.replicator, self._publisher, self.ready, len(self._clients))
        return web.Response(status=status, body=body, content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body, content_type = exposition(self.registry, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _families(self) -> Iterator[Metric]:
        """What :attr:`registry` collects: the replicator's families and the mirror's."""
        kinds = {StreamKind.DEPTH.value: 0, StreamKind.BOOK_TICKER.value: 0}
        for name, clients in self._subscribers.items():
            stream = parse_stream(name)
            if stream is not None:
                kinds[stream.kind.value] += len(clients)
        yield from sink_families([sink.stats() for sink in self.replicator.sinks])  # issue 14
        yield from mirror_families(self.replicator.stats(), self.stats, self._publisher, self.ready,
                                   len(self._clients), kinds)

    # -------------------------------------------------------------- markets
    async def _refresh_markets(self) -> None:
        assert self._upstream is not None
        answer = await self._upstream.get(Target(_MARKETS, ""))
        if isinstance(answer, Answer) and answer.status == 200:
            self._markets = answer.body
        else:
            log.warning("markets cache not refreshed: upstream answered HTTP %d", answer.status)

    async def _markets_loop(self) -> None:
        while True:
            await asyncio.sleep(self._markets_refresh)
            await self._refresh_markets()
