// The admin console: plain ES modules over the admin API, no build step.
// main.js signs in and out, builds the navigation for the role, and routes
// #hash -> view. Views: js/views/*.js, one per admin task; each appears in the
// navigation for the roles whose GET route it needs. Live is the first (the view
// after sign-in).

import { forget, getJSON, keep, login, logout, session } from "./core/api.js";
import { closeAll, copySecret } from "./core/dialogs.js";
import { $, el, say } from "./core/dom.js";
import { clearRoles, loadRoles } from "./core/roles.js";
import { clearAll, register, show, visible } from "./core/router.js";
import { auditView } from "./views/audit.js";
import { keysView } from "./views/keys.js";
import { liveView } from "./views/live.js";
import { modelsView } from "./views/models.js";
import { forgetPlaygroundKeys, playgroundView } from "./views/playground.js";
import { reportsView } from "./views/reports.js";
import { secretsView } from "./views/secrets.js";
import { teamsView } from "./views/teams.js";
import { usersView } from "./views/users.js";

const NAV = { live: "Live", playground: "Playground", reports: "Reports", models: "Models", keys: "Keys", teams: "Teams & budgets", users: "Users", secrets: "Secrets", audit: "Audit" };
for (const view of [liveView, modelsView, keysView, teamsView, playgroundView, reportsView, usersView, secretsView, auditView]) register(view);

const BACKEND_POLL_MS = 10000;
let backendTimer = null;

// --- sign in / out -----------------------------------------------------------------

const LOGIN_ADVICE = {
  invalid_credentials: "Sign-in failed: the username, password or one-time code is wrong. Check them and try again (repeated failures lock the account for a while).",
  totp_required: "This account needs its one-time code: enter the current code from your authenticator app, then sign in.",
  account_disabled: "Sign-in failed: this account is disabled. Ask an admin to enable it.",
};

function loginMessage(err) {
  if (err.status === 0) return err.message;
  if (LOGIN_ADVICE[err.code]) return LOGIN_ADVICE[err.code];
  if (err.code === "account_locked") return `Sign-in failed: ${err.message} Wait, or ask an admin to unlock it (Users, Unlock).`;
  if (err.status === 429) return `Sign-in refused for now: ${err.message} Wait a moment, then try again.`;
  return `Sign-in failed: ${err.message}`;
}

function showLogin() {
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== "login-view";
  $("#nav").replaceChildren();
  $("#nav").hidden = true;
  $("#menu-toggle").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  document.body.classList.remove("menu-open");
  document.title = "Sign in · LLM Gateway console";
}

/** Forget the session and everything shown for it. */
function signOut(message, kind = "info") {
  const refresh = session.refresh;
  forget();
  forgetPlaygroundKeys();
  logout(refresh);
  closeAll();
  clearAll();
  clearRoles();
  if (backendTimer) clearInterval(backendTimer);
  backendTimer = null;
  $("#backend-banner").hidden = true;
  showLogin();
  say(message || "", kind);
}

session.onExpired = () => signOut("Your session has ended (it expired, or was revoked or changed by an admin). Sign in again.", "error");

function buildNav() {
  const nav = $("#nav");
  nav.replaceChildren(...visible().map((v) => el("a", { href: `#${v.id}`, dataset: { view: v.id }, text: NAV[v.id] || v.title })));
  nav.hidden = false;
}

/** Use `token` (a login's access token, or the master key): who it is, what the role may do. */
async function signIn(token, refresh, how) {
  closeAll();
  clearAll();
  clearRoles();
  keep(token, refresh);
  session.me = null;
  say("Signing in…", "info");
  let me;
  try {
    me = await getJSON("/admin/me");
    await loadRoles(getJSON, me);
  } catch (err) {
    const message =
      err.status === 401
        ? how === "master key"
          ? "The master key was not accepted: paste the whole value of GATEWAY_MASTER_KEY and try again, or sign in with a user account."
          : "Your saved session has ended. Sign in again."
        : `Could not sign in: ${err.message}`;
    signOut(message, "error");
    return;
  }
  session.me = me;
  $("#who").textContent = `${me.name} (${me.role})`;
  $("#logout").hidden = false;
  $("#menu-toggle").hidden = false;
  $("#login-view").hidden = true;
  buildNav();
  say(`Signed in as ${me.name}, ${me.role}.`, "info");
  await route();
  watchBackend();
}

