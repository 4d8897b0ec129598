// The mirror's live page: exact books kept in the browser, a depth chart per symbol.
//
// Each book is bootstrapped like any Backpack client does it: subscribe to
// depth.<symbol> (frames are buffered), fetch /api/v1/depth (lastUpdateId = L),
// drop the buffered frames with u <= L, apply the first one only if U <= L+1 <= u
// and every later one only if U == previous u + 1.  Anything else (a gap, a
// crossed book, a lost connection) clears the book and starts again from a new
// snapshot.  Prices and quantities stay decimal strings compared exactly; update
// ids are BigInt; floats are used only to draw the chart.
//
// No library, no network beyond this origin (the page is served with a
// Content-Security-Policy allowing 'self' only).  window.orderbookUI exposes the
// pieces for tests and for the curious: LocalBook, the decimal helpers, the app.
"use strict";

(() => {
  // ------------------------------------------------------------- decimals
  const DECIMAL = /^\d+(?:\.\d+)?$/;

  /** The canonical spelling of a non-negative decimal string ("010.50" -> "10.5"). */
  function normalize(text) {
    if (typeof text !== "string" || !DECIMAL.test(text)) {
      throw new Error(`not a decimal string: ${String(text).slice(0, 40)}`);
    }
    const [whole, fraction = ""] = text.split(".");
    const int = whole.replace(/^0+(?=\d)/, "");
    const frac = fraction.replace(/0+$/, "");
    return frac ? `${int}.${frac}` : int;
  }

  /** True for any spelling of zero ("0", "0.000"). */
  function isZero(text) {
    return !/[1-9]/.test(text);
  }

  /** -1, 0 or 1: the order of two canonical decimal strings, exactly. */
  function compare(a, b) {
    const [ai, af = ""] = a.split(".");
    const [bi, bf = ""] = b.split(".");
    if (ai.length !== bi.length) return ai.length < bi.length ? -1 : 1;
    if (ai !== bi) return ai < bi ? -1 : 1;
    const n = Math.max(af.length, bf.length);
    const x = af.padEnd(n, "0");
    const y = bf.padEnd(n, "0");
    return x === y ? 0 : x < y ? -1 : 1;
  }

  function decimals(text) {
    const dot = text.indexOf(".");
    return dot < 0 ? 0 : text.length - dot - 1;
  }

  function scaled(text, scale) {
    const [whole, fraction = ""] = text.split(".");
    return BigInt(whole + fraction.padEnd(scale, "0"));
  }

  function unscaled(value, scale) {
    const negative = value < 0n;
    let digits = (negative ? -value : value).toString();
    if (scale > 0) {
      digits = digits.padStart(scale + 1, "0");
      digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`.replace(/\.?0+$/, "");
    }
    return (negative ? "-" : "") + digits;
  }

  /** a - b, exact (may be negative). */
  function subtract(a, b) {
    const scale = Math.max(decimals(a), decimals(b));
    return unscaled(scaled(a, scale) - scaled(b, scale), scale);
  }

  /** (a + b) / 2, exact. */
  function middle(a, b) {
    const scale = Math.max(decimals(a), decimals(b));
    return unscaled((scaled(a, scale) + scaled(b, scale)) * 5n, scale + 1);
  }

  /** JSON with update ids as BigInt: U, u and lastUpdateId, whatever their JSON type. */
  function parseJson(text) {
    return JSON.parse(text, (key, value, context) => {
      if (key !== "U" && key !== "u" && key !== "lastUpdateId") return value;
      if (typeof value === "string" && /^\d+$/.test(value)) return BigInt(value);
      if (typeof value === "number") {
        const source = context && typeof context.source === "string" ? context.source : null;
        if (source !== null && /^\d+$/.test(source)) return BigInt(source);
        if (Number.isSafeInteger(value) && value >= 0) return BigInt(value);
      }
      throw new Error(`bad update id ${key}: ${String(value).slice(0, 40)}`);
    });
  }

  // ------------------------------------------------------------ the book
  /** One side: price -> quantity, and the prices sorted best first. */
  class Side {
    constructor(descending) {
      this.descending = descending;
      this.levels = new Map();
      this.prices = [];
    }

    order(a, b) {
      const c = compare(a, b);
      return this.descending ? -c : c;
    }

    /** Index of the first price not better than `price`: O(log n). */
    find(price) {
      let lo = 0;
      let hi = this.prices.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.order(this.prices[mid], price) < 0) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }

    /** Set one level to an absolute quantity (zero removes it): O(log n + shift). */
    set(priceText, qtyText) {
      const price = normalize(priceText);
      const qty = normalize(qtyText);
      if (isZero(qty)) {
        if (this.levels.delete(price)) this.prices.splice(this.find(price), 1);
        return;
      }
      if (!this.levels.has(price)) this.prices.splice(this.find(price), 0, price);
      this.levels.set(price, qty);
    }

    clear() {
      this.levels.clear();
      this.prices = [];
    }

    best() {
      const price = this.prices[0];
      return price === undefined ? null : [price, this.levels.get(price)];
    }

    top(n) {
      return this.prices.slice(0, n).map((price) => [price, this.levels.get(price)]);
    }

    get size() {
      return this.prices.length;
    }
  }

  /**
   * The exact book of one symbol, with no I/O: the app feeds it frames and
   * snapshots and acts on what the methods return.
   *
   * onFrame(frame)   -> "buffered" | "applied" | "old" | "gap" | "crossed"
   * onSnapshot(body) -> "synced" | "stale" | "gap" | "crossed"
   * A "gap" or "crossed" result has cleared the book: fetch a new snapshot.
   */
  class LocalBook {
    constructor(symbol, maxBuffer = 10000) {
      this.symbol = symbol;
      this.maxBuffer = maxBuffer;
      this.bids = new Side(true);
      this.asks = new Side(false);
      this.counts = { frames: 0, applied: 0, old: 0, gaps: 0, crossed: 0, stale: 0, snapshots: 0 };
      this.reset();
    }

    /** Clear the book; frames are buffered again until the next snapshot. */
    reset() {
      this.bids.clear();
      this.asks.clear();
      this.lastId = null;
      this.bridged = false;
      this.synced = false;
      this.buffer = [];
    }

    onFrame(frame) {
      this.counts.frames += 1;
      if (!this.synced) {
        if (this.buffer.length >= this.maxBuffer) this.buffer.shift();
        this.buffer.push(frame);
        return "buffered";
      }
      return this.continueWith(frame);
    }

    continueWith(frame) {
      if (frame.u <= this.lastId) {
        this.counts.old += 1;
        return "old";
      }
      const next = this.lastId + 1n;
      if (this.bridged ? frame.U !== next : frame.U > next) {
        this.counts.gaps += 1;
        this.reset();
        return "gap";
      }
      for (const [price, qty] of frame.b) this.bids.set(price, qty);
      for (const [price, qty] of frame.a) this.asks.set(price, qty);
      this.lastId = frame.u;
      this.bridged = true;
      this.counts.applied += 1;
      return this.checkCrossed() ? "crossed" : "applied";
    }

    onSnapshot(body) {
      const last = body.lastUpdateId;
      const pending = this.buffer.filter((frame) => frame.u > last);
      if (pending.length && pending[0].U > last + 1n) {
        this.counts.stale += 1; // older than the frames that must continue it
        return "stale";
      }
      this.bids.clear();
      this.asks.clear();
      for (const [price, qty] of body.bids) this.bids.set(price, qty);
      for (const [price, qty] of body.asks) this.asks.set(price, qty);
      this.lastId = last;
      this.bridged = false;
      this.synced = true;
      this.buffer = [];
      this.counts.snapshots += 1;
      if (this.checkCrossed()) return "crossed";
      for (const frame of pending) {
        const result = this.continueWith(frame);
        if (result === "gap" || result === "crossed") return result;
      }
      return "synced";
    }

    checkCrossed() {
      const bid = this.bids.best();
      const ask = this.asks.best();
      if (bid && ask && compare(bid[0], ask[0]) >= 0) {
        this.counts.crossed += 1;
        this.reset();
        return true;
      }
      return false;
    }

    /** The whole book as the REST body spells it (for tests). */
    dump() {
      return {
        lastUpdateId: this.lastId === null ? null : this.lastId.toString(),
        bids: this.bids.top(this.bids.size),
        asks: this.asks.top(this.asks.size),
      };
    }
  }

  // -------------------------------------------------------------- drawing
  const COLORS = { bid: "#26a69a", ask: "#ef5350", grid: "#263040", text: "#7b8794", mid: "#d8dee9" };
  const CHART_LEVELS = 200;

  function cumulative(levels) {
    let total = 0;
    return levels.map(([price, qty]) => {
      total += parseFloat(qty);
      return [parseFloat(price), total];
    });
  }

  function shortNumber(value) {
    if (!Number.isFinite(value)) return "-";
    const abs = Math.abs(value);
    if (abs >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
    if (abs >= 1e3) return `${(value / 1e3).toFixed(2)}k`;
    if (abs >= 100) return value.toFixed(1);
    return value.toPrecision(4);
  }

  /** The depth chart: cumulative bids (left of the mid) and asks (right). */
  function drawDepth(canvas, book) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 560;
    const height = canvas.clientHeight || 220;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px ui-monospace, 'DejaVu Sans Mono', monospace";
    const bids = cumulative(book.bids.top(CHART_LEVELS));
    const asks = cumulative(book.asks.top(CHART_LEVELS));
    if (!book.synced || !bids.length || !asks.length) {
      ctx.fillStyle = COLORS.text;
      ctx.fillText(book.synced ? "one side is empty" : "waiting for a snapshot …", 12, height / 2);
      return;
    }
    const pad = { left: 52, right: 12, top: 10, bottom: 22 };
    const mid = (bids[0][0] + asks[0][0]) / 2;
    const half = Math.max(mid - bids[bids.length - 1][0], asks[asks.length - 1][0] - mid) || 1;
    const low = mid - half;
    const high = mid + half;
    const maxQty = Math.max(bids[bids.length - 1][1], asks[asks.length - 1][1]) * 1.08 || 1;
    const x = (price) => pad.left + ((price - low) / (high - low)) * (width - pad.left - pad.right);
    const y = (qty) => height - pad.bottom - (qty / maxQty) * (height - pad.top - pad.bottom);
    const base = y(0);

    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = COLORS.text;
    for (let i = 0; i <= 4; i += 1) {
      const qty = (maxQty * i) / 4;
      const yy = Math.round(y(qty)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(width - pad.right, yy);
      ctx.stroke();
      ctx.fillText(shortNumber(qty), 4, yy + 4);
    }
    const digits = Math.min(12, Math.max(0, Math.ceil(-Math.log10((high - low) / 4)) + 1));
    for (const price of [low, (low + mid) / 2, mid, (mid + high) / 2, high]) {
      const label = price.toFixed(digits);
      const w = ctx.measureText(label).width;
      const xx = Math.min(Math.max(x(price) - w / 2, pad.left), width - pad.right - w);
      ctx.fillText(label, xx, height - 6);
    }

    const side = (points, color, edge) => {
      ctx.beginPath();
      ctx.moveTo(x(points[0][0]), base);
      let previous = 0;
      for (const [price, total] of points) {
        ctx.lineTo(x(price), y(previous));
        ctx.lineTo(x(price), y(total));
        previous = total;
      }
      ctx.lineTo(x(edge), y(previous));
      ctx.lineTo(x(edge), base);
      ctx.closePath();
      ctx.fillStyle = `${color}33`;
      ctx.fill();
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    };
    side(bids, COLORS.bid, low);
    side(asks, COLORS.ask, high);

    ctx.setLineDash([4, 4]);
    ctx.strokeStyle = COLORS.mid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(x(mid)) + 0.5, pad.top);
    ctx.lineTo(Math.round(x(mid)) + 0.5, base);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  // ------------------------------------------------------------------ app
  const SNAPSHOT_LIMIT = 1000;
  const MAX_STREAMS = 100; // per SUBSCRIBE, as the venue allows

  function element(tag, attributes = {}, text = "") {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  /** One symbol's card: its book, its DOM, its rates. */
  class Card {
    constructor(symbol) {
      this.book = new LocalBook(symbol);
      this.resyncs = 0;
      this.health = null;
      this.ticker = "pending";
      this.rate = { frames: 0, ids: 0, lastFrames: 0, lastId: null };
      this.fetching = false;
      this.root = element("section", { class: "book", id: `book-${symbol}`, "data-symbol": symbol,
                                       "data-state": "waiting" });
      const header = element("header");
      header.append(element("h2", {}, symbol));
      this.state = element("span", { class: "badge state", "data-state": "waiting" }, "waiting");
      this.mirror = element("span", { class: "badge mirror", "data-state": "waiting" }, "mirror: …");
      header.append(this.state, this.mirror);
      this.canvas = element("canvas", { class: "depth", width: "560", height: "220" });
      const list = element("dl");
      this.fields = {};
      for (const [name, label] of [["best-bid", "best bid"], ["best-ask", "best ask"], ["spread", "spread"],
                                   ["mid", "mid"], ["update-id", "update id"], ["rate", "updates/s"],
                                   ["resyncs", "resyncs"], ["ticker", "bookTicker"]]) {
        list.append(element("dt", {}, label));
        this.fields[name] = element("dd", { class: `num ${name}`, id: `${name}-${symbol}` }, "-");
        list.append(this.fields[name]);
      }
      this.root.append(header, this.canvas, list);
    }

    /** Write the book's state to the DOM, in one go (a reader never sees half of it). */
    render() {
      const book = this.book;
      const bid = book.synced ? book.bids.best() : null;
      const ask = book.synced ? book.asks.best() : null;
      const state = book.synced ? "synced" : this.resyncs ? "resyncing" : "waiting";
      const data = this.root.dataset;
      data.state = state;
      data.updateId = book.synced ? book.lastId.toString() : "";
      data.bestBid = bid ? bid[0] : "";
      data.bestBidQty = bid ? bid[1] : "";
      data.bestAsk = ask ? ask[0] : "";
      data.bestAskQty = ask ? ask[1] : "";
      data.resyncs = String(this.resyncs);
      this.state.dataset.state = state;
      this.state.textContent = state;
      const f = this.fields;
      f["best-bid"].textContent = bid ? `${bid[0]} × ${bid[1]}` : "-";
      f["best-ask"].textContent = ask ? `${ask[0]} × ${ask[1]}` : "-";
      if (bid && ask) {
        const spread = subtract(ask[0], bid[0]);
        const mid = middle(bid[0], ask[0]);
        const bps = (parseFloat(spread) / parseFloat(mid)) * 1e4;
        f.spread.textContent = `${spread} (${bps.toFixed(2)} bps)`;
        f.mid.textContent = mid;
        data.spread = spread;
      } else {
        f.spread.textContent = "-";
        f.mid.textContent = "-";
        data.spread = "";
      }
      f["update-id"].textContent = data.updateId || "-";
      f.rate.textContent = `${this.rate.frames.toFixed(1)} frames · ${this.rate.ids.toFixed(0)} ids`;
      f.resyncs.textContent = `${this.resyncs} (${book.counts.gaps} gaps)`;
      f.ticker.textContent = this.ticker;
      f.ticker.dataset.ticker = this.ticker.split(" ")[0];
      const health = this.health;
      this.mirror.dataset.state = health === null ? "waiting" : health.ready ? "synced" : "resyncing";
      this.mirror.textContent = health === null ? "mirror: …" : `mirror: ${health.status}`;
      drawDepth(this.canvas, book);
    }

    /** Called once a second: frames and update ids per second over the last second. */
    tick(seconds) {
      const book = this.book;
      const frames = book.counts.frames - this.rate.lastFrames;
      this.rate.lastFrames = book.counts.frames;
      this.rate.frames = frames / seconds;
      if (book.synced && this.rate.lastId !== null && book.lastId >= this.rate.lastId) {
        this.rate.ids = Number(book.lastId - this.rate.lastId) / seconds;
      } else {
        this.rate.ids = 0;
      }
      this.rate.lastId = book.synced ? book.lastId : null;
    }

    /** A bookTicker at the book's update id must agree with the book's touch. */
    onTicker(data) {
      const book = this.book;
      if (!book.synced || typeof data.u !== "bigint" || data.u !== book.lastId) return;
      const bid = book.bids.best();
      const ask = book.asks.best();
      const agrees = bid && ask && normalize(data.b) === bid[0] && normalize(data.B) === bid[1]
        && normalize(data.a) === ask[0] && normalize(data.A) === ask[1];
      this.ticker = `${agrees ? "agrees" : "disagrees"} at ${data.u}`;
    }
  }

  class App {
    constructor() {
      this.cards = new Map();
      this.socket = null;
      this.reconnects = 0;
      this.backoff = 250;
      this.dirty = false;
      this.errors = [];
    }

    async start() {
      const symbols = await this.symbols();
      const main = document.getElementById("books");
      main.textContent = "";
      for (const symbol of symbols) {
        const card = new Card(symbol);
        this.cards.set(symbol, card);
        main.append(card.root);
        card.render();
      }
      this.connect();
      let last = performance.now();
      setInterval(() => {
        const now = performance.now();
        for (const card of this.cards.values()) card.tick((now - last) / 1000);
        last = now;
        this.changed();
      }, 1000);
      setInterval(() => this.pollHealth(), 2000);
      this.pollHealth();
    }

    /** The symbols to show: ?symbols=A,B or every symbol the mirror replicates. */
    async symbols() {
      const wanted = new URLSearchParams(location.search).get("symbols");
      for (;;) {
        try {
          const body = await (await fetch("/health", { cache: "no-store" })).json();
          const served = Object.keys(body.symbols || {});
          if (!wanted) return served;
          return wanted.split(",").filter((s) => served.includes(s));
        } catch (error) {
          this.note(`/health: ${error}`);
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    }

    connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(`${scheme}${location.host}/`);
      this.socket = socket;
      this.setConnection("connecting");
      socket.onopen = () => {
        this.backoff = 250;
        this.setConnection("open");
        const streams = [];
        for (const symbol of this.cards.keys()) streams.push(`depth.${symbol}`, `bookTicker.${symbol}`);
        for (let i = 0; i < streams.length; i += MAX_STREAMS) {
          socket.send(JSON.stringify({ method: "SUBSCRIBE", params: streams.slice(i, i + MAX_STREAMS) }));
        }
        for (const card of this.cards.values()) {
          card.book.reset();
          setTimeout(() => this.snapshot(card), 50); // frames are buffered meanwhile
        }
      };
      socket.onmessage = (event) => this.onMessage(event.data);
      socket.onclose = () => {
        if (this.socket !== socket) return;
        this.setConnection("closed");
        for (const card of this.cards.values()) {
          if (card.book.synced) card.resyncs += 1;
          card.book.reset();
        }
        this.changed();
        this.reconnects += 1;
        setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 5000);
      };
    }

    /** Drop the connection (as a network failure would): the books resync. */
    dropConnection() {
      if (this.socket) this.socket.close();
    }

    onMessage(text) {
      let message;
      try {
        message = parseJson(text);
      } catch (error) {
        this.note(`bad message: ${error}`);
        return;
      }
      const stream = typeof message.stream === "string" ? message.stream : "";
      const data = message.data;
      if (stream.startsWith("depth.") && data) {
        const card = this.cards.get(stream.slice(6));
        if (!card) return;
        const result = card.book.onFrame({ U: data.U, u: data.u, b: data.b || [], a: data.a || [] });
        if (result === "gap" || result === "crossed") this.resync(card);
        this.changed();
      } else if (stream.startsWith("bookTicker.") && data) {
        const card = this.cards.get(stream.slice(11));
        if (card) card.onTicker(data);
      } else if (message.error) {
        this.note(`WebSocket error: ${JSON.stringify(message.error)}`);
      }
    }

    resync(card) {
      card.resyncs += 1;
      card.book.reset();
      setTimeout(() => this.snapshot(card), 100);
    }

    async snapshot(card) {
      if (card.fetching || card.book.synced) return;
      card.fetching = true;
      let retry = null;
      try {
        const symbol = encodeURIComponent(card.book.symbol);
        const response = await fetch(`/api/v1/depth?symbol=${symbol}&limit=${SNAPSHOT_LIMIT}`,
                                     { cache: "no-store" });
        if (!response.ok) {
          retry = 1000 * (parseFloat(response.headers.get("Retry-After")) || 1);
        } else {
          const result = card.book.onSnapshot(parseJson(await response.text()));
          if (result === "stale") retry = 200;
          else if (result !== "synced") {
            card.resyncs += 1;
            retry = 200;
          }
        }
      } catch (error) {
        this.note(`snapshot ${card.book.symbol}: ${error}`);
        retry = 1000;
      } finally {
        card.fetching = false;
      }
      this.changed();
      if (retry !== null) setTimeout(() => this.snapshot(card), retry);
    }

    async pollHealth() {
      const badge = document.getElementById("health");
      try {
        const response = await fetch("/health", { cache: "no-store" });
        const body = await response.json();
        badge.dataset.status = body.status;
        badge.textContent = `health: ${body.status}`;
        document.getElementById("clients").textContent = `${body.clients} WebSocket clients`;
        for (const [symbol, health] of Object.entries(body.symbols || {})) {
          const card = this.cards.get(symbol);
          if (card) card.health = health;
        }
      } catch (error) {
        badge.dataset.status = "unreachable";
        badge.textContent = "health: unreachable";
      }
      this.changed();
    }

    setConnection(state) {
      const badge = document.getElementById("connection");
      badge.dataset.state = state;
      badge.textContent = `WebSocket: ${state}`;
    }

    note(text) {
      this.errors.push(text);
      if (this.errors.length > 50) this.errors.shift();
    }

    /** Redraw at the next animation frame (at most once per frame). */
    changed() {
      if (this.dirty) return;
      this.dirty = true;
      const draw = () => {
        this.dirty = false;
        for (const card of this.cards.values()) card.render();
      };
      if (document.visibilityState === "visible") requestAnimationFrame(draw);
      else setTimeout(draw, 250);
    }

    /** The page's view of every symbol (for tests): state, update id and touch. */
    shown() {
      const out = {};
      for (const [symbol, card] of this.cards) {
        const data = card.root.dataset;
        out[symbol] = { state: data.state, updateId: data.updateId, bestBid: data.bestBid,
                        bestBidQty: data.bestBidQty, bestAsk: data.bestAsk, bestAskQty: data.bestAskQty,
                        resyncs: Number(data.resyncs), ticker: card.ticker };
      }
      return out;
    }
  }

  const app = new App();
  window.orderbookUI = { app, LocalBook, Side, normalize, compare, subtract, middle, parseJson };
  app.start();
})();
