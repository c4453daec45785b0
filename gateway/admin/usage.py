"""``GET /admin/usage``: spend, requests and tokens by team, key, alias or day.

Query: ``group_by`` (``day`` by default, or ``team``, ``key``, ``alias``),
``from`` and ``to`` (``YYYY-MM-DD`` days in ``budgets.timezone``, both
included; today by default; at most 366 days), ``id`` (comma-separated ids to
report, for ``team``/``key``/``alias``; by default every key, static key and
``master``, every team of a team record or a key, every alias of the config
file, the stored models and the routes in force: pass ``id`` for one that no
longer exists anywhere).

Numbers come from the daily counters of :mod:`gateway.policies.budget`
(``spend:...:{day}`` and ``usage:{metric}:...:{day}``) as written to the state
backend, plus what this replica has not flushed yet; another replica's
unflushed amounts (at most ``state.flush_interval_s`` of them) are not seen.
``requests`` counts requests answered by an upstream (cache hits are not).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.keys import AdminHost, guarded, json_response
from gateway.admin.model_store import ModelStore
from gateway.config.loader import LoadedConfig
from gateway.errors import InvalidRequest, Starting
from gateway.policies.budget import GLOBAL_ID, USAGE_METRICS, model_spend_key, spend_key, usage_key
from gateway.security.roles import Role
from gateway.state.ledger import SpendLedger, read_totals

CounterScope = Literal["global", "team", "key", "model"]
GROUPS: dict[str, CounterScope] = {"day": "global", "team": "team", "key": "key", "alias": "model"}
MAX_DAYS = 366


class UsageHost(AdminHost, Protocol):
    ledger: SpendLedger | None

    @property
    def file_config(self) -> LoadedConfig: ...

    @property
    def model_store(self) -> ModelStore: ...


def _day(text: str | None, param: str, default: date) -> date:
    if text is None or text == "":
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{param} must be a day like 2026-11-26, got {text!r}", param=param) from None


def day_range(query: dict[str, str], tz: ZoneInfo, today: date | None = None) -> list[str]:
    """The days ``from`` .. ``to`` (inclusive) as ``YYYY-MM-DD``; 400 naming the bad parameter."""
    today = today or datetime.now(UTC).astimezone(tz).date()
    end = _day(query.get("to"), "to", today)
    start = _day(query.get("from"), "from", end)
    if start > end:
        raise InvalidRequest(f"from ({start}) is after to ({end})", param="from")
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise InvalidRequest(f"the range is {count} days; at most {MAX_DAYS} can be asked at once", param="from")
    return [(start + timedelta(days=i)).isoformat() for i in range(count)]


def counter_names(scope: CounterScope, id: str, day: str) -> dict[str, str]:
    """Field -> counter name of one scope, id and day."""
    spend = model_spend_key(id, day) if scope == "model" else spend_key(scope, id, day)
    return {"spend_usd": spend, **{m: usage_key(m, scope, id, day) for m in USAGE_METRICS}}


def row(totals: dict[str, float], names: list[dict[str, str]]) -> dict[str, Any]:
    """Sum the counters of ``names`` (one dict per day) into one report row."""
    out: dict[str, Any] = {"spend_usd": 0.0, **dict.fromkeys(USAGE_METRICS, 0)}
    for day in names:
        for field, key in day.items():
            out[field] += totals.get(key, 0.0)
    out["spend_usd"] = round(out["spend_usd"], 9)
    for metric in USAGE_METRICS:
        out[metric] = round(out[metric])
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    return out


class UsageAPI:
    def __init__(self, host: UsageHost) -> None:
        self._host = host

    def routes(self) -> list[Route]:
        return [Route("/admin/usage", guarded(self._host, self.usage, role=Role.viewer), methods=["GET"])]

    async def usage(self, request: Request) -> Response:
        query = dict(request.query_params)
        group = query.get("group_by") or "day"
        if group not in GROUPS:
            raise InvalidRequest(
                f"group_by must be one of {', '.join(GROUPS)}, got {group!r}", param="group_by", code="invalid_field"
            )
        tz = ZoneInfo(self._host.file_config.settings.budgets.timezone)
        days = day_range(query, tz)
        scope = GROUPS[group]
        ids = [i for i in query["id"].split(",") if i] if query.get("id") else await self._ids(group)
        rows: list[tuple[str, list[dict[str, str]]]]
        if group == "day":
            rows = [(d, [counter_names(scope, GLOBAL_ID, d)]) for d in days]
        else:
            rows = [(i, [counter_names(scope, i, d) for d in days]) for i in ids]
        overall = [counter_names("global", GLOBAL_ID, d) for d in days]
        totals = await self._read([n for _, names in [*rows, ("", overall)] for day in names for n in day.values()])
        data = [{group: label, **r} for label, names in rows if any((r := row(totals, names)).values())]
        return json_response(
            {
                "object": "usage",
                "group_by": group,
                "from": days[0],
                "to": days[-1],
                "timezone": tz.key,
                "data": data,
                "total": row(totals, overall),
            }
        )

    async def _read(self, keys: list[str]) -> dict[str, float]:
        ledger = self._host.ledger
        if ledger is None:
            raise Starting()
        return await read_totals(ledger, list(dict.fromkeys(keys)))

    async def _ids(self, group: str) -> list[str]:
        host = self._host
        if group == "key":
            records = await host.keys.all()
            static = [k.name for k in host.file_config.settings.auth.keys]
            return sorted({"master", *static, *(str(r["id"]) for r in records)})
        if group == "team":
            teams = await host.keys.list_teams()
            records = await host.keys.all()
            return sorted({*(str(t["id"]) for t in teams), *(str(r["team"]) for r in records if r.get("team"))})
        models = host.file_config.raw.get("models")
        stored = await host.model_store.all()
        return sorted({*(models if isinstance(models, dict) else ()), *stored, *host.aliases()})
