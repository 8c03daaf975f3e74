/* attention-inspector figures: the page's one heatmap / scatter renderer, built on d3 5.7.0.
 *
 * Each <figure class="ins-fig"> holds a <script type="application/json" class="ins-fig-data">
 * written by inspector/render/figures.py (FigureSpec.data()): {name, title, panels, shared_scale}.
 * Panel kinds (documented in figures.py):
 *   heatmap  a matrix given inline;
 *   scatter  labelled points (labels placed without overlap; the others show on hover);
 *   stack    one head's map read from the attention the page embeds (inspector.js decodes it);
 *   grid     every head of an embedded stack as small multiples; a click opens the head's
 *            stack panel in a zoom box kept in view.
 * Colours come from d3 scales: scaleSequential with interpolateViridis / interpolateBlues /
 * interpolateMagma (reversed), scaleDiverging with interpolateRdBu centred on 0. Axes, ticks and
 * colour bars are d3 axes. Every map is one SVG: small maps have one <rect> per cell, big ones a
 * bitmap (canvas -> <image>) inside the same SVG. One tooltip (div.ins-tip) serves every figure.
 * "SVG" downloads the serialised element; "PNG" draws that SVG on a canvas. No network, no eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var NS = "http://www.w3.org/2000/svg";
  var XMLNS = "http://www.w3.org/2000/xmlns/";
  var XLINK = "http://www.w3.org/1999/xlink";
  var FONT = "Helvetica, Arial, sans-serif";
  var GAP = 18;
  var NAN_FILL = "#d9d9d9";
  /** Above this many cells a map is painted as one bitmap instead of one <rect> per cell. */
  var CANVAS_CELLS = 4096;
  /** @type {Record<string, (t: number) => string>} */
  var INTERPOLATORS = {
    viridis: d3.interpolateViridis,
    blues: d3.interpolateBlues,
    magma_r: function (t) { return d3.interpolateMagma(1 - t); },
    // negative blue, positive red
    rdbu: function (t) { return d3.interpolateRdBu(1 - t); }
  };
  /** @type {CanvasRenderingContext2D | null} */
  var measurer = null;
  /** @type {HTMLDivElement | null} */
  var tip = null;

  /**
   * @typedef {{lo: number, hi: number, color: (v: number) => string, lut: Uint8ClampedArray,
   *   fmt: (v: number | null | undefined) => string, diverging: boolean}} Scale
   * @typedef {{shared?: {lo: number, hi: number} | null, norm?: string}} DrawOptions
   * @typedef {{w: number, h: number, draw: (g: SVGGElement) => void,
   *   hit: (x: number, y: number) => string | null,
   *   click?: (x: number, y: number) => void}} Placed
   */

  // ------------------------------------------------------------------------------ helpers

  /** A number formatter: d3.format(spec), "n/a" for missing values. @param {string} [spec] */
  function format(spec) {
    var f = d3.format(spec || ".3~g");
    return function (/** @type {number | null | undefined} */ v) {
      return v === null || v === undefined || isNaN(v) ? "n/a" : f(Math.abs(v) < 1e-12 ? 0 : v);
    };
  }

  /**
   * The colour scale of a panel: sequential, or diverging around 0 for "rdbu".
   * @param {string | undefined} cmap @param {number} lo @param {number} hi @param {string} [fmt]
   * @returns {Scale}
   */
  function colorScale(cmap, lo, hi, fmt) {
    var name = cmap && INTERPOLATORS[cmap] ? cmap : "viridis";
    var interp = INTERPOLATORS[name];
    if (!(hi > lo)) {
      hi = lo + 1;
    }
    var diverging = name === "rdbu";
    /** @type {(v: number) => string} */
    var color;
    if (diverging) {
      var mid = lo < 0 && hi > 0 ? 0 : (lo + hi) / 2;
      var div = d3.scaleDiverging(interp).domain([lo, mid, hi]).clamp(true);
      color = function (v) { return div(v); };
    } else {
      var seq = d3.scaleSequential(interp).domain([lo, hi]).clamp(true);
      color = function (v) { return seq(v); };
    }
    var lut = new Uint8ClampedArray(256 * 3);
    for (var i = 0; i < 256; i++) {
      var c = d3.rgb(color(lo + (i / 255) * (hi - lo)));
      lut[3 * i] = c.r;
      lut[3 * i + 1] = c.g;
      lut[3 * i + 2] = c.b;
    }
    return { lo: lo, hi: hi, color: color, lut: lut, fmt: format(fmt), diverging: diverging };
  }

  /** @param {string} color */
  function dark(color) {
    return d3.lab(color).l < 55;
  }

  /** @param {string} text @param {number} size @param {string} [weight] */
  function textWidth(text, size, weight) {
    if (!measurer) {
      measurer = /** @type {CanvasRenderingContext2D} */ (document.createElement("canvas").getContext("2d"));
    }
    measurer.font = (weight ? weight + " " : "") + size + "px " + FONT;
    return Math.ceil(measurer.measureText(String(text)).width);
  }

  /** @param {string[]} texts @param {number} size */
  function maxWidth(texts, size) {
    return texts.reduce(function (m, t) { return Math.max(m, textWidth(t, size)); }, 0);
  }

  /**
   * @param {Element | null} parent @param {string} tag
   * @param {Record<string, string | number>} [attrs] @param {string} [text]
   * @returns {any}
   */
  function el(parent, tag, attrs, text) {
    var node = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, String((attrs || {})[k]));
    });
    if (text !== undefined) {
      node.textContent = text;
    }
    if (parent) {
      parent.appendChild(node);
    }
    return node;
  }

  /** Style d3 axis text once drawn (SVG attributes, so downloads keep them). @param {any} sel @param {number} fs */
  function styleAxis(sel, fs) {
    sel.attr("font-family", FONT).attr("font-size", fs);
    sel.selectAll("path.domain").attr("stroke", "#999");
    sel.selectAll(".tick line").attr("stroke", "#999");
    sel.selectAll(".tick text").attr("fill", "#333");
  }

  /**
   * A vertical colour bar with a d3 axis: `height` pixels, at (x, 0) of `g`.
   * @param {SVGGElement} g @param {Scale} scale @param {number} x @param {number} height
   * @param {((v: number) => string) | null} [label]
   */
  function colorBar(g, scale, x, height, label) {
    var bar = el(g, "g", { transform: "translate(" + x + ",0)", "shape-rendering": "crispEdges" });
    var steps = 64;
    for (var i = 0; i < steps; i++) {
      var v = scale.hi - ((i + 0.5) / steps) * (scale.hi - scale.lo);
      el(bar, "rect", { x: 0, y: (i * height) / steps, width: 10, height: height / steps + 0.5, fill: scale.color(v) });
    }
    el(bar, "rect", { x: 0, y: 0, width: 10, height: height, fill: "none", stroke: "#888", "stroke-width": 0.5 });
    var y = d3.scaleLinear().domain([scale.lo, scale.hi]).range([height, 0]);
    var ticks = y.ticks(height >= 120 ? 5 : 3);
    if (scale.diverging && scale.lo < 0 && scale.hi > 0 && ticks.indexOf(0) < 0) {
      ticks.push(0);
    }
    var axis = d3.axisRight(y).tickValues(ticks).tickSize(3)
      .tickFormat(function (d) { return label ? label(Number(d)) : scale.fmt(Number(d)); });
    d3.select(el(bar, "g", { transform: "translate(10,0)" })).call(axis).call(function (s) { styleAxis(s, 9); });
  }

  /** @param {SVGGElement} g @param {[string, string][]} legend @param {number} x */
  function legendBlock(g, legend, x) {
    legend.forEach(function (e, i) {
      el(g, "rect", { x: x, y: i * 14 + 1, width: 10, height: 10, fill: e[1], stroke: "#666", "stroke-width": 0.5 });
      el(g, "text", { x: x + 14, y: i * 14 + 10, "font-size": 10, fill: "#222" }, e[0]);
    });
  }

  /** Largest label width a tick axis needs @param {string[]} labels @param {number} fs */
  function labelRoom(labels, fs) {
    return Math.min(150, maxWidth(labels, fs));
  }

  // ------------------------------------------------------------------------------ maps

  /**
   * A matrix to draw: heatmap values inline, or one head of an embedded stack.
   * @typedef {{nr: number, nc: number, value: (i: number, j: number) => number | null,
   *   rows: string[], cols: string[], rawRows: string[] | null, rawCols: string[] | null,
   *   lo: number, hi: number}} Matrix
   */

  /** @param {PanelJson} p @returns {Matrix} */
  function inlineMatrix(p) {
    var values = p.values || [];
    return {
      nr: (p.rows || []).length,
      nc: (p.cols || []).length,
      value: function (i, j) { return values[i][j]; },
      rows: p.rows || [],
      cols: p.cols || [],
      rawRows: p.raw_rows || null,
      rawCols: p.raw_cols || null,
      lo: p.vmin === undefined ? 0 : p.vmin,
      hi: p.vmax === undefined ? 1 : p.vmax
    };
  }

  /** @param {PanelJson} p @param {InspectorApi} api @param {string} norm @returns {Matrix} */
  function stackMatrix(p, api, norm) {
    var meta = api.data.stacks[p.stack || ""];
    var st = api.stacks[p.stack || ""];
    var head = st.head(p.layer || 0, p.head || 0);
    var values = head.values;
    var nc = st.shape[3];
    var top = 0;
    for (var i = 0; i < values.length; i++) {
      if (values[i] > top) {
        top = values[i];
      }
    }
    return {
      nr: st.shape[2],
      nc: nc,
      value: function (q, k) { return values[q * nc + k] / head.scale; },
      rows: meta.query_readable || meta.query_tokens,
      cols: meta.key_readable || meta.key_tokens,
      rawRows: meta.query_tokens,
      rawCols: meta.key_tokens,
      lo: 0,
      hi: norm === "head" ? Math.max(top / head.scale, 1e-6) : 1
    };
  }

  /**
   * Lay out and draw one map with d3 band axes and a colour bar.
   * @param {PanelJson} p @param {Matrix} m @param {Scale | null} scale
   * @returns {Placed}
   */
  function mapPanel(p, m, scale) {
    var nr = m.nr;
    var nc = m.nc;
    var big = nr * nc > CANVAS_CELLS;
    var cell = Math.max(big ? 0.5 : 2, Math.min(28, (p.size || 320) / Math.max(nr, nc, 1)));
    if (!big) {
      cell = Math.floor(cell);
    }
    var fs = cell >= 12 ? 10 : 9;
    var rowStep = Math.max(1, Math.ceil((fs + 1) / cell));
    var colW = maxWidth(m.cols.filter(function (_, i) { return i < 400; }), fs);
    var rotate = colW > cell - 2;
    var colStep = rotate ? Math.max(1, Math.ceil((fs + 1) / cell)) : 1;
    /** @param {number} step @param {number} n */
    function shown(step, n) {
      return d3.range(0, n, step);
    }
    var rowTicks = shown(rowStep, nr);
    var colTicks = shown(colStep, nc);
    var gw = nc * cell;
    var gh = nr * cell;
    var left = (p.ylabel ? 16 : 0) + labelRoom(rowTicks.map(function (i) { return m.rows[i]; }), fs) + 8;
    var top = p.title ? 20 : 4;
    var colH = (rotate ? labelRoom(colTicks.map(function (j) { return m.cols[j]; }), fs) : fs) + 8;
    var legend = p.legend && p.legend.length ? p.legend : null;
    var legendW = legend ? 16 + maxWidth(legend.map(function (e) { return e[0]; }), 10) : 0;
    var barW = scale ? 16 + maxWidth([scale.fmt(scale.lo), scale.fmt(scale.hi), scale.fmt((scale.lo + scale.hi) / 2)], 9) + 6 : 0;
    var barH = Math.max(gh, 100);
    var w = Math.max(left + gw + 10 + Math.max(legendW, barW), left + textWidth(p.title || "", 11) + 4);
    var h = top + Math.max(gh + colH + (p.xlabel ? 14 : 2), scale ? barH : 0, legend ? legend.length * 14 : 0) + 2;
    var colors = /** @type {string[][] | undefined} */ (p.colors || undefined);
    var fill = function (/** @type {number} */ i, /** @type {number} */ j) {
      if (colors) {
        return colors[i][j];
      }
      var v = m.value(i, j);
      return v === null || v === undefined || isNaN(v) || !scale ? NAN_FILL : scale.color(v);
    };

    /** @param {SVGGElement} g */
    function draw(g) {
      if (p.title) {
        el(g, "text", { x: left + gw / 2, y: 13, "text-anchor": "middle", "font-size": 11, fill: "#111" }, p.title);
      }
      var grid = el(g, "g", { transform: "translate(" + left + "," + top + ")" });
      if (!big) {
        var cells = el(grid, "g", { "shape-rendering": "crispEdges" });
        for (var i = 0; i < nr; i++) {
          for (var j = 0; j < nc; j++) {
            el(cells, "rect", { x: j * cell, y: i * cell, width: cell, height: cell, fill: fill(i, j) });
          }
        }
      } else {
        paintImage(grid, m, scale, colors, gw, gh);
      }
      el(grid, "rect", { x: 0, y: 0, width: gw, height: gh, fill: "none", stroke: "#999", "stroke-width": 0.5 });
      if (p.annotate && !p.text && scale) {
        var afs = Math.max(6, Math.min(9, Math.floor(cell / 3.2)));
        for (var a = 0; a < nr; a++) {
          for (var b = 0; b < nc; b++) {
            var v = m.value(a, b);
            el(grid, "text", {
              x: (b + 0.5) * cell, y: (a + 0.5) * cell, dy: "0.35em", "text-anchor": "middle",
              "font-size": afs, fill: dark(fill(a, b)) ? "#fff" : "#111"
            }, v === null || isNaN(v) ? "" : d3.format(Math.abs(v) >= 10 ? ".0f" : ".2f")(v));
          }
        }
      }
      (p.text || []).forEach(function (t) {
        var lines = String(t[2]).split("\n");
        var widest = maxWidth(lines, 9);
        var size = Math.max(5, Math.min(9, Math.floor((9 * (cell - 2)) / Math.max(widest, 1))));
        var color = fill(t[0], t[1]);
        lines.forEach(function (line, k) {
          el(grid, "text", {
            x: (t[1] + 0.5) * cell, y: (t[0] + 0.5) * cell + (k - (lines.length - 1) / 2) * (size + 1),
            dy: "0.35em", "text-anchor": "middle", "font-size": size, fill: dark(color) ? "#fff" : "#111"
          }, line);
        });
      });
      var y = d3.scaleBand().domain(d3.range(nr).map(String)).range([0, gh]);
      var x = d3.scaleBand().domain(d3.range(nc).map(String)).range([0, gw]);
      var yAxis = d3.axisLeft(y).tickSize(2).tickValues(rowTicks.map(String))
        .tickFormat(function (d) { return m.rows[Number(d)]; });
      d3.select(el(grid, "g", {})).call(yAxis).call(function (s) {
        styleAxis(s, fs);
        s.select("path.domain").remove();
      });
      var xAxis = d3.axisBottom(x).tickSize(2).tickValues(colTicks.map(String))
        .tickFormat(function (d) { return m.cols[Number(d)]; });
      d3.select(el(grid, "g", { transform: "translate(0," + gh + ")" })).call(xAxis).call(function (s) {
        styleAxis(s, fs);
        s.select("path.domain").remove();
        if (rotate) {
          s.selectAll(".tick text").attr("transform", "rotate(-90)").attr("text-anchor", "end")
            .attr("dx", "-0.5em").attr("dy", "-0.3em").attr("x", 0).attr("y", 0);
        }
      });
      if (p.xlabel) {
        el(grid, "text", { x: gw / 2, y: gh + colH + 10, "text-anchor": "middle", "font-size": 10, fill: "#444" }, p.xlabel);
      }
      if (p.ylabel) {
        el(grid, "text", {
          transform: "translate(" + (8 - left) + "," + gh / 2 + ") rotate(-90)", dy: "0.35em",
          "text-anchor": "middle", "font-size": 10, fill: "#444"
        }, p.ylabel);
      }
      if (legend) {
        legendBlock(grid, legend, gw + 10);
      } else if (scale) {
        colorBar(grid, scale, gw + 10, barH);
      }
    }

    /** @param {number} px @param {number} py */
    function hit(px, py) {
      var j = Math.floor((px - left) / cell);
      var i = Math.floor((py - top) / cell);
      if (px < left || py < top || i >= nr || j >= nc) {
        return null;
      }
      var rowName = m.rows[i] + (m.rawRows && m.rawRows[i] !== m.rows[i] ? " (" + JSON.stringify(m.rawRows[i]) + ")" : "");
      var colName = m.cols[j] + (m.rawCols && m.rawCols[j] !== m.cols[j] ? " (" + JSON.stringify(m.rawCols[j]) + ")" : "");
      var pos = m.rawRows ? [" " + i, " " + j] : ["", ""];
      var where = (p.ylabel || "row") + pos[0] + " " + rowName + ", " + (p.xlabel || "column") + pos[1] + " " + colName;
      var what = p.hover ? p.hover[i][j] : scale ? scale.fmt(m.value(i, j)) : String(m.value(i, j));
      return (p.title ? p.title + "\n" : "") + where + ": " + what;
    }
    return { w: Math.ceil(w), h: Math.ceil(h), draw: draw, hit: hit };
  }

  /**
   * Paint a big map as one bitmap inside the SVG (a canvas encoded as PNG).
   * @param {SVGGElement} g @param {Matrix} m @param {Scale | null} scale
   * @param {string[][] | undefined} colors @param {number} gw @param {number} gh
   */
  function paintImage(g, m, scale, colors, gw, gh) {
    var canvas = document.createElement("canvas");
    canvas.width = m.nc;
    canvas.height = m.nr;
    var ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    var img = ctx.createImageData(m.nc, m.nr);
    var grey = d3.rgb(NAN_FILL);
    var lo = scale ? scale.lo : 0;
    var span = scale ? scale.hi - scale.lo : 1;
    for (var i = 0; i < m.nr; i++) {
      for (var j = 0; j < m.nc; j++) {
        var o = (i * m.nc + j) * 4;
        var r = grey.r, gr = grey.g, b = grey.b;
        if (colors) {
          var c = d3.rgb(colors[i][j]);
          r = c.r; gr = c.g; b = c.b;
        } else if (scale) {
          var v = m.value(i, j);
          if (v !== null && !isNaN(v)) {
            var t = 3 * Math.max(0, Math.min(255, Math.round(((v - lo) / span) * 255)));
            r = scale.lut[t]; gr = scale.lut[t + 1]; b = scale.lut[t + 2];
          }
        }
        img.data[o] = r;
        img.data[o + 1] = gr;
        img.data[o + 2] = b;
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    var image = el(g, "image", {
      x: 0, y: 0, width: gw, height: gh, preserveAspectRatio: "none",
      style: "image-rendering:pixelated;image-rendering:crisp-edges"
    });
    image.setAttributeNS(XLINK, "xlink:href", canvas.toDataURL("image/png"));
  }

  // ------------------------------------------------------------------------------ scatter

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
      var tw = textWidth(labels[i], fs);
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
    var left = 44 + (p.ylabel ? 14 : 0);
    var legend = p.legend || [];
    var legendW = legend.length ? 16 + maxWidth(legend.map(function (e) { return e[0]; }), 10) : 0;
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
    var fmt = format(p.fmt);
    var w = Math.max(left + pw + (legendW ? 14 + legendW : 30), left + textWidth(p.title || "", 11) + 4);
    var h = top + Math.max(ph, legend.length * 14) + 30 + (p.xlabel ? 14 : 0) + (note ? 14 : 0);

    /** @param {SVGGElement} g */
    function draw(g) {
      if (p.title) {
        el(g, "text", { x: left + pw / 2, y: 14, "text-anchor": "middle", "font-size": 11, fill: "#111" }, p.title);
      }
      var plot = el(g, "g", { transform: "translate(" + left + "," + top + ")" });
      el(plot, "rect", { x: 0, y: 0, width: pw, height: ph, fill: "#fff", stroke: "#999", "stroke-width": 0.6 });
      d3.select(el(plot, "g", { transform: "translate(0," + ph + ")" }))
        .call(d3.axisBottom(x).ticks(6).tickSize(-ph).tickFormat(function (d) { return fmt(Number(d)); }))
        .call(function (s) { styleAxis(s, 9); s.selectAll(".tick line").attr("stroke", "#eee"); s.select("path.domain").remove(); });
      d3.select(el(plot, "g", {}))
        .call(d3.axisLeft(y).ticks(6).tickSize(-pw).tickFormat(function (d) { return fmt(Number(d)); }))
        .call(function (s) { styleAxis(s, 9); s.selectAll(".tick line").attr("stroke", "#eee"); s.select("path.domain").remove(); });
      for (var i = 0; i < xs.length; i++) {
        el(plot, "circle", {
          cx: xs[i], cy: ys[i], r: 4, fill: colors ? colors[i] : "#1f77b4", stroke: "#333", "stroke-width": 0.5
        });
      }
      placed.forEach(function (pl) {
        if (pl) {
          el(plot, "text", { x: pl.x, y: pl.y, "font-size": fs, fill: "#222", "text-anchor": pl.anchor }, labels[pl.i]);
        }
      });
      if (p.xlabel) {
        el(plot, "text", { x: pw / 2, y: ph + 28, "text-anchor": "middle", "font-size": 10, fill: "#444" }, p.xlabel);
      }
      if (p.ylabel) {
        el(plot, "text", {
          transform: "translate(" + (10 - left) + "," + ph / 2 + ") rotate(-90)", dy: "0.35em",
          "text-anchor": "middle", "font-size": 10, fill: "#444"
        }, p.ylabel);
      }
      if (note) {
        el(plot, "text", { x: 0, y: ph + (p.xlabel ? 42 : 30), "font-size": 9, fill: "#666" }, note);
      }
      legendBlock(plot, legend, pw + 14);
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
      return best < 0 ? null : labels[best] + " (" + fmt(xsRaw[best]) + ", " + fmt(ysRaw[best]) + ")";
    }
    return { w: Math.ceil(w), h: Math.ceil(h), draw: draw, hit: hit };
  }

  // ------------------------------------------------------------------------------ head grid

  /**
   * Every head of a stack as small multiples: one bitmap, labels and a colour bar in SVG.
   * Each pixel shows the largest weight of its block of tokens (max-pooling keeps thin lines
   * such as a diagonal visible); big stacks use the thumbnails Python pooled the same way.
   * @param {PanelJson} p @param {InspectorApi} api @param {string} norm @param {number} width
   * @returns {Placed}
   */
  function gridPanel(p, api, norm, width) {
    var kind = p.stack || "self";
    var meta = api.data.stacks[kind];
    var thumbs = api.thumbs[kind];
    var source = thumbs || api.stacks[kind];
    var s = source.shape;
    var nL = s[0];
    var nH = s[1];
    var full = api.stacks[kind].shape;
    var gap = 4;
    var left = 34;
    var top = 30;
    var cell = Math.max(24, Math.min(96, Math.floor((width - left - 90) / nH) - gap));
    var gw = nH * (cell + gap);
    var gh = nL * (cell + gap);
    var scale = colorScale(p.cmap || "blues", 0, 1, ".2f");
    /** @type {number[]} */
    var maxima = [];

    function paint() {
      var canvas = document.createElement("canvas");
      canvas.width = gw;
      canvas.height = gh;
      var ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
      var img = ctx.createImageData(gw, gh);
      var data = img.data;
      for (var i = 0; i < data.length; i += 4) {
        data[i] = data[i + 1] = data[i + 2] = data[i + 3] = 255;
      }
      var rows = s[2];
      var cols = s[3];
      var pooled = new Float32Array(cell * cell);
      for (var l = 0; l < nL; l++) {
        for (var h = 0; h < nH; h++) {
          var head = source.head(l, h);
          var v = head.values;
          pooled.fill(0);
          var top2 = 0;
          for (var q = 0; q < rows; q++) {
            var py = Math.floor((q * cell) / rows);
            var py1 = Math.max(py + 1, Math.floor(((q + 1) * cell) / rows));
            for (var k = 0; k < cols; k++) {
              var x = v[q * cols + k];
              if (x === 0) {
                continue;
              }
              var px = Math.floor((k * cell) / cols);
              var px1 = Math.max(px + 1, Math.floor(((k + 1) * cell) / cols));
              for (var yy = py; yy < py1; yy++) {
                for (var xx = px; xx < px1; xx++) {
                  if (pooled[yy * cell + xx] < x) {
                    pooled[yy * cell + xx] = x;
                  }
                }
              }
              if (x > top2) {
                top2 = x;
              }
            }
          }
          var hmax = top2 / head.scale;
          maxima[l * nH + h] = hmax;
          var div = norm === "head" ? Math.max(top2, 1e-9) : head.scale;
          var ox = h * (cell + gap);
          var oy = l * (cell + gap);
          for (var yy2 = 0; yy2 < cell; yy2++) {
            for (var xx2 = 0; xx2 < cell; xx2++) {
              var t = 3 * Math.max(0, Math.min(255, Math.round((pooled[yy2 * cell + xx2] / div) * 255)));
              var o = ((oy + yy2) * gw + ox + xx2) * 4;
              data[o] = scale.lut[t];
              data[o + 1] = scale.lut[t + 1];
              data[o + 2] = scale.lut[t + 2];
            }
          }
        }
      }
      ctx.putImageData(img, 0, 0);
      return canvas.toDataURL("image/png");
    }

    var barX = left + gw + 12;
    var w = barX + 90;
    var h = top + gh + 4;

    /** @param {SVGGElement} g */
    function draw(g) {
      var url = paint();
      var title = meta.kind === "self" ? "self-attention" : meta.kind + " attention";
      el(g, "text", { x: left, y: 11, "font-size": 11, fill: "#111" },
        title + ": " + nL + " layers x " + nH + " heads, " + full[2] + " x " + full[3] + " tokens" +
        (thumbs ? " (each pixel: the largest weight of a block of tokens)" : ""));
      for (var hh = 0; hh < nH; hh++) {
        el(g, "text", { x: left + hh * (cell + gap) + cell / 2, y: top - 5, "text-anchor": "middle", "font-size": 10, fill: "#333" }, "H" + meta.heads[hh]);
      }
      for (var ll = 0; ll < nL; ll++) {
        el(g, "text", { x: left - 6, y: top + ll * (cell + gap) + cell / 2, dy: "0.35em", "text-anchor": "end", "font-size": 10, fill: "#333" }, "L" + meta.layers[ll]);
      }
      var image = el(g, "image", { x: left, y: top, width: gw, height: gh, preserveAspectRatio: "none" });
      image.setAttributeNS(XLINK, "xlink:href", url);
      var frames = el(g, "g", { fill: "none", stroke: "#bbb", "stroke-width": 0.5, "shape-rendering": "crispEdges" });
      for (var l2 = 0; l2 < nL; l2++) {
        for (var h2 = 0; h2 < nH; h2++) {
          el(frames, "rect", { x: left + h2 * (cell + gap) - 0.5, y: top + l2 * (cell + gap) - 0.5, width: cell + 1, height: cell + 1 });
        }
      }
      var barG = el(g, "g", { transform: "translate(0," + top + ")" });
      var barH = Math.min(gh - gap, 220);
      colorBar(barG, scale, barX, barH, norm === "head" ? function (v) {
        return v === 0 ? "0" : v === 1 ? "head max" : d3.format(".1f")(v) + " max";
      } : null);
      el(barG, "text", { x: barX, y: barH + 16, "font-size": 9, fill: "#555" }, norm === "head" ? "each head: 0 to" : "every head:");
      el(barG, "text", { x: barX, y: barH + 27, "font-size": 9, fill: "#555" }, norm === "head" ? "its own max" : "0 to 1");
    }

    /** @param {number} px @param {number} py */
    function locate(px, py) {
      var h = Math.floor((px - left) / (cell + gap));
      var l = Math.floor((py - top) / (cell + gap));
      var ix = px - left - h * (cell + gap);
      var iy = py - top - l * (cell + gap);
      if (px < left || py < top || h >= nH || l >= nL || ix >= cell || iy >= cell) {
        return null;
      }
      return { l: l, h: h, q: Math.floor((iy / cell) * full[2]), k: Math.floor((ix / cell) * full[3]) };
    }

    /** @param {number} px @param {number} py */
    function hit(px, py) {
      var at = locate(px, py);
      if (!at) {
        return null;
      }
      var st = api.stacks[kind];
      var head = "layer " + meta.layers[at.l] + ", head " + meta.heads[at.h];
      var max = "largest weight " + d3.format(".3f")(maxima[at.l * nH + at.h]);
      if (!st.loaded(at.l)) {
        return head + " (" + max + "); click to zoom";
      }
      var rq = meta.query_readable[at.q];
      var rk = meta.key_readable[at.k];
      return head + ": query " + at.q + " " + rq + " (" + JSON.stringify(meta.query_tokens[at.q]) +
        ") → key " + at.k + " " + rk + " (" + JSON.stringify(meta.key_tokens[at.k]) + ") = " +
        d3.format(".3f")(st.get(at.l, at.h, at.q, at.k)) + "\n" + max + "; click to zoom";
    }

    /** @param {number} px @param {number} py */
    function click(px, py) {
      var at = locate(px, py);
      if (at) {
        zoom(api, kind, at.l, at.h, norm);
      }
    }
    return { w: Math.ceil(w), h: Math.ceil(h), draw: draw, hit: hit, click: click };
  }

  /** The zoom box: one head's map, kept in view (fixed), with a colour bar; Esc closes it. */
  /** @param {InspectorApi} api @param {string} kind @param {number} l @param {number} h @param {string} norm */
  function zoom(api, kind, l, h, norm) {
    var box = /** @type {HTMLElement | null} */ (document.querySelector(".ins-zoom-box"));
    if (!box) {
      box = document.createElement("div");
      box.className = "ins-zoom-box";
      box.setAttribute("role", "dialog");
      box.setAttribute("aria-label", "one head's attention, enlarged");
      var bar = document.createElement("div");
      bar.className = "ins-zoom-bar";
      var title = document.createElement("span");
      title.className = "ins-zoom-title";
      var close = document.createElement("button");
      close.type = "button";
      close.className = "ins-zoom-close";
      close.textContent = "Close";
      close.setAttribute("aria-label", "close the enlarged map");
      bar.appendChild(title);
      bar.appendChild(close);
      var body = document.createElement("div");
      body.className = "ins-zoom-body";
      box.appendChild(bar);
      box.appendChild(body);
      document.body.appendChild(box);
      var shown = box;
      close.addEventListener("click", function () { shown.hidden = true; hideTip(); });
      document.addEventListener("keydown", function (ev) {
        if (ev.key === "Escape") {
          shown.hidden = true;
          hideTip();
        }
      });
    }
    var meta = api.data.stacks[kind];
    var target = box;
    var titleEl = /** @type {HTMLElement} */ (target.querySelector(".ins-zoom-title"));
    var bodyEl = /** @type {HTMLElement} */ (target.querySelector(".ins-zoom-body"));
    titleEl.textContent = (kind === "self" ? "self-attention" : kind + " attention") + ", layer " +
      meta.layers[l] + ", head " + meta.heads[h] + " (rows: queries, columns: keys; colour: " +
      (norm === "head" ? "0 to this head's largest weight" : "0 to 1") + ")";
    bodyEl.textContent = "decoding layer " + meta.layers[l] + "…";
    target.hidden = false;
    target.setAttribute("data-layer", String(meta.layers[l]));
    target.setAttribute("data-head", String(meta.heads[h]));
    var size = Math.max(240, Math.min(window.innerWidth * 0.45, window.innerHeight - 180, 620));
    api.stacks[kind].load([l]).then(function () {
      /** @type {FigureJson} */
      var spec = {
        name: "zoom-" + kind + "-" + meta.layers[l] + "-" + meta.heads[h],
        title: "",
        panels: [{ kind: "stack", stack: kind, layer: l, head: h, cmap: "blues", norm: norm === "head" ? "head" : "fixed", size: size, xlabel: "key", ylabel: "query", title: "" }]
      };
      var svg = render(spec, api);
      bodyEl.textContent = "";
      bodyEl.appendChild(svg);
      hover(svg);
    });
  }

  // ------------------------------------------------------------------------------ figures

  /**
   * The panels of a figure, laid out (colour ranges shared when asked).
   * @param {FigureJson} spec @param {InspectorApi | undefined} api @param {DrawOptions} opts
   * @param {number} width
   * @returns {Placed[]}
   */
  function panelsOf(spec, api, opts, width) {
    return spec.panels.map(function (p) {
      if (p.kind === "scatter") {
        return scatterPanel(p);
      }
      if (!api && (p.kind === "stack" || p.kind === "grid")) {
        throw new Error("a " + p.kind + " panel needs the page's attention data");
      }
      var page = /** @type {InspectorApi} */ (api);
      if (p.kind === "grid") {
        return gridPanel(p, page, opts.norm || p.norm || "head", width);
      }
      var m = p.kind === "stack" ? stackMatrix(p, page, p.norm || "fixed") : inlineMatrix(p);
      var range = opts.shared && !p.colors ? opts.shared : { lo: m.lo, hi: m.hi };
      var scale = p.colors ? null : colorScale(p.cmap, range.lo, range.hi, p.fmt);
      return mapPanel(p, m, scale);
    });
  }

  /** The shared colour range of a figure's inline maps. @param {FigureJson} spec */
  function sharedRange(spec) {
    var maps = spec.panels.filter(function (p) { return p.kind === "heatmap" && !p.colors; });
    if (!maps.length) {
      return null;
    }
    return {
      lo: Number(d3.min(maps, function (p) { return p.vmin; })),
      hi: Number(d3.max(maps, function (p) { return p.vmax; }))
    };
  }

  /**
   * Build the <svg> of a figure spec, panels side by side (wrapping at the available width).
   * @param {FigureJson} spec @param {InspectorApi} [api] @param {DrawOptions} [opts] @param {number} [maxWidth]
   * @returns {SVGSVGElement}
   */
  function render(spec, api, opts, maxWidth) {
    var options = opts || {};
    var width = maxWidth || 1180;
    var head = spec.title ? 24 : 4;
    /** @type {Array<{x: number, y: number, P: Placed}>} */
    var placed = [];
    var x = 0;
    var y = head;
    var rowH = 0;
    var total = 0;
    panelsOf(spec, api, options, width).forEach(function (P) {
      if (x > 0 && x + P.w > width) {
        x = 0;
        y += rowH + GAP;
        rowH = 0;
      }
      placed.push({ x: x, y: y, P: P });
      x += P.w + GAP;
      rowH = Math.max(rowH, P.h);
      total = Math.max(total, x - GAP);
    });
    total = Math.ceil(Math.max(total, spec.title ? textWidth(spec.title, 13, "bold") + 8 : 0) + 4);
    var height = Math.ceil(y + rowH + 4);
    var svg = /** @type {SVGSVGElement} */ (document.createElementNS(NS, "svg"));
    svg.setAttributeNS(XMLNS, "xmlns", NS);
    svg.setAttributeNS(XMLNS, "xmlns:xlink", XLINK);
    svg.setAttribute("width", String(total));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", "0 0 " + total + " " + height);
    svg.setAttribute("font-family", FONT);
    svg.setAttribute("class", "ins-fig-svg");
    el(svg, "title", {}, spec.title);
    el(svg, "rect", { x: 0, y: 0, width: total, height: height, fill: "#fff" });
    if (spec.title) {
      el(svg, "text", { x: 2, y: 16, "font-size": 13, "font-weight": "bold", fill: "#111" }, spec.title);
    }
    placed.forEach(function (pl) {
      var g = el(svg, "g", { transform: "translate(" + pl.x + "," + pl.y + ")" });
      pl.P.draw(g);
    });
    /** @type {any} */ (svg).placed = placed;
    return svg;
  }

  /** @returns {HTMLDivElement} */
  function tooltip() {
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "ins-tip";
      tip.setAttribute("role", "status");
      tip.hidden = true;
      document.body.appendChild(tip);
    }
    return tip;
  }

  /** Show the page's one tooltip next to the pointer. @param {MouseEvent} ev @param {string} text */
  function showTip(ev, text) {
    var t = tooltip();
    t.textContent = text;
    t.hidden = false;
    var x = ev.clientX + 14;
    var y = ev.clientY + 14;
    var r = t.getBoundingClientRect();
    if (x + r.width > window.innerWidth - 4) {
      x = Math.max(4, ev.clientX - r.width - 10);
    }
    if (y + r.height > window.innerHeight - 4) {
      y = Math.max(4, ev.clientY - r.height - 10);
    }
    t.style.left = x + "px";
    t.style.top = y + "px";
  }

  function hideTip() {
    if (tip) {
      tip.hidden = true;
    }
  }

  /** The panel under the pointer. @param {SVGSVGElement} svg @param {MouseEvent} ev */
  function panelAt(svg, ev) {
    var ctm = svg.getScreenCTM();
    if (!ctm) {
      return null;
    }
    var pt = svg.createSVGPoint();
    pt.x = ev.clientX;
    pt.y = ev.clientY;
    var at = pt.matrixTransform(ctm.inverse());
    /** @type {Array<{x: number, y: number, P: Placed}>} */
    var placed = /** @type {any} */ (svg).placed || [];
    for (var i = 0; i < placed.length; i++) {
      var pl = placed[i];
      if (at.x >= pl.x && at.y >= pl.y && at.x < pl.x + pl.P.w && at.y < pl.y + pl.P.h) {
        return { pl: pl, x: at.x - pl.x, y: at.y - pl.y };
      }
    }
    return null;
  }

  /** @param {SVGSVGElement} svg */
  function hover(svg) {
    svg.addEventListener("mousemove", function (ev) {
      var found = panelAt(svg, ev);
      var text = found ? found.pl.P.hit(found.x, found.y) : null;
      if (text === null) {
        hideTip();
        return;
      }
      showTip(ev, text);
    });
    svg.addEventListener("mouseleave", hideTip);
    svg.addEventListener("click", function (ev) {
      var found = panelAt(svg, ev);
      if (found && found.pl.P.click) {
        found.pl.P.click(found.x, found.y);
      }
    });
  }

  /** The figure's SVG as a standalone document. @param {SVGSVGElement} svg */
  function svgSource(svg) {
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(svg);
  }

  /** @param {Blob} blob @param {string} filename */
  function saveBlob(blob, filename) {
    var url = URL.createObjectURL(blob);
    var a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    setTimeout(function () {
      URL.revokeObjectURL(url);
    }, 60000);
  }

  /** PNG bytes of the SVG (scale x its size), via an Image of a data: URL and a canvas. */
  /** @param {SVGSVGElement} svg @param {number} scale @param {(b: Blob | null) => void} done */
  function pngBlob(svg, scale, done) {
    var w = Number(svg.getAttribute("width"));
    var h = Number(svg.getAttribute("height"));
    var img = new Image();
    img.onload = function () {
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(w * scale);
      canvas.height = Math.round(h * scale);
      var ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(done, "image/png");
    };
    img.onerror = function () {
      console.error("inspector: the figure could not be converted to PNG");
    };
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svgSource(svg));
  }

  /**
   * A labelled choice above a figure (colour scale options); calls back with the value.
   * @param {Element} figure @param {string} label @param {Array<[string, string]>} choices
   * @param {string} value @param {(v: string) => void} onChange
   */
  function control(figure, label, choices, value, onChange) {
    var bar = document.createElement("div");
    bar.className = "ins-fig-controls";
    var text = document.createElement("label");
    text.textContent = label + " ";
    var select = document.createElement("select");
    select.className = "ins-fig-scale";
    choices.forEach(function (c) {
      var o = document.createElement("option");
      o.value = c[0];
      o.textContent = c[1];
      select.appendChild(o);
    });
    select.value = value;
    select.addEventListener("change", function () { onChange(select.value); });
    text.appendChild(select);
    bar.appendChild(text);
    figure.insertBefore(bar, figure.firstChild);
  }

  /** Draw one <figure class="ins-fig">. @param {Element} figure @param {InspectorApi} [api] */
  function drawFigure(figure, api) {
    var data = /** @type {HTMLElement} */ (figure.querySelector("script.ins-fig-data"));
    var body = /** @type {HTMLElement} */ (figure.querySelector(".ins-fig-body"));
    /** @type {FigureJson} */
    var spec = JSON.parse(data.textContent || "{}");
    var grid = spec.panels.filter(function (p) { return p.kind === "grid"; })[0];
    /** @type {DrawOptions} */
    var opts = { shared: null, norm: grid ? grid.norm || "head" : undefined };
    /** @type {SVGSVGElement | null} */
    var svg = null;
    function paint() {
      var width = Math.max(560, Math.min(2400, (body.clientWidth || 1180) - 4));
      svg = render(spec, api, opts, width);
      body.textContent = "";
      body.appendChild(svg);
      hover(svg);
      figure.setAttribute("data-scale", opts.shared ? "shared" : "own");
      if (opts.norm) {
        figure.setAttribute("data-norm", opts.norm);
      }
    }
    if (spec.shared_scale) {
      control(figure, "Colour scale:", [["own", "each map its own range"], ["shared", "one range for all maps"]], "own", function (v) {
        opts.shared = v === "shared" ? sharedRange(spec) : null;
        paint();
      });
    }
    if (grid) {
      control(figure, "Colour:", [["head", "each head from 0 to its own largest weight"], ["fixed", "one scale for every head, 0 to 1"]], opts.norm || "head", function (v) {
        opts.norm = v;
        paint();
      });
    }
    paint();
    figure.querySelectorAll("button.ins-fig-save").forEach(function (button) {
      button.addEventListener("click", function () {
        var name = button.getAttribute("data-filename") || spec.name;
        if (!svg) {
          return;
        }
        if (button.getAttribute("data-format") === "svg") {
          saveBlob(new Blob([svgSource(svg)], { type: "image/svg+xml" }), name);
        } else {
          pngBlob(svg, 2, function (blob) {
            if (blob) {
              saveBlob(blob, name);
            }
          });
        }
      });
    });
    figure.setAttribute("data-drawn", "1");
  }

  /** @param {InspectorApi} [api] */
  function drawAll(api) {
    var figures = document.querySelectorAll("figure.ins-fig");
    var chain = Promise.resolve();
    figures.forEach(function (figure) {
      chain = chain.then(function () {
        return needLayers(figure, api).then(function () {
          try {
            drawFigure(figure, api);
          } catch (err) {
            console.error("inspector: a figure could not be drawn: " + err);
          }
        });
      });
    });
    return chain.then(function () {
      document.documentElement.setAttribute("data-figures-drawn", String(figures.length));
    });
  }

  /** Decode the layers a figure's stack panels read. @param {Element} figure @param {InspectorApi} [api] */
  function needLayers(figure, api) {
    var node = figure.querySelector("script.ins-fig-data");
    if (!api || !node) {
      return Promise.resolve();
    }
    /** @type {FigureJson} */
    var spec = JSON.parse(node.textContent || "{}");
    var page = api;
    return Promise.all(spec.panels.map(function (p) {
      if (p.kind === "stack") {
        return page.stacks[p.stack || ""].load([p.layer || 0]);
      }
      if (p.kind === "grid" && !page.thumbs[p.stack || ""]) {
        return page.stacks[p.stack || ""].load();
      }
      return Promise.resolve();
    })).then(function () {});
  }

  window.inspectorFigures = {
    render: render,
    svgSource: svgSource,
    drawFigure: drawFigure,
    showTip: showTip,
    hideTip: hideTip,
    format: format
  };
  window.inspector.onReady(function (api) {
    return drawAll(api);
  });
})();
