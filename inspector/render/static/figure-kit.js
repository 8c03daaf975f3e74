/* attention-inspector figure kit: what every figure script shares, published as window.inspectorKit.
 *
 * Number formats, the d3 colour scales (scaleSequential with interpolateViridis / interpolateBlues /
 * interpolateMagma reversed, scaleDiverging with interpolateRdBu centred on 0), the SVG element
 * helper and text measuring, d3 axis styling, colour bars and legends; the page's one tooltip
 * (div.ins-tip) and the hover / click plumbing of a drawn figure; the controls above a figure and
 * its "SVG" / "PNG" downloads ("SVG" saves the serialised element; "PNG" draws that SVG on a
 * canvas). It draws no figure itself: figures.js (maps, figure assembly), scatter.js (scatter
 * plots) and head-grid.js (the every-head grid and its zoom box) do, in that order, after this
 * file; the last two register their panel kinds in `panelKinds`. No network, no eval.
 */
// @ts-check
(function () {
  "use strict";

  var d3 = window.d3;
  var NS = "http://www.w3.org/2000/svg";
  var XLINK = "http://www.w3.org/1999/xlink";
  var FONT = "Helvetica, Arial, sans-serif";
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

  /** @typedef {FigureScale} Scale @typedef {PlacedPanel} Placed */

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
    var text = label || distinct(ticks, scale.fmt);
    var axis = d3.axisRight(y).tickValues(ticks).tickSize(3)
      .tickFormat(function (d) { return text(Number(d)); });
    d3.select(el(bar, "g", { transform: "translate(10,0)" })).call(axis).call(function (s) { styleAxis(s, 9); });
  }

  /**
   * A formatter that tells every tick apart: `fmt` when its labels differ, else the fewest
   * significant digits that do (a range such as 0.1049-0.1062 needs four).
   * @param {number[]} ticks @param {(v: number) => string} fmt @returns {(v: number) => string}
   */
  function distinct(ticks, fmt) {
    /** @param {(v: number) => string} f */
    function unique(f) {
      var seen = ticks.map(f);
      return seen.every(function (t, i) { return seen.indexOf(t) === i; });
    }
    if (unique(fmt)) {
      return fmt;
    }
    for (var digits = 4; digits <= 8; digits++) {
      var f = format("." + digits + "~g");
      if (unique(f)) {
        return f;
      }
    }
    return fmt;
  }

  /** @param {SVGGElement} g @param {[string, string][]} legend @param {number} x */
  function legendBlock(g, legend, x) {
    legend.forEach(function (e, i) {
      el(g, "rect", { x: x, y: i * 14 + 1, width: 10, height: 10, fill: e[1], stroke: "#666", "stroke-width": 0.5 });
      el(g, "text", { x: x + 14, y: i * 14 + 10, "font-size": 10, fill: "#222" }, e[0]);
    });
  }

  /**
   * A panel's axis names: `xlabel` centred under a plot of `w` x `h` at `below` px under it,
   * `ylabel` turned along its left side at `x` (both in the plot's coordinates).
   * @param {SVGGElement} g @param {PanelJson} p @param {number} w @param {number} h
   * @param {number} below @param {number} x
   */
  function axisNames(g, p, w, h, below, x) {
    if (p.xlabel) {
      el(g, "text", { x: w / 2, y: h + below, "text-anchor": "middle", "font-size": 10, fill: "#444" }, p.xlabel);
    }
    if (p.ylabel) {
      el(g, "text", {
        transform: "translate(" + x + "," + h / 2 + ") rotate(-90)", dy: "0.35em",
        "text-anchor": "middle", "font-size": 10, fill: "#444"
      }, p.ylabel);
    }
  }

  /** Largest label width a tick axis needs @param {string[]} labels @param {number} fs */
  function labelRoom(labels, fs) {
    return Math.min(150, maxWidth(labels, fs));
  }

  // ------------------------------------------------------------------------------ tooltip and hover

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

  /**
   * The page's one zoom box (made on first use): a title, a Close button (Esc closes it too),
   * a body and a line for hover text; shown, labelled `label`.
   * @param {string} label @returns {{box: HTMLElement, title: HTMLElement, body: HTMLElement, note: HTMLElement}}
   */
  function zoomBox(label) {
    var box = /** @type {HTMLElement | null} */ (document.querySelector(".ins-zoom-box"));
    if (!box) {
      var made = document.createElement("div");
      made.className = "ins-zoom-box";
      made.setAttribute("role", "dialog");
      made.innerHTML = '<div class="ins-zoom-bar"><span class="ins-zoom-title"></span>' +
        '<button type="button" class="ins-zoom-close" aria-label="close the enlarged map">Close</button></div>' +
        '<div class="ins-zoom-body"></div><div class="ins-zoom-note" aria-live="polite"></div>';
      document.body.appendChild(made);
      var close = function () {
        made.hidden = true;
        hideTip();
      };
      /** @type {HTMLElement} */ (made.querySelector(".ins-zoom-close")).addEventListener("click", close);
      document.addEventListener("keydown", function (ev) {
        if (ev.key === "Escape") {
          close();
        }
      });
      box = made;
    }
    box.setAttribute("aria-label", label);
    box.hidden = false;
    /** @param {string} selector */
    var part = function (selector) { return /** @type {HTMLElement} */ (/** @type {HTMLElement} */ (box).querySelector(selector)); };
    return { box: box, title: part(".ins-zoom-title"), body: part(".ins-zoom-body"), note: part(".ins-zoom-note") };
  }

  // ------------------------------------------------------------------------------ controls and downloads

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

  /**
   * Make a figure's download buttons (button.ins-fig-save, data-format "svg" or PNG) save the SVG
   * that `current()` returns when clicked, under the button's data-filename or `name`.
   * @param {Element} figure @param {string} name @param {() => SVGSVGElement | null} current
   */
  function downloads(figure, name, current) {
    figure.querySelectorAll("button.ins-fig-save").forEach(function (button) {
      button.addEventListener("click", function () {
        var file = button.getAttribute("data-filename") || name;
        var svg = current();
        if (!svg) {
          return;
        }
        if (button.getAttribute("data-format") === "svg") {
          saveBlob(new Blob([svgSource(svg)], { type: "image/svg+xml" }), file);
        } else {
          pngBlob(svg, 2, function (blob) {
            if (blob) {
              saveBlob(blob, file);
            }
          });
        }
      });
    });
  }

  window.inspectorKit = {
    NS: NS,
    XLINK: XLINK,
    FONT: FONT,
    format: format,
    colorScale: colorScale,
    dark: dark,
    textWidth: textWidth,
    maxWidth: maxWidth,
    el: el,
    styleAxis: styleAxis,
    colorBar: colorBar,
    legendBlock: legendBlock,
    labelRoom: labelRoom,
    axisNames: axisNames,
    zoomBox: zoomBox,
    showTip: showTip,
    hideTip: hideTip,
    hover: hover,
    svgSource: svgSource,
    control: control,
    downloads: downloads,
    panelKinds: {}
  };
})();
