/* dugray's web page: one interactive matting session driven through the HTTP API (v1/...).
   Plain browser JavaScript: no build step, no library, nothing fetched from elsewhere.
   URLs are relative so the page also works under a route prefix ending in a slash. */
"use strict";

const LABELS = { fg: "foreground", bg: "background", transition: "transition" };
const LETTER = { fg: "F", bg: "B", transition: "T" };
const KEY_LABEL = { f: "fg", b: "bg", t: "transition", s: undefined }; // S skips (clears)
const COLOUR = { fg: "#2ecc71", bg: "#4c8dff", transition: "#ff9f1a", none: "#ffe14d" };
const CYCLE = [undefined, "fg", "bg", "transition"]; // what a click on a box steps through
const VIEWS = ["image", "alpha", "checker", "colour", "epistemic", "aleatoric"];
const MAX_LABELS = 1024; // the API's limit per request

const $ = (id) => document.getElementById(id);
const state = {
  session: null, // the API's session view: id, width, height, round, proposals, timings...
  file: null, // the opened image, kept to reopen it with a trimap
  picture: null, // its ImageBitmap, null when the browser cannot decode it (e.g. 16-bit TIFF)
  labels: new Map(), // proposal index -> "fg" | "bg" | "transition", until applied
  strokes: [], // painted strokes {label, boxes: [[y0, x0, y1, x1], ...]}, until applied
  lastPoint: null, // [y, x] of the stroke being painted
  clicks: [], // this session's fixing clicks {point: [y, x], label}, drawn as dots
  selected: 0,
  layers: new Map(), // output name -> Promise<ImageBitmap>, for the current round
  openedAt: 0,
  busy: false,
};

// ---------------------------------------------------------------- talking to the API

const KEY_STORE = "dugray-api-key"; // sessionStorage: kept for this tab only, gone when it closes

/** The headers that carry the API key, when the server asked for one. */
function keyHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { "X-API-Key": key } : {};
}

async function request(path, options = {}, askedForKey = false) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...keyHeaders() } });
  } catch (err) {
    throw new Error(`the server cannot be reached (${err.message})`);
  }
  if (response.status === 401 && !askedForKey) {
    // this server needs an API key: ask once, keep it for the tab, and retry
    const key = window.prompt("This dugray server needs an API key:", "");
    if (key) {
      sessionStorage.setItem(KEY_STORE, key.trim());
      return request(path, options, true);
    }
  }
  if (response.status === 401) sessionStorage.removeItem(KEY_STORE);
  if (!response.ok) throw Object.assign(new Error(await errorText(response)), { status: response.status });
  return response;
}

/** The API's {"error", "detail"} body as one sentence (detail: a string or pydantic's list). */
async function errorText(response) {
  const body = await response.json().catch(() => null);
  if (!body || !body.error) return `HTTP ${response.status} ${response.statusText}`;
  const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
  return detail ? `${body.error}: ${detail}` : body.error;
}

const json = async (path, options) => (await request(path, options)).json();

/** A session output; the query names the round so that no cached older matte is shown. */
function outputUrl(name) {
  const s = state.session;
  return `v1/sessions/${s.id}/${name}.png?v=${mattePart(s)}`;
}

/** What the current matte depends on: the round, the solve switch and refinement. */
function mattePart(s) {
  return `${s.round}${s.solve && s.solve.enabled ? "s" : ""}${s.refined ? "r" : ""}`;
}

/** One request at a time: controls off meanwhile, and any failure shown, never thrown. */
async function run(message, failure, task) {
  if (state.busy) return;
  state.busy = true;
  setStatus(message);
  $("main").setAttribute("aria-busy", "true");
  refreshControls();
  try {
    await task();
    showError("");
  } catch (err) {
    showError(`${failure}: ${err.message}`);
    setStatus(summary());
  } finally {
    state.busy = false;
    $("main").setAttribute("aria-busy", "false");
    refreshControls();
  }
}

