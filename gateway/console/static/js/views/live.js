// Live operations (the view after sign-in): this replica's requests per second,
// error rate and p50/p95/p99 latency (GET /admin/live, charts by uPlot, vendored
// under static/vendor/), spend today against each team's daily budget, the top
// aliases and keys by spend today (GET /admin/usage, every replica), the latest
// requests with their cost and the latest errors with their request ids. It
// refreshes itself every REFRESH_MS, and not while the tab is hidden.

import { getJSON } from "../core/api.js";
import { $, el, loaded, noteRow, td, usd, when } from "../core/dom.js";

export const REFRESH_MS = 5000;
const state = { section: null, timer: null, charts: [], busy: false, resize: null };

function pct(ratio) {
  return `${(ratio * 100).toFixed(ratio && ratio < 0.1 ? 1 : 0)} %`;
}

function ms(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value)} ms`;
}

function tile(label, value, cls) {
  return el("div", { className: `tile ${cls || ""}` }, el("span", { className: "tile-label", text: label }), el("strong", { text: value }));
}

function tileList(summary) {
  const rate = summary.error_rate;
  return [
    tile("requests / s", summary.rps.toFixed(summary.rps < 10 ? 2 : 0)),
    tile("error rate", pct(rate), rate >= 0.05 ? "bad" : rate > 0 ? "warn" : "good"),
    tile("p50", ms(summary.p50_ms)),
    tile("p95", ms(summary.p95_ms)),
    tile("p99", ms(summary.p99_ms)),
  ];
}

/** With reports.prometheus_url: the same figures over every replica, or why they are missing. */
function prometheus(prom) {
  const box = $("#live-prometheus", state.section);
  box.hidden = !prom;
  if (!prom) return;
  $("#live-prom-tiles", state.section).replaceChildren(...(prom.error ? [] : tileList(prom)));
  $("#live-prom-note", state.section).textContent = prom.error
    ? `Prometheus (${prom.url}) could not be asked: ${prom.error}. The figures above are this replica's own.`
    : `From ${prom.url}: the gateway's metrics over the last minute, every replica.`;
}

function tiles(summary) {
  $("#live-tiles", state.section).replaceChildren(...tileList(summary));
}

/** A bucket's time as the browser's local hh:mm:ss (one label per tick, no date). */
function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

function chartWidth(box) {
  return Math.max(240, Math.floor(box.clientWidth || box.parentElement.clientWidth) - 4);
}

const SERIES = {
  rate: [
    { label: "requests/s", stroke: "#1f5fbf", width: 2, key: "rps" },
    { label: "errors/s", stroke: "#b3261e", width: 2, key: "errors" },
  ],
  latency: [
    { label: "p50", stroke: "#1a7340", width: 2, key: "p50_ms" },
    { label: "p95", stroke: "#8a5300", width: 2, key: "p95_ms" },
    { label: "p99", stroke: "#b3261e", width: 2, key: "p99_ms" },
  ],
};

function dataOf(kind, series) {
  const cols = SERIES[kind].map((s) =>
    s.key === "errors" ? series.rps.map((r, i) => Number((r * series.error_rate[i]).toFixed(3))) : series[s.key],
  );
  return [series.t, ...cols];
}

function drawCharts(series) {
  if (typeof uPlot !== "function") return; // the vendored file did not load: the tiles and tables still work
  const boxes = { rate: $("#chart-rate", state.section), latency: $("#chart-latency", state.section) };
  if (!state.charts.length) {
    for (const kind of ["rate", "latency"]) {
      const box = boxes[kind];
      const opts = {
        width: chartWidth(box),
        height: 200,
        padding: [8, 28, 0, 0], // room for the last time label
        // latency has gaps (no request in a bucket): points show a lone bucket's value
        series: [{}, ...SERIES[kind].map(({ key, ...s }) => ({ ...s, spanGaps: false, points: { show: kind === "latency", size: 5 } }))],
        axes: [{ space: 70, values: (u, ticks) => ticks.map(clock) }, { size: 56 }],
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      };
      state.charts.push(new uPlot(opts, dataOf(kind, series), box));
    }
    state.resize = () => {
      for (const [i, kind] of ["rate", "latency"].entries()) state.charts[i].setSize({ width: chartWidth(boxes[kind]), height: 200 });
    };
    window.addEventListener("resize", state.resize);
    return;
  }
  state.charts[0].setData(dataOf("rate", series));
  state.charts[1].setData(dataOf("latency", series));
}

function top(table, rows, idField, label) {
  const best = rows.filter((r) => r.spend_usd > 0 || r.requests > 0).sort((a, b) => b.spend_usd - a.spend_usd).slice(0, 5);
  loaded(
    table,
    best.map((r) =>
      el("tr", { dataset: { id: r[idField] } }, td(label, r[idField], "name"), td("spend", usd(r.spend_usd)), td("requests", r.requests), td("tokens", r.total_tokens)),
    ),
    noteRow(table, "No spend today yet: send a request through the gateway (or from the Playground)."),
  );
}

