/* attention-inspector scatter plots: the "scatter" panel kind of figures.js, built on d3 5.7.0.
 *
 * Labelled points on d3 linear axes (MDS maps of heads, for one): labels are placed without
 * overlapping each other or the points; a label that fits nowhere shows on hover. Runs after
 * figure-kit.js and figures.js and registers the kind in window.inspectorKit.panelKinds.
 * No network, no eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var kit = window.inspectorKit;

  /** @typedef {PlacedPanel} Placed */

  /**
   * Labels placed greedily without overlapping each other or the points: first the points far
   * from the crowd, each trying eight spots around it; a label that fits nowhere is left out
   * (its point still shows its label on hover).
   * @param {number[]} xs @param {number[]} ys @param {string[]} labels @param {number} fs
   * @param {number} w @param {number} h
   * @returns {Array<{i: number, x: number, y: number, anchor: string} | null>}
   */
  function placeLabels(xs, ys, labels, fs, w, h) {
    var n = xs.length;
    /** @type {Array<{x0: number, y0: number, x1: number, y1: number}>} */
    var boxes = [];
    var r = 4.5;
    var cx = d3.mean(xs) || 0;
    var cy = d3.mean(ys) || 0;
    var order = d3.range(n).sort(function (a, b) {
      return Math.hypot(xs[b] - cx, ys[b] - cy) - Math.hypot(xs[a] - cx, ys[a] - cy);
    });
    /** @param {{x0: number, y0: number, x1: number, y1: number}} b */
    function free(b) {
      if (b.x0 < 0 || b.y0 < 0 || b.x1 > w || b.y1 > h) {
        return false;
      }
      for (var k = 0; k < boxes.length; k++) {
        var o = boxes[k];
        if (b.x0 < o.x1 && b.x1 > o.x0 && b.y0 < o.y1 && b.y1 > o.y0) {
          return false;
        }
      }
      for (var p = 0; p < n; p++) {
        if (xs[p] + r > b.x0 && xs[p] - r < b.x1 && ys[p] + r > b.y0 && ys[p] - r < b.y1) {
          return false;
        }
      }
      return true;
    }
    /** @type {Array<{i: number, x: number, y: number, anchor: string} | null>} */
    var out = labels.map(function () { return null; });
    order.forEach(function (i) {
      var tw = kit.textWidth(labels[i], fs);
      var th = fs;
      var spots = [
        [6, -2, "start"], [-6, -2, "end"], [-tw / 2, -7, "start"], [-tw / 2, th + 5, "start"],
        [6, th - 1, "start"], [-6, th - 1, "end"], [5, -7, "start"], [-5, -7, "end"]
      ];
      for (var s = 0; s < spots.length; s++) {
        var dx = Number(spots[s][0]);
        var dy = Number(spots[s][1]);
        var anchor = String(spots[s][2]);
        var x0 = anchor === "end" ? xs[i] + dx - tw : xs[i] + dx;
        var box = { x0: x0 - 1, y0: ys[i] + dy - th, x1: x0 + tw + 1, y1: ys[i] + dy + 1 };
        if (free(box)) {
          boxes.push(box);
          out[i] = { i: i, x: xs[i] + dx, y: ys[i] + dy, anchor: anchor };
          return;
        }
      }
    });
    return out;
  }

  /** @param {PanelJson} p @returns {Placed} */
  function scatterPanel(p) {
    var xsRaw = p.x || [];
    var ysRaw = p.y || [];
    var labels = p.labels || [];
    var big = xsRaw.length > 40;
    var pw = big ? 620 : 380;
    var ph = big ? 460 : 300;
    var top = p.title ? 22 : 6;
    var left = (p.ticks === false ? 10 : 44) + (p.ylabel ? 14 : 0);
    var legend = p.legend || [];
    var legendW = legend.length ? 16 + kit.maxWidth(legend.map(function (e) { return e[0]; }), 10) : 0;
    /** @param {number[]} v @returns {[number, number]} */
    function padded(v) {
      var ext = d3.extent(v.length ? v : [0]);
      var lo = Number(ext[0]);
      var hi = Number(ext[1]);
      var m = (hi - lo) * 0.06 || 1;
      return [lo - m, hi + m];
    }
    var x = d3.scaleLinear().domain(padded(xsRaw)).range([0, pw]).nice();
    var y = d3.scaleLinear().domain(padded(ysRaw)).range([ph, 0]).nice();
    var xs = xsRaw.map(function (v) { return x(v); });
    var ys = ysRaw.map(function (v) { return y(v); });
    var fs = 9;
    var placed = placeLabels(xs, ys, labels, fs, pw, ph);
    var nPlaced = placed.filter(function (v) { return v !== null; }).length;
    var note = nPlaced < labels.length ? nPlaced + " of " + labels.length + " labelled (no overlaps); hover a point for its label" : "";
    var colors = /** @type {string[] | null | undefined} */ (p.colors);
    var fmt = kit.format(p.fmt);
    var w = Math.max(left + pw + (legendW ? 14 + legendW : 30), left + kit.textWidth(p.title || "", 11) + 4);
    var h = top + Math.max(ph, legend.length * 14) + 30 + (p.xlabel ? 14 : 0) + (note ? 14 : 0);

    /** @param {SVGGElement} g */
    function draw(g) {
      if (p.title) {
        kit.el(g, "text", { x: left + pw / 2, y: 14, "text-anchor": "middle", "font-size": 11, fill: "#111" }, p.title);
      }
      var plot = kit.el(g, "g", { transform: "translate(" + left + "," + top + ")" });
      kit.el(plot, "rect", { x: 0, y: 0, width: pw, height: ph, fill: "#fff", stroke: "#999", "stroke-width": 0.6 });
      // axes without a unit (MDS) get grid lines only: no number next to a point's label
      var numbers = p.ticks !== false;
      /** @param {any} d */
      var tickText = function (d) { return numbers ? fmt(Number(d)) : ""; };
      d3.select(kit.el(plot, "g", { transform: "translate(0," + ph + ")" }))
        .call(d3.axisBottom(x).ticks(6).tickSize(-ph).tickFormat(tickText))
        .call(function (s) { kit.styleAxis(s, 9); s.selectAll(".tick line").attr("stroke", "#eee"); s.select("path.domain").remove(); });
      d3.select(kit.el(plot, "g", {}))
        .call(d3.axisLeft(y).ticks(6).tickSize(-pw).tickFormat(tickText))
        .call(function (s) { kit.styleAxis(s, 9); s.selectAll(".tick line").attr("stroke", "#eee"); s.select("path.domain").remove(); });
      for (var i = 0; i < xs.length; i++) {
        kit.el(plot, "circle", {
          cx: xs[i], cy: ys[i], r: 4, fill: colors ? colors[i] : "#1f77b4", stroke: "#333", "stroke-width": 0.5
        });
      }
      placed.forEach(function (pl) {
        if (pl) {
          kit.el(plot, "text", { x: pl.x, y: pl.y, "font-size": fs, fill: "#222", "text-anchor": pl.anchor }, labels[pl.i]);
        }
      });
      kit.axisNames(plot, p, pw, ph, 28, 10 - left);
      if (note) {
        kit.el(plot, "text", { x: 0, y: ph + (p.xlabel ? 42 : 30), "font-size": 9, fill: "#666" }, note);
      }
      kit.legendBlock(plot, legend, pw + 14);
    }

    /** @param {number} px @param {number} py */
    function hit(px, py) {
      var best = -1;
      var bestD = 64;
      for (var i = 0; i < xs.length; i++) {
        var dx = left + xs[i] - px;
        var dy = top + ys[i] - py;
        if (dx * dx + dy * dy < bestD) {
          bestD = dx * dx + dy * dy;
          best = i;
        }
      }
      return best < 0 ? null : labels[best] + (p.ticks === false ? "" : " (" + fmt(xsRaw[best]) + ", " + fmt(ysRaw[best]) + ")");
    }
    return { w: Math.ceil(w), h: Math.ceil(h), draw: draw, hit: hit };
  }

  kit.panelKinds.scatter = scatterPanel;
})();
