// The map workspace: layers (XYZ tiles from the served COGs), footprints, what is at a place, labels, learn, export.
// Everything comes from this server (Leaflet is vendored); query, target, filters and view live in the URL.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { q: params.get("q") || "", target: params.get("target") || "", who: params.get("who") || "",
  inView: params.get("inview") === "1", on: (params.get("layers") || "").split(",").filter(Boolean) };
const labelled = new Map();  // item id -> label, this session
let footprintLayer = null, highlight = null, lastQuery = "";

const map = L.map("map", { worldCopyJump: true, attributionControl: false });
const view = (params.get("view") || "").split(",").map(Number);
if (view.length === 3 && view.every(Number.isFinite)) map.setView([view[0], view[1]], view[2]);
else map.setView([48, 10], 4);

// an offline base: a graticule drawn on canvas tiles (no remote tiles). The step is the finest "nice" one whose
// lines stay >= 96 px apart at the zoom; a label is drawn every other tile row (longitudes) / column (latitudes),
// latitudes only within the map (|lat| <= 85) and longitudes wrapped into -180..180 on the world's copies.
const NICE = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 45, 90, 180];
const gridStep = (z) => NICE.find((s) => (s * 256 * 2 ** z) / 360 >= 96) || 180;
const degrees = (v, step) => {
  const d = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
  return `${(Math.abs(v) < step / 2 ? 0 : v).toFixed(d)}°`;
};
const Graticule = L.GridLayer.extend({ createTile(coords) {
  const c = document.createElement("canvas"); c.width = c.height = 256;
  const g = c.getContext("2d"); g.fillStyle = "#eef1f4"; g.fillRect(0, 0, 256, 256);
  const step = gridStep(coords.z);
  const nw = this._map.unproject([coords.x * 256, coords.y * 256], coords.z);
  const se = this._map.unproject([(coords.x + 1) * 256, (coords.y + 1) * 256], coords.z);
  g.strokeStyle = "#b8c2cc"; g.fillStyle = "#667"; g.font = "10px monospace";
  const labelLon = coords.y % 2 === 0, labelLat = coords.x % 2 === 0;
  for (let k = Math.ceil(nw.lng / step); k * step <= se.lng; k++) {
    const lon = k * step, p = this._map.project([0, lon], coords.z).x - coords.x * 256;
    g.beginPath(); g.moveTo(p, 0); g.lineTo(p, 256); g.stroke();
    if (labelLon) g.fillText(degrees(((lon + 540) % 360) - 180, step), p + 2, 10);
  }
  for (let k = Math.ceil(se.lat / step); k * step <= nw.lat; k++) {
    const lat = k * step;
    if (Math.abs(lat) > 85) continue;
    const p = this._map.project([lat, 0], coords.z).y - coords.y * 256;
    g.beginPath(); g.moveTo(0, p); g.lineTo(256, p); g.stroke();
    if (labelLat && p > 14) g.fillText(degrees(lat, step), 2, p - 2);
  }
  return c;
} });
const bases = { "graticule (offline)": new Graticule() };
const overlays = {};
const served = {};

function saveUrl() {
  const c = map.getCenter();
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.target) p.set("target", state.target);
  if (state.who) p.set("who", state.who);
  if (state.inView) p.set("inview", "1");
  const on = Object.keys(served).filter((n) => map.hasLayer(served[n]));
  if (on.length) p.set("layers", on.join(","));
  p.set("view", `${c.lat.toFixed(5)},${c.lng.toFixed(5)},${map.getZoom()}`);
  history.replaceState(null, "", `${location.pathname}?${p}`);
  const t = encodeURIComponent(state.target);
  $("export-geojson").href = `/export/labels.geojson?target=${t}`;
  $("export-parquet").href = `/export/labels.parquet?target=${t}`;
  $("export-probe").href = `/export/probe.json?target=${t}`;
}

function status(text) { $("status").textContent = text; }

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || r.status));
  return data;
}

function legend(info) {
  const div = document.createElement("div");
  div.innerHTML = `<b>${info.name}</b> <small>(${info.kind}, ${info.file})</small>`;
  for (const c of info.classes || []) div.innerHTML += `<div><span class="swatch" style="background:${c.colour}"></span>${c.name}</div>`;
  if (info.range) div.innerHTML += `<div><small>${info.ramp}: ${info.range[0]} – ${info.range[1]}</small></div>`;
  $("legend").appendChild(div);
}

