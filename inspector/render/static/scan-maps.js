/* attention-inspector scan page: every head's pooled map.
 *
 * Pooled maps (figure.ins-scan-maps): the JSON next to it (sections/scan_maps.py pooled_maps)
 * holds every head's pooled map twice, as 8-bit log codes (zlib, base64): thumbnails for the
 * grid and bigger maps for the head a click enlarges (in a zoom box kept in view, at the stated
 * number of blocks). Colour: log scale (4 decades below the head's largest block), each query
 * block divided by its row's largest, or linear; white is where no query can look (a causal
 * map above its diagonal). Hovering a block shows the text of its position ranges. Decoding and
 * the tokens come from scan-glance.js (window.inspectorScan). Runs after figure-kit.js,
 * figures.js and scan-glance.js. No network, no eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var kit = window.inspectorKit;
  var scan = window.inspectorScan;
  /** Decades shown below a head's largest block on the log scale. */
  var LOG_SPAN = 4;
  /** @type {Array<[string, string]>} */
  var NORMS = [
    ["log", "log scale, 4 decades below each head's largest block"],
    ["row", "each query block divided by its row's largest block"],
    ["head", "linear, 0 to each head's largest block"]
  ];

  /** @typedef {PlacedPanel} Placed */

  // ------------------------------------------------------------------------------ pooled maps

  /**
   * One decoded set of pooled maps: values of head (l, h) on demand.
   * @param {ScanMapSet} set @param {Uint8Array} codes
   */
  function mapSet(set, codes) {
    var s = set.shape;
    var size = s[2] * s[3];
    /** @type {Record<number, Float64Array>} */
    var cache = {};
    return {
      shape: s,
      rows: set.rows,
      cols: set.cols,
      /** @param {number} l @param {number} h @returns {Float64Array} */
      head: function (l, h) {
        var k = l * s[1] + h;
        if (!cache[k]) {
          var lo = set.lo[l][h];
          var span = set.hi[l][h] - lo;
          var out = new Float64Array(size);
          var base = k * size;
          for (var i = 0; i < size; i++) {
            var c = codes[base + i];
            out[i] = c === 0 ? 0 : Math.pow(10, lo + ((c - 1) / 254) * span);
          }
          cache[k] = out;
        }
        return cache[k];
      }
    };
  }

  /** @typedef {ReturnType<typeof mapSet>} MapSet */

  /**
   * Which blocks of a map no query can see (a causal map's blocks above the diagonal).
   * @param {ScanMapsJson} spec @param {MapSet} set @returns {(r: number, c: number) => boolean}
   */
  function maskOf(spec, set) {
    return function (r, c) {
      return spec.causal && set.cols[c] > set.rows[r + 1] - 1;
    };
  }

  /**
   * A head's map as colour positions in [0, 1] on the chosen scale; NaN where no query can look
   * (drawn white). A weight too small for the stored float16 (0) takes the lowest colour.
   * @param {Float64Array} v @param {number} nr @param {number} nc @param {string} norm
   * @param {(r: number, c: number) => boolean} masked
   * @returns {Float64Array}
   */
  function normalised(v, nr, nc, norm, masked) {
    var out = new Float64Array(v.length);
    var top = 0;
    for (var i = 0; i < v.length; i++) {
      top = Math.max(top, v[i]);
    }
    for (var r = 0; r < nr; r++) {
      var rmax = 0;
      if (norm === "row") {
        for (var c = 0; c < nc; c++) {
          rmax = Math.max(rmax, v[r * nc + c]);
        }
      }
      for (var c2 = 0; c2 < nc; c2++) {
        var x = v[r * nc + c2];
        var t = 0;
        if (masked(r, c2)) {
          t = NaN;
        } else if (x > 0) {
          t = norm === "log" ? (Math.log10(x / top) + LOG_SPAN) / LOG_SPAN : x / (norm === "row" ? rmax : top);
        }
        out[r * nc + c2] = t;
      }
    }
    return out;
  }

  /**
   * The colour scale of the grid (log: log10 of the share of the head's largest block) and its
   * colour-bar text. @param {string} norm
   */
  function gridScale(norm) {
    var log = norm === "log";
    var scale = kit.colorScale("viridis", log ? -LOG_SPAN : 0, log ? 0 : 1);
    /** @param {number} v */
    var label = function (v) {
      if (log) {
        return v === 0 ? "head max" : "max ÷ 1e" + -v;
      }
      return v === 1 ? (norm === "row" ? "row max" : "head max") : d3.format(".1f")(v);
    };
    return { scale: scale, label: label };
  }

  /**
   * The "pooled" panel kind: every head's thumbnail, layers wrapped into side-by-side blocks.
   * @param {ScanMapsJson} spec @param {MapSet} thumbs @param {string} norm @param {number} width
   * @param {(l: number, h: number) => void} onClick @param {HTMLElement} hoverBox
   * @returns {Placed}
   */
  function pooledPanel(spec, thumbs, norm, width, onClick, hoverBox) {
    var s = thumbs.shape;
    var nL = s[0];
    var nH = s[1];
    var nr = s[2];
    var nc = s[3];
    var cell = nL * nH <= 300 ? 48 : nL * nH <= 700 ? 36 : 28;
    var gap = 4;
    var fs = 10;
    var labelW = kit.maxWidth(spec.layers.map(function (l) { return "L" + l; }), fs) + 8;
    var blockW = labelW + nH * (cell + gap) + 14;
    var barW = 96;
    var blocks = Math.max(1, Math.min(Math.ceil(nL / 6), Math.floor((width - barW) / blockW)));
    var perBlock = Math.ceil(nL / blocks);
    var top = 34;
    var gh = perBlock * (cell + gap);
    var w = blocks * blockW + barW;
    var h = top + gh + 6;
    var colour = gridScale(norm);
    var lut = colour.scale.lut;
    var masked = maskOf(spec, thumbs);
    var edgesR = thumbs.rows;
    var edgesC = thumbs.cols;

    /** @param {number} l @returns {{x: number, y: number}} */
    function origin(l) {
      var b = Math.floor(l / perBlock);
      return { x: b * blockW + labelW, y: top + (l - b * perBlock) * (cell + gap) };
    }

    function paint() {
      var canvas = document.createElement("canvas");
      canvas.width = Math.ceil(w);
      canvas.height = Math.ceil(h);
      var ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
      var img = ctx.createImageData(canvas.width, canvas.height);
      var data = img.data;
      for (var l = 0; l < nL; l++) {
        var o = origin(l);
        for (var hh = 0; hh < nH; hh++) {
          var t = normalised(thumbs.head(l, hh), nr, nc, norm, masked);
          var ox = o.x + hh * (cell + gap);
          for (var y = 0; y < cell; y++) {
            var r = Math.floor((y * nr) / cell);
            for (var x = 0; x < cell; x++) {
              var v = t[r * nc + Math.floor((x * nc) / cell)];
              var at = ((o.y + y) * canvas.width + ox + x) * 4;
              if (isNaN(v)) {
                data[at] = data[at + 1] = data[at + 2] = 255;
              } else {
                var k = 3 * Math.max(0, Math.min(255, Math.round(v * 255)));
                data[at] = lut[k];
                data[at + 1] = lut[k + 1];
                data[at + 2] = lut[k + 2];
              }
              data[at + 3] = 255;
            }
          }
        }
      }
      ctx.putImageData(img, 0, 0);
      return canvas.toDataURL("image/png");
    }

    /** @param {SVGGElement} g */
    function draw(g) {
      var image = kit.el(g, "image", { x: 0, y: 0, width: Math.ceil(w), height: Math.ceil(h), preserveAspectRatio: "none" });
      image.setAttributeNS(kit.XLINK, "xlink:href", paint());
      kit.el(g, "text", { x: 0, y: 11, "font-size": 11, fill: "#111" },
        nL + " layers x " + nH + " heads: " + nr + " x " + nc + " blocks of " + (edgesR[1] - edgesR[0]) +
        " tokens each; click a head to enlarge it at " + spec.zoom.shape[2] + " x " + spec.zoom.shape[3]);
      var frames = kit.el(g, "g", { fill: "none", stroke: "#bbb", "stroke-width": 0.5, "shape-rendering": "crispEdges" });
      for (var b = 0; b < blocks; b++) {
        for (var hh = 0; hh < nH; hh++) {
          kit.el(g, "text", { x: b * blockW + labelW + hh * (cell + gap) + cell / 2, y: top - 5, "text-anchor": "middle", "font-size": fs, fill: "#333" }, "H" + spec.heads[hh]);
        }
      }
      for (var l = 0; l < nL; l++) {
        var o = origin(l);
        kit.el(g, "text", { x: o.x - 6, y: o.y + cell / 2, dy: "0.35em", "text-anchor": "end", "font-size": fs, fill: "#333" }, "L" + spec.layers[l]);
        for (var h2 = 0; h2 < nH; h2++) {
          kit.el(frames, "rect", { x: o.x + h2 * (cell + gap) - 0.5, y: o.y - 0.5, width: cell + 1, height: cell + 1 });
        }
      }
      var barH = Math.max(80, Math.min(gh - gap, 200));
      var bar = kit.el(g, "g", { transform: "translate(0," + top + ")" });
      kit.colorBar(bar, colour.scale, blocks * blockW + 4, barH, colour.label);
      kit.el(bar, "text", { x: blocks * blockW + 4, y: barH + 16, "font-size": 9, fill: "#555" }, "white: no attention");
    }

    /** @param {number} px @param {number} py */
    function locate(px, py) {
      var b = Math.floor(px / blockW);
      var hh = Math.floor((px - b * blockW - labelW) / (cell + gap));
      var row = Math.floor((py - top) / (cell + gap));
      var l = b * perBlock + row;
      if (py < top || b >= blocks || hh < 0 || hh >= nH || row >= perBlock || l >= nL) {
        return null;
      }
      var o = origin(l);
      var ix = px - o.x - hh * (cell + gap);
      var iy = py - o.y;
      if (ix < 0 || iy < 0 || ix >= cell || iy >= cell) {
        return null;
      }
      return { l: l, h: hh, r: Math.floor((iy / cell) * nr), c: Math.floor((ix / cell) * nc) };
    }

    /** @param {number} px @param {number} py */
    function hit(px, py) {
      var at = locate(px, py);
      if (!at) {
        return null;
      }
      var v = thumbs.head(at.l, at.h)[at.r * nc + at.c];
      var q = [edgesR[at.r], edgesR[at.r + 1] - 1];
      var k = [edgesC[at.c], edgesC[at.c + 1] - 1];
      hoverBox.textContent = "layer " + spec.layers[at.l] + ", head " + spec.heads[at.h] + ": queries " +
        q[0] + "–" + q[1] + " “" + scan.textOf(q[0], q[1] + 1, 80) + "” → keys " + k[0] + "–" + k[1] +
        " “" + scan.textOf(k[0], k[1] + 1, 80) + "”";
      var what = masked(at.r, at.c) ? "not seen (a causal query sees no later key)" : "mean weight " + d3.format(".3~e")(v);
      return "layer " + spec.layers[at.l] + ", head " + spec.heads[at.h] + "\nqueries " + q[0] + "–" + q[1] +
        " → keys " + k[0] + "–" + k[1] + ": " + what + "\nclick to enlarge";
    }

    /** @param {number} px @param {number} py */
    function click(px, py) {
      var at = locate(px, py);
      if (at) {
        onClick(at.l, at.h);
      }
    }
    return { w: Math.ceil(w), h: Math.ceil(h), draw: draw, hit: hit, click: click };
  }

  /**
   * The zoom box: one head's map at the enlarged resolution, kept in view; Esc closes it.
   * @param {ScanMapsJson} spec @param {MapSet} maps @param {number} l @param {number} h @param {string} norm
   */
  function zoom(spec, maps, l, h, norm) {
    var z = kit.zoomBox("one head's pooled map, enlarged");
    var box = z.box;
    var s = maps.shape;
    var nr = s[2];
    var nc = s[3];
    var v = maps.head(l, h);
    var masked = maskOf(spec, maps);
    var t = normalised(v, nr, nc, norm, masked);
    var top = 0;
    for (var i = 0; i < v.length; i++) {
      top = Math.max(top, v[i]);
    }
    var log = norm === "log";
    var hiLog = Math.log10(Math.max(top, 1e-30));
    /** @type {(number | null)[][]} */
    var values = [];
    for (var r = 0; r < nr; r++) {
      var row = [];
      for (var c = 0; c < nc; c++) {
        var x = t[r * nc + c];
        var raw = v[r * nc + c];
        row.push(isNaN(x) ? null : !log ? (norm === "row" ? x : raw) : raw > 0 ? Math.log10(raw) : hiLog - LOG_SPAN);
      }
      values.push(row);
    }
    var block = maps.rows[1] - maps.rows[0];
    z.title.textContent = "layer " + spec.layers[l] + ", head " + spec.heads[h] + ": " + nr + " x " + nc +
      " blocks of " + block + " tokens (rows: queries, columns: keys; colour: " +
      (log ? "mean weight, log scale" : norm === "row" ? "share of the row's largest block" : "mean weight") + ")";
    box.setAttribute("data-layer", String(spec.layers[l]));
    box.setAttribute("data-head", String(spec.heads[h]));
    box.setAttribute("data-bins", nr + "x" + nc);
    var size = Math.max(240, Math.min(window.innerWidth * 0.45, window.innerHeight - 220, 620));
    /** @type {FigureJson} */
    var fig = {
      name: "pooled-" + spec.layers[l] + "-" + spec.heads[h],
      title: "",
      panels: [{
        kind: "heatmap", rows: scan.ranges(maps.rows), cols: scan.ranges(maps.cols), values: values,
        cmap: "viridis", vmin: log ? hiLog - LOG_SPAN : 0, vmax: log ? hiLog : norm === "row" ? 1 : top,
        log: log, blank: "#ffffff", canvas: true, size: size, xlabel: "keys", ylabel: "queries",
        fmt: log || norm === "head" ? ".3~e" : ".3f"
      }]
    };
    var svg = window.inspectorFigures.render(fig);
    var hoverBox = z.note;
    hoverBox.textContent = "";
    z.body.textContent = "";
    z.body.appendChild(svg);
    kit.hover(svg);
    var image = svg.querySelector("image");
    if (image) {
      var pic = image;
      svg.addEventListener("mousemove", function (ev) {
        var b = pic.getBoundingClientRect();
        if (ev.clientX < b.left || ev.clientX >= b.right || ev.clientY < b.top || ev.clientY >= b.bottom) {
          return;
        }
        var rr = Math.floor(((ev.clientY - b.top) / b.height) * nr);
        var cc = Math.floor(((ev.clientX - b.left) / b.width) * nc);
        var q = [maps.rows[rr], maps.rows[rr + 1]];
        var k = [maps.cols[cc], maps.cols[cc + 1]];
        hoverBox.textContent = "queries " + q[0] + "–" + (q[1] - 1) + ": “" + scan.textOf(q[0], q[1], 90) +
          "” → keys " + k[0] + "–" + (k[1] - 1) + ": “" + scan.textOf(k[0], k[1], 90) + "”";
      });
    }
  }

  /**
   * Decode and draw one pooled-maps figure (its grid, scale choice, zoom and downloads).
   * @param {HTMLElement} figure @returns {Promise<void>}
   */
  function drawMaps(figure) {
    var node = /** @type {HTMLElement} */ (figure.querySelector("script.ins-scan-maps-data"));
    var body = /** @type {HTMLElement} */ (figure.querySelector(".ins-fig-body"));
    var hoverBox = /** @type {HTMLElement} */ (figure.querySelector(".ins-scan-hover"));
    /** @type {ScanMapsJson} */
    var spec = JSON.parse(node.textContent || "{}");
    var width = body.clientWidth || 1180;
    return Promise.all([scan.inflate(scan.fromBase64(spec.thumb.data)), scan.inflate(scan.fromBase64(spec.zoom.data))])
      .then(function (decoded) {
        var thumbs = mapSet(spec.thumb, decoded[0]);
        var maps = mapSet(spec.zoom, decoded[1]);
        var state = { norm: "log", l: -1, h: -1 };
        /** @type {SVGSVGElement | null} */
        var svg = null;
        /** @param {number} l @param {number} h */
        function open(l, h) {
          state.l = l;
          state.h = h;
          zoom(spec, maps, l, h, state.norm);
        }
        function paint() {
          var panel = pooledPanel(spec, thumbs, state.norm, Math.max(560, width - 4), open, hoverBox);
          svg = window.inspectorFigures.render({ name: "scan-pooled", title: "", panels: [] }, undefined, { placed: [panel] });
          body.textContent = "";
          body.appendChild(svg);
          kit.hover(svg);
          figure.setAttribute("data-norm", state.norm);
        }
        kit.control(figure, "Colour:", NORMS, state.norm, function (v) {
          state.norm = v;
          paint();
          var box = /** @type {HTMLElement | null} */ (document.querySelector(".ins-zoom-box"));
          if (box && !box.hidden && state.l >= 0) {
            zoom(spec, maps, state.l, state.h, state.norm);
          }
        });
        paint();
        kit.downloads(figure, "scan-pooled", function () { return svg; });
        figure.setAttribute("data-drawn", "1");
      })
      .catch(function (err) {
        console.error("inspector: the pooled maps could not be decoded: " + err);
      });
  }

  window.inspector.onReady(function () {
    var figures = document.querySelectorAll("figure.ins-scan-maps");
    return Promise.all(Array.prototype.map.call(figures, function (/** @type {HTMLElement} */ f) {
      return drawMaps(f);
    })).then(function () {});
  });
})();
