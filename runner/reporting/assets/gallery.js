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
