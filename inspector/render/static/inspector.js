/* attention-inspector page runtime (no network, no eval).
 *
 * 1. A tiny require.js shim. bertviz's scripts run unchanged: each calls
 *    requirejs(['jquery', 'd3'], callback) once; the shim files the callback under the view kind
 *    announced just before by inspector.expectScript(kind), and calls it once per view with the
 *    jQuery and d3 bundled in this page.
 * 2. The attention embedded in #inspector-data is decoded once (base64 -> inflate -> typed
 *    array of quantised weights) before any view draws.
 * 3. Before each bertviz callback runs, PYTHON_PARAMS / bertviz_params are set to that view's
 *    parameters, with the nested attention arrays bertviz expects.
 */
(function () {
  "use strict";

  var callbacks = {};
  var expecting = null;
  var readyHooks = [];
  var stacks = {};
  var vectors = {};
  var data = JSON.parse(document.getElementById("inspector-data").textContent);

  function requirejs(deps, callback) {
    if (expecting === null) {
      throw new Error("inspector: requirejs() called outside a bertviz script");
    }
    callbacks[expecting] = callback;
    expecting = null;
  }
  requirejs.config = function () {};
  window.requirejs = requirejs;
  window.require = requirejs;

  function bytesFromBase64(text) {
    var bin = atob(text);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out;
  }

  function inflate(bytes) {
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }

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

  function decode(enc) {
    return inflate(bytesFromBase64(enc.data)).then(function (buf) {
      var values;
      if (enc.dtype === "uint8") {
        values = new Uint8Array(buf);
      } else if (enc.dtype === "uint16") {
        values = new Uint16Array(buf); // little-endian, like every browser
      } else if (enc.dtype === "float16") {
        var halves = new Uint16Array(buf);
        values = new Float32Array(halves.length);
        for (var i = 0; i < halves.length; i++) {
          values[i] = halfToFloat(halves[i]);
        }
      } else {
        throw new Error("inspector: unknown dtype " + enc.dtype);
      }
      return new Tensor(enc, values);
    });
  }

  /** A decoded (layer, head, row, col) array; get() returns floats (quantised values / scale). */
  function Tensor(meta, values) {
    this.meta = meta;
    this.shape = meta.shape;
    this.values = values;
    this.scale = meta.scale || 1;
  }
  Tensor.prototype.get = function (l, h, q, k) {
    var s = this.shape;
    return this.values[((l * s[1] + h) * s[2] + q) * s[3] + k] / this.scale;
  };
  /** bertviz's nested arrays: [layer][head][row][col] for the given positions and ranges. */
  Tensor.prototype.block = function (layers, heads, rows, cols) {
    var self = this;
    return layers.map(function (l) {
      return heads.map(function (h) {
        var out = [];
        for (var q = rows[0]; q < rows[1]; q++) {
          var row = new Array(cols[1] - cols[0]);
          for (var k = cols[0]; k < cols[1]; k++) {
            row[k - cols[0]] = self.get(l, h, q, k);
          }
          out.push(row);
        }
        return out;
      });
    });
  };

  function range(n) {
    var out = [];
    for (var i = 0; i < n; i++) {
      out.push(i);
    }
    return out;
  }

  function attentionFor(spec) {
    var entries = spec.parts.map(function (part) {
      var st = stacks[part.stack];
      var heads = spec.head_positions || range(st.shape[1]);
      var entry = {
        name: part.name,
        attn: st.block(spec.layer_positions, heads, part.rows, part.cols),
        left_text: part.left_text,
        right_text: part.right_text
      };
      var vec = vectors[spec.id];
      if (vec) {
        entry.queries = vec.queries.block(spec.layer_positions, heads, part.rows, [0, vec.queries.shape[3]]);
        entry.keys = vec.keys.block(spec.layer_positions, heads, part.cols, [0, vec.keys.shape[3]]);
      }
      return entry;
    });
    if (spec.kind !== "neuron") {
      return entries;
    }
    var keyed = {};
    entries.forEach(function (entry, i) {
      keyed[spec.parts[i].key] = entry;
    });
    return keyed;
  }

  function draw(spec) {
    var params = Object.assign({}, spec.params, {
      attention: attentionFor(spec),
      root_div_id: spec.id
    });
    window.PYTHON_PARAMS = params;
    window.bertviz_params = params;
    try {
      callbacks[spec.kind].call(window, window.jQuery, window.d3);
      var root = document.getElementById(spec.id);
      root.setAttribute("data-drawn", "1");
      var lazy = root.querySelector(".ins-lazy");
      if (lazy) {
        lazy.parentNode.removeChild(lazy);
      }
    } catch (err) {
      console.error("inspector: the " + spec.kind + " view could not be drawn: " + err);
    } finally {
      delete window.PYTHON_PARAMS;
      delete window.bertviz_params;
    }
    fitFrame();
  }

  function fitFrame() {
    try {
      if (window.frameElement) {
        window.frameElement.style.height = document.documentElement.scrollHeight + 24 + "px";
      }
    } catch (err) {
      /* a cross-origin host: keep the height it gave */
    }
  }

  /** Offer text or a data: URL as a file download. */
  function download(filename, parts, mime) {
    var a = document.createElement("a");
    var url = null;
    if (typeof parts === "string" && parts.indexOf("data:") === 0) {
      a.href = parts;
    } else {
      url = URL.createObjectURL(new Blob(parts, { type: mime }));
      a.href = url;
    }
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    if (url) {
      setTimeout(function () {
        URL.revokeObjectURL(url);
      }, 60000);
    }
  }

  function start() {
    var jobs = Object.keys(data.stacks).map(function (kind) {
      return decode(data.stacks[kind]).then(function (t) {
        stacks[kind] = t;
      });
    });
    Object.keys(data.vectors).forEach(function (id) {
      var v = data.vectors[id];
      jobs.push(Promise.all([decode(v.queries), decode(v.keys)]).then(function (qk) {
        vectors[id] = { queries: qk[0], keys: qk[1] };
      }));
    });
    return Promise.all(jobs)
      .then(function () {
        data.views.forEach(function (spec) {
          if (!spec.lazy) {
            draw(spec);
            return;
          }
          var once = function () {
            if (!spec.drawn) {
              spec.drawn = true;
              draw(spec);
            }
          };
          var button = document.querySelector('.ins-draw[data-view="' + spec.id + '"]');
          if (button) {
            button.addEventListener("click", once);
          }
          if (window.IntersectionObserver) {
            var watch = new IntersectionObserver(function (entries) {
              if (entries.some(function (e) { return e.isIntersecting; })) {
                watch.disconnect();
                setTimeout(once, 0);
              }
            }, { rootMargin: "100px" });
            watch.observe(document.getElementById(spec.id));
          }
        });
        readyHooks.forEach(function (hook) {
          try {
            hook(api);
          } catch (err) {
            console.error("inspector: " + err);
          }
        });
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

  var api = {
    data: data,
    stacks: stacks,
    download: download,
    expectScript: function (kind) {
      expecting = kind;
    },
    onReady: function (hook) {
      readyHooks.push(hook);
    },
    start: start,
    fitFrame: fitFrame
  };
  window.inspector = api;
})();