function openImage(file) {
  if (!file) return;
  const openedAt = file === state.file ? state.openedAt : performance.now();
  return run(`Opening ${file.name}: computing the first round…`, `Could not open ${file.name}`, async () => {
    const form = new FormData();
    form.append("image", file, file.name);
    const trimap = $("trimap").files[0];
    if (trimap) form.append("trimap", trimap, trimap.name);
    const view = await json(`v1/sessions?solve=${$("solve").checked}`, { method: "POST", body: form });
    const picture = await createImageBitmap(file).catch(() => null);
    forget();
    Object.assign(state, { file, picture, openedAt });
    show(view);
  });
}

/** A session created elsewhere (e.g. by `dugray interactive IMAGE --web`), opened as `?session=ID`:
    its view and its input image from the API, then on as if the image had been opened here. */
function openSession(id) {
  const openedAt = performance.now();
  const path = `v1/sessions/${encodeURIComponent(id)}`;
  return run(`Opening session ${id}…`, `Could not open session ${id}`, async () => {
    let view, blob;
    try {
      [view, blob] = await Promise.all([json(path), request(`${path}/image.png`).then((r) => r.blob())]);
    } catch (err) {
      if (err.status !== 404) throw err;
      throw new Error("this server has no such session (expired or deleted); open the image again");
    }
    const file = new File([blob], `session-${view.id.slice(0, 8)}.png`, { type: "image/png" });
    const picture = await createImageBitmap(blob).catch(() => null);
    forget();
    Object.assign(state, { file, picture, openedAt });
    show(view);
    history.replaceState(null, "", location.pathname); // a reload would find it deleted (pagehide)
  });
}

/** Frees the current session on the server (best effort: it expires anyway). */
function forget() {
  if (state.session) {
    fetch(`v1/sessions/${state.session.id}`, { method: "DELETE", keepalive: true, headers: keyHeaders() }).catch(() => {});
  }
}

function apply() {
  const s = state.session;
  const labels = [...state.labels].map(([index, label]) => ({ index, label }));
  for (const { label, boxes } of state.strokes) labels.push(...boxes.map((box) => ({ box, label })));
  if (!s || !labels.length) return;
  return run(`Round ${s.round + 1}: computing…`, "Could not apply the labels", async () => {
    const body = JSON.stringify({ labels });
    show(await json(`v1/sessions/${s.id}/labels`, { method: "POST", headers: { "content-type": "application/json" }, body }));
  });
}

/** Click to fix: one click at (y, x) is one round, labelling the square the API centres there. */
function fixAt(y, x, label) {
  const s = state.session;
  if (!s || state.busy) return;
  const point = [Math.min(s.height - 1, Math.max(0, Math.floor(y))), Math.min(s.width - 1, Math.max(0, Math.floor(x)))];
  return run(`Round ${s.round + 1}: ${LABELS[label]} at ${point[1]}, ${point[0]}…`, "Could not apply the click", async () => {
    const body = JSON.stringify({ labels: [{ point, label }] });
    const view = await json(`v1/sessions/${s.id}/labels`, { method: "POST", headers: { "content-type": "application/json" }, body });
    state.clicks.push({ point, label, round: view.round });
    show(view);
  });
}

/** The solve switch: the matte from the network alone, or solved with the image's colour lines. */
function setSolve(enabled) {
  const s = state.session;
  if (!s || Boolean(s.solve && s.solve.enabled) === enabled) return;
  return run(enabled ? "Solving with the image's colour lines…" : "Showing the network's matte…",
    "Could not switch the solve", async () => {
      const body = JSON.stringify({ solve: enabled });
      show(await json(`v1/sessions/${s.id}`, { method: "PATCH", headers: { "content-type": "application/json" }, body }));
    });
}

/** Back to the round before, exactly as it was shown (the server keeps what that needs). */
function undo() {
  const s = state.session;
  if (!s || s.round <= 1) return;
  return run(`Back to round ${s.round - 1}…`, "Could not undo", async () => {
    const view = await json(`v1/sessions/${s.id}/undo`, { method: "POST" });
    state.clicks = state.clicks.filter((c) => c.round <= view.round); // the undone round's click goes too
    show(view);
  });
}

function refine() {
  const s = state.session;
  if (!s || s.refined) return;
  return run("Refining fine detail…", "Could not refine", async () => {
    show(await json(`v1/sessions/${s.id}/refine`, { method: "POST" }));
  });
}

// ---------------------------------------------------------------- what is shown

