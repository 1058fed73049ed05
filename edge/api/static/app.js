// Edge appliance dashboard: one WebSocket (/api/live) for status, notices and frames.
// No build step, no dependencies. Frames are decoded off the main thread
// (createImageBitmap) and drawn once per animation frame, newest only, so 8 cameras
// stay smooth; tables are rebuilt only when their data changed.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  token: null, ws: null, backoff: 500, opened: false,
  status: null, history: {}, gaps: {}, jobs: [], statusAt: 0,
  tiles: new Map(), pending: new Map(), lidarTopic: null, watchKey: "",
  fps: 10, rendered: {}, drawScheduled: false,
};
const HISTORY = 120;
const TIMELINE_S = 600; // the continuity strip shows the last 10 minutes

// -- formatting ----------------------------------------------------------------------
function fmtBytes(n) {
  if (n == null || isNaN(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + " " + u[i];
}
function fmtNum(n, d = 0) { return n == null || isNaN(n) ? "–" : Number(n).toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: d }); }
function fmtDur(s) {
  if (s == null || isNaN(s)) return "–";
  s = Math.max(0, s);
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  if (s < 86400 * 2) return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return (s / 86400).toFixed(1) + " d";
}
function ageOf(ns) { return ns ? (Date.now() - ns / 1e6) / 1000 : null; }
function fmtTime(ns) { return ns ? new Date(ns / 1e6).toLocaleString(undefined, { hour12: false }) : "–"; }

// -- tiny DOM helpers (no inline styles: the page runs under a strict CSP) ------------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid != null) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
function setRows(tbody, rows, emptyText, cols) {
  tbody.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { class: "empty", colspan: cols }, emptyText))]));
}
function changed(key, data) {
  const text = JSON.stringify(data);
  if (S.rendered[key] === text) return false;
  S.rendered[key] = text; return true;
}
function pill(el, text, level) { el.textContent = text; el.className = "pill pill-" + level; }
function toast(message) {
  const t = $("toast"); t.textContent = message; t.classList.remove("hidden");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => t.classList.add("hidden"), 6000);
}

// -- token and HTTP ------------------------------------------------------------------
function initToken() {
  const url = new URL(location.href);
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  const given = url.searchParams.get("token") || fromHash;
  if (given) {
    sessionStorage.setItem("edge-token", given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search);
  }
  S.token = sessionStorage.getItem("edge-token");
}
function withToken(path) { return S.token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(S.token) : path; }
function askToken() { $("token-panel").classList.remove("hidden"); $("token-input").focus(); }
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (S.token) headers.Authorization = "Bearer " + S.token;
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) { askToken(); throw new Error("this appliance needs its API token"); }
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error((body && body.message) || res.statusText);
  return body;
}

// -- live connection -----------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + location.host + withToken("/api/live"));
  ws.binaryType = "arraybuffer";
  S.ws = ws; S.opened = false;
  ws.onopen = () => { S.opened = true; S.backoff = 500; pill($("link"), "live", "ok"); S.watchKey = ""; sendWatch(); };
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onText(JSON.parse(ev.data)) : onFrame(ev.data));
  ws.onclose = () => {
    pill($("link"), "reconnecting…", "warn");
    if (!S.opened) api("/api/status").catch(() => {});  // shows the token prompt on a 401
    setTimeout(connect, S.backoff);
    S.backoff = Math.min(S.backoff * 2, 10000);
  };
}
function sendWatch() {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
  const topics = document.hidden ? [] : [...S.tiles.keys(), ...(S.lidarTopic ? [S.lidarTopic] : [])];
  const key = topics.join(",") + "@" + S.fps;
  if (key === S.watchKey) return;
  S.watchKey = key;
  S.ws.send(JSON.stringify({ watch: topics, fps: S.fps }));
}
function onText(msg) {
  if (msg.type === "hello") {
    if (msg.vehicle) $("vehicle").textContent = msg.vehicle;
    S.history = {};
    for (const [t, hst] of Object.entries(msg.history || {})) S.history[t] = hst.records_per_s.slice(-HISTORY);
    if (msg.jobs) { S.jobs = msg.jobs; renderJobs(); }
    if (msg.status) onStatus(msg.status, false);
  } else if (msg.type === "status") onStatus(msg.status, true);
  else if (msg.type === "jobs") { S.jobs = msg.jobs; renderJobs(); renderDrives(); }
  else if (msg.type === "records") noteRecords(msg.topics);
  else if (msg.type === "error") console.warn("live:", msg.message);
}

