// spectraclip search page: plain JS, no network beyond this server.
"use strict";
const state = { text: "", like: [], unlike: [], hits: [], dragBox: null, hover: null };
const $ = (id) => document.getElementById(id);

function num(id) { const v = $(id).value.trim(); return v === "" ? null : Number(v); }

function filters() {
  const f = {};
  const box = ["west", "south", "east", "north"].map(num);
  if (box.every((v) => v !== null)) f.bbox = box;
  else if (box.some((v) => v !== null)) throw new Error("bbox needs all four of west, south, east, north");
  if ($("start").value) f.start = $("start").value;
  if ($("end").value) f.end = $("end").value;
  return f;
}

function setStatus(text, error = false) { $("status").textContent = text; $("status").className = error ? "error" : ""; }

async function search() {
  state.text = $("q").value.trim();
  if (!state.text && !state.like.length) { setStatus("Type a query or add a 👍 example.", true); return; }
  let body;
  try {
    body = { k: Number($("k").value), like: state.like, unlike: state.unlike, filters: filters() };
  } catch (err) { setStatus(err.message, true); return; }
  if (state.text) body.text = state.text;
  setStatus("searching…");
  const resp = await fetch("/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await resp.json();
  if (!resp.ok) {
    const d = data.detail;
    setStatus(`${resp.status}: ` + (Array.isArray(d) ? d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ") : d), true);
    return;
  }
  state.hits = data.hits;
  const cand = data.candidates === null ? "" : ` (${data.candidates} items pass the filters)`;
  setStatus(`${data.hits.length} results in ${data.took_ms.toFixed(1)} ms, ${data.index_kind} index${cand}`);
  render();
}

function thumbUrl(id) {
  const style = $("false-colour").checked ? "false-colour" : "natural";
  return `/items/${id.split("/").map(encodeURIComponent).join("/")}/thumbnail.png?style=${style}`;
}

function addExample(id, positive) {
  state.like = state.like.filter((x) => x !== id);
  state.unlike = state.unlike.filter((x) => x !== id);
  (positive ? state.like : state.unlike).push(id);
  renderExamples();
  search();
}

function renderExamples() {
  const chips = $("example-chips");
  chips.replaceChildren();
  for (const [list, cls, mark] of [[state.like, "pos", "👍"], [state.unlike, "neg", "👎"]]) {
    for (const id of list) {
      const chip = document.createElement("span");
      chip.className = `chip ${cls}`;
      chip.textContent = `${mark} ${id}`;
      const x = document.createElement("button");
      x.textContent = "×"; x.title = "remove";
      x.onclick = () => { state.like = state.like.filter((v) => v !== id); state.unlike = state.unlike.filter((v) => v !== id); renderExamples(); search(); };
      chip.append(x); chips.append(chip);
    }
  }
  $("examples").hidden = !(state.like.length || state.unlike.length);
}

function render() {
  const grid = $("results");
  grid.replaceChildren();
  state.hits.forEach((h, i) => {
    const card = document.createElement("div");
    card.className = "card"; card.dataset.id = h.id;
    const img = document.createElement("img");
    img.src = thumbUrl(h.id); img.alt = h.id; img.loading = "lazy"; img.width = 150; img.height = 150;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.innerHTML = `<span class="score"></span><span class="rank"></span> <div class="id"></div><div class="date"></div>`;
    meta.querySelector(".score").textContent = h.score.toFixed(3);
    meta.querySelector(".rank").textContent = `#${h.rank}`;
    meta.querySelector(".id").textContent = h.id;
    meta.querySelector(".date").textContent = h.timestamp ? h.timestamp.slice(0, 10) : "no date";
    const actions = document.createElement("div");
    actions.className = "actions";
    const up = document.createElement("button"); up.className = "like"; up.textContent = "👍 more"; up.title = "more like this";
    const down = document.createElement("button"); down.className = "unlike"; down.textContent = "👎 less"; down.title = "less like this";
    up.onclick = () => addExample(h.id, true); down.onclick = () => addExample(h.id, false);
    actions.append(up, down);
    card.append(img, meta, actions);
    card.onmouseenter = () => { state.hover = i; drawMap(view); };
    card.onmouseleave = () => { state.hover = null; drawMap(view); };
    grid.append(card);
  });
  $("export-geojson").disabled = $("export-csv").disabled = !state.hits.length;
  drawMap();
}

// ---- footprint view: an equirectangular lon/lat canvas with a graticule ----
let view = null;
function extent() {
  const boxes = state.hits.filter((h) => h.bbox).map((h) => h.bbox);
  let f = null; try { f = filters().bbox; } catch (e) { f = null; }
  if (f) boxes.push(f);
  if (state.dragBox) boxes.push(state.dragBox);
  if (!boxes.length) return [-180, -90, 180, 90];
  let [w, s, e, n] = [180, 90, -180, -90];
  for (const b of boxes) { w = Math.min(w, b[0]); s = Math.min(s, b[1]); e = Math.max(e, b[2]); n = Math.max(n, b[3]); }
  const pad = Math.max((e - w), (n - s), 0.02) * 0.1;
  return [w - pad, s - pad, e + pad, n + pad];
}

function drawMap(fixed = null) {
  const c = $("map"), g = c.getContext("2d");
  let [w, s, e, n] = fixed ? [fixed.w, fixed.s, fixed.e, fixed.n] : extent();
  if (!fixed) {  // square view, scaled by cos(latitude) so footprints keep their shape
    const k = Math.cos(((s + n) / 2) * Math.PI / 180) || 1;
    const span = Math.max((e - w) * k, n - s);
    const cx = (w + e) / 2, cy = (s + n) / 2;
    w = cx - span / 2 / k; e = cx + span / 2 / k; s = cy - span / 2; n = cy + span / 2;
  }
  view = { w, s, e, n };
  const X = (lon) => ((lon - w) / (e - w)) * c.width, Y = (lat) => ((n - lat) / (n - s)) * c.height;
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#dde3e6"; g.fillStyle = "#789"; g.font = "10px sans-serif"; g.lineWidth = 1;
  const step = niceStep(n - s);
  for (let lon = Math.ceil(w / step) * step; lon <= e; lon += step) {
    g.beginPath(); g.moveTo(X(lon), 0); g.lineTo(X(lon), c.height); g.stroke(); g.fillText(lon.toFixed(decimals(step)) + "°", X(lon) + 2, c.height - 3);
  }
  for (let lat = Math.ceil(s / step) * step; lat <= n; lat += step) {
    g.beginPath(); g.moveTo(0, Y(lat)); g.lineTo(c.width, Y(lat)); g.stroke(); g.fillText(lat.toFixed(decimals(step)) + "°", 2, Y(lat) - 2);
  }
  let f = null; try { f = filters().bbox; } catch (err) { f = null; }
  for (const b of [f, state.dragBox]) {
    if (!b) continue;
    g.setLineDash([5, 4]); g.strokeStyle = "#d99a20"; g.lineWidth = 2;
    g.strokeRect(X(b[0]), Y(b[3]), X(b[2]) - X(b[0]), Y(b[1]) - Y(b[3])); g.setLineDash([]);
  }
  state.hits.forEach((h, i) => {
    if (!h.bbox) return;
    const [x0, y0, x1, y1] = [X(h.bbox[0]), Y(h.bbox[3]), X(h.bbox[2]), Y(h.bbox[1])];
    const hot = state.hover === i;
    g.fillStyle = hot ? "#f2b134cc" : "#1f78b455"; g.strokeStyle = hot ? "#b37400" : "#1f78b4"; g.lineWidth = hot ? 2 : 1;
    const wpx = Math.max(x1 - x0, 5), hpx = Math.max(y1 - y0, 5);
    g.fillRect(x0, y0, wpx, hpx); g.strokeRect(x0, y0, wpx, hpx);
    g.fillStyle = "#123"; g.fillText(String(h.rank), x0 + wpx + 1, y0 + 8);
  });
}
function niceStep(range) { const raw = range / 6, p = Math.pow(10, Math.floor(Math.log10(raw))); const m = raw / p; return (m < 2 ? 1 : m < 5 ? 2 : 5) * p; }
function decimals(step) { return Math.max(0, -Math.floor(Math.log10(step))); }

function lonLatAt(ev) {
  const c = $("map"), r = c.getBoundingClientRect();
  const x = (ev.clientX - r.left) / r.width, y = (ev.clientY - r.top) / r.height;
  return [view.w + x * (view.e - view.w), view.n - y * (view.n - view.s)];
}
let dragStart = null;
$("map").addEventListener("mousedown", (ev) => { dragStart = lonLatAt(ev); });
$("map").addEventListener("mousemove", (ev) => {
  if (!dragStart) return;
  const p = lonLatAt(ev);
  state.dragBox = [Math.min(dragStart[0], p[0]), Math.min(dragStart[1], p[1]), Math.max(dragStart[0], p[0]), Math.max(dragStart[1], p[1])];
  drawMap(view);
});
$("map").addEventListener("mouseup", () => {
  if (state.dragBox) {
    const r = (v) => Math.round(v * 1e5) / 1e5;
    ["west", "south", "east", "north"].forEach((id, i) => { $(id).value = r(state.dragBox[i]); });
    state.dragBox = null; search();
  }
  dragStart = null;
});

// ---- exports ----
function download(name, type, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type })); a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
function geojson() {
  return {
    type: "FeatureCollection",
    features: state.hits.map((h) => ({
      type: "Feature",
      geometry: h.bbox ? (h.bbox[0] === h.bbox[2] && h.bbox[1] === h.bbox[3] ? { type: "Point", coordinates: [h.bbox[0], h.bbox[1]] }
        : { type: "Polygon", coordinates: [[[h.bbox[0], h.bbox[1]], [h.bbox[2], h.bbox[1]], [h.bbox[2], h.bbox[3]], [h.bbox[0], h.bbox[3]], [h.bbox[0], h.bbox[1]]]] })
        : (h.lon !== null ? { type: "Point", coordinates: [h.lon, h.lat] } : null),
      properties: { rank: h.rank, id: h.id, score: h.score, timestamp: h.timestamp, query: state.text, like: state.like.join(";"), unlike: state.unlike.join(";") },
    })),
  };
}
function csv() {
  const q = (v) => (v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const rows = [["rank", "id", "score", "timestamp", "lon", "lat", "west", "south", "east", "north"]];
  for (const h of state.hits) rows.push([h.rank, h.id, h.score, h.timestamp, h.lon, h.lat, ...(h.bbox || [null, null, null, null])]);
  return rows.map((r) => r.map(q).join(",")).join("\n") + "\n";
}
$("export-geojson").onclick = () => download("results.geojson", "application/geo+json", JSON.stringify(geojson(), null, 1));
$("export-csv").onclick = () => download("results.csv", "text/csv", csv());

// ---- wiring ----
$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
$("false-colour").addEventListener("change", () => { for (const img of document.querySelectorAll("#results img")) img.src = thumbUrl(img.alt); });
$("k").addEventListener("change", () => { if (state.hits.length) search(); });
for (const id of ["start", "end"]) $(id).addEventListener("change", () => { if (state.hits.length) search(); });
$("clear-filters").onclick = () => { for (const id of ["west", "south", "east", "north", "start", "end"]) $(id).value = ""; if (state.hits.length) search(); else drawMap(); };
$("clear-examples").onclick = () => { state.like = []; state.unlike = []; renderExamples(); if ($("q").value.trim()) search(); else { state.hits = []; render(); } };
window.spectraclip = { state, geojson, csv, search };
drawMap();
