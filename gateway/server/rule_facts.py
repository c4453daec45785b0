"""The facts of one request the routing rules look at (:class:`~gateway.routing.rules.RequestFacts`),
gathered from the request path's own objects: the principal, the ASGI headers, the canonical
request, and the budget policy's spend counters.

The budget share is read from the spend ledger's local view (what this process last fetched
plus what it has added since, no I/O): it can lag the other replicas' spend by about
``state.flush_interval_s + state.refresh_interval_s``, like the budget check itself; a key
or team this process has not served yet reads as nothing spent until its first budget check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from gateway.canonical import JSON
from gateway.policies.auth import Principal
from gateway.policies.budget import BudgetPolicy, spend_key
from gateway.routing.rules import RequestFacts, RuleBook

if TYPE_CHECKING:
    from gateway.observability.shaping_metrics import ShapingMetrics
    from gateway.routing.attempt import RequestTrace
    from gateway.server.asgi import Scope
    from gateway.server.service import Service
    from gateway.server.shadow import ShadowLauncher


def budget_share(budgets: BudgetPolicy, principal: Principal) -> Callable[[str, str], float]:
    """(scope ``team``/``key``, period ``daily``/``monthly``) -> the share of the
    principal's budget spent (0 when it has none)."""

    def share(scope: str, period: str) -> float:
        daily = period == "daily"
        if scope == "team":
            who = principal.team
            limit = principal.team_budget_daily_usd if daily else principal.team_budget_monthly_usd
        else:
            who = principal.key_id
            limit = principal.budget_daily_usd if daily else principal.budget_monthly_usd
        if not who or not limit:
            return 0.0
        day, month = budgets.current_periods()
        key = spend_key("team" if scope == "team" else "key", who, day if daily else month)
        return budgets.ledger.known([key]).get(key, 0.0) / limit

    return share


def request_facts(
    book: RuleBook,
    principal: Principal,
    headers: Iterable[tuple[bytes, bytes]],
    req: JSON,
    budgets: BudgetPolicy,
) -> RequestFacts:
    """The facts of a request (``headers``: the ASGI scope's, names in lower case); only
    the headers some ``match`` rule of ``book`` reads are kept."""
    wanted = book.header_names_raw
    chosen: dict[str, str] = {}
    if wanted:
        for raw_name, raw_value in headers:
            if raw_name in wanted:
                chosen[raw_name.decode("latin-1")] = raw_value.decode("latin-1")
    metadata = req.get("metadata")
    return RequestFacts(
        key_id=principal.key_id,
        team=principal.team,
        headers=chosen,
        metadata=metadata if isinstance(metadata, dict) else None,
        budget_share=budget_share(budgets, principal),
        may_use=principal.may_use,
    )


def route_by_rules(
    service: Service,
    shaping: ShapingMetrics,
    trace: RequestTrace,
    principal: Principal,
    alias: str,
    req: JSON,
    scope: Scope,
) -> str:
    """The alias a chat request goes to: ``alias``, or the one the first ``match`` or
    ``budget_downgrade`` rule of ``alias`` that holds names (``req["model"]`` follows, the
    answer's ``x-gateway-route`` header says so). One dict lookup when ``alias`` has none."""
    book = service.rules
    if not book.has_rules(alias):
        return alias
    choice = book.choose(alias, request_facts(book, principal, scope["headers"], req, service.traffic.budgets))
    if choice is None:
        return alias
    shaping.rule(choice.rule, choice.kind)
    trace.rule = choice.header()
    req["model"] = choice.alias
    return choice.alias


def shadow(shadows: ShadowLauncher, service: Service, req: JSON, alias: str) -> None:
    """Send a copy of the chat request to the alias's shadow candidate in the background
    when its rule samples this one (gateway/server/shadow.py)."""
    choice = service.rules.shadow_for(alias)
    if choice is not None:
        shadows.launch(service, req, choice)
