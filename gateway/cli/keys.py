"""``gateway keys create|list|revoke|rotate``: client keys through the admin API.

The commands talk to a running gateway (``--url``, default ``$GATEWAY_URL`` or
http://127.0.0.1:8080) with the master key from ``$GATEWAY_MASTER_KEY``, so they
work the same on the embedded and the Redis backend and on every replica.
Exit codes: 0 done, 1 the gateway refused or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from gateway.cli.connection import AdminClient, Refused, add_url_argument


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage client keys through the admin API")
    add_url_argument(keys, os.environ)
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key (the key is printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--team")
    create.add_argument("--owner")
    create.add_argument("--models", help="comma-separated aliases (default: all)")
    create.add_argument("--rpm", type=int)
    create.add_argument("--tpm", type=int)
    create.add_argument("--max-concurrent", type=int)
    create.add_argument("--budget-daily-usd", type=float)
    create.add_argument("--budget-monthly-usd", type=float)
    create.add_argument("--expires-at", help="ISO 8601 with a timezone, e.g. 2027-01-01T00:00:00Z")
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("revoke", "revoke a key at once"), ("rotate", "issue a new secret for a key")):
        actions.add_parser(name, help=text).add_argument("id")


def run(args: argparse.Namespace) -> int:
    master = os.environ.get("GATEWAY_MASTER_KEY")
    if not master:
        print("GATEWAY_MASTER_KEY is not set: the admin API needs the master key", file=sys.stderr)
        return 2
    client = AdminClient(args.url, master)
    try:
        if args.action == "create":
            return _create(client, args)
        if args.action == "list":
            return _list(client, args.json)
        record = client.call(
            "DELETE" if args.action == "revoke" else "POST",
            f"/admin/keys/{args.id}" + ("/rotate" if args.action == "rotate" else ""),
        )
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.action == "rotate":
        print(f"rotated {record['id']}; new key (shown once): {record['key']}")
    else:
        print(f"revoked {record['id']} ({record.get('name')})")
    return 0


def _create(client: AdminClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    for field in (
        "team",
        "owner",
        "rpm",
        "tpm",
        "max_concurrent",
        "budget_daily_usd",
        "budget_monthly_usd",
        "expires_at",
    ):
        value = getattr(args, field)
        if value is not None:
            body[field] = value
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    record = client.call("POST", "/admin/keys", body)
    print(f"created {record['id']} ({record['name']})")
    print(f"key (shown once, store it now): {record['key']}")
    return 0


def _list(client: AdminClient, as_json: bool) -> int:
    rows = client.call("GET", "/admin/keys")["data"]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':22} {'name':20} {'team':12} {'state':9} {'hint':20} models")
    for r in rows:
        state = "revoked" if r.get("revoked_at") else ("enabled" if r.get("enabled", True) else "disabled")
        print(
            f"{r['id']:22} {r['name'][:20]:20} {(r.get('team') or '-')[:12]:12} {state:9} "
            f"{r.get('key_hint', ''):20} {','.join(r.get('models') or ['*'])}"
        )
    return 0
