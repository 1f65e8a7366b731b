// The page of `efficient-sam2 serve`: plain JavaScript over the HTTP API (no build step, nothing from the network).
"use strict";

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------------------------ state
const app = {
  token: null,            // sent as a Bearer header; images and the event stream use the cookie
  video: null,            // {video_id, num_frames, width, height}
  frame: 0,
  objects: [],            // object ids, in creation order
  active: null,           // the object that clicks go to
  prompts: new Map(),     // "frame:obj" -> {points: [[x, y]], labels: [1|0], box: [x0, y0, x1, y1] | null}
  tracked: new Set(),     // frames with masks
  prompted: new Map(),    // frame -> Set of object ids prompted there
  maskVersion: new Map(), // frame -> counter, to refetch a mask after it changed
  busy: false,
  events: null,
  candidates: [],
  drawToken: 0,
};

// DAVIS / PASCAL-VOC palette: the colour of object id i (same as the mask PNGs)
function paletteColour(i) {
  let r = 0, g = 0, b = 0;
  for (let level = 0; level < 8; level++) {
    r |= ((i >> (3 * level)) & 1) << (7 - level);
    g |= ((i >> (3 * level + 1)) & 1) << (7 - level);
    b |= ((i >> (3 * level + 2)) & 1) << (7 - level);
  }
  return [r, g, b];
}
const css = (rgb, a = 1) => `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${a})`;

// ------------------------------------------------------------------------------------------------ API
function headers(extra = {}) {
  const h = Object.assign({}, extra);
  if (app.token) h["Authorization"] = "Bearer " + app.token;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) { askToken(); throw new Error("the token is missing or wrong"); }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || `${method} ${path}: HTTP ${res.status}`);
  return data;
}

const vpath = (suffix = "") => `/api/videos/${app.video.video_id}${suffix}`;

function setStatus(text, state = "ready") {
  const s = $("status");
  s.textContent = text;
  s.dataset.state = state;
}

function fail(err) {
  console.error(err);
  setStatus(String(err.message || err), "error");
}

// ------------------------------------------------------------------------------------------------ start
async function start() {
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    app.token = params.get("token");
    sessionStorage.setItem("efficient-sam2-token", app.token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  } else {
    app.token = sessionStorage.getItem("efficient-sam2-token");
  }
  bindControls();
  let config;
  try {
    config = await api("GET", "/api/config");
  } catch (err) {
    return fail(err);
  }
  $("model-info").textContent = `${config.model} · ${config.image_size} px · ${config.device}`;
  app.maxUploadMb = config.max_upload_mb;
  document.querySelector(`input[name=method][value=${config.efficient_default ? "efficient" : "dense"}]`).checked = true;
  const wanted = new URLSearchParams(location.hash.slice(1)).get("v");
  if (wanted) {
    try {
      const info = await api("GET", `/api/videos/${wanted}`);
      return openVideo(info);
    } catch (err) { /* gone: fall through */ }
  }
  if (config.video) return openVideo(config.video);
  setStatus("Ready: open a video");
}

