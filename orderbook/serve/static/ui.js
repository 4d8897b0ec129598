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
// Content-Security-Policy allowing 'self' only).  book.js keeps the books (no I/O),
// chart.js draws them, this file is the app: WebSocket, snapshots, health, DOM.
// window.orderbookUI exposes the pieces for tests and for the curious: LocalBook,
// the decimal helpers, drawDepth and the app.
"use strict";

(() => {
  const { LocalBook, normalize, subtract, middle, parseJson, drawDepth } = window.orderbookUI;

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
  window.orderbookUI.app = app;
  app.start();
})();
