// The answer on the page: the top classes as bars (a segmentation's classes with their share of the pixels, and
// its mask), and the overlays in a grid (one row per class, one column per method) with their timings, the map's
// value under the pointer (or its peak, for the keyboard) and a download.
import { decodeMap, displayImage, upsampleNormalised } from "./overlay.js";

const $ = (id) => document.getElementById(id);
const SIMILARITY = { index: -1, label: "similarity" }; // what an embedding model's explanations explain

function target(explanation) {
  // The row an explanation belongs to: its class, its detection (several may share a label), or the similarity.
  const { detection } = explanation;
  if (detection !== null && detection !== undefined) return { index: detection, label: `#${detection} ${explanation.class.label}` };
  return explanation.class ?? SIMILARITY;
}

function classColour(index) {
  // PASCAL VOC's colour map, as the service's mask PNG: the bits of the index spread over the three channels.
  const rgb = [0, 0, 0];
  for (let shift = 7, bits = index; shift >= 0; shift--, bits >>= 3) {
    for (let channel = 0; channel < 3; channel++) rgb[channel] |= ((bits >> channel) & 1) << shift;
  }
  return `rgb(${rgb.join(", ")})`;
}

function classBars(answer) {
  // [title, [{index, label, probability}], whether each gets its colour swatch] for the bars.
  if (answer.task === "segmentation") {
    const shares = answer.segmentation.classes.map((c) => ({ ...c, probability: c.share }));
    return ["Predicted classes (share of the pixels)", shares, true];
  }
  if (answer.task === "detection") {
    const found = answer.detections.map((d) => ({ ...d.class, name: `#${d.index} ${d.class.label}`, probability: d.score }));
    return ["Detections (score; each box is drawn on its maps)", found, false];
  }
  if (answer.task === "embedding") {
    return [`Similarity to the reference image: ${answer.similarity.toFixed(4)} (cosine)`, [], false];
  }
  if (answer.task === "multilabel") {
    const labels = answer.positive_classes.length ? answer.positive_classes : answer.top_classes;
    return ["Predicted labels (each its own probability)", labels, false];
  }
  return ["Top classes", answer.top_classes, false];
}

export function renderAnswer(answer, methods, bitmap) {
  // The bars of the classes, a segmentation's mask, and the grid of overlays; returns the overlays to draw.
  $("results").hidden = false;
  const [title, classes, swatches] = classBars(answer);
  $("classes-title").textContent = title;
  $("hover").textContent = ""; // a value of the last answer's maps
  $("segmentation").hidden = !answer.segmentation;
  if (answer.segmentation) $("segmentation-mask").src = `data:image/png;base64,${answer.segmentation.mask_png}`;
  $("top-classes").replaceChildren(
    ...classes.map((c) => {
      const row = document.createElement("li");
      row.dataset.testid = "top-class";
      const percent = (100 * c.probability).toFixed(1);
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = c.name ?? `${c.label} (${c.index})`;
      if (swatches) {
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = classColour(c.index);
        label.prepend(swatch);
      }
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
  return renderGrid(answer, methods, bitmap);
}

function renderGrid(answer, methodInfos, bitmap) {
  const methods = [...new Set(answer.explanations.map((e) => e.method))];
  const classes = [];
  for (const e of answer.explanations) {
    if (!classes.some((c) => c.index === target(e).index)) classes.push(target(e));
  }
  const titles = Object.fromEntries(methodInfos.map((m) => [m.name, m.title]));
  const head = document.createElement("tr");
  head.append(document.createElement("td"));
  for (const method of methods) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = titles[method] || method;
    head.append(th);
  }
  const rows = [head];
  const cells = [];
  const display = displayImage(bitmap);
  for (const cls of classes) {
    const row = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = cls.label;
    row.append(th);
    for (const method of methods) {
      const td = document.createElement("td");
      const e = answer.explanations.find((x) => x.method === method && target(x).index === cls.index);
      const box = answer.detections?.[e?.detection]?.box; // drawn on the overlay, as the service draws it
      if (e) td.append(overlayFigure(e, display, titles[method] || method, answer.timings_ms, cells, box));
      row.append(td);
    }
    rows.push(row);
  }
  $("grid").replaceChildren(...rows);
  return cells;
}

function overlayFigure(explanation, display, methodTitle, timings, cells, box) {
  const figure = document.createElement("figure");
  figure.className = "overlay";
  const canvas = document.createElement("canvas");
  canvas.width = display.width;
  canvas.height = display.height;
  canvas.dataset.testid = "overlay";
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${methodTitle} for ${target(explanation).label}`);
  const map = decodeMap(explanation.map);
  const heat = upsampleNormalised(map, display.width, display.height);
  const cell = { canvas, explanation, map, display, heat, box };
  cells.push(cell);
  canvas.addEventListener("mousemove", (event) => showValue(cell, event));
  canvas.addEventListener("mouseleave", () => ($("hover").textContent = ""));
  canvas.addEventListener("focus", () => showPeak(cell)); // the keyboard's way to a value
  const caption = document.createElement("figcaption");
  const what = document.createElement("span");
  const { label, index } = target(explanation);
  what.textContent = `${methodTitle} · ${label}` + (index >= 0 ? ` (${index})` : "");
  const when = document.createElement("span");
  when.className = "hint";
  when.textContent = ` inference ${timings.inference?.toFixed(0) ?? "?"} ms of ${timings.total?.toFixed(0) ?? "?"} ms`;
  const download = document.createElement("button");
  download.type = "button";
  download.textContent = "Download PNG";
  download.setAttribute("aria-label", `Download the ${methodTitle} overlay for ${target(explanation).label}`);
  download.addEventListener("click", () => {
    const link = document.createElement("a");
    link.href = canvas.toDataURL("image/png");
    link.download = `${explanation.method}-${target(explanation).label.replace(/[^\w-]+/g, "_")}.png`;
    link.click();
  });
  caption.append(what, when, document.createElement("br"), download);
  figure.append(canvas, caption);
  return figure;
}


function showPeak(cell) {
  const { w, values } = cell.map;
  let peak = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[peak]) peak = i;
  $("hover").textContent =
    `${cell.explanation.method}, ${target(cell.explanation).label}: peak of the raw map` +
    ` [${Math.floor(peak / w)}, ${peak % w}] = ${values[peak].toPrecision(4)}`;
}

function showValue(cell, event) {
  const rect = cell.canvas.getBoundingClientRect();
  const u = (event.clientX - rect.left) / rect.width;
  const v = (event.clientY - rect.top) / rect.height;
  const { h, w, extent, values } = cell.map;
  const row = Math.min(h - 1, Math.max(0, Math.floor(v * h * extent[0])));
  const col = Math.min(w - 1, Math.max(0, Math.floor(u * w * extent[1])));
  const value = values[row * w + col];
  const x = Math.floor(u * cell.display.width);
  const y = Math.floor(v * cell.display.height);
  const normal = cell.heat[y * cell.display.width + x];
  $("hover").textContent =
    `${cell.explanation.method}, ${target(cell.explanation).label}: raw map [${row}, ${col}] = ${value.toPrecision(4)}` +
    ` (normalised ${normal.toFixed(2)})`;
}

// ---------- tabs, key, start ----------

