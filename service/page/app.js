// The page's script: no framework, no build step. It talks to the service's own API (same origin) and draws
// every overlay in the browser from the raw map the answer carries, so the opacity and the colormap change
// without another request (the blend is the service's: the map ReLU'd and min-max normalised, upsampled
// bilinearly, looked up in the same 256-entry colormap, and mixed as image * (1 - a) + colour * a).
"use strict";

const KEY_STORAGE = "explain.apiKey";
const OVERLAY_MAX_SIDE = 512; // the service's default overlay size: the overlays match its own
const GROUPS = [
  ["cam", "CAM family", "maps on a layer's grid, from its feature maps"],
  ["gradients", "Gradients", "maps at the input resolution, from gradients to the image"],
  ["perturbation", "Perturbation", "maps from how the score drops when parts of the image are hidden"],
];
const PERTURBATION = new Set(["occlusion"]);
const DEFAULT_METHODS = new Set(["cam", "grad_cam"]);

const state = {
  colormaps: {},      // name -> Uint8Array(256 * 3)
  models: [],
  methods: [],
  labels: [],
  image: null,        // the Blob sent to the service
  bitmap: null,       // the same image decoded by the browser, for the re-blend
  classes: [],        // chosen classes (labels or indices, as typed)
  cells: [],          // drawn overlays: {canvas, explanation, map, display}
  job: null,          // the running visualization: {id, controller}
};

const $ = (id) => document.getElementById(id);

// ---------- talking to the service ----------

class ApiError extends Error {
  constructor(status, code, message, retryAfter, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
  }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  } catch (err) {
    throw new ApiError(0, "network", "The service cannot be reached. Is it running?", null, null);
  }
  if (!response.ok) {
    throw await apiError(response);
  }
  return response;
}

async function apiError(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText}`;
  let requestId = response.headers.get("X-Request-ID");
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
      requestId = body.error.request_id || requestId;
    }
  } catch (err) {
    // not the service's error body (a proxy's page): keep the status line
  }
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"), requestId);
}

async function getJSON(url) {
  return (await request(url)).json();
}

// ---------- messages a person understands ----------

function describe(err) {
  if (!(err instanceof ApiError)) {
    return `Something went wrong in the page: ${err.message}`;
  }
  const retry = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again in a moment.";
  switch (err.status) {
    case 0:
      return err.message;
    case 401:
      return err.code === "invalid_api_key"
        ? "The service did not accept this API key. Enter a valid key above."
        : "The service needs an API key. Enter it above; it is kept for this tab only.";
    case 413:
      return `The image is too large for the service: ${err.message}. Send a smaller file or fewer pixels.`;
    case 415:
      return err.code === "unsupported_image"
        ? "This file is not an image the service can read (JPEG, PNG, WebP, GIF, BMP or TIFF)."
        : `The service refused the request's format: ${err.message}`;
    case 422:
      return `The image could not be decoded (empty, truncated or corrupt): ${err.message}`;
    case 429:
      return `Too many requests right now.${retry}`;
    case 503:
      return `The service is busy or not ready (${err.code}).${retry}`;
    case 504:
      return `The service took too long (${err.message}). Choose cheaper methods or fewer classes.`;
    default:
      return `${err.message} (${err.code}${err.requestId ? `, request ${err.requestId}` : ""})`;
  }
}

function showError(err) {
  const box = $("message");
  box.textContent = describe(err);
  box.hidden = false;
  if (err instanceof ApiError && err.status === 401) {
    $("key-box").hidden = false;
    $("api-key").focus();
  }
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

// ---------- the catalogue ----------

async function loadCatalogue() {
  const colormaps = await (await request("/page/colormaps.json")).json();
  $("colormap").replaceChildren();
  for (const [name, hex] of Object.entries(colormaps)) {
    const table = new Uint8Array(256 * 3);
    for (let i = 0; i < table.length; i++) table[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    state.colormaps[name] = table;
    $("colormap").add(new Option(name, name));
  }
  const [models, methods] = await Promise.all([getJSON("/v1/models"), getJSON("/v1/methods")]);
  state.models = models.models;
  state.methods = methods.methods;
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => new Option(`${m.name} (${m.num_classes} classes)`, m.name)));
  renderMethods();
  $("vis-model").textContent = select.value;
  await loadLabels();
}

