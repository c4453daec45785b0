// The admin console: plain JavaScript over the admin API, no build step.
// Everything shown is set through textContent (never innerHTML), so names
// and messages from the API cannot inject markup.
"use strict";

const TOKEN_KEY = "gw.console.token";
const PROBES = ["basic", "korean", "evaluation", "analysis"];
const NDJSON = "application/x-ndjson";

const state = { token: sessionStorage.getItem(TOKEN_KEY), models: [], health: {}, tested: {}, editing: null, backendTimer: null };
// health: the scheduled checks' view by deployment id (GET /admin/health);
// tested: the health score of the last connection test run here, by alias.

// --- small helpers ---------------------------------------------------------------

function $(selector, root = document) {
  return root.querySelector(selector);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

function say(text, kind = "info") {
  const status = $("#status");
  status.textContent = text;
  status.className = kind;
}

function usd(value) {
  if (value === null || value === undefined) return "—";
  if (value >= 1) return "$" + value.toFixed(2);
  if (value === 0) return "$0";
  return "$" + Number(value.toPrecision(3)).toString();
}

class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

async function api(method, path, body, accept = "application/json") {
  const headers = { authorization: `Bearer ${state.token}`, accept };
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `cannot reach the gateway: ${err.message}`);
  }
  if (!resp.ok) {
    let message = `HTTP ${resp.status}`;
    let param;
    try {
      const data = await resp.json();
      if (data && data.error) {
        message = data.error.message || message;
        param = data.error.param;
      }
    } catch (_) {
      // not JSON: keep the status line
    }
    if (resp.status === 401 && state.token) signOut(`Signed out: ${message}`);
    throw new ApiError(resp.status, message, param);
  }
  return resp;
}

async function getJSON(path) {
  return (await api("GET", path)).json();
}

async function* ndjson(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

function failed(err) {
  say(err instanceof ApiError ? err.message : String(err), "error");
}

// --- sign in / out ---------------------------------------------------------------

async function signIn(token, how) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  let who = how;
  try {
    const me = await getJSON("/admin/me");
    who = `${me.username || me.name || "signed in"} (${me.role || "?"})`;
  } catch (err) {
    if (err.status === 401) return; // signOut already ran
    // /admin/me may not exist for this credential: keep `how`
  }
  $("#who").textContent = who;
  $("#nav").hidden = false;
  $("#logout").hidden = false;
  $("#login-view").hidden = true;
  say("Signed in.");
  show(location.hash.slice(1) || "models");
  watchBackend();
}

// --- the state backend: a banner while it is unreachable (the admin API is read-only) -----

const BACKEND_POLL_MS = 10000;

async function checkBackend() {
  const banner = $("#backend-banner");
  try {
    const status = await getJSON("/admin/status");
    const backend = status.state_backend;
    if (backend && !backend.up) {
      banner.textContent =
        `The state backend (${backend.kind}) has been unreachable since ${backend.since}: ` +
        "changes cannot be saved now (they answer 503; try again when it is back). " +
        "Client traffic continues under each policy's failure mode.";
      banner.hidden = false;
      return;
    }
  } catch (err) {
    if (err.status === 401) return;
  }
  banner.hidden = true;
}

function watchBackend() {
  if (state.backendTimer) return;
  checkBackend();
  state.backendTimer = setInterval(() => { if (state.token) checkBackend(); }, BACKEND_POLL_MS);
}

function signOut(message) {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("#login-view").hidden = false;
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  if (message) say(message, "error");
}

