// Teams & budgets: each team's spend today and this month against its budgets
// (GET /admin/usage?group_by=team and GET /admin/teams); by role (admin): create
// a team with its budgets and limits, edit them, delete a team.

import { getJSON, send } from "../core/api.js";
import { $, act, button, el, loaded, loading, noteRow, say, td, usd } from "../core/dom.js";
import { confirmAction, formDialog } from "../core/dialogs.js";
import { allowed } from "../core/roles.js";
import { allowanceBody, allowanceFields, limitsText } from "./allowance.js";

const state = { section: null };

function used(label, spent, budget) {
  if (budget === null || budget === undefined) return td(label, "no budget", "muted");
  const ratio = spent / budget;
  return td(
    label,
    el(
      "span",
      {},
      el("meter", { min: 0, max: 1, low: 0.8, high: 0.99, optimum: 0, value: Math.min(ratio, 1), "aria-label": `${label}: ${Math.round(ratio * 100)} % of the budget` }),
      el("span", { text: ` ${Math.round(ratio * 100)} %` }),
    ),
    `used ${ratio >= 1 ? "bad" : ratio >= 0.8 ? "warn" : "good"}`,
  );
}

function teamFields(team = {}) {
  return [
    { name: "id", label: "Team id", required: true, value: team.id ?? "", hint: "Letters, digits, '.', '_', '-'; cannot change later." },
    { name: "name", label: "Display name", value: team.name ?? "" },
    { name: "weight", label: "Queue weight", type: "number", min: "0.001", step: "any", value: team.weight ?? "", hint: "Its share against other teams waiting in the same class; blank: 1." },
    ...allowanceFields(team),
  ];
}

function teamBody(form, editing) {
  const blank = editing ? null : undefined;
  const f = form.elements;
  const body = {
    name: f.name.value.trim() || blank,
    weight: f.weight.value.trim() === "" ? blank : Number(f.weight.value),
    ...allowanceBody(form, editing),
  };
  if (!editing) body.id = f.id.value.trim();
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}

async function createTeam() {
  const team = await formDialog({
    title: "New team",
    intro: "Budgets are in USD per day and per month (the gateway's report time zone); a request over either is refused.",
    fields: teamFields(),
    action: "Create team",
    // an existing id is refused by the gateway (409 team_exists, param "id": shown at the field)
    submit: (form) => send("POST", "/admin/teams", teamBody(form, false)),
  });
  if (!team) return;
  say(`Created team ${team.id}.`, "good");
  await refresh();
}

async function editTeam(team) {
  const saved = await formDialog({
    title: `Edit team ${team.id}`,
    fields: teamFields(team).map((f) => (f.name === "id" ? { ...f, readonly: true, hint: "A team's id cannot change." } : f)),
    action: "Save",
    submit: (form) => send("PATCH", `/admin/teams/${encodeURIComponent(team.id)}`, teamBody(form, true)),
  });
  if (!saved) return;
  say(`Saved team ${team.id}.`, "good");
  await refresh();
}

async function deleteTeam(team) {
  const ok = await confirmAction({
    title: `Delete team ${team.id}?`,
    text: "Its budgets and limits stop applying. Keys of the team keep its name but no longer share its budget; their spend stays in the reports.",
    action: "Delete",
  });
  if (!ok) return;
  await send("DELETE", `/admin/teams/${encodeURIComponent(team.id)}`);
  say(`Deleted team ${team.id}.`, "good");
  await refresh();
}

function actions(team) {
  if (!team.configured) return el("span", { className: "muted", text: "spend only" });
  return el(
    "div",
    { className: "row-actions" },
    allowed("PATCH /admin/teams/{id}", button("Edit", () => act(() => editTeam(team)), { "aria-label": `Edit team ${team.id}` })),
    allowed("DELETE /admin/teams/{id}", button("Delete", () => act(() => deleteTeam(team)), { className: "danger", "aria-label": `Delete team ${team.id}` })),
  );
}

async function refresh() {
  const [teams, today] = await Promise.all([getJSON("/admin/teams"), getJSON("/admin/usage?group_by=team")]);
  const monthStart = today.to.slice(0, 8) + "01";
  const month = await getJSON(`/admin/usage?group_by=team&from=${monthStart}&to=${today.to}`);
  if (!state.section) return;
  const spentToday = Object.fromEntries((today.data || []).map((r) => [r.team, r.spend_usd]));
  const spentMonth = Object.fromEntries((month.data || []).map((r) => [r.team, r.spend_usd]));
  $("#teams-period", state.section).textContent = `Today is ${today.to}, this month from ${monthStart} (${today.timezone}).`;
  const records = Object.fromEntries((teams.data || []).map((t) => [t.id, { ...t, configured: true }]));
  for (const id of Object.keys(spentMonth)) records[id] = records[id] || { id, configured: false };
  const table = $("#teams-table", state.section);
  const rows = Object.values(records)
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((team) => {
      const day = spentToday[team.id] || 0;
      const mon = spentMonth[team.id] || 0;
      return el(
        "tr",
        { dataset: { team: team.id } },
        td("team", team.id),
        td("name", team.name || "—"),
        td("today", usd(day)),
        td("daily budget", team.budget_daily_usd == null ? "—" : usd(team.budget_daily_usd)),
        used("used today", day, team.budget_daily_usd),
        td("this month", usd(mon)),
        td("monthly budget", team.budget_monthly_usd == null ? "—" : usd(team.budget_monthly_usd)),
        used("used this month", mon, team.budget_monthly_usd),
        td("limits", limitsText(team)),
        td("actions", actions(team)),
      );
    });
  const create = allowed("POST /admin/teams", button("New team", () => act(createTeam)));
  const empty = noteRow(table, create ? "No teams yet. Create one with New team, then give keys to it." : "No teams yet. An admin can create one.", "muted", create);
  loaded(table, rows, empty);
}

export const teamsView = {
  id: "teams",
  title: "Teams & budgets",
  route: "GET /admin/teams",
  template: "tpl-teams",
  async load(section) {
    state.section = section;
    $("#new-team", section)?.addEventListener("click", () => act(createTeam));
    $("#refresh-teams", section).addEventListener("click", () => act(refresh));
    loading($("#teams-table", section), "teams");
    await refresh();
  },
  clear() {
    state.section = null;
  },
};
