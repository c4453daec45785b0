// Playground: send a chat to any chat alias (GET /admin/models), streamed (SSE
// over fetch, shown as it arrives; Stop aborts it), charged to a client key the
// user pastes (kept in this module's memory only) or, for those who may create
// keys, the "console key": a key named console-playground with a 1 USD daily
// budget, created on first use and reused while it exists (its secret, shown to
// the console once, is kept in memory; a new tab rotates it to learn a new one).
// After each answer: the request id, tokens and cost (x-gateway-cost-usd, or for
// a stream, GET /admin/live?request_id=...: a stream's headers leave before its
// cost is known).

import { getJSON, pieces, send } from "../core/api.js";
import { $, act, el, say, usd } from "../core/dom.js";
import { can } from "../core/roles.js";

export const CONSOLE_KEY_NAME = "console-playground";
const memory = { pasted: "", consoleKey: null }; // never written to storage
const state = { section: null, abort: null };

async function consoleKey() {
  if (memory.consoleKey) return memory.consoleKey;
  const keys = (await getJSON("/admin/keys")).data || [];
  const found = keys.find((k) => k.name === CONSOLE_KEY_NAME && !k.revoked_at && k.enabled !== false);
  const made = found
    ? await send("POST", `/admin/keys/${encodeURIComponent(found.id)}/rotate`)
    : await send("POST", "/admin/keys", { name: CONSOLE_KEY_NAME, owner: "console", budget_daily_usd: 1 });
  memory.consoleKey = made.key;
  return made.key;
}

function meta(items) {
  $("#play-meta", state.section).replaceChildren(...items.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v, dataset: { field: k } })]));
}

/** The events of an SSE body as parsed `data:` objects, each as it arrives. */
async function* events(resp) {
  for await (const block of pieces(resp, "\n\n")) {
    const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
    if (data && data !== "[DONE]") yield JSON.parse(data);
  }
}

async function costOf(rid, header) {
  if (header) return Number(header);
  for (let i = 0; i < 10 && state.section; i++) {
    const found = (await getJSON(`/admin/live?request_id=${encodeURIComponent(rid)}`)).request;
    if (found) return found.cost_usd;
    await new Promise((r) => setTimeout(r, 300));
  }
  return null;
}

async function chat(form) {
  const model = form.model.value;
  const message = form.message.value.trim();
  if (!model || !message) {
    say(model ? "Write a message first." : "Pick a model first.", "error");
    (model ? form.message : form.model).focus();
    return;
  }
  const viaConsole = form.charge.value === "console";
  memory.pasted = form.key.value.trim();
  const key = viaConsole ? await consoleKey() : memory.pasted;
  if (!key) {
    say("Paste a client key (Keys: New key shows one once), or charge the console key.", "error");
    form.key.focus();
    return;
  }
  const answer = $("#play-answer", state.section);
  answer.textContent = "";
  meta([["state", "waiting for the first token…"]]);
  const abort = new AbortController();
  state.abort = abort;
  $("#play-stop", state.section).disabled = false;
  form.querySelector("button[type=submit]").disabled = true;
  let resp;
  let usage = null;
  let stopped = false;
  try {
    resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ model, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: message }] }),
      signal: abort.signal,
    });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      const text = body.error?.message || `HTTP ${resp.status}`;
      if (viaConsole && resp.status === 401) memory.consoleKey = null;
      meta([["request id", resp.headers.get("x-request-id") || "—"], ["state", `refused (${resp.status})`]]);
      say(`The gateway refused the chat: ${text}${resp.status === 401 ? " Check the key (revoked, expired, or not a client key)." : ""}`, "error");
      return;
    }
    for await (const chunk of events(resp)) {
      if (chunk.error) throw new Error(chunk.error.message || "the stream broke");
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) answer.append(delta);
      if (chunk.usage) usage = chunk.usage;
    }
  } catch (err) {
    if (err.name !== "AbortError") {
      say(`The chat failed: ${err.message}`, "error");
      return;
    }
    stopped = true;
  } finally {
    state.abort = null;
    if (state.section) {
      $("#play-stop", state.section).disabled = true;
      form.querySelector("button[type=submit]").disabled = false;
    }
  }
  const rid = resp.headers.get("x-request-id") || "";
  const tokens = usage ? `${usage.prompt_tokens} in, ${usage.completion_tokens} out` : "—";
  meta([["request id", rid], ["state", stopped ? "stopped" : "done"], ["tokens", tokens], ["cost", "reading…"]]);
  say(stopped ? "Stopped: the stream was aborted (the gateway charges whatever usage the upstream reported before it)." : `Answered by ${model}.`, stopped ? "warn" : "good");
  const cost = can("GET /admin/live") ? await costOf(rid, resp.headers.get("x-gateway-cost-usd")).catch(() => null) : null;
  if (state.section) meta([["request id", rid], ["state", stopped ? "stopped" : "done"], ["tokens", tokens], ["cost", cost === null ? "not known yet (see Live)" : usd(cost)]]);
}

export const playgroundView = {
  id: "playground",
  title: "Playground",
  route: "GET /admin/models",
  template: "tpl-playground",
  async load(section) {
    state.section = section;
    const form = $("#play-form", section);
    form.key.value = memory.pasted;
    const keyLabel = $("#play-key-label", section);
    for (const radio of form.querySelectorAll("input[name=charge]")) {
      radio.addEventListener("change", () => (keyLabel.hidden = form.charge.value === "console"));
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(() => chat(form));
    });
    $("#play-stop", section).addEventListener("click", () => state.abort?.abort());
    const models = ((await getJSON("/admin/models")).data || []).filter((m) => (m.kind || "chat") === "chat" && !m.disabled);
    form.model.replaceChildren(...models.map((m) => el("option", { value: m.name, text: m.name })));
    if (!models.length) say("No chat model to talk to: an admin adds one in Models.", "warn");
  },
  clear() {
    state.abort?.abort();
    state.abort = null;
    state.section = null;
  },
};

/** Forget the keys kept in memory (sign-out). */
export function forgetPlaygroundKeys() {
  memory.pasted = "";
  memory.consoleKey = null;
}
