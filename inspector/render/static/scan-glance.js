/* attention-inspector scan page: every head at a glance, and the scan page's shared helpers.
 *
 * "profiles" panels (written by inspector/render/sections/scan_maps.py, drawn by figures.js with
 * the rest of a figure): a layer x head grid of small charts, one per head: a red bar for the
 * share of attention on the first tokens (the attention sink; full height is all of it), then
 * blue bars for the rest by query-key distance in bins that double (0, 1, 2-3, 4-7, ...), scaled
 * to their own tallest; a key chart under the grid (the mean of all heads) names the bins.
 *
 * Publishes the scan page's shared helpers as window.inspectorScan (base64 and zlib decoding,
 * which are the runtime's, inspector.js; the page's readable tokens, the text of a position range, "a–b" labels of bin edges) for
 * scan-maps.js and scan.js, which run after this file. Runs after figure-kit.js and figures.js.
 * No network, no eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var kit = window.inspectorKit;
  var SINK_COLOR = "#d62728";
  var AREA_COLOR = "#1f77b4";
  var CELL_BG = "#f3f5f8";

  /** @typedef {PlacedPanel} Placed */

  // ------------------------------------------------------------------------------ shared helpers

  /**
   * A readable token as the text it stands for: "␣" is a space, "⇥" a tab; "⏎" stays visible
   * unless `newlines` (then it is a line break).
   * @param {string} token @param {boolean} [newlines] @returns {string}
   */
  function plain(token, newlines) {
    var text = token.replace(/␣/g, " ").replace(/⇥/g, "\t");
    return newlines ? text.replace(/⏎/g, "\n") : text;
  }

  /** @type {ScanTokens | null} */
  var pageTokens = null;

  /** The page's readable tokens (script#scan-tokens). @returns {ScanTokens} */
  function tokens() {
    if (!pageTokens) {
      var node = document.getElementById("scan-tokens");
      pageTokens = node ? JSON.parse(node.textContent || "{}") : { tokens: [], special: [] };
    }
    return /** @type {ScanTokens} */ (pageTokens);
  }

  /**
   * The text of tokens start .. end-1, shortened to about `limit` characters.
   * @param {number} start @param {number} end @param {number} limit @returns {string}
   */
  function textOf(start, end, limit) {
    var list = tokens().tokens;
    var parts = [];
    var length = 0;
    for (var i = start; i < end && i < list.length; i++) {
      var t = plain(list[i], true);
      parts.push(t);
      length += t.length;
      if (length > limit) {
        parts.push(" …");
        break;
      }
    }
    return parts.join("").replace(/\s+/g, " ").trim();
  }

  /** "a–b" labels of bin edges. @param {number[]} edges @returns {string[]} */
  function ranges(edges) {
    var out = [];
    for (var i = 0; i + 1 < edges.length; i++) {
      out.push(edges[i] + "–" + (edges[i + 1] - 1));
    }
    return out;
  }

  // ------------------------------------------------------------------------------ profiles

  /**
   * Layer x head small charts of attention by distance (the "profiles" panel kind).
   * @param {PanelJson} p @param {InspectorApi | undefined} _api @param {DrawOptions} _opts
   * @param {number} width @returns {Placed}
   */
  function profilesPanel(p, _api, _opts, width) {
    var rows = p.rows || [];
    var cols = p.cols || [];
    var bins = p.bins || [];
    var prof = p.profile || [];
    var sink = p.sink || [];
    var nL = rows.length;
    var nH = cols.length;
    var nb = bins.length;
    var fs = 10;
    var gap = 4;
    var vgap = 3;
    var left = (p.ylabel ? 16 : 0) + kit.labelRoom(rows, fs) + 6;
    var top = (p.title ? 20 : 4) + fs + 6;
    var room = Math.min(width * 0.55, 760) - left;
    var cw = Math.max(30, Math.min(72, Math.floor(room / Math.max(nH, 1)) - gap));
    var ch = Math.max(12, Math.min(24, Math.floor(480 / Math.max(nL, 1)) - vgap));
    var pitch = ch + vgap;
    var rowStep = Math.max(1, Math.ceil((fs + 3) / pitch));
    var colStep = Math.max(1, Math.ceil((kit.maxWidth(cols, fs) + 4) / (cw + gap)));
    var gw = nH * (cw + gap) - gap;
    var gh = nL * pitch - vgap;
    /** the key chart: the mean of all heads, with every bin named */
    var keyW = Math.max(gw, (nb + 1) * 16);
    var keyH = 36;
    var keyLabels = [String(p.sink_label || "sink")].concat(bins);
    var keyLabelH = kit.maxWidth(keyLabels, 9) + 6;
    var keyTop = top + gh + (p.xlabel ? 26 : 12);
    var w = Math.max(left + Math.max(gw, keyW) + 8, left + kit.textWidth(p.title || "", 11) + 4);
    var h = keyTop + 14 + keyH + keyLabelH + 4;
    var mean = [0].concat(bins.map(function () { return 0; }));
    for (var l = 0; l < nL; l++) {
      for (var hh = 0; hh < nH; hh++) {
        mean[0] += (sink[l][hh] || 0) / (nL * nH);
        for (var b = 0; b < nb; b++) {
          mean[b + 1] += (prof[l][hh][b] || 0) / (nL * nH);
        }
      }
    }

    /**
     * One chart: the sink bar (its height the share itself: full height is all attention), then
     * the distance bins, scaled to the tallest of them (their shape is what tells heads apart).
     * @param {SVGGElement} g @param {number} x @param {number} y @param {number} cw2
     * @param {number} ch2 @param {number[]} v  sink share, then the bins
     */
    function chart(g, x, y, cw2, ch2, v) {
      var top2 = Math.max.apply(null, v.slice(1).concat([1e-9]));
      var bw = (cw2 - 3) / (v.length + 0.5);
      kit.el(g, "rect", { x: x, y: y, width: cw2, height: ch2, fill: CELL_BG });
      var sh = Math.min(1, v[0]) * (ch2 - 1);
      kit.el(g, "rect", { x: x + 1, y: y + ch2 - sh, width: Math.max(1, bw - 0.5), height: sh, fill: SINK_COLOR });
      var x0 = x + 1 + 1.5 * bw;
      var d = "M" + x0 + "," + (y + ch2);
      for (var i = 1; i < v.length; i++) {
        var yy = y + ch2 - (v[i] / top2) * (ch2 - 1);
        d += "L" + (x0 + (i - 1) * bw) + "," + yy + "L" + (x0 + i * bw) + "," + yy;
      }
      d += "L" + (x0 + (v.length - 1) * bw) + "," + (y + ch2) + "Z";
      kit.el(g, "path", { d: d, fill: AREA_COLOR, "fill-opacity": 0.85 });
    }

    /** @param {SVGGElement} g */
    function draw(g) {
      if (p.title) {
        kit.el(g, "text", { x: left, y: 13, "font-size": 11, fill: "#111" }, p.title);
      }
      var grid = kit.el(g, "g", { transform: "translate(" + left + "," + top + ")" });
      for (var j = 0; j < nH; j += colStep) {
        kit.el(grid, "text", { x: j * (cw + gap) + cw / 2, y: -5, "text-anchor": "middle", "font-size": fs, fill: "#333" }, cols[j]);
      }
      for (var i = 0; i < nL; i++) {
        if (i % rowStep === 0) {
          kit.el(grid, "text", { x: -5, y: i * pitch + ch / 2, dy: "0.35em", "text-anchor": "end", "font-size": fs, fill: "#333" }, rows[i]);
        }
        for (var j2 = 0; j2 < nH; j2++) {
          chart(grid, j2 * (cw + gap), i * pitch, cw, ch, [sink[i][j2] || 0].concat(prof[i][j2]));
        }
      }
      kit.axisNames(grid, p, gw, gh, 14, 8 - left);
      var key = kit.el(g, "g", { transform: "translate(" + left + "," + keyTop + ")" });
      kit.el(key, "text", { x: 0, y: 10, "font-size": 10, fill: "#444" }, "key: the mean of all heads; left to right: " + keyLabels[0] + " tokens, then distance 0, 1, 2–3, …");
      chart(key, 0, 14, keyW, keyH, mean);
      var bw = (keyW - 3) / (mean.length + 0.5);
      keyLabels.forEach(function (text, k) {
        var cx = 1 + (k === 0 ? 0.5 * bw : (k + 0.5) * bw + 0.5 * bw);
        kit.el(key, "text", {
          transform: "translate(" + cx + "," + (14 + keyH + 4) + ") rotate(-90)", dy: "0.35em",
          "text-anchor": "end", "font-size": 9, fill: k === 0 ? SINK_COLOR : "#333"
        }, text);
      });
    }

    /** @param {number} px @param {number} py */
    function hit(px, py) {
      var j = Math.floor((px - left) / (cw + gap));
      var i = Math.floor((py - top) / pitch);
      if (px < left || py < top || i >= nL || j >= nH || px - left - j * (cw + gap) > cw) {
        return null;
      }
      var f = d3.format(".3f");
      var lines = ["layer " + rows[i] + ", head " + cols[j], (p.sink_label || "sink") + " tokens: " + f(sink[i][j])];
      bins.forEach(function (name, b) {
        lines.push("distance " + name + ": " + f(prof[i][j][b]));
      });
      return lines.join("\n");
    }
    return { w: Math.ceil(w), h: Math.ceil(h), draw: draw, hit: hit };
  }

  kit.panelKinds.profiles = profilesPanel;
  window.inspectorScan = {
    fromBase64: window.inspector.bytesFromBase64, inflate: window.inspector.inflate,
    plain: plain, tokens: tokens, textOf: textOf, ranges: ranges
  };
})();
