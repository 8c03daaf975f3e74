/* attention-inspector scan page: the row explorer and the text behind pooled-map blocks.
 *
 * Row explorer (div[data-scan-explorer]): its JSON (script.ins-scan-data, written by
 * inspector/render/sections/scan.py) holds the readable tokens, the kept query positions and
 * their exact rows, (layer, head, row, key) quantised to uint8 and zlib-compressed. Choosing a
 * position, a layer and a head (or the mean / max over heads) colours the text by that row and
 * lists its heaviest spans. The token strip is virtual: tokens are packed into fixed-height
 * lines once, and only the lines in view (plus a margin) exist in the DOM, so 8,000 tokens cost
 * a few hundred elements.
 *
 * Pooled maps (figure[data-figure^="scan-pooled-"], drawn by figures.js as one bitmap per
 * head): hovering a block shows the text of its query and key position ranges under the figure.
 * No network, no eval; everything is decoded from the page itself.
 */
(function () {
  "use strict";

  var LINE_HEIGHT = 22;
  var LINE_CHARS = 96;
  var MARGIN_LINES = 8;
  var SPAN_KEYS = 8;

  /**
   * @typedef {{shape: number[], scale: number, data: string}} EncodedRows
   * @typedef {{tokens: string[], special: boolean[]}} PageTokens
   * @typedef {{row_positions: number[], layers: number[], heads: number[], rows: EncodedRows,
   *   tokens: string[], special: boolean[]}} ExplorerData
   */

  /** @type {PageTokens} */
  var page = { tokens: [], special: [] };

  /**
   * Bytes of a base64 string.
   * @param {string} text
   * @returns {Uint8Array}
   */
  function fromBase64(text) {
    var raw = atob(text);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      out[i] = raw.charCodeAt(i);
    }
    return out;
  }

  /**
   * Inflate zlib bytes with the browser's DecompressionStream.
   * @param {Uint8Array} bytes
   * @returns {Promise<Uint8Array>}
   */
  function inflate(bytes) {
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buf) {
      return new Uint8Array(buf);
    });
  }

  /**
   * A token as text (visible whitespace marks turned back into spaces and newlines).
   * @param {string} token
   * @returns {string}
   */
  function plain(token) {
    return token.replace(/␣/g, " ").replace(/⏎/g, "\n").replace(/⇥/g, "\t");
  }

  /**
   * The text of tokens start .. end-1, shortened to about `limit` characters.
   * @param {string[]} tokens
   * @param {number} start
   * @param {number} end
   * @param {number} limit
   * @returns {string}
   */
  function textOf(tokens, start, end, limit) {
    var parts = [];
    var length = 0;
    for (var i = start; i < end && i < tokens.length; i++) {
      var t = plain(tokens[i]);
      parts.push(t);
      length += t.length;
      if (length > limit) {
        parts.push(" …");
        break;
      }
    }
    return parts.join("").replace(/\s+/g, " ").trim();
  }

  /**
   * Background colour of a weight relative to the row's largest one (white to red).
   * @param {number} t  a value in [0, 1]
   * @returns {string}
   */
  function shade(t) {
    var a = Math.sqrt(Math.max(0, Math.min(1, t)));
    var g = Math.round(255 - a * (255 - 60));
    var b = Math.round(255 - a * (255 - 50));
    return "rgb(255," + g + "," + b + ")";
  }

  /**
   * Pack tokens into lines of about LINE_CHARS characters (a newline token ends a line).
   * @param {string[]} tokens
   * @returns {number[]} the first token of every line, then tokens.length
   */
  function packLines(tokens) {
    var starts = [0];
    var width = 0;
    for (var i = 0; i < tokens.length; i++) {
      var w = Math.max(1, tokens[i].length) + 1;
      if (width > 0 && width + w > LINE_CHARS) {
        starts.push(i);
        width = 0;
      }
      width += w;
      if (tokens[i].indexOf("⏎") >= 0 && i + 1 < tokens.length) {
        starts.push(i + 1);
        width = 0;
      }
    }
    starts.push(tokens.length);
    return starts;
  }

  /**
   * One row explorer.
   * @param {HTMLElement} root
   * @param {ExplorerData} data
   * @param {Uint8Array} values
   */
  function Explorer(root, data, values) {
    this.root = root;
    this.data = data;
    this.values = values;
    this.shape = data.rows.shape;
    this.scale = data.rows.scale;
    this.lines = packLines(data.tokens);
    this.weights = new Float32Array(data.tokens.length);
    this.strip = /** @type {HTMLElement} */ (root.querySelector(".ins-scan-strip"));
    this.spacer = /** @type {HTMLElement} */ (root.querySelector(".ins-scan-spacer"));
    this.rowSel = /** @type {HTMLSelectElement} */ (root.querySelector(".ins-scan-row"));
    this.layerSel = /** @type {HTMLSelectElement} */ (root.querySelector(".ins-scan-layer"));
    this.headSel = /** @type {HTMLSelectElement} */ (root.querySelector(".ins-scan-head"));
    this.spans = /** @type {HTMLElement} */ (root.querySelector(".ins-scan-spans"));
    this.status = /** @type {HTMLElement} */ (root.querySelector(".ins-scan-status"));
    this.drawn = { first: -1, last: -1 };
    this.pending = false;
    this.fill();
    var self = this;
    [this.rowSel, this.layerSel, this.headSel].forEach(function (sel) {
      sel.addEventListener("change", function () {
        self.update(true);
      });
    });
    this.strip.addEventListener("scroll", function () {
      if (!self.pending) {
        self.pending = true;
        requestAnimationFrame(function () {
          self.pending = false;
          self.render(false);
        });
      }
    });
    this.strip.addEventListener("click", function (ev) {
      var target = /** @type {HTMLElement} */ (ev.target);
      var pos = target && target.getAttribute ? target.getAttribute("data-pos") : null;
      if (pos !== null && data.row_positions.indexOf(Number(pos)) >= 0) {
        self.rowSel.value = pos;
        self.update(true);
      }
    });
    this.spacer.style.height = (this.lines.length - 1) * LINE_HEIGHT + "px";
    this.update(true);
  }

  Explorer.prototype.fill = function () {
    var d = this.data;
    var option = function (/** @type {HTMLSelectElement} */ sel, /** @type {string} */ value, /** @type {string} */ label) {
      var o = document.createElement("option");
      o.value = value;
      o.textContent = label;
      sel.appendChild(o);
    };
    d.row_positions.forEach(function (p) {
      option(this.rowSel, String(p), p + " " + d.tokens[p]);
    }, this);
    this.rowSel.value = String(d.row_positions[d.row_positions.length - 1]);
    d.layers.forEach(function (l, i) {
      option(this.layerSel, String(i), String(l));
    }, this);
    this.layerSel.value = String(d.layers.length - 1);
    option(this.headSel, "mean", "mean of heads");
    option(this.headSel, "max", "max of heads");
    d.heads.forEach(function (h, i) {
      option(this.headSel, String(i), String(h));
    }, this);
  };

  /** Recompute the chosen row's weights (per key). */
  Explorer.prototype.compute = function () {
    var s = this.shape;
    var nRows = s[2];
    var nKeys = s[3];
    var r = this.data.row_positions.indexOf(Number(this.rowSel.value));
    var l = Number(this.layerSel.value);
    var which = this.headSel.value;
    var heads = which === "mean" || which === "max" ? s[1] : 1;
    var first = which === "mean" || which === "max" ? 0 : Number(which);
    var out = this.weights;
    out.fill(0);
    for (var h = first; h < first + heads; h++) {
      var base = ((l * s[1] + h) * nRows + r) * nKeys;
      for (var k = 0; k < nKeys; k++) {
        var v = this.values[base + k] / this.scale;
        if (which === "max") {
          if (v > out[k]) {
            out[k] = v;
          }
        } else {
          out[k] += v / heads;
        }
      }
    }
    var max = 0;
    for (var j = 0; j < nKeys; j++) {
      if (out[j] > max) {
        max = out[j];
      }
    }
    this.max = max;
  };

  /**
   * Draw the lines in view (all of them again when `force`).
   * @param {boolean} force
   */
  Explorer.prototype.render = function (force) {
    var top = this.strip.scrollTop;
    var height = this.strip.clientHeight || 240;
    var nLines = this.lines.length - 1;
    var first = Math.max(0, Math.floor(top / LINE_HEIGHT) - MARGIN_LINES);
    var last = Math.min(nLines, Math.ceil((top + height) / LINE_HEIGHT) + MARGIN_LINES);
    if (!force && first === this.drawn.first && last === this.drawn.last) {
      return;
    }
    this.drawn = { first: first, last: last };
    var tokens = this.data.tokens;
    var special = this.data.special;
    var query = Number(this.rowSel.value);
    var frag = document.createDocumentFragment();
    for (var li = first; li < last; li++) {
      var line = document.createElement("div");
      line.className = "ins-scan-line";
      line.style.top = li * LINE_HEIGHT + "px";
      for (var i = this.lines[li]; i < this.lines[li + 1]; i++) {
        var chip = document.createElement("span");
        var w = this.weights[i];
        chip.className = "ins-scan-tok" + (special[i] ? " ins-special" : "") + (i === query ? " ins-scan-query" : "");
        chip.textContent = tokens[i];
        chip.setAttribute("data-pos", String(i));
        chip.title = i + " " + tokens[i] + ": " + w.toFixed(4);
        if (this.max > 0 && w > 0) {
          chip.style.background = shade(w / this.max);
        }
        line.appendChild(chip);
      }
      frag.appendChild(line);
    }
    this.spacer.textContent = "";
    this.spacer.appendChild(frag);
  };

  /** The heaviest keys merged into spans of consecutive positions. */
  Explorer.prototype.listSpans = function () {
    var w = this.weights;
    var idx = [];
    for (var k = 0; k < w.length; k++) {
      idx.push(k);
    }
    idx.sort(function (a, b) {
      return w[b] - w[a] || a - b;
    });
    var top = idx.slice(0, SPAN_KEYS).filter(function (k) {
      return w[k] > 0;
    }).sort(function (a, b) {
      return a - b;
    });
    /** @type {{start: number, end: number, weight: number}[]} */
    var spans = [];
    top.forEach(function (k) {
      var last = spans[spans.length - 1];
      if (last && last.end === k) {
        last.end = k + 1;
        last.weight += w[k];
      } else {
        spans.push({ start: k, end: k + 1, weight: w[k] });
      }
    });
    spans.sort(function (a, b) {
      return b.weight - a.weight;
    });
    this.spans.textContent = "";
    var self = this;
    spans.forEach(function (s) {
      var item = document.createElement("li");
      var link = document.createElement("button");
      link.type = "button";
      link.className = "ins-scan-span";
      link.textContent = s.start + (s.end - s.start > 1 ? "–" + (s.end - 1) : "") + " (" + s.weight.toFixed(3) + "): ";
      var text = document.createElement("span");
      text.textContent = textOf(self.data.tokens, s.start, s.end, 120);
      item.appendChild(link);
      item.appendChild(text);
      link.addEventListener("click", function () {
        self.scrollTo(s.start);
      });
      self.spans.appendChild(item);
    });
  };

  /**
   * Scroll the strip to the line holding token `pos`.
   * @param {number} pos
   */
  Explorer.prototype.scrollTo = function (pos) {
    var lo = 0;
    var hi = this.lines.length - 2;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (this.lines[mid] <= pos) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    this.strip.scrollTop = Math.max(0, lo * LINE_HEIGHT - 2 * LINE_HEIGHT);
    this.render(false);
  };

  /**
   * Recompute and redraw after a choice changed.
   * @param {boolean} jump  scroll to the chosen query position
   */
  Explorer.prototype.update = function (jump) {
    this.compute();
    this.listSpans();
    this.render(true);
    if (jump) {
      this.scrollTo(Number(this.rowSel.value));
    }
    this.status.textContent = "largest weight " + (this.max || 0).toFixed(3);
  };

  /**
   * Start one explorer from its JSON.
   * @param {HTMLElement} root
   */
  function startExplorer(root) {
    var script = root.querySelector("script.ins-scan-data");
    if (!script) {
      return;
    }
    /** @type {ExplorerData} */
    var data = JSON.parse(script.textContent || "{}");
    data.tokens = page.tokens;
    data.special = page.special;
    inflate(fromBase64(data.rows.data))
      .then(function (values) {
        new Explorer(root, data, values);
        root.setAttribute("data-scan-drawn", "1");
      })
      .catch(function (err) {
        console.error("inspector: the scan rows could not be decoded: " + err);
      });
  }

  /**
   * Show the text behind a pooled-map block while hovering it.
   * @param {HTMLElement} figure
   */
  function hoverText(figure) {
    var spec = figure.querySelector("script.ins-fig-data");
    if (!spec) {
      return;
    }
    var panels = JSON.parse(spec.textContent || "{}").panels || [];
    var box = document.createElement("div");
    box.className = "ins-scan-hover";
    box.setAttribute("aria-live", "polite");
    figure.appendChild(box);
    figure.addEventListener("mousemove", function (ev) {
      var images = figure.querySelectorAll("svg image");
      for (var i = 0; i < images.length && i < panels.length; i++) {
        var r = images[i].getBoundingClientRect();
        if (ev.clientX < r.left || ev.clientX >= r.right || ev.clientY < r.top || ev.clientY >= r.bottom) {
          continue;
        }
        var p = panels[i];
        var row = Math.floor(((ev.clientY - r.top) / r.height) * p.rows.length);
        var col = Math.floor(((ev.clientX - r.left) / r.width) * p.cols.length);
        var qr = String(p.rows[row]).split("–").map(Number);
        var kr = String(p.cols[col]).split("–").map(Number);
        var tokens = page.tokens;
        box.textContent =
          p.title + "  queries " + p.rows[row] + ": “" + textOf(tokens, qr[0], qr[1] + 1, 90) +
          "”  →  keys " + p.cols[col] + ": “" + textOf(tokens, kr[0], kr[1] + 1, 90) + "”";
        return;
      }
    });
  }

  function start() {
    var tokens = document.getElementById("scan-tokens");
    if (tokens) {
      page = JSON.parse(tokens.textContent || "{}");
    }
    document.querySelectorAll("[data-scan-explorer]").forEach(function (root) {
      startExplorer(/** @type {HTMLElement} */ (root));
    });
    document.querySelectorAll('figure[data-figure^="scan-pooled-"]').forEach(function (fig) {
      hoverText(/** @type {HTMLElement} */ (fig));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