async function loadLayers() {
  const info = await api("/layers");
  for (const lay of info.layers) {
    const b = lay.bounds;
    const t = L.tileLayer(`/tiles/${encodeURIComponent(lay.name)}/{z}/{x}/{y}.png`, { bounds: [[b[1], b[0]], [b[3], b[2]]],
      minZoom: 0, maxZoom: 22, minNativeZoom: lay.minzoom, maxNativeZoom: lay.maxzoom, opacity: lay.kind === "scene" ? 1 : 0.7,
      className: `layer-${lay.name}` });
    served[lay.name] = t;
    if (lay.kind === "scene") bases[`${lay.name} (natural colour)`] = t; else overlays[lay.name] = t;
    if (state.on.includes(lay.name) || (!state.on.length && lay.kind !== "scene")) t.addTo(map);
    legend(lay);
  }
  (bases[Object.keys(bases).find((k) => state.on.includes(k.split(" ")[0]))] || bases["graticule (offline)"]).addTo(map);
  footprintLayer = L.geoJSON(null, { style: { color: "#c60", weight: 1, fillOpacity: 0.05 },
    onEachFeature: (f, l) => l.on("click", (e) => { L.DomEvent.stopPropagation(e); showPoint(e.latlng, f.id); }) });
  overlays["footprints"] = footprintLayer.addTo(map);
  L.control.layers(bases, overlays, { collapsed: false }).addTo(map);
  if (!params.get("view")) {
    const all = info.layers.map((l) => l.bounds);
    if (info.index_bounds) all.push(info.index_bounds);
    if (all.length) {
      const w = Math.min(...all.map((x) => x[0])), s = Math.min(...all.map((x) => x[1]));
      const e = Math.max(...all.map((x) => x[2])), n = Math.max(...all.map((x) => x[3]));
      map.fitBounds([[s, w], [n, e]]);
    }
  }
  await loadFootprints();
}

async function loadFootprints() {
  const b = map.getBounds();
  const box = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(5)).join(",");
  const fc = await api(`/footprints?bbox=${box}&limit=2000`);
  footprintLayer.clearLayers(); footprintLayer.addData(fc);
}

function labelButtons(id, extra) {
  const t = state.target;
  return `<button data-label="positive" data-id="${id}" title="positive for '${t}'">👍</button>` +
    `<button data-label="negative" data-id="${id}" title="negative for '${t}'">👎</button>${extra || ""}`;
}

async function addLabel(id, label, latlng) {
  const body = { item_id: id, label: label, target: state.target, who: state.who, query: lastQuery };
  if (!state.target && (label === "positive" || label === "negative")) {
    const name = prompt("No target set: class name for this item?"); if (!name) return;
    body.label = name;
  }
  if (latlng) { body.lon = latlng.lng; body.lat = latlng.lat; }
  try {
    const lab = await api("/labels", body);
    labelled.set(lab.item_id, lab.label);
    document.querySelectorAll(`li[data-id="${CSS.escape(lab.item_id)}"]`).forEach((li) => li.classList.add("labelled"));
    status(`labelled ${lab.item_id}: ${lab.label}${lab.target ? " for " + lab.target : ""} (#${lab.id}; ${labelled.size} this session)`);
  } catch (err) { status(`label refused: ${err.message}`); }
}

document.addEventListener("click", (e) => {
  const b = e.target.closest("button[data-label]");
  if (b) { addLabel(b.dataset.id, b.dataset.label, null); return; }
  const s = e.target.closest("button[data-similar]");
  if (s) { search({ like: [s.dataset.similar] }); return; }
  if (e.target.closest("button[data-pin]")) { pin(); return; }
  const id = e.target.closest("li .id");
  if (id) zoomTo(id.closest("li").dataset.id);
});

function zoomTo(id) {
  let found = null;
  footprintLayer.eachLayer((l) => { if (l.feature && l.feature.id === id) found = l; });
  if (highlight) highlight.setStyle({ color: "#c60", weight: 1 });
  if (found) { highlight = found; found.setStyle({ color: "#f0f", weight: 3 }); map.fitBounds(found.getBounds(), { maxZoom: 14 }); }
  else api(`/items/${encodeURIComponent(id)}`).then((it) => {
    const m = it.metadata; if (m.minx != null) map.fitBounds([[m.miny, m.minx], [m.maxy, m.maxx]], { maxZoom: 14 });
  });
}

function rows(list, hits) {
  list.innerHTML = "";
  for (const h of hits) {
    const li = document.createElement("li"); li.dataset.id = h.id;
    if (labelled.has(h.id)) li.classList.add("labelled");
    const score = h.score !== undefined ? h.score.toFixed(3) : `p=${h.p.toFixed(3)}`;
    li.innerHTML = `<span class="id">${h.id}</span> <small>${score}</small> ` +
      labelButtons(h.id, ` <button data-similar="${h.id}" title="find similar">≈</button>`);
    list.appendChild(li);
  }
}

async function search(extra) {
  const body = { k: 50, ...(extra || {}) };
  if (!body.like && state.q) body.text = state.q;
  if (state.inView) { const b = map.getBounds(); body.filters = { bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()] }; }
  lastQuery = body.text || (body.like ? `like:${body.like.join(",")}` : "");
  try {
    const r = await api("/search", body);
    rows($("results"), r.hits);
    status(`${r.hits.length} hits for ${lastQuery} (${r.took_ms} ms)`);
  } catch (err) { status(`search failed: ${err.message}`); }
}

