"""The gallery's page: one static HTML file with its CSS, script and data inline.

It works from ``file://`` with no server and no network: a Content
Security Policy lets the page load nothing but images under its own folder,
and run nothing but its own script and style (allowed by their sha256).

Safety with user text (prompts, reasons): the data is embedded as JSON in a
``<script type="application/json">`` with ``<``, ``>``, ``&`` and the two
JavaScript line separators escaped, so no text can close the element; the
script builds every node with ``textContent`` and ``setAttribute``, never
``innerHTML``.

The data (`page_data` in gallery.py): ``axes`` (id, label, values), and
``items``, each with ``a``: the index of its value on every axis, so the
script groups by integers. Layout work is O(items + rows + columns): cells
are placed on a CSS grid by row and column number, and empty cells are
drawn only when the grid is small.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any, Final

_CSS: Final = """
:root {
  --bg: #f6f6f4; --panel: #ffffff; --ink: #1c1c1e; --muted: #6b6b70; --line: #e2e2de;
  --accent: #2457c5; --bad: #b42318; --bad-bg: #fef3f2; --wait: #8a6d00; --wait-bg: #fdf8e6;
  --thumb: 160px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
header.top { padding: 16px 24px 8px; }
h1 { font-size: 20px; margin: 0 0 4px; font-weight: 650; }
.meta { color: var(--muted); font-size: 13px; }
.meta b { color: var(--ink); font-weight: 600; }
.controls {
  display: flex; flex-wrap: wrap; gap: 12px 20px; align-items: center;
  padding: 10px 24px; background: var(--panel); border-block: 1px solid var(--line);
  position: sticky; top: 0; z-index: 5;
}
.controls label { font-size: 13px; color: var(--muted); display: inline-flex; gap: 6px;
  align-items: center; }
select, input[type=search], button { font: inherit; font-size: 13px; }
select, input[type=search] { padding: 4px 8px; border: 1px solid var(--line);
  border-radius: 6px; background: #fff; color: var(--ink); }
input[type=search] { width: 220px; }
button.plain { border: 1px solid var(--line); background: #fff; border-radius: 6px;
  padding: 4px 10px; cursor: pointer; color: var(--ink); }
button.plain:hover { border-color: var(--accent); }
.count { margin-left: auto; font-size: 13px; color: var(--muted); }
details.filters { padding: 8px 24px; border-bottom: 1px solid var(--line); background: #fbfbfa; }
details.filters summary { cursor: pointer; font-size: 13px; color: var(--muted); }
.filter-group { display: flex; flex-wrap: wrap; gap: 6px; align-items: baseline; margin: 8px 0; }
.filter-group .name { font-size: 12px; color: var(--muted); min-width: 110px; }
.chip { border: 1px solid var(--line); background: #fff; border-radius: 999px; padding: 2px 10px;
  font-size: 12px; cursor: pointer; color: var(--ink); max-width: 320px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.chip[aria-pressed=false] { opacity: .45; text-decoration: line-through; }
main { padding: 16px 24px 48px; }
.sheet { display: grid; gap: 8px; align-items: start; width: max-content; }
.hdr { font-size: 12px; color: var(--muted); font-weight: 600; padding: 4px 6px;
  background: var(--bg); }
.hdr.col { position: sticky; top: var(--bar, 52px); z-index: 2; text-align: center;
  border-bottom: 2px solid var(--line); overflow-wrap: anywhere;
  max-width: calc((var(--thumb) + 6px) * 4 + 12px); }
.hdr.row { position: sticky; left: 0; z-index: 1; max-width: 180px; overflow-wrap: anywhere;
  align-self: stretch; border-right: 2px solid var(--line); }
.hdr.corner { position: sticky; top: var(--bar, 52px); left: 0; z-index: 3; }
.hdr .axis { display: block; font-weight: 400; font-size: 11px; }
.cell { display: flex; flex-wrap: wrap; gap: 6px; padding: 6px; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; min-width: calc(var(--thumb) + 14px);
  min-height: calc(var(--thumb) + 34px); max-width: calc((var(--thumb) + 6px) * 4 + 12px); }
.cell.empty { background: transparent; border-style: dashed; }
.tile { display: flex; flex-direction: column; width: var(--thumb); padding: 0; border: 0;
  background: none; cursor: pointer; text-align: left; color: inherit; font: inherit; }
.tile img { width: var(--thumb); height: var(--thumb); object-fit: contain; display: block;
  background: #ecece8; border-radius: 4px; }
.tile:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; border-radius: 4px; }
.tile:hover img { box-shadow: 0 0 0 2px var(--accent); }
.cap { font-size: 11px; color: var(--muted); padding: 3px 1px 0; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.card { height: var(--thumb); border-radius: 4px; padding: 8px; overflow: hidden;
  display: flex; flex-direction: column; gap: 6px; font-size: 12px; }
.card.bad { background: var(--bad-bg); border: 1px solid #f5c2bd; color: var(--bad); }
.card.wait { background: var(--wait-bg); border: 1px solid #eedc9a; color: var(--wait); }
.badge { font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: .04em; }
.reason { color: var(--ink); overflow-wrap: anywhere; display: -webkit-box;
  -webkit-line-clamp: 6; -webkit-box-orient: vertical; overflow: hidden; }
.empty-note { color: var(--muted); padding: 48px 0; text-align: center; }
dialog { width: min(1200px, 96vw); max-height: 94vh; border: 0; border-radius: 12px;
  padding: 0; box-shadow: 0 20px 60px rgba(0,0,0,.35); }
dialog::backdrop { background: rgba(20,20,24,.72); }
.dlg { display: grid; grid-template-columns: minmax(0, 1fr) 360px; max-height: 94vh; }
.dlg figure { margin: 0; background: #111; display: flex; align-items: center;
  justify-content: center; min-height: 320px; }
.dlg figure img { max-width: 100%; max-height: 94vh; object-fit: contain; display: block; }
.dlg figure .card { height: auto; margin: 24px; font-size: 14px; }
.dlg aside { padding: 16px 18px; overflow: auto; max-height: 94vh; }
.dlg h2 { font-size: 15px; margin: 0 0 10px; overflow-wrap: anywhere; }
.dlg dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0;
  font-size: 12px; }
.dlg dt { color: var(--muted); }
.dlg dd { margin: 0; overflow-wrap: anywhere; white-space: pre-wrap; }
.dlg .nav { display: flex; gap: 8px; margin-bottom: 12px; }
.dlg .nav .plain:last-child { margin-left: auto; }
.dlg a { color: var(--accent); }
@media (max-width: 800px) { .dlg { grid-template-columns: 1fr; } }
"""

_JS: Final = r"""
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const axes = data.axes;
  const items = data.items;
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const GROUPS = { completed: "images", failed: "failed", expired: "failed", missing: "failed",
    planned: "not run", submitting: "not run", submitted: "not run" };
  const BADGES = { failed: "failed", expired: "expired", missing: "missing",
    planned: "not run", submitting: "not run", submitted: "in flight" };
  const excluded = axes.map(() => new Set());
  const hiddenGroups = new Set();
  let query = "";
  let rowsAxis = -1;
  let colsAxis = -1;
  let shown = [];
  let current = -1;

  for (const item of items) {
    item.search = (item.p + " " + item.l + " " + (item.r || "")).toLowerCase();
  }
  const axisById = (id) => axes.findIndex((a) => a.id === id);

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const r = params.has("rows") ? axisById(params.get("rows")) : axisById(data.rows);
    const c = params.has("cols") ? axisById(params.get("cols")) : axisById(data.cols);
    rowsAxis = r; colsAxis = c;
  }
  function writeHash() {
    const params = new URLSearchParams();
    params.set("rows", rowsAxis >= 0 ? axes[rowsAxis].id : "");
    params.set("cols", colsAxis >= 0 ? axes[colsAxis].id : "");
    history.replaceState(null, "", "#" + params.toString());
  }

  function fillSelect(select, value) {
    select.replaceChildren();
    const none = el("option", null, "(none)");
    none.value = "";
    select.append(none);
    axes.forEach((axis, i) => {
      const option = el("option", null, axis.label);
      option.value = axis.id;
      if (i === value) option.selected = true;
      select.append(option);
    });
  }

  function visible(item) {
    if (hiddenGroups.has(GROUPS[item.s])) return false;
    for (let a = 0; a < axes.length; a++) {
      if (excluded[a].size && excluded[a].has(item.a[a])) return false;
    }
    return !query || item.search.includes(query);
  }

  function caption(item) {
    const parts = [];
    axes.forEach((axis, a) => {
      if (a === rowsAxis || a === colsAxis) return;
      const value = axis.values[item.a[a]];
      if (axis.id === "repeat") parts.push("#" + value);
      else if (value !== "") parts.push(value);
    });
    return parts.join(" · ");
  }

  function tile(item, position) {
    const button = el("button", "tile");
    button.type = "button";
    button.dataset.key = item.k;
    button.dataset.index = String(item.i);
    button.dataset.state = item.s;
    button.dataset.pos = String(position);
    button.title = item.l;
    if (item.t) {
      const img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.src = item.t;
      img.width = item.tw;
      img.height = item.th;
      img.alt = item.l;
      button.append(img);
    } else {
      const bad = item.s !== "completed" && GROUPS[item.s] === "failed";
      const card = el("div", "card " + (bad || item.s === "completed" ? "bad" : "wait"));
      card.append(el("span", "badge", BADGES[item.s] || "no thumbnail"));
      card.append(el("span", "reason", item.r || ""));
      button.append(card);
    }
    button.append(el("span", "cap", caption(item)));
    return button;
  }

  function header(cls, axis, value, row, col) {
    const node = el("div", "hdr " + cls);
    if (axis) node.append(el("span", "axis", axis.label));
    node.append(document.createTextNode(value === "" ? "\u2013" : value));
    node.style.gridRow = String(row);
    node.style.gridColumn = String(col);
    return node;
  }

  function render() {
    shown = items.filter(visible);
    const rowAxis = rowsAxis >= 0 ? axes[rowsAxis] : null;
    const colAxis = colsAxis >= 0 ? axes[colsAxis] : null;
    const nCols = colAxis ? colAxis.values.length : 1;
    const cells = new Map();
    const usedRows = new Set();
    const usedCols = new Set();
    for (const item of shown) {
      const r = rowAxis ? item.a[rowsAxis] : 0;
      const c = colAxis ? item.a[colsAxis] : 0;
      usedRows.add(r); usedCols.add(c);
      const key = r * nCols + c;
      const list = cells.get(key);
      if (list) list.push(item); else cells.set(key, [item]);
    }
    const rows = [...usedRows].sort((x, y) => x - y);
    const cols = [...usedCols].sort((x, y) => x - y);
    const rowAt = new Map(rows.map((r, i) => [r, i + 2]));
    const colAt = new Map(cols.map((c, i) => [c, i + 2]));
    // Shown items in reading order (row by row), for the detail view's prev / next.
    const ordered = [];
    const sheet = $("sheet");
    const frag = document.createDocumentFragment();
    sheet.style.gridTemplateColumns = "max-content repeat(" + cols.length + ", max-content)";
    frag.append(header("corner", null, (rowAxis ? rowAxis.label : "") + " \u2193 " +
      (colAxis ? colAxis.label : "") + " \u2192", 1, 1));
    for (const c of cols) {
      frag.append(header("col", colAxis, colAxis ? colAxis.values[c] : "all", 1, colAt.get(c)));
    }
    for (const r of rows) {
      frag.append(header("row", rowAxis, rowAxis ? rowAxis.values[r] : "all", rowAt.get(r), 1));
    }
    const drawEmpty = rows.length * cols.length <= 4000;
    for (const r of rows) {
      for (const c of cols) {
        const list = cells.get(r * nCols + c);
        if (!list && !drawEmpty) continue;
        const cell = el("div", list ? "cell" : "cell empty");
        cell.dataset.row = rowAxis ? rowAxis.values[r] : "";
        cell.dataset.col = colAxis ? colAxis.values[c] : "";
        cell.style.gridRow = String(rowAt.get(r));
        cell.style.gridColumn = String(colAt.get(c));
        if (list) {
          for (const item of list) {
            cell.append(tile(item, ordered.length));
            ordered.push(item);
          }
        }
        frag.append(cell);
      }
    }
    shown = ordered;
    sheet.replaceChildren(frag);
    $("empty").hidden = shown.length > 0;
    $("count").textContent = "showing " + shown.length + " of " + items.length;
  }

  function chip(text, pressed, onToggle) {
    const button = el("button", "chip", text === "" ? "\u2013" : text);
    button.type = "button";
    button.title = text;
    button.setAttribute("aria-pressed", String(pressed));
    button.addEventListener("click", () => {
      const now = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(now));
      onToggle(now);
      render();
    });
    return button;
  }

  function buildFilters() {
    const box = $("filter-groups");
    const states = el("div", "filter-group");
    states.append(el("span", "name", "show"));
    for (const group of ["images", "failed", "not run"]) {
      states.append(chip(group, true, (on) => {
        if (on) hiddenGroups.delete(group); else hiddenGroups.add(group);
      }));
    }
    box.append(states);
    axes.forEach((axis, a) => {
      const group = el("div", "filter-group");
      group.dataset.axis = axis.id;
      group.append(el("span", "name", axis.label));
      axis.values.forEach((value, v) => {
        group.append(chip(value, true, (on) => {
          if (on) excluded[a].delete(v); else excluded[a].add(v);
        }));
      });
      box.append(group);
    });
  }

  function openDetail(position) {
    const item = shown[position];
    if (!item) return;
    current = position;
    const figure = $("dlg-figure");
    figure.replaceChildren();
    if (item.f && item.s === "completed") {
      const link = el("a");
      link.href = item.f;
      link.target = "_blank";
      link.rel = "noopener";
      const img = el("img");
      img.src = item.f;
      img.alt = item.l;
      img.id = "dlg-image";
      link.append(img);
      figure.append(link);
    } else {
      const card = el("div", "card " + (GROUPS[item.s] === "failed" ? "bad" : "wait"));
      card.append(el("span", "badge", BADGES[item.s] || item.s));
      card.append(el("span", "reason", item.r || ""));
      figure.append(card);
    }
    $("dlg-title").textContent = item.l;
    const list = $("dlg-details");
    list.replaceChildren();
    for (const [name, value] of item.d) {
      list.append(el("dt", null, name));
      list.append(el("dd", null, value));
    }
    $("dlg-pos").textContent = (position + 1) + " / " + shown.length;
    const dialog = $("detail");
    if (!dialog.open) dialog.showModal();
  }

  function closeDetail() {
    const dialog = $("detail");
    if (dialog.open) dialog.close();
  }

  function setAxes(r, c) {
    rowsAxis = r; colsAxis = c;
    fillSelect($("rows"), rowsAxis);
    fillSelect($("cols"), colsAxis);
    writeHash();
    render();
  }

  const bar = document.querySelector(".controls");
  const fitBar = () => {
    document.documentElement.style.setProperty("--bar", bar.offsetHeight + "px");
  };
  window.addEventListener("resize", fitBar);
  fitBar();
  readHash();
  fillSelect($("rows"), rowsAxis);
  fillSelect($("cols"), colsAxis);
  buildFilters();
  $("rows").addEventListener("change", (e) => setAxes(axisById(e.target.value), colsAxis));
  $("cols").addEventListener("change", (e) => setAxes(rowsAxis, axisById(e.target.value)));
  $("swap").addEventListener("click", () => setAxes(colsAxis, rowsAxis));
  $("search").addEventListener("input", (e) => {
    query = e.target.value.trim().toLowerCase();
    render();
  });
  $("size").addEventListener("input", (e) => {
    document.documentElement.style.setProperty("--thumb", e.target.value + "px");
  });
  $("sheet").addEventListener("click", (e) => {
    const button = e.target.closest(".tile");
    if (button) openDetail(Number(button.dataset.pos));
  });
  $("dlg-close").addEventListener("click", closeDetail);
  $("dlg-prev").addEventListener("click", () => openDetail(current - 1));
  $("dlg-next").addEventListener("click", () => openDetail(current + 1));
  $("detail").addEventListener("click", (e) => { if (e.target === $("detail")) closeDetail(); });
  document.addEventListener("keydown", (e) => {
    if (!$("detail").open) return;
    if (e.key === "Escape") { e.preventDefault(); closeDetail(); }
    else if (e.key === "ArrowLeft") openDetail(current - 1);
    else if (e.key === "ArrowRight") openDetail(current + 1);
  });
  render();
  document.body.dataset.ready = "true";
})();
"""

_BODY: Final = """<header class="top">
  <h1 id="title"></h1>
  <div class="meta" id="meta"></div>
</header>
<div class="controls">
  <label>Rows <select id="rows"></select></label>
  <button type="button" class="plain" id="swap" title="Swap rows and columns">⇅ swap</button>
  <label>Columns <select id="cols"></select></label>
  <label>Search <input type="search" id="search" placeholder="prompt, value or reason"></label>
  <label>Size <input type="range" id="size" min="64" max="256" step="16" value="160"></label>
  <span class="count" id="count"></span>
</div>
<details class="filters"><summary>Filters</summary><div id="filter-groups"></div></details>
<main>
  <div class="sheet" id="sheet"></div>
  <p class="empty-note" id="empty" hidden>Nothing to show: no images yet, or the filters hide
    everything.</p>
</main>
<dialog id="detail" aria-labelledby="dlg-title">
  <div class="dlg">
    <figure id="dlg-figure"></figure>
    <aside>
      <div class="nav">
        <button type="button" class="plain" id="dlg-prev">← prev</button>
        <button type="button" class="plain" id="dlg-next">next →</button>
        <span class="meta" id="dlg-pos"></span>
        <button type="button" class="plain" id="dlg-close" title="Close (Esc)">✕ close</button>
      </div>
      <h2 id="dlg-title"></h2>
      <dl id="dlg-details"></dl>
    </aside>
  </div>
</dialog>"""

# The title and meta line, from the same data; runs first in the one script element.
_HEAD_JS: Final = r"""
(() => {
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  document.getElementById("title").textContent = data.title;
  const meta = document.getElementById("meta");
  for (const [i, part] of data.meta.entries()) {
    if (i) meta.append(document.createTextNode(" · "));
    const b = document.createElement("b");
    b.textContent = part[0];
    meta.append(b, document.createTextNode(" " + part[1]));
  }
})();
"""


def _sha256_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def embed_json(value: Any) -> str:
    """JSON text safe inside a ``<script type="application/json">`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c`` etc. (so no ``</script>`` or
    ``<!--`` can appear), as do U+2028 and U+2029; ``JSON.parse`` reads them back.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def render_page(title: str, data: Any) -> str:
    """The whole gallery.html for `data` (see the module docstring), titled `title`."""
    script = _HEAD_JS + _JS
    policy = "; ".join(
        [
            "default-src 'none'",
            "img-src 'self' file: data:",
            f"style-src {_sha256_source(_CSS)}",
            f"script-src {_sha256_source(script)}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{_CSS}</style>\n"
        "</head>\n<body>\n"
        f"{_BODY}\n"
        f'<script type="application/json" id="gallery-data">{embed_json(data)}</script>\n'
        f"<script>{script}</script>\n"
        "</body>\n</html>\n"
    )
