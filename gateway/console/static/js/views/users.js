// Users (admin only): create (the password policy's refusal shown as the API
// words it), change role, reset a password, temporary role grants with an expiry
// (list and revoke), reset MFA, unlock, disable, end sessions, delete.

import { getJSON, send, session } from "../core/api.js";
import { $, act, button, el, loaded, loading, noteRow, say, td, when } from "../core/dom.js";
import { confirmAction, formDialog } from "../core/dialogs.js";
import { allowed } from "../core/roles.js";

const ROLES = [
  ["viewer", "viewer: reads everything but users, secrets and the audit log"],
  ["operator", "operator: also keys, connection tests, disabling models"],
  ["admin", "admin: everything"],
];
const state = { section: null, grantsOf: null };
const userPath = (name, suffix = "") => `/admin/users/${encodeURIComponent(name)}${suffix}`;

async function createUser() {
  const user = await formDialog({
    title: "New user",
    intro: "They sign in with this username and password, and can add a one-time code (TOTP) themselves.",
    fields: [
      { name: "username", label: "Username", required: true, autocomplete: "off" },
      { name: "password", label: "Password", type: "password", required: true, autocomplete: "new-password", hint: "The password policy applies (length and kinds of characters); a refusal says which rule." },
      { name: "role", label: "Role", type: "select", options: ROLES, value: "viewer" },
    ],
    action: "Create user",
    submit: (form) => {
      const f = form.elements;
      return send("POST", "/admin/users", { username: f.username.value.trim(), password: f.password.value, role: f.role.value });
    },
  });
  if (!user) return;
  say(`Created user ${user.username} (${user.role}).`, "good");
  await refresh();
}

async function changeRole(user) {
  const saved = await formDialog({
    title: `Role of ${user.username}`,
    intro: "A change ends their sessions: they sign in again.",
    fields: [{ name: "role", label: "Role", type: "select", options: ROLES, value: user.role }],
    action: "Save",
    submit: (form) => send("PATCH", userPath(user.username), { role: form.elements.role.value }),
  });
  if (!saved) return;
  say(`${user.username} is now ${saved.role}.`, "good");
  await refresh();
}

async function resetPassword(user) {
  const saved = await formDialog({
    title: `New password for ${user.username}`,
    intro: "Their sessions end; tell them the new password through a safe channel.",
    fields: [{ name: "password", label: "New password", type: "password", required: true, autocomplete: "new-password" }],
    action: "Set password",
    submit: (form) => send("PATCH", userPath(user.username), { password: form.elements.password.value }),
  });
  if (saved) say(`Set a new password for ${user.username}.`, "good");
}

async function grant(user) {
  const made = await formDialog({
    title: `Temporary role for ${user.username}`,
    intro: `Raises their role (now ${user.role}) until the expiry; it lapses by itself.`,
    fields: [
      { name: "role", label: "Role", type: "select", options: ROLES.filter(([r]) => r !== "viewer"), value: "admin" },
      { name: "hours", label: "For (hours)", type: "number", min: "0.1", step: "any", required: true, value: "4", hint: "At most 90 days (2160 hours)." },
      { name: "reason", label: "Reason", required: true, wide: true, hint: "Kept in the grant and the audit log." },
    ],
    action: "Grant",
    submit: (form) => {
      const f = form.elements;
      const seconds = Math.round(Number(f.hours.value) * 3600);
      return send("POST", userPath(user.username, "/grants"), { role: f.role.value, expires_in_s: seconds, reason: f.reason.value.trim() }).catch((err) => {
        if (err.param === "expires_in_s") err.param = "hours";
        throw err;
      });
    },
  });
  if (!made) return;
  say(`${user.username} is ${made.role} until ${when(made.expires_at)}.`, "good");
  await refresh();
  await showGrants(user.username);
}

async function showGrants(username) {
  state.grantsOf = username;
  const panel = $("#grants", state.section);
  const table = $("#grants-table", panel);
  $("#grants-title", panel).textContent = `Grants of ${username}`;
  panel.hidden = false;
  loading(table, "grants");
  const data = await getJSON(userPath(username, "/grants"));
  $("#grants-effective", panel).textContent = `Role ${data.role}; in force now: ${data.effective_role}.`;
  const rows = data.data.map((g) =>
    el(
      "tr",
      { dataset: { grant: g.id } },
      td("role", g.role),
      td("until", when(g.expires_at)),
      td("state", g.active ? "active" : "expired", g.active ? "good" : "muted"),
      td("reason", g.reason || "—"),
      td("granted by", `${g.granted_by || "?"}, ${when(g.granted_at)}`),
      td(
        "actions",
        g.active
          ? allowed("DELETE /admin/users/{username}/grants/{grant_id}", button("Revoke", () => act(() => revokeGrant(username, g)), { className: "danger", "aria-label": `Revoke the ${g.role} grant` }))
          : "",
      ),
    ),
  );
  loaded(table, rows, noteRow(table, "No grants. Grant gives a temporary role."));
}

