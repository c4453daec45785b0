// The model form (add: POST /admin/models; edit: PATCH /admin/models/{alias}):
// the alias's kind, strategy, fallbacks and description, and its deployments.
// Fields the form does not show (timeouts, params, prices) are kept on edit.

import { send } from "../core/api.js";
import { $, $$ } from "../core/dom.js";

const DEPLOYMENT_FIELDS = ["provider", "model", "base_url", "api_key", "weight", "priority"];
const form = { node: null, editing: null, saved: null };

function addDeploymentRow(dep = {}, index = null) {
  const row = $("#deployment-row").content.firstElementChild.cloneNode(true);
  if (index !== null) row.dataset.index = String(index);
  const n = $$("#deployments-table tbody tr", form.node).length + 1;
  for (const field of DEPLOYMENT_FIELDS) {
    const input = $(`[name=${field}]`, row);
    input.setAttribute("aria-label", `Deployment ${n}: ${input.dataset.label}`);
    if (dep[field] !== undefined && dep[field] !== null) input.value = dep[field];
  }
  const remove = $(".remove", row);
  remove.setAttribute("aria-label", `Remove deployment ${n}`);
  remove.addEventListener("click", () => row.remove());
  $("#deployments-table tbody", form.node).append(row);
}

/** Open the form for `model` (GET /admin/models/{alias}'s body), or empty to add one. */
export function openModelForm(model) {
  const node = form.node;
  node.reset();
  $("#model-error", node).textContent = "";
  $("#deployments-table tbody", node).replaceChildren();
  form.editing = model;
  $("#model-form-title", node).textContent = model ? `Edit ${model.name}` : "Add a model";
  node.name.readOnly = Boolean(model);
  if (model) {
    node.name.value = model.name;
    node.kind.value = model.kind || "chat";
    node.strategy.value = model.strategy || "priority";
    node.fallbacks.value = (model.fallbacks || []).join(", ");
    node.description.value = model.description || "";
    (model.deployments || []).forEach((dep, i) => addDeploymentRow(dep, i));
  } else {
    addDeploymentRow();
  }
  node.hidden = false;
  (model ? node.description : node.name).focus();
}

function deployments() {
  const original = (form.editing && form.editing.deployments) || [];
  return $$("#deployments-table tbody tr", form.node).map((row) => {
    const base = row.dataset.index !== undefined ? { ...original[Number(row.dataset.index)] } : {};
    for (const field of ["provider", "model", "base_url", "api_key"]) {
      const value = $(`[name=${field}]`, row).value.trim();
      if (value) base[field] = value;
      else delete base[field];
    }
    for (const field of ["weight", "priority"]) {
      const value = $(`[name=${field}]`, row).value;
      if (value !== "") base[field] = Number(value);
    }
    return base;
  });
}

async function save(event) {
  event.preventDefault();
  const node = form.node;
  const error = $("#model-error", node);
  const body = {
    kind: node.kind.value,
    strategy: node.strategy.value,
    description: node.description.value,
    fallbacks: node.fallbacks.value.split(",").map((s) => s.trim()).filter(Boolean),
    deployments: deployments(),
  };
  const name = node.name.value.trim();
  if (!name) {
    error.textContent = "Not saved: the alias is required.";
    node.name.focus();
    return;
  }
  try {
    if (form.editing) await send("PATCH", `/admin/models/${encodeURIComponent(name)}`, body);
    else await send("POST", "/admin/models", { name, ...body });
  } catch (err) {
    // shown once, in the form, naming the field (deployments[0].weight)
    error.textContent = `Not saved: ${err.param ? err.param + ": " : ""}${err.message}`;
    return;
  }
  node.hidden = true;
  form.editing = null;
  await form.saved(name);
}

/** Wire the form in the freshly built models section; `saved(name)` after a save. */
export function wireModelForm(section, saved) {
  form.node = $("#model-form", section);
  form.editing = null;
  form.saved = saved;
  $("#add-model", section)?.addEventListener("click", () => openModelForm(null));
  $("#cancel-model", section).addEventListener("click", () => (form.node.hidden = true));
  $("#add-deployment", section).addEventListener("click", () => addDeploymentRow());
  form.node.addEventListener("submit", save);
  form.node.addEventListener("keydown", (event) => {
    if (event.key === "Escape") form.node.hidden = true;
  });
}

