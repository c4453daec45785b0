// Modal dialogs (<dialog> with showModal): a confirmation for destructive actions,
// a form, and a secret shown once with a copy button. Each keeps focus inside
// (Tab and Shift+Tab cycle through its controls), closes on Esc, and gives focus
// back to the control that opened it.

import { $, el } from "./dom.js";

const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";

function trap(dialog) {
  if (dialog.dataset.trapped) return;
  dialog.dataset.trapped = "1";
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((n) => n.offsetParent !== null || n === document.activeElement);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  });
}

/** Open `dialog` modally; resolves with its returnValue when it closes (Esc: ""). */
function open(dialog, focus) {
  trap(dialog);
  const opener = document.activeElement;
  dialog.returnValue = "";
  dialog.showModal();
  (focus || dialog.querySelector(FOCUSABLE))?.focus();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (opener && opener.isConnected) opener.focus();
        resolve(dialog.returnValue);
      },
      { once: true },
    );
  });
}

/** Close every open dialog (sign-out). */
export function closeAll() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  const secret = $("#secret-value");
  if (secret) secret.value = "";
}

/** Ask before a destructive action: true when confirmed. Focus starts on Cancel. */
export async function confirmAction({ title, text, action }) {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  return (await open(dialog, $("#confirm-cancel"))) === "ok";
}

function field(spec) {
  const id = `f-${spec.name}`;
  const hint = spec.hint ? el("small", { id: `${id}-hint`, className: "hint", text: spec.hint }) : null;
  const common = {
    id,
    name: spec.name,
    required: spec.required,
    "aria-describedby": hint ? `${id}-hint` : undefined,
    autocomplete: spec.autocomplete || "off",
    readonly: spec.readonly,
  };
  let input;
  if (spec.type === "select") {
    input = el("select", common, ...spec.options.map(([value, label]) => el("option", { value, text: label })));
    if (spec.value !== undefined) input.value = spec.value;
  } else if (spec.type === "textarea") {
    input = el("textarea", { ...common, rows: 3 });
    input.value = spec.value ?? "";
  } else if (spec.type === "checkbox") {
    input = el("input", { ...common, type: "checkbox" });
    input.checked = Boolean(spec.value);
    return el("label", { className: "check", for: id }, input, ` ${spec.label}`, hint);
  } else {
    input = el("input", { ...common, type: spec.type || "text", min: spec.min, step: spec.step, placeholder: spec.placeholder });
    input.value = spec.value ?? "";
  }
  return el("label", { for: id, className: spec.wide ? "wide" : undefined }, spec.label, input, hint);
}

/** A form in a dialog. `submit(values)` returns a promise; an error it throws is
 * shown in the dialog (the field the API names is marked) and the dialog stays open.
 * Resolves with submit's result, or null when cancelled. */
export async function formDialog({ title, intro, fields, action, submit }) {
  const dialog = $("#form-dialog");
  const error = el("p", { id: "form-error", className: "error", role: "alert" });
  const form = el(
    "form",
    { id: "dialog-form", novalidate: true },
    el("h2", { id: "form-title", text: title }),
    intro ? el("p", { className: "hint", text: intro }) : null,
    el("div", { className: "grid" }, ...fields.map(field)),
    error,
    el(
      "div",
      { className: "actions" },
      el("button", { type: "submit", className: "primary", text: action }),
      el("button", { type: "button", text: "Cancel", on: { click: () => dialog.close("") } }),
    ),
  );
  dialog.replaceChildren(form);
  let result = null;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
    const missing = [...form.elements].find((f) => f.required && !f.value.trim());
    if (missing) {
      missing.setAttribute("aria-invalid", "true");
      error.textContent = `${missing.labels[0].firstChild.textContent.trim()} is required.`;
      missing.focus();
      return;
    }
    const busy = form.querySelector("button[type=submit]");
    busy.disabled = true;
    try {
      result = await submit(form);
      dialog.close("ok");
    } catch (err) {
      const named = err.param ? form.elements.namedItem(String(err.param).split(/[.[]/)[0]) : null;
      if (named && named.setAttribute) {
        named.setAttribute("aria-invalid", "true");
        named.focus();
      }
      error.textContent = `Not saved: ${err.message}`;
    } finally {
      busy.disabled = false;
    }
  });
  const closed = await open(dialog, form.querySelector("input, select, textarea"));
  dialog.replaceChildren();
  return closed === "ok" ? result : null;
}

/** Show a secret once (a new key): a copy button, and a fallback that selects the
 * text when the clipboard cannot be written. The value leaves the page on close. */
export async function showSecret({ title, text }, secret) {
  const dialog = $("#secret-dialog");
  const input = $("#secret-value");
  const note = $("#secret-copied");
  $("#secret-title").textContent = title;
  $("#secret-text").textContent = text;
  input.value = secret;
  note.textContent = "";
  await open(dialog, $("#secret-copy"));
  input.value = "";
}

export async function copySecret() {
  const input = $("#secret-value");
  const note = $("#secret-copied");
  try {
    if (!navigator.clipboard) throw new Error("no clipboard");
    await navigator.clipboard.writeText(input.value);
    note.textContent = "Copied to the clipboard.";
  } catch (_) {
    input.focus();
    input.select();
    note.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy it.";
  }
}
