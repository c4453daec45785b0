// Reports: the daily, weekly or monthly report (GET /admin/reports/{period}?format=html)
// embedded in the page. The HTML is the gateway's own (autoescaped templates, no
// script); it is parsed inert with DOMParser and only its body's elements are
// adopted, without any script, frame, style or event attribute, so the console's
// CSP (no inline script or style, no frames) holds; console.css styles it.

import { api } from "../core/api.js";
import { $, el, say } from "../core/dom.js";

const state = { section: null };
const DROP = "script, style, link, iframe, frame, object, embed, meta, base, form";

function adopt(html) {
  // the page's own <style> is dropped before parsing (the console's CSP would refuse it,
  // and report the refusal); console.css styles the report instead
  const doc = new DOMParser().parseFromString(html.replace(/<style\b[\s\S]*?<\/style>/gi, ""), "text/html");
  for (const node of doc.body.querySelectorAll(DROP)) node.remove();
  for (const node of doc.body.querySelectorAll("*")) {
    for (const attr of [...node.attributes]) {
      if (/^on/i.test(attr.name) || attr.name === "style" || /^\s*javascript:/i.test(attr.value)) node.removeAttribute(attr.name);
    }
  }
  for (const table of doc.body.querySelectorAll("table")) {
    const wrap = doc.createElement("div");
    wrap.className = "report-table";
    wrap.setAttribute("tabindex", "0");
    wrap.setAttribute("role", "region");
    wrap.setAttribute("aria-label", table.previousElementSibling?.textContent || "table");
    table.replaceWith(wrap);
    wrap.append(table);
  }
  const title = doc.body.querySelector("h1");
  if (title) {
    const h = doc.createElement("h3");
    h.textContent = title.textContent;
    title.replaceWith(h);
  }
  for (const h2 of doc.body.querySelectorAll("h2")) {
    const h = doc.createElement("h4");
    h.textContent = h2.textContent;
    h2.replaceWith(h);
  }
  return [...doc.body.childNodes].map((n) => document.adoptNode(n));
}

async function show(form) {
  const section = state.section;
  const period = form.period.value;
  const date = form.date.value;
  const target = $("#report", section);
  const note = $("#report-state", section);
  target.setAttribute("aria-busy", "true");
  note.textContent = `Loading the ${period} report…`;
  const query = new URLSearchParams({ format: "html" });
  if (date) query.set("date", date);
  try {
    const html = await (await api("GET", `/admin/reports/${period}?${query}`, undefined, "text/html")).text();
    if (section !== state.section) return;
    target.replaceChildren(...adopt(html));
    note.textContent = `The ${period} report${date ? ` for the period of ${date}` : ""}. The same page: GET /admin/reports/${period}?format=html (also md, json).`;
  } catch (err) {
    if (err.code === "stale") return;
    target.replaceChildren(el("p", { className: "error", text: `Could not build the report: ${err.message}` }));
    note.textContent = "";
    say(`Could not build the report: ${err.message}`, "error");
  } finally {
    target.removeAttribute("aria-busy");
  }
}

export const reportsView = {
  id: "reports",
  title: "Reports",
  route: "GET /admin/reports/{period}",
  template: "tpl-reports",
  async load(section) {
    state.section = section;
    const form = $("#report-form", section);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      show(form);
    });
    await show(form);
  },
  clear() {
    state.section = null;
  },
};