/** A new session view from the server; labels survive only while the round is the same. */
function show(view) {
  const old = state.session;
  if (!old || old.id !== view.id || old.round !== view.round) {
    state.labels.clear();
    state.strokes = [];
    state.selected = 0;
  }
  if (old && old.id !== view.id) state.clicks = [];
  state.session = view;
  state.layers.clear();
  $("dropzone").hidden = true;
  $("canvases").hidden = false;
  renderList();
  for (const [id, name, suffix] of [["download-cutout", "cutout", "cutout"], ["download-alpha", "alpha", "alpha"]]) {
    const a = $(id);
    a.href = outputUrl(name);
    a.download = `${state.file.name.replace(/\.[^.]*$/, "")}-${suffix}.png`;
    a.removeAttribute("aria-disabled");
  }
  setStatus(summary());
  tick();
  fit();
  draw();
}

function summary() {
  const s = state.session;
  if (!s) return "Open or drop an image to start.";
  const t = s.timings;
  const seconds = t.request_s ?? t.total_s;
  const found = s.proposals.length ? `${s.proposals.length} patches to label` : "no uncertain patch left";
  return `Round ${s.round}: ${found}${s.refined ? ", matte refined" : ""}.` + (seconds ? ` Server: ${seconds.toFixed(2)} s.` : "") +
    solveSummary(s.solve);
}

/** The solve's part of the status line: its time, how much it solved, a fallback if any. */
function solveSummary(solve) {
  if (!solve || !solve.enabled) return " Solve off: the network's matte.";
  if (solve.seconds === undefined) return "";
  const kept = solve.guard && solve.guard !== "ok" ? " (kept the network's matte: the image broke the colour-line model)" : "";
  return ` Solve: ${solve.seconds.toFixed(2)} s, ${Math.round(100 * solve.band_fraction)}% of the image${kept}.`;
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(text) {
  $("error").textContent = text;
}

/** The header's product metric: labelling rounds and time since the image was opened. */
function tick() {
  const s = state.session;
  if (!s) return;
  const t = Math.round((performance.now() - state.openedAt) / 1000);
  const rounds = s.round - 1;
  $("clock").textContent = `${rounds} labelling round${rounds === 1 ? "" : "s"} · ${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")} since opened`;
}

function refreshControls() {
  const s = state.session;
  const count = (n, noun) => (n ? [`${n} ${noun}${n > 1 ? "s" : ""}`] : []);
  const pending = [...count(state.labels.size, "label"), ...count(state.strokes.length, "stroke")];
  $("apply").disabled = !s || state.busy || !pending.length;
  $("apply").textContent = `Apply ${pending.join(" and ") || "labels"}`;
  $("refine").disabled = !s || state.busy || s.refined;
  $("undo").disabled = !s || state.busy || s.round <= 1;
  $("solve").disabled = state.busy;
  if (s && s.solve && !state.busy) $("solve").checked = Boolean(s.solve.enabled); // the server's word, once it has spoken
  $("strokes-clear").disabled = !state.strokes.length;
  $("trimap-clear").hidden = !$("trimap").files.length;
}

function renderList() {
  const list = $("proposals");
  list.replaceChildren();
  state.session.proposals.forEach((p, i) => {
    const li = document.createElement("li");
    li.dataset.index = i;
    li.innerHTML = `<span class="num">${i + 1}</span><span class="score" title="mean epistemic uncertainty">${p.score.toPrecision(2)}</span>`;
    for (const [label, name] of Object.entries(LABELS)) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = `label ${label}`;
      b.dataset.label = label;
      b.textContent = LETTER[label];
      b.setAttribute("aria-label", `Proposal ${i + 1}: ${name}`);
      b.addEventListener("click", () => setLabel(i, state.labels.get(i) === label ? undefined : label));
      li.append(b);
    }
    li.addEventListener("click", () => select(i));
    list.append(li);
  });
  if (!state.session.proposals.length) list.innerHTML = '<li class="empty">Nothing uncertain left: refine or download.</li>';
  markList();
}

/** Selection and labels into the list and onto the boxes. */
function markList() {
  for (const li of $("proposals").querySelectorAll("li[data-index]")) {
    const i = Number(li.dataset.index);
    li.classList.toggle("selected", i === state.selected);
    li.dataset.label = state.labels.get(i) ?? "";
    for (const b of li.querySelectorAll("button")) b.setAttribute("aria-pressed", String(state.labels.get(i) === b.dataset.label));
  }
  drawOverlay();
  refreshControls();
}

