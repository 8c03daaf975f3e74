/* attention-inspector page runtime (no network, no eval).
 *
 * 1. A tiny require.js shim. bertviz's scripts run unchanged: each calls
 *    requirejs(['jquery', 'd3'], callback) once; the shim files the callback under the view kind
 *    announced just before by inspector.expectScript(kind), and calls it once per view. bertviz
 *    gets a jQuery and a d3 *scoped to its container*: its "#ROOT #vis" / "#layer" / "#filter"
 *    lookups read the container's data-bv elements, so two views never share an element id; its
 *    d3.schemeCategory10 is one distinct colour per head (bertviz repeats colours after 10); and
 *    the page wraps each bertviz script so that its console.log calls are dropped.
 * 2. The attention embedded in #inspector-data is decoded layer by layer (base64 -> inflate ->
 *    typed array of quantised weights): small stacks at once, big ones ("eager": false) when a
 *    view needs a layer, keeping at most CACHE_BYTES of decoded layers.
 * 3. Views over their drawing budget ("window" in their spec, set by Python) draw a window of
 *    tokens that the reader moves with the controls next to the view.
 * 4. Hooks registered with inspector.onReady(fn) run once the eager data is decoded (figures.js,
 *    report.js), then the views are drawn; then <html data-inspector-drawn> is set.
 */