async function onLogin(event) {
  event.preventDefault();
  const form = event.target;
  const body = { username: form.username.value.trim(), password: form.password.value };
  if (form.totp.value.trim()) body.totp = form.totp.value.trim();
  if (!body.username || !body.password) {
    say("Enter your username and password.", "error");
    (body.username ? form.password : form.username).focus();
    return;
  }
  let tokens;
  try {
    tokens = await login(body);
  } catch (err) {
    form.password.value = "";
    say(loginMessage(err), "error");
    (err.code === "totp_required" ? form.totp : form.password).focus();
    return;
  }
  form.reset();
  await signIn(tokens.access_token, tokens.refresh_token || null, "user");
}

async function onMasterKey(event) {
  event.preventDefault();
  const key = event.target.key.value.trim();
  event.target.reset();
  if (!key) {
    say("Paste the master key first.", "error");
    return;
  }
  await signIn(key, null, "master key");
}

// --- views -------------------------------------------------------------------------

async function route() {
  if (!session.me) return;
  document.body.classList.remove("menu-open");
  $("#menu-toggle").setAttribute("aria-expanded", "false");
  try {
    await show(location.hash.slice(1));
  } catch (err) {
    if (err.status !== 401 && err.code !== "stale") say(err.message, "error");
  }
}

// --- the state backend: a banner while it is unreachable (the admin API is read-only) -----

async function checkBackend() {
  const banner = $("#backend-banner");
  try {
    const status = await getJSON("/admin/status");
    const backend = status.state_backend;
    if (backend && !backend.up) {
      banner.textContent =
        `The state backend (${backend.kind}) has been unreachable since ${backend.since}: ` +
        "changes cannot be saved now (they answer 503; try again when it is back). " +
        "Client traffic continues under each policy's failure mode.";
      banner.hidden = false;
      return;
    }
  } catch (err) {
    if (err.status === 401) return;
  }
  banner.hidden = true;
}

function watchBackend() {
  if (backendTimer) return;
  checkBackend();
  backendTimer = setInterval(() => {
    if (session.token) checkBackend();
  }, BACKEND_POLL_MS);
}

// --- wiring ------------------------------------------------------------------------

function wire() {
  $("#login-form").addEventListener("submit", onLogin);
  $("#key-form").addEventListener("submit", onMasterKey);
  $("#logout").addEventListener("click", () => signOut("Signed out."));
  $("#menu-toggle").addEventListener("click", () => {
    const open = document.body.classList.toggle("menu-open");
    $("#menu-toggle").setAttribute("aria-expanded", String(open));
    if (open) $("#nav a")?.focus();
  });
  // choosing a view closes the phone menu (also the view already shown: no hashchange then)
  $("#nav").addEventListener("click", (event) => {
    if (!event.target.closest("a")) return;
    document.body.classList.remove("menu-open");
    $("#menu-toggle").setAttribute("aria-expanded", "false");
  });
  $("#secret-copy").addEventListener("click", copySecret);
  $("#secret-done").addEventListener("click", () => $("#secret-dialog").close("ok"));
  $("#confirm-ok").addEventListener("click", () => $("#confirm-dialog").close("ok"));
  $("#confirm-cancel").addEventListener("click", () => $("#confirm-dialog").close(""));
  window.addEventListener("hashchange", () => {
    if (session.me) {
      say("");
      route();
    }
  });
  showLogin();
  if (session.token) signIn(session.token, session.refresh, "saved session");
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
else wire();
