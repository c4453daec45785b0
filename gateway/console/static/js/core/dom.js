// DOM helpers. Everything from the API reaches the page through textContent or
// attributes set with setAttribute: never parsed as markup.

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return [...root.querySelectorAll(selector)];
}

/** An element: props `text`, `className`, `dataset`, `on` {event: fn}, any other
 * attribute by name (undefined/null/false skipped); null/false children are skipped. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

/** A button; `label` is its accessible name when the text alone is not enough. */
export function button(text, onClick, props = {}) {
  return el("button", { type: "button", text, ...props, on: { click: onClick } });
}

/** The status line under the header: kind "good", "info", "warn" or "error". */
export function say(text, kind = "info") {
  const status = $("#status");
  status.textContent = text;
  status.className = text ? kind : "";
}

/** The grade of a 0-100 health score: >= 80 good, 50-79 warn, < 50 bad. */
export function grade(score) {
  if (score === null || score === undefined) return "muted";
  return score >= 80 ? "good" : score >= 50 ? "warn" : "bad";
}

/** The status-line kind for a grade. */
export function kindOf(cls) {
  return cls === "good" ? "good" : cls === "warn" ? "warn" : cls === "bad" ? "error" : "info";
}

export function usd(value) {
  if (value === null || value === undefined) return "—";
  if (value >= 1) return "$" + value.toFixed(2);
  if (value === 0) return "$0";
  return "$" + Number(value.toPrecision(3)).toString();
}

/** An ISO time as the browser's local date and time (the ISO text as the title). */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** A table cell with the column's label (shown before the value when tables
 * become cards on phones). `content` is text or a node. */
export function td(label, content, className) {
  const cell = el("td", { className, dataset: { label } });
  if (content instanceof Node) cell.append(content);
  else cell.textContent = content === null || content === undefined ? "" : String(content);
  return cell;
}

/** A long text cut to `max` characters, the whole of it on expand (and as the title). */
export function clipped(text, max = 140) {
  const full = String(text || "");
  // cut before a client library's own detail ("... ssl:default [Connect call failed (...)]")
  const detail = full.slice(40).search(/ [[(]/);
  const at = detail >= 0 && 40 + detail < max ? 40 + detail : max;
  if (full.length <= at) return el("span", { text: full });
  const cut = (at === max ? full.slice(0, max).replace(/\s+\S*$/, "") : full.slice(0, at)) + "…";
  return el(
    "details",
    { className: "clip", title: full },
    el("summary", { text: cut }),
    el("span", { text: full, className: "full" }),
  );
}

/** A row spanning the table that says something: loading, empty (with what to do
 * next, and an optional action button), or a failure. */
export function noteRow(table, text, kind = "muted", action = null) {
  const cols = table.tHead ? table.tHead.rows[0].cells.length : 1;
  const cell = el("td", { colspan: cols, className: `note ${kind}` }, el("span", { text }));
  if (action) cell.append(" ", action);
  return el("tr", { className: "note-row" }, cell);
}

/** Replace a table body's rows, marking the table busy while loading. */
export function loading(table, what) {
  table.setAttribute("aria-busy", "true");
  table.tBodies[0].replaceChildren(noteRow(table, `Loading ${what}…`));
}

export function loaded(table, rows, empty) {
  table.removeAttribute("aria-busy");
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length && empty) body.append(empty);
}

/** A form's values by field name (trimmed text; checkboxes as booleans). */
export function values(form) {
  const out = {};
  for (const field of form.elements) {
    if (!field.name) continue;
    out[field.name] = field.type === "checkbox" ? field.checked : field.value.trim();
  }
  return out;
}

/** A number field's value, or undefined when blank. */
export function num(text) {
  return text === "" || text === undefined ? undefined : Number(text);
}

/** A comma-separated list, or undefined when blank. */
export function list(text) {
  const items = String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : undefined;
}

/** Only the fields that have a value. */
export function compact(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined && v !== ""));
}

/** Run a user action; its failure is said once in the status line (not a request
 * of a session that has ended since: what it would show belongs to no one now). */
export async function act(work) {
  try {
    await work();
  } catch (err) {
    if (err && err.code === "stale") return;
    say(err && err.message ? err.message : String(err), "error");
  }
}