function teams(table, usage, records) {
  const spent = new Map(usage.map((r) => [r.team, r.spend_usd]));
  const ids = [...new Set([...records.map((t) => t.id), ...spent.keys()])].sort();
  const rows = ids.map((id) => {
    const team = records.find((t) => t.id === id) || {};
    const spend = spent.get(id) || 0;
    const budget = team.budget_daily_usd;
    let used = td("used", "no daily budget", "muted");
    if (budget !== null && budget !== undefined) {
      const ratio = budget > 0 ? spend / budget : 1;
      const cls = ratio >= 1 ? "bad" : ratio >= 0.8 ? "warn" : "good";
      used = td(
        "used",
        el("span", {}, el("meter", { min: 0, max: 1, low: 0.8, high: 0.99, optimum: 0, value: Math.min(ratio, 1), "aria-label": `${id}: ${Math.round(ratio * 100)} % of the daily budget` }), el("span", { text: ` ${Math.round(ratio * 100)} %` })),
        `used ${cls}`,
      );
    }
    return el("tr", { dataset: { team: id } }, td("team", team.name ? `${id} (${team.name})` : id, "name"), td("spend today", usd(spend)), td("daily budget", budget == null ? "—" : usd(budget)), used);
  });
  loaded(table, rows, noteRow(table, "No teams yet: an admin creates one in Teams & budgets."));
}

function requests(table, list) {
  loaded(
    table,
    list.map((r) =>
      el(
        "tr",
        { dataset: { rid: r.request_id } },
        td("time", when(r.ts)),
        td("request id", r.request_id, "mono"),
        td("alias", r.alias),
        td("key", r.key_id || "—"),
        td("status", r.status, r.status >= 400 ? "bad" : "good"),
        td("latency", ms(r.latency_ms)),
        td("tokens", (r.prompt_tokens ?? 0) + (r.completion_tokens ?? 0)),
        td("cost", usd(r.cost_usd)),
      ),
    ),
    noteRow(table, "No requests in the last minutes on this replica."),
  );
}

function errors(table, list) {
  loaded(
    table,
    list.map((r) =>
      el("tr", { dataset: { rid: r.request_id } }, td("time", when(r.ts)), td("request id", r.request_id, "mono"), td("alias", r.alias), td("key", r.key_id || "—"), td("status", r.status, "bad"), td("code", r.code || "—")),
    ),
    noteRow(table, "No errors recently.", "good"),
  );
}

async function refresh() {
  const section = state.section;
  if (!section || state.busy || document.hidden) return;
  state.busy = true;
  try {
    const [live, teamUsage, aliasUsage, keyUsage, teamList] = await Promise.all([
      getJSON("/admin/live"),
      getJSON("/admin/usage?group_by=team"),
      getJSON("/admin/usage?group_by=alias"),
      getJSON("/admin/usage?group_by=key"),
      getJSON("/admin/teams"),
    ]);
    if (section !== state.section) return;
    tiles(live.summary);
    prometheus(live.prometheus);
    drawCharts(live.series);
    teams($("#live-teams", section), teamUsage.data, teamList.data || []);
    top($("#live-aliases", section), aliasUsage.data, "alias", "alias");
    top($("#live-keys", section), keyUsage.data, "key", "key");
    requests($("#live-requests", section), live.recent_requests);
    errors($("#live-errors", section), live.recent_errors);
    $("#live-updated", section).textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s (paused while the tab is hidden). Rates and latency: this replica, last minute; spend: today (${teamUsage.timezone}), every replica; total today ${usd(teamUsage.total.spend_usd)}.`;
    section.dataset.refreshed = String(Date.now());
  } catch (err) {
    if (err.code === "stale" || err.status === 401) return;
    $("#live-updated", section).textContent = `Could not refresh: ${err.message} (trying again in ${REFRESH_MS / 1000} s).`;
  } finally {
    state.busy = false;
  }
}

function onVisibility() {
  if (!document.hidden) refresh();
}

export const liveView = {
  id: "live",
  title: "Live",
  route: "GET /admin/live",
  template: "tpl-live",
  async load(section) {
    this.clear();
    state.section = section;
    for (const id of ["#live-teams", "#live-aliases", "#live-keys", "#live-requests", "#live-errors"]) {
      const table = $(id, section);
      table.setAttribute("aria-busy", "true");
      table.tBodies[0].replaceChildren(noteRow(table, "Loading…"));
    }
    document.addEventListener("visibilitychange", onVisibility);
    state.timer = setInterval(refresh, REFRESH_MS);
    await refresh();
  },
  clear() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    document.removeEventListener("visibilitychange", onVisibility);
    if (state.resize) window.removeEventListener("resize", state.resize);
    for (const chart of state.charts) chart.destroy();
    state.charts = [];
    state.resize = null;
    state.section = null;
    state.busy = false;
  },
};
