// Feature visualization as a job: start it, follow its Server-Sent Events with a progress bar, cancel it.
import { followJob, request } from "./api.js";
import { clearMessage, showError } from "./messages.js";

const $ = (id) => document.getElementById(id);
let running = null; // the running job: {id, controller}

export async function startVisualization(event) {
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
    running = { id: job.id, controller };
    $("vis-start").disabled = true;
    $("vis-cancel").disabled = false;
    $("vis-status").textContent = `Job ${job.id} ${job.status}.`;
    await followJob(job.id, controller.signal, jobEvent);
  } catch (err) {
    if (err.name !== "AbortError") showError(err);
  } finally {
    running = null;
    $("vis-start").disabled = false;
    $("vis-cancel").disabled = true;
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

export async function cancelVisualization() {
  const job = running;
  if (!job) return;
  try {
    await request(`/v1/jobs/${job.id}`, { method: "DELETE" });
  } catch (err) {
    showError(err);
  }
}
