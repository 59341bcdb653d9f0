// The page's script (an ES module; no framework, no build step): the form, the catalogue, the answer's bars
// and grid of overlays, tabs and the API key. It talks to the service's own API on the same origin.

import { ApiError, followJob, getJSON, KEY_STORAGE, request } from "./api.js";
import { clearMessage, showError } from "./messages.js";
import { methodGroups, selectedMethods } from "./methods.js";
import { renderAnswer } from "./answer.js";
import { draw } from "./overlay.js";
import { cancelVisualization, startVisualization } from "./visualize.js";


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
  $("explain-button").disabled = false; // not before the methods are there to choose from
}

function renderMethods() {
  const model = currentModel();
  $("method-groups").replaceChildren(...methodGroups(state.methods, new Set(model ? model.methods : [])));
  // An embedding model's explanations need a second image, and take no classes; a detection model explains
  // each of its detections.
  $("reference-box").hidden = model?.task !== "embedding";
  $("classes-box").hidden = model?.task === "embedding" || model?.task === "detection";
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value);
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
  const embedding = currentModel()?.task === "embedding";
  const reference = $("reference-input").files[0];
  if (embedding && !reference) {
    showError(new Error("choose a reference image: an embedding model explains the similarity of two images."));
    return;
  }
  const form = new FormData();
  form.append("image", state.image, state.imageName.replace(/[^\w.-]+/g, "_"));
  for (const method of methods) form.append("method", method);
  const mode = document.querySelector('input[name="class-mode"]:checked').value;
  if (embedding) {
    form.append("reference", reference, reference.name.replace(/[^\w.-]+/g, "_"));
  } else if ($("classes-box").hidden) {
    // a detection model: every detection that reaches the service's default score
  } else if (mode === "chosen" && state.classes.length) {
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
    // Methods of many extra passes can outlast the request's deadline on a CPU: those run as a job, followed live.
    const slow = methods.some((name) => state.methods.find((m) => m.name === name)?.needs.includes("extra_passes"));
    const headers = slow ? { Prefer: "respond-async" } : {};
    const response = await request(`/v1/models/${model}/explain`, { method: "POST", body: form, headers });
    const answer = response.status === 202 ? await explainJob(await response.json()) : await response.json();
    $("status").textContent = `Done: ${answer.explanations.length} overlays.`;
    state.cells = renderAnswer(answer, state.methods, state.bitmap);
    redrawAll();
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

async function explainJob(job) {
  // The explain answer of a job, with its progress on the way; an ApiError if it fails or is cancelled.
  const progress = $("explain-progress");
  progress.hidden = false;
  progress.value = 0;
  let ended = job;
  try {
    await followJob(job.id, undefined, (name, update) => {
      progress.max = Math.max(1, update.progress.total);
      progress.value = update.progress.done;
      $("status").textContent = `Job ${update.status}: ${update.progress.done} / ${update.progress.total} passes.`;
      ended = update;
      return name !== "progress";
    });
  } finally {
    progress.hidden = true;
  }
  if (ended.status !== "succeeded") {
    const error = ended.error || { code: ended.status, message: `the job ended ${ended.status}` };
    throw new ApiError(-1, error.code, `The explanation job ended ${ended.status}: ${error.message}`, null, null);
  }
  return ended.result;
}

function redrawAll() {
  const alpha = Number($("opacity").value);
  const table = state.colormaps[$("colormap").value] || Object.values(state.colormaps)[0];
  for (const cell of state.cells) draw(cell, alpha, table);
}

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
  $("key-box").addEventListener("submit", async (event) => {
    event.preventDefault();
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
