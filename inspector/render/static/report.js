/* attention-inspector report: sortable and filterable tables, CSV downloads made in the page
 * (tables as shown; the attention frame from the data inspector.js decodes), collapsible
 * sections, and the generation table's "leave out the attention sink" toggle. Figures, the head
 * grid and their tooltips are figures.js's. */
// @ts-check
(function () {
  "use strict";

  /** Rows of the attention frame the page makes as CSV (budget.CSV_ROWS in Python). */
  var CSV_ROWS = 5e6;

  /** @param {HTMLTableElement} table */
  function sortable(table) {
    if (!table.tHead) {
      return;
    }
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (/** @type {HTMLTableCellElement} */ th, /** @type {number} */ col) {
      th.tabIndex = 0;
      th.classList.add("ins-sort");
      function sort() {
        var numeric = th.getAttribute("data-type") === "num";
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (/** @type {HTMLElement} */ other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (/** @type {HTMLTableRowElement} */ a, /** @type {HTMLTableRowElement} */ b) {
          var x = cellValue(a.cells[col], numeric);
          var y = cellValue(b.cells[col], numeric);
          if (numeric && (isNaN(Number(x)) || isNaN(Number(y)))) {
            return Number(isNaN(Number(x))) - Number(isNaN(Number(y)));  // cells without a value last
          }
          var c = numeric ? Number(x) - Number(y) : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (/** @type {HTMLTableRowElement} */ r) {
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

  /** @param {HTMLTableCellElement} td @param {boolean} numeric */
  function cellValue(td, numeric) {
    var raw = td.hasAttribute("data-value") ? td.getAttribute("data-value") || "" : td.textContent || "";
    return numeric ? parseFloat(raw) : raw;
  }

  /** @param {unknown} value */
  function csvField(value) {
    var text = String(value);
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  /**
   * The attention frame as CSV parts (raw tokens, as in Python's frames), decoding one layer at
   * a time. @param {InspectorApi} api @returns {Promise<string[]>}
   */
  function frameCsv(api) {
    var kinds = Object.keys(api.data.stacks);
    var withKind = kinds.length > 1 || kinds[0] !== "self";
    var digits = api.data.precision.dtype === "uint8" ? 4 : 6;
    var parts = [
      (withKind ? "kind," : "") + "layer,head,query_pos,key_pos,query_token,key_token,weight\n"
    ];
    var chain = Promise.resolve();
    kinds.forEach(function (kind) {
      var st = api.stacks[kind];
      var meta = api.data.stacks[kind];
      var s = st.shape;
      var qt = meta.query_tokens.map(csvField);
      var kt = meta.key_tokens.map(csvField);
      var prefix = withKind ? kind + "," : "";
      for (var layer = 0; layer < s[0]; layer++) {
        (function (l) {
          chain = chain.then(function () { return st.load([l]); }).then(function () {
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
          });
        })(layer);
      }
    });
    return chain.then(function () { return parts; });
  }

  /** @param {InspectorApi} api */
  function frameRows(api) {
    return Object.keys(api.data.stacks).reduce(function (n, kind) {
      return n + api.data.stacks[kind].shape.reduce(function (a, b) { return a * b; }, 1);
    }, 0);
  }

  /** Hide the rows of the input's target table that do not contain its text (case-insensitive). */
  /** @param {HTMLInputElement} input */
  function filterable(input) {
    var table = /** @type {HTMLTableElement | null} */ (document.getElementById(input.getAttribute("data-target") || ""));
    if (!table) {
      return;
    }
    var target = table;
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      var shown = 0;
      Array.prototype.forEach.call(target.tBodies[0].rows, function (/** @type {HTMLTableRowElement} */ row) {
        row.hidden = needle !== "" && (row.textContent || "").toLowerCase().indexOf(needle) < 0;
        shown += row.hidden ? 0 : 1;
      });
      target.setAttribute("data-shown", String(shown));
    });
  }

  /** The table as CSV lines: the rows shown (a filter hides rows from the download too). */
  /** @param {HTMLTableElement} table */
  function tableCsv(table) {
    /** @type {string[]} */
    var lines = [];
    Array.prototype.forEach.call(table.rows, function (/** @type {HTMLTableRowElement} */ row) {
      if (row.hidden) {
        return;
      }
      lines.push(Array.prototype.map.call(row.cells, function (/** @type {HTMLTableCellElement} */ td) {
        return csvField(td.hasAttribute("data-value") ? td.getAttribute("data-value") : td.textContent);
      }).join(",") + "\n");
    });
    return lines;
  }

  /**
   * Collapsible sections: each heading toggles its section; "collapse all / expand all" in the
   * header; a section reached through the navigation opens.
   */
  function collapsible() {
    var sections = document.querySelectorAll("section.ins-section");
    sections.forEach(function (section) {
      var button = section.querySelector("button.ins-collapse");
      if (!button) {
        return;
      }
      var b = button;
      b.addEventListener("click", function () {
        var open = section.classList.toggle("ins-collapsed") === false;
        b.setAttribute("aria-expanded", String(open));
        window.inspector.fitFrame();
      });
    });
    document.querySelectorAll("button.ins-collapse-all").forEach(function (button) {
      button.addEventListener("click", function () {
        var collapse = button.getAttribute("data-action") === "collapse";
        sections.forEach(function (section) {
          section.classList.toggle("ins-collapsed", collapse);
          var b = section.querySelector("button.ins-collapse");
          if (b) {
            b.setAttribute("aria-expanded", String(!collapse));
          }
        });
        window.inspector.fitFrame();
      });
    });
    document.querySelectorAll("header.ins-header nav a").forEach(function (a) {
      a.addEventListener("click", function () {
        var id = (a.getAttribute("href") || "").slice(1);
        var section = document.getElementById(id);
        if (section && section.classList.contains("ins-collapsed")) {
          section.classList.remove("ins-collapsed");
          var b = section.querySelector("button.ins-collapse");
          if (b) {
            b.setAttribute("aria-expanded", "true");
          }
        }
      });
    });
  }

  /** The header's height, so anchors land below it (CSS scroll-padding-top). */
  function headerOffset() {
    var header = /** @type {HTMLElement | null} */ (document.querySelector("header.ins-header"));
    if (!header) {
      return;
    }
    var head = header;
    var set = function () {
      document.documentElement.style.setProperty("--ins-header", head.offsetHeight + "px");
    };
    set();
    window.addEventListener("resize", set);
  }

  /** The generation table: show or leave out the attention sink (the first token). */
  function sinkToggle() {
    document.querySelectorAll("input.ins-sink-toggle").forEach(function (box) {
      var input = /** @type {HTMLInputElement} */ (box);
      var table = document.getElementById(input.getAttribute("data-target") || "");
      if (!table) {
        return;
      }
      var t = table;
      var apply = function () {
        t.classList.toggle("ins-hide-sink", input.checked);
      };
      input.addEventListener("change", apply);
      apply();
    });
  }

  window.inspector.onReady(function (api) {
    headerOffset();
    collapsible();
    sinkToggle();
    document.querySelectorAll("table.ins-sortable").forEach(function (t) {
      sortable(/** @type {HTMLTableElement} */ (t));
    });
    document.querySelectorAll("input.ins-filter").forEach(function (i) {
      filterable(/** @type {HTMLInputElement} */ (i));
    });
    document.querySelectorAll(".ins-download").forEach(function (button) {
      var what = button.getAttribute("data-download");
      if (what === "frame" && frameRows(api) > CSV_ROWS) {
        /** @type {HTMLButtonElement} */ (button).disabled = true;
        button.setAttribute("title", "too many rows to make in a browser; use Inspection.to_parquet()");
      }
      button.addEventListener("click", function () {
        var name = button.getAttribute("data-filename") || "table.csv";
        if (what === "frame") {
          frameCsv(api).then(function (parts) {
            api.download(name, parts, "text/csv");
          });
        } else if (what === "table") {
          var table = /** @type {HTMLTableElement | null} */ (document.getElementById(button.getAttribute("data-target") || ""));
          if (table) {
            api.download(name, tableCsv(table), "text/csv");
          }
        }
      });
    });
  });
})();