async function onLogin(event) {
  event.preventDefault();
  const form = event.target;
  const body = { username: form.username.value, password: form.password.value };
  if (form.totp.value) body.totp = form.totp.value;
  try {
    const resp = await fetch("/admin/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await resp.json();
    if (!resp.ok) throw new ApiError(resp.status, (data.error && data.error.message) || `HTTP ${resp.status}`);
    form.reset();
    await signIn(data.access_token, body.username);
  } catch (err) {
    failed(err);
  }
}

async function onMasterKey(event) {
  event.preventDefault();
  const key = event.target.key.value.trim();
  event.target.reset();
  await signIn(key, "master key");
}

// --- views -----------------------------------------------------------------------

const loaders = { models: loadModels, keys: loadKeys, teams: loadTeams };

function show(view) {
  if (!loaders[view]) view = "models";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `${view}-view`;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("current", link.dataset.view === view);
  loaders[view]().catch(failed);
}

// --- models ----------------------------------------------------------------------

function healthOf(alias) {
  const deps = Object.values(state.health).filter((d) => d.alias === alias);
  const scores = deps.map((d) => d.health_score).filter((s) => s !== null && s !== undefined);
  const grade = (score) => (score === 100 ? "good" : score >= 50 ? "warn" : "bad");
  if (deps.some((d) => d.degraded)) return { text: "degraded", cls: "bad" };
  if (scores.length) {
    const score = Math.min(...scores);
    return { text: `${score}/100`, cls: grade(score) };
  }
  const tested = state.tested[alias];
  if (tested !== undefined && tested !== null) return { text: `${tested}/100 (last test)`, cls: grade(tested) };
  return { text: "not checked", cls: "muted" };
}

async function loadModels() {
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
  renderModels();
}

function renderModels() {
  const body = $("#models-table tbody");
  body.replaceChildren();
  for (const model of state.models) {
    const health = healthOf(model.name);
    const deps = (model.deployments || []).map((d) => `${d.provider}:${d.model}`).join(", ");
    const stateText = model.disabled ? "disabled" : model.active === false ? "inactive" : "serving";
    const canTest = (model.kind || "chat") === "chat" && !model.disabled;
    body.append(
      el(
        "tr",
        { dataset: { alias: model.name } },
        el("td", { text: model.name, className: "name" }),
        el("td", { text: model.kind || "chat" }),
        el("td", { text: deps }),
        el("td", { text: health.text, className: `health ${health.cls}` }),
        el("td", { text: stateText }),
        el("td", { text: model.source || "" }),
        el(
          "td",
          { className: "row-actions" },
          el("button", { type: "button", text: "Edit", on: { click: () => editModel(model.name).catch(failed) } }),
          el("button", {
            type: "button",
            text: "Test connection",
            className: "test",
            disabled: canTest ? undefined : "disabled",
            on: { click: () => testModel(model.name).catch(failed) },
          }),
        ),
      ),
    );
  }
  if (!state.models.length) body.append(el("tr", {}, el("td", { colspan: 7, text: "No models." })));
}

function testRow(alias, deployment, name) {
  return el(
    "tr",
    { dataset: { key: `${alias}|${deployment || ""}|${name}` } },
    el("td", { text: alias }),
    el("td", { text: deployment || "—" }),
    el("td", { text: name }),
    el("td", { text: "running…", className: "result muted" }),
    el("td", { text: "" }),
    el("td", { text: "" }),
  );
}

function fillTest(row, test) {
  const cells = row.children;
  cells[1].textContent = test.deployment || cells[1].textContent;
  cells[3].textContent = test.passed ? "passed" : "failed";
  cells[3].className = `result ${test.passed ? "good" : "bad"}`;
  cells[4].textContent = test.latency_ms === null || test.latency_ms === undefined ? "" : `${Math.round(test.latency_ms)} ms`;
  cells[5].textContent = test.reason || "";
}

function openTests(title) {
  $("#tests").hidden = false;
  $("#tests-title").textContent = title;
  $("#tests-summary").textContent = "";
  $("#tests-table tbody").replaceChildren();
}

async function testModel(alias) {
  openTests(`Connection test: ${alias}`);
  const body = $("#tests-table tbody");
  const rows = {};
  for (const name of PROBES) body.append((rows[name] = testRow(alias, null, name)));
  $("#tests-summary").textContent = "Running the four tests…";
  const resp = await api("POST", `/admin/models/${encodeURIComponent(alias)}/test`, undefined, `${NDJSON}, application/json`);
  const put = (test) => {
    const row = rows[test.name] || body.appendChild(testRow(alias, test.deployment, test.name));
    fillTest(row, test);
  };
  let score = null;
  if ((resp.headers.get("content-type") || "").startsWith(NDJSON)) {
    for await (const event of ndjson(resp)) {
      if (event.event === "test") put(event);
      if ("health_score" in event && event.event !== "test") score = event.health_score;
    }
  } else {
    const data = await resp.json();
    for (const test of data.tests || []) put(test);
    score = data.health_score;
  }
  state.tested[alias] = score;
  $("#tests-summary").textContent = `Health score ${score ?? "—"}/100`;
  say(`Tested ${alias}: health score ${score ?? "—"}/100.`);
  await loadModels();
}

async function testAll() {
  openTests("Connection test: every chat deployment");
  const body = $("#tests-table tbody");
  const resp = await api("POST", "/admin/models/test-all", undefined, NDJSON);
  for await (const event of ndjson(resp)) {
    if (event.event === "start") $("#tests-summary").textContent = `Running ${event.tests} tests on ${event.deployments} deployments…`;
    else if (event.event === "test") fillTest(body.appendChild(testRow(event.alias, event.deployment, event.name)), event);
    else if (event.event === "done") {
      const text = `Done: ${event.healthy} of ${event.deployments} deployments healthy` + (event.error ? ` (${event.error})` : "");
      $("#tests-summary").textContent = text;
      say(text);
    }
  }
  await loadModels();
}

// --- the model form --------------------------------------------------------------

function addDeploymentRow(dep = {}, index = null) {
  const row = $("#deployment-row").content.firstElementChild.cloneNode(true);
  if (index !== null) row.dataset.index = String(index);
  for (const field of ["provider", "model", "base_url", "api_key", "weight", "priority"]) {
    if (dep[field] !== undefined && dep[field] !== null) $(`[name=${field}]`, row).value = dep[field];
  }
  $(".remove", row).addEventListener("click", () => row.remove());
  $("#deployments-table tbody").append(row);
}

function openModelForm(model) {
  const form = $("#model-form");
  form.reset();
  $("#deployments-table tbody").replaceChildren();
  state.editing = model;
  $("#model-form-title").textContent = model ? `Edit ${model.name}` : "Add a model";
  form.name.readOnly = Boolean(model);
  if (model) {
    form.name.value = model.name;
    form.kind.value = model.kind || "chat";
    form.strategy.value = model.strategy || "priority";
    form.fallbacks.value = (model.fallbacks || []).join(", ");
    form.description.value = model.description || "";
    (model.deployments || []).forEach((dep, i) => addDeploymentRow(dep, i));
  } else {
    addDeploymentRow();
  }
  form.hidden = false;
  form.name.focus();
}

async function editModel(alias) {
  openModelForm(await getJSON(`/admin/models/${encodeURIComponent(alias)}`));
}

function formDeployments() {
  const original = (state.editing && state.editing.deployments) || [];
  return [...document.querySelectorAll("#deployments-table tbody tr")].map((row) => {
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

async function saveModel(event) {
  event.preventDefault();
  const form = event.target;
  const body = {
    kind: form.kind.value,
    strategy: form.strategy.value,
    description: form.description.value,
    fallbacks: form.fallbacks.value.split(",").map((s) => s.trim()).filter(Boolean),
    deployments: formDeployments(),
  };
  const name = form.name.value.trim();
  try {
    if (state.editing) await api("PATCH", `/admin/models/${encodeURIComponent(name)}`, body);
    else await api("POST", "/admin/models", { name, ...body });
  } catch (err) {
    say(`Not saved: ${err.param ? err.param + ": " : ""}${err.message}`, "error");
    return;
  }
  form.hidden = true;
  state.editing = null;
  say(`Saved ${name}.`);
  await loadModels();
}

// --- keys ------------------------------------------------------------------------

async function loadKeys() {
  const keys = (await getJSON("/admin/keys")).data || [];
  const body = $("#keys-table tbody");
  body.replaceChildren();
  for (const key of keys) {
    const stateText = key.revoked_at ? "revoked" : key.enabled === false ? "disabled" : "enabled";
    body.append(
      el(
        "tr",
        {},
        el("td", { text: key.id }),
        el("td", { text: key.name }),
        el("td", { text: key.team || "—" }),
        el("td", { text: stateText }),
        el("td", { text: key.key_hint || "" }),
        el("td", { text: (key.models || ["all"]).join(", ") }),
        el("td", { text: key.budget_daily_usd == null ? "—" : usd(key.budget_daily_usd) }),
        el("td", { text: key.expires_at || "never" }),
      ),
    );
  }
  if (!keys.length) body.append(el("tr", {}, el("td", { colspan: 8, text: "No keys." })));
}

// --- teams -----------------------------------------------------------------------

function usedCell(spent, budget) {
  if (budget === null || budget === undefined) return el("td", { text: "no budget", className: "muted" });
  const ratio = spent / budget;
  return el(
    "td",
    { className: `used ${ratio >= 1 ? "bad" : ratio >= 0.8 ? "warn" : "good"}` },
    el("meter", { min: 0, max: 1, low: 0.8, high: 0.99, optimum: 0, value: Math.min(ratio, 1) }),
    el("span", { text: ` ${Math.round(ratio * 100)} %` }),
  );
}

async function loadTeams() {
  const [teams, today] = await Promise.all([getJSON("/admin/teams"), getJSON("/admin/usage?group_by=team")]);
  const monthStart = today.to.slice(0, 8) + "01";
  const month = await getJSON(`/admin/usage?group_by=team&from=${monthStart}&to=${today.to}`);
  const spentToday = Object.fromEntries((today.data || []).map((r) => [r.team, r.spend_usd]));
  const spentMonth = Object.fromEntries((month.data || []).map((r) => [r.team, r.spend_usd]));
  $("#teams-period").textContent = `Today is ${today.to}, this month from ${monthStart} (${today.timezone}).`;
  const records = Object.fromEntries((teams.data || []).map((t) => [t.id, t]));
  for (const id of Object.keys(spentMonth)) records[id] = records[id] || { id };
  const body = $("#teams-table tbody");
  body.replaceChildren();
  for (const team of Object.values(records).sort((a, b) => a.id.localeCompare(b.id))) {
    const day = spentToday[team.id] || 0;
    const mon = spentMonth[team.id] || 0;
    body.append(
      el(
        "tr",
        { dataset: { team: team.id } },
        el("td", { text: team.id }),
        el("td", { text: team.name || "—" }),
        el("td", { text: usd(day) }),
        el("td", { text: team.budget_daily_usd == null ? "—" : usd(team.budget_daily_usd) }),
        usedCell(day, team.budget_daily_usd),
        el("td", { text: usd(mon) }),
        el("td", { text: team.budget_monthly_usd == null ? "—" : usd(team.budget_monthly_usd) }),
        usedCell(mon, team.budget_monthly_usd),
      ),
    );
  }
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: 8, text: "No teams." })));
}

// --- wiring ----------------------------------------------------------------------

function wire() {
  $("#login-form").addEventListener("submit", onLogin);
  $("#key-form").addEventListener("submit", onMasterKey);
  $("#logout").addEventListener("click", () => {
    signOut();
    say("Signed out.");
  });
  $("#add-model").addEventListener("click", () => openModelForm(null));
  $("#cancel-model").addEventListener("click", () => ($("#model-form").hidden = true));
  $("#add-deployment").addEventListener("click", () => addDeploymentRow());
  $("#model-form").addEventListener("submit", saveModel);
  $("#test-all").addEventListener("click", () => testAll().catch(failed));
  $("#refresh-models").addEventListener("click", () => loadModels().catch(failed));
  $("#refresh-keys").addEventListener("click", () => loadKeys().catch(failed));
  $("#refresh-teams").addEventListener("click", () => loadTeams().catch(failed));
  window.addEventListener("hashchange", () => {
    if (!state.token) return;
    say("");
    show(location.hash.slice(1));
  });
  if (state.token) signIn(state.token, "saved session");
  else signOut();
}

document.addEventListener("DOMContentLoaded", wire);
