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
    var blob = new Blob([/** @type {BlobPart} */ (bytes)]);
    var stream = blob.stream().pipeThrough(new DecompressionStream("deflate"));
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

  /** One row explorer: the pickers, the spans list and the virtual token strip. */
  class Explorer {
    /**
     * @param {HTMLElement} root
     * @param {ExplorerData} data
     * @param {Uint8Array} values  the kept rows, (layer, head, row, key) quantised
     */
    constructor(root, data, values) {
      /** @param {string} selector */
      const find = (selector) => /** @type {HTMLElement} */ (root.querySelector(selector));
      this.data = data;
      this.values = values;
      this.shape = data.rows.shape;
      this.scale = data.rows.scale;
      this.lines = packLines(data.tokens);
      this.weights = new Float32Array(data.tokens.length);
      this.max = 0;
      this.strip = find(".ins-scan-strip");
      this.spacer = find(".ins-scan-spacer");
      this.rowSel = /** @type {HTMLSelectElement} */ (find(".ins-scan-row"));
      this.layerSel = /** @type {HTMLSelectElement} */ (find(".ins-scan-layer"));
      this.headSel = /** @type {HTMLSelectElement} */ (find(".ins-scan-head"));
      this.spans = find(".ins-scan-spans");
      this.status = find(".ins-scan-status");
      this.drawn = { first: -1, last: -1 };
      this.pending = false;
      this.fill();
      [this.rowSel, this.layerSel, this.headSel].forEach((sel) => {
        sel.addEventListener("change", () => this.update(true));
      });
      this.strip.addEventListener("scroll", () => {
        if (!this.pending) {
          this.pending = true;
          requestAnimationFrame(() => {
            this.pending = false;
            this.render(false);
          });
        }
      });
      this.strip.addEventListener("click", (ev) => {
        const target = /** @type {HTMLElement | null} */ (ev.target);
        const pos = target && target.getAttribute ? target.getAttribute("data-pos") : null;
        if (pos !== null && data.row_positions.indexOf(Number(pos)) >= 0) {
          this.rowSel.value = pos;
          this.update(true);
        }
      });
      this.spacer.style.height = (this.lines.length - 1) * LINE_HEIGHT + "px";
      this.update(true);
    }

    /** Fill the three pickers (the last kept row, the last layer, the mean of heads). */
    fill() {
      const d = this.data;
      /**
       * @param {HTMLSelectElement} sel
       * @param {string} value
       * @param {string} label
       */
      const option = (sel, value, label) => {
        const o = document.createElement("option");
        o.value = value;
        o.textContent = label;
        sel.appendChild(o);
      };
      d.row_positions.forEach((p) => option(this.rowSel, String(p), p + " " + d.tokens[p]));
      this.rowSel.value = String(d.row_positions[d.row_positions.length - 1]);
      d.layers.forEach((l, i) => option(this.layerSel, String(i), String(l)));
      this.layerSel.value = String(d.layers.length - 1);
      option(this.headSel, "mean", "mean of heads");
      option(this.headSel, "max", "max of heads");
      d.heads.forEach((h, i) => option(this.headSel, String(i), String(h)));
    }

    /** Recompute the chosen row's weight on every key (one head, or the mean / max of all). */
    compute() {
      const s = this.shape;
      const nRows = s[2];
      const nKeys = s[3];
      const r = this.data.row_positions.indexOf(Number(this.rowSel.value));
      const l = Number(this.layerSel.value);
      const which = this.headSel.value;
      const all = which === "mean" || which === "max";
      const heads = all ? s[1] : 1;
      const first = all ? 0 : Number(which);
      const out = this.weights;
      out.fill(0);
      for (let h = first; h < first + heads; h++) {
        const base = ((l * s[1] + h) * nRows + r) * nKeys;
        for (let k = 0; k < nKeys; k++) {
          const v = this.values[base + k] / this.scale;
          if (which === "max") {
            out[k] = Math.max(out[k], v);
          } else {
            out[k] += v / heads;
          }
        }
      }
      let max = 0;
      for (let j = 0; j < nKeys; j++) {
        max = Math.max(max, out[j]);
      }
      this.max = max;
    }

    /**
     * Draw the lines in view and a margin around them (all of them again when `force`).
     * @param {boolean} force
     */
    render(force) {
      const top = this.strip.scrollTop;
      const height = this.strip.clientHeight || 240;
      const nLines = this.lines.length - 1;
      const first = Math.max(0, Math.floor(top / LINE_HEIGHT) - MARGIN_LINES);
      const last = Math.min(nLines, Math.ceil((top + height) / LINE_HEIGHT) + MARGIN_LINES);
      if (!force && first === this.drawn.first && last === this.drawn.last) {
        return;
      }
      this.drawn = { first: first, last: last };
      const tokens = this.data.tokens;
      const special = this.data.special;
      const query = Number(this.rowSel.value);
      const frag = document.createDocumentFragment();
      for (let li = first; li < last; li++) {
        const line = document.createElement("div");
        line.className = "ins-scan-line";
        line.style.top = li * LINE_HEIGHT + "px";
        for (let i = this.lines[li]; i < this.lines[li + 1]; i++) {
          const chip = document.createElement("span");
          const w = this.weights[i];
          chip.className =
            "ins-scan-tok" + (special[i] ? " ins-special" : "") + (i === query ? " ins-scan-query" : "");
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
    }

    /** List the heaviest keys merged into spans of consecutive positions. */
    listSpans() {
      const w = this.weights;
      /** @type {number[]} */
      const idx = [];
      for (let k = 0; k < w.length; k++) {
        idx.push(k);
      }
      idx.sort((a, b) => w[b] - w[a] || a - b);
      const top = idx
        .slice(0, SPAN_KEYS)
        .filter((k) => w[k] > 0)
        .sort((a, b) => a - b);
      /** @type {{start: number, end: number, weight: number}[]} */
      const spans = [];
      top.forEach((k) => {
        const last = spans.length ? spans[spans.length - 1] : null;
        if (last && last.end === k) {
          last.end = k + 1;
          last.weight += w[k];
        } else {
          spans.push({ start: k, end: k + 1, weight: w[k] });
        }
      });
      spans.sort((a, b) => b.weight - a.weight);
      this.spans.textContent = "";
      spans.forEach((s) => {
        const item = document.createElement("li");
        const link = document.createElement("button");
        link.type = "button";
        link.className = "ins-scan-span";
        link.textContent =
          s.start + (s.end - s.start > 1 ? "–" + (s.end - 1) : "") + " (" + s.weight.toFixed(3) + "): ";
        const text = document.createElement("span");
        text.textContent = textOf(this.data.tokens, s.start, s.end, 120);
        item.appendChild(link);
        item.appendChild(text);
        link.addEventListener("click", () => this.scrollTo(s.start));
        this.spans.appendChild(item);
      });
    }

    /**
     * Scroll the strip to the line holding token `pos`.
     * @param {number} pos
     */
    scrollTo(pos) {
      let lo = 0;
      let hi = this.lines.length - 2;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (this.lines[mid] <= pos) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      this.strip.scrollTop = Math.max(0, lo * LINE_HEIGHT - 2 * LINE_HEIGHT);
      this.render(false);
    }

    /**
     * Recompute and redraw after a choice changed.
     * @param {boolean} jump  scroll to the chosen query position
     */
    update(jump) {
      this.compute();
      this.listSpans();
      this.render(true);
      if (jump) {
        this.scrollTo(Number(this.rowSel.value));
      }
      this.status.textContent = "largest weight " + this.max.toFixed(3);
    }
  }

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
