// What keys and teams both carry (gateway/policies/keys.py _Allowance): the
// aliases they may use, rate limits, budgets and the admission priority class.
// One set of form fields and one reading of them for both.

import { usd } from "../core/dom.js";

const NUMBERS = [
  ["rpm", "Requests per minute", "1"],
  ["tpm", "Tokens per minute", "1"],
  ["max_concurrent", "Concurrent requests", "1"],
  ["budget_daily_usd", "Daily budget (USD)", "any"],
  ["budget_monthly_usd", "Monthly budget (USD)", "any"],
];

/** Form fields for the allowance, filled from `record` (an edit) when given. */
export function allowanceFields(record = {}) {
  return [
    {
      name: "models",
      label: "Models",
      hint: "Aliases it may use, comma-separated; blank: every alias.",
      value: (record.models || []).join(", "),
      wide: true,
    },
    ...NUMBERS.map(([name, label, step]) => ({
      name,
      label,
      type: "number",
      min: step === "1" ? "1" : "0.000001",
      step,
      hint: "Blank: no limit.",
      value: record[name] ?? "",
    })),
    { name: "priority", label: "Priority class", hint: "A queue.classes name; blank: the default.", value: record.priority ?? "" },
  ];
}

/** The allowance fields of a form. `clear`: blank fields as null (a PATCH removes
 * the limit), else left out. */
export function allowanceBody(form, clear) {
  const out = {};
  const blank = clear ? null : undefined;
  const models = form.elements.models.value.split(",").map((s) => s.trim()).filter(Boolean);
  out.models = models.length ? models : blank;
  for (const [name] of NUMBERS) {
    const text = form.elements[name].value.trim();
    out[name] = text === "" ? blank : Number(text);
  }
  const priority = form.elements.priority.value.trim();
  out.priority = priority || blank;
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

/** "60 rpm · 10k tpm · 4 at once", or "none". */
export function limitsText(record) {
  const parts = [];
  if (record.rpm) parts.push(`${record.rpm} rpm`);
  if (record.tpm) parts.push(`${record.tpm} tpm`);
  if (record.max_concurrent) parts.push(`${record.max_concurrent} at once`);
  return parts.join(" · ") || "none";
}

/** "$5.00/day · $100/month", or "none". */
export function budgetText(record) {
  const parts = [];
  if (record.budget_daily_usd != null) parts.push(`${usd(record.budget_daily_usd)}/day`);
  if (record.budget_monthly_usd != null) parts.push(`${usd(record.budget_monthly_usd)}/month`);
  return parts.join(" · ") || "none";
}
