// Secrets (operator reads, admin writes): provider API keys and other secrets,
// stored encrypted; a model's deployment refers to one as secret:<name>. Values
// are never shown, only a masked hint. Rotating the master key that encrypts them
// is a command-line task (gateway secrets rotate).

import { getJSON, send } from "../core/api.js";
import { $, act, button, el, loaded, loading, noteRow, say, td, when } from "../core/dom.js";
import { confirmAction, formDialog } from "../core/dialogs.js";
import { allowed } from "../core/roles.js";

const state = { section: null };
const secretPath = (name) => `/admin/secrets/${encodeURIComponent(name)}`;

async function putSecret(existing) {
  const fields = [
    { name: "name", label: "Name", required: true, readonly: Boolean(existing), value: existing ? existing.name : "", hint: "Letters, digits, '.', '_', '-'; a model refers to it as secret:<name>." },
    { name: "value", label: existing ? "New value" : "Value", type: "password", required: true, autocomplete: "new-password", hint: "Stored encrypted; never shown again, here or anywhere." },
  ];
  const saved = await formDialog({
    title: existing ? `Replace ${existing.name}` : "New secret",
    intro: existing ? "Deployments that refer to it use the new value from their next request." : null,
    fields,
    action: existing ? "Replace" : "Save secret",
    submit: (form) => send("PUT", secretPath(form.elements.name.value.trim()), { value: form.elements.value.value }),
  });
  if (!saved) return;
  say(`${existing ? "Replaced" : "Saved"} secret ${saved.name}: refer to it as ${saved.ref}.`, "good");
  await refresh();
}

async function deleteSecret(secret) {
  const ok = await confirmAction({
    title: `Delete secret ${secret.name}?`,
    text: `Deployments that refer to ${secret.ref} can no longer reach their upstream until it is set again.`,
    action: "Delete",
  });
  if (!ok) return;
  await send("DELETE", secretPath(secret.name));
  say(`Deleted secret ${secret.name}.`, "good");
  await refresh();
}

async function refresh() {
  let secrets;
  try {
    secrets = await getJSON("/admin/secrets");
  } catch (err) {
    if (err.code !== "secrets_not_configured") throw err;
    secrets = { data: [], unconfigured: err.message };
  }
  if (!state.section) return;
  const table = $("#secrets-table", state.section);
  const rows = (secrets.data || []).map((s) =>
    el(
      "tr",
      { dataset: { secret: s.name } },
      td("name", s.name),
      td("reference", s.ref, "mono"),
      td("hint", s.hint || "", "mono"),
      td("created", when(s.created_at)),
      td("updated", when(s.updated_at)),
      td(
        "actions",
        el(
          "div",
          { className: "row-actions" },
          allowed("PUT /admin/secrets/{name}", button("Replace", () => act(() => putSecret(s)), { "aria-label": `Replace secret ${s.name}` })),
          allowed("DELETE /admin/secrets/{name}", button("Delete", () => act(() => deleteSecret(s)), { className: "danger", "aria-label": `Delete secret ${s.name}` })),
        ),
      ),
    ),
  );
  const create = allowed("PUT /admin/secrets/{name}", button("New secret", () => act(() => putSecret(null))));
  const text = secrets.unconfigured
    ? `Secrets are not available: ${secrets.unconfigured}`
    : create
      ? "No secrets yet. Save a provider key with New secret, then use secret:<name> as a deployment's API key."
      : "No secrets yet. An admin can save one.";
  loaded(table, rows, noteRow(table, text, secrets.unconfigured ? "warn" : "muted", secrets.unconfigured ? null : create));
}

export const secretsView = {
  id: "secrets",
  title: "Secrets",
  route: "GET /admin/secrets",
  template: "tpl-secrets",
  async load(section) {
    state.section = section;
    $("#new-secret", section)?.addEventListener("click", () => act(() => putSecret(null)));
    $("#refresh-secrets", section).addEventListener("click", () => act(refresh));
    loading($("#secrets-table", section), "secrets");
    await refresh();
  },
  clear() {
    state.section = null;
  },
};
