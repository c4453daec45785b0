// The hash router: one view per admin task (#models, #keys, ...). A view is
// { id, title, route (the GET it needs, for the role check), template (the id of
// its <template>), load(section), clear() }. Its section is rebuilt from the
// template on every visit and emptied on sign-out, so nothing of a previous
// user or visit stays on screen.

import { $, $$ } from "./dom.js";
import { can, prune } from "./roles.js";

const views = new Map();
let current = null;

export function register(view) {
  views.set(view.id, view);
}

/** The views the signed-in role may open, in registration order. */
export function visible() {
  return [...views.values()].filter((v) => can(v.route));
}

/** Show the view named by the hash (the first visible one when it names none the role may open). */
export async function show(hash) {
  const open = visible();
  const view = open.find((v) => v.id === hash) || open[0];
  if (!view) return;
  for (const section of $$(".view")) section.hidden = section.id !== `${view.id}-view`;
  for (const link of $$("#nav a")) {
    const here = link.dataset.view === view.id;
    link.classList.toggle("current", here);
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current && current !== view) current.clear?.();
  current = view;
  const section = $(`#${view.id}-view`);
  section.replaceChildren(prune($(`#${view.template}`).content.cloneNode(true)));
  document.title = `${view.title} · LLM Gateway console`;
  await view.load(section);
}

/** Empty every view (sign-out, or a new sign-in). */
export function clearAll() {
  for (const view of views.values()) view.clear?.();
  for (const section of $$(".view")) {
    if (section.id !== "login-view") section.replaceChildren();
  }
  current = null;
}