// -- frames --------------------------------------------------------------------------
function onFrame(buffer) {
  const view = new DataView(buffer);
  const n = view.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const blob = new Blob([new Uint8Array(buffer, 4 + n)], { type: header.mime });
  // decode off the main thread, already scaled to the tile's on-screen size: a 1080p frame
  // costs the compositor no more than a thumbnail
  createImageBitmap(blob, decodeSize(header)).then((bitmap) => {
    const old = S.pending.get(header.topic);
    if (old) old.bitmap.close();
    S.pending.set(header.topic, { bitmap, header });
    if (!S.drawScheduled) { S.drawScheduled = true; requestAnimationFrame(drawPending); }
  }).catch(() => {});
}
function decodeSize(header) {
  const tile = S.tiles.get(header.topic);
  const target = tile ? tile.el : header.topic === S.lidarTopic ? $("lidar-canvas") : null;
  if (!target || !header.width || !header.height) return {};
  const dpr = window.devicePixelRatio || 1;
  const width = Math.round(Math.min(header.width, Math.max(64, target.clientWidth * dpr)));
  if (width >= header.width) return {};
  return { resizeWidth: width, resizeHeight: Math.max(1, Math.round(header.height * width / header.width)), resizeQuality: "medium" };
}
function drawPending() {
  S.drawScheduled = false;
  for (const [topic, { bitmap, header }] of S.pending) {
    if (topic === S.lidarTopic) drawLidar(bitmap, header);
    const tile = S.tiles.get(topic);
    if (tile) drawTile(tile, bitmap, header);
    bitmap.close();
  }
  S.pending.clear();
}
function drawTile(tile, bitmap, header) {
  const c = tile.canvas;
  if (c.width !== bitmap.width || c.height !== bitmap.height) { c.width = bitmap.width; c.height = bitmap.height; }
  tile.ctx.drawImage(bitmap, 0, 0);
  const now = performance.now();
  tile.times.push(now);
  while (tile.times.length && now - tile.times[0] > 3000) tile.times.shift();
  tile.last = now; tile.header = header; tile.frames += 1;
  tile.el.dataset.frames = tile.frames; tile.el.dataset.offset = header.offset;
  tile.wait.classList.add("hidden");
  updateTileStats(tile);
}
function updateTileStats(tile) {
  const hd = tile.header;
  if (!hd) return;
  const fps = tile.times.length > 1 ? (tile.times.length - 1) / ((tile.times[tile.times.length - 1] - tile.times[0]) / 1000) : 0;
  const age = ageOf(hd.timestamp_ns);
  tile.stats.textContent = `${hd.width || "?"}×${hd.height || "?"} · ${fps.toFixed(1)} fps · ${age == null ? "–" : (age * 1000).toFixed(0) + " ms"} · #${hd.offset}`;
  tile.el.classList.toggle("stale", performance.now() - tile.last > 3000);
}
function ensureTiles(cameraTopics) {
  const grid = $("cameras");
  if (!cameraTopics.length) {
    if (S.tiles.size || !grid.querySelector(".empty")) { S.tiles.clear(); grid.replaceChildren(h("div", { class: "empty" }, "No camera topics yet.")); }
    return;
  }
  const want = new Set(cameraTopics);
  for (const topic of [...S.tiles.keys()]) if (!want.has(topic)) { S.tiles.get(topic).el.remove(); S.tiles.delete(topic); }
  grid.querySelector(".empty")?.remove();
  for (const topic of cameraTopics) {
    if (S.tiles.has(topic)) continue;
    const canvas = h("canvas", { width: 640, height: 360 });
    const stats = h("span", { class: "cam-stats" }, "waiting");
    const wait = h("div", { class: "cam-wait" }, "waiting for frames…");
    const el = h("div", { class: "cam-tile", dataset: { topic, frames: 0 } }, canvas, wait,
      h("div", { class: "cam-label" }, h("span", { class: "name" }, topic.replace(/^camera\./, ""))), stats);
    el.title = topic;
    const tile = { el, canvas, ctx: canvas.getContext("2d"), stats, wait, times: [], last: 0, frames: 0, header: null };
    S.tiles.set(topic, tile);
  }
  const els = cameraTopics.map((t) => S.tiles.get(t).el);
  if (els.length !== grid.children.length || els.some((el, i) => grid.children[i] !== el)) grid.replaceChildren(...els);
  $("camera-count").textContent = cameraTopics.length + " stream" + (cameraTopics.length === 1 ? "" : "s");
}
function drawLidar(bitmap, header) {
  const c = $("lidar-canvas");
  if (c.width !== bitmap.width) { c.width = bitmap.width; c.height = bitmap.height; }
  c.getContext("2d").drawImage(bitmap, 0, 0);
  const age = ageOf(header.timestamp_ns);
  $("lidar-meta").textContent = `${header.topic} · #${header.offset} · ${age == null ? "" : (age * 1000).toFixed(0) + " ms"}`;
  $("lidar-canvas").dataset.offset = header.offset;
}

