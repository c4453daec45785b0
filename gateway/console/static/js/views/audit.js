// The audit log (admin): who did what, when and from where, newest first, with
// filters by actor, action and time range, a page at a time. GET /admin/audit
// pages by a cursor (before=<seq>); the filters are applied here while reading
// pages of the log, so a page of matches may take several reads (at most
// MAX_READS per click, then Older goes on from where it stopped).

import { getJSON } from "../core/api.js";
import { $, act, el, loaded, loading, noteRow, td, when } from "../core/dom.js";

const PAGE = 50; // matching records shown per page
const READ = 200; // records per request
const MAX_READS = 10;
const state = { section: null, cursor: null, filters: null, stack: [], pageStart: null };

function filtersOf(form) {
  const f = form.elements;
  const time = (v) => (v ? new Date(v).getTime() / 1000 : null);
  return {
    actor: f.actor.value.trim().toLowerCase(),
    action: f.action.value.trim().toLowerCase(),
    from: time(f.from.value),
    to: time(f.to.value),
  };
}

function matches(record, filters) {
  if (filters.actor && !String(record.actor || "").toLowerCase().includes(filters.actor)) return false;
  if (filters.action && !String(record.action || "").toLowerCase().startsWith(filters.action)) return false;
  if (filters.to !== null && record.ts > filters.to) return false;
  if (filters.from !== null && record.ts < filters.from) return false;
  return true;
}

function details(record) {
  const shown = {};
  for (const name of ["before", "after"]) if (record[name] !== null && record[name] !== undefined) shown[name] = record[name];
  if (!Object.keys(shown).length) return el("span", { className: "muted", text: "—" });
  return el("details", {}, el("summary", { text: "changes" }), el("pre", { text: JSON.stringify(shown, null, 2) }));
}

function row(record) {
  const who = record.role ? `${record.actor} (${record.role}${record.via === "master_key" ? ", master key" : ""})` : record.actor;
  return el(
    "tr",
    { dataset: { seq: record.seq } },
    td("time", when(record.at)),
    td("actor", who),
    td("action", record.action, "mono"),
    td("target", record.target),
    td("client", record.client || "—"),
    td("request id", record.request_id || "—", "mono"),
    td("details", details(record)),
  );
}

/** Read from `cursor` until a page of matches, the end of the log, records older
 * than the range, or MAX_READS reads; `next` is where the next page starts (null: the end). */
async function page(cursor) {
  const filters = state.filters;
  const found = [];
  let next = cursor;
  for (let reads = 0; reads < MAX_READS; reads += 1) {
    const query = new URLSearchParams({ limit: String(READ) });
    if (next !== null) query.set("before", String(next));
    const data = await getJSON(`/admin/audit?${query}`);
    for (const record of data.data) {
      if (filters.from !== null && record.ts < filters.from) return { found, next: null };
      if (matches(record, filters)) found.push(record);
      next = record.seq;
      if (found.length >= PAGE) return { found, next };
    }
    if (data.next_before === null || data.next_before === undefined) return { found, next: null };
  }
  return { found, next };
}

async function show(cursor) {
  const section = state.section;
  const table = $("#audit-table", section);
  loading(table, "the audit log");
  const { found, next } = await page(cursor);
  if (state.section !== section) return;
  const filtered = Object.values(state.filters).some((v) => v !== "" && v !== null);
  const empty =
    next !== null
      ? "No matching records among those read so far: Older reads further back."
      : filtered
        ? "No records match these filters. Widen the time range or clear a filter."
        : "The audit log is empty: admin changes and sign-ins are recorded here.";
  loaded(table, found.map(row), noteRow(table, empty));
  state.cursor = next;
  $("#audit-older", section).hidden = next === null;
  $("#audit-newer", section).hidden = state.stack.length === 0;
  $("#audit-summary", section).textContent = found.length
    ? `Showing ${found.length} record${found.length === 1 ? "" : "s"}${filtered ? " that match" : ""}, newest first${next === null ? "; the end of the log" : ""}.`
    : "";
}

async function search(event) {
  event?.preventDefault();
  state.filters = filtersOf($("#audit-filters", state.section));
  state.stack = [];
  state.pageStart = null;
  await show(null);
}

export const auditView = {
  id: "audit",
  title: "Audit log",
  route: "GET /admin/audit",
  template: "tpl-audit",
  async load(section) {
    state.section = section;
    const form = $("#audit-filters", section);
    form.addEventListener("submit", (event) => act(() => search(event)));
    form.addEventListener("reset", () => setTimeout(() => act(search), 0));
    $("#audit-older", section).addEventListener("click", () => act(async () => {
      state.stack.push(state.pageStart);
      state.pageStart = state.cursor;
      await show(state.cursor);
    }));
    $("#audit-newer", section).addEventListener("click", () => act(async () => {
      state.pageStart = state.stack.pop() ?? null;
      await show(state.pageStart);
    }));
    await search();
  },
  clear() {
    Object.assign(state, { section: null, cursor: null, filters: null, stack: [], pageStart: null });
  },
};