function select(i) {
  if (!state.session || i < 0 || i >= state.session.proposals.length) return;
  state.selected = i;
  markList();
  $("proposals").children[i].scrollIntoView({ block: "nearest" });
}

function setLabel(i, label) {
  if (state.busy || !state.session || i >= state.session.proposals.length) return;
  if (label) state.labels.set(i, label);
  else state.labels.delete(i);
  markList();
}

const currentView = () => document.querySelector("input[name=view]:checked").value;

function setView(view) {
  document.querySelector(`input[name=view][value=${view}]`).checked = true;
  draw();
}

/** The bitmap behind a view, fetched once per round. */
function layer(view) {
  const name = ["checker", "colour"].includes(view) || (view === "image" && !state.picture) ? "cutout" : view;
  if (name === "image") return Promise.resolve(state.picture);
  if (!state.layers.has(name)) {
    const bitmap = request(outputUrl(name)).then((r) => r.blob()).then((b) => createImageBitmap(b));
    bitmap.catch(() => state.layers.delete(name)); // a failed fetch is tried again next time
    state.layers.set(name, bitmap);
  }
  return state.layers.get(name);
}

/** The view canvas at full resolution; checkerboard and colour are CSS backgrounds under it. */
async function draw() {
  const s = state.session;
  if (!s) return;
  const view = currentView();
  const box = $("canvases");
  box.dataset.background = ["checker", "colour"].includes(view) ? view : "";
  box.style.setProperty("--colour", $("colour").value);
  let bitmap;
  try {
    bitmap = await layer(view);
  } catch (err) {
    showError(`Could not load the ${view} view: ${err.message}`);
    return;
  }
  if (state.session !== s || currentView() !== view) return; // superseded meanwhile
  const canvas = $("view");
  canvas.width = s.width;
  canvas.height = s.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0, s.width, s.height);
  canvas.dataset.drawn = `${view}:${s.round}${s.refined ? "r" : ""}`; // for tests and curious users
  canvas.dataset.solve = s.solve && s.solve.enabled ? "on" : "off";
}

/** Canvases as large as the stage allows; the overlay at device resolution for crisp lines. */
function fit() {
  const s = state.session;
  const stage = $("stage");
  if (!s) return;
  const scale = Math.min((stage.clientWidth - 16) / s.width, (stage.clientHeight - 16) / s.height);
  const w = Math.max(1, Math.floor(s.width * scale));
  const h = Math.max(1, Math.floor(s.height * scale));
  Object.assign($("canvases").style, { width: `${w}px`, height: `${h}px` });
  const dpr = window.devicePixelRatio || 1;
  $("overlay").width = Math.round(w * dpr);
  $("overlay").height = Math.round(h * dpr);
  drawOverlay();
}