// -- status --------------------------------------------------------------------------
function noteRecords(topics) {
  for (const [name, info] of Object.entries(topics || {})) {
    const row = document.querySelector(`tr[data-topic="${CSS.escape(name)}"]`);
    if (row) row.dataset.end = info.next_offsets.join(",");
  }
}
function onStatus(status, append) {
  S.status = status; S.statusAt = Date.now();
  if (append) {
    for (const [name, t] of Object.entries(status.topics || {})) {
      const hst = S.history[name] || (S.history[name] = []);
      hst.push(t.records_per_s || 0);
      if (hst.length > HISTORY) hst.shift();
    }
  }
  const topics = status.topics || {};
  const cams = Object.keys(topics).filter((t) => topics[t].kind === "camera").sort();
  ensureTiles(cams);
  const lidars = Object.keys(topics).filter((t) => topics[t].kind === "lidar").sort();
  renderLidarSelect(lidars);
  sendWatch();
  pill($("broker"), status.ok ? "broker ok" : "broker down", status.ok ? "ok" : "bad");
  if (!status.ok && status.error) $("broker").title = status.error;
  renderDisk(status.disk, status.broker);
  renderMirror(status.mirror);
  renderDrivers(status.drivers || {});
  renderTopics(topics);
  renderDrives();
  renderGroups(status.groups || {});
}
function renderLidarSelect(lidars) {
  const sel = $("lidar-select");
  if (changed("lidars", lidars)) {
    sel.replaceChildren(...lidars.map((t) => h("option", { value: t }, t)));
    if (!lidars.includes(S.lidarTopic)) S.lidarTopic = lidars[0] || null;
    if (S.lidarTopic) sel.value = S.lidarTopic;
    if (!lidars.length) $("lidar-meta").textContent = "no point clouds yet";
  }
}
function renderDisk(disk, broker) {
  if (!disk) return;
  const total = disk.total_bytes || 1;
  const used = total - disk.free_bytes;
  const data = Math.min(disk.data_bytes, used);
  $("gauge-data").style.width = (100 * data / total).toFixed(2) + "%";
  $("gauge-other").style.width = (100 * (used - data) / total).toFixed(2) + "%";
  $("gauge-minfree").style.left = (100 * (total - (disk.min_free_bytes || 0)) / total).toFixed(2) + "%";
  const pct = 100 * used / total;
  pill($("disk-pill"), `disk ${pct.toFixed(0)}%`, disk.free_bytes < (disk.min_free_bytes || 0) ? "bad" : pct > 85 ? "warn" : "ok");
  $("disk-summary").textContent = `${fmtBytes(used)} of ${fmtBytes(total)}`;
  const deletions = Object.values((broker && broker.deletions) || {}).reduce((a, b) => a + b, 0);
  const facts = [
    ["free", fmtBytes(disk.free_bytes)],
    ["appliance data", fmtBytes(disk.data_bytes)],
    ["writing", fmtBytes(disk.write_bytes_per_s) + "/s"],
    ["holding", disk.held_s == null ? "–" : fmtDur(disk.held_s) + " of data"],
    ["retention horizon", disk.retention_horizon_h == null ? "– (idle)" : fmtDur(disk.retention_horizon_h * 3600) + " at this rate"],
    ["guard keeps free", fmtBytes(disk.min_free_bytes)],
    ["segments deleted", fmtNum(deletions)],
    ["unshipped deleted", fmtBytes((broker && broker.unshipped_deleted_bytes) || 0)],
  ];
  if (changed("disk", facts)) $("disk-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
function renderMirror(mirror) {
  if (!changed("mirror", mirror)) return;
  if (!mirror) {
    pill($("mirror-pill"), "mirror off", "warn"); $("mirror-state").textContent = "not reporting";
    $("mirror-facts").replaceChildren(); $("mirror-lag").tBodies[0].replaceChildren(); return;
  }
  const link = mirror.link ?? mirror.link_state ?? mirror.state ?? "?";
  const up = [true, "up", "connected", "online", "running"].includes(link);
  pill($("mirror-pill"), "mirror " + (up ? "up" : String(link)), up ? "ok" : "bad");
  $("mirror-state").textContent = "link " + String(link) + (mirror.budget_exhausted ? " · uplink budget exhausted" : "");
  $("mirror-state").title = mirror.budget_warning || "";
  const facts = Object.entries(mirror).filter(([k, v]) => typeof v === "number" && k !== "time_ns")
    .map(([k, v]) => [k.replace(/_/g, " "), /bytes/.test(k) ? fmtBytes(v) + (/per_s|rate/.test(k) ? "/s" : "") : fmtNum(v, 1)]);
  $("mirror-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const rows = Array.isArray(mirror.lag) ? mirror.lag : Array.isArray(mirror.partitions) ? mirror.partitions : [];
  $("mirror-lag").tBodies[0].replaceChildren(...rows.map((r) => h("tr", {},
    h("td", { class: "mono" }, `${r.topic}/${r.partition ?? 0}`),
    h("td", { class: "num" }, fmtNum(r.records ?? r.lag_records) + " rec"),
    h("td", { class: "num" }, fmtBytes(r.bytes ?? r.lag_bytes)),
    h("td", { class: "num" }, fmtDur(r.oldest_age_s ?? r.age_s)))));
}
function driverLevel(d) {
  if (ageOf(d.time_ns) > 5) return ["stale", "warn"];
  if (d.state === "running") return ["running", "ok"];
  if (["sensor_lost", "reconnecting", "starting"].includes(d.state)) return [d.state, "warn"];
  return [d.state || "?", "bad"];
}
// Rows are keyed and updated in place (text only where it changed), so a status update
// every second costs a few text writes, not a rebuilt table and a full re-layout.
function setText(el, text) { text = String(text); if (el.textContent !== text) el.textContent = text; }
function setAttr(el, name, value) { if (el.getAttribute(name) !== value) el.setAttribute(name, value); }
function keyedRows(tbody, items, cols, emptyText, make, fill) {
  if (!items.length) { if (!tbody.querySelector(".empty")) setRows(tbody, [], emptyText, cols); return; }
  const existing = new Map([...tbody.rows].filter((r) => r.dataset.key).map((r) => [r.dataset.key, r]));
  const rows = items.map(([key, data]) => {
    let tr = existing.get(key);
    if (!tr) { tr = make(key, data); tr.dataset.key = key; }
    fill(tr, data, key);
    return tr;
  });
  if (rows.length !== tbody.rows.length || rows.some((r, i) => tbody.rows[i] !== r)) tbody.replaceChildren(...rows);
}
function cells(n, numeric) { return Array.from({ length: n }, (_, i) => h("td", { class: numeric.includes(i) ? "num" : null })); }
function renderDrivers(drivers) {
  keyedRows($("drivers").tBodies[0], Object.entries(drivers).sort(), 9, "No driver has reported yet.",
    () => {
      const tr = h("tr", {}, ...cells(9, [3, 4, 5, 6, 7, 8]));
      tr.cells[0].className = "mono";
      tr.cells[1].append(h("span", { class: "kind" }));
      tr.cells[2].append(h("span", { class: "state" }));
      return tr;
    },
    (tr, d, name) => {
      const [label, level] = driverLevel(d);
      const drops = Object.entries(d.dropped || {});
      const dropped = drops.reduce((a, [, v]) => a + v, 0);
      const c = tr.cells;
      setText(c[0], name);
      setText(c[1].firstChild, d.kind || "?"); setAttr(c[1].firstChild, "class", "kind kind-" + d.kind);
      setText(c[2].firstChild, label); setAttr(c[2].firstChild, "class", "state state-" + level);
      setAttr(c[2].firstChild, "title", d.last_error || "");
      setText(c[3], fmtNum(d.rate_hz, 1) + " Hz"); setText(c[4], fmtNum(d.captured)); setText(c[5], fmtNum(d.published));
      setText(c[6], fmtNum(dropped)); setAttr(c[6], "class", "num" + (dropped ? " warn" : ""));
      setAttr(c[6], "title", drops.map(([k, v]) => `${k}: ${v}`).join(", "));
      setText(c[7], `${d.queue_depth ?? "–"}/${d.queue_size ?? "–"}`);
      setText(c[8], d.last_capture_ns ? fmtDur(ageOf(d.last_capture_ns)) + " ago" : "–");
    });
}
const SVG = "http://www.w3.org/2000/svg";
function sparkline() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("viewBox", "0 0 170 22"); svg.setAttribute("preserveAspectRatio", "none");
  svg.append(document.createElementNS(SVG, "polygon"), document.createElementNS(SVG, "polyline"));
  return svg;
}
function drawSpark(svg, values) {
  const w = 170, hgt = 22;
  const vals = values.length ? values : [0];
  const max = Math.max(...vals, 1e-9);
  // a fixed window once there is history; a short history fills at least a quarter of it
  const span = Math.min(HISTORY, Math.max(vals.length, HISTORY / 4));
  const step = w / Math.max(span - 1, 1), x0 = w - (vals.length - 1) * step;
  const pts = vals.map((v, i) => `${(x0 + i * step).toFixed(1)},${(hgt - 1 - (v / max) * (hgt - 3)).toFixed(1)}`).join(" ");
  setAttr(svg.lastChild, "points", pts);
  setAttr(svg.firstChild, "points", `${x0.toFixed(1)},${hgt} ${pts} ${w},${hgt}`);
}
const KIND_ORDER = { camera: 0, lidar: 1, other: 2, json: 3, internal: 4 };
function renderTopics(topics) {
  const names = Object.keys(topics).sort((a, b) => (KIND_ORDER[topics[a].kind] ?? 2) - (KIND_ORDER[topics[b].kind] ?? 2) || a.localeCompare(b));
  keyedRows($("topics").tBodies[0], names.map((n) => [n, topics[n]]), 11, "No topics yet.",
    (name) => {
      const tr = h("tr", { dataset: { topic: name } }, ...cells(11, [3, 4, 5, 6, 7, 8, 9]));
      tr.cells[0].className = "mono";
      tr.cells[1].append(h("span", { class: "kind" }));
      tr.cells[2].className = "spark-col";
      tr.cells[2].append(sparkline());
      tr.cells[10].className = "timeline-col";
      tr.cells[10].append(timelineStrip());
      return tr;
    },
    (tr, t, name) => {
      const c = tr.cells;
      setText(c[0], name);
      setText(c[1].firstChild, t.kind); setAttr(c[1].firstChild, "class", "kind kind-" + t.kind);
      drawSpark(c[2].firstChild, S.history[name] || []);
      setText(c[3], fmtNum(t.records_per_s, 1)); setText(c[4], fmtNum((t.bytes_per_s || 0) / 1e6, 2));
      setText(c[5], fmtNum(t.records)); setText(c[6], fmtBytes(t.bytes));
      setText(c[7], t.oldest_ns ? fmtDur(ageOf(t.oldest_ns)) : "–");
      setAttr(c[7], "title", t.retention_age ? "retention " + t.retention_age : "no age retention");
      setText(c[8], t.partitions.length);
      setText(c[9], t.open_gap_ms ? "stalled" : t.gaps == null ? "–" : fmtNum(t.gaps));
      setAttr(c[9], "class", "num" + (t.open_gap_ms || t.gaps ? " warn" : ""));
      setAttr(c[9], "title", t.last_gap ? `last gap ${(t.last_gap.length_ms / 1000).toFixed(1)} s at ${fmtTime(t.last_gap.start_ns)}`
        : t.gaps == null ? "no driver reports on this topic" : "no gap");
      drawTimeline(c[10].firstChild, name, t);
    });
}
// The continuity strip: the last TIMELINE_S seconds of a topic, gaps marked. Its data is the
// continuity health each status carries (drivers/continuity.py): every distinct last_gap seen
// since the page opened is kept (two gaps between two status updates show as the later one;
// the gaps column counts them all), and a stall going on (open_gap_ms) runs up to now.
function timelineStrip() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "timeline"); svg.setAttribute("viewBox", `0 0 ${TIMELINE_S} 10`); svg.setAttribute("preserveAspectRatio", "none");
  const base = document.createElementNS(SVG, "rect");
  base.setAttribute("class", "timeline-base"); base.setAttribute("y", "2"); base.setAttribute("height", "6");
  svg.append(base);
  return svg;
}
function drawTimeline(svg, name, t) {
  const nowMs = Date.now(), fromMs = nowMs - TIMELINE_S * 1000;
  const seen = S.gaps[name] || (S.gaps[name] = new Map());
  if (t.last_gap && t.last_gap.start_ns) seen.set(String(t.last_gap.start_ns), t.last_gap.length_ms);
  const gaps = [...seen].map(([start, length]) => ({ start: Number(start) / 1e6, length: Number(length), open: false }));
  if (t.open_gap_ms) gaps.push({ start: nowMs - t.open_gap_ms, length: t.open_gap_ms, open: true });
  const x = (ms) => Math.max(0, Math.min(TIMELINE_S, (ms - fromMs) / 1000));
  const base = svg.firstChild;
  const sinceMs = t.oldest_ns ? Math.max(fromMs, t.oldest_ns / 1e6) : nowMs;
  setAttr(base, "x", x(sinceMs).toFixed(2)); setAttr(base, "width", (TIMELINE_S - x(sinceMs)).toFixed(2));
  setAttr(base, "class", "timeline-base" + (t.gaps == null ? " unknown" : ""));
  const shown = gaps.filter((g) => g.start + g.length >= fromMs);
  for (const [start] of seen) if (Number(start) / 1e6 + seen.get(start) < fromMs) seen.delete(start); // out of the window
  while (svg.childNodes.length - 1 > shown.length) svg.lastChild.remove();
  shown.forEach((g, i) => {
    let rect = svg.childNodes[i + 1];
    if (!rect) { rect = document.createElementNS(SVG, "rect"); rect.setAttribute("y", "0"); rect.setAttribute("height", "10"); rect.append(document.createElementNS(SVG, "title")); svg.append(rect); }
    const x0 = x(g.start), x1 = x(g.start + g.length);
    setAttr(rect, "x", x0.toFixed(2)); setAttr(rect, "width", Math.max(1.5, x1 - x0).toFixed(2));
    setAttr(rect, "class", g.open ? "gap open" : "gap");
    rect.dataset.startMs = String(Math.round(g.start)); rect.dataset.lengthMs = String(g.length);
    setText(rect.firstChild, `${g.open ? "stalled for" : "gap of"} ${(g.length / 1000).toFixed(1)} s at ${fmtTime(g.start * 1e6)}`);
  });
  svg.dataset.gaps = String(shown.length);
}
function jobsOfDrive(name) { return S.jobs.filter((j) => j.params && j.params.drive === name); }
function progressBar(job) {
  const bar = h("div", { class: "progress" + (job.state === "running" && job.progress == null ? " indeterminate" : "") }, h("div"));
  bar.firstChild.style.width = (100 * (job.state === "succeeded" ? 1 : job.progress || 0)).toFixed(1) + "%";
  return bar;
}
function exportTopics(drive, format) {
  const topics = S.status ? S.status.topics : {};
  const names = Object.keys(drive.topics || {}).length ? Object.keys(drive.topics) : Object.keys(topics).filter((t) => !t.startsWith("_"));
  const want = format === "mp4" ? ["camera"] : format === "pcd" || format === "ply" ? ["lidar"] : null;
  return names.filter((t) => !want || want.includes((topics[t] || {}).kind));
}
async function startExport(drive, button) {
  const format = $("export-format").value;
  const topics = exportTopics(drive, format);
  if (!topics.length) { toast(`drive ${drive.name} has no topics to export as ${format}`); return; }
  button.disabled = true;
  try {
    const job = await api("/api/jobs/export", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ drive: drive.name, topics, format }) });
    S.jobs = [job, ...S.jobs.filter((j) => j.id !== job.id)];
    renderJobs(); renderDrives();
  } catch (err) { toast("export: " + err.message); } finally { button.disabled = false; }
}
function renderDrives() {
  const drives = (S.status && S.status.drives) || [];
  if (!changed("drives", [drives, S.jobs.map((j) => [j.id, j.state, j.progress])])) return;
  const rows = [...drives].reverse().map((d) => {
    const size = Object.values(d.topics || {}).reduce((a, t) => a + (t.bytes || 0), 0);
    const job = jobsOfDrive(d.name)[0];
    const button = h("button", { type: "button" }, "Export");
    button.addEventListener("click", () => startExport(d, button));
    return h("tr", { dataset: { drive: d.name } },
      h("td", { class: "mono" }, d.name, d.open ? h("span", { class: "kind kind-camera" }, " recording") : null,
        d.interrupted ? h("span", { class: "kind warn", title: "ended by a power cut or crash" }, " interrupted") : null),
      h("td", {}, fmtTime(d.start_ns)),
      h("td", { class: "num" }, fmtDur(d.duration_s ?? ageOf(d.start_ns))), h("td", { class: "num" }, fmtBytes(size)),
      h("td", {}, button, job ? h("span", { class: "muted" }, " ", job.state, " ") : null, job && !["failed", "cancelled"].includes(job.state) ? progressBar(job) : null));
  });
  setRows($("drives").tBodies[0], rows, (S.status && S.status.drives_error) || "No drives recorded.", 5);
}
function renderJobs() {
  if (!changed("jobs", S.jobs)) return;
  const rows = S.jobs.slice(0, 20).map((j) => {
    const what = `${j.kind}${j.params.format ? " " + j.params.format : ""}${j.params.drive ? " · " + j.params.drive : ""}`;
    const actions = [];
    if (j.state === "running" || j.state === "queued") {
      const b = h("button", { type: "button" }, "Cancel");
      b.addEventListener("click", () => api(`/api/jobs/${j.id}/cancel`, { method: "POST" }).catch((e) => toast(e.message)));
      actions.push(b);
    }
    for (const f of (j.result && j.result.files) || []) {
      actions.push(h("a", { href: withToken(`/api/jobs/${j.id}/files/${encodeURIComponent(f.name)}`), download: f.name }, f.name), " ");
    }
    return h("tr", { dataset: { job: j.id } },
      h("td", { class: "mono", title: j.id }, what, h("span", { class: "job-note" + (j.error ? " bad" : "") }, j.error || j.message || "")),
      h("td", {}, h("span", { class: "state state-" + ({ succeeded: "ok", running: "ok", queued: "warn", failed: "bad", cancelled: "warn" }[j.state]), title: j.error || j.message }, j.state)),
      h("td", {}, progressBar(j)),
      h("td", {}, ...actions));
  });
  setRows($("jobs").tBodies[0], rows, "No jobs.", 4);
}
function renderGroups(groups) {
  if (!changed("groups", groups)) return;
  const rows = Object.entries(groups).sort().map(([name, g]) => h("tr", {},
    h("td", { class: "mono" }, name), h("td", { class: "num" }, fmtNum(g.members)), h("td", { class: "num" + (g.lag > 1000 ? " warn" : "") }, fmtNum(g.lag))));
  setRows($("groups").tBodies[0], rows, "No groups.", 3);
}

