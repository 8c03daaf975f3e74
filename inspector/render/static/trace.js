/* attention-inspector "why this token" page: the route graph, its edges' heads, painted text.
 *
 * Reads the JSON next to div[data-trace] (script.ins-trace-data, written by
 * inspector/render/trace.py): the walked nodes (with their logit lens) and edges of the route
 * graph, the per-head split of every attention edge, the heaviest keys of each of those heads'
 * attention rows, and the per-token attribution of the prediction. Draws, with the page's d3:
 * the graph (layers bottom to top, the walked positions left to right, edge width by
 * contribution; hover a node for its lens, click an attention edge for its heads and their
 * attention over the text) and the text painted by attribution (div[data-trace-text]).
 * Everything is built with DOM calls and textContent (no HTML strings); no network, no eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var kit = window.inspectorKit;
  var ROW_H = 26;
  var LEFT = 44;
  var COLORS = { attention: "#1f77b4", mlp: "#ff7f0e", residual: "#999999", pool: "#9467bd" };
  var NODE_COLORS = { X: "#2ca02c", A: "#1f77b4", M: "#ff7f0e", I: "#444444", E: "#d62728" };
  var NEIGHBOURS = 4;

  /**
   * @typedef {{id: string, kind: string, layer: number, pos: number, rank: number | null,
   *   logit: number | null, top: string[]}} TraceNode
   * @typedef {{s: string, t: string, block: string, layer: number, w: number | null,
   *   sp: number, tp: number}} TraceEdge
   * @typedef {{tokens: string[], position: number, target?: string, token: string, n_layers: number,
   *   nodes: TraceNode[], edges: TraceEdge[], heads: Record<string, number[][]>,
   *   rows: Record<string, number[][]>, painted: number[], per_token: (number | null)[],
   *   spaces?: boolean[]}} TraceData
   * @typedef {{x: number, y: number}} Point
   */

  /**
   * The level of a node, bottom (embeddings) to top.
   * @param {TraceNode} n
   * @returns {number}
   */
  function level(n) {
    if (n.kind === "X") {
      return 0;
    }
    if (n.kind === "A") {
      return 2 * n.layer + 1;
    }
    if (n.kind === "M") {
      return 2 * n.layer + 1.5;
    }
    if (n.kind === "E") {
      return 2 * n.layer + 1;
    }
    return 2 * n.layer + 2;
  }

  /**
   * A token as shown in a label (cut to 14 characters).
   * @param {string} t
   * @returns {string}
   */
  function short(t) {
    return t.length > 14 ? t.slice(0, 13) + "…" : t;
  }

  /**
   * The lens of a node, as tooltip text.
   * @param {TraceNode} n
   * @param {TraceData} data
   * @returns {string}
   */
  function lensText(n, data) {
    var names = {
      X: "embedding", A: "after attention", M: "MLP output", I: "after layer",
      E: "mean-pooled embedding of all tokens"
    };
    var kind = /** @type {Record<string, string>} */ (names)[n.kind] || n.kind;
    if (n.kind === "E") {
      return n.id + " · " + kind;
    }
    var where = n.kind === "X" ? "" : " · layer " + n.layer;
    var place = n.id + " · " + kind + where + " · token " + JSON.stringify(data.tokens[n.pos]) +
      " (pos " + n.pos + ")";
    if (n.rank === null) {  // no unembedding (an encoder): no lens
      return place;
    }
    return (
      place + "\n" + JSON.stringify(data.token) + ": rank " + n.rank +
      ", logit " + kit.format(".3~g")(n.logit) + "\nfirst: " +
      n.top.map(function (t) { return JSON.stringify(t); }).join(", ")
    );
  }

  /**
   * Draw the route graph into `holder`; `onEdge` is called with a clicked attention edge.
   * @param {HTMLElement} holder
   * @param {TraceData} data
   * @param {(e: TraceEdge, path: SVGPathElement) => void} onEdge
   */
  function drawGraph(holder, data, onEdge) {
    var positions = Array.from(new Set(data.nodes.filter(function (n) { return n.kind !== "E"; })
      .map(function (n) { return n.pos; })));
    positions.sort(function (a, b) { return a - b; });
    var labels = positions.map(function (p) { return short(data.tokens[p] || ""); });
    var colW = Math.max(46, kit.maxWidth(labels, 11) * 0.8 + 14, Math.min(140, 900 / positions.length));
    var pooled = data.nodes.some(function (n) { return n.kind === "E"; });
    var levels = 2 * data.n_layers + 2 + (pooled ? 1 : 0);
    var labelRoom = Math.min(110, kit.maxWidth(labels, 11) * 0.75 + 16);
    var width = LEFT + positions.length * colW + 20;
    var height = 16 + levels * ROW_H + labelRoom;
    /** @type {Record<number, number>} */
    var column = {};
    positions.forEach(function (p, i) { column[p] = LEFT + i * colW + colW / 2; });
    /** @type {Record<string, Point>} */
    var at = {};
    var middle = LEFT + positions.length * colW / 2;
    data.nodes.forEach(function (n) {
      var x = n.kind === "E" ? middle : column[n.pos] + (n.kind === "M" ? colW * 0.3 : 0);
      at[n.id] = { x: x, y: 16 + (levels - 1 - level(n)) * ROW_H };
    });
    var svg = kit.el(holder, "svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height });
    svg.setAttribute("font-family", kit.FONT);
    svg.setAttribute("font-size", "11");
    var axis = kit.el(svg, "g", {});
    for (var l = 0; l < data.n_layers; l++) {
      kit.el(axis, "text", { x: 4, y: 16 + (levels - 1 - (2 * l + 2)) * ROW_H + 4, fill: "#666" }, "L" + l);
    }
    kit.el(axis, "text", { x: 4, y: 16 + (levels - 1) * ROW_H + 4, fill: "#666" }, "emb");
    var width_ = d3.scaleLinear().domain([0, 1]).range([0.6, 7]).clamp(true);
    var edges = kit.el(svg, "g", {});
    data.edges.forEach(function (e) {
      var a = at[e.s];
      var b = at[e.t];
      if (!a || !b) {
        return;
      }
      var mid = (a.y + b.y) / 2;
      var d = a.x === b.x
        ? "M" + a.x + "," + a.y + "L" + b.x + "," + b.y
        : "M" + a.x + "," + a.y + "C" + a.x + "," + mid + " " + b.x + "," + mid + " " + b.x + "," + b.y;
      var color = /** @type {Record<string, string>} */ (COLORS)[e.block] || "#999";
      /** @type {SVGPathElement} */
      var path = kit.el(edges, "path", {
        d: d, stroke: color, "stroke-width": width_(e.w || 0), "stroke-opacity": 0.75,
        class: "ins-trace-edge", "data-block": e.block, "data-edge": e.s + ">" + e.t
      });
      var tip = e.block + " · layer " + e.layer + " · " + e.s + " → " + e.t + " · " + kit.format(".3f")(e.w);
      path.addEventListener("mousemove", function (ev) { kit.showTip(ev, tip); });
      path.addEventListener("mouseleave", kit.hideTip);
      if (e.block === "attention") {
        path.addEventListener("click", function () { onEdge(e, path); });
      }
    });
    var nodes = kit.el(svg, "g", {});
    data.nodes.forEach(function (n) {
      var p = at[n.id];
      var out = n.kind === "E" ||
        (data.target !== "embedding" && n.kind === "I" && n.layer === data.n_layers - 1 && n.pos === data.position);
      var circle = kit.el(nodes, "circle", {
        cx: p.x, cy: p.y, r: out ? 6 : 4,
        fill: /** @type {Record<string, string>} */ (NODE_COLORS)[n.kind] || "#444",
        stroke: out ? "#d62728" : "#fff", "stroke-width": out ? 2 : 1, "data-node": n.id
      });
      var text = lensText(n, data);
      circle.addEventListener("mousemove", function (/** @type {MouseEvent} */ ev) { kit.showTip(ev, text); });
      circle.addEventListener("mouseleave", kit.hideTip);
    });
    var names = kit.el(svg, "g", {});
    positions.forEach(function (p, i) {
      var x = column[p];
      var y = 16 + levels * ROW_H - 6;
      var label = kit.el(names, "text", {
        x: x, y: y, "text-anchor": "end", transform: "rotate(-40 " + x + " " + y + ")",
        fill: p === data.position && data.target !== "embedding" ? "#d62728" : "#222"
      }, labels[i]);
      kit.el(label, "title", {}, p + ": " + data.tokens[p]);
    });
  }

  /**
   * Tokens in order with a background by value; positions not in `shown` are left out, a gap
   * shows as an ellipsis.
   * @param {HTMLElement} box
   * @param {string[]} tokens
   * @param {number[]} shown sorted positions
   * @param {(p: number) => number} value
   * @param {(v: number) => string} color
   * @param {(v: number) => string} fmt
   * @param {boolean[]} [spaces] a space before these tokens (new words of WordPiece text)
   */
  function paint(box, tokens, shown, value, color, fmt, spaces) {
    while (box.firstChild) {
      box.removeChild(box.firstChild);
    }
    var last = -1;
    shown.forEach(function (p) {
      if (last >= 0 && p > last + 1) {
        var gap = document.createElement("span");
        gap.className = "ins-trace-gap";
        gap.textContent = " … ";
        box.appendChild(gap);
      } else if (spaces && last >= 0 && spaces[p]) {
        box.appendChild(document.createTextNode(" "));
      }
      var span = document.createElement("span");
      var v = value(p);
      span.textContent = tokens[p];
      span.style.background = color(v);
      if (kit.dark(color(v))) {
        span.style.color = "#fff";
      }
      span.title = p + ": " + fmt(v);
      span.setAttribute("data-pos", String(p));
      box.appendChild(span);
      last = p;
    });
  }

  /**
   * The positions shown for a sparse row: all when the text is short, else the keys and
   * their neighbours.
   * @param {number} n
   * @param {number[]} keys
   * @returns {number[]}
   */
  function around(n, keys) {
    if (n <= 600) {
      return d3.range(n);
    }
    /** @type {Set<number>} */
    var keep = new Set();
    keys.forEach(function (k) {
      for (var p = Math.max(0, k - NEIGHBOURS); p <= Math.min(n - 1, k + NEIGHBOURS); p++) {
        keep.add(p);
      }
    });
    return Array.from(keep).sort(function (a, b) { return a - b; });
  }

  /**
   * Show one head's attention row (layer, query) over the text in `box`.
   * @param {HTMLElement} box
   * @param {TraceData} data
   * @param {number} layer
   * @param {number} query
   * @param {number} head
   */
  function showRow(box, data, layer, query, head) {
    var row = data.rows[layer + ":" + query + ":" + head] || [];
    /** @type {Map<number, number>} */
    var weights = new Map();
    row.forEach(function (kv) { weights.set(kv[0], kv[1]); });
    var top = row.length ? row[0][1] : 1;
    var scale = d3.scaleSequential(d3.interpolateBlues).domain([0, top || 1]);
    var keys = row.map(function (kv) { return kv[0]; }).concat([query]);
    var note = document.createElement("p");
    note.className = "ins-help";
    note.textContent = "Layer " + layer + ", head " + head + ": attention of position " + query +
      " (" + JSON.stringify(data.tokens[query]) + ") over the text (its " + row.length + " heaviest keys).";
    box.appendChild(note);
    var text = document.createElement("div");
    text.className = "ins-trace-row";
    box.appendChild(text);
    paint(text, data.tokens, around(data.tokens.length, keys),
      function (p) { return weights.get(p) || 0; }, scale, kit.format(".3f"), data.spaces);
  }

  /**
   * The detail of a clicked attention edge: its heads as bars, one head's row over the text.
   * @param {HTMLElement} detail
   * @param {TraceData} data
   * @param {TraceEdge} e
   */
  function showEdge(detail, data, e) {
    while (detail.firstChild) {
      detail.removeChild(detail.firstChild);
    }
    var heads = (data.heads[e.layer + ":" + e.sp + ":" + e.tp] || []).slice();
    heads.sort(function (a, b) { return b[1] - a[1]; });
    var title = document.createElement("h4");
    title.textContent = "Layer " + e.layer + ": " + JSON.stringify(data.tokens[e.sp]) + " (pos " + e.sp +
      ") → " + JSON.stringify(data.tokens[e.tp]) + " (pos " + e.tp + "), contribution " + kit.format(".3f")(e.w);
    detail.appendChild(title);
    var barH = 18;
    var w = 320;
    var x = d3.scaleLinear().domain([0, d3.max(heads, function (h) { return h[1]; }) || 1]).range([0, w - 110]);
    var svg = kit.el(detail, "svg", { width: w, height: heads.length * barH + 6, class: "ins-trace-bars" });
    svg.setAttribute("font-family", kit.FONT);
    svg.setAttribute("font-size", "11");
    var rowBox = document.createElement("div");
    detail.appendChild(rowBox);
    heads.forEach(function (h, i) {
      var g = kit.el(svg, "g", { transform: "translate(0," + (i * barH + 3) + ")", cursor: "pointer", "data-head": h[0] });
      kit.el(g, "text", { x: 0, y: 12 }, "head " + h[0]);
      kit.el(g, "rect", { x: 52, y: 2, width: Math.max(1, x(h[1])), height: barH - 6, fill: COLORS.attention });
      kit.el(g, "text", { x: 56 + x(h[1]), y: 12 }, kit.format(".3f")(h[1]));
      g.addEventListener("click", function () {
        while (rowBox.firstChild) {
          rowBox.removeChild(rowBox.firstChild);
        }
        showRow(rowBox, data, e.layer, e.tp, h[0]);
      });
    });
    if (heads.length) {
      showRow(rowBox, data, e.layer, e.tp, heads[0][0]);
    }
  }

  /**
   * Paint the text by the prediction's per-token attribution.
   * @param {HTMLElement} box
   * @param {TraceData} data
   */
  function paintAttribution(box, data) {
    /** @type {Map<number, number>} */
    var values = new Map();
    data.painted.forEach(function (p, i) { values.set(p, data.per_token[i] || 0); });
    var m = d3.max(data.per_token, function (v) { return Math.abs(v || 0); }) || 1;
    var scale = kit.colorScale("rdbu", -m, m);
    paint(box, data.tokens, data.painted, function (p) { return values.get(p) || 0; }, scale.color,
      kit.format("+.3f"), data.spaces);
  }

  function start() {
    document.querySelectorAll("[data-trace]").forEach(function (root) {
      var script = root.querySelector("script.ins-trace-data");
      var holder = /** @type {HTMLElement | null} */ (root.querySelector(".ins-trace-graph"));
      var detail = /** @type {HTMLElement | null} */ (root.querySelector(".ins-trace-detail"));
      if (!script || !holder || !detail) {
        return;
      }
      /** @type {TraceData} */
      var data = JSON.parse(script.textContent || "{}");
      /** @type {SVGPathElement | null} */
      var selected = null;
      var box = detail;
      drawGraph(holder, data, function (e, path) {
        if (selected) {
          selected.classList.remove("ins-selected");
        }
        selected = path;
        path.classList.add("ins-selected");
        showEdge(box, data, e);
      });
      var section = root.parentElement;
      var text = section ? /** @type {HTMLElement | null} */ (section.querySelector("[data-trace-text]")) : null;
      if (text) {
        paintAttribution(text, data);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
