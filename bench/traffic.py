"""Traffic control on: the gateway config with every policy enabled, the team
and client key the load uses, and the check that the policies really run.

Every limit and budget is far above what a benchmark can reach, so nothing is
ever refused: the run measures what the checks cost, not what they refuse.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.gateway_proc import JSON_ALIAS, chat_body
from bench.procs import BenchError

TEAM_ID = "bench-team"
HIGH_RPM = 10_000_000
HIGH_TPM = 10_000_000_000
HIGH_CONCURRENT = 10_000
HIGH_USD = 1_000_000.0
GLOBAL_MAX_CONCURRENT = 1000
PRICE = {"input_per_1m": 0.15, "output_per_1m": 0.60, "cached_input_per_1m": 0.075}  # gpt-4o-mini's

TEAM_BODY: dict[str, Any] = {"id": TEAM_ID, "rpm": HIGH_RPM, "tpm": HIGH_TPM, "budget_daily_usd": HIGH_USD}
KEY_BODY: dict[str, Any] = {
    "name": "bench-client",
    "team": TEAM_ID,
    "rpm": HIGH_RPM,
    "tpm": HIGH_TPM,
    "max_concurrent": HIGH_CONCURRENT,
    "budget_daily_usd": HIGH_USD,
    "budget_monthly_usd": HIGH_USD * 31,
}
RATELIMIT_HEADERS = tuple(
    f"x-ratelimit-{what}-{unit}" for unit in ("requests", "tokens") for what in ("limit", "remaining", "reset")
)
COST_HEADER = "x-gateway-cost-usd"
CACHE_HEADER = "x-gateway-cache"


def embedded_state(workdir: Path) -> dict[str, Any]:
    return {"backend": "embedded", "path": str(workdir / "traffic-embedded.db")}


def redis_state(url: str) -> dict[str, Any]:
    return {"backend": "redis", "url": url}


def postgres_state(redis_url: str, postgres_url: str, workdir: Path) -> dict[str, Any]:
    """PostgreSQL + Redis; the spend journal beside ``path``, as with embedded."""
    path = str(workdir / "traffic-postgres.db")
    return {"backend": "postgres", "url": redis_url, "path": path, "postgres": {"url": postgres_url}}


def traffic_config(bare: dict[str, Any], *, state: dict[str, Any]) -> dict[str, Any]:
    """``bare`` with everything on: ``state``, global concurrency limit, cache,
    global budgets, per-alias limits and a price on every deployment."""
    config = copy.deepcopy(bare)
    config["state"] = state
    config["limits"] = {"max_concurrent": GLOBAL_MAX_CONCURRENT}
    config["cache"] = {"enabled": True}
    config["budgets"] = {"daily_usd": HIGH_USD, "monthly_usd": HIGH_USD * 31}
    config["pricing"] = {"file": None}  # the deployments' own prices
    for alias in config["models"].values():
        alias["limits"] = {"rpm": HIGH_RPM, "tpm": HIGH_TPM, "max_concurrent": HIGH_CONCURRENT}
        for dep in alias["deployments"]:
            dep["price"] = dict(PRICE)
    return config


# --- admin API: the team and the client key ---------------------------------------


def _call(
    url: str, *, key: str, body: dict[str, Any] | None = None, timeout_s: float = 10.0, method: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    """One JSON request (GET without a body, else POST, unless ``method`` says):
    (status, decoded body or text, lower-cased headers)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    verb = method or ("GET" if body is None else "POST")
    req = urllib.request.Request(url, data=data, headers=headers, method=verb)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, raw, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), exc.headers
    except OSError as exc:
        raise BenchError(f"no answer from {url}: {exc}") from exc
    text = raw.decode("utf-8", errors="replace")
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = text
    return status, decoded, {k.lower(): v for k, v in hdrs.items()}