function methodGroup(method) {
  if (PERTURBATION.has(method.name)) return "perturbation";
  return method.input_resolution ? "gradients" : "cam";
}

function renderMethods() {
  const model = state.models.find((m) => m.name === $("model").value);
  const applicable = new Set(model ? model.methods : []);
  const checked = new Set(selectedMethods());
  const groups = GROUPS.map(([key, title, blurb]) => {
    const box = document.createElement("fieldset");
    box.className = "method-group";
    const legend = document.createElement("legend");
    legend.textContent = title;
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = blurb;
    box.append(legend, note);
    for (const method of state.methods.filter((m) => methodGroup(m) === key)) {
      const id = `method-${method.name}`;
      const row = document.createElement("div");
      row.className = "method";
      const input = document.createElement("input");
      Object.assign(input, { type: "checkbox", id, name: "method", value: method.name });
      input.checked = checked.size ? checked.has(method.name) : DEFAULT_METHODS.has(method.name);
      input.disabled = !applicable.has(method.name);
      const label = document.createElement("label");
      label.htmlFor = id;
      const name = document.createElement("strong");
      name.textContent = method.title;
      const line = document.createElement("span");
      line.className = "hint";
      line.id = `${id}-about`;
      line.textContent = ` ${method.paper.split(",")[0]} · ${costInWords(method)}`;
      label.title = `${method.paper}\nRaw map: ${method.raw_map}\nCost: ${method.cost}`;
      label.append(name, line);
      input.setAttribute("aria-describedby", line.id);
      row.append(input, label);
      box.append(row);
    }
    return box;
  });
  $("method-groups").replaceChildren(...groups);
}

function costInWords(method) {
  // One line a person can weigh; the full cost and the map's definition are in the label's tooltip.
  const needs = new Set(method.needs);
  if (needs.has("extra_passes")) return "many extra passes: slow on a CPU";
  if (method.input_resolution) return "a backward pass to the image";
  if (needs.has("layer_gradients")) return "a backward pass to the layer";
  return "the shared forward pass only";
}

function selectedMethods() {
  return [...document.querySelectorAll('input[name="method"]:checked')].map((i) => i.value);
}

async function loadLabels() {
  const model = $("model").value;
  if (!model) return;
  state.labels = await getJSON(`/page/models/${encodeURIComponent(model)}/labels`);
  const seen = new Set();
  const options = [];
  for (const label of state.labels) {
    if (seen.has(label)) continue;
    seen.add(label);
    options.push(new Option("", label));
  }
  $("labels").replaceChildren(...options);
}

// ---------- the image ----------

async function useImage(blob, name) {
  clearMessage();
  state.image = blob;
  state.imageName = name || "image";
  state.bitmap = null;
  try {
    state.bitmap = await createImageBitmap(blob);
  } catch (err) {
    // the browser cannot decode it; the service will say what is wrong with it
  }
  const preview = $("preview");
  if (state.bitmap) {
    preview.src = URL.createObjectURL(blob);
    preview.alt = `The chosen image: ${state.imageName}`;
    preview.hidden = false;
  } else {
    preview.hidden = true;
  }
  $("drop-hint").textContent = `${state.imageName} (${Math.round(blob.size / 1024)} KiB). Drop, paste or choose another.`;
}

async function useSample(name) {
  try {
    const blob = await (await request(`/page/samples/${name}`)).blob();
    await useImage(blob, `${name} (scikit-image)`);
  } catch (err) {
    showError(err);
  }
}

function wireImageInputs() {
  $("image-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) useImage(file, file.name);
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) useImage(file, file.name);
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("image-input").click();
    }
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData || {}).items || []].find((i) => i.kind === "file");
    if (item) useImage(item.getAsFile(), "pasted image");
  });
  for (const button of document.querySelectorAll("[data-sample]")) {
    button.addEventListener("click", () => useSample(button.dataset.sample));
  }
}

// ---------- classes ----------

function addClass() {
  const input = $("class-input");
  const value = input.value.trim();
  if (!value || state.classes.includes(value)) return;
  state.classes.push(value);
  input.value = "";
  document.querySelector('input[name="class-mode"][value="chosen"]').checked = true;
  renderChips();
}

