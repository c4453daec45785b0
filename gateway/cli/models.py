"""``gateway models list|test``: model aliases, their health, and connection tests.

Both commands talk to a running gateway's admin API (``--url``, default
``$GATEWAY_URL`` or http://127.0.0.1:8080) with the master key from
``$GATEWAY_MASTER_KEY``: the gateway is what holds the live state (runtime
models, degraded deployments, health scores) and what can reach the upstreams.
``models list --config FILE`` instead reads a config file, with no gateway
needed (what *would* be served; no health).

Exit codes: 0 done (``test``: the score reached ``--min-score``); 1 the gateway
refused or could not be reached; 2 bad usage or a bad config file; 3 ``test``
ran but the health score is below ``--min-score`` (default 100: every test
must pass).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.cli.config_file import load_or_say
from gateway.cli.connection import AdminClient, Refused, add_url_argument
from gateway.config.settings import deployment_id

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_LOW_SCORE = 0, 1, 2, 3


def add_parser(sub: Any) -> None:
    models = sub.add_parser(
        "models",
        help="list model aliases and run their connection tests",
        description="Model aliases and connection tests, through a running gateway's admin API "
        "(the master key from GATEWAY_MASTER_KEY). Exit codes: 0 done, 1 refused or unreachable, "
        "2 bad usage, 3 health score below --min-score.",
    )
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="list aliases, deployments and their health", description="List aliases and deployments."
    )
    _url(listing)
    listing.add_argument("--config", metavar="FILE", help="read this config file instead of asking a gateway")
    listing.add_argument("--json", action="store_true", help="print JSON")
    test = actions.add_parser(
        "test",
        help="run the four connection tests (basic, korean, evaluation, analysis)",
        description="Run the connection tests on an alias (as a client request to it would go, without "
        "its fallbacks) or on one of its deployments, print each result and the health score.",
    )
    test.add_argument("alias", help="a configured model alias")
    test.add_argument("--deployment", metavar="ID", help="test this deployment of the alias directly")
    _url(test)
    test.add_argument(
        "--min-score", type=_score, default=100, metavar="N", help="exit 3 below this score, 0-100 (default 100)"
    )
    test.add_argument("--json", action="store_true", help="print the gateway's JSON answer")


def _url(parser: argparse.ArgumentParser) -> None:
    add_url_argument(parser, os.environ)


def _score(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 0 to 100, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.action == "list" and args.config:
        return _list_config(args.config, args.json)
    master = os.environ.get("GATEWAY_MASTER_KEY")
    if not master:
        print("GATEWAY_MASTER_KEY is not set: the admin API needs the master key", file=sys.stderr)
        return EXIT_USAGE
    client = AdminClient(args.url, master, timeout_s=120.0)
    try:
        if args.action == "list":
            return _list_live(client, args.json)
        return _test(client, args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED


# --- list -----------------------------------------------------------------------


def _list_live(client: AdminClient, as_json: bool) -> int:
    status = client.call("GET", "/admin/health")
    rows = status["deployments"]
    if as_json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    state = "on" if status["enabled"] else "off"
    print(f"health checks: {state} (every {status['interval_s']:g} s: {', '.join(status['probes'])})")
    print(f"{'alias':20} {'deployment':24} {'provider':18} {'model':28} {'health':8} score")
    for r in rows:
        health = "-" if r.get("kind") == "embeddings" else ("degraded" if r["degraded"] else "ok")
        score = "-" if r["health_score"] is None else str(r["health_score"])
        print(f"{r['alias'][:20]:20} {r['id'][:24]:24} {r['provider'][:18]:18} {r['model'][:28]:28} {health:8} {score}")
    return EXIT_OK


def _list_config(path: str, as_json: bool) -> int:
    loaded = load_or_say(path)
    if loaded is None:
        return EXIT_USAGE
    rows = [
        {
            "alias": alias,
            "kind": spec.kind,
            "id": deployment_id(alias, i, dep),
            "provider": dep.provider,
            "model": dep.model,
        }
        for alias, spec in loaded.settings.models.items()
        for i, dep in enumerate(spec.deployments)
    ]
    if as_json:
        print(json.dumps({"deployments": rows, "left_out": loaded.disabled_aliases}, indent=2))
        return EXIT_OK
    print(f"{'alias':20} {'kind':10} {'deployment':24} {'provider':18} model")
    for r in rows:
        print(f"{r['alias'][:20]:20} {r['kind']:10} {r['id'][:24]:24} {r['provider']:18} {r['model']}")
    if loaded.disabled_aliases:
        print(f"left out (required environment not set): {', '.join(loaded.disabled_aliases)}")
    return EXIT_OK


# --- test -----------------------------------------------------------------------


def _test(client: AdminClient, args: argparse.Namespace) -> int:
    path = f"/admin/models/{urllib.parse.quote(args.alias, safe='/')}/test"
    if args.deployment:
        path += "?" + urllib.parse.urlencode({"deployment": args.deployment})
    result = client.call("POST", path)
    score = int(result["health_score"])
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        target = result.get("deployment") or result["alias"]
        print(f"connection tests of {target}:")
        for t in result["tests"]:
            mark = "PASS" if t["passed"] else "FAIL"
            where = f" [{t['deployment']}]" if t.get("deployment") and not result.get("deployment") else ""
            print(f"  {mark}  {t['name']:11} {t['latency_ms']:9.1f} ms  {t['reason']}{where}")
        print(f"health score: {score}/100 (needed: {args.min_score})")
    return EXIT_OK if score >= args.min_score else EXIT_LOW_SCORE
