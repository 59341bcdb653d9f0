// The methods as the page offers them: grouped (CAM family, gradients, perturbation, transformer attention), one
// line each from `GET /v1/methods` (the paper and the cost in words; the whole definition and cost in the tooltip).
const GROUPS = [
  ["cam", "CAM family", "maps on a layer's grid, from its feature maps"],
  ["gradients", "Gradients", "maps at the input resolution, from gradients to the image"],
  ["perturbation", "Perturbation", "maps from how the score drops when parts of the image are hidden"],
  ["attention", "Transformer attention", "maps on the patch grid, from a vision transformer's attention"],
];
const PERTURBATION = new Set(["occlusion"]);
const ATTENTION = new Set(["attention_rollout", "transformer_attribution", "generic_attention"]);
const DEFAULT_METHODS = new Set(["cam", "grad_cam"]);

function methodGroup(method) {
  if (PERTURBATION.has(method.name)) return "perturbation";
  if (ATTENTION.has(method.name)) return "attention";
  return method.input_resolution ? "gradients" : "cam";
}

export function methodGroups(methods, applicable) {
  // Fieldsets of checkboxes, one per group; what was ticked stays ticked (the defaults the first time).
  const checked = new Set([...document.querySelectorAll('input[name="method"]:checked')].map((i) => i.value));
  const groups = GROUPS.map(([key, title, blurb]) => {
    const box = document.createElement("fieldset");
    box.className = "method-group";
    const legend = document.createElement("legend");
    legend.textContent = title;
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = blurb;
    box.append(legend, note);
    for (const method of methods.filter((m) => methodGroup(m) === key)) {
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
  return groups;
}

function costInWords(method) {
  // One line a person can weigh; the full cost and the map's definition are in the label's tooltip.
  const needs = new Set(method.needs);
  if (needs.has("extra_passes")) return "many extra passes: slow on a CPU";
  if (method.input_resolution) return "a backward pass to the image";
  if (needs.has("layer_gradients")) return "a backward pass to the layer";
  return "the shared forward pass only";
}

export function selectedMethods() {
  // A ticked method that this model cannot run (greyed out) stays ticked for the next model, and is not sent.
  return [...document.querySelectorAll('input[name="method"]:checked:not(:disabled)')].map((i) => i.value);
}