function renderChips() {
  $("class-chips").replaceChildren(
    ...state.classes.map((name) => {
      const chip = document.createElement("li");
      chip.textContent = name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${name}`);
      remove.addEventListener("click", () => {
        state.classes = state.classes.filter((c) => c !== name);
        renderChips();
      });
      chip.append(remove);
      return chip;
    }),
  );
}

// ---------- explaining ----------

async function explain(event) {
  event.preventDefault();
  clearMessage();
  if (!state.image) {
    showError(new Error("choose an image first (file, drop, paste or a sample)."));
    return;
  }
  const methods = selectedMethods();
  if (!methods.length) {
    showError(new Error("choose at least one method."));
    return;
  }
  const form = new FormData();
  form.append("image", state.image, state.imageName.replace(/[^\w.-]+/g, "_"));
  for (const method of methods) form.append("method", method);
  const mode = document.querySelector('input[name="class-mode"]:checked').value;
  if (mode === "chosen" && state.classes.length) {
    for (const name of state.classes) form.append("class", name);
  } else {
    form.append("top_k", $("top-k").value || "1");
  }
  form.append("include", "map");
  form.append("map_encoding", "base64");
  if ($("bbox").checked) form.append("bbox", "true");
  const button = $("explain-button");
  button.disabled = true;
  $("status").textContent = "Explaining…";
  try {
    const model = encodeURIComponent($("model").value);
    const answer = await (await request(`/v1/models/${model}/explain`, { method: "POST", body: form })).json();
    $("status").textContent = `Done: ${answer.explanations.length} overlays.`;
    renderAnswer(answer);
    if ($("results").getBoundingClientRect().top > window.innerHeight) {
      $("results").scrollIntoView({ behavior: "smooth" }); // on a phone the results are below the form
    }
  } catch (err) {
    $("status").textContent = "";
    showError(err);
  } finally {
    button.disabled = false;
  }
}

function renderAnswer(answer) {
  $("results").hidden = false;
  $("top-classes").replaceChildren(
    ...answer.top_classes.map((c) => {
      const row = document.createElement("li");
      row.dataset.testid = "top-class";
      const percent = (100 * c.probability).toFixed(1);
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = `${c.label} (${c.index})`;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      bar.setAttribute("aria-valuenow", percent);
      bar.setAttribute("aria-label", `${c.label}: ${percent} %`);
      const fill = document.createElement("span");
      fill.style.width = `${Math.max(0.5, 100 * c.probability)}%`;
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = `${percent} %`;
      row.append(label, bar, value);
      return row;
    }),
  );
  const t = answer.timings_ms;
  $("timings").textContent = "Timings (ms): " + Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ");
  renderGrid(answer);
}

function renderGrid(answer) {
  const methods = [...new Set(answer.explanations.map((e) => e.method))];
  const classes = [];
  for (const e of answer.explanations) {
    if (!classes.some((c) => c.index === e.class.index)) classes.push(e.class);
  }
  const titles = Object.fromEntries(state.methods.map((m) => [m.name, m.title]));
  const head = document.createElement("tr");
  head.append(document.createElement("td"));
  for (const method of methods) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = titles[method] || method;
    head.append(th);
  }
  const rows = [head];
  state.cells = [];
  const display = displayImage();
  for (const cls of classes) {
    const row = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = cls.label;
    row.append(th);
    for (const method of methods) {
      const td = document.createElement("td");
      const e = answer.explanations.find((x) => x.method === method && x.class.index === cls.index);
      if (e) td.append(overlayFigure(e, display, titles[method] || method, answer.timings_ms));
      row.append(td);
    }
    rows.push(row);
  }
  $("grid").replaceChildren(...rows);
  redrawAll();
}

function displayImage() {
  // The picture the overlays are drawn on: the image as sent, its long side at most OVERLAY_MAX_SIDE.
  const bitmap = state.bitmap;
  const scale = Math.min(1, OVERLAY_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, width, height);
  return { width, height, pixels: context.getImageData(0, 0, width, height).data, scale };
}

function decodeMap(map) {
  const [h, w] = map.shape;
  if (map.data) return { h, w, values: Float32Array.from(map.data.flat()) };
  const bytes = Uint8Array.from(atob(map.data_base64), (c) => c.charCodeAt(0));
  return { h, w, values: new Float32Array(bytes.buffer) }; // little-endian float32, as every browser is
}

function overlayFigure(explanation, display, methodTitle, timings) {
  const figure = document.createElement("figure");
  figure.className = "overlay";
  const canvas = document.createElement("canvas");
  canvas.width = display.width;
  canvas.height = display.height;
  canvas.dataset.testid = "overlay";
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${methodTitle} for ${explanation.class.label}`);
  const map = decodeMap(explanation.map);
  const cell = { canvas, explanation, map, display, heat: upsampleNormalised(map, display.width, display.height) };
  state.cells.push(cell);
  canvas.addEventListener("mousemove", (event) => showValue(cell, event));
  canvas.addEventListener("mouseleave", () => ($("hover").textContent = ""));
  const caption = document.createElement("figcaption");
  const what = document.createElement("span");
  what.textContent = `${methodTitle} · ${explanation.class.label} (${explanation.class.index})`;
  const when = document.createElement("span");
  when.className = "hint";
  when.textContent = ` inference ${timings.inference?.toFixed(0) ?? "?"} ms of ${timings.total?.toFixed(0) ?? "?"} ms`;
  const download = document.createElement("button");
  download.type = "button";
  download.textContent = "Download PNG";
  download.setAttribute("aria-label", `Download the ${methodTitle} overlay for ${explanation.class.label}`);
  download.addEventListener("click", () => {
    const link = document.createElement("a");
    link.href = canvas.toDataURL("image/png");
    link.download = `${explanation.method}-${explanation.class.label.replace(/[^\w-]+/g, "_")}.png`;
    link.click();
  });
  caption.append(what, when, document.createElement("br"), download);
  figure.append(canvas, caption);
  return figure;
}

function upsampleNormalised(map, width, height) {
  // ReLU then min-max (a constant map is zeros), then bilinear with pixel centres aligned, as Pillow resizes.
  const { h, w, values } = map;
  let low = Infinity;
  let high = -Infinity;
  const clean = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number.isFinite(values[i]) ? Math.max(0, values[i]) : 0;
    clean[i] = v;
    low = Math.min(low, v);
    high = Math.max(high, v);
  }
  const span = high - low;
  for (let i = 0; i < clean.length; i++) clean[i] = span > 1e-12 ? (clean[i] - low) / span : 0;
  const heat = new Float32Array(width * height);
  const sy = h / height;
  const sx = w / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(h - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(h - 1, y0 + 1);
    const dy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(w - 1, Math.max(0, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(w - 1, x0 + 1);
      const dx = fx - x0;
      const top = clean[y0 * w + x0] * (1 - dx) + clean[y0 * w + x1] * dx;
      const bottom = clean[y1 * w + x0] * (1 - dx) + clean[y1 * w + x1] * dx;
      heat[y * width + x] = top * (1 - dy) + bottom * dy;
    }
  }
  return heat;
}

function redrawAll() {
  const alpha = Number($("opacity").value);
  const table = state.colormaps[$("colormap").value] || Object.values(state.colormaps)[0];
  for (const cell of state.cells) draw(cell, alpha, table);
}

function draw(cell, alpha, table) {
  const { canvas, display, heat, explanation } = cell;
  const context = canvas.getContext("2d");
  const out = context.createImageData(display.width, display.height);
  const src = display.pixels;
  for (let i = 0, p = 0; i < heat.length; i++, p += 4) {
    const level = Math.round(heat[i] * 255) * 3;
    out.data[p] = src[p] * (1 - alpha) + table[level] * alpha;
    out.data[p + 1] = src[p + 1] * (1 - alpha) + table[level + 1] * alpha;
    out.data[p + 2] = src[p + 2] * (1 - alpha) + table[level + 2] * alpha;
    out.data[p + 3] = 255;
  }
  context.putImageData(out, 0, 0);
  const box = explanation.bbox;
  if (box) {
    const s = display.scale;
    context.strokeStyle = "#00ff66";
    context.lineWidth = Math.max(3, Math.round(display.width / 120));
    context.strokeRect(box.x0 * s, box.y0 * s, (box.x1 - box.x0) * s, (box.y1 - box.y0) * s);
  }
}

function showValue(cell, event) {
  const rect = cell.canvas.getBoundingClientRect();
  const u = (event.clientX - rect.left) / rect.width;
  const v = (event.clientY - rect.top) / rect.height;
  const { h, w, values } = cell.map;
  const row = Math.min(h - 1, Math.max(0, Math.floor(v * h)));
  const col = Math.min(w - 1, Math.max(0, Math.floor(u * w)));
  const value = values[row * w + col];
  const x = Math.floor(u * cell.display.width);
  const y = Math.floor(v * cell.display.height);
  const normal = cell.heat[y * cell.display.width + x];
  $("hover").textContent =
    `${cell.explanation.method}, ${cell.explanation.class.label}: raw map [${row}, ${col}] = ${value.toPrecision(4)}` +
    ` (normalised ${normal.toFixed(2)})`;
}

// ---------- feature visualization (a job with a live event stream) ----------

async function startVisualization(event) {
  event.preventDefault();
  clearMessage();
  const value = $("vis-class").value.trim();
  const objective = { kind: "class", class: /^\d+$/.test(value) ? Number(value) : value };
  const body = JSON.stringify({ objective, steps: Number($("vis-steps").value) || 128 });
  $("vis-result").hidden = true;
  $("vis-progress").value = 0;
  $("vis-progress-text").textContent = "";
  try {
    const model = encodeURIComponent($("model").value);
    const response = await request(`/v1/models/${model}/visualizations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    const job = await response.json();
    const controller = new AbortController();
    state.job = { id: job.id, controller };
    $("vis-start").disabled = true;
    $("vis-cancel").disabled = false;
    $("vis-status").textContent = `Job ${job.id} ${job.status}.`;
    await followJob(job.id, controller.signal);
  } catch (err) {
    if (err.name !== "AbortError") showError(err);
  } finally {
    state.job = null;
    $("vis-start").disabled = false;
    $("vis-cancel").disabled = true;
  }
}

async function followJob(id, signal) {
  // Server-Sent Events read with fetch (EventSource cannot send the API key header).
  const response = await request(`/v1/jobs/${id}/events`, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length && jobEvent(name, JSON.parse(data.join("\n")))) return;
    }
  }
}

function jobEvent(name, job) {
  const { done, total } = job.progress;
  $("vis-progress").max = Math.max(1, total);
  $("vis-progress").value = done;
  $("vis-progress-text").textContent = `${done} / ${total}`;
  $("vis-status").textContent = `Job ${job.id} ${job.status}.`;
  if (name === "succeeded") {
    const result = job.result;
    $("vis-image").src = `data:image/png;base64,${result.image_png}`;
    $("vis-image").alt = `Feature visualization of ${$("vis-class").value}`;
    const top = result.top_classes.slice(0, 3).map((c) => `${c.label} ${(100 * c.probability).toFixed(1)} %`);
    $("vis-caption").textContent = `Objective ${result.objective.toFixed(2)}. The model sees: ${top.join(", ")}.`;
    $("vis-result").hidden = false;
  } else if (name === "failed" || name === "cancelled") {
    $("vis-status").textContent = `Job ${job.id} ${job.status}: ${job.error ? job.error.message : ""}`;
  }
  return name !== "progress";
}

async function cancelVisualization() {
  const job = state.job;
  if (!job) return;
  try {
    await request(`/v1/jobs/${job.id}`, { method: "DELETE" });
  } catch (err) {
    showError(err);
  }
}

// ---------- tabs, key, start ----------

function wireTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight") select(tabs[(i + 1) % tabs.length]);
      if (event.key === "ArrowLeft") select(tabs[(i + tabs.length - 1) % tabs.length]);
    });
  });
}

function wireKey() {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  if ($("api-key").value) $("key-box").hidden = false;
  $("api-key-save").addEventListener("click", async () => {
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    clearMessage();
    await start();
  });
}

async function start() {
  try {
    await loadCatalogue();
  } catch (err) {
    showError(err);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wireTabs();
  wireKey();
  wireImageInputs();
  $("explain-form").addEventListener("submit", explain);
  $("visualize-form").addEventListener("submit", startVisualization);
  $("vis-cancel").addEventListener("click", cancelVisualization);
  $("class-add").addEventListener("click", addClass);
  $("class-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      addClass();
    }
  });
  $("model").addEventListener("change", async () => {
    renderMethods();
    $("vis-model").textContent = $("model").value;
    await loadLabels().catch(showError);
  });
  $("opacity").addEventListener("input", () => {
    $("opacity-value").textContent = Number($("opacity").value).toFixed(2);
    redrawAll();
  });
  $("colormap").addEventListener("change", redrawAll);
  start();
});
