// The depth chart of one book on a canvas: cumulative bids left of the mid,
// asks right of it.  Floats are used here only, to draw.  Loaded after book.js.
"use strict";

(() => {
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

  Object.assign(window.orderbookUI = window.orderbookUI || {}, { drawDepth });
})();