function askToken() {
  const dlg = $("token-dialog");
  if (dlg.open) return;
  dlg.showModal();
  $("token-ok").onclick = () => {
    const v = $("token-input").value.trim();
    const m = v.match(/[?&]token=([^&#]+)/);
    app.token = m ? decodeURIComponent(m[1]) : v;
    sessionStorage.setItem("efficient-sam2-token", app.token);
    location.replace(location.pathname + "?token=" + encodeURIComponent(app.token));
  };
}

// ------------------------------------------------------------------------------------------------ video
function upload(file) {
  if (app.busy) return;
  if (app.maxUploadMb && file.size > app.maxUploadMb * 1024 * 1024) {
    return fail(new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; this server accepts up to ` +
                          `${app.maxUploadMb} MB (--max-upload-mb)`));
  }
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/videos");
  if (app.token) xhr.setRequestHeader("Authorization", "Bearer " + app.token);
  const bar = $("upload-bar");
  bar.hidden = false;
  setBusy(true, `Uploading ${file.name}…`);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) bar.firstElementChild.style.width = `${(100 * e.loaded) / e.total}%`;
    if (e.loaded === e.total) setStatus("Opening the video…", "busy");
  };
  xhr.onload = async () => {
    bar.hidden = true;
    setBusy(false);
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 401) return askToken();
    if (xhr.status !== 201) return fail(new Error(data.error || `upload failed: HTTP ${xhr.status}`));
    if (app.video) api("DELETE", vpath()).catch(() => {});
    openVideo(data);
  };
  xhr.onerror = () => { bar.hidden = true; setBusy(false); fail(new Error("upload failed (connection lost)")); };
  xhr.send(form);
}

function openVideo(info) {
  app.video = info;
  app.frame = 0;
  app.objects = (info.obj_ids || []).slice();
  app.active = app.objects.length ? app.objects[app.objects.length - 1] : null;
  app.prompts.clear();
  app.prompted.clear();
  app.tracked.clear();
  app.maskVersion.clear();
  if (info.tracked_frames) for (let t = 0; t < info.num_frames; t++) app.tracked.add(t);
  history.replaceState(null, "", location.pathname + location.search + "#v=" + info.video_id);
  const canvas = $("canvas");
  canvas.width = info.width;
  canvas.height = info.height;
  fitCanvas();
  $("placeholder").hidden = true;
  const slider = $("slider");
  slider.max = info.num_frames - 1;
  slider.value = 0;
  $("video-info").textContent = `${info.width} × ${info.height}, ${info.num_frames} frames`;
  for (const f of ["zip", "coco", "mp4"]) {
    const a = $("export-" + f);
    a.href = vpath(`/export?format=${f}`);
    a.setAttribute("download", "");
    a.setAttribute("aria-disabled", "false");
  }
  buildThumbs();
  renderObjects();
  listen();
  updateControls();
  if (!app.objects.length) newObject();
  showFrame(0);
  setStatus("Click an object", "ready");
}

function buildThumbs() {
  const box = $("thumbs");
  box.innerHTML = "";
  const n = app.video.num_frames;
  const count = Math.min(n, 16);
  for (let k = 0; k < count; k++) {
    const t = count === 1 ? 0 : Math.round((k * (n - 1)) / (count - 1));
    const img = new Image();
    img.loading = "lazy";
    img.src = vpath(`/frames/${t}.jpg`);
    img.dataset.frame = t;
    img.alt = `frame ${t}`;
    img.onclick = () => showFrame(t);
    box.appendChild(img);
  }
}

// ------------------------------------------------------------------------------------------------ drawing
function fitCanvas() {
  // show the frame as large as the stage allows, keeping its aspect ratio (clicks are mapped back to video pixels)
  if (!app.video) return;
  const stage = $("stage");
  const maxH = Math.min(stage.clientHeight || 480, window.innerHeight * 0.72);
  const scale = Math.min((stage.clientWidth - 16) / app.video.width, (maxH - 16) / app.video.height);
  const canvas = $("canvas");
  canvas.style.width = `${Math.max(1, Math.floor(app.video.width * scale))}px`;
  canvas.style.height = `${Math.max(1, Math.floor(app.video.height * scale))}px`;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${src}`));
    img.src = src;
  });
}

async function showFrame(t) {
  if (!app.video) return;
  t = Math.max(0, Math.min(app.video.num_frames - 1, t | 0));
  app.frame = t;
  $("slider").value = t;
  $("frame-label").textContent = `${t} / ${app.video.num_frames - 1}`;
  for (const img of $("thumbs").children) img.classList.toggle("current", Number(img.dataset.frame) === t);
  await draw();
}

async function draw() {
  const token = ++app.drawToken;
  const t = app.frame;
  let frame, mask;
  try {
    [frame, mask] = await Promise.all([
      loadImage(vpath(`/frames/${t}.jpg`)),
      loadImage(vpath(`/masks/${t}.png?v=${app.maskVersion.get(t) || 0}`)),
    ]);
  } catch (err) {
    return fail(err);
  }
  if (token !== app.drawToken) return; // a newer frame was asked for meanwhile
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.drawImage(frame, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 0.55;
  ctx.drawImage(mask, 0, 0, canvas.width, canvas.height); // background is transparent in the mask PNG
  ctx.globalAlpha = 1;
  drawPrompts(ctx, t);
  drawCandidates(ctx);
  drawStrip();
  canvas.dataset.frame = t;
  canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
}

function drawPrompts(ctx, t) {
  const r = Math.max(4, Math.round(Math.min(ctx.canvas.width, ctx.canvas.height) / 90));
  for (const obj of app.objects) {
    const p = app.prompts.get(`${t}:${obj}`);
    if (!p) continue;
    const colour = paletteColour(obj);
    if (p.box) {
      ctx.strokeStyle = css(colour);
      ctx.lineWidth = Math.max(2, r / 2);
      ctx.strokeRect(p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1]);
    }
    p.points.forEach(([x, y], i) => {
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = p.labels[i] ? "#2ecc71" : "#e74c3c";
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
    });
  }
}

function drawStrip() {
  const strip = $("strip");
  const w = strip.clientWidth || 800;
  strip.width = w;
  const ctx = strip.getContext("2d");
  ctx.clearRect(0, 0, w, strip.height);
  if (!app.video) return;
  const n = app.video.num_frames;
  const cell = w / n;
  ctx.fillStyle = "#9aa4b2";
  for (const t of app.tracked) ctx.fillRect(t * cell, 4, Math.max(1, cell), strip.height - 8);
  for (const [t, objs] of app.prompted) {
    ctx.fillStyle = css(paletteColour([...objs][0] || 1));
    ctx.fillRect(t * cell, 0, Math.max(2, cell), strip.height);
  }
  ctx.fillStyle = "#2f6fde";
  ctx.fillRect(app.frame * cell, 0, Math.max(2, cell), 3);
}

// ------------------------------------------------------------------------------------------------ objects
function nextObjectId() {
  for (let i = 1; i < 256; i++) if (!app.objects.includes(i)) return i;
  return null;
}

function newObject() {
  const id = nextObjectId();
  if (id === null) return fail(new Error("at most 255 objects"));
  app.objects.push(id);
  app.active = id;
  renderObjects();
}

function renderObjects() {
  const list = $("objects");
  list.innerHTML = "";
  for (const id of app.objects) {
    const li = document.createElement("li");
    li.className = id === app.active ? "active" : "";
    li.dataset.obj = id;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = css(paletteColour(id));
    const name = document.createElement("span");
    name.textContent = `Object ${id}`;
    const rm = document.createElement("button");
    rm.className = "remove";
    rm.title = `remove object ${id}`;
    rm.textContent = "✕";
    rm.onclick = (e) => { e.stopPropagation(); removeObject(id); };
    li.append(sw, name, rm);
    li.onclick = () => { app.active = id; renderObjects(); };
    list.appendChild(li);
  }
}

async function removeObject(id) {
  if (app.busy) return;
  try {
    if (app.video && hasPrompt(id)) await api("DELETE", vpath(`/objects/${id}`));
  } catch (err) {
    return fail(err);
  }
  app.objects = app.objects.filter((o) => o !== id);
  for (const key of [...app.prompts.keys()]) if (key.endsWith(`:${id}`)) app.prompts.delete(key);
  for (const objs of app.prompted.values()) objs.delete(id);
  bumpAllMasks();
  if (app.active === id) app.active = app.objects.length ? app.objects[app.objects.length - 1] : null;
  if (!app.objects.length) newObject();
  renderObjects();
  updateControls();
  draw();
}

function hasPrompt(id) {
  for (const objs of app.prompted.values()) if (objs.has(id)) return true;
  return false;
}

function bumpMask(t) { app.maskVersion.set(t, (app.maskVersion.get(t) || 0) + 1); }
function bumpAllMasks() { for (let t = 0; t < app.video.num_frames; t++) bumpMask(t); }

// ------------------------------------------------------------------------------------------------ clicks
function canvasPoint(e) {
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  const x = ((e.clientX - rect.left) / rect.width) * canvas.width;
  const y = ((e.clientY - rect.top) / rect.height) * canvas.height;
  return [Math.max(0, Math.min(canvas.width, x)), Math.max(0, Math.min(canvas.height, y))];
}

let dragStart = null;

function onPointerDown(e) {
  if (!app.video || app.busy) return;
  e.preventDefault();
  dragStart = { p: canvasPoint(e), x: e.clientX, y: e.clientY, button: e.button, shift: e.shiftKey };
}

function onPointerMove(e) {
  if (!dragStart) return;
  const moved = Math.hypot(e.clientX - dragStart.x, e.clientY - dragStart.y) > 6;
  if (!moved) return;
  draw().then(() => {
    if (!dragStart) return;
    const ctx = $("canvas").getContext("2d");
    const [x0, y0] = dragStart.p;
    const [x1, y1] = canvasPoint(e);
    ctx.setLineDash([6, 4]);
    ctx.strokeStyle = css(paletteColour(app.active || 1));
    ctx.lineWidth = 2;
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    ctx.setLineDash([]);
  });
}

function onPointerUp(e) {
  if (!dragStart) return;
  const start = dragStart;
  dragStart = null;
  const end = canvasPoint(e);
  const moved = Math.hypot(e.clientX - start.x, e.clientY - start.y) > 6;
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (app.active === null) newObject();
  const key = `${app.frame}:${app.active}`;
  const p = app.prompts.get(key) || { points: [], labels: [], box: null };
  if (moved || mode === "box") {
    if (!moved) return; // a box needs a drag
    p.box = [Math.min(start.p[0], end[0]), Math.min(start.p[1], end[1]),
             Math.max(start.p[0], end[0]), Math.max(start.p[1], end[1])];
  } else {
    const negative = mode === "negative" || start.shift || start.button === 2;
    p.points.push([Math.round(end[0] * 10) / 10, Math.round(end[1] * 10) / 10]);
    p.labels.push(negative ? 0 : 1);
  }
  sendPrompt(app.frame, app.active, p);
}

async function sendPrompt(t, obj, p) {
  setBusy(true, "Segmenting…");
  const started = performance.now();
  try {
    const body = { frame_idx: t, obj_id: obj, points: p.points, labels: p.labels, clear_old_points: true };
    if (p.box) body.box = p.box;
    await api("POST", vpath("/prompts"), body);
    app.prompts.set(`${t}:${obj}`, p);
    if (!app.prompted.has(t)) app.prompted.set(t, new Set());
    app.prompted.get(t).add(obj);
    app.tracked.add(t);
    bumpMask(t);
    setBusy(false);
    await draw(); // the status says "mask in" once the mask is on the screen
    setStatus(`Object ${obj} on frame ${t}: mask in ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    setBusy(false);
    fail(err);
    await draw();
  }
  updateControls();
}

// ------------------------------------------------------------------------------------------------ tracking
function listen() {
  if (app.events) app.events.close();
  const es = new EventSource(vpath("/events"), { withCredentials: true });
  es.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    if (p.job !== "propagate") return;
    const pct = p.total ? (100 * p.done) / p.total : 0;
    $("track-bar").firstElementChild.style.width = `${pct}%`;
    if (p.frame_idx !== null && p.frame_idx !== undefined) {
      app.tracked.add(p.frame_idx);
      bumpMask(p.frame_idx);
    }
    if (p.state === "running") {
      $("track-progress").textContent = `${p.done} / ${p.total} frames · ${p.frames_per_s.toFixed(1)} frames/s`;
      drawStrip();
    }
  });
  app.events = es;
}

async function track() {
  if (!app.video || app.busy) return;
  const efficient = document.querySelector("input[name=method]:checked").value === "efficient";
  const body = { efficient, direction: $("direction").value };
  if ($("from-current").checked) body.start_frame_idx = app.frame;
  $("track-bar").firstElementChild.style.width = "0%";
  $("track-progress").textContent = "starting…";
  setBusy(true, "Tracking…");
  $("cancel").disabled = false;
  try {
    const res = await api("POST", vpath("/propagate"), body);
    bumpAllMasks();
    $("track-bar").firstElementChild.style.width = "100%";
    $("track-progress").textContent =
      `${res.cancelled ? "cancelled after" : "tracked"} ${res.frames} frames · ${res.frames_per_s.toFixed(1)} frames/s`;
    showStats(res);
    setBusy(false);
    setStatus(res.cancelled ? "Tracking cancelled" : "Tracked: scrub through the result, click to correct");
  } catch (err) {
    setBusy(false);
    fail(err);
  }
  $("cancel").disabled = true;
  updateControls();
  draw();
}

function showStats(res) {
  const dl = $("stats");
  dl.innerHTML = "";
  const s = res.statistics;
  const rows = [["model", res.efficient ? "Efficient-SAM2" : "Dense SAM 2"],
                ["speed", `${res.frames_per_s.toFixed(2)} frames/s (${res.seconds.toFixed(2)} s)`]];
  if (s) {
    rows.push(["kept windows", `${(100 * s.mean_kept_window_fraction).toFixed(1)} %`]);
    rows.push(["kept memory", s.mean_kept_memory_fraction === null ? "all (no pruned frame yet)"
                                : `${(100 * s.mean_kept_memory_fraction).toFixed(1)} %`]);
  } else {
    rows.push(["kept windows", "100 % (dense)"], ["kept memory", "100 % (dense)"]);
  }
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dd.dataset.stat = k;
    dl.append(dt, dd);
  }
}

async function cancelTracking() {
  try { await api("POST", vpath("/cancel")); } catch (err) { fail(err); }
}

// ------------------------------------------------------------------------------------------------ find objects
function decodeRle(rle) {
  // COCO compressed RLE -> Uint8Array (column-major, H * W)
  const [h, w] = rle.size;
  let counts = rle.counts;
  if (typeof counts === "string") {
    const out = [];
    let p = 0;
    while (p < counts.length) {
      let x = 0, k = 0, more = 1;
      while (more) {
        const c = counts.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = c & 0x20;
        p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (out.length > 2) x += out[out.length - 2];
      out.push(x);
    }
    counts = out;
  }
  const m = new Uint8Array(h * w);
  let pos = 0, v = 0;
  for (const c of counts) { if (v) m.fill(1, pos, pos + c); pos += c; v ^= 1; }
  return { h, w, m };
}

function drawCandidates(ctx) {
  if (!app.candidates.length || app.candidatesFrame !== app.frame) return;
  const { width: W, height: H } = ctx.canvas;
  const img = ctx.getImageData(0, 0, W, H);
  const ids = nextFreeIds(app.candidates.length);
  app.candidates.forEach((c, k) => {
    if (!c.selected) return;
    const colour = paletteColour(ids[k] || 1);
    const { h, w, m } = c.decoded;
    for (let x = 0; x < w; x++) for (let y = 0; y < h; y++) {
      if (!m[x * h + y]) continue;
      const i = 4 * (y * W + x);
      img.data[i] = (img.data[i] + colour[0]) >> 1;
      img.data[i + 1] = (img.data[i + 1] + colour[1]) >> 1;
      img.data[i + 2] = (img.data[i + 2] + colour[2]) >> 1;
    }
  });
  ctx.putImageData(img, 0, 0);
}

function nextFreeIds(n) {
  const ids = [];
  for (let i = 1; i < 256 && ids.length < n; i++) if (!app.objects.includes(i) || !hasPrompt(i)) ids.push(i);
  return ids;
}

async function findObjects() {
  if (!app.video || app.busy) return;
  setBusy(true, "Finding objects…");
  try {
    const body = { frame_idx: app.frame };
    if ($("lenient").checked) Object.assign(body, { pred_iou_thresh: 0, stability_score_thresh: 0 });
    const res = await api("POST", vpath("/automask"), body);
    app.candidates = res.masks.map((m) => Object.assign(m, { selected: true, decoded: decodeRle(m.mask) }));
    app.candidatesFrame = app.frame;
    const list = $("candidate-list");
    list.innerHTML = "";
    const ids = nextFreeIds(app.candidates.length);
    app.candidates.forEach((c, k) => {
      const li = document.createElement("li");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.onchange = () => { c.selected = box.checked; draw(); };
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = css(paletteColour(ids[k] || 1));
      const text = document.createElement("span");
      text.textContent = `${c.area} px · score ${c.score.toFixed(2)}`;
      li.append(box, sw, text);
      list.appendChild(li);
    });
    $("candidates-info").textContent = res.masks.length
      ? `${res.masks.length} object(s) found on frame ${res.frame_idx} in ${res.seconds.toFixed(2)} s`
      : `no object found on frame ${res.frame_idx}: click objects instead`;
    $("candidates").hidden = false;
    setBusy(false);
    setStatus("Choose the objects to track");
  } catch (err) {
    setBusy(false);
    fail(err);
  }
  draw();
}

async function addCandidates() {
  const chosen = app.candidates.filter((c) => c.selected);
  const ids = nextFreeIds(app.candidates.length);
  const t = app.candidatesFrame;
  setBusy(true, "Adding objects…");
  try {
    for (const [k, c] of app.candidates.entries()) {
      if (!c.selected) continue;
      const id = ids[k];
      await api("POST", vpath("/objects"), { frame_idx: t, obj_id: id, mask: c.mask });
      if (!app.objects.includes(id)) app.objects.push(id);
      if (!app.prompted.has(t)) app.prompted.set(t, new Set());
      app.prompted.get(t).add(id);
      app.active = id;
    }
    app.tracked.add(t);
    bumpMask(t);
    setBusy(false);
    setStatus(`${chosen.length} object(s) added: track them`);
  } catch (err) {
    setBusy(false);
    fail(err);
  }
  closeCandidates();
  renderObjects();
  updateControls();
}

function closeCandidates() {
  app.candidates = [];
  $("candidates").hidden = true;
  draw();
}

// ------------------------------------------------------------------------------------------------ reset / close
async function resetObjects() {
  if (!app.video || app.busy) return;
  try { await api("POST", vpath("/reset")); } catch (err) { return fail(err); }
  app.objects = [];
  app.prompts.clear();
  app.prompted.clear();
  app.tracked.clear();
  bumpAllMasks();
  $("stats").innerHTML = "";
  newObject();
  updateControls();
  draw();
  setStatus("Objects removed: click an object");
}

async function closeVideo() {
  if (!app.video || app.busy) return;
  try { await api("DELETE", vpath()); } catch (err) { fail(err); }
  if (app.events) app.events.close();
  app.video = null;
  history.replaceState(null, "", location.pathname + location.search);
  location.reload();
}

// ------------------------------------------------------------------------------------------------ controls
function setBusy(busy, text) {
  app.busy = busy;
  if (busy && text) setStatus(text, "busy");
  document.body.classList.toggle("busy", busy);
  updateControls();
}

function updateControls() {
  const open = !!app.video;
  const idle = open && !app.busy;
  const anyPrompt = [...app.prompted.values()].some((s) => s.size);
  for (const id of ["new-object", "find-objects", "reset", "close-video"]) $(id).disabled = !idle;
  for (const id of ["prev", "next", "slider"]) $(id).disabled = !open; // scrubbing works while tracking
  const restored = open && app.video.obj_ids && app.video.obj_ids.length;
  $("track").disabled = !(idle && (anyPrompt || restored));
}

function bindControls() {
  $("file-input").addEventListener("change", (e) => {
    if (e.target.files[0]) upload(e.target.files[0]);
    e.target.value = "";
  });
  $("slider").addEventListener("input", (e) => showFrame(Number(e.target.value)));
  $("prev").onclick = () => showFrame(app.frame - 1);
  $("next").onclick = () => showFrame(app.frame + 1);
  $("new-object").onclick = newObject;
  $("find-objects").onclick = findObjects;
  $("add-candidates").onclick = addCandidates;
  $("close-candidates").onclick = closeCandidates;
  $("track").onclick = track;
  $("cancel").onclick = cancelTracking;
  $("reset").onclick = resetObjects;
  $("close-video").onclick = closeVideo;
  const canvas = $("canvas");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  window.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  $("strip").addEventListener("click", (e) => {
    if (!app.video) return;
    const rect = e.target.getBoundingClientRect();
    showFrame(Math.floor(((e.clientX - rect.left) / rect.width) * app.video.num_frames));
  });
  window.addEventListener("keydown", (e) => {
    if (!app.video || e.target.tagName === "INPUT" && e.target.type !== "range") return;
    if (e.key === "ArrowLeft") { e.preventDefault(); showFrame(app.frame - 1); }
    if (e.key === "ArrowRight") { e.preventDefault(); showFrame(app.frame + 1); }
  });
  window.addEventListener("resize", () => { fitCanvas(); drawStrip(); });
}

start();
