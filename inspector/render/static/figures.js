/* attention-inspector figures: the page's one figure renderer, built on d3 5.7.0.
 *
 * Each <figure class="ins-fig"> holds a <script type="application/json" class="ins-fig-data">
 * written by inspector/render/figures.py (FigureSpec.data()): {name, title, panels, shared_scale}.
 * Panel kinds (documented in figures.py):
 *   heatmap  a matrix given inline;
 *   stack    one head's map read from the attention the page embeds (inspector.js decodes it);
 *   scatter  labelled points, drawn by scatter.js;
 *   grid     every head of an embedded stack as small multiples, drawn by head-grid.js.
 * This file lays maps out and draws them, places a figure's panels side by side in one SVG, and
 * draws every figure once the page's data is decoded. Scales, axes, colour bars, the tooltip and
 * the downloads come from figure-kit.js (window.inspectorKit), which runs first; scatter.js and
 * head-grid.js run after it and register their kinds there. Every map is one SVG: small maps have
 * one <rect> per cell, big ones a bitmap (canvas -> <image>) inside the same SVG. No network, no
 * eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var kit = window.inspectorKit;
  var XMLNS = "http://www.w3.org/2000/xmlns/";
  var GAP = 18;
  var NAN_FILL = "#d9d9d9";
  /** Above this many cells a map is painted as one bitmap instead of one <rect> per cell. */
  var CANVAS_CELLS = 4096;
  /** Smallest font of the text a figure writes in its cells. */
  var MIN_FONT = 8;

  /** @typedef {FigureScale} Scale @typedef {PlacedPanel} Placed */

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
    var big = nr * nc > CANVAS_CELLS || Boolean(p.canvas);  // a panel may ask for a bitmap
    var cell = Math.max(big ? 0.5 : 2, Math.min(28, (p.size || 320) / Math.max(nr, nc, 1)));
    if (!big) {
      cell = Math.floor(cell);
    }
    var fs = cell >= 12 ? 10 : 9;
    // tick labels at least their height (fs + 3) apart, so they never overlap; the others are
    // read on hover (the panel says so when labels are left out)
    var rowStep = Math.max(1, Math.ceil((fs + 3) / cell));
    var colW = kit.maxWidth(m.cols.filter(function (_, i) { return i < 400; }), fs);
    var rotate = colW > cell - 2;
    var colStep = rotate ? Math.max(1, Math.ceil((fs + 3) / cell)) : 1;
    /** @param {number} step @param {number} n */
    function shown(step, n) {
      return d3.range(0, n, step);
    }
    var rowTicks = shown(rowStep, nr);
    var colTicks = shown(colStep, nc);
    var gw = nc * cell;
    var gh = nr * cell;
    var left = (p.ylabel ? 16 : 0) + kit.labelRoom(rowTicks.map(function (i) { return m.rows[i]; }), fs) + 8;
    var top = p.title ? 20 : 4;
    var colH = (rotate ? kit.labelRoom(colTicks.map(function (j) { return m.cols[j]; }), fs) : fs) + 8;
    var legend = p.legend && p.legend.length ? p.legend : null;
    var legendW = legend ? 16 + kit.maxWidth(legend.map(function (e) { return e[0]; }), 10) : 0;
    var texts = cellTexts(p.text || [], cell);
    var steps = rowStep === colStep ? (rowStep > 1 ? ["every " + ordinal(rowStep) + " label shown"] : []) : [
      rowStep > 1 ? "every " + ordinal(rowStep) + " row label shown" : "",
      colStep > 1 ? "every " + ordinal(colStep) + " column label shown" : ""
    ];
    var note = steps.concat([texts.dropped ? texts.dropped + " cell labels too small to read left out" : ""])
      .filter(Boolean).join(", ");
    note = note ? note + "; hover a cell for all" : "";
    var barW = scale ? 16 + kit.maxWidth([scale.fmt(scale.lo), scale.fmt(scale.hi), scale.fmt((scale.lo + scale.hi) / 2)], 9) + 6 : 0;
    var barH = Math.max(gh, 100);
    var w = Math.max(left + gw + 10 + Math.max(legendW, barW), left + kit.textWidth(p.title || "", 11) + 4);
    var noteLines = wrap(note, Math.max(w - 4, 120), 9);
    var gridH = gh + colH + (p.xlabel ? 14 : 2) + noteLines.length * 12 + (noteLines.length ? 2 : 0);
    var h = top + Math.max(gridH, scale ? barH : 0, legend ? legend.length * 14 : 0) + 2;
    var colors = /** @type {string[][] | undefined} */ (p.colors || undefined);
    var blank = p.blank || NAN_FILL;
    var fill = function (/** @type {number} */ i, /** @type {number} */ j) {
      if (colors) {
        return colors[i][j];
      }
      var v = m.value(i, j);
      return v === null || v === undefined || isNaN(v) || !scale ? blank : scale.color(v);
    };
    /** a value as read: log panels hold log10 of it */
    var shownValue = function (/** @type {number | null} */ v) {
      if (!scale) {
        return String(v);
      }
      return p.log ? (v === null || v === undefined ? "0" : scale.fmt(Math.pow(10, v))) : scale.fmt(v);
    };

    /** @param {SVGGElement} g */
    function draw(g) {
      if (p.title) {
        kit.el(g, "text", { x: left + gw / 2, y: 13, "text-anchor": "middle", "font-size": 11, fill: "#111" }, p.title);
      }
      var grid = kit.el(g, "g", { transform: "translate(" + left + "," + top + ")" });
      if (!big) {
        var cells = kit.el(grid, "g", { "shape-rendering": "crispEdges" });
        for (var i = 0; i < nr; i++) {
          for (var j = 0; j < nc; j++) {
            kit.el(cells, "rect", { x: j * cell, y: i * cell, width: cell, height: cell, fill: fill(i, j) });
          }
        }
      } else {
        paintImage(grid, m, scale, colors, gw, gh, blank);
      }
      kit.el(grid, "rect", { x: 0, y: 0, width: gw, height: gh, fill: "none", stroke: "#999", "stroke-width": 0.5 });
      if (p.annotate && !p.text && scale) {
        var afs = Math.max(6, Math.min(9, Math.floor(cell / 3.2)));
        for (var a = 0; a < nr; a++) {
          for (var b = 0; b < nc; b++) {
            var v = m.value(a, b);
            kit.el(grid, "text", {
              x: (b + 0.5) * cell, y: (a + 0.5) * cell, dy: "0.35em", "text-anchor": "middle",
              "font-size": afs, fill: kit.dark(fill(a, b)) ? "#fff" : "#111"
            }, v === null || isNaN(v) ? "" : d3.format(Math.abs(v) >= 10 ? ".0f" : ".2f")(v));
          }
        }
      }
      texts.shown.forEach(function (t) {
        var color = fill(t.i, t.j);
        t.lines.forEach(function (line, k) {
          kit.el(grid, "text", {
            x: (t.j + 0.5) * cell, y: (t.i + 0.5) * cell + (k - (t.lines.length - 1) / 2) * (t.size + 1),
            dy: "0.35em", "text-anchor": "middle", "font-size": t.size, fill: kit.dark(color) ? "#fff" : "#111"
          }, line);
        });
      });
      var y = d3.scaleBand().domain(d3.range(nr).map(String)).range([0, gh]);
      var x = d3.scaleBand().domain(d3.range(nc).map(String)).range([0, gw]);
      var yAxis = d3.axisLeft(y).tickSize(2).tickValues(rowTicks.map(String))
        .tickFormat(function (d) { return m.rows[Number(d)]; });
      d3.select(kit.el(grid, "g", {})).call(yAxis).call(function (s) {
        kit.styleAxis(s, fs);
        s.select("path.domain").remove();
      });
      var xAxis = d3.axisBottom(x).tickSize(2).tickValues(colTicks.map(String))
        .tickFormat(function (d) { return m.cols[Number(d)]; });
      d3.select(kit.el(grid, "g", { transform: "translate(0," + gh + ")" })).call(xAxis).call(function (s) {
        kit.styleAxis(s, fs);
        s.select("path.domain").remove();
        if (rotate) {
          s.selectAll(".tick text").attr("transform", "rotate(-90)").attr("text-anchor", "end")
            .attr("dx", "-0.5em").attr("dy", "-0.3em").attr("x", 0).attr("y", 0);
        }
      });
      kit.axisNames(grid, p, gw, gh, colH + 10, 8 - left);
      if (legend) {
        kit.legendBlock(grid, legend, gw + 10);
      } else if (scale) {
        kit.colorBar(grid, scale, gw + 10, barH, p.log ? function (v) { return kit.format(".0e")(Math.pow(10, v)); } : null);
      }
      noteLines.forEach(function (line, k) {
        kit.el(g, "text", { x: 2, y: top + gh + colH + (p.xlabel ? 25 : 13) + k * 12, "font-size": 9, fill: "#666" }, line);
      });
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
      var what = p.hover ? p.hover[i][j] : shownValue(m.value(i, j));
      return (p.title ? p.title + "\n" : "") + where + ": " + what;
    }
    return { w: Math.ceil(w), h: Math.ceil(h), draw: draw, hit: hit };
  }

  /** Words of `text` in lines of at most `width` pixels at `size` px. @param {string} text @param {number} width @param {number} size */
  function wrap(text, width, size) {
    /** @type {string[]} */
    var lines = [];
    text.split(" ").filter(Boolean).forEach(function (word) {
      var last = lines.length ? lines[lines.length - 1] + " " + word : word;
      if (lines.length && kit.textWidth(last, size) <= width) {
        lines[lines.length - 1] = last;
      } else {
        lines.push(word);
      }
    });
    return lines;
  }

  /** @param {number} n */
  function ordinal(n) {
    return n === 2 ? "2nd" : n === 3 ? "3rd" : n + "th";
  }

  /**
   * The cell labels that can be read (MIN_FONT px or more): each at the largest size up to 9 px
   * that fits its cell; a label too big keeps its first line when that fits, else is left out.
   * @param {[number, number, string][]} text @param {number} cell
   * @returns {{shown: Array<{i: number, j: number, lines: string[], size: number}>, dropped: number}}
   */
  function cellTexts(text, cell) {
    /** @type {Array<{i: number, j: number, lines: string[], size: number}>} */
    var shown = [];
    var dropped = 0;
    /** @param {string[]} lines */
    function fit(lines) {
      var size = Math.min(9, Math.floor((9 * (cell - 2)) / Math.max(kit.maxWidth(lines, 9), 1)));
      return size >= MIN_FONT && lines.length * (size + 1) <= cell ? size : 0;
    }
    text.forEach(function (t) {
      var lines = String(t[2]).split("\n");
      var size = fit(lines);
      if (!size && lines.length > 1) {
        lines = [lines[0]];
        size = fit(lines);
      }
      if (size) {
        shown.push({ i: t[0], j: t[1], lines: lines, size: size });
      } else {
        dropped += 1;
      }
    });
    return { shown: shown, dropped: dropped };
  }

  /**
   * Paint a big map as one bitmap inside the SVG (a canvas encoded as PNG).
   * @param {SVGGElement} g @param {Matrix} m @param {Scale | null} scale
   * @param {string[][] | undefined} colors @param {number} gw @param {number} gh
   * @param {string} [blank]  the colour of cells without a value
   */
  function paintImage(g, m, scale, colors, gw, gh, blank) {
    var canvas = document.createElement("canvas");
    canvas.width = m.nc;
    canvas.height = m.nr;
    var ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    var img = ctx.createImageData(m.nc, m.nr);
    var grey = d3.rgb(blank || NAN_FILL);
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
    var image = kit.el(g, "image", {
      x: 0, y: 0, width: gw, height: gh, preserveAspectRatio: "none",
      style: "image-rendering:pixelated;image-rendering:crisp-edges"
    });
    image.setAttributeNS(kit.XLINK, "xlink:href", canvas.toDataURL("image/png"));
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
      if (!api && (p.kind === "stack" || p.kind === "grid")) {
        throw new Error("a " + p.kind + " panel needs the page's attention data");
      }
      var drawKind = kit.panelKinds[p.kind];
      if (drawKind) {
        return drawKind(p, api, opts, width);
      }
      if (p.kind === "scatter" || p.kind === "grid") {
        throw new Error("the script that draws " + p.kind + " panels is not on this page");
      }
      var page = /** @type {InspectorApi} */ (api);
      var m = p.kind === "stack" ? stackMatrix(p, page, p.norm || "fixed") : inlineMatrix(p);
      var range = opts.shared && !p.colors ? opts.shared : { lo: m.lo, hi: m.hi };
      var scale = p.colors ? null : kit.colorScale(p.cmap, range.lo, range.hi, p.fmt);
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
    (options.placed || panelsOf(spec, api, options, width)).forEach(function (P) {
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
    total = Math.ceil(Math.max(total, spec.title ? kit.textWidth(spec.title, 13, "bold") + 8 : 0) + 4);
    var height = Math.ceil(y + rowH + 4);
    var svg = /** @type {SVGSVGElement} */ (document.createElementNS(kit.NS, "svg"));
    svg.setAttributeNS(XMLNS, "xmlns", kit.NS);
    svg.setAttributeNS(XMLNS, "xmlns:xlink", kit.XLINK);
    svg.setAttribute("width", String(total));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", "0 0 " + total + " " + height);
    svg.setAttribute("font-family", kit.FONT);
    svg.setAttribute("class", "ins-fig-svg");
    kit.el(svg, "title", {}, spec.title);
    kit.el(svg, "rect", { x: 0, y: 0, width: total, height: height, fill: "#fff" });
    if (spec.title) {
      kit.el(svg, "text", { x: 2, y: 16, "font-size": 13, "font-weight": "bold", fill: "#111" }, spec.title);
    }
    placed.forEach(function (pl) {
      var g = kit.el(svg, "g", { transform: "translate(" + pl.x + "," + pl.y + ")" });
      pl.P.draw(g);
    });
    /** @type {any} */ (svg).placed = placed;
    return svg;
  }

  /** Draw one <figure class="ins-fig"> (at ``width``, else its body's). @param {Element} figure @param {InspectorApi} [api] @param {number} [width] */
  function drawFigure(figure, api, width) {
    var data = /** @type {HTMLElement} */ (figure.querySelector("script.ins-fig-data"));
    var body = /** @type {HTMLElement} */ (figure.querySelector(".ins-fig-body"));
    /** @type {FigureJson} */
    var spec = JSON.parse(data.textContent || "{}");
    var grid = spec.panels.filter(function (p) { return p.kind === "grid"; })[0];
    /** @type {DrawOptions} */
    var opts = { shared: null, norm: grid ? grid.norm || "head" : undefined };
    /** @type {SVGSVGElement | null} */
    var svg = null;
    var measured = width;
    function paint() {
      // the first paint takes the width drawAll measured for every figure at once (reading
      // clientWidth after each appended figure would lay the whole page out once per figure)
      var room = measured !== undefined ? measured : body.clientWidth;
      measured = undefined;
      svg = render(spec, api, opts, Math.max(560, Math.min(2400, (room || 1180) - 4)));
      body.textContent = "";
      body.appendChild(svg);
      kit.hover(svg);
      figure.setAttribute("data-scale", opts.shared ? "shared" : "own");
      if (opts.norm) {
        figure.setAttribute("data-norm", opts.norm);
      }
    }
    if (spec.shared_scale) {
      kit.control(figure, "Colour scale:", [["own", "each map its own range"], ["shared", "one range for all maps"]], "own", function (v) {
        opts.shared = v === "shared" ? sharedRange(spec) : null;
        paint();
      });
    }
    if (grid) {
      kit.control(figure, "Colour:", [["head", "each head from 0 to its own largest weight"], ["fixed", "one scale for every head, 0 to 1"]], opts.norm || "head", function (v) {
        opts.norm = v;
        paint();
      });
    }
    paint();
    kit.downloads(figure, spec.name, function () { return svg; });
    figure.setAttribute("data-drawn", "1");
  }

  /** @param {InspectorApi} [api] */
  function drawAll(api) {
    var figures = document.querySelectorAll("figure.ins-fig");
    /** @type {number[]} */
    var widths = [];
    figures.forEach(function (figure) {  // one layout for all, before any figure is drawn
      var body = figure.querySelector(".ins-fig-body");
      widths.push(body ? body.clientWidth : 0);
    });
    var chain = Promise.resolve();
    figures.forEach(function (figure, i) {
      chain = chain.then(function () {
        return needLayers(figure, api).then(function () {
          try {
            drawFigure(figure, api, widths[i]);
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
    svgSource: kit.svgSource,
    drawFigure: drawFigure,
    showTip: kit.showTip,
    hideTip: kit.hideTip,
    format: kit.format
  };
  window.inspector.onReady(function (api) {
    return drawAll(api);
  });
})();
