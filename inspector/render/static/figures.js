/* attention-inspector figures: heatmaps and labelled scatters drawn as SVG from embedded JSON.
 *
 * Each <figure class="ins-fig"> holds a <script type="application/json" class="ins-fig-data">
 * written by inspector/render/figures.py (FigureSpec.data()): {name, title, panels: [...]}.
 * A panel is a heatmap (values, row/column labels, colour map or categorical colours, legend)
 * or a scatter (x, y, labels, colours). Panels are laid out side by side, wrapping at MAX_WIDTH.
 * Small heatmaps draw one <rect> per cell; big ones (panel.canvas) paint their cells on a canvas
 * and embed it as one <image> in the same SVG. Hovering shows a cell's or point's value.
 * "SVG" downloads the serialised element (standalone: xmlns and inline attributes only); "PNG"
 * draws that SVG on a canvas (Image from a data: URL -> canvas.toBlob). No network, no eval.
 */
(function () {
  "use strict";

  var NS = "http://www.w3.org/2000/svg";
  var XMLNS = "http://www.w3.org/2000/xmlns/";
  var XLINK = "http://www.w3.org/1999/xlink";
  var FONT = "Helvetica, Arial, sans-serif";
  var MAX_WIDTH = 1180;
  var GAP = 18;
  var NAN_FILL = "#d9d9d9";
  var CMAPS = {
    viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
      "#6ece58", "#b5de2b", "#fde725"],
    blues: ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5",
      "#08519c", "#08306b"],
    magma_r: ["#fcfdbf", "#feca8d", "#fd9668", "#f1605d", "#cd4071", "#9e2f7f", "#721f81",
      "#440f76", "#180f3d", "#000004"],
    rdbu: ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7",
      "#f4a582", "#d6604d", "#b2182b", "#67001f"]
  };
  var parsed = {};
  var measurer = null;
  var tip = null;

  function rgbOf(hex) {
    return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
  }

  function stops(name) {
    if (!parsed[name]) {
      parsed[name] = (CMAPS[name] || CMAPS.viridis).map(rgbOf);
    }
    return parsed[name];
  }

  /** [r, g, b] of value v on the panel's colour map (null for missing values). */
  function rgb(p, v) {
    if (v === null || v === undefined || isNaN(v)) {
      return null;
    }
    var s = stops(p.cmap);
    var span = p.vmax - p.vmin;
    var t = span > 0 ? (v - p.vmin) / span : 0.5;
    t = Math.max(0, Math.min(1, t)) * (s.length - 1);
    var i = Math.min(s.length - 2, Math.floor(t));
    var f = t - i;
    return [0, 1, 2].map(function (c) {
      return Math.round(s[i][c] + (s[i + 1][c] - s[i][c]) * f);
    });
  }

  function css(c) {
    return c ? "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")" : NAN_FILL;
  }

  function dark(c) {
    return c && 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 140;
  }

  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) {
      return "n/a";
    }
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) {
      return v.toExponential(2);
    }
    return String(parseFloat(v.toPrecision(3)));
  }

  function short(v) {
    return v === null || v === undefined || isNaN(v) ? "" : Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2);
  }

  function textWidth(text, size, weight) {
    if (!measurer) {
      measurer = document.createElement("canvas").getContext("2d");
    }
    measurer.font = (weight ? weight + " " : "") + size + "px " + FONT;
    return Math.ceil(measurer.measureText(String(text)).width);
  }

  function maxWidth(texts, size) {
    return texts.reduce(function (m, t) {
      return Math.max(m, textWidth(t, size));
    }, 0);
  }

  function el(parent, tag, attrs, text) {
    var node = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    if (text !== undefined) {
      node.textContent = text;
    }
    if (parent) {
      parent.appendChild(node);
    }
    return node;
  }

  function legendBox(p) {
    if (p.legend && p.legend.length) {
      var names = p.legend.map(function (e) { return e[0]; });
      return { w: 16 + maxWidth(names, 10), h: 14 * names.length };
    }
    if (p.colors) {
      return { w: 0, h: 0 };
    }
    var ticks = [fmt(p.vmin), fmt((p.vmin + p.vmax) / 2), fmt(p.vmax)];
    return { w: 16 + maxWidth(ticks, 9), h: 0 };
  }

  function drawLegend(g, p, x, height) {
    if (p.legend && p.legend.length) {
      p.legend.forEach(function (e, i) {
        el(g, "rect", { x: x, y: i * 14 + 1, width: 10, height: 10, fill: e[1], stroke: "#666", "stroke-width": 0.5 });
        el(g, "text", { x: x + 14, y: i * 14 + 10, "font-size": 10, fill: "#222" }, e[0]);
      });
      return;
    }
    if (p.colors) {
      return;
    }
    var steps = 48;
    var bar = el(g, "g", { "shape-rendering": "crispEdges" });
    for (var i = 0; i < steps; i++) {
      var v = p.vmax - ((i + 0.5) / steps) * (p.vmax - p.vmin);
      el(bar, "rect", { x: x, y: (i * height) / steps, width: 10, height: height / steps + 0.5, fill: css(rgb(p, v)) });
    }
    el(g, "rect", { x: x, y: 0, width: 10, height: height, fill: "none", stroke: "#888", "stroke-width": 0.5 });
    var tiny = 1e-6 * Math.max(Math.abs(p.vmin), Math.abs(p.vmax));
    [[p.vmax, 0], [(p.vmin + p.vmax) / 2, height / 2], [p.vmin, height]].forEach(function (t) {
      t[0] = Math.abs(t[0]) < tiny ? 0 : t[0];
      el(g, "line", { x1: x + 10, x2: x + 13, y1: t[1], y2: t[1], stroke: "#888", "stroke-width": 0.5 });
      el(g, "text", { x: x + 15, y: t[1], dy: "0.35em", "font-size": 9, fill: "#333" }, fmt(t[0]));
    });
  }

  // ------------------------------------------------------------------------------ heatmap

  function heatmapLayout(p) {
    var nr = p.rows.length;
    var nc = p.cols.length;
    var cell = Math.max(2, Math.min(28, Math.floor(p.size / Math.max(nr, nc, 1))));
    var fs = cell >= 12 ? 10 : 9;
    var rowStep = Math.max(1, Math.ceil((fs + 1) / cell));
    var colW = maxWidth(p.cols, fs);
    var rotate = colW > cell - 2;
    var colStep = rotate ? Math.max(1, Math.ceil((fs + 1) / cell)) : 1;
    var shownRows = p.rows.filter(function (_, i) { return i % rowStep === 0; });
    var shownCols = p.cols.filter(function (_, i) { return i % colStep === 0; });
    var gw = nc * cell;
    var gh = nr * cell;
    var leg = legendBox(p);
    var barH = Math.max(gh, 80);
    var L = {
      p: p, cell: cell, fs: fs, rowStep: rowStep, colStep: colStep, rotate: rotate, gw: gw, gh: gh,
      barH: barH,
      left: (p.ylabel ? 16 : 0) + maxWidth(shownRows, fs) + 5,
      top: p.title ? 20 : 4,
      colH: (rotate ? maxWidth(shownCols, fs) : fs) + 5
    };
    var bottom = L.colH + (p.xlabel ? 16 : 2);
    L.w = Math.max(L.left + gw + (leg.w ? 10 + leg.w : 4), L.left + textWidth(p.title, 11) + 4);
    L.h = L.top + Math.max(gh + bottom, p.colors ? leg.h : barH, leg.h) + 2;
    return L;
  }

  function paintCells(g, L) {
    var p = L.p;
    var nr = p.rows.length;
    var nc = p.cols.length;
    var i, j, c;
    if (!p.canvas) {
      var cells = el(g, "g", { "shape-rendering": "crispEdges" });
      for (i = 0; i < nr; i++) {
        for (j = 0; j < nc; j++) {
          c = p.colors ? p.colors[i][j] : css(rgb(p, p.values[i][j]));
          el(cells, "rect", { x: j * L.cell, y: i * L.cell, width: L.cell, height: L.cell, fill: c });
        }
      }
      return;
    }
    var canvas = document.createElement("canvas");
    canvas.width = nc;
    canvas.height = nr;
    var ctx = canvas.getContext("2d");
    var img = ctx.createImageData(nc, nr);
    var grey = rgbOf(NAN_FILL);
    for (i = 0; i < nr; i++) {
      for (j = 0; j < nc; j++) {
        c = p.colors ? rgbOf(p.colors[i][j]) : rgb(p, p.values[i][j]) || grey;
        var o = (i * nc + j) * 4;
        img.data[o] = c[0];
        img.data[o + 1] = c[1];
        img.data[o + 2] = c[2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    var image = el(g, "image", {
      x: 0, y: 0, width: L.gw, height: L.gh, preserveAspectRatio: "none",
      style: "image-rendering:pixelated;image-rendering:crisp-edges"
    });
    image.setAttributeNS(XLINK, "xlink:href", canvas.toDataURL("image/png"));
  }

  function drawHeatmap(g, L) {
    var p = L.p;
    if (p.title) {
      el(g, "text", { x: L.left + L.gw / 2, y: 13, "text-anchor": "middle", "font-size": 11, fill: "#111" }, p.title);
    }
    var grid = el(g, "g", { transform: "translate(" + L.left + "," + L.top + ")" });
    paintCells(grid, L);
    el(grid, "rect", { x: 0, y: 0, width: L.gw, height: L.gh, fill: "none", stroke: "#999", "stroke-width": 0.5 });
    var i, j, v, c;
    if (p.annotate && !p.text) {
      var afs = Math.max(6, Math.min(9, Math.floor(L.cell / 3.2)));
      for (i = 0; i < p.rows.length; i++) {
        for (j = 0; j < p.cols.length; j++) {
          v = p.values[i][j];
          c = rgb(p, v);
          el(grid, "text", {
            x: (j + 0.5) * L.cell, y: (i + 0.5) * L.cell, dy: "0.35em", "text-anchor": "middle",
            "font-size": afs, fill: dark(c) ? "#fff" : "#111"
          }, short(v));
        }
      }
    }
    (p.text || []).forEach(function (t) {
      var lines = String(t[2]).split("\n");
      var c2 = p.colors ? rgbOf(p.colors[t[0]][t[1]]) : rgb(p, p.values[t[0]][t[1]]);
      var widest = maxWidth(lines, 9);
      var size = Math.max(5, Math.min(9, Math.floor((9 * (L.cell - 2)) / Math.max(widest, 1))));
      lines.forEach(function (line, k) {
        el(grid, "text", {
          x: (t[1] + 0.5) * L.cell, y: (t[0] + 0.5) * L.cell + (k - (lines.length - 1) / 2) * (size + 1),
          dy: "0.35em", "text-anchor": "middle", "font-size": size, fill: dark(c2) ? "#fff" : "#111"
        }, line);
      });
    });
    for (i = 0; i < p.rows.length; i += L.rowStep) {
      el(grid, "text", {
        x: -4, y: (i + 0.5) * L.cell, dy: "0.35em", "text-anchor": "end", "font-size": L.fs, fill: "#333"
      }, p.rows[i]);
    }
    for (j = 0; j < p.cols.length; j += L.colStep) {
      var x = (j + 0.5) * L.cell;
      if (L.rotate) {
        el(grid, "text", {
          transform: "translate(" + x + "," + (L.gh + 4) + ") rotate(-90)", dy: "0.35em",
          "text-anchor": "end", "font-size": L.fs, fill: "#333"
        }, p.cols[j]);
      } else {
        el(grid, "text", { x: x, y: L.gh + 3 + L.fs, "text-anchor": "middle", "font-size": L.fs, fill: "#333" }, p.cols[j]);
      }
    }
    if (p.xlabel) {
      el(grid, "text", { x: L.gw / 2, y: L.gh + L.colH + 12, "text-anchor": "middle", "font-size": 10, fill: "#444" }, p.xlabel);
    }
    if (p.ylabel) {
      el(grid, "text", {
        transform: "translate(" + (8 - L.left) + "," + L.gh / 2 + ") rotate(-90)", dy: "0.35em",
        "text-anchor": "middle", "font-size": 10, fill: "#444"
      }, p.ylabel);
    }
    drawLegend(grid, p, L.gw + 10, L.barH);
  }

  function heatmapHit(L, x, y) {
    var p = L.p;
    var j = Math.floor((x - L.left) / L.cell);
    var i = Math.floor((y - L.top) / L.cell);
    if (x < L.left || y < L.top || i >= p.rows.length || j >= p.cols.length) {
      return null;
    }
    var where = (p.ylabel || "row") + " " + p.rows[i] + ", " + (p.xlabel || "column") + " " + p.cols[j];
    var what = p.hover ? p.hover[i][j] : fmt(p.values[i][j]);
    return (p.title ? p.title + "\n" : "") + where + ": " + what;
  }

  // ------------------------------------------------------------------------------ scatter

  function ticks(lo, hi) {
    var raw = (hi - lo) / 4 || 1;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).filter(function (s) {
      return s >= raw;
    })[0];
    var out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) {
      out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return out;
  }

  function scatterLayout(p) {
    var leg = legendBox({ legend: p.legend, colors: true });
    var big = p.x.length > 40;
    var L = { p: p, pw: big ? 560 : 380, ph: big ? 420 : 300, top: p.title ? 22 : 6, left: 40 + (p.ylabel ? 14 : 0) };
    var pad = function (v) {
      var lo = Math.min.apply(null, v);
      var hi = Math.max.apply(null, v);
      var m = (hi - lo) * 0.08 || 1;
      return [lo - m, hi + m];
    };
    L.xd = pad(p.x.length ? p.x : [0]);
    L.yd = pad(p.y.length ? p.y : [0]);
    L.sx = function (v) { return ((v - L.xd[0]) / (L.xd[1] - L.xd[0])) * L.pw; };
    L.sy = function (v) { return L.ph - ((v - L.yd[0]) / (L.yd[1] - L.yd[0])) * L.ph; };
    L.w = Math.max(L.left + L.pw + (leg.w ? 14 + leg.w : 30), L.left + textWidth(p.title, 11) + 4);
    L.h = L.top + Math.max(L.ph, leg.h) + 24 + (p.xlabel ? 14 : 0);
    return L;
  }

  function drawScatter(g, L) {
    var p = L.p;
    if (p.title) {
      el(g, "text", { x: L.left + L.pw / 2, y: 14, "text-anchor": "middle", "font-size": 11, fill: "#111" }, p.title);
    }
    var plot = el(g, "g", { transform: "translate(" + L.left + "," + L.top + ")" });
    el(plot, "rect", { x: 0, y: 0, width: L.pw, height: L.ph, fill: "#fff", stroke: "#999", "stroke-width": 0.6 });
    ticks(L.xd[0], L.xd[1]).forEach(function (t) {
      var x = L.sx(t);
      el(plot, "line", { x1: x, x2: x, y1: 0, y2: L.ph, stroke: "#eee", "stroke-width": 0.6 });
      el(plot, "text", { x: x, y: L.ph + 12, "text-anchor": "middle", "font-size": 9, fill: "#333" }, fmt(t));
    });
    ticks(L.yd[0], L.yd[1]).forEach(function (t) {
      var y = L.sy(t);
      el(plot, "line", { x1: 0, x2: L.pw, y1: y, y2: y, stroke: "#eee", "stroke-width": 0.6 });
      el(plot, "text", { x: -4, y: y, dy: "0.35em", "text-anchor": "end", "font-size": 9, fill: "#333" }, fmt(t));
    });
    for (var i = 0; i < p.x.length; i++) {
      var cx = L.sx(p.x[i]);
      var cy = L.sy(p.y[i]);
      el(plot, "circle", {
        cx: cx, cy: cy, r: 4, fill: p.colors ? p.colors[i] : "#1f77b4", stroke: "#333", "stroke-width": 0.5
      });
      el(plot, "text", { x: cx + 5, y: cy - 4, "font-size": 8, fill: "#222" }, p.labels[i]);
    }
    if (p.xlabel) {
      el(plot, "text", { x: L.pw / 2, y: L.ph + 26, "text-anchor": "middle", "font-size": 10, fill: "#444" }, p.xlabel);
    }
    if (p.ylabel) {
      el(plot, "text", {
        transform: "translate(" + (8 - L.left) + "," + L.ph / 2 + ") rotate(-90)", dy: "0.35em",
        "text-anchor": "middle", "font-size": 10, fill: "#444"
      }, p.ylabel);
    }
    drawLegend(plot, { legend: p.legend, colors: true }, L.pw + 14, 0);
  }

  function scatterHit(L, x, y) {
    var p = L.p;
    var best = -1;
    var bestD = 64;
    for (var i = 0; i < p.x.length; i++) {
      var dx = L.left + L.sx(p.x[i]) - x;
      var dy = L.top + L.sy(p.y[i]) - y;
      if (dx * dx + dy * dy < bestD) {
        bestD = dx * dx + dy * dy;
        best = i;
      }
    }
    return best < 0 ? null : p.labels[best] + " (" + fmt(p.x[best]) + ", " + fmt(p.y[best]) + ")";
  }

  // ------------------------------------------------------------------------------ figures

  var KINDS = {
    heatmap: { layout: heatmapLayout, draw: drawHeatmap, hit: heatmapHit },
    scatter: { layout: scatterLayout, draw: drawScatter, hit: scatterHit }
  };

  /** Build the <svg> of a figure spec; returns it with .panels = [{x, y, L, kind}]. */
  function render(spec) {
    var head = spec.title ? 24 : 4;
    var placed = [];
    var x = 0;
    var y = head;
    var rowH = 0;
    var width = 0;
    spec.panels.forEach(function (p) {
      var kind = KINDS[p.kind];
      var L = kind.layout(p);
      if (x > 0 && x + L.w > MAX_WIDTH) {
        x = 0;
        y += rowH + GAP;
        rowH = 0;
      }
      placed.push({ x: x, y: y, L: L, kind: kind });
      x += L.w + GAP;
      rowH = Math.max(rowH, L.h);
      width = Math.max(width, x - GAP);
    });
    width = Math.ceil(Math.max(width, spec.title ? textWidth(spec.title, 13, "bold") + 8 : 0) + 4);
    var height = Math.ceil(y + rowH + 4);
    var svg = document.createElementNS(NS, "svg");
    svg.setAttributeNS(XMLNS, "xmlns", NS);
    svg.setAttributeNS(XMLNS, "xmlns:xlink", XLINK);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("font-family", FONT);
    svg.setAttribute("class", "ins-fig-svg");
    el(svg, "title", {}, spec.title);
    el(svg, "rect", { x: 0, y: 0, width: width, height: height, fill: "#fff" });
    if (spec.title) {
      el(svg, "text", { x: 2, y: 16, "font-size": 13, "font-weight": "bold", fill: "#111" }, spec.title);
    }
    placed.forEach(function (pl) {
      var g = el(svg, "g", { transform: "translate(" + pl.x + "," + pl.y + ")" });
      pl.kind.draw(g, pl.L);
    });
    svg.panels = placed;
    return svg;
  }

  function tooltip() {
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "ins-fig-tip";
      tip.setAttribute("role", "status");
      tip.style.cssText = "position:absolute;z-index:10;background:#222;color:#fff;font-size:12px;" +
        "padding:3px 6px;border-radius:3px;pointer-events:none;white-space:pre;display:none";
      document.body.appendChild(tip);
    }
    return tip;
  }

  function hover(svg) {
    svg.addEventListener("mousemove", function (ev) {
      var ctm = svg.getScreenCTM();
      var t = tooltip();
      if (!ctm) {
        return;
      }
      var pt = svg.createSVGPoint();
      pt.x = ev.clientX;
      pt.y = ev.clientY;
      var at = pt.matrixTransform(ctm.inverse());
      var text = null;
      svg.panels.some(function (pl) {
        if (at.x >= pl.x && at.y >= pl.y && at.x < pl.x + pl.L.w && at.y < pl.y + pl.L.h) {
          text = pl.kind.hit(pl.L, at.x - pl.x, at.y - pl.y);
        }
        return text !== null;
      });
      if (text === null) {
        t.style.display = "none";
        return;
      }
      t.textContent = text;
      t.style.display = "block";
      t.style.left = ev.pageX + 12 + "px";
      t.style.top = ev.pageY + 12 + "px";
    });
    svg.addEventListener("mouseleave", function () {
      tooltip().style.display = "none";
    });
  }

  /** The figure's SVG as a standalone document. */
  function svgSource(svg) {
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(svg);
  }

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
  function pngBlob(svg, scale, done) {
    var w = Number(svg.getAttribute("width"));
    var h = Number(svg.getAttribute("height"));
    var img = new Image();
    img.onload = function () {
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(w * scale);
      canvas.height = Math.round(h * scale);
      var ctx = canvas.getContext("2d");
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

  function drawFigure(figure) {
    var data = figure.querySelector("script.ins-fig-data");
    var body = figure.querySelector(".ins-fig-body");
    var spec = JSON.parse(data.textContent);
    var svg = render(spec);
    body.textContent = "";
    body.appendChild(svg);
    hover(svg);
    figure.querySelectorAll("button.ins-fig-save").forEach(function (button) {
      button.addEventListener("click", function () {
        var name = button.getAttribute("data-filename");
        if (button.getAttribute("data-format") === "svg") {
          saveBlob(new Blob([svgSource(svg)], { type: "image/svg+xml" }), name);
        } else {
          pngBlob(svg, 2, function (blob) {
            saveBlob(blob, name);
          });
        }
      });
    });
    figure.setAttribute("data-drawn", "1");
  }

  function drawAll() {
    var figures = document.querySelectorAll("figure.ins-fig");
    figures.forEach(function (figure) {
      try {
        drawFigure(figure);
      } catch (err) {
        console.error("inspector: a figure could not be drawn: " + err);
      }
    });
    document.documentElement.setAttribute("data-figures-drawn", String(figures.length));
  }

  window.inspectorFigures = { render: render, svgSource: svgSource, pngBlob: pngBlob };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