def put_team(base_url: str, master_key: str, body: dict[str, Any]) -> None:
    """Create the team, or (on a gateway that already has it: 409 ``team_exists``, as POST
    never replaces) set these fields on it with PATCH."""
    status, answer, _ = _call(f"{base_url}/admin/teams", key=master_key, body=body)
    if status == 409 and isinstance(answer, dict) and answer.get("error", {}).get("code") == "team_exists":
        changes = {k: v for k, v in body.items() if k != "id"}
        url = f"{base_url}/admin/teams/{urllib.parse.quote(str(body['id']), safe='')}"
        status, answer, _ = _call(url, key=master_key, body=changes, method="PATCH")
    if status not in (200, 201):
        raise BenchError(f"team {body['id']}: the admin API answered {status}: {answer}")


def provision(base_url: str, master_key: str) -> str:
    """Create the team (or update it) and the client key (admin API); the key's secret."""
    put_team(base_url, master_key, TEAM_BODY)
    status, answer, _ = _call(f"{base_url}/admin/keys", key=master_key, body=KEY_BODY)
    if status not in (200, 201):
        raise BenchError(f"POST /admin/keys answered {status}: {answer}")
    if not isinstance(answer, dict) or not isinstance(answer.get("key"), str):
        raise BenchError(f"POST /admin/keys did not return a key: {answer}")
    return str(answer["key"])


# --- the check: is traffic control really on? ----------------------------------------


@dataclass
class TrafficCheck:
    """What one request with the client key answered, and a cacheable pair."""

    backend: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # the traffic-control ones
    cached_first: str = ""  # x-gateway-cache of two temperature-0 requests
    cached_second: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        shown = ", ".join(f"{k}: {v}" for k, v in self.headers.items())
        out = [f"  check ({self.backend}): HTTP {self.status}; {shown}"]
        cache = f"x-gateway-cache {self.cached_first}, then {self.cached_second}"
        out.append(f"  check ({self.backend}): temperature 0 twice: {cache}")
        out += [f"!! check ({self.backend}): {p}" for p in self.problems]
        return out

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def header_problems(status: int, headers: dict[str, str]) -> list[str]:
    """Why a non-cacheable answer does not show traffic control at work (empty: it does)."""
    problems = [] if status == 200 else [f"HTTP {status}, expected 200"]
    problems += [f"no {name} header (rate limits not applied?)" for name in RATELIMIT_HEADERS if name not in headers]
    cost = headers.get(COST_HEADER)
    try:
        costed = cost is not None and float(cost) > 0
    except ValueError:
        costed = False
    if not costed:
        problems.append(f"{COST_HEADER} is {cost!r}, expected a positive cost (pricing not applied?)")
    if headers.get(CACHE_HEADER) != "off":
        problems.append(
            f"{CACHE_HEADER} is {headers.get(CACHE_HEADER)!r}, expected 'off' (no temperature: not cacheable)"
        )
    return problems


def check_traffic(chat_url: str, key: str, backend: str) -> TrafficCheck:
    """One request with the client key (200, x-ratelimit-*, a cost, cache 'off'),
    then two with temperature 0 (a miss, then a hit)."""
    result = TrafficCheck(backend)

    def post(temperature: int | None) -> tuple[int, dict[str, str]]:
        body = json.loads(chat_body(JSON_ALIAS, stream=False, temperature=temperature))
        status, _, headers = _call(chat_url, key=key, body=body)
        return status, headers

    result.status, headers = post(None)
    result.headers = {k: v for k, v in headers.items() if k in (*RATELIMIT_HEADERS, COST_HEADER, CACHE_HEADER)}
    result.problems = header_problems(result.status, headers)
    (s1, h1), (s2, h2) = post(0), post(0)
    result.cached_first, result.cached_second = h1.get(CACHE_HEADER, f"HTTP {s1}"), h2.get(CACHE_HEADER, f"HTTP {s2}")
    if result.cached_second != "hit":
        result.problems.append(f"a repeated temperature-0 request was not a cache hit ({result.cached_second!r})")
    return result