function drawOverlay() {
  const canvas = $("overlay");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const s = state.session;
  if (!s || !$("show-boxes").checked) return;
  const k = canvas.width / s.width; // device pixels per image pixel
  const dpr = window.devicePixelRatio || 1;
  const rect = ([y0, x0, y1, x1]) => [x0 * k, y0 * k, (x1 - x0) * k, (y1 - y0) * k];
  for (const { label, boxes } of state.strokes) {
    ctx.beginPath(); // one path per stroke: its overlapping squares fill evenly
    for (const box of boxes) ctx.rect(...rect(box));
    ctx.fillStyle = `${COLOUR[label]}aa`;
    ctx.fill();
  }
  ctx.font = `bold ${12 * dpr}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  s.proposals.forEach((p, i) => {
    const label = state.labels.get(i);
    const colour = COLOUR[label ?? "none"];
    const r = rect(p.box);
    const selected = i === state.selected;
    if (label) {
      ctx.fillStyle = `${colour}55`;
      ctx.fillRect(...r);
    }
    ctx.lineWidth = (selected ? 5 : 3) * dpr; // a dark halo keeps the outline visible on any view
    ctx.strokeStyle = "rgba(0, 0, 0, 0.75)";
    ctx.strokeRect(...r);
    ctx.lineWidth = (selected ? 3 : 1.5) * dpr;
    ctx.strokeStyle = selected ? "#ffffff" : colour;
    ctx.strokeRect(...r);
    const tag = `${i + 1}${label ? ` ${LETTER[label]}` : ""}`;
    const pad = 3 * dpr;
    ctx.fillStyle = selected ? "#ffffff" : colour;
    ctx.fillRect(r[0], r[1], ctx.measureText(tag).width + 2 * pad, 14 * dpr);
    ctx.fillStyle = "#111111";
    ctx.fillText(tag, r[0] + pad, r[1] + dpr);
  });
  for (const { point, label } of state.clicks) { // the fixing clicks, on top
    ctx.beginPath();
    ctx.arc((point[1] + 0.5) * k, (point[0] + 0.5) * k, 5 * dpr, 0, 2 * Math.PI);
    ctx.fillStyle = COLOUR[label];
    ctx.fill();
    ctx.lineWidth = 1.5 * dpr;
    ctx.strokeStyle = "#111111";
    ctx.stroke();
  }
}

// ---------------------------------------------------------------- pointer: click boxes or paint

/** Pointer position in full-resolution image pixels, [y, x]. */
function imagePoint(event) {
  const r = $("overlay").getBoundingClientRect();
  const s = state.session;
  return [((event.clientY - r.top) / r.height) * s.height, ((event.clientX - r.left) / r.width) * s.width];
}

function onPointerDown(event) {
  if (!state.session || state.busy) return;
  const [y, x] = imagePoint(event);
  if ($("click-fix").checked) {
    const background = event.button === 2 || $("click-bg").checked;
    fixAt(y, x, background ? "bg" : "fg");
    return;
  }
  if ($("brush").value) {
    $("overlay").setPointerCapture(event.pointerId);
    state.strokes.push({ label: $("brush").value, boxes: [] });
    state.lastPoint = null;
    paintTo(y, x);
    return;
  }
  const inside = state.session.proposals
    .map((p, i) => ({ i, b: p.box, area: (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) }))
    .filter(({ b }) => b[0] <= y && y < b[2] && b[1] <= x && x < b[3])
    .sort((a, b) => a.area - b.area);
  if (!inside.length) return;
  const i = inside[0].i;
  select(i);
  setLabel(i, CYCLE[(CYCLE.indexOf(state.labels.get(i)) + 1) % CYCLE.length]);
}

/** Squares of the brush (label boxes) from the stroke's last point to (y, x), a radius apart. */
function paintTo(y, x) {
  const s = state.session;
  const r = Math.max(2, Math.round(0.015 * Math.max(s.width, s.height)));
  const [y0, x0] = state.lastPoint ?? [y, x];
  const d = Math.hypot(y - y0, x - x0);
  if (state.lastPoint && d < r) return;
  const boxes = state.strokes.at(-1).boxes;
  let room = MAX_LABELS - state.labels.size - state.strokes.reduce((n, stroke) => n + stroke.boxes.length, 0);
  for (let j = 1, n = Math.max(1, Math.floor(d / r)); j <= n && room > 0; j++, room--) {
    const cy = y0 + ((y - y0) * j) / n;
    const cx = x0 + ((x - x0) * j) / n;
    const box = [cy - r, cx - r, cy + r, cx + r].map(Math.round);
    boxes.push([Math.max(0, box[0]), Math.max(0, box[1]), Math.min(s.height, box[2]), Math.min(s.width, box[3])]);
  }
  state.lastPoint = [y, x];
  drawOverlay();
  refreshControls();
}

// ---------------------------------------------------------------- keys

function onKey(event) {
  if (!state.session || event.altKey) return;
  if (event.target.closest("select, textarea, input[type=text], input[type=number]")) return;
  const key = event.key.toLowerCase();
  if (event.ctrlKey || event.metaKey) { // Ctrl+Z (Cmd+Z on a Mac): undo; every other shortcut is the browser's
    if (key !== "z" || event.shiftKey) return;
    event.preventDefault();
    undo();
    return;
  }
  const arrowsOwnedByRadios = event.target.matches("input[type=radio]");
  if (/^[0-9]$/.test(key)) select((Number(key) + 9) % 10); // 1..9 -> first nine, 0 -> tenth
  else if (["arrowright", "arrowdown"].includes(key) && !arrowsOwnedByRadios) select(state.selected + 1);
  else if (["arrowleft", "arrowup"].includes(key) && !arrowsOwnedByRadios) select(state.selected - 1);
  else if (key in KEY_LABEL) {
    setLabel(state.selected, KEY_LABEL[key]);
    select(state.selected + 1);
  } else if (key === "a") apply();
  else if (key === "r") refine();
  else if (key === "c") setClickFix(!$("click-fix").checked);
  else if (key === "v") setView(VIEWS[(VIEWS.indexOf(currentView()) + 1) % VIEWS.length]);
  else if (key === "h") {
    $("show-boxes").checked = !$("show-boxes").checked;
    drawOverlay();
  } else return;
  event.preventDefault();
}

// ---------------------------------------------------------------- wiring

function takeFile(input) {
  const file = input.files[0];
  input.value = ""; // the same file may be opened again
  openImage(file);
}

$("file").addEventListener("change", () => takeFile($("file")));
$("trimap").addEventListener("change", () => {
  refreshControls();
  if (state.file) openImage(state.file);
});
$("trimap-clear").addEventListener("click", () => {
  $("trimap").value = "";
  refreshControls();
  if (state.file) openImage(state.file);
});
$("apply").addEventListener("click", apply);
$("refine").addEventListener("click", refine);
$("undo").addEventListener("click", undo);
$("solve").addEventListener("change", () => setSolve($("solve").checked));
$("strokes-clear").addEventListener("click", () => {
  state.strokes = [];
  drawOverlay();
  refreshControls();
});
$("brush").addEventListener("change", () => {
  if ($("brush").value) setClickFix(false);
  $("stage").classList.toggle("painting", Boolean($("brush").value));
});
$("click-fix").addEventListener("change", () => setClickFix($("click-fix").checked));

/** Click to fix on or off (painting off while it is on: a click is a round, not a stroke). */
function setClickFix(on) {
  $("click-fix").checked = on;
  if (on && $("brush").value) {
    $("brush").value = "";
    $("stage").classList.remove("painting");
  }
  $("stage").classList.toggle("fixing", on);
}
for (const radio of document.querySelectorAll("input[name=view]")) radio.addEventListener("change", draw);
$("colour").addEventListener("input", () => setView("colour"));
$("show-boxes").addEventListener("change", drawOverlay);
$("download-cutout").addEventListener("click", () => {
  if (state.session) setStatus(`Cutout downloaded: ${$("clock").textContent}.`);
});
for (const id of ["download-cutout", "download-alpha"]) {
  // a plain link cannot send the API key: with one, fetch the PNG and hand the browser a blob instead
  $(id).addEventListener("click", async (e) => {
    if (!sessionStorage.getItem(KEY_STORE) || !state.session) return;
    e.preventDefault();
    const link = e.currentTarget;
    try {
      const url = URL.createObjectURL(await (await request(link.href)).blob());
      const save = Object.assign(document.createElement("a"), { href: url, download: link.download });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      setStatus(err.message);
    }
  });
}

const overlay = $("overlay");
overlay.addEventListener("pointerdown", onPointerDown);
overlay.addEventListener("contextmenu", (e) => {
  if ($("click-fix").checked) e.preventDefault(); // the right click is "background" in click-to-fix mode
});
overlay.addEventListener("pointermove", (e) => {
  if (overlay.hasPointerCapture(e.pointerId)) paintTo(...imagePoint(e));
});
document.addEventListener("keydown", onKey);
new ResizeObserver(fit).observe($("stage"));
setInterval(tick, 1000);
window.addEventListener("pagehide", forget);

for (const type of ["dragenter", "dragover"]) {
  document.addEventListener(type, (e) => {
    e.preventDefault();
    $("stage").classList.add("dragging");
  });
}
document.addEventListener("dragleave", (e) => {
  if (!e.relatedTarget) $("stage").classList.remove("dragging");
});
document.addEventListener("drop", (e) => {
  e.preventDefault();
  $("stage").classList.remove("dragging");
  openImage(e.dataTransfer.files[0]);
});

const handedOver = new URLSearchParams(location.search).get("session");
if (handedOver) openSession(handedOver);
