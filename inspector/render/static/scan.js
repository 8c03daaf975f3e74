/* attention-inspector scan page: the row explorer.
 *
 * Row explorer (div[data-scan-explorer]): its JSON (script.ins-scan-data, written by
 * inspector/render/sections/scan.py) holds the kept query positions and their exact rows,
 * (layer, head, row, key) quantised to uint8 and zlib-compressed; the readable tokens are the
 * page's (script#scan-tokens). Choosing a position, a layer and a head (or the mean / max over
 * heads) colours the text by that row and lists its heaviest spans. The text reads as text:
 * word pieces are joined without gaps ("␣" is a space; "⏎" stays visible and ends its line).
 * The token strip is virtual: tokens are packed into fixed-height lines once, and only the lines
 * in view (plus a margin) exist in the DOM, so 8,000 tokens cost a few hundred elements.
 * Decoding helpers and the tokens come from scan-glance.js (window.inspectorScan); scan-maps.js
 * draws the pooled maps. No network, no eval; everything is decoded from the page itself.
 */
// @ts-check
(function () {
  "use strict";

  var LINE_HEIGHT = 22;
  var LINE_CHARS = 110;
  var MARGIN_LINES = 8;
  var SPAN_KEYS = 8;
  var scan = window.inspectorScan;

  /**
   * @typedef {{shape: number[], scale: number, data: string}} EncodedRows
   * @typedef {{row_positions: number[], layers: number[], heads: number[], rows: EncodedRows,
   *   tokens: string[], special: boolean[]}} ExplorerData
   */

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
   * Pack tokens into lines of at most LINE_CHARS characters, breaking before a word (a token
   * starting with a space) where the line has one, so words stay whole; a newline token ends
   * its line.
   * @param {string[]} tokens
   * @returns {number[]} the first token of every line, then tokens.length
   */
  function packLines(tokens) {
    var starts = [0];
    var width = 0;
    var word = -1;  // the last token of the line that starts a word
    for (var i = 0; i < tokens.length; i++) {
      var w = Math.max(1, tokens[i].length);
      if (width > 0 && width + w > LINE_CHARS) {
        var at = word > starts[starts.length - 1] ? word : i;
        starts.push(at);
        width = 0;
        for (var k = at; k < i; k++) {
          width += Math.max(1, tokens[k].length);
        }
        word = -1;
      }
      if (tokens[i].charAt(0) === "␣") {
        word = i;
      }
      width += w;
      if (tokens[i].indexOf("⏎") >= 0 && i + 1 < tokens.length) {
        starts.push(i + 1);
        width = 0;
        word = -1;
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
      d.row_positions.forEach((p) => option(this.rowSel, String(p), p + ": “" + scan.plain(d.tokens[p]) + "”"));
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
          chip.textContent = scan.plain(tokens[i]);
          chip.setAttribute("data-pos", String(i));
          chip.title = i + " “" + scan.plain(tokens[i]) + "”: " + w.toFixed(4);
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
        text.textContent = scan.textOf(s.start, s.end, 120);
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
    data.tokens = scan.tokens().tokens;
    data.special = scan.tokens().special;
    scan.inflate(scan.fromBase64(data.rows.data))
      .then(function (values) {
        new Explorer(root, data, values);
        root.setAttribute("data-scan-drawn", "1");
      })
      .catch(function (err) {
        console.error("inspector: the scan rows could not be decoded: " + err);
      });
  }

  function start() {
    document.querySelectorAll("[data-scan-explorer]").forEach(function (root) {
      startExplorer(/** @type {HTMLElement} */ (root));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