async function revokeGrant(username, g) {
  const ok = await confirmAction({ title: `Revoke the ${g.role} grant of ${username}?`, text: "Their role drops back at their next request.", action: "Revoke" });
  if (!ok) return;
  await send("DELETE", userPath(username, `/grants/${encodeURIComponent(g.id)}`));
  say(`Revoked the ${g.role} grant of ${username}.`, "good");
  await refresh();
  await showGrants(username);
}

async function confirmed(user, { title, text, action, method, suffix = "", body, done }) {
  if (title && !(await confirmAction({ title, text, action }))) return;
  await send(method, userPath(user.username, suffix), body);
  say(done, "good");
  await refresh();
}

function actions(user) {
  const u = user.username;
  const locked = user.locked_until && new Date(user.locked_until) > new Date();
  // no locking yourself out from here: your own role, state and account are changed by another admin
  const self = session.me && session.me.via === "token" && session.me.name === u;
  if (self) return el("span", { className: "muted", text: "you (change your own account with another admin)" });
  return el(
    "div",
    { className: "row-actions" },
    allowed("PATCH /admin/users/{username}", button("Role", () => act(() => changeRole(user)), { "aria-label": `Change the role of ${u}` })),
    allowed("POST /admin/users/{username}/grants", button("Grant", () => act(() => grant(user)), { "aria-label": `Grant ${u} a temporary role` })),
    allowed("GET /admin/users/{username}/grants", button("Grants", () => act(() => showGrants(u)), { "aria-label": `Grants of ${u}` })),
    allowed("PATCH /admin/users/{username}", button("Password", () => act(() => resetPassword(user)), { "aria-label": `Set a new password for ${u}` })),
    locked
      ? allowed("POST /admin/users/{username}/unlock", button("Unlock", () => act(() => confirmed(user, { method: "POST", suffix: "/unlock", done: `Unlocked ${u}.` })), { "aria-label": `Unlock ${u}` }))
      : null,
    user.totp_enabled
      ? allowed(
          "DELETE /admin/users/{username}/totp",
          button("Reset MFA", () => act(() => confirmed(user, {
            title: `Reset the one-time codes of ${u}?`,
            text: "Their second factor is turned off: they sign in with the password alone until they enrol again. Do this only when you are sure who asks (a lost phone).",
            action: "Reset MFA",
            method: "DELETE",
            suffix: "/totp",
            done: `Reset MFA for ${u}: they can enrol again.`,
          })), { className: "danger", "aria-label": `Reset MFA of ${u}` }),
        )
      : null,
    allowed("PATCH /admin/users/{username}", button(user.disabled ? "Enable" : "Disable", () => act(() => confirmed(user, {
      title: user.disabled ? null : `Disable ${u}?`,
      text: "They cannot sign in and their sessions end, until enabled again.",
      action: "Disable",
      method: "PATCH",
      body: { disabled: !user.disabled },
      done: `${user.disabled ? "Enabled" : "Disabled"} ${u}.`,
    })), { "aria-label": `${user.disabled ? "Enable" : "Disable"} ${u}` })),
    allowed("POST /admin/users/{username}/revoke", button("End sessions", () => act(() => confirmed(user, {
      title: `End every session of ${u}?`,
      text: "They are signed out everywhere now and sign in again.",
      action: "End sessions",
      method: "POST",
      suffix: "/revoke",
      done: `Ended every session of ${u}.`,
    })), { "aria-label": `End the sessions of ${u}` })),
    allowed("DELETE /admin/users/{username}", button("Delete", () => act(() => confirmed(user, {
      title: `Delete ${u}?`,
      text: "The account is removed and its sessions end. Their records in the audit log stay.",
      action: "Delete",
      method: "DELETE",
      done: `Deleted ${u}.`,
    })), { className: "danger", "aria-label": `Delete ${u}` })),
  );
}

async function refresh() {
  const users = await getJSON("/admin/users");
  if (!state.section) return;
  const table = $("#users-table", state.section);
  const rows = (users.data || []).map((user) => {
    const locked = user.locked_until && new Date(user.locked_until) > new Date();
    const status = user.disabled ? ["disabled", "warn"] : locked ? [`locked until ${when(user.locked_until)}`, "bad"] : ["active", "good"];
    const role = user.effective_role !== user.role ? `${user.role} (now ${user.effective_role}, granted)` : user.role;
    return el(
      "tr",
      { dataset: { user: user.username } },
      td("username", user.username),
      td("role", role),
      td("state", status[0], status[1]),
      td("MFA", user.totp_enabled ? "on" : "off"),
      td("last sign-in", when(user.last_login_at)),
      td("actions", actions(user)),
    );
  });
  const create = allowed("POST /admin/users", button("New user", () => act(createUser)));
  loaded(table, rows, noteRow(table, "No users yet (the master key is not a user). Create one with New user.", "muted", create));
}

export const usersView = {
  id: "users",
  title: "Users",
  route: "GET /admin/users",
  template: "tpl-users",
  async load(section) {
    state.section = section;
    $("#new-user", section)?.addEventListener("click", () => act(createUser));
    $("#refresh-users", section).addEventListener("click", () => act(refresh));
    $("#close-grants", section).addEventListener("click", () => ($("#grants", section).hidden = true));
    loading($("#users-table", section), "users");
    await refresh();
  },
  clear() {
    state.section = null;
    state.grantsOf = null;
  },
};