// One popup per click: a new click closes the last one (and an answer to an older click is dropped); a pinned
// popup stays until its own close button.
let clicks = 0, current = null;
async function showPoint(latlng, id) {
  const seq = ++clicks;
  const r = await api(`/point?lon=${latlng.lng.toFixed(6)}&lat=${latlng.lat.toFixed(6)}`);
  if (seq !== clicks) return;
  const item = id || r.item;
  let html = `<div class="popup"><div><b>${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}</b></div>`;
  html += `<div>item: <code>${item || "none"}</code></div><table>`;
  for (const [name, v] of Object.entries(r.layers)) {
    if (!v) continue;
    let text = "";
    if (v.kind === "classes") text = v.class ? `<b>${v.class}</b> ` + v.top.map((t) => `${t.class} ${t.p.toFixed(2)}`).join(", ") : "no data";
    else if (v.kind === "timeseries") text = trajectorySvg(v.trajectory);
    else if (v.kind === "change") text = `change: <b>${v.change ? "yes" : "no"}</b> (score ${v.values.change_score})`;
    else text = Object.entries(v.values).map(([k, x]) => `${k}: ${x}`).join(", ");
    html += `<tr><td>${name}</td><td>${text}</td></tr>`;
  }
  html += "</table>";
  if (item) html += `<div>${labelButtons(item)} <button data-similar="${item}">find similar</button></div>`;
  html += `<div><button data-pin title="keep this popup open">📌 pin</button></div>`;
  if (current) map.closePopup(current);
  current = L.popup({ maxWidth: 360 }).setLatLng(latlng).setContent(html + "</div>").openOn(map);
}

function pin() {
  if (!current) return;
  const html = current.getContent().replace(/<div><button data-pin[^]*?<\/div>/, "<div><small>pinned</small></div>");
  L.popup({ maxWidth: 360, autoClose: false, closeOnClick: false, className: "pinned" })
    .setLatLng(current.getLatLng()).setContent(html).addTo(map);
  map.closePopup(current); current = null;
}

// A time series' values at the clicked place: a line per date, missing dates (cloud) as grey crosses.
function trajectorySvg(traj) {
  const w = 240, h = 80, pad = 6;
  const vals = traj.map((t) => t.value).filter((x) => x !== null);
  if (!vals.length) return "every date missing";
  const lo = Math.min(...vals), hi = Math.max(...vals), span = hi > lo ? hi - lo : 1;
  const X = (i) => pad + (traj.length > 1 ? (i * (w - 2 * pad)) / (traj.length - 1) : (w - 2 * pad) / 2);
  const Y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / span;
  let path = "", marks = "";
  traj.forEach((t, i) => {
    if (t.value === null) { marks += `<text class="missing" x="${X(i)}" y="${h - 2}" text-anchor="middle" fill="#999">×<title>${t.date}: missing</title></text>`; return; }
    path += `${path ? "L" : "M"}${X(i).toFixed(1)},${Y(t.value).toFixed(1)}`;
    marks += `<circle cx="${X(i)}" cy="${Y(t.value)}" r="2.5" fill="#2a6"><title>${t.date}: ${t.value}</title></circle>`;
  });
  return `<svg class="trajectory" width="${w}" height="${h}"><path d="${path}" fill="none" stroke="#2a6"/>${marks}</svg>` +
    `<div><small>${traj[0].date} … ${traj[traj.length - 1].date}; ${lo.toFixed(3)}–${hi.toFixed(3)}</small></div>`;
}

map.on("click", (e) => showPoint(e.latlng));
map.on("moveend", () => { saveUrl(); if (footprintLayer) loadFootprints(); });
map.on("overlayadd overlayremove baselayerchange", saveUrl);

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.q = $("q").value.trim(); state.target = $("target").value.trim(); state.who = $("who").value.trim();
  state.inView = $("in-view").checked; saveUrl(); search();
});
for (const id of ["target", "who"]) $(id).addEventListener("change", () => { state[id] = $(id).value.trim(); saveUrl(); });
$("in-view").addEventListener("change", () => { state.inView = $("in-view").checked; saveUrl(); });

$("learn").addEventListener("click", async () => {
  const body = { target: state.target, k: 50, uncertain: 20 };
  if (state.inView) { const b = map.getBounds(); body.bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; }
  status("learning…");
  try {
    const r = await api("/learn", body);
    const acc = r.cv_accuracy === null ? "n/a (too few labels)" : `${(100 * r.cv_accuracy).toFixed(1)} % (${r.cv_folds}-fold)`;
    $("learn-result").textContent = `probe on ${r.n_train} labels ${JSON.stringify(r.counts)}: cross-validated accuracy ${acc}; ranked ${r.scored} items`;
    rows($("results"), r.top); rows($("uncertain"), r.uncertain);
    lastQuery = `learn:${state.target}`;
    status(`ranked by the probe of '${r.target || r.positive}'`);
  } catch (err) { status(`learn failed: ${err.message}`); }
});

$("q").value = state.q; $("target").value = state.target; $("who").value = state.who; $("in-view").checked = state.inView;
loadLayers().then(() => { saveUrl(); if (state.q) search(); }).catch((err) => status(`could not load layers: ${err.message}`));