// @ts-check
(function () {
  "use strict";

  /** Decoded bytes of big stacks kept in memory at once (least recently used are dropped). */
  var CACHE_BYTES = 512e6;

  /** @type {Record<string, (this: Window, $: any, d3: any) => void>} */
  var callbacks = {};
  /** @type {string | null} */
  var expecting = null;
  /** @type {Array<(api: InspectorApi) => void | Promise<void>>} */
  var readyHooks = [];
  /** @type {Record<string, Tensor>} */
  var stacks = {};
  /** @type {Record<string, Tensor>} */
  var thumbs = {};
  /** @type {Record<string, {queries: Tensor, keys: Tensor}>} */
  var vectors = {};
  var dataNode = document.getElementById("inspector-data");
  /** @type {PageJson} */
  var data = JSON.parse(dataNode ? dataNode.textContent || "{}" : "{}");
  var cacheUse = { bytes: 0, tick: 0 };

  /**
   * @param {unknown} deps
   * @param {(this: Window, $: any, d3: any) => void} callback
   */
  function requirejs(deps, callback) {
    if (expecting === null) {
      throw new Error("inspector: requirejs() called outside a bertviz script");
    }
    callbacks[expecting] = callback;
    expecting = null;
  }
  requirejs.config = function () {};
  /** @type {any} */ (window).requirejs = requirejs;
  /** @type {any} */ (window).require = requirejs;

  /** @param {string} text */
  function bytesFromBase64(text) {
    var bin = atob(text);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out;
  }

  /** @param {Uint8Array} bytes @returns {Promise<ArrayBuffer>} */
  function inflate(bytes) {
    var stream = new Blob([/** @type {Uint8Array<ArrayBuffer>} */ (bytes)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }

  /** @param {number} h */
  function halfToFloat(h) {
    var s = h & 0x8000 ? -1 : 1;
    var e = (h >> 10) & 0x1f;
    var f = h & 0x03ff;
    if (e === 0) {
      return s * Math.pow(2, -14) * (f / 1024);
    }
    if (e === 31) {
      return f ? NaN : s * Infinity;
    }
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }

  /**
   * @param {ArrayBuffer} buf
   * @param {string} dtype
   * @returns {Uint8Array | Uint16Array | Float32Array}
   */
  function typed(buf, dtype) {
    if (dtype === "uint8") {
      return new Uint8Array(buf);
    }
    if (dtype === "uint16") {
      return new Uint16Array(buf); // little-endian, like every browser
    }
    if (dtype === "float16") {
      var halves = new Uint16Array(buf);
      var values = new Float32Array(halves.length);
      for (var i = 0; i < halves.length; i++) {
        values[i] = halfToFloat(halves[i]);
      }
      return values;
    }
    throw new Error("inspector: unknown dtype " + dtype);
  }

  /**
   * A (layer, head, row, col) array embedded in the page, decoded one layer at a time.
   * get() reads a decoded layer (load() it first); values are floats (quantised / scale).
   */
  class Tensor {
    /** @param {EncodedArray} meta */
    constructor(meta) {
      this.meta = meta;
      /** @type {number[]} */
      this.shape = meta.shape;
      this.scale = meta.scale || 1;
      this.layerSize = meta.shape.slice(1).reduce(function (a, b) { return a * b; }, 1);
      this.headSize = this.shape[2] * this.shape[3];
      /** @type {Array<Uint8Array | Uint16Array | Float32Array | null>} */
      this.layers = new Array(this.shape[0]).fill(null);
      /** @type {number[]} */
      this.used = [];
      this.big = meta.eager === false;
    }

    /** @param {number} l */
    loaded(l) {
      return this.layers[l] !== null;
    }

    /** Decode the layers at positions `wanted` (all when omitted). @param {number[]} [wanted] */
    load(wanted) {
      var self = this;
      var list = wanted || this.layers.map(function (_, i) { return i; });
      var todo = list.filter(function (l) { return !self.loaded(l); });
      var chain = Promise.resolve();
      if (this.meta.chunks) {
        var chunks = this.meta.chunks;
        todo.forEach(function (l) {
          chain = chain.then(function () {
            return inflate(bytesFromBase64(chunks[l])).then(function (buf) {
              self.keep(l, typed(buf, self.meta.dtype));
            });
          });
        });
      } else if (todo.length && this.meta.data) {
        chain = inflate(bytesFromBase64(this.meta.data)).then(function (buf) {
          var all = typed(buf, self.meta.dtype);
          for (var l = 0; l < self.shape[0]; l++) {
            self.layers[l] = all.subarray(l * self.layerSize, (l + 1) * self.layerSize);
          }
        });
      }
      return chain.then(function () {
        list.forEach(function (l) { self.used[l] = ++cacheUse.tick; });
      });
    }

    /** @param {number} l @param {Uint8Array | Uint16Array | Float32Array} values */
    keep(l, values) {
      this.layers[l] = values;
      this.used[l] = ++cacheUse.tick;
      if (!this.big) {
        return;
      }
      cacheUse.bytes += values.byteLength;
      while (cacheUse.bytes > CACHE_BYTES) {
        var oldest = -1;
        for (var i = 0; i < this.layers.length; i++) {
          if (i !== l && this.layers[i] && (oldest < 0 || this.used[i] < this.used[oldest])) {
            oldest = i;
          }
        }
        if (oldest < 0) {
          break;
        }
        cacheUse.bytes -= /** @type {ArrayBufferView} */ (this.layers[oldest]).byteLength;
        this.layers[oldest] = null;
      }
    }

    /** @param {number} l @param {number} h @param {number} q @param {number} k */
    get(l, h, q, k) {
      var layer = this.layers[l];
      if (!layer) {
        throw new Error("inspector: layer " + l + " is not decoded");
      }
      return layer[(h * this.shape[2] + q) * this.shape[3] + k] / this.scale;
    }

    /**
     * One head's quantised map (rows x cols, row-major) and the scale to divide it by.
     * @param {number} l @param {number} h
     */
    head(l, h) {
      var layer = this.layers[l];
      if (!layer) {
        throw new Error("inspector: layer " + l + " is not decoded");
      }
      return { values: layer.subarray(h * this.headSize, (h + 1) * this.headSize), scale: this.scale };
    }

    /**
     * bertviz's nested arrays: [layer][head][row][col] for the given positions and ranges.
     * @param {number[]} layers @param {number[]} heads @param {number[]} rows @param {number[]} cols
     * @returns {Promise<number[][][][]>}
     */
    block(layers, heads, rows, cols) {
      var self = this;
      /** @type {number[][][][]} */
      var out = [];
      var chain = Promise.resolve();
      layers.forEach(function (l) {
        chain = chain.then(function () {
          return self.load([l]).then(function () {
            out.push(heads.map(function (h) {
              /** @type {number[][]} */
              var m = [];
              for (var q = rows[0]; q < rows[1]; q++) {
                var row = new Array(cols[1] - cols[0]);
                for (var k = cols[0]; k < cols[1]; k++) {
                  row[k - cols[0]] = self.get(l, h, q, k);
                }
                m.push(row);
              }
              return m;
            }));
          });
        });
      });
      return chain.then(function () { return out; });
    }
  }

  /** @param {number} n @returns {number[]} */
  function range(n) {
    var out = [];
    for (var i = 0; i < n; i++) {
      out.push(i);
    }
    return out;
  }

  /** One colour per head: d3's category10 up to 10 heads, then evenly spaced distinct hues. */
  /** @param {number} n @returns {string[]} */
  function headColors(n) {
    var d3 = window.d3;
    if (n <= 10) {
      return d3.schemeCategory10.slice();
    }
    var extra = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
      "#31a354", "#756bb1", "#636363"];
    if (n <= 20) {
      return d3.schemeCategory10.concat(extra);
    }
    return d3.quantize(function (t) { return d3.interpolateRainbow(t * 0.92); }, n);
  }

  var SCOPED = /#(vis|layer|filter|att_head)(?![\w-])/g;

  /** A selector of bertviz's with its container ids read as data-bv attributes. @param {any} sel */
  function scoped(sel) {
    return typeof sel === "string" ? sel.replace(SCOPED, '[data-bv="$1"]') : sel;
  }

  /** The jQuery and d3 bertviz gets: selectors scoped, one colour per head. @param {number} nColors */
  function bertvizLibs(nColors) {
    var jq = window.jQuery;
    /** @param {any} sel @param {any} [ctx] */
    var $ = function (sel, ctx) { return jq(scoped(sel), ctx); };
    var d3 = Object.create(window.d3);
    d3.select = function (/** @type {any} */ sel) { return window.d3.select(scoped(sel)); };
    d3.selectAll = function (/** @type {any} */ sel) { return window.d3.selectAll(scoped(sel)); };
    d3.schemeCategory10 = headColors(nColors);
    return { $: $, d3: d3 };
  }

  /** The block of a view part inside its window. @param {ViewPart} part @param {ViewSpec} spec */
  function windowed(part, spec) {
    if (!spec.window) {
      return { rows: part.rows, cols: part.cols, left: part.left_text, right: part.right_text };
    }
    var size = spec.window.size;
    var start = spec.windowStart || 0;
    /** @param {number[]} r */
    function cut(r) {
      var len = r[1] - r[0];
      var a = Math.max(0, Math.min(start, len - size));
      return [r[0] + a, r[0] + Math.min(len, a + size)];
    }
    var rows = cut(part.rows);
    var cols = cut(part.cols);
    return {
      rows: rows,
      cols: cols,
      left: part.left_text.slice(rows[0] - part.rows[0], rows[1] - part.rows[0]),
      right: part.right_text.slice(cols[0] - part.cols[0], cols[1] - part.cols[0])
    };
  }

  /** @param {ViewSpec} spec @returns {Promise<any>} */
  function attentionFor(spec) {
    var entries = /** @type {any[]} */ ([]);
    var chain = Promise.resolve();
    spec.parts.forEach(function (part, i) {
      chain = chain.then(function () {
        var st = stacks[part.stack];
        var heads = spec.head_positions || range(st.shape[1]);
        var w = windowed(part, spec);
        return st.block(spec.layer_positions, heads, w.rows, w.cols).then(function (attn) {
          /** @type {any} */
          var entry = { name: part.name, attn: attn, left_text: w.left, right_text: w.right };
          var vec = vectors[spec.id];
          if (vec) {
            return Promise.all([
              vec.queries.block(spec.layer_positions, heads, w.rows, [0, vec.queries.shape[3]]),
              vec.keys.block(spec.layer_positions, heads, w.cols, [0, vec.keys.shape[3]])
            ]).then(function (qk) {
              entry.queries = qk[0];
              entry.keys = qk[1];
              entries[i] = entry;
            });
          }
          entries[i] = entry;
          return undefined;
        });
      });
    });
    return chain.then(function () {
      if (spec.kind !== "neuron") {
        return entries;
      }
      /** @type {Record<string, any>} */
      var keyed = {};
      entries.forEach(function (entry, i) {
        keyed[spec.parts[i].key] = entry;
      });
      return keyed;
    });
  }

  /** Clear what an earlier draw of the view added (bertviz appends options and handlers). */
  /** @param {HTMLElement} root */
  function reset(root) {
    var jq = window.jQuery;
    jq(root).find("select").off("change");
    jq(root).find('select[data-bv="layer"], select[data-bv="att_head"]').empty();
    jq(root).find('[data-bv="vis"]').empty();
  }

  /** @param {ViewSpec} spec @returns {Promise<void>} */
  function draw(spec) {
    var root = document.getElementById(spec.id);
    if (!root) {
      return Promise.resolve();
    }
    var el = root;
    el.setAttribute("aria-busy", "true");
    return attentionFor(spec)
      .then(function (attention) {
        var layerSelect = /** @type {HTMLSelectElement | null} */ (el.querySelector('select[data-bv="layer"]'));
        var filterSelect = /** @type {HTMLSelectElement | null} */ (el.querySelector('select[data-bv="filter"]'));
        /** @type {Record<string, any>} */
        var params = Object.assign({}, spec.params, { attention: attention, root_div_id: spec.id });
        if (spec.drawn && layerSelect && layerSelect.value !== "" && spec.kind === "head") {
          params.layer = Number(layerSelect.value);
        }
        if (spec.drawn && filterSelect) {
          params.default_filter = filterSelect.value;
        }
        reset(el);
        var w = /** @type {any} */ (window);
        w.PYTHON_PARAMS = params;
        w.bertviz_params = params;
        var n = (spec.head_positions || []).length || stacks[spec.parts[0].stack].shape[1];
        if (spec.kind === "model") {
          n = Math.max(n, spec.layer_positions.length);
        }
        var libs = bertvizLibs(n);
        try {
          callbacks[spec.kind].call(window, libs.$, libs.d3);
          spec.drawn = true;
          el.setAttribute("data-drawn", "1");
          var lazy = el.querySelector(".ins-lazy");
          if (lazy && lazy.parentNode) {
            lazy.parentNode.removeChild(lazy);
          }
        } finally {
          delete w.PYTHON_PARAMS;
          delete w.bertviz_params;
          el.removeAttribute("aria-busy");
        }
        fitFrame();
      })
      .catch(function (err) {
        console.error("inspector: the " + spec.kind + " view could not be drawn: " + err);
      });
  }

  /** Window controls of a view: a start position and previous / next buttons. @param {ViewSpec} spec */
  function windowControls(spec) {
    var win = spec.window;
    if (!win) {
      return;
    }
    var size = win.size;
    var input = /** @type {HTMLInputElement | null} */ (
      document.querySelector('input.ins-window-start[data-view="' + spec.id + '"]'));
    var label = document.querySelector('.ins-window-range[data-view="' + spec.id + '"]');
    /** @param {number} start */
    function move(start) {
      var s = Math.max(0, Math.min(win ? win.n - size : 0, Math.round(start) || 0));
      spec.windowStart = s;
      if (input) {
        input.value = String(s);
      }
      if (label) {
        label.textContent = s + "–" + (s + size - 1);
      }
      return draw(spec);
    }
    if (input) {
      input.max = String(Math.max(0, win.n - size));
      var box = input;
      box.addEventListener("change", function () { move(Number(box.value)); });
    }
    document.querySelectorAll('button.ins-window-move[data-view="' + spec.id + '"]').forEach(function (b) {
      b.addEventListener("click", function () {
        move((spec.windowStart || 0) + Number(b.getAttribute("data-step")) * Math.max(1, Math.floor(size / 2)));
      });
    });
  }

  function fitFrame() {
    try {
      if (window.frameElement) {
        /** @type {HTMLElement} */ (window.frameElement).style.height =
          document.documentElement.scrollHeight + 24 + "px";
      }
    } catch (err) {
      /* a cross-origin host: keep the height it gave */
    }
  }

  /**
   * Offer text parts or a data: URL as a file download.
   * @param {string} filename @param {string | BlobPart[]} parts @param {string} mime
   */
  function download(filename, parts, mime) {
    var a = document.createElement("a");
    var url = null;
    if (typeof parts === "string" && parts.indexOf("data:") === 0) {
      a.href = parts;
    } else {
      url = URL.createObjectURL(new Blob(typeof parts === "string" ? [parts] : parts, { type: mime }));
      a.href = url;
    }
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    if (url) {
      var done = url;
      setTimeout(function () {
        URL.revokeObjectURL(done);
      }, 60000);
    }
  }

  /** @param {ViewSpec} spec */
  function schedule(spec) {
    windowControls(spec);
    if (!spec.lazy) {
      return draw(spec);
    }
    var once = function () {
      if (!spec.drawn) {
        draw(spec);
      }
    };
    var button = document.querySelector('.ins-draw[data-view="' + spec.id + '"]');
    if (button) {
      button.addEventListener("click", once);
    }
    var target = document.getElementById(spec.id);
    if (window.IntersectionObserver && target) {
      var watch = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) {
          watch.disconnect();
          setTimeout(once, 0);
        }
      }, { rootMargin: "100px" });
      watch.observe(target);
    }
    return Promise.resolve();
  }

  function start() {
    /** @type {Promise<void>[]} */
    var jobs = [];
    Object.keys(data.stacks).forEach(function (kind) {
      var meta = data.stacks[kind];
      var t = new Tensor(meta);
      stacks[kind] = t;
      if (meta.thumbs) {
        thumbs[kind] = new Tensor(meta.thumbs);
        jobs.push(thumbs[kind].load());
      }
      if (meta.eager !== false) {
        jobs.push(t.load());
      }
    });
    Object.keys(data.vectors).forEach(function (id) {
      var v = data.vectors[id];
      var qk = { queries: new Tensor(v.queries), keys: new Tensor(v.keys) };
      vectors[id] = qk;
      jobs.push(qk.queries.load().then(function () { return qk.keys.load(); }));
    });
    // The hooks (figures, tables) run before the bertviz views: figures measure their widths
    // in one layout, which is cheap before the views add their SVG lines.
    return Promise.all(jobs)
      .then(function () {
        return Promise.all(readyHooks.map(function (hook) {
          return Promise.resolve().then(function () { return hook(api); }).catch(function (err) {
            console.error("inspector: " + err);
          });
        }));
      })
      .then(function () {
        var chain = Promise.resolve();
        data.views.forEach(function (spec) {
          chain = chain.then(function () { return schedule(spec); });
        });
        return chain;
      })
      .then(function () {
        document.documentElement.setAttribute("data-inspector-drawn", "1");
        fitFrame();
        if (window.ResizeObserver) {
          new ResizeObserver(fitFrame).observe(document.body);
        }
      })
      .catch(function (err) {
        console.error("inspector: the embedded attention could not be decoded: " + err);
      });
  }

  /** @type {InspectorApi} */
  var api = {
    data: data,
    stacks: stacks,
    thumbs: thumbs,
    download: download,
    expectScript: function (kind) {
      expecting = kind;
    },
    onReady: function (hook) {
      readyHooks.push(hook);
    },
    start: start,
    fitFrame: fitFrame,
    bytesFromBase64: bytesFromBase64,
    inflate: function (bytes) {
      return inflate(bytes).then(function (buf) { return new Uint8Array(buf); });
    },
    /** bertviz's console: its log lines are dropped, warnings and errors kept. */
    quietConsole: {
      log: function () {},
      info: function () {},
      debug: function () {},
      warn: function (/** @type {any[]} */ ...args) { console.warn.apply(console, args); },
      error: function (/** @type {any[]} */ ...args) { console.error.apply(console, args); }
    }
  };
  window.inspector = api;
})();
