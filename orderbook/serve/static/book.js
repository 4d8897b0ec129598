// The page's exact book, with no I/O: decimal strings compared exactly, BigInt
// update ids, and LocalBook, which bridges frames onto a snapshot by update id:
// drop the buffered frames with u <= L (the snapshot's lastUpdateId), apply the
// first one only if U <= L+1 <= u and every later one only if U == previous u + 1;
// a gap or a crossed book clears it (the app then fetches a new snapshot).
// Loaded first by ui.html; exports to window.orderbookUI.
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

  Object.assign(window.orderbookUI = window.orderbookUI || {},
                { LocalBook, Side, normalize, isZero, compare, subtract, middle, parseJson });
})();
