// Keys: every client key (never a secret: its hint only); by role (operator and
// up): create with limits, budgets, models, team and expiry (the secret shown
// once, with a copy button), edit, rotate (a new secret, shown once) and revoke.

import { getJSON, send } from "../core/api.js";
import { $, act, button, el, loaded, loading, noteRow, say, td, when } from "../core/dom.js";
import { confirmAction, formDialog, showSecret } from "../core/dialogs.js";
import { allowed } from "../core/roles.js";
import { allowanceBody, allowanceFields, budgetText, limitsText } from "./allowance.js";

const state = { section: null, teams: [] };

function stateOf(key) {
  if (key.revoked_at) return ["revoked", "muted"];
  if (key.enabled === false) return ["disabled", "warn"];
  if (key.expires_at && new Date(key.expires_at) < new Date()) return ["expired", "warn"];
  return ["active", "good"];
}

/** A datetime-local value for an ISO time (local), or "". */
function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function keyFields(key = {}) {
  return [
    { name: "name", label: "Name", required: true, value: key.name ?? "", hint: "Who or what uses it." },
    {
      name: "team",
      label: "Team",
      type: "select",
      options: [["", "no team"], ...state.teams.map((t) => [t.id, t.name ? `${t.id} (${t.name})` : t.id])],
      value: key.team ?? "",
    },
    { name: "owner", label: "Owner", value: key.owner ?? "" },
    { name: "expires_at", label: "Expires", type: "datetime-local", value: localInput(key.expires_at), hint: "Your local time; blank: never." },
    ...allowanceFields(key),
    ...(key.id ? [{ name: "enabled", label: "Enabled", type: "checkbox", value: key.enabled !== false }] : []),
  ];
}

function keyBody(form, editing) {
  const blank = editing ? null : undefined;
  const f = form.elements;
  const expiry = f.expires_at.value;
  const body = {
    name: f.name.value.trim(),
    team: f.team.value || blank,
    owner: f.owner.value.trim() || blank,
    expires_at: expiry ? new Date(expiry).toISOString() : blank,
    ...allowanceBody(form, editing),
  };
  if (editing) body.enabled = f.enabled.checked;
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}

async function createKey() {
  const created = await formDialog({
    title: "New key",
    intro: "The secret is shown once, when the key is made: copy it then.",
    fields: keyFields(),
    action: "Create key",
    submit: (form) => send("POST", "/admin/keys", keyBody(form, false)),
  });
  if (!created) return;
  await refresh();
  say(`Created key ${created.name} (${created.id}).`, "good");
  await showSecret(
    { title: `The secret of ${created.name}`, text: "Copy it now: it is not shown again. The gateway keeps only its hash; lost, rotate the key for a new one." },
    created.key,
  );
}

async function editKey(key) {
  const saved = await formDialog({
    title: `Edit key ${key.name}`,
    fields: keyFields(key),
    action: "Save",
    submit: (form) => send("PATCH", `/admin/keys/${encodeURIComponent(key.id)}`, keyBody(form, true)),
  });
  if (!saved) return;
  say(`Saved key ${saved.name}.`, "good");
  await refresh();
}

async function rotateKey(key) {
  const ok = await confirmAction({
    title: `Rotate ${key.name}?`,
    text: "A new secret is made and the current one stops working at once: every client using it must get the new one.",
    action: "Rotate",
  });
  if (!ok) return;
  const rotated = await send("POST", `/admin/keys/${encodeURIComponent(key.id)}/rotate`);
  await refresh();
  say(`Rotated key ${key.name}: the old secret no longer works.`, "good");
  await showSecret({ title: `The new secret of ${key.name}`, text: "Copy it now: it is not shown again." }, rotated.key);
}

async function revokeKey(key) {
  const ok = await confirmAction({
    title: `Revoke ${key.name}?`,
    text: "Requests with this key are refused from now on (within a second on every replica). A revoked key cannot be restored; the record stays for the audit log.",
    action: "Revoke",
  });
  if (!ok) return;
  await send("DELETE", `/admin/keys/${encodeURIComponent(key.id)}`);
  say(`Revoked key ${key.name}.`, "good");
  await refresh();
}

function actions(key) {
  if (key.revoked_at) return el("span", { className: "muted", text: "—" });
  return el(
    "div",
    { className: "row-actions" },
    allowed("PATCH /admin/keys/{id}", button("Edit", () => act(() => editKey(key)), { "aria-label": `Edit key ${key.name}` })),
    allowed("POST /admin/keys/{id}/rotate", button("Rotate", () => act(() => rotateKey(key)), { "aria-label": `Rotate key ${key.name}` })),
    allowed("DELETE /admin/keys/{id}", button("Revoke", () => act(() => revokeKey(key)), { className: "danger", "aria-label": `Revoke key ${key.name}` })),
  );
}

async function refresh() {
  const [keys, teams] = await Promise.all([getJSON("/admin/keys"), getJSON("/admin/teams")]);
  state.teams = teams.data || [];
  if (!state.section) return;
  const table = $("#keys-table", state.section);
  const rows = (keys.data || []).map((key) => {
    const [text, cls] = stateOf(key);
    return el(
      "tr",
      { dataset: { id: key.id } },
      td("id", key.id, "mono"),
      td("name", key.name),
      td("team", key.team || "—"),
      td("state", text, cls),
      td("hint", key.key_hint || "", "mono"),
      td("models", (key.models || ["all"]).join(", ")),
      td("limits", limitsText(key)),
      td("budgets", budgetText(key)),
      td("expires", key.expires_at ? when(key.expires_at) : "never"),
      td("actions", actions(key)),
    );
  });
  const create = allowed("POST /admin/keys", button("New key", () => act(createKey)));
  const empty = noteRow(table, create ? "No keys yet. Create one with New key." : "No keys yet. An operator or admin can create one.", "muted", create);
  loaded(table, rows, empty);
}

export const keysView = {
  id: "keys",
  title: "Keys",
  route: "GET /admin/keys",
  template: "tpl-keys",
  async load(section) {
    state.section = section;
    $("#new-key", section)?.addEventListener("click", () => act(createKey));
    $("#refresh-keys", section).addEventListener("click", () => act(refresh));
    loading($("#keys-table", section), "keys");
    await refresh();
  },
  clear() {
    state.section = null;
    state.teams = [];
  },
};
