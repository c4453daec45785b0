// The audit log (admin): who did what, when and from where, newest first, with
// filters by actor (exact), action (exact or a dotted prefix: "keys" or "keys.revoke")
// and time range, a page at a time. The gateway applies the filters (GET /admin/audit
// ?actor=&action=&since=&until=) and pages by a cursor (before=<seq>): one request per
// page. A filtered request reads a bounded part of the log, so a page can come back
// short (even empty) with a cursor: Older goes on from there.

import { getJSON } from "../core/api.js";
import { $, act, el, loaded, loading, noteRow, td, when } from "../core/dom.js";

const PAGE = 50; // records per page
const state = { section: null, cursor: null, filters: null, stack: [], pageStart: null };

function filtersOf(form) {
  const f = form.elements;
  // datetime-local is the browser's local time; the gateway takes ISO 8601 (UTC here)
  const time = (v) => (v ? new Date(v).toISOString() : "");
  return {
    actor: f.actor.value.trim(),
    action: f.action.value.trim(),
    since: time(f.from.value),
    until: time(f.to.value),
  };
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

/** One page from `cursor` (null: the newest); `next` is where the next page starts (null: no more). */
async function page(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  for (const [name, value] of Object.entries(state.filters)) if (value) query.set(name, value);
  if (cursor !== null) query.set("before", String(cursor));
  const data = await getJSON(`/admin/audit?${query}`);
  return { found: data.data, next: data.next_before ?? null };
}

async function show(cursor) {
  const section = state.section;
  const table = $("#audit-table", section);
  loading(table, "the audit log");
  let result;
  try {
    result = await page(cursor);
  } catch (err) {
    // a refused filter (400 naming it) or an unreachable gateway: say so in the table too
    if (state.section === section) {
      loaded(table, [], noteRow(table, `The audit log was not read: ${err.message}`, "bad"));
      $("#audit-older", section).hidden = true;
      $("#audit-summary", section).textContent = "";
    }
    throw err;
  }
  if (state.section !== section) return;
  const { found, next } = result;
  const filtered = Object.values(state.filters).some((v) => v);
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
  const short = found.length < PAGE && next !== null; // the gateway's read limit, not the end
  $("#audit-summary", section).textContent = found.length
    ? `Showing ${found.length} record${found.length === 1 ? "" : "s"}${filtered ? " that match" : ""}, newest first${next === null ? "; the end of the log" : short ? "; Older reads further back" : ""}.`
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
