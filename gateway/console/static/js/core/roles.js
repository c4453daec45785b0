// Which controls exist for the signed-in role. The route-role table is the admin
// API's own (ROUTE_ROLES in gateway/admin/access.py, published as each operation's
// `x-role` in GET /admin/openapi.json; a unit test keeps the two equal), so the
// console shows exactly the actions the API would accept from this role, and the
// API refuses the rest anyway.

const RANK = { viewer: 0, operator: 1, admin: 2 };
let table = new Map(); // "METHOD /admin/path/{param}" -> least role
let role = null;

/** Read the role table for `me` (GET /admin/me's answer). */
export async function loadRoles(getJSON, me) {
  role = me && me.role in RANK ? me.role : null;
  const doc = await getJSON("/admin/openapi.json");
  const next = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (op && typeof op === "object" && op["x-role"]) next.set(`${method.toUpperCase()} ${path}`, op["x-role"]);
    }
  }
  table = next;
}

export function clearRoles() {
  table = new Map();
  role = null;
}

/** May the signed-in role call `route` ("POST /admin/keys/{id}/rotate")? Unknown routes: no. */
export function can(route) {
  const need = table.get(route);
  if (need === undefined || role === null) return false;
  if (need === "none") return true;
  return RANK[role] >= RANK[need];
}

/** Remove every control in `root` marked data-route="METHOD /path" that the role may not use. */
export function prune(root) {
  for (const node of root.querySelectorAll("[data-route]")) if (!can(node.dataset.route)) node.remove();
  return root;
}

/** `node` when the role may call `route`, else null (el() skips null children). */
export function allowed(route, node) {
  return can(route) ? node : null;
}

export function currentRole() {
  return role;
}
