// The admin API: the session's bearer token (kept in this tab's session storage
// only), JSON requests, NDJSON streams and errors in the API's shape.

const TOKEN_KEY = "gw.console.token";
const REFRESH_KEY = "gw.console.refresh";
export const NDJSON = "application/x-ndjson";

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  refresh: sessionStorage.getItem(REFRESH_KEY),
  me: null,
  /** Called once when a request answers 401 while signed in (the session ended). */
  onExpired: null,
};

export function keep(token, refresh = null) {
  session.token = token;
  session.refresh = refresh;
  sessionStorage.setItem(TOKEN_KEY, token);
  if (refresh) sessionStorage.setItem(REFRESH_KEY, refresh);
  else sessionStorage.removeItem(REFRESH_KEY);
}

export function forget() {
  session.token = null;
  session.refresh = null;
  session.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
}

export class ApiError extends Error {
  constructor(status, message, param, code) {
    super(message);
    this.status = status;
    this.param = param;
    this.code = code;
  }
}

async function errorOf(resp) {
  let message = `HTTP ${resp.status}`;
  let param;
  let code;
  try {
    const data = await resp.json();
    if (data && data.error) {
      message = data.error.message || message;
      param = data.error.param || undefined;
      code = data.error.code || undefined;
    }
  } catch (_) {
    // not JSON (a proxy's page): keep the status line
  }
  return new ApiError(resp.status, message, param, code);
}

/** A request with the session's token; an ApiError for anything but 2xx. */
export async function api(method, path, body, accept = "application/json") {
  const headers = { accept };
  if (session.token) headers.authorization = `Bearer ${session.token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const token = session.token;
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `Cannot reach the gateway (${err.message}). Check that it is running, then try again.`);
  }
  if (token !== session.token) throw new ApiError(0, "the session changed", undefined, "stale");
  if (!resp.ok) {
    const err = await errorOf(resp);
    // a 401 for the token still in use ends the session (not one from a request
    // made before a sign-out or a new sign-in)
    if (resp.status === 401 && token && session.me && session.onExpired) session.onExpired(err);
    throw err;
  }
  return resp;
}

export async function getJSON(path) {
  const token = session.token;
  const data = await (await api("GET", path)).json();
  if (token !== session.token) throw new ApiError(0, "the session changed", undefined, "stale");
  return data;
}

export async function send(method, path, body) {
  const resp = await api(method, path, body);
  return resp.status === 204 ? null : resp.json();
}

/** The text of a streamed response cut at each `separator`, each piece as it arrives (what
 * follows the last separator at the end). */
export async function* pieces(resp, separator) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf(separator)) >= 0) {
      yield buffer.slice(0, end);
      buffer = buffer.slice(end + separator.length);
    }
  }
  if (buffer.trim()) yield buffer;
}

/** The lines of an NDJSON response as objects, each as it arrives. */
export async function* ndjson(resp) {
  for await (const line of pieces(resp, "\n")) if (line.trim()) yield JSON.parse(line);
}

/** `POST /admin/login` (no bearer token): the tokens, or an ApiError. */
export async function login(body) {
  let resp;
  try {
    resp = await fetch("/admin/login", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `Cannot reach the gateway (${err.message}). Check that it is running, then try again.`);
  }
  if (!resp.ok) throw await errorOf(resp);
  return resp.json();
}

/** End the refresh token's session on the server (best effort: the tab forgets it anyway). */
export function logout(refresh) {
  if (!refresh) return;
  fetch("/admin/logout", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: refresh }),
  }).catch(() => {});
}
