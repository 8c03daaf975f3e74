/* attention-inspector report: head grid (small multiples), zoom, tooltips, sortable tables and
 * client-side CSV downloads, all from the attention decoded once by inspector.js. */
(function () {
  "use strict";

  var GAP = 4;
  var LEFT = 34;
  var TOP = 18;

  function colour(w) {
    // white -> dark blue, linear in the weight
    var t = Math.max(0, Math.min(1, w));
    return [Math.round(255 - 247 * t), Math.round(255 - 207 * t), Math.round(255 - 148 * t)];
  }

  function headImage(stack, l, h) {
    var s = stack.shape;
    var canvas = document.createElement("canvas");
    canvas.width = s[3];
    canvas.height = s[2];
    var ctx = canvas.getContext("2d");
    var img = ctx.createImageData(s[3], s[2]);
    for (var q = 0; q < s[2]; q++) {
      for (var k = 0; k < s[3]; k++) {
        var c = colour(stack.get(l, h, q, k));
        var o = (q * s[3] + k) * 4;
        img.data[o] = c[0];
        img.data[o + 1] = c[1];
        img.data[o + 2] = c[2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function cellSize(stack, width) {
    var heads = stack.shape[1];
    var fit = Math.floor((width - LEFT) / heads) - GAP;
    return Math.max(18, Math.min(96, fit));
  }

  function tokenLabel(t) {
    return JSON.stringify(t);
  }

  function drawGrid(api, canvas, tooltip) {
    var kind = canvas.getAttribute("data-stack");
    var stack = api.stacks[kind];
    var meta = api.data.stacks[kind];
    var s = stack.shape;
    var width = Math.max(320, (canvas.parentNode.clientWidth || 900) - 8);
    var cell = cellSize(stack, width);
    var ratio = window.devicePixelRatio || 1;
    var cssW = LEFT + s[1] * (cell + GAP);
    var cssH = TOP + s[0] * (cell + GAP);
    canvas.width = Math.round(cssW * ratio);
    canvas.height = Math.round(cssH * ratio);
    canvas.style.width = cssW + "px";
    canvas.style.height = cssH + "px";
    var ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, cssW, cssH);
    ctx.fillStyle = "#333";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    for (var h = 0; h < s[1]; h++) {
      ctx.fillText("H" + meta.heads[h], LEFT + h * (cell + GAP) + cell / 2, 12);
    }
    ctx.textAlign = "right";
    var drawn = 0;
    for (var l = 0; l < s[0]; l++) {
      var y = TOP + l * (cell + GAP);
      ctx.fillStyle = "#333";
      ctx.fillText("L" + meta.layers[l], LEFT - 6, y + cell / 2 + 3);
      for (h = 0; h < s[1]; h++) {
        var x = LEFT + h * (cell + GAP);
        ctx.imageSmoothingEnabled = s[2] > cell;
        ctx.drawImage(headImage(stack, l, h), x, y, cell, cell);
        ctx.strokeStyle = "#bbb";
        ctx.strokeRect(x - 0.5, y - 0.5, cell + 1, cell + 1);
        drawn++;
      }
    }
    canvas.setAttribute("data-drawn-cells", String(drawn));

    function locate(ev) {
      var r = canvas.getBoundingClientRect();
      var px = ev.clientX - r.left - LEFT;
      var py = ev.clientY - r.top - TOP;
      var h = Math.floor(px / (cell + GAP));
      var l = Math.floor(py / (cell + GAP));
      var ix = px - h * (cell + GAP);
      var iy = py - l * (cell + GAP);
      if (px < 0 || py < 0 || h >= s[1] || l >= s[0] || ix >= cell || iy >= cell) {
        return null;
      }
      return { l: l, h: h, q: Math.floor((iy / cell) * s[2]), k: Math.floor((ix / cell) * s[3]) };
    }
    canvas.addEventListener("mousemove", function (ev) {
      var at = locate(ev);
      if (!at) {
        tooltip.hidden = true;
        return;
      }
      showTip(tooltip, ev, meta, stack, at);
    });
    canvas.addEventListener("mouseleave", function () {
      tooltip.hidden = true;
    });
    canvas.addEventListener("click", function (ev) {
      var at = locate(ev);
      if (at) {
        zoom(api, kind, at.l, at.h, tooltip);
      }
    });
  }

  function showTip(tooltip, ev, meta, stack, at) {
    var w = stack.get(at.l, at.h, at.q, at.k);
    tooltip.textContent =
      "layer " + meta.layers[at.l] + ", head " + meta.heads[at.h] + ": query " + at.q + " " +
      tokenLabel(meta.query_tokens[at.q]) + " \u2192 key " + at.k + " " +
      tokenLabel(meta.key_tokens[at.k]) + " = " + w.toFixed(3);
    tooltip.hidden = false;
    tooltip.style.left = ev.pageX + 12 + "px";
    tooltip.style.top = ev.pageY + 12 + "px";
  }

  function zoom(api, kind, l, h, tooltip) {
    var panel = document.querySelector('.ins-zoom[data-stack="' + kind + '"]');
    var canvas = panel.querySelector("canvas");
    var stack = api.stacks[kind];
    var meta = api.data.stacks[kind];
    var s = stack.shape;
    var labels = Math.max(s[2], s[3]) <= 80;
    var margin = labels ? 110 : 10;
    var box = Math.max(4, Math.min(28, Math.floor(560 / Math.max(s[2], s[3]))));
    var cssW = margin + s[3] * box + 10;
    var cssH = margin + s[2] * box + 10;
    var ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * ratio);
    canvas.height = Math.round(cssH * ratio);
    canvas.style.width = cssW + "px";
    canvas.style.height = cssH + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, cssW, cssH);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(headImage(stack, l, h), margin, margin, s[3] * box, s[2] * box);
    if (labels) {
      ctx.fillStyle = "#222";
      ctx.font = Math.min(12, box) + "px sans-serif";
      ctx.textAlign = "right";
      for (var q = 0; q < s[2]; q++) {
        ctx.fillText(meta.query_tokens[q], margin - 4, margin + q * box + box * 0.75, margin - 8);
      }
      for (var k = 0; k < s[3]; k++) {
        ctx.save();
        ctx.translate(margin + k * box + box * 0.75, margin - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(meta.key_tokens[k], 0, 0, margin - 8);
        ctx.restore();
      }
    }
    panel.querySelector(".ins-zoom-title").textContent =
      kind + " attention, layer " + meta.layers[l] + ", head " + meta.heads[h] +
      " (rows: queries, columns: keys)";
    panel.hidden = false;
    canvas.onmousemove = function (ev) {
      var r = canvas.getBoundingClientRect();
      var kk = Math.floor((ev.clientX - r.left - margin) / box);
      var qq = Math.floor((ev.clientY - r.top - margin) / box);
      if (kk < 0 || qq < 0 || kk >= s[3] || qq >= s[2]) {
        tooltip.hidden = true;
        return;
      }
      showTip(tooltip, ev, meta, stack, { l: l, h: h, q: qq, k: kk });
    };
    canvas.onmouseleave = function () {
      tooltip.hidden = true;
    };
  }

  function sortable(table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      th.classList.add("ins-sort");
      function sort() {
        var numeric = th.getAttribute("data-type") === "num";
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[col], numeric);
          var y = cellValue(b.cells[col], numeric);
          var c = numeric ? x - y : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) {
          body.appendChild(r);
        });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          sort();
        }
      });
    });
  }

  function cellValue(td, numeric) {
    var raw = td.hasAttribute("data-value") ? td.getAttribute("data-value") : td.textContent;
    return numeric ? parseFloat(raw) : raw;
  }

  function csvField(value) {
    var text = String(value);
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function frameCsv(api) {
    var kinds = Object.keys(api.data.stacks);
    var withKind = kinds.length > 1 || kinds[0] !== "self";
    var digits = api.data.precision.dtype === "uint8" ? 4 : 6;
    var parts = [
      (withKind ? "kind," : "") + "layer,head,query_pos,key_pos,query_token,key_token,weight\n"
    ];
    kinds.forEach(function (kind) {
      var st = api.stacks[kind];
      var meta = api.data.stacks[kind];
      var s = st.shape;
      var qt = meta.query_tokens.map(csvField);
      var kt = meta.key_tokens.map(csvField);
      var prefix = withKind ? kind + "," : "";
      for (var l = 0; l < s[0]; l++) {
        for (var h = 0; h < s[1]; h++) {
          var chunk = [];
          var head = prefix + meta.layers[l] + "," + meta.heads[h] + ",";
          for (var q = 0; q < s[2]; q++) {
            for (var k = 0; k < s[3]; k++) {
              chunk.push(head + q + "," + k + "," + qt[q] + "," + kt[k] + "," +
                st.get(l, h, q, k).toFixed(digits) + "\n");
            }
          }
          parts.push(chunk.join(""));
        }
      }
    });
    return parts;
  }

  /** Hide the rows of the input's target table that do not contain its text (case-insensitive). */
  function filterable(input) {
    var table = document.getElementById(input.getAttribute("data-target"));
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) < 0;
      });
    });
  }

  /** The table as CSV lines: the rows shown (a filter hides rows from the download too). */
  function tableCsv(table) {
    var lines = [];
    Array.prototype.forEach.call(table.rows, function (row) {
      if (row.hidden) {
        return;
      }
      lines.push(Array.prototype.map.call(row.cells, function (td) {
        return csvField(td.hasAttribute("data-value") ? td.getAttribute("data-value") : td.textContent);
      }).join(",") + "\n");
    });
    return lines;
  }

  inspector.onReady(function (api) {
    var tooltip = document.querySelector(".ins-tooltip");
    document.querySelectorAll("canvas.ins-grid-canvas").forEach(function (canvas) {
      drawGrid(api, canvas, tooltip);
    });
    document.querySelectorAll(".ins-grid-png").forEach(function (button) {
      button.addEventListener("click", function () {
        var kind = button.getAttribute("data-stack");
        var canvas = document.querySelector('canvas.ins-grid-canvas[data-stack="' + kind + '"]');
        api.download("head-grid-" + kind + ".png", canvas.toDataURL("image/png"), "image/png");
      });
    });
    document.querySelectorAll("table.ins-sortable").forEach(sortable);
    document.querySelectorAll("input.ins-filter").forEach(filterable);
    document.querySelectorAll(".ins-download").forEach(function (button) {
      button.addEventListener("click", function () {
        var what = button.getAttribute("data-download");
        var name = button.getAttribute("data-filename");
        if (what === "frame") {
          api.download(name, frameCsv(api), "text/csv");
        } else if (what === "table") {
          var table = document.getElementById(button.getAttribute("data-target"));
          api.download(name, tableCsv(table), "text/csv");
        }
      });
    });
  });
})();