// -- events (pinned windows, /api/events) ---------------------------------------------
async function loadEvents() {
  try { S.events = await api("/api/events"); renderEvents(); } catch (err) { /* shown by the status pills */ }
}
async function createEvent(button) {
  button.disabled = true;
  try {
    const ev = await api("/api/events", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label: $("event-label").value.trim() }) });
    toast(`event ${ev.id} pinned (${ev.start} to ${ev.end})`);
    $("event-label").value = "";
    await loadEvents();
  } catch (err) { toast("event: " + err.message); } finally { button.disabled = false; }
}
async function deleteEvent(id) {
  try { await api(`/api/events/${encodeURIComponent(id)}`, { method: "DELETE" }); await loadEvents(); }
  catch (err) { toast("event: " + err.message); }
}
function renderEvents() {
  const report = S.events || { events: [], pinned_bytes: 0 };
  if (!changed("events", report)) return;
  $("events-summary").textContent = `${report.events.length} pinned · ${fmtBytes(report.pinned_bytes)} in total`;
  const rows = [...report.events].reverse().map((e) => {
    const b = h("button", { type: "button" }, "Delete");
    b.addEventListener("click", () => deleteEvent(e.id));
    return h("tr", { dataset: { event: e.id } },
      h("td", { class: "mono", title: e.topics.join(", ") }, e.id, e.label ? h("span", { class: "muted" }, " ", e.label) : null),
      h("td", {}, h("span", { class: "state state-" + (e.lost_bytes ? "bad" : e.state === "recording" ? "warn" : "ok"),
        title: e.lost_bytes ? `${fmtBytes(e.lost_bytes)} deleted by the disk guard (disk critically full)` : "" }, e.state)),
      h("td", {}, `${e.start.slice(0, 19).replace("T", " ")} → ${e.end.slice(11, 19)}`),
      h("td", { class: "num" }, fmtBytes(e.pinned_bytes)), h("td", {}, b));
  });
  setRows($("events").tBodies[0], rows, "No events.", 5);
}

// -- start ---------------------------------------------------------------------------
function tick() {
  if (S.statusAt) {
    const age = (Date.now() - S.statusAt) / 1000;
    $("updated").textContent = `updated ${age < 2 ? "just now" : fmtDur(age) + " ago"} · ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
  }
  for (const tile of S.tiles.values()) updateTileStats(tile);
  if (S.opened && (S.eventsTick = (S.eventsTick || 0) + 1) % 5 === 1) loadEvents();
}
function main() {
  initToken();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    S.token = $("token-input").value.trim();
    sessionStorage.setItem("edge-token", S.token);
    $("token-panel").classList.add("hidden");
    if (S.ws) S.ws.close();
  });
  $("event-create").addEventListener("click", (ev) => createEvent(ev.currentTarget));
  $("lidar-select").addEventListener("change", (ev) => { S.lidarTopic = ev.target.value; sendWatch(); });
  $("fps-select").addEventListener("change", (ev) => { S.fps = Number(ev.target.value); sendWatch(); });
  document.addEventListener("visibilitychange", sendWatch);
  setInterval(tick, 1000);
  connect();
}
main();
