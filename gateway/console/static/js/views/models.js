// Models: every alias with its deployments, health and state; by role: add and
// edit (admin), disable/enable (operator), delete what the API stored (admin),
// connection tests (operator), and the health history of the scheduled checks.

import { getJSON, send } from "../core/api.js";
import { $, act, button, el, grade, loaded, loading, noteRow, say, td, when } from "../core/dom.js";
import { confirmAction } from "../core/dialogs.js";
import { allowed } from "../core/roles.js";
import { openModelForm, wireModelForm } from "./model-form.js";
import { testAll, testModel } from "./model-tests.js";

const state = { models: [], health: {}, tested: {}, section: null };

function path(alias, suffix = "") {
  return `/admin/models/${encodeURIComponent(alias)}${suffix}`;
}

function healthOf(alias) {
  const deps = Object.values(state.health).filter((d) => d.alias === alias);
  const scores = deps.map((d) => d.health_score).filter((s) => s !== null && s !== undefined);
  if (deps.some((d) => d.degraded)) return { text: "degraded", cls: "bad" };
  if (scores.length) {
    const score = Math.min(...scores);
    return { text: `${score}/100`, cls: grade(score) };
  }
  const tested = state.tested[alias];
  if (tested !== undefined && tested !== null) return { text: `${tested}/100 (last test)`, cls: grade(tested) };
  return { text: "not checked", cls: "muted" };
}

function actions(model) {
  const alias = model.name;
  const chat = (model.kind || "chat") === "chat";
  const testable = chat && !model.disabled;
  const stored = model.source === "api" || model.source === "api_override";
  const tests = $("#tests", state.section);
  return el(
    "div",
    { className: "row-actions" },
    allowed("PATCH /admin/models/{alias}", button("Edit", () => act(async () => openModelForm(await getJSON(path(alias)))), { "aria-label": `Edit ${alias}` })),
    allowed(
      "POST /admin/models/{alias}/test",
      button("Test connection", () => act(async () => tested(alias, await testModel(tests, alias))), {
        className: "test",
        disabled: !testable,
        title: testable ? undefined : chat ? "Enable the alias to test it" : "Connection tests are for chat aliases",
        "aria-label": `Test the connection of ${alias}`,
      }),
    ),
    button("History", () => showHistory(alias), { className: "history", "aria-label": `Health history of ${alias}` }),
    model.disabled
      ? allowed("POST /admin/models/{alias}/enable", button("Enable", () => act(() => toggle(alias, "enable")), { "aria-label": `Enable ${alias}` }))
      : allowed("POST /admin/models/{alias}/disable", button("Disable", () => act(() => toggle(alias, "disable")), { "aria-label": `Disable ${alias}` })),
    stored
      ? allowed(
          "DELETE /admin/models/{alias}",
          button(model.source === "api" ? "Delete" : "Revert to file", () => act(() => remove(model)), {
            className: "danger",
            "aria-label": `${model.source === "api" ? "Delete" : "Revert"} ${alias}`,
          }),
        )
      : null,
  );
}

async function tested(alias, score) {
  state.tested[alias] = score;
  await refresh();
}

async function toggle(alias, verb) {
  await send("POST", path(alias, `/${verb}`));
  say(`${verb === "enable" ? "Enabled" : "Disabled"} ${alias}.`, "good");
  await refresh();
}

async function remove(model) {
  const revert = model.source === "api_override";
  const ok = await confirmAction({
    title: revert ? `Revert ${model.name} to the config file?` : `Delete ${model.name}?`,
    text: revert
      ? "The changes made through the API are dropped; the alias serves as the config file defines it."
      : "Requests to this alias will fail with model_not_found. Keys that name it keep the name.",
    action: revert ? "Revert" : "Delete",
  });
  if (!ok) return;
  await send("DELETE", path(model.name));
  say(revert ? `Reverted ${model.name} to the config file.` : `Deleted ${model.name}.`, "good");
  await refresh();
}

function render() {
  const table = $("#models-table", state.section);
  const rows = state.models.map((model) => {
    const health = healthOf(model.name);
    const deps = (model.deployments || []).map((d) => `${d.provider}:${d.model}`).join(", ");
    const stateText = model.disabled ? "disabled" : model.active === false ? "inactive" : "serving";
    return el(
      "tr",
      { dataset: { alias: model.name } },
      td("alias", model.name, "name"),
      td("kind", model.kind || "chat"),
      td("deployments", deps),
      td("health", health.text, `health ${health.cls}`),
      td("state", stateText, model.disabled ? "warn" : undefined),
      td("source", model.source || ""),
      td("actions", actions(model)),
    );
  });
  const add = allowed("POST /admin/models", button("Add model", () => openModelForm(null)));
  const empty = noteRow(table, add ? "No models yet. Add one with Add model." : "No models yet. An admin can add one.", "muted", add);
  loaded(table, rows, empty);
}

async function refresh() {
  const [models, health] = await Promise.all([
    getJSON("/admin/models"),
    getJSON("/admin/health").catch((err) => {
      if (err.status === 401) throw err;
      return { deployments: [] };
    }),
  ]);
  state.models = models.data || [];
  state.health = {};
  for (const dep of health.deployments || []) state.health[dep.id] = dep;
  if (state.section) render();
}

function showHistory(alias) {
  const panel = $("#history", state.section);
  const deps = Object.values(state.health).filter((d) => d.alias === alias);
  $("#history-title", panel).textContent = `Health history: ${alias}`;
  const table = $("#history-table", panel);
  const rows = deps.map((d) => {
    const strip = el("span", { className: "strip", role: "img", "aria-label": `${d.recent.filter(Boolean).length} of ${d.recent.length} recent checks passed` });
    for (const passed of d.recent) strip.append(el("span", { className: passed ? "ok" : "ko", title: passed ? "passed" : "failed" }));
    const last = (d.last || []).map((r) => `${r.name}: ${r.passed ? "passed" : "failed"}`).join(", ");
    return el(
      "tr",
      {},
      td("deployment", d.id),
      td("score", d.health_score === null || d.health_score === undefined ? "—" : `${d.health_score}/100`, `health ${grade(d.health_score)}`),
      td("state", d.degraded ? "degraded" : "ok", d.degraded ? "bad" : undefined),
      td("checks", d.checks),
      td("recent", d.recent.length ? strip : "none yet"),
      td("last checked", when(d.last_checked_at ? new Date(d.last_checked_at * 1000).toISOString() : null)),
      td("last results", last || "—"),
    );
  });
  loaded(table, rows, noteRow(table, "No scheduled checks for this alias yet (embedding aliases are never checked; health_checks: in the config turns them on)."));
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
}

export const modelsView = {
  id: "models",
  title: "Models",
  route: "GET /admin/models",
  template: "tpl-models",
  async load(section) {
    state.section = section;
    wireModelForm(section, async (name) => {
      say(`Saved ${name}.`, "good");
      await refresh();
    });
    $("#refresh-models", section).addEventListener("click", () => act(refresh));
    $("#test-all", section)?.addEventListener("click", () => act(async () => {
      await testAll($("#tests", section));
      await refresh();
    }));
    $("#close-history", section).addEventListener("click", () => ($("#history", section).hidden = true));
    loading($("#models-table", section), "models");
    await refresh();
  },
  clear() {
    state.models = [];
    state.health = {};
    state.tested = {};
    state.section = null;
  },
};

