/* attention-inspector head grid: the "grid" panel kind of figures.js, and its zoom box.
 *
 * A grid panel shows every head of a stack the page embeds (inspector.js decodes it) as small
 * multiples: one bitmap, labels and a colour bar in SVG. A click on a head opens its "stack" map,
 * drawn by figures.js, in a zoom box kept in view. Runs after figure-kit.js and figures.js and
 * registers the kind in window.inspectorKit.panelKinds. No network, no eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var kit = window.inspectorKit;
  /** figures.js's renderer (it runs before this file): the zoom box draws one "stack" panel. */
  var render = window.inspectorFigures.render;

  /** @typedef {PlacedPanel} Placed */

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
    // thumbnails fill the width, up to 96 px, and keep a tall model (many layers) within
    // about two screens: 30 layers get 62 px, 64 layers 27 px
    var cell = Math.max(24, Math.min(96, Math.floor((width - left - 90) / nH) - gap, Math.floor(2000 / nL) - gap));
    var gw = nH * (cell + gap);
    var gh = nL * (cell + gap);
    var scale = kit.colorScale(p.cmap || "blues", 0, 1, ".2f");
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
      kit.el(g, "text", { x: left, y: 11, "font-size": 11, fill: "#111" },
        title + ": " + nL + " layers x " + nH + " heads, " + full[2] + " x " + full[3] + " tokens" +
        (thumbs ? " (each pixel: the largest weight of a block of tokens)" : ""));
      for (var hh = 0; hh < nH; hh++) {
        kit.el(g, "text", { x: left + hh * (cell + gap) + cell / 2, y: top - 5, "text-anchor": "middle", "font-size": 10, fill: "#333" }, "H" + meta.heads[hh]);
      }
      for (var ll = 0; ll < nL; ll++) {
        kit.el(g, "text", { x: left - 6, y: top + ll * (cell + gap) + cell / 2, dy: "0.35em", "text-anchor": "end", "font-size": 10, fill: "#333" }, "L" + meta.layers[ll]);
      }
      var image = kit.el(g, "image", { x: left, y: top, width: gw, height: gh, preserveAspectRatio: "none" });
      image.setAttributeNS(kit.XLINK, "xlink:href", url);
      var frames = kit.el(g, "g", { fill: "none", stroke: "#bbb", "stroke-width": 0.5, "shape-rendering": "crispEdges" });
      for (var l2 = 0; l2 < nL; l2++) {
        for (var h2 = 0; h2 < nH; h2++) {
          kit.el(frames, "rect", { x: left + h2 * (cell + gap) - 0.5, y: top + l2 * (cell + gap) - 0.5, width: cell + 1, height: cell + 1 });
        }
      }
      var barG = kit.el(g, "g", { transform: "translate(0," + top + ")" });
      var barH = Math.min(gh - gap, 220);
      kit.colorBar(barG, scale, barX, barH, norm === "head" ? function (v) {
        return v === 0 ? "0" : v === 1 ? "head max" : d3.format(".1f")(v) + " max";
      } : null);
      kit.el(barG, "text", { x: barX, y: barH + 16, "font-size": 9, fill: "#555" }, norm === "head" ? "each head: 0 to" : "every head:");
      kit.el(barG, "text", { x: barX, y: barH + 27, "font-size": 9, fill: "#555" }, norm === "head" ? "its own max" : "0 to 1");
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
    var z = kit.zoomBox("one head's attention, enlarged");
    var target = z.box;
    var meta = api.data.stacks[kind];
    var titleEl = z.title;
    var bodyEl = z.body;
    z.note.textContent = "";
    titleEl.textContent = (kind === "self" ? "self-attention" : kind + " attention") + ", layer " +
      meta.layers[l] + ", head " + meta.heads[h] + " (rows: queries, columns: keys; colour: " +
      (norm === "head" ? "0 to this head's largest weight" : "0 to 1") + ")";
    bodyEl.textContent = "decoding layer " + meta.layers[l] + "…";
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
      kit.hover(svg);
    });
  }

  kit.panelKinds.grid = function (p, api, opts, width) {
    return gridPanel(p, /** @type {InspectorApi} */ (api), opts.norm || p.norm || "head", width);
  };
})();
