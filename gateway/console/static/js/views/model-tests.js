// Connection tests (POST /admin/models/{alias}/test and /admin/models/test-all),
// streamed as NDJSON: each test's row fills in as its result arrives. A reason
// shared by several tests is shown once; long ones are cut (the whole text on
// expand), with a plain-language hint of what to check.

import { api, ndjson, NDJSON } from "../core/api.js";
import { $, clipped, el, grade, kindOf, say, td } from "../core/dom.js";

const PROBES = ["basic", "korean", "evaluation", "analysis"];

const HINTS = [
  [/upstream_connect_error|connect(ion)? (refused|error)|cannot connect/i, "The gateway cannot reach the upstream: check the base URL and that the server is up."],
  [/timeout/i, "The upstream did not answer in time: check that it is up, or raise the deployment's timeouts."],
  [/invalid_api_key|\b401\b|\b403\b|unauthori[sz]ed|authentication/i, "The upstream refused the credentials: check the API key."],
  [/model_not_found|\b404\b|does not exist/i, "The upstream does not know this model: check the model name and base URL."],
  [/rate_limit|\b429\b/i, "The upstream is rate limiting: try again in a minute."],
  [/upstream_address_refused/i, "The gateway's upstream rules refuse this address (upstream: in the config)."],
  [/no_deployment_available/i, "No deployment could take the test now (circuit open, at capacity or paced)."],
];

export function hintFor(reason) {
  for (const [pattern, hint] of HINTS) if (pattern.test(reason)) return hint;
  return "";
}

/** The results panel of one run: rows by key, reasons seen, the summary line. */
class Run {
  constructor(panel, title) {
    this.panel = panel;
    this.body = $("#tests-table tbody", panel);
    this.summary = $("#tests-summary", panel);
    this.rows = new Map();
    this.reasons = new Map(); // reason -> the first test that gave it
    panel.hidden = false;
    $("#tests-title", panel).textContent = title;
    this.summary.textContent = "";
    this.summary.className = "";
    this.body.replaceChildren();
    $("#tests-reasons", panel).replaceChildren();
  }

  row(alias, deployment, name) {
    const key = `${alias}|${deployment || ""}|${name}`;
    let row = this.rows.get(key);
    if (!row) {
      row = el(
        "tr",
        { dataset: { key } },
        td("alias", alias),
        td("deployment", deployment || "—"),
        td("test", name),
        td("result", "running…", "result muted"),
        td("latency", ""),
        td("reason", ""),
      );
      this.rows.set(key, row);
      this.body.append(row);
    }
    return row;
  }

  fill(row, test) {
    const cells = row.children;
    if (test.deployment) cells[1].textContent = test.deployment;
    cells[3].textContent = test.passed ? "passed" : "failed";
    cells[3].className = `result ${test.passed ? "good" : "bad"}`;
    cells[4].textContent = test.latency_ms === null || test.latency_ms === undefined ? "" : `${Math.round(test.latency_ms)} ms`;
    const reason = test.reason || "";
    const first = this.reasons.get(reason);
    if (!reason) cells[5].replaceChildren();
    else if (first && first !== test.name) cells[5].replaceChildren(el("span", { className: "muted", text: `same as ${first}` }));
    else {
      this.reasons.set(reason, test.name);
      cells[5].replaceChildren(clipped(reason));
      if (!test.passed) this.explain(reason);
    }
  }

  explain(reason) {
    const hint = hintFor(reason);
    const list = $("#tests-reasons", this.panel);
    if (hint && ![...list.children].some((li) => li.textContent === hint)) list.append(el("li", { text: hint }));
  }

  done(text, score) {
    const cls = grade(score);
    this.summary.textContent = text;
    this.summary.className = cls;
    say(text, kindOf(cls));
  }
}

function put(run, alias, test) {
  run.fill(run.row(alias, test.deployment, test.name), test);
}

/** Test one alias: four rows, filled as the results stream in; resolves with the score. */
export async function testModel(panel, alias) {
  const run = new Run(panel, `Connection test: ${alias}`);
  for (const name of PROBES) run.row(alias, null, name);
  run.summary.textContent = "Running the four tests…";
  const resp = await api("POST", `/admin/models/${encodeURIComponent(alias)}/test`, undefined, `${NDJSON}, application/json`);
  // the four placeholder rows take the deployment that answered once it is known
  const place = (test) => {
    const row = run.rows.get(`${alias}||${test.name}`) || run.row(alias, test.deployment, test.name);
    run.fill(row, test);
  };
  let score = null;
  if ((resp.headers.get("content-type") || "").startsWith(NDJSON)) {
    for await (const event of ndjson(resp)) {
      if (event.event === "test") place(event);
      else if (event.event === "done") score = event.health_score;
    }
  } else {
    const data = await resp.json();
    for (const test of data.tests || []) place(test);
    score = data.health_score;
  }
  const verdict = score === null || score === undefined ? "no score" : `${score}/100`;
  run.done(`Tested ${alias}: health score ${verdict}.`, score);
  return score;
}

/** Test every chat deployment, each test's row as it arrives. */
export async function testAll(panel) {
  const run = new Run(panel, "Connection test: every chat deployment");
  run.summary.textContent = "Starting…";
  const resp = await api("POST", "/admin/models/test-all", undefined, NDJSON);
  for await (const event of ndjson(resp)) {
    if (event.event === "start") run.summary.textContent = `Running ${event.tests} tests on ${event.deployments} deployments…`;
    else if (event.event === "test") put(run, event.alias, event);
    else if (event.event === "done") {
      const text = `Done: ${event.healthy} of ${event.deployments} deployments healthy` + (event.error ? ` (${event.error})` : "") + ".";
      run.done(text, event.health_score);
    }
  }
}
